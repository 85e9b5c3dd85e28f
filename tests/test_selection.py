"""Property tests of the selection rules (shortest correct, Kimi's 1.5x preference pairs, length stats)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2s.selection import length_stats, percentile, preference_pairs, shortest_correct


@st.composite
def sample_sets(draw):
    """Records for a few prompts, each with a few samples of random length and correctness."""
    records = []
    for p in range(draw(st.integers(1, 4))):
        for i in range(draw(st.integers(1, 6))):
            tokens = draw(st.integers(1, 60))
            records.append(
                dict(
                    prompt_id=f"p{p}",
                    sample_idx=i,
                    prompt=f"prompt {p}",
                    completion=f"p{p}-s{i}",
                    completion_tokens=tokens,
                    reasoning_tokens=draw(st.integers(0, tokens)),
                    correct=draw(st.booleans()),
                )
            )
    return draw(st.permutations(records))


@settings(deadline=None)
@given(sample_sets())
def test_shortest_correct_is_correct_and_minimal(samples):
    best = shortest_correct(samples)
    assert set(best) == {s["prompt_id"] for s in samples if s["correct"]}
    for pid, b in best.items():
        assert b["correct"]
        for s in samples:
            if s["prompt_id"] == pid and s["correct"]:
                assert (b["completion_tokens"], b["sample_idx"]) <= (s["completion_tokens"], s["sample_idx"])


@settings(deadline=None)
@given(sample_sets(), st.sampled_from([1.0, 1.5, 2.0]))
def test_preference_pairs_follow_the_kimi_rule(samples, ratio):
    best = shortest_correct(samples)
    pairs = preference_pairs(samples, ratio=ratio)
    by_completion = {s["completion"]: s for s in samples}
    for pair in pairs:
        chosen = best[pair["prompt_id"]]
        assert pair["chosen"] == chosen["completion"] and pair["prompt"] == chosen["prompt"]
        rejected = by_completion[pair["rejected"]]
        assert rejected is not chosen
        assert not rejected["correct"] or rejected["completion_tokens"] >= ratio * chosen["completion_tokens"]
        assert pair["rejected_correct"] == rejected["correct"]
    # Every qualifying sample is rejected exactly once, and nothing else.
    expected = sorted(
        s["completion"]
        for s in samples
        if s["prompt_id"] in best
        and s is not best[s["prompt_id"]]
        and (not s["correct"] or s["completion_tokens"] >= ratio * best[s["prompt_id"]]["completion_tokens"])
    )
    assert sorted(p["rejected"] for p in pairs) == expected


@settings(deadline=None)
@given(sample_sets(), st.integers(1, 3))
def test_max_pairs_per_prompt_caps_each_prompt(samples, cap):
    full = preference_pairs(samples)
    capped = preference_pairs(samples, max_pairs_per_prompt=cap)
    for pid in {p["prompt_id"] for p in full}:
        n_full = sum(p["prompt_id"] == pid for p in full)
        assert sum(p["prompt_id"] == pid for p in capped) == min(cap, n_full)


def test_ratio_below_one_is_refused():
    with pytest.raises(ValueError, match="ratio"):
        preference_pairs([], ratio=0.5)


@settings(deadline=None)
@given(sample_sets())
def test_length_stats_are_ordered(samples):
    s = length_stats(samples)
    assert s["n"] == len(samples)
    assert s["min"] <= s["p50"] <= s["p90"] <= s["max"]
    assert s["min"] <= s["mean"] <= s["max"]
    assert math.isnan(s["max_min_ratio"]) or s["max_min_ratio"] >= 1
    assert s["accuracy"] == pytest.approx(sum(x["correct"] for x in samples) / len(samples))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=30), st.floats(0, 100))
def test_percentile_matches_numpy(values, q):
    np = pytest.importorskip("numpy")
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-6)
