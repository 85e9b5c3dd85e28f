"""The grader on completions written the way real models write them (tests/data/grading_corpus.jsonl).

Each row holds a completion, its reference, the answer a careful human reads in it (`expected_answer`,
null when there is none) and that human's verdict under each grader: `flexible` (any final expression
counts) and `strict` (only a boxed answer or an explicit final-answer phrase counts). Rows tagged with a
`reason` are the documented cases where math-verify, reading the same text, is wrong and l2s is right.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from l2s.grading import GRADERS, answer_span, extract_answer, grade, graded_start

CORPUS = Path(__file__).parent / "data" / "grading_corpus.jsonl"
ROWS = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
STYLES = {
    "gsm8k_prose",
    "gsm8k_format",
    "smollm_chatty",
    "math_boxed",
    "math_minerva",
    "r1_distill",
    "qwen3_think",
    "truncated",
}


def test_corpus_is_large_and_varied():
    assert len(ROWS) >= 80
    assert len({r["id"] for r in ROWS}) == len(ROWS), "row ids must be unique"
    assert {r["style"] for r in ROWS} >= STYLES
    for r in ROWS:
        assert {"id", "style", "completion", "reference", "expected_answer", "flexible", "strict"} <= r.keys()
        assert not (r["strict"] and not r["flexible"]), (
            f"{r['id']}: strict accepts only what flexible accepts"
        )
        assert r["expected_answer"] is not None or not r["flexible"], f"{r['id']}: correct needs an answer"
    # Both verdicts occur under both graders, and the graders disagree somewhere (that is strict's point).
    for g in GRADERS:
        assert {r[g] for r in ROWS} == {True, False}
    assert any(r["flexible"] and not r["strict"] for r in ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_row(row):
    text, opened = row["completion"], row.get("think_opened", False)
    answer = extract_answer(text, think_opened=opened)
    assert answer == row["expected_answer"]
    if answer is not None:
        start, end = answer_span(text, think_opened=opened)
        assert text[start:end] == answer
    assert extract_answer(text, "strict", think_opened=opened) in (None, answer)
    for g in GRADERS:
        assert grade([text], [row["reference"]], g, think_opened=opened) == [row[g]], g


def _math_verify_verdict(row: dict) -> bool | None:
    """math-verify's own verdict on the graded part of the completion; None where it extracts nothing."""
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    start = graded_start(row["completion"], think_opened=row.get("think_opened", False))
    extracted = parse("" if start is None else row["completion"][start:])
    if not extracted:
        return None
    return verify(parse(f"${row['reference']}$"), extracted)


def test_agreement_with_math_verify():
    """Wherever math-verify extracts an answer, l2s's flexible verdict is math-verify's own.

    The exceptions are tagged rows, each with the reason math-verify is wrong there; they must really
    disagree (a stale tag fails) and are few.
    """
    considered, agree, exceptions, unexplained = 0, 0, 0, []
    for row in ROWS:
        mv = _math_verify_verdict(row)
        if mv is None:
            assert "reason" not in row, f"{row['id']}: math-verify extracts nothing, nothing to disagree with"
            continue
        considered += 1
        ours = grade([row["completion"]], [row["reference"]], think_opened=row.get("think_opened", False))[0]
        if "reason" in row:
            exceptions += 1
            assert row["reason"].strip() and ours != mv, f"{row['id']}: tagged, but l2s and math-verify agree"
        elif ours == mv:
            agree += 1
        else:
            unexplained.append(row["id"])
    share = agree / (considered - exceptions)
    print(
        f"\nagreement with math-verify: {agree}/{considered - exceptions} = {share:.1%} of the rows where it "
        f"extracts an answer; {exceptions} documented exceptions (with them: {agree}/{considered} = "
        f"{agree / considered:.1%})"
    )
    assert share >= 0.98, f"l2s and math-verify disagree without a documented reason on {unexplained}"
    assert exceptions <= 0.05 * considered, "documented exceptions should stay rare"
