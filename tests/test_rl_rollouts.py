"""Partial rollouts: segment budgets, the replay buffer, per-segment loss masks, repeat stops."""

from __future__ import annotations

import json

import pytest

from l2s.rl.rollouts import PartialRollouts, Trajectory, ends_in_repeat, loss_mask
from l2s.tasks import Problem

EOS = 0


class ScriptedPolicy:
    """A stand-in policy with known lengths: a trajectory's first token is its planned total length L,
    then filler tokens, then EOS at position L. It continues a trajectory from the text it is sent,
    so it only works if the rollouts send back exactly the tokens generated so far."""

    def __init__(self, lengths):
        self.lengths = list(lengths)  # planned lengths, consumed by new trajectories in order
        self.calls: list[tuple[int, int]] = []  # (rows, max_tokens) per call

    @staticmethod
    def decode(ids):
        return "".join(f" {t}" for t in ids)

    def __call__(self, texts, max_tokens):
        self.calls.append((len(texts), max_tokens))
        out = []
        for text in texts:
            prompt, _, done = text.partition("|")
            ids = [int(t) for t in done.split()]
            total = ids[0] if ids else self.lengths.pop(0)
            plan = [total] + [7 + (i % 5) for i in range(1, total - 1)] + [EOS]
            out.append(plan[len(ids) : len(ids) + max_tokens])
        return out


def _start(r, pid, k, iteration):
    return r.start(Problem(pid, "q", "1"), f"{pid}|", [1, 2], k, iteration)


def test_without_partial_rollouts_everything_finishes_in_one_iteration():
    policy = ScriptedPolicy([3, 5, 2, 10])
    r = PartialRollouts(max_tokens=64, segment_tokens=None, eos_ids=[EOS])
    _start(r, "a", 2, 0), _start(r, "b", 2, 0)
    done = r.step(policy, policy.decode, 0)
    assert [g.problem.id for g in done] == ["a", "b"] and r.buffer == []
    assert [t.completion_tokens for g in done for t in g.trajectories] == [3, 5, 2, 10]
    assert policy.calls == [(4, 64)]  # one call, as long as the longest allows


def test_long_trajectories_continue_next_iteration_from_the_replay_buffer():
    policy = ScriptedPolicy([3, 5, 2, 10, 2, 2])
    r = PartialRollouts(max_tokens=64, segment_tokens=4, eos_ids=[EOS])
    _start(r, "a", 2, 0), _start(r, "b", 2, 0)
    assert r.step(policy, policy.decode, 0) == []  # a[1] and b[1] are still running
    assert len(r.buffer) == 2
    _start(r, "c", 2, 1)  # a new group joins at iteration 1: new and continuing rows are separate calls
    done1 = r.step(policy, policy.decode, 1)
    assert [g.problem.id for g in done1] == ["a", "c"]
    assert policy.calls[1:3] == [(2, 4), (2, 4)]  # c's two new rows, then a[1] and b[1] continuing
    done2 = r.step(policy, policy.decode, 2)
    b = done2[0]
    assert [t.completion_tokens for t in b.trajectories] == [2, 10]
    long = b.trajectories[1]
    assert [s.iteration for s in long.segments] == [0, 1, 2]
    assert long.token_ids == [10, 8, 9, 10, 11, 7, 8, 9, 10, EOS]  # the plan, continued seamlessly
    assert long.finish_reason == "stop"
    assert loss_mask(long, 2, mask_old_segments=True) == [0] * 8 + [1, 1]
    assert loss_mask(long, 2, mask_old_segments=False) == [1] * 10
    assert loss_mask(b.trajectories[0], 2, True) == [0, 0]  # finished in iteration 0: all off-policy


def test_max_tokens_caps_the_whole_trajectory_across_segments():
    policy = ScriptedPolicy([50, 3])
    r = PartialRollouts(max_tokens=6, segment_tokens=4, eos_ids=[EOS])
    _start(r, "a", 2, 0)
    r.step(policy, policy.decode, 0)
    (g,) = r.step(policy, policy.decode, 1)
    assert policy.calls[1] == (1, 2)  # the last segment only gets what is left of max_tokens
    assert g.trajectories[0].completion_tokens == 6 and g.trajectories[0].finish_reason == "length"


def test_repeating_rollouts_are_stopped_at_their_segment_end():
    def looping(texts, max_tokens):
        return [[4, 5] * (max_tokens // 2) for _ in texts]

    r = PartialRollouts(max_tokens=1000, segment_tokens=10, eos_ids=[EOS], repeat={"min_span": 8})
    g = _start(r, "a", 2, 0)
    assert r.step(looping, ScriptedPolicy.decode, 0) == [g]
    assert all(t.finish_reason == "repeat" and t.repeated for t in g.trajectories)
    assert all(t.completion_tokens == 10 for t in g.trajectories)  # not 1000


def test_buffer_survives_a_json_round_trip():
    policy = ScriptedPolicy([3, 9])
    r = PartialRollouts(max_tokens=64, segment_tokens=4, eos_ids=[EOS])
    _start(r, "a", 2, 0)
    r.step(policy, policy.decode, 0)
    saved = json.loads(json.dumps(r.state_dict()))
    r2 = PartialRollouts(max_tokens=64, segment_tokens=4, eos_ids=[EOS])
    r2.load_state_dict(saved)
    r2.step(policy, policy.decode, 1)
    (g,) = r2.step(policy, policy.decode, 2)
    assert g.trajectories[1].token_ids == [9, 8, 9, 10, 11, 7, 8, 9, EOS]
    assert isinstance(g.trajectories[0], Trajectory) and g.problem.id == "a"


def test_ends_in_repeat():
    assert ends_in_repeat([1, 2, 3, 4] * 16)
    assert not ends_in_repeat([1, 2, 3, 4] * 16 + [9])
    assert not ends_in_repeat(list(range(300)))
    assert ends_in_repeat(list(range(50)) + [7] * 48)
    assert not ends_in_repeat([7] * 47)


@pytest.mark.slow
def test_partial_rollouts_through_the_hf_engine(pico_ckpt):
    """Real generation: segments continue from the decoded text and respect every budget."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from l2s.engines.base import SamplingParams
    from l2s.engines.completion import render_prompt
    from l2s.engines.hf import HFEngine

    tok = AutoTokenizer.from_pretrained(pico_ckpt)
    engine = HFEngine.from_objects(AutoModelForCausalLM.from_pretrained(pico_ckpt), tok)
    sent: list[str] = []

    def generate(texts, max_tokens):
        sent.extend(texts)
        outs = engine.generate(texts, SamplingParams(n=1, max_tokens=max_tokens))
        return [o[0].token_ids for o in outs]

    def decode(ids):
        return tok.decode(ids, skip_special_tokens=False)

    torch.manual_seed(0)
    r = PartialRollouts(max_tokens=20, segment_tokens=8, eos_ids=[tok.eos_token_id])
    text = render_prompt(tok, [{"role": "user", "content": "Compute 7 * 6 - 5."}]).text
    g = r.start(Problem("p", "Compute 7 * 6 - 5.", "37"), text, render_prompt(tok, text).ids, 3, 0)
    finished = []
    for it in range(4):
        finished += r.step(generate, decode, it)
    assert finished == [g] and r.buffer == []
    for t in g.trajectories:
        assert t.done and t.completion_tokens <= 20
        assert all(len(s.token_ids) <= 8 for s in t.segments)
        if len(t.segments) > 1:  # its continuation was sent as prompt + the tokens so far
            assert text + decode(t.segments[0].token_ids) in sent
