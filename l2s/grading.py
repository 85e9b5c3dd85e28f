r"""Answer extraction and equivalence: the one definition of "correct" in l2s.

Rejection sampling, DPO pairs, RL rewards, evaluation and the server all call `grade`, so "correct"
means the same thing everywhere. Equivalence, and the last-resort extraction, are math-verify's
(sympy-based: fractions, decimals, LaTeX, intervals, sets of answers). What l2s adds by hand, and why:

- **Where the answer may be.** Only the text after the last `</think>` is graded, and a think block
  that was opened and never closed (a reasoning model cut off by max_tokens) has no answer, however
  many numbers its reasoning holds; R1-distill templates open that block in the prompt, so their
  completions are graded with `think_opened=True`. math-verify reads whatever text it is given.
- **Which answer counts.** The last `\boxed{}`/`\fbox{}` (braces balanced; one cut before its closing
  brace means the answer was cut: none), else the last explicit final-answer phrase ("Answer:",
  "The answer is", "The final answer is", "Final answer:", "**Final Answer**", GSM8K's "#### 72").
  Under the `flexible` grader (the default) math-verify's own last-expression extraction follows, so
  "so 20 - 7 = 13 dollars are left" reads 13, unless the text ends mid-expression ("340 + 68 =": cut
  off, no answer). The `strict` grader stops before it: an RL reward must not pay a completion whose
  trailing number merely happens to be right.
- **Where the answer is written.** `answer_span` gives its characters in the text (math-verify returns
  parsed values, not positions); confidence reads the logprobs of exactly those tokens.
- **A fast path.** Thousands separators, currency, percent signs, trailing units and `$...$`/`\text{}`
  wrappers are stripped before comparing, and numbers are compared exactly without math-verify, which
  is slow: the embedded arith task grades thousands of samples per run. math-verify sees the rest.
- **Threads.** math-verify times out with signal.alarm, which only works on the main thread; on other
  threads it runs without a timeout.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from fractions import Fraction
from itertools import groupby

from l2s.errors import UserError

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
GRADERS = ("flexible", "strict")

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
# Explicit final-answer phrases; the last one in the text wins. "answer is" needs "the"/"my"/"our"
# before it, so a closing "I hope this answer is helpful!" is not read as an answer.
_PHRASE_RE = re.compile(
    r"####|\*\*\s*final\s+answer\s*:?\s*\*\*|\b(?:the|my|our)\s+(?:final\s+)?answer\s+is\b|\b(?:final\s+)?answer\s*:",
    re.IGNORECASE,
)
_DELIMITED_RE = re.compile(
    r"\$\$([^$]+)\$\$|\$([^$]+)\$|\\\(((?:(?!\\\)).)+)\\\)|\\\[((?:(?!\\\]).)+)\\\]", re.DOTALL
)  # math delimiters around a whole answer: $...$, $$...$$, \(...\), \[...\]
_LEAD_RE = re.compile(r"[ \t*:]*(?:\n\s*)?")  # between a phrase and its answer: bold, colon, one line break
_SENTENCE_END_RE = re.compile(r"\.(?=\s|$)")
_PROSE_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}[ \t]+[A-Za-z]{2,}")  # two words in a row: a sentence
# Plain numbers opening an answer, as written ("$1,080", "-5", "3/4", "25%", "4, 9", "2 and 3"), and
# what may follow them for the numbers alone to be the answer ("13 dollars", "5, since ...").
_NUMBER = r"[-−]?(?:\\?\$|[€£¥₹])?\s?[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?(?:\s?\\?%)?"
_NUMBER_RE = re.compile(rf"{_NUMBER}(?:(?:\s*,|,?\s+(?:and|or))\s*{_NUMBER})*")
_AFTER_NUMBER_RE = re.compile(r"\s+[A-Za-z]|\s*$|\s*[;!?)\]](?:\s|$)|,\s+[A-Za-z]")
_CUT_MID_EXPRESSION = tuple("=+-/×÷^(")  # a text ending in one was cut mid-expression ("340 + 68 =")

_INT_RE = re.compile(r"-?\d+")
_NUM_RE = re.compile(r"-?(?:\d+(?:/0*[1-9]\d*)?|\d*\.\d+)")  # a Fraction() reads it (no "/0")
# A number followed by a unit or a few words ("13 dollars", "5 cm^2", "25 percent"), not "2 and 3".
_UNIT_RE = re.compile(
    r"(-?\d[\d,]*(?:\.\d+)?(?:/\d+)?)\s*(%|\s(?!(?:and|or|to)\b)(?:[A-Za-z]{2,}|[mgshL]\b)[A-Za-z ./²³-]*(?:(?<=[A-Za-z])\^?\d)?)"
)


def _check_grader(grader: str) -> None:
    if grader not in GRADERS:
        raise UserError(f"unknown grader {grader!r}: use one of {', '.join(GRADERS)}")


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


def graded_start(text: str, *, think_opened: bool = False) -> int | None:
    """Where the graded part of a completion starts (after the last `</think>`); None inside an open think.

    >>> graded_start("<think>\\n1+1=2\\n</think>\\nAnswer: 2"), graded_start("Answer: 2")
    (22, 0)
    >>> graded_start("<think>\\n1+1=2"), graded_start("1+1=2", think_opened=True)
    (None, None)
    """
    close = text.rfind(THINK_CLOSE)
    if close >= 0:
        return None if text.find(THINK_OPEN, close) >= 0 else close + len(THINK_CLOSE)
    return None if think_opened or THINK_OPEN in text else 0


def _last_boxed(text: str, start: int, end: int) -> tuple[int, int] | None:
    r"""Span of the last non-empty \boxed{}/\fbox{} content, braces balanced; an empty span when the last
    box was cut before it closed. An empty box ("within a \boxed{}") is prose, not an answer: skipped.

    >>> t = r"so \boxed{\frac{1}{2}} and \fbox{7}"
    >>> t[slice(*_last_boxed(t, 0, len(t)))], _last_boxed(r"\boxed{\frac{1}{", 0, 15)
    ('7', (15, 15))
    >>> _last_boxed(r"the answer goes in a \boxed{}.", 0, 30) is None
    True
    """
    for box in reversed(list(_BOXED_RE.finditer(text, start, end))):
        i, depth = box.end(), 1
        for j in range(i, end):
            depth += (text[j] == "{") - (text[j] == "}")
            if depth == 0:
                break
        else:
            return (end, end)  # cut inside the box
        span = _trim(text, i, j)
        if span[1] > span[0]:
            return span
    return None


def _trim(text: str, i: int, j: int) -> tuple[int, int]:
    r"""Shrink [i, j) past whitespace, bold markers, a closing period and math delimiters ($ $, \( \)).

    >>> t = r" **$\frac{1}{2}$**. "
    >>> t[slice(*_trim(t, 0, len(t)))]
    '\\frac{1}{2}'
    """
    while True:
        while i < j and (text[i].isspace() or text[i] == "*"):
            i += 1
        while j > i and (text[j - 1].isspace() or text[j - 1] in "*."):
            j -= 1
        delimited = _DELIMITED_RE.fullmatch(text, i, j)
        if delimited is None:
            return i, j
        i, j = delimited.span(delimited.lastindex)


def _math_verify_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """math-verify's own choice of final expression in text[start:end] (its regexes and priorities)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig
    from math_verify.parser import extract_match, get_extraction_regexes
    from math_verify.utils import timeout

    part = text[start:end]
    regexes = get_extraction_regexes((LatexExtractionConfig(), ExprExtractionConfig()))
    patterns = sorted(((p, cfg, prio) for ps, cfg in regexes for p, prio in ps), key=lambda x: x[2])

    def first_parsed() -> tuple[int, int] | None:
        for _, group in groupby(patterns, key=lambda x: x[2]):  # the best priority that matches wins
            found = [(m, cfg) for p, cfg, _ in group for m in p.finditer(part)]
            for m, cfg in sorted(found, key=lambda mc: (mc[0].end(), -mc[0].start()), reverse=True):
                if extract_match(m, cfg)[0] is not None:
                    return _value_span(m)
        return None

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    try:
        span = timeout(_timeout())(first_parsed)()
    except Exception:  # noqa: BLE001  (math-verify's parser raises anything, timeouts included)
        return None
    if span is None:
        return None
    i, j = span[0] + start, span[1] + start
    if "$" in text[i:j] and text[i - 1 : i] == "$" and text[j : j + 1] == "$":  # "$x=2$ and $x=3$" whole
        i, j = i - 1, j + 1
    return (i, j) if j > i else None


