"""RL rewards: correctness from the shared grader and Kimi k1.5's length reward (arXiv 2501.12599, §2.3.3).

Every reward follows TRL's convention (`trl/rewards/`): a pure function `f(completions, **kwargs) ->
list[float]`, one value per completion; dataset columns and rollout facts arrive as keyword lists.
The k completions of one prompt are consecutive (`group_size` = k), as in TRL's GRPO batches.

The length reward is Kimi's, computed within each group of k samples, in tokens of the model's own
tokenizer: λ = 0.5 − (len − min_len)/(max_len − min_len); a correct response earns λ, a wrong one
min(0, λ); all lengths equal → 0. One option departs from the report: `wrong="none"` gives a wrong
answer no length term at all. Under min(0, λ) the shorter of two wrong answers scores higher, so when
every rollout of a hard prompt fails (cut off at the maximum length, or one step short), stopping a
step early is what gets reinforced; with "none" a wrong answer earns nothing either way. The report
adds the length reward to the task reward with a weight after a warm-up of plain RL ("turning it on
from the start slowed training"). No library ships it, hence this module.

Budget-conditioned RL (L1 / LCPO, Aggarwal & Welleck 2025, arXiv 2503.04697) replaces the length reward
with a penalty against the thinking budget N stated in the prompt, in reasoning tokens (those inside the
think block): form "max" charges only the tokens over N, α·max(0, used − N)/N (L1-Max's "at most");
form "exact" charges any miss, α·|used − N|/N (L1-Exact).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from l2s.grading import grade

if TYPE_CHECKING:
    from l2s.rl.config import RLConfig
    from l2s.rl.rollouts import Group


def correctness_reward(
    completions: Sequence[str],
    answer: Sequence[str],
    grader: str = "flexible",
    think_opened: bool = False,
    **_,
) -> list[float]:
    """1.0 for a completion whose final answer the shared grader accepts, else 0.0.

    `grader="strict"` reads only boxed answers and explicit final-answer lines (l2s.grading), so a
    policy cannot earn reward by ending on a lucky number. `think_opened`: the chat template opened the
    think block in the prompt (R1-distill style), so a completion that never closes it has no answer.

    >>> correctness_reward(["<think>\\n2+2=4\\n</think>\\nAnswer: 4", "Answer: 5"], answer=["4", "4"])
    [1.0, 0.0]
    """
    ok = grade(list(completions), list(answer), grader=grader, think_opened=think_opened)
    return [1.0 if c else 0.0 for c in ok]


WRONG_LENGTH = ("kimi", "none")  # a wrong answer's length term: min(0, λ) as the report, or none


def group_length_reward(lengths: Sequence[int], correct: Sequence[bool], wrong: str = "kimi") -> list[float]:
    """Kimi's length reward for the k samples of one prompt (§2.3.3).

    λ_i = 0.5 − (len_i − min_len)/(max_len − min_len); correct → λ_i, wrong → min(0, λ_i) (`wrong="kimi"`)
    or 0 (`wrong="none"`).

    The shortest correct answer gets +0.5, the longest −0.5, a middle one in between:
    >>> group_length_reward([100, 200, 300], [True, True, True])
    [0.5, 0.0, -0.5]

    A wrong answer is never rewarded for being short, only penalized for being long:
    >>> group_length_reward([100, 200, 300], [False, False, False])
    [0.0, 0.0, -0.5]

    With `wrong="none"` a wrong answer gets no length term, long or short; correct ones keep theirs:
    >>> group_length_reward([100, 200, 300], [False, True, False], wrong="none")
    [0.0, 0.0, 0.0]
    >>> group_length_reward([100, 200, 300], [True, False, True], wrong="none")
    [0.5, 0.0, -0.5]

    All lengths equal: the length reward is 0:
    >>> group_length_reward([64, 64], [True, False])
    [0.0, 0.0]
    """
    if len(lengths) != len(correct):
        raise ValueError(f"{len(lengths)} lengths but {len(correct)} correctness flags")
    if wrong not in WRONG_LENGTH:
        raise ValueError(f"wrong={wrong!r}: choose one of {', '.join(WRONG_LENGTH)}")
    lo, hi = min(lengths), max(lengths)
    if hi == lo:
        return [0.0] * len(lengths)
    lambdas = [0.5 - (n - lo) / (hi - lo) for n in lengths]
    if wrong == "none":
        return [lam if ok else 0.0 for lam, ok in zip(lambdas, correct, strict=True)]
    return [lam if ok else min(0.0, lam) for lam, ok in zip(lambdas, correct, strict=True)]


def length_reward(
    completions: Sequence[str],
    completion_tokens: Sequence[int],
    correct: Sequence[bool],
    group_size: int,
    wrong: str = "kimi",
    **_,
) -> list[float]:
    """`group_length_reward` over a batch of consecutive groups of `group_size` completions.

    >>> length_reward(["a", "bb", "c", "d"], completion_tokens=[10, 20, 7, 7],
    ...               correct=[True, False, True, True], group_size=2)
    [0.5, -0.5, 0.0, 0.0]
    """
    n = len(completions)
    if n % group_size or len(completion_tokens) != n or len(correct) != n:
        raise ValueError(f"length_reward: {n} completions do not form groups of {group_size}")
    out: list[float] = []
    for start in range(0, n, group_size):
        stop = start + group_size
        out += group_length_reward(completion_tokens[start:stop], correct[start:stop], wrong)
    return out


def repeat_penalty(
    completions: Sequence[str], repeated: Sequence[bool], penalty: float = 0.5, **_
) -> list[float]:
    """−penalty for a rollout stopped as a degenerate loop (report §2.6.2: such rollouts "may be penalized").

    `repeated` comes from `l2s.rl.rollouts.ends_in_repeat`, checked as the rollout is generated.

    >>> repeat_penalty(["x", "y"], repeated=[False, True], penalty=0.5)
    [0.0, -0.5]
    """
    return [-penalty if r else 0.0 for r in repeated]


def length_weight_at(iteration: int, weight: float, warmup_iterations: int) -> float:
    """The length reward's weight at `iteration` (0-based): off during the warm-up, then `weight`.

    >>> [length_weight_at(i, 0.5, 2) for i in range(4)]
    [0.0, 0.0, 0.5, 0.5]
    """
    return weight if iteration >= warmup_iterations else 0.0


def kimi_reward(
    completions: Sequence[str],
    answer: Sequence[str],
    completion_tokens: Sequence[int],
    repeated: Sequence[bool],
    group_size: int,
    length_weight: float = 0.0,
    repeat_weight: float = 0.0,
    grader: str = "flexible",
    think_opened: bool = False,
    wrong_length: str = "kimi",
) -> dict[str, list[float]]:
    """The total RL reward and its parts: correctness + length_weight·length + repeat penalty
    (`wrong_length`: a wrong answer's length term, see `group_length_reward`).

    >>> parts = kimi_reward(["Answer: 4", "<think>\\nlong\\n</think>\\nAnswer: 4"], ["4", "4"],
    ...                     completion_tokens=[3, 9], repeated=[False, False], group_size=2, length_weight=0.5)
    >>> parts["reward"], parts["length"]
    ([1.25, 0.75], [0.5, -0.5])
    """
    correct_f = correctness_reward(completions, answer, grader=grader, think_opened=think_opened)
    correct = [c > 0 for c in correct_f]
    length = length_reward(completions, completion_tokens, correct, group_size, wrong=wrong_length)
    repeat = repeat_penalty(completions, repeated, penalty=repeat_weight)
    total = [c + length_weight * n + p for c, n, p in zip(correct_f, length, repeat, strict=True)]
    return {"reward": total, "correct": correct_f, "length": length, "repeat": repeat}


def budget_penalty(used: int, budget: int, form: str = "max") -> float:
    """How far `used` reasoning tokens miss a budget of `budget`, as a fraction of the budget (≥ 0).

    "max" (at most N): only the overrun counts:
    >>> [budget_penalty(u, 20) for u in (10, 20, 30)]
    [0.0, 0.0, 0.5]

    "exact" (exactly N): under and over count alike:
    >>> [budget_penalty(u, 20, "exact") for u in (10, 20, 30)]
    [0.5, 0.0, 0.5]
    """
    if budget < 1:
        raise ValueError(f"a thinking budget must be >= 1 token, got {budget}")
    if form == "max":
        return max(0, used - budget) / budget
    if form == "exact":
        return abs(used - budget) / budget
    raise ValueError(f"unknown budget form '{form}'; choose max or exact")


def budget_reward(
    completions: Sequence[str],
    reasoning_tokens: Sequence[int],
    budget: Sequence[int],
    alpha: float = 1.0,
    form: str = "max",
    **_,
) -> list[float]:
    """−alpha · `budget_penalty` per completion: `reasoning_tokens` against the `budget` its prompt stated.

    >>> budget_reward(["a", "b", "c"], reasoning_tokens=[8, 16, 24], budget=[16, 16, 16], alpha=0.5)
    [0.0, 0.0, -0.25]
    >>> budget_reward(["a", "b", "c"], reasoning_tokens=[8, 16, 24], budget=[16, 16, 16], form="exact")
    [-0.5, 0.0, -0.5]
    """
    if not len(completions) == len(reasoning_tokens) == len(budget):
        raise ValueError(f"budget_reward: {len(completions)} completions but {len(budget)} budgets")
    return [0.0 - alpha * budget_penalty(u, n, form) for u, n in zip(reasoning_tokens, budget, strict=True)]


def budgeted_reward(
    completions: Sequence[str],
    answer: Sequence[str],
    reasoning_tokens: Sequence[int],
    budget: Sequence[int],
    repeated: Sequence[bool],
    alpha: float = 1.0,
    form: str = "max",
    repeat_weight: float = 0.0,
    grader: str = "flexible",
    think_opened: bool = False,
) -> dict[str, list[float]]:
    """The budget-conditioned RL reward and its parts: correctness + budget penalty + repeat penalty.

    Under, at and over a budget of 8 ("max": only the overrun costs):
    >>> done = ["<think>\\nx\\n</think>\\nAnswer: 4"] * 3
    >>> budgeted_reward(done, ["4"] * 3, [4, 8, 12], [8] * 3, [False] * 3, alpha=1.0)["reward"]
    [1.0, 1.0, 0.5]

    "exact": missing the budget either way costs; a wrong answer earns nothing to offset it:
    >>> parts = budgeted_reward(done, ["4", "4", "5"], [4, 8, 12], [8] * 3, [False] * 3, form="exact")
    >>> parts["reward"], parts["budget"]
    ([0.5, 1.0, -0.5], [-0.5, 0.0, -0.5])
    """
    correct = correctness_reward(completions, answer, grader=grader, think_opened=think_opened)
    budget_part = budget_reward(completions, reasoning_tokens, budget, alpha=alpha, form=form)
    repeat = repeat_penalty(completions, repeated, penalty=repeat_weight)
    total = [c + b + p for c, b, p in zip(correct, budget_part, repeat, strict=True)]
    return {"reward": total, "correct": correct, "budget": budget_part, "repeat": repeat}


# ---------------------------------------------------------------------------------------------------
# The rewards of an RL iteration's finished rollout groups.


def score_groups(
    cfg: RLConfig,
    groups: Sequence[Group],
    texts: Sequence[str],
    markers: Any,
    eos_ids: set[int],
    length_weight: float,
) -> dict[str, list]:
    """The rewards (and their parts) of an iteration's finished groups, `texts` their decoded rollouts:
    Kimi's (correctness + length), or the budget-conditioned one (correctness − budget penalty), whose
    parts also hold each rollout's reasoning tokens."""
    from l2s.engines.completion import opens_think

    if not groups:
        return {"reward": [], "correct": []}
    trajs = [t for g in groups for t in g.trajectories]
    common = dict(
        answer=[g.problem.answer for g in groups for _ in g.trajectories],
        repeated=[t.repeated for t in trajs],
        repeat_weight=cfg.repeat_penalty,
        grader=cfg.grader,
        think_opened=opens_think(groups[0].prompt_text),
    )
    if not cfg.budgeted:
        tokens = [t.completion_tokens for t in trajs]
        return kimi_reward(
            texts,
            completion_tokens=tokens,
            group_size=cfg.k,
            length_weight=length_weight,
            wrong_length=cfg.wrong_answer_length,
            **common,
        )
    reasoning = [
        budget_tokens(_without_eos(t.token_ids, eos_ids), markers, opens_think(g.prompt_text))
        for g in groups
        for t in g.trajectories
    ]
    budgets = [g.budget for g in groups for _ in g.trajectories]
    parts = budgeted_reward(
        texts,
        reasoning_tokens=reasoning,
        budget=budgets,
        alpha=cfg.budget_alpha,
        form=cfg.budget_form,
        **common,
    )
    return parts | {"reasoning_tokens": reasoning}


def budget_tokens(ids: Sequence[int], markers: Any, think_opened: bool = False) -> int:
    """The reasoning tokens a rollout is charged against its budget: those inside the think block.

    A completion that does not open the think block itself is thinking from its first token, as if the
    template had opened it: otherwise a policy could drop `<think>`, reason in the open and answer after a
    bare `</think>` at no cost (a sampled rollout does that now and then, and RL spreads it quickly).

    >>> from l2s.engines.completion import ThinkMarkers
    >>> m = ThinkMarkers(open_ids=(1,), close_ids=(2,))
    >>> budget_tokens([1, 7, 7, 2, 9], m), budget_tokens([7, 7, 7, 2, 9], m), budget_tokens([9, 9], m)
    (2, 3, 2)
    """
    from l2s.engines.completion import count_reasoning_tokens

    opened = think_opened or tuple(ids[: len(markers.open_ids)]) != tuple(markers.open_ids)
    return count_reasoning_tokens(ids, markers, think_opened=opened)


def _without_eos(ids: list[int], eos_ids: set[int]) -> list[int]:
    return ids[:-1] if ids and ids[-1] in eos_ids else ids
