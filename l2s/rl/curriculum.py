"""Which prompts an RL iteration trains on: curriculum and prioritized sampling (Kimi k1.5 §2.3.4).

- Curriculum: easy problems first, then hard ones. The pool of eligible problems grows with training
  progress, by `Problem.difficulty`: at progress p ∈ [0, 1] of the curriculum phase the pool holds the
  difficulties up to the p-quantile of the difficulty range (always at least the easiest level).
- Prioritized: problem i is drawn with probability ∝ (1 − s_i), s_i its success rate so far (tracked
  per prompt from the rollouts). A small floor keeps solved problems from vanishing entirely.

Sampling is seeded per iteration (seed, iteration), so a resumed run draws the same prompts it would
have drawn. Small and specific to the report, so written here.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from l2s.tasks import Problem

STRATEGIES = ("uniform", "curriculum", "prioritized", "curriculum+prioritized")


def curriculum_pool(problems: Sequence[Problem], progress: float) -> list[Problem]:
    """The problems eligible at `progress` ∈ [0, 1]: difficulties up to a threshold growing linearly.

    >>> ps = [Problem(str(d), "q", "1", d) for d in (1, 2, 3, 3, 5)]
    >>> [p.difficulty for p in curriculum_pool(ps, 0.0)]
    [1]
    >>> [p.difficulty for p in curriculum_pool(ps, 0.5)]
    [1, 2, 3, 3]
    >>> len(curriculum_pool(ps, 1.0))
    5
    """
    lo = min(p.difficulty for p in problems)
    hi = max(p.difficulty for p in problems)
    threshold = lo + max(0.0, min(1.0, progress)) * (hi - lo)
    return [p for p in problems if p.difficulty <= threshold]


def priority_weights(success_rates: Sequence[float], floor: float = 0.05) -> list[float]:
    """Sampling weight ∝ (1 − s_i), never below `floor` (report §2.3.4).

    >>> priority_weights([0.0, 0.5, 1.0], floor=0.05)
    [1.0, 0.5, 0.05]
    """
    return [max(floor, 1.0 - s) for s in success_rates]


class PromptSampler:
    """Draws each iteration's prompts by `strategy`; `record` feeds back per-prompt success.

    >>> ps = [Problem(f"p{i}", "q", "1", 1 + i % 3) for i in range(30)]
    >>> s = PromptSampler(ps, "curriculum", seed=0, curriculum_iterations=10)
    >>> {p.difficulty for p in s.sample(5, iteration=0)}
    {1}
    >>> s.sample(5, iteration=3) == s.sample(5, iteration=3)   # seeded by (seed, iteration)
    True
    """

    def __init__(
        self,
        problems: Sequence[Problem],
        strategy: str = "curriculum+prioritized",
        seed: int = 0,
        curriculum_iterations: int = 1,
        priority_floor: float = 0.05,
    ):
        if strategy not in STRATEGIES:
            raise ValueError(
                f"unknown sampling strategy '{strategy}'; choose one of: {', '.join(STRATEGIES)}"
            )
        if not problems:
            raise ValueError("PromptSampler needs at least one problem")
        self.problems = list(problems)
        self.strategy = strategy
        self.seed = seed
        self.curriculum_iterations = max(1, curriculum_iterations)
        self.priority_floor = priority_floor
        self.successes: dict[str, float] = {}
        self.trials: dict[str, int] = {}

    def success_rate(self, problem_id: str) -> float:
        """Fraction of this prompt's rollouts that were correct so far (0 if never tried)."""
        n = self.trials.get(problem_id, 0)
        return self.successes.get(problem_id, 0.0) / n if n else 0.0

    def record(self, problem_id: str, correct: Sequence[bool]) -> None:
        """Add the outcomes of one prompt's rollouts to its success statistics."""
        self.successes[problem_id] = self.successes.get(problem_id, 0.0) + sum(bool(c) for c in correct)
        self.trials[problem_id] = self.trials.get(problem_id, 0) + len(correct)

    def sample(self, n: int, iteration: int) -> list[Problem]:
        """`n` distinct problems for `iteration` (fewer if the eligible pool is smaller)."""
        rng = random.Random(f"{self.seed}:{iteration}")
        pool = self.problems
        if "curriculum" in self.strategy:
            pool = curriculum_pool(pool, iteration / self.curriculum_iterations)
        n = min(n, len(pool))
        if "prioritized" not in self.strategy:
            return rng.sample(pool, n)
        weights = priority_weights([self.success_rate(p.id) for p in pool], self.priority_floor)
        return _weighted_sample_without_replacement(rng, pool, weights, n)

    def state_dict(self) -> dict[str, Any]:
        return {"successes": self.successes, "trials": self.trials}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.successes = {k: float(v) for k, v in state.get("successes", {}).items()}
        self.trials = {k: int(v) for k, v in state.get("trials", {}).items()}


def _weighted_sample_without_replacement(
    rng: random.Random, items: Sequence[Problem], weights: Sequence[float], n: int
) -> list[Problem]:
    """Efraimidis–Spirakis: keep the n largest u^(1/w) keys, so each draw is ∝ weight among the rest.

    >>> rng = random.Random(0)
    >>> ps = [Problem(str(i), "q", "1") for i in range(3)]
    >>> sorted(p.id for p in _weighted_sample_without_replacement(rng, ps, [1.0, 1.0, 1.0], 3))
    ['0', '1', '2']
    """
    # log(u)/w orders the same as u^(1/w); a zero weight sorts last (drawn only if nothing else is left).
    keyed = [(math.log(1.0 - rng.random()) / w if w > 0 else -math.inf, i) for i, w in enumerate(weights)]
    keyed.sort(reverse=True)
    return [items[i] for _, i in keyed[:n]]