def _value_span(m: re.Match) -> tuple[int, int]:
    """The characters of a math-verify match that hold the value (its number, expression or LaTeX)."""
    spans = [
        m.span(name)
        for name, value in m.groupdict().items()
        if value and ("latex" in name or "percent" in name or name.startswith(("integer", "decimal", "expr")))
    ]
    return min(s for s, _ in spans), max(e for _, e in spans)


def _phrase_answer(text: str, i: int, end: int) -> tuple[int, int] | None:
    """The answer right after a final-answer phrase: a number as written, a math expression, or None."""
    i = _LEAD_RE.match(text, i, end).end()
    for left, right in (("\\[", "\\]"), ("$$", "$$")):  # display math may span lines
        if text.startswith(left, i) and (close := text.find(right, i + len(left), end)) >= 0:
            i, j = _trim(text, i + len(left), close)
            return (i, j) if j > i else None
    line_end = text.find("\n", i, end)
    line_end = end if line_end < 0 else line_end
    stop = _SENTENCE_END_RE.search(text, i, line_end)
    i, j = _trim(text, i, stop.start() if stop else line_end)
    if j <= i:
        return None
    number = _NUMBER_RE.match(text, i, j)
    if number and _AFTER_NUMBER_RE.match(text, number.end(), j):
        return number.span()  # "13 dollars", "8 apples because ...": the number is the answer
    if _PROSE_RE.search(text, i, j):  # "that she has 13 dollars left": the last expression in it
        return _math_verify_span(text, i, j)
    return i, j


