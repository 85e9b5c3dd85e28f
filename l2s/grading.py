"""Answer extraction and equivalence: the one definition of "correct" in l2s.

Rejection sampling, DPO pairs, RL rewards, evaluation and the server all call `grade`, so "correct"
means the same thing everywhere. Extraction is ours (the `Answer:` line and `\\boxed{}` conventions);
equivalence is math-verify's, with an exact fast path for integers.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

_ANSWER_RE = re.compile(r"Answer\s*:\s*(.+)", re.IGNORECASE)
_INT_RE = re.compile(r"[+-]?\d+")


def _last_boxed(text: str) -> str | None:
    r"""Content of the last \boxed{...}, braces balanced.

    >>> _last_boxed(r"so \boxed{\frac{1}{2}} and \boxed{7}")
    '7'
    >>> _last_boxed(r"\boxed{\frac{1}{2}}")
    '\\frac{1}{2}'
    """
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j].strip()
    return None


def split_reasoning(text: str, *, think_opened: bool = False) -> tuple[str, str]:
    """Split a completion into (reasoning, answer) around `</think>`.

    `think_opened=True` is for chat templates that open `<think>` in the prompt (R1-distill style):
    the completion then starts inside the think block.

    >>> split_reasoning("<think>\\n2+3=5\\n</think>\\nAnswer: 5")
    ('2+3=5', 'Answer: 5')
    >>> split_reasoning("2+3=5\\n</think>\\nAnswer: 5", think_opened=True)
    ('2+3=5', 'Answer: 5')
    >>> split_reasoning("Answer: 5")
    ('', 'Answer: 5')
    >>> split_reasoning("<think>\\nstill thinking")
    ('still thinking', '')
    """
    body = text
    if body.lstrip().startswith(THINK_OPEN):
        body = body.lstrip()[len(THINK_OPEN) :]
        think_opened = True
    if THINK_CLOSE in body:
        reasoning, _, answer = body.partition(THINK_CLOSE)
        return reasoning.strip(), answer.strip()
    if think_opened:
        return body.strip(), ""
    return "", body.strip()


def extract_answer(text: str) -> str | None:
    r"""The final answer of a completion: the last `\boxed{}`, else the last `Answer:` line, else None.

    Only the part after `</think>` is searched when a think block is present.

    >>> extract_answer("<think>\n12+3=15\n</think>\nAnswer: 15")
    '15'
    >>> extract_answer(r"The result is \boxed{42}.")
    '42'
    >>> extract_answer("<think>\nAnswer: 3\n</think>\nno final line") is None
    True
    """
    _, answer = split_reasoning(text)
    if not answer and THINK_CLOSE not in text:
        answer = text
    boxed = _last_boxed(answer)
    if boxed is not None:
        return boxed
    matches = _ANSWER_RE.findall(answer)
    if matches:
        return matches[-1].strip().rstrip(".").strip()
    return None


def _math_verify(pred: str, ref: str) -> bool:
    from math_verify import parse, verify

    # math-verify times out with signal.alarm, which only works on the main thread.
    on_main = threading.current_thread() is threading.main_thread()
    timeout = 5 if on_main else None
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    try:
        gold = parse(f"${ref}$", parsing_timeout=timeout)
        target = parse(f"${pred}$", parsing_timeout=timeout)
        return bool(gold and target and verify(gold, target, timeout_seconds=timeout))
    except Exception:
        return False


def is_equivalent(pred: str | None, ref: str) -> bool:
    r"""Whether a predicted answer equals the reference: exact for integers, math-verify otherwise.

    >>> is_equivalent("72", "72"), is_equivalent("072", "72"), is_equivalent("71", "72")
    (True, True, False)
    >>> is_equivalent(None, "1")
    False
    >>> is_equivalent(r"\frac{1}{2}", "0.5")
    True
    """
    if pred is None:
        return False
    p, r = pred.strip().replace(",", ""), ref.strip().replace(",", "")
    if _INT_RE.fullmatch(p) and _INT_RE.fullmatch(r):
        return int(p) == int(r)
    if p == r:
        return True
    return _math_verify(pred, ref)


def grade(completions: Sequence[str], answers: Sequence[str]) -> list[bool]:
    """Batched grading: extract each completion's answer and compare it with its reference.

    >>> grade(["Answer: 4", "<think>\\n</think>\\nAnswer: 5", "no answer"], ["4", "4", "4"])
    [True, False, False]
    """
    if len(completions) != len(answers):
        raise ValueError(f"grade: {len(completions)} completions but {len(answers)} answers")
    return [is_equivalent(extract_answer(c), a) for c, a in zip(completions, answers, strict=True)]
