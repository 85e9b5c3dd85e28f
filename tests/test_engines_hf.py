"""The hf engine on a random pico Llama: shapes, seeding, batching, logprobs, streaming, stops, budgets
(the forced `</think>`, and the instruction a budget-conditioned model reads from its prompt)."""

from __future__ import annotations

import shutil

import pytest

from l2s.engines.base import SamplingParams
from l2s.engines.completion import ThinkMarkers, count_reasoning_tokens

MSG = [{"role": "user", "content": "Compute 7 * 6 - 5."}]
PROMPTS = [MSG, [{"role": "user", "content": "12 + 30"}], "raw text prompt: 4"]


@pytest.fixture(scope="module")
def engine(pico_ckpt):
    from l2s.engines.hf import HFEngine

    return HFEngine(pico_ckpt, batch_size=4)


@pytest.fixture(scope="module")
def r1_ckpt(pico_ckpt, tmp_path_factory):
    """The pico checkpoint with an R1-distill style template: the assistant turn opens <think>."""
    out = tmp_path_factory.mktemp("r1") / "model"
    shutil.copytree(pico_ckpt, out)
    tpl = out / "chat_template.jinja"
    tpl.write_text(
        tpl.read_text().replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\n<think>\\n'")
    )
    return out


@pytest.mark.slow
def test_shapes_and_fields(engine):
    out = engine.generate(PROMPTS, SamplingParams(n=3, max_tokens=12, seed=0))
    assert [len(g) for g in out] == [3, 3, 3]
    for gens in out:
        for g in gens:
            assert 1 <= g.completion_tokens <= 12
            assert g.finish_reason in ("stop", "length")
            assert (g.finish_reason == "stop") == (g.token_ids[-1] == engine.tokenizer.eos_token_id)
            assert g.finish_reason == "stop" or g.completion_tokens == 12
            assert g.logprobs is None


@pytest.mark.slow
def test_seeded_sampling_is_reproducible(engine):
    p = SamplingParams(n=4, max_tokens=10, seed=7)
    ids = lambda out: [g.token_ids for gens in out for g in gens]  # noqa: E731
    a, b = ids(engine.generate(PROMPTS, p)), ids(engine.generate(PROMPTS, p))
    c = ids(engine.generate(PROMPTS, SamplingParams(n=4, max_tokens=10, seed=8)))
    assert a == b
    assert a != c
    assert len({tuple(x) for x in a}) > 1  # samples of one prompt differ


@pytest.mark.slow
def test_greedy_batched_matches_one_at_a_time(pico_ckpt):
    """Left padding must not change what a row generates."""
    from l2s.engines.hf import HFEngine

    p = SamplingParams(n=1, temperature=0, max_tokens=10, logprobs=True)
    batched = HFEngine(pico_ckpt, batch_size=8).generate(PROMPTS, p)
    single = HFEngine(pico_ckpt, batch_size=1).generate(PROMPTS, p)
    for b, s in zip(batched, single, strict=True):
        assert b[0].token_ids == s[0].token_ids
        assert b[0].logprobs == pytest.approx(s[0].logprobs, abs=1e-4)


@pytest.mark.slow
def test_logprobs_are_the_models_own(engine):
    """Recorded logprobs equal a fresh forward pass over prompt + completion (raw, before temperature)."""
    import torch

    from l2s.engines.completion import render_prompt

    g = engine.generate([MSG], SamplingParams(n=1, temperature=0.7, max_tokens=8, seed=3, logprobs=True))[0][
        0
    ]
    assert len(g.logprobs) == g.completion_tokens
    prompt_ids = render_prompt(engine.tokenizer, MSG).ids
    ids = torch.tensor([prompt_ids + g.token_ids])
    with torch.no_grad():
        logits = engine.model(ids).logits[0, len(prompt_ids) - 1 : -1]
    expected = torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(g.token_ids)[:, None])[:, 0]
    assert g.logprobs == pytest.approx(expected.tolist(), abs=1e-4)


@pytest.mark.slow
def test_on_token_streams_every_generated_token(engine):
    seen: dict[int, list[int]] = {}
    out = engine.generate(
        PROMPTS,
        SamplingParams(n=2, max_tokens=9, seed=1),
        on_token=lambda i, t: seen.setdefault(i, []).append(t),
    )
    flat = [g for gens in out for g in gens]
    assert sorted(seen) == list(range(len(flat)))
    assert [seen[i] for i in range(len(flat))] == [g.token_ids for g in flat]


