"""Curriculum (easy → hard) and prioritized (∝ 1 − success rate) prompt sampling."""

from __future__ import annotations

from collections import Counter

import pytest

from l2s.rl.curriculum import PromptSampler, curriculum_pool, priority_weights
from l2s.tasks import Problem


def _problems(n=60, levels=(1, 2, 3, 4, 5)):
    return [Problem(f"p{i}", f"q{i}", str(i), levels[i % len(levels)]) for i in range(n)]


def test_curriculum_phases_in_harder_problems():
    s = PromptSampler(_problems(), "curriculum", seed=1, curriculum_iterations=8)
    seen = [max(p.difficulty for p in s.sample(10, it)) for it in range(10)]
    assert seen[0] == 1  # easiest level only at the start
    assert seen == sorted(seen)  # never easier later
    assert seen[-1] == 5  # everything after the curriculum phase
    assert {p.difficulty for p in curriculum_pool(_problems(), 0.5)} == {1, 2, 3}


def test_prioritized_sampling_follows_one_minus_success_rate():
    ps = _problems(4, levels=(1,))
    s = PromptSampler(ps, "prioritized", seed=0, priority_floor=0.0)
    s.record("p0", [True] * 4)  # s = 1   → weight 0
    s.record("p1", [True, True, False, False])  # s = 0.5 → weight 0.5
    s.record("p2", [False] * 4)  # s = 0   → weight 1
    # p3 never tried: s = 0 → weight 1
    counts = Counter(p.id for it in range(4000) for p in s.sample(1, it))
    assert counts["p0"] == 0
    assert counts["p1"] / 4000 == pytest.approx(0.5 / 2.5, abs=0.03)
    assert counts["p2"] / 4000 == pytest.approx(1 / 2.5, abs=0.03)
    assert priority_weights([1.0], floor=0.05) == [0.05]


def test_sampling_is_seeded_distinct_and_resumable():
    ps = _problems()
    a = PromptSampler(ps, "curriculum+prioritized", seed=3, curriculum_iterations=2)
    a.record("p1", [True, False])
    b = PromptSampler(ps, "curriculum+prioritized", seed=3, curriculum_iterations=2)
    b.load_state_dict(a.state_dict())
    assert [p.id for p in a.sample(8, 5)] == [p.id for p in b.sample(8, 5)]
    batch = a.sample(30, 7)
    assert len({p.id for p in batch}) == 30  # without replacement
    assert a.success_rate("p1") == 0.5 and a.success_rate("never") == 0.0
    c = PromptSampler(ps, "curriculum+prioritized", seed=4, curriculum_iterations=2)
    assert [p.id for p in a.sample(8, 5)] != [p.id for p in c.sample(8, 5)]


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="unknown sampling strategy"):
        PromptSampler(_problems(), "random")
