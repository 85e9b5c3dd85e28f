"""The embedded `arith` task and its traces."""

from __future__ import annotations

import random
import re
import statistics

import pytest

from l2s.errors import UserError
from l2s.grading import extract_answer, grade, split_reasoning
from l2s.tasks import get_task
from l2s.tasks.arith import (
    MIXED_DIFFICULTIES,
    ArithTask,
    canonical,
    evaluate,
    long_trace,
    parse_expr,
    short_trace,
    split_of,
)


def _expr(p):
    return p.prompt.removeprefix("Compute ").split(".")[0]


def test_deterministic_and_prefix_stable():
    a = ArithTask(seed=0).problems("test", 300)
    assert a == ArithTask(seed=0).problems("test", 300)
    assert ArithTask(seed=0).problems("test", 100) == a[:100]
    assert ArithTask(seed=1).problems("test", 300) != a


def test_ids_answers_and_registry():
    probs = get_task("arith", seed=0).problems("train", 50)
    assert [p.id for p in probs[:2]] == ["arith-train-000000", "arith-train-000001"]
    assert len({p.id for p in probs}) == 50
    for p in probs:
        assert p.answer == str(evaluate(_expr(p)))
        assert int(p.answer) >= 0
        assert p.prompt == f"Compute {_expr(p)}." and " " not in _expr(p)


def test_splits_disjoint_by_construction():
    test = ArithTask(seed=0).problems("test")
    assert len(test) >= 5000 and len({canonical(_expr(p)) for p in test}) == len(test)
    train = {canonical(_expr(p)) for p in ArithTask(seed=0).problems("train")}
    assert not train & {canonical(_expr(p)) for p in test}
    # Another seed draws other problems, but the split of an expression never changes.
    other = ArithTask(seed=7).problems("train", 2000)
    assert all(split_of(_expr(p)) == "train" for p in other)


def test_difficulty_knob():
    for d, n in ((1, 15), (3, 40), (6, 40)):  # difficulty 1 has only 90 expressions, 17 of them held out
        probs = ArithTask(difficulty=d).problems("test", n)
        assert {p.difficulty for p in probs} == {d}
        assert all(canonical(_expr(p)).count(" + ") + canonical(_expr(p)).count(" - ") == d for p in probs)
    mixed = ArithTask().problems("test", 400)
    assert {p.difficulty for p in mixed} == set(MIXED_DIFFICULTIES)
    for bad in (0, 9, "3", 2.5, True):
        with pytest.raises(UserError, match="difficulty"):
            ArithTask(difficulty=bad)


def test_bad_split_and_n():
    with pytest.raises(UserError, match="unknown split 'dev'"):
        ArithTask().problems("dev")
    with pytest.raises(UserError, match=">= 0"):
        ArithTask().problems("test", -1)


def test_traces_are_graded_correct():
    probs = ArithTask().problems("test", 200)
    rng = random.Random(0)
    longs = [long_trace(p, rng) for p in probs]
    shorts = [short_trace(p) for p in probs]
    answers = [p.answer for p in probs]
    assert grade(longs, answers) == [True] * len(probs)
    assert grade(shorts, answers) == [True] * len(probs)
    for text in longs + shorts:
        assert text.startswith("<think>\n") and "\n</think>\nAnswer: " in text
    # A wrong final line is graded wrong: the traces carry the answer, not the grader.
    assert grade([longs[0].rsplit(" ", 1)[0] + " 99999"], answers[:1]) == [False]


def test_long_traces_vary_and_short_is_shorter():
    rng = random.Random(0)
    for p in ArithTask().problems("test", 30):
        lengths = [len(long_trace(p, rng)) for _ in range(16)]
        assert max(lengths) / min(lengths) >= 1.5
        assert len(short_trace(p)) < min(lengths)
        reasoning, answer = split_reasoning(short_trace(p))
        assert reasoning == "" and extract_answer(short_trace(p)) == p.answer
    # Pure functions of (problem, rng): same rng state, same trace.
    p = ArithTask().problems("test", 1)[0]
    assert long_trace(p, random.Random(5)) == long_trace(p, random.Random(5))


def test_every_step_of_a_long_trace_is_true_or_corrected():
    """The chain writes the first number, then one `<op><n>=<total>` line per operation in the prompt's
    order; every total is right, except a slip, which the next line catches ("wait, check: ... fix:")."""
    rng = random.Random(1)
    slips = 0
    for p in ArithTask().problems("train", 300):
        lines = split_reasoning(long_trace(p, rng))[0].splitlines()
        first, terms = parse_expr(_expr(p))
        chain = [i for i, line in enumerate(lines) if line.isdigit() or re.fullmatch(r"[+-]\d=\d", line)]
        assert lines[chain[0]] == str(first)
        total, todo = first, list(terms)
        for i in chain[1:]:
            op, n, result = lines[i][0], int(lines[i][1]), int(lines[i][3])
            assert (op, n) == todo[0]
            want = total + n if op == "+" else total - n
            if result != want:
                slips += 1
                assert lines[i + 1].startswith("wait, check:") and lines[i + 1].endswith("fix:")
                continue
            total, todo = want, todo[1:]
        assert todo == [] and total == int(p.answer)
    assert slips > 0


def test_no_operation_repeats_within_an_expression():
    for p in ArithTask(difficulty=8).problems("train", 200):
        terms = parse_expr(_expr(p))[1]
        assert len(terms) == len(set(terms))


def test_optional_parts_are_most_of_a_long_trace():
    """The essential chain vs the whole reasoning, in the embedded tokenizer's tokens: the optional
    parts (what long2short methods may remove) are about two thirds."""
    from l2s.embedded.corpus import tokenizer_corpus
    from l2s.embedded.tokenizer import build_tokenizer

    tok = build_tokenizer(tokenizer_corpus(ArithTask().problems("train", 300), seed=0))
    rng = random.Random(2)
    shares = []
    for p in ArithTask().problems("train", 300):
        lines = split_reasoning(long_trace(p, rng))[0].splitlines()
        n_tokens = [len(tok(line + "\n")["input_ids"]) for line in lines]
        essential = [
            n
            for line, n in zip(lines, n_tokens, strict=True)
            if line.isdigit() or re.fullmatch(r"[+-]\d=\d", line)
        ]
        shares.append(sum(essential) / sum(n_tokens))
    assert 0.25 <= statistics.mean(shares) <= 0.45, statistics.mean(shares)


def test_a_line_limit_leaves_optional_parts_out_never_the_chain():
    """`long_trace(max_lines=n)`: the think block keeps to n lines where the essential chain fits, is
    the unlimited trace with parts left out (the same draws), and is still right."""
    from l2s.grading import grade

    for p in ArithTask().problems("train", 200):
        chain = 1 + len(parse_expr(_expr(p))[1])
        for seed in range(3):
            full = split_reasoning(long_trace(p, random.Random(seed)))[0].splitlines()
            for n in (0, chain, chain + 2, 99):
                text = long_trace(p, random.Random(seed), max_lines=n)
                lines = split_reasoning(text)[0].splitlines()
                assert len(lines) <= max(n, chain) and grade([text], [p.answer]) == [True]
                it = iter(full)
                assert all(line in it for line in lines)  # a subsequence of the unlimited trace
            assert split_reasoning(long_trace(p, random.Random(seed), max_lines=99))[0].splitlines() == full