@pytest.mark.slow
def test_stop_string_cuts_text_and_tokens(engine):
    p = SamplingParams(n=1, temperature=0, max_tokens=24)
    full = engine.generate([MSG], p)[0][0]
    stop = full.text[8:10]
    assert len(stop) == 2
    streamed: list[int] = []
    params = SamplingParams(n=1, temperature=0, max_tokens=24, stop=[stop])
    cut = engine.generate([MSG], params, on_token=lambda i, t: streamed.append(t))[0][0]
    assert streamed == cut.token_ids  # streaming stops where the stop string completes
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.find(stop)]
    assert full.token_ids[: cut.completion_tokens] == cut.token_ids
    assert stop in engine.tokenizer.decode(cut.token_ids)


@pytest.mark.slow
def test_r1_template_starts_inside_think(r1_ckpt):
    from l2s.engines.hf import HFEngine

    eng = HFEngine(r1_ckpt)
    g = eng.generate([MSG], SamplingParams(n=1, temperature=0, max_tokens=16))[0][0]
    # Every generated token before </think> (or the end) is reasoning; EOS is not.
    close = eng.tokenizer.convert_tokens_to_ids("</think>")
    inside = g.token_ids.index(close) if close in g.token_ids else len(g.token_ids)
    inside -= g.finish_reason == "stop" and close not in g.token_ids
    assert g.reasoning_tokens == inside
    assert g.reasoning == g.text.split("</think>")[0].strip()
    assert g.content == (g.text.split("</think>", 1)[1].strip() if close in g.token_ids else "")


@pytest.mark.slow
@pytest.mark.parametrize("budget", [0, 3, 9])
def test_thinking_budget_forces_close(r1_ckpt, budget):
    from l2s.engines.hf import HFEngine

    eng = HFEngine(r1_ckpt, batch_size=4)
    close = eng.tokenizer.convert_tokens_to_ids("</think>")
    p = SamplingParams(n=4, temperature=1.0, max_tokens=budget + 12, seed=0, max_thinking_tokens=budget)
    for g in eng.generate([MSG, MSG], p)[0] + eng.generate([MSG], p)[0]:
        assert g.reasoning_tokens <= budget
        if g.finish_reason == "length" or g.completion_tokens > budget + 1:
            # The budget ran out before EOS: </think> is exactly the token after `budget` reasoning tokens.
            assert close in g.token_ids
            assert "</think>" in g.text
            assert g.reasoning_tokens == g.token_ids.index(close)


def test_thinking_budget_when_the_model_opens_think_itself():
    """The processor alone: a row that emits <think> mid-stream gets </think> forced after `budget` tokens."""
    import torch

    from l2s.engines.hf import ThinkingBudget

    OPEN, CLOSE, V = 1, 2, 6
    proc = ThinkingBudget(2, ThinkMarkers((OPEN,), (CLOSE,)), [False, False], prompt_len=1)
    ids = torch.tensor([[0], [0]])
    for step_tokens in ([OPEN, 5], [4, 5], [4, 5]):
        proc(ids, torch.zeros(2, V))
        ids = torch.cat([ids, torch.tensor(step_tokens)[:, None]], 1)
    scores = proc(ids, torch.zeros(2, V))
    assert scores[0].argmax().item() == CLOSE and torch.isinf(scores[0]).sum() == V - 1
    assert not torch.isinf(scores[1]).any()  # the row that never opened think is untouched
    assert count_reasoning_tokens([OPEN, 4, 4, CLOSE], ThinkMarkers((OPEN,), (CLOSE,))) == 2


@pytest.mark.slow
def test_from_objects_keeps_train_mode(pico_ckpt):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from l2s.engines.hf import HFEngine

    model = AutoModelForCausalLM.from_pretrained(pico_ckpt)
    model.train()
    eng = HFEngine.from_objects(model, AutoTokenizer.from_pretrained(pico_ckpt), name="policy")
    out = eng.generate([MSG], SamplingParams(n=2, max_tokens=5, seed=0))
    assert len(out[0]) == 2 and model.training
    assert eng.name == "policy"