def answer_span(text: str, grader: str = "flexible", *, think_opened: bool = False) -> tuple[int, int] | None:
    r"""Character span [start, end) of the final answer in `text`, or None when it has none.

    `think_opened=True` for completions whose think block the chat template opened (R1-distill):
    one that never reaches `</think>` was cut inside its reasoning and has no answer.

    >>> t = "<think>\nAnswer: 1\n</think>\nThe answer is $18."
    >>> answer_span(t), t[41:44]
    ((41, 44), '$18')
    """
    _check_grader(grader)
    start = graded_start(text, think_opened=think_opened)
    if start is None:
        return None
    end = len(text)
    boxed = _last_boxed(text, start, end)
    if boxed is not None:
        return boxed if boxed[1] > boxed[0] else None
    for phrase in reversed(list(_PHRASE_RE.finditer(text, start, end))):
        if span := _phrase_answer(text, phrase.end(), end):
            return span
    if grader == "strict" or text[start:end].rstrip().endswith(_CUT_MID_EXPRESSION):
        return None
    return _math_verify_span(text, start, end)


def extract_answer(text: str, grader: str = "flexible", *, think_opened: bool = False) -> str | None:
    r"""The final answer of a completion as written in it (see `answer_span`), or None when unparsed.

    `None` is the one test for "no answer": a found answer is never empty.

    >>> extract_answer("<think>\n12+3=15\n</think>\nAnswer: 15")
    '15'
    >>> extract_answer(r"The result is \boxed{\dfrac{3}{4}}.")
    '\\dfrac{3}{4}'
    >>> extract_answer("Tom has 3 + 5 = 8 apples.\nThe answer is: 8 apples.")
    '8'
    >>> extract_answer("So 20 - 7 = 13 dollars are left."), extract_answer("So 20 - 7 = 13 dollars are left.", "strict")
    ('13', None)
    >>> extract_answer("<think>\nAnswer: 3\n</think>\nno final line") is None
    True
    """
    span = answer_span(text, grader, think_opened=think_opened)
    return None if span is None else text[span[0] : span[1]]


def _normalize(answer: str) -> tuple[str, bool]:
    r"""(the answer without its wrappers, separators, currency and units; whether it was a percentage).

    >>> _normalize("$1,000.$"), _normalize(r"\$18"), _normalize("13 dollars"), _normalize("25%")
    (('1000', False), ('18', False), ('13', False), ('25', True))
    >>> _normalize(r"5\text{ cm}"), _normalize(r"1\,000"), _normalize("−7"), _normalize(r"30^\circ")
    (('5', False), ('1000', False), ('-7', False), ('30', False))
    >>> _normalize("x + 1"), _normalize("3 x")
    (('x + 1', False), ('3 x', False))
    """
    s = answer.strip()
    i, j = _trim(s, 0, len(s))
    s = re.sub(r"\\(?:text|textbf|textrm|mathrm|mbox)\{([^{}]*)\}", r"\1", s[i:j])
    s = re.sub(r"\\[,!;:]", "", s).replace("\\ ", " ").replace("~", " ").replace("−", "-")
    s = s.replace("{,}", ",").replace("\\$", "$").replace("\\%", "%").replace("°", "")
    s = re.sub(r"\^\s*\{?\\circ\}?", "", s).strip().rstrip(".").strip()
    s = re.sub(r"^(-?)\s*[$€£¥₹]\s*(?=[\d.])", r"\1", s)  # currency ("$x = 2$ and $x = 3$" keeps its $)
    s = re.sub(r"(?<=\d),?\s+(?:and|or)\s+(?=-?\d)", ", ", s)  # "2 and 3": the set {2, 3}
    percent = False
    if unit := _UNIT_RE.fullmatch(s):
        s, percent = unit.group(1), unit.group(2).strip().lower() in ("%", "percent")
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):
        s = s.replace(",", "")
    return s.lstrip("+"), percent


