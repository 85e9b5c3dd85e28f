"""Kimi's length reward (§2.3.3), correctness from the shared grader, warm-up and repeat penalty."""

from __future__ import annotations

import pytest

from l2s.rl.rewards import (
    correctness_reward,
    group_length_reward,
    kimi_reward,
    length_reward,
    length_weight_at,
    repeat_penalty,
)


def test_length_reward_formula_on_a_group():
    lengths = [120, 200, 360, 120]
    correct = [True, False, True, False]
    # λ = 0.5 − (len − 120)/(360 − 120) = (0.5, 0.1667, −0.5, 0.5); wrong → min(0, λ).
    assert group_length_reward(lengths, correct) == pytest.approx([0.5, 0.0, -0.5, 0.0])


def test_wrong_answers_are_penalized_only_when_long():
    assert group_length_reward([10, 30], [False, False]) == [0.0, -0.5]


def test_equal_lengths_give_zero():
    assert group_length_reward([7, 7, 7], [True, False, True]) == [0.0, 0.0, 0.0]


def test_length_reward_is_per_group():
    # The same completion length earns different rewards in different groups: only its group's range counts.
    got = length_reward(["a"] * 4, completion_tokens=[50, 100, 100, 150], correct=[True] * 4, group_size=2)
    assert got == [0.5, -0.5, 0.5, -0.5]
    with pytest.raises(ValueError, match="groups of 3"):
        length_reward(["a"] * 4, completion_tokens=[1] * 4, correct=[True] * 4, group_size=3)


def test_correctness_uses_the_shared_grader():
    completions = ["<think>\n3+4=7\n</think>\nAnswer: 7", r"\boxed{7}", "Answer: 8", "no answer"]
    assert correctness_reward(completions, answer=["7"] * 4) == [1.0, 1.0, 0.0, 0.0]


def test_warm_up_turns_the_length_reward_on_later():
    assert [length_weight_at(i, 0.3, 3) for i in range(5)] == [0.0, 0.0, 0.0, 0.3, 0.3]
    assert length_weight_at(0, 0.3, 0) == 0.3


def test_total_reward_combines_parts():
    parts = kimi_reward(
        ["Answer: 4", "Answer: 4", "Answer: 5", "Answer: 4"],
        ["4"] * 4,
        completion_tokens=[10, 30, 20, 20],
        repeated=[False, False, False, True],
        group_size=2,
        length_weight=0.2,
        repeat_weight=0.5,
    )
    assert parts["correct"] == [1.0, 1.0, 0.0, 1.0]
    assert parts["length"] == [0.5, -0.5, 0.0, 0.0]
    assert parts["reward"] == pytest.approx([1.1, 0.9, 0.0, 0.5])
    assert repeat_penalty(["x"], repeated=[True], penalty=0.0) == [-0.0]


def test_wrong_answer_length_none_takes_the_length_term_off_wrong_answers_only():
    """`wrong_answer_length: none` (RLConfig): a group where every sample is wrong gets no length
    reward, so stopping early earns nothing; correct answers keep Kimi's λ. The config reaches the reward
    through `score_groups`, the function the trainer calls."""
    from l2s.rl.config import RLConfig
    from l2s.rl.rewards import score_groups
    from l2s.rl.rollouts import Group, Segment, Trajectory
    from l2s.tasks import Problem

    def group(pid: str, answer: str, lengths: list[int]) -> Group:
        trajs = [Trajectory(i, [Segment(list(range(n)), 0)], "stop") for i, n in enumerate(lengths)]
        return Group(Problem(pid, "Compute 2+2.", answer), "Compute 2+2.", [1], 0, trajs)

    groups = [group("a", "5", [10, 30]), group("b", "4", [10, 30])]  # all wrong, then all right
    texts = ["Answer: 4", "Answer: 4", "Answer: 4", "Answer: 4"]
    for wrong, want in (("kimi", [0.0, -0.5, 0.5, -0.5]), ("none", [0.0, 0.0, 0.5, -0.5])):
        cfg = RLConfig(init="x", out="y", k=2, wrong_answer_length=wrong)
        assert score_groups(cfg, groups, texts, None, set(), length_weight=1.0)["length"] == want
    with pytest.raises(ValueError, match="wrong_answer_length"):
        RLConfig(init="x", out="y", wrong_answer_length="zero")
