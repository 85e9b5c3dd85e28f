"""The mirror-descent surrogate: autograd's gradient against the report's formula, worked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from l2s.rl.loss import mirror_descent_loss, sequence_logprobs, token_logprobs


def _toy_policy_grad(theta, theta_i, samples, rewards, tau):
    """A softmax policy over 3 whole "sequences": log π(y) = θ_y − logsumexp(θ). Returns θ.grad."""
    theta = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    logp = torch.log_softmax(theta, 0)[samples]
    ref = torch.log_softmax(torch.tensor(theta_i, dtype=torch.float64), 0)[samples]
    loss, _ = mirror_descent_loss(logp, ref, torch.tensor(rewards, dtype=torch.float64), len(samples), tau)
    loss.backward()
    return theta.grad


def test_gradient_at_iteration_start_is_the_centered_policy_gradient():
    # θ = θ_i (first step of an iteration): the KL term has zero gradient. p = (1/6, 1/3, 1/2),
    # samples y = (0, 2, 2, 1), r = (1, 0, 1, 0), r̄ = 1/2, ∇log π(y) = e_y − p. By hand:
    # (1/4)[½(e0−p) − ½(e2−p) + ½(e2−p) − ½(e1−p)] = (e0 − e1)/8 = (1/8, −1/8, 0): the ascent direction.
    theta = [0.0, math.log(2), math.log(3)]
    grad = _toy_policy_grad(theta, theta, [0, 2, 2, 1], [1.0, 0.0, 1.0, 0.0], tau=0.5)
    assert grad.tolist() == pytest.approx([-0.125, 0.125, 0.0], abs=1e-12)  # loss gradient = −ascent


def test_gradient_with_kl_term_matches_the_report_formula():
    # θ_i = 0 (uniform 1/3), θ = log(1, 2, 3) (p = 1/6, 1/3, 1/2), τ = 1/2, same samples and rewards.
    # d_j = log π(y_j) − log π_i(y_j) = (ln ½, ln 3/2, ln 3/2, 0); (τ/2)∇d² = τ·d·∇log π.
    # Ascent = (1/4) Σ_j c_j (e_{y_j} − p) with c_j = (r_j − r̄) − τ d_j:
    #   c = (½ + ½ln2, −½ − ½ln1.5, ½ − ½ln1.5, −½)  → grouped by sequence: e0: c0, e1: −½, e2: −ln1.5.
    c0, c1, c2 = 0.5 + 0.5 * math.log(2), -0.5, -math.log(1.5)
    p = [1 / 6, 1 / 3, 1 / 2]
    total = c0 + c1 + c2
    ascent = [(c - total * pk) / 4 for c, pk in zip((c0, c1, c2), p, strict=True)]
    grad = _toy_policy_grad([0.0, math.log(2), math.log(3)], [0.0, 0.0, 0.0], [0, 2, 2, 1], [1, 0, 1, 0], 0.5)
    assert grad.tolist() == pytest.approx([-a for a in ascent], abs=1e-12)


def test_groups_are_averaged_over_prompts_and_equal_rewards_give_no_signal():
    logp = torch.tensor([-1.0, -2.0, -3.0, -4.0, -5.0, -6.0], requires_grad=True)
    loss, stats = mirror_descent_loss(
        logp, logp.detach(), torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0]), 2, 1.0
    )
    loss.backward()
    # Two samples per prompt, three prompts: ∂/∂logp_j = −(r_j − r̄)/(k · prompts) = ∓1/12.
    assert logp.grad.tolist() == pytest.approx([-1 / 12, 1 / 12, 1 / 12, -1 / 12, 0.0, 0.0])
    assert stats.kl_term == 0.0 and stats.mean_abs_log_ratio == 0.0


def test_kl_term_value():
    logp = torch.tensor([-1.0, -2.0])
    loss, stats = mirror_descent_loss(logp, torch.tensor([-1.5, -2.0]), torch.tensor([0.0, 0.0]), 2, 0.2)
    # (τ/2)·mean(d²) = 0.1 · (0.25 + 0)/2
    assert stats.kl_term == pytest.approx(0.0125)
    assert float(loss) == pytest.approx(0.0125)


def test_bad_group_shapes_are_refused():
    x = torch.zeros(4)
    with pytest.raises(ValueError, match="two samples"):
        mirror_descent_loss(x, x, x, 1, 0.1)
    with pytest.raises(ValueError, match="groups of 3"):
        mirror_descent_loss(x, x, x, 3, 0.1)


def test_descending_the_surrogate_moves_a_toy_policy_towards_rewarded_sequences():
    torch.manual_seed(0)
    theta = torch.zeros(4, requires_grad=True)
    reward = torch.tensor([0.0, 1.0, 0.0, 0.0])
    opt = torch.optim.Adam([theta], lr=0.1)
    for _ in range(30):  # iterations: sample k=8 from π_θi, a few steps, new reference
        ref_theta = theta.detach().clone()
        samples = torch.multinomial(torch.softmax(ref_theta, 0), 8, replacement=True)
        ref = torch.log_softmax(ref_theta, 0)[samples]
        for _ in range(3):
            loss, _ = mirror_descent_loss(torch.log_softmax(theta, 0)[samples], ref, reward[samples], 8, 0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert torch.softmax(theta, 0)[1] > 0.9


def test_sequence_logprobs_sums_masked_tokens_and_ignores_padding(pico_ckpt):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(pico_ckpt).eval()
    ids = torch.tensor([[5, 9, 11, 12, 13], [5, 9, 11, 3, 3]])
    attn = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    mask = torch.tensor([[0, 0, 1, 1, 0], [0, 0, 1, 0, 0]], dtype=torch.float32)  # prompt = 2 tokens
    with torch.no_grad():
        got = sequence_logprobs(model, ids, attn, mask)
        logits = model(input_ids=ids[:1]).logits[0].log_softmax(-1)
        want0 = logits[1, 11] + logits[2, 12]  # token t is predicted at position t − 1
        alone = model(input_ids=ids[1:, :3]).logits[0].log_softmax(-1)[1, 11]
    assert got[0].item() == pytest.approx(want0.item(), abs=1e-5)
    assert got[1].item() == pytest.approx(alone.item(), abs=1e-5)  # right padding changes nothing


def test_token_logprobs_matches_log_softmax():
    logits = torch.randn(2, 3, 7)
    targets = torch.randint(0, 7, (2, 3))
    want = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
    assert torch.allclose(token_logprobs(logits, targets), want, atol=1e-6)


def test_per_row_terms_split_into_any_micro_batches_give_the_group_gradient():
    from l2s.rl.loss import group_advantages, mirror_descent_terms

    torch.manual_seed(0)
    theta = torch.randn(6, requires_grad=True)
    ref = torch.randn(6)
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    loss, _ = mirror_descent_loss(theta * 2, ref, rewards, 3, 0.3)
    (want,) = torch.autograd.grad(loss, theta)
    adv = group_advantages(rewards, 3)
    total = 0
    for idx in ([4, 0], [5], [1, 3, 2]):  # rows across groups, in any order
        policy, kl = mirror_descent_terms(theta[idx] * 2, ref[idx], adv[idx], 0.3)
        total = total + (kl - policy).sum() / 6
    (got,) = torch.autograd.grad(total, theta)
    assert torch.allclose(got, want, atol=1e-7)