@pytest.fixture(scope="module")
def budget_ckpt(pico_ckpt, tmp_path_factory):
    """The pico checkpoint recorded as budget-conditioned (what `l2s derive --method budget` writes)."""
    import json

    out = tmp_path_factory.mktemp("budget") / "model"
    shutil.copytree(pico_ckpt, out)
    (out / "l2s.json").write_text(json.dumps({"method": "budget", "config": {"budget_form": "max"}}))
    return out


def test_budget_model_states_the_budget_in_its_prompt(engine, budget_ckpt):
    from l2s.budget import BudgetPrompt, with_budget
    from l2s.engines.hf import HFEngine

    eng = HFEngine(budget_ckpt)
    assert (eng.budget_prompt, engine.budget_prompt) == (BudgetPrompt(), None)
    budget, free = SamplingParams(max_thinking_tokens=5), SamplingParams()
    sent = eng.render(MSG, budget)
    assert "Think for at most 5 tokens." in sent.text
    assert sent.ids == engine.render(with_budget(MSG, 5), free).ids
    assert eng.render(MSG, free).ids == engine.render(MSG, free).ids  # no budget: prompt as given
    assert engine.render(MSG, budget).ids == engine.render(MSG, free).ids  # not a budget model: unchanged
    raw = "raw text prompt: 4"
    assert eng.render(raw, budget).text == raw  # raw text is the model's input already
    # generate sends exactly that prompt: same logprobs as the plain model given the sentence by hand.
    p = SamplingParams(temperature=0, max_tokens=6, max_thinking_tokens=5, logprobs=True)
    got = eng.generate([MSG], p)[0][0]
    by_hand = engine.generate([with_budget(MSG, 5)], p)[0][0]
    without = engine.generate([MSG], p)[0][0]
    assert got.token_ids == by_hand.token_ids
    assert got.logprobs == pytest.approx(by_hand.logprobs, abs=1e-5)
    assert got.logprobs != pytest.approx(without.logprobs, abs=1e-5)
    assert HFEngine.from_objects(eng.model, eng.tokenizer).budget_prompt is None  # no l2s.json to read
    told = HFEngine.from_objects(eng.model, eng.tokenizer, budget_prompt=BudgetPrompt())
    assert told.render(MSG, budget).ids == sent.ids


def test_bad_checkpoint_is_a_user_error(tmp_path):
    from l2s.engines import get_engine
    from l2s.errors import UserError

    with pytest.raises(UserError, match="checkpoint not found"):
        get_engine("hf", str(tmp_path / "missing"))
    with pytest.raises(UserError, match="unknown engine"):
        get_engine("tgi", str(tmp_path))


def test_vllm_engine_without_vllm_is_a_user_error(pico_ckpt):
    import importlib.util

    from l2s.engines import get_engine
    from l2s.errors import UserError

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here (tests/test_engines_vllm.py runs it)")
    with pytest.raises(UserError, match="needs vLLM"):
        get_engine("vllm", str(pico_ckpt))


def test_uncapped_budget_is_told_but_not_forced(r1_ckpt, tmp_path):
    """`budget_cap=False`: a budget model still reads "Think for at most N tokens.", but no `</think>` is
    forced, so it generates exactly what it does with the sentence written by hand and no budget."""
    import json

    from l2s.budget import with_budget
    from l2s.engines.hf import HFEngine

    ckpt = tmp_path / "budget"
    shutil.copytree(r1_ckpt, ckpt)
    (ckpt / "l2s.json").write_text(json.dumps({"method": "budget", "config": {"budget_form": "max"}}))
    eng = HFEngine(ckpt, batch_size=4)
    kw = dict(n=4, temperature=1.0, max_tokens=12, seed=0)
    told = SamplingParams(**kw, max_thinking_tokens=2, budget_cap=False)
    capped = SamplingParams(**kw, max_thinking_tokens=2)
    assert eng.render(MSG, told).ids == eng.render(MSG, capped).ids  # the same sentence either way
    free = [g.token_ids for g in eng.generate([MSG], told)[0]]
    assert free == [g.token_ids for g in eng.generate([with_budget(MSG, 2)], SamplingParams(**kw))[0]]
    assert all(g.reasoning_tokens <= 2 for g in eng.generate([MSG], capped)[0])
    # The random model seldom closes its think block: told only, it reasons past the budget.
    assert max(g.reasoning_tokens for g in eng.generate([MSG], told)[0]) > 2