def _timeout() -> int | None:
    # math-verify times out with signal.alarm, which only works on the main thread.
    return 5 if threading.current_thread() is threading.main_thread() else None


def _math_verify(pred: str, ref: str) -> bool:
    from math_verify import parse, verify

    timeout = _timeout()
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    as_math = lambda s: s if "$" in s else f"${s}$"  # noqa: E731
    try:
        gold = parse(as_math(ref), parsing_timeout=timeout)
        target = parse(as_math(pred), parsing_timeout=timeout)
        return bool(gold and target and verify(gold, target, timeout_seconds=timeout))
    except Exception:  # noqa: BLE001  (an unparsable answer is a wrong answer)
        return False


def is_equivalent(pred: str | None, ref: str) -> bool:
    r"""Whether a predicted answer equals the reference: exact for numbers, math-verify otherwise.

    >>> is_equivalent("72", "72"), is_equivalent("072", "72"), is_equivalent("71", "72")
    (True, True, False)
    >>> is_equivalent("$1,000", "1000"), is_equivalent("25%", "25"), is_equivalent("25%", "0.25")
    (True, True, True)
    >>> is_equivalent(None, "1")
    False
    >>> is_equivalent(r"\frac{1}{2}", "0.5"), is_equivalent("3, 2", "2, 3")
    (True, True)
    """
    if pred is None:
        return False
    if _INT_RE.fullmatch(p := pred.strip()) and _INT_RE.fullmatch(r := ref.strip()):
        return int(p) == int(r)  # the common case, before any normalising
    (p, p_percent), (r, r_percent) = _normalize(pred), _normalize(ref)
    if not p:
        return False
    if p == r and p_percent == r_percent:
        return True
    if _INT_RE.fullmatch(p) and _INT_RE.fullmatch(r) and not (p_percent or r_percent):
        return int(p) == int(r)
    if _NUM_RE.fullmatch(p) and _NUM_RE.fullmatch(r):
        a, b = Fraction(p), Fraction(r)
        if a == b or (p_percent and a / 100 == b) or (r_percent and b / 100 == a):
            return True
        if "." not in p + r:  # two unequal integers or fractions; decimals may differ by rounding
            return False
    return _math_verify(p + "\\%" * p_percent, r + "\\%" * r_percent)


def grade(
    completions: Sequence[str],
    answers: Sequence[str],
    grader: str = "flexible",
    *,
    think_opened: bool = False,
) -> list[bool]:
    """Batched grading: extract each completion's answer and compare it with its reference.

    >>> grade(["Answer: 4", "<think>\\n</think>\\nAnswer: 5", "no answer"], ["4", "4", "4"])
    [True, False, False]
    >>> grade(["she has 4 left", "The answer is 4."], ["4", "4"], "strict")
    [False, True]
    """
    _check_grader(grader)
    if len(completions) != len(answers):
        raise ValueError(f"grade: {len(completions)} completions but {len(answers)} answers")
    return [
        is_equivalent(extract_answer(c, grader, think_opened=think_opened), a)
        for c, a in zip(completions, answers, strict=True)
    ]


def reduce_reference(text: str) -> str | None:
    r"""A reference answer reduced to its final answer; None when it holds none.

    A worked solution gives its final answer (GSM8K's "#### 72", a MATH solution's last `\boxed{}`);
    a plain short answer (one line, at most 100 characters) is returned as is.

    >>> reduce_reference("Natalia sold 48/2 = 24 clips in May.\n48+24 = 72 clips in total.\n#### 72")
    '72'
    >>> reduce_reference(r"So $x = \boxed{\frac{1}{2}}$."), reduce_reference(" 3\sqrt{2} ")
    ('\\frac{1}{2}', '3\\sqrt{2}')
    >>> reduce_reference("She sold 24 clips in May.\nThen 48 more in June.") is None
    True
    """
    s = text.strip()
    if span := answer_span(s, "strict"):
        return s[span[0] : span[1]]
    if s and "\n" not in s and len(s) <= 100:
        return s
    return None
