"""Answer confidence from engine logprobs, and the calibration rule auto mode relies on."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2s.confidence import calibrate, confidence, simulate_auto
from l2s.engines.base import Generation, SamplingParams
from l2s.engines.completion import ThinkMarkers, make_generation


def test_answer_span_covers_the_extracted_answer(pico_tokenizer):
    tok = pico_tokenizer
    text = "<think>\n12 + 30 = 42\n</think>\nAnswer: 42"
    ids = tok.encode(text) + [tok.eos_token_id]
    lps = [-0.01] * len(ids)
    g = make_generation(
        tok, ids, eos_ids={tok.eos_token_id}, markers=ThinkMarkers.of(tok), think_opened=False, logprobs=lps
    )
    lo, hi = g.extra["answer_tokens"]
    assert tok.decode(ids[lo:hi]) == "42"
    lps[lo] = math.log(0.3)  # an unsure first digit is what confidence reports
    g.logprobs = lps
    assert confidence(g) == pytest.approx(0.3)


def test_no_answer_means_no_confidence(pico_tokenizer):
    tok = pico_tokenizer
    ids = tok.encode("<think>\nAnswer: 3\n</think>\nno final line")
    g = make_generation(
        tok, ids, eos_ids=set(), markers=ThinkMarkers.of(tok), think_opened=False, logprobs=[0.0] * len(ids)
    )
    assert g.extra["answer_tokens"] is None and confidence(g) == 0.0
    with pytest.raises(ValueError, match="logprobs"):
        confidence(Generation("Answer: 1", [1], "stop", "", "Answer: 1", 0))


@pytest.mark.slow
def test_engine_confidence_is_a_probability(pico_ckpt):
    from l2s.engines.hf import HFEngine

    g = HFEngine(pico_ckpt).generate(["Answer:"], SamplingParams(n=4, max_tokens=6, seed=0, logprobs=True))[0]
    assert all(0.0 <= confidence(x) <= 1.0 for x in g)


@st.composite
def paired(draw):
    n = draw(st.integers(1, 30))
    short = [
        dict(prompt_id=str(i), sample_idx=0, correct=draw(st.booleans()),
             confidence=draw(st.sampled_from([0.1, 0.4, 0.7, 0.9, 1.0])), completion_tokens=5)
        for i in range(n)
    ]  # fmt: skip
    long = [
        dict(prompt_id=str(i), sample_idx=0, correct=draw(st.booleans()), completion_tokens=50)
        for i in range(n)
    ]
    return short, long


@settings(deadline=None)
@given(paired(), st.sampled_from([0.0, 0.01, 0.1, 0.3]))
def test_threshold_is_the_lowest_within_the_tolerance_of_long(data, tolerance):
    short, long = data
    cal = calibrate(short, long, tolerance=tolerance)
    t, long_acc = cal["threshold"], cal["long_accuracy"]

    def auto_acc(th):
        return simulate_auto(short, long, th)["accuracy"]

    lower = [c for c in {0.0} | {s["confidence"] for s in short} if c < t]
    assert all(auto_acc(c) < long_acc - tolerance - 1e-12 for c in lower)  # none lower qualifies
    assert auto_acc(t) >= long_acc - tolerance - 1e-12 or t == 1.0
    auto = simulate_auto(short, long, t)
    assert auto == cal["auto"] and cal["tolerance"] == tolerance
    kept = [s["correct"] for s in short if s["confidence"] >= t]
    assert cal["accepted_fraction"] == len(kept) / len(short)
    assert min(s["completion_tokens"] for s in short) <= auto["mean_tokens"] <= 55


@settings(deadline=None)
@given(paired())
def test_a_larger_tolerance_never_escalates_more(data):
    short, long = data
    escalated = [calibrate(short, long, tolerance=tol)["auto"]["escalated"] for tol in (0.0, 0.02, 0.1, 0.5)]
    assert escalated == sorted(escalated, reverse=True)
