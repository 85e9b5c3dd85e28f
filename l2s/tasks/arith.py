"""The embedded task `arith`: generated multi-step integer arithmetic, with long- and short-CoT traces.

A problem is a chain of single-digit operations such as `3 + 5 - 2 + 4` (difficulty = number of
operations). Running totals stay in [0, MAX_TOTAL] = [0, 9], so every step is one of under two hundred
facts (`8 - 2 = 6`) that a tiny model learns quickly and applies one line at a time, while answering
without the steps means composing them all in one forward pass, which it cannot: that gap is the
long/short trade-off. No operation appears twice in one expression (`+5 ... +5`), so "the operation
after the one just done" is never ambiguous (see `long_trace`).

Splits are disjoint by construction: an expression's split is a hash of its canonical text, the same
for every seed and difficulty, so no expression can ever be in both. Generation is seeded and
prefix-stable (`problems(split, 100)` is the first 100 of `problems(split, 1000)`).

Traces (the assistant completions the embedded family is trained on) are written here by hand: this
is the workload's definition, no library generates it.
- `long_trace`: the essential running-total chain (it carries the accuracy) plus optional parts drawn
  at random (restating the problem, "check:" verifications, "wait" self-corrections of a slipped
  step, a recap), so the long model's length varies for one prompt. The optional parts are about two thirds
  of a trace's tokens: what long2short methods can remove without losing accuracy.
- `short_trace`: the answer with an empty think block.

Why a running-total chain (`8`, `-2=6`, `+4=10`…): each line is one lookup of a single-digit fact
applied to the previous line's total, with operations as single tokens and none repeated, and a tiny
model learns that reliably. Scratchpads that carry more per line (two-digit totals, or the whole
remaining expression rewritten each line) stay far less accurate at this model size, their errors
mostly copying errors.
"""

from __future__ import annotations

import hashlib
import random
import re

from l2s.errors import UserError
from l2s.tasks import Problem

SPLITS = ("train", "test")
TEST_PERCENT = 20  # share of the expression space that is held out
SPLIT_SIZE = {"train": 20_000, "test": 5_000}  # problems returned when n is None
MIXED_DIFFICULTIES = (2, 3, 4, 5)  # operations per problem when no difficulty is asked for
MAX_DIFFICULTY = 8
FIRST_RANGE = (0, 9)  # first operand
OPERAND_RANGE = (1, 9)  # every later operand
MAX_TOTAL = 9  # running totals stay in [0, MAX_TOTAL]

# Probabilities of the optional parts of a long trace. Verification is above 1/2 on purpose: the
# greedy long model then verifies (its most likely path), so its mean length carries the optional
# part, while sampling at T=1 keeps or drops each part and so varies the length.
P_RESTATE = 0.4
P_VERIFY = 0.6
P_SLIP = 0.1  # a slipped step that the trace catches and corrects
P_RECAP = 0.4

# Terse on purpose: every token between the expression and the trace's copy of it makes the copy harder
# for a tiny model (the traces teach the "Answer: N" ending). `_PROMPT_RE` also reads longer prompts that
# put words after the expression's final period.
_PROMPT = "Compute {expr}."
_PROMPT_RE = re.compile(r"Compute ([^.]+)\.")
_TERM_RE = re.compile(r"([+-])\s*(\d+)")


def split_of(expr: str) -> str:
    """The split an expression belongs to: a stable hash of its canonical text (never the seed).

    >>> split_of("37 + 48 - 19") == split_of(" 37  +  48 -   19 ")
    True
    >>> sorted({split_of(f"{a} + 2") for a in range(10, 99)})
    ['test', 'train']
    """
    return _split_of_canonical(canonical(expr))


def _split_of_canonical(canon: str) -> str:
    bucket = int.from_bytes(hashlib.sha256(canon.encode()).digest()[:8], "big") % 100
    return "test" if bucket < TEST_PERCENT else "train"


def canonical(expr: str) -> str:
    """One spelling per expression: single spaces around operators.

    >>> canonical("37+48 -19")
    '37 + 48 - 19'
    """
    first, terms = parse_expr(expr)
    return " ".join([str(first)] + [f"{op} {n}" for op, n in terms])


def parse_expr(expr: str) -> tuple[int, list[tuple[str, int]]]:
    """(first operand, [(op, operand), ...]) of an expression like `37 + 48 - 19`.

    >>> parse_expr("37 + 48 - 19")
    (37, [('+', 48), ('-', 19)])
    """
    head = re.match(r"\s*(\d+)", expr)
    if head is None:
        raise ValueError(f"not an arith expression: {expr!r}")
    return int(head.group(1)), [(op, int(n)) for op, n in _TERM_RE.findall(expr[head.end() :])]


def _apply(total: int, op: str, n: int) -> int:
    return total + n if op == "+" else total - n


def _expr_of(problem: Problem) -> str:
    m = _PROMPT_RE.search(problem.prompt)
    if m is None:
        raise ValueError(f"not an arith prompt: {problem.prompt!r}")
    return m.group(1)


def evaluate(expr: str) -> int:
    """The value of an expression, left to right.

    >>> evaluate("37 + 48 - 19")
    66
    """
    total, terms = parse_expr(expr)
    for op, n in terms:
        total = _apply(total, op, n)
    return total


def _compact(expr: str) -> str:
    """Trace spelling of an expression: no spaces, so a step costs few tokens.

    >>> _compact("37 + 48 - 19")
    '37+48-19'
    """
    return expr.replace(" ", "")


def long_trace(problem: Problem, rng: random.Random, max_lines: int | None = None) -> str:
    """A long-CoT completion: the running-total chain plus optional parts drawn from `rng`.

    The essential chain writes the first number, then one line per operation: the operation and the
    new total (`-2=6`). Each line needs only the line above (its total) and the operation that follows,
    in the prompt, the one the line above did — a lookup a tiny model learns in minutes, since no
    operation repeats within an expression. Optional parts: an opening that restates the task,
    `check:` lines that redo the step from the previous total, slips (a wrong total caught by a
    `wait, check:` line and fixed) and a closing recap. The final answer follows `</think>` (the format
    `l2s.grading` reads).

    `max_lines` keeps the think block to that many lines where it can: optional parts are left out once
    they would pass it (the essential chain is always written whole). The same draws are made either way,
    so a trace with a limit is the unlimited one with parts left out.

    >>> p = Problem("x", "Compute 3+5-2.", "6", 2)
    >>> print(long_trace(p, random.Random(1)))
    <think>
    Let me compute 3+5-2 left to right.
    3
    +5=8
    -2=6
    check: 8-2=6. ok
    </think>
    Answer: 6
    >>> from l2s.grading import grade
    >>> grade([long_trace(p, random.Random(s)) for s in range(20)], ["6"] * 20) == [True] * 20
    True
    >>> len({len(long_trace(p, random.Random(s))) for s in range(20)}) > 1
    True
    >>> print(long_trace(p, random.Random(1), max_lines=3))
    <think>
    3
    +5=8
    -2=6
    </think>
    Answer: 6
    """
    first, terms = parse_expr(_expr_of(problem))
    expr = _compact(canonical(_expr_of(problem)))
    spare = None if max_lines is None else max_lines - 1 - len(terms)  # lines left for optional parts

    def room(n: int) -> bool:
        nonlocal spare
        if spare is None:
            return True
        if spare < n:
            return False
        spare -= n
        return True

    lines = []
    if rng.random() < P_RESTATE and room(1):
        lines.append(f"Let me compute {expr} left to right.")
    lines.append(str(first))
    total = first
    for op, b in terms:
        new = _apply(total, op, b)
        if rng.random() < P_SLIP:
            wrong = new + rng.choice([d for d in (-2, -1, 1, 2) if 0 <= new + d <= MAX_TOTAL])
            if room(2):
                lines.append(f"{op}{b}={wrong}")
                lines.append(f"wait, check: {total}{op}{b}={new}, not {wrong}. fix:")
        lines.append(f"{op}{b}={new}")
        if rng.random() < P_VERIFY and room(1):
            lines.append(f"check: {total}{op}{b}={new}. ok")
        total = new
    if rng.random() < P_RECAP and room(1):
        lines.append(f"So {expr}={total}.")
    return "<think>\n" + "\n".join(lines) + f"\n</think>\nAnswer: {total}"


def short_trace(problem: Problem) -> str:
    """A short-CoT completion: an empty think block, then the answer.

    >>> short_trace(Problem("x", "Compute 37 + 48 - 19. End with 'Answer: N'.", "66", 2))
    '<think>\\n</think>\\nAnswer: 66'
    """
    return f"<think>\n</think>\nAnswer: {evaluate(_expr_of(problem))}"


def _draw_expr(rng: random.Random, ops: int) -> str:
    """A random chain of `ops` distinct operations whose running totals stay in [0, MAX_TOTAL].

    >>> e = _draw_expr(random.Random(0), 8)
    >>> terms = parse_expr(e)[1]
    >>> len(terms) == len(set(terms)) == 8
    True
    """
    lo, hi = OPERAND_RANGE
    while True:  # a dead end (every allowed operation already used) is rare: draw again
        total = rng.randint(*FIRST_RANGE)
        parts, used = [str(total)], set()
        for _ in range(ops):
            fits = {
                op: [
                    n
                    for n in range(lo, hi + 1)
                    if (op, n) not in used and 0 <= _apply(total, op, n) <= MAX_TOTAL
                ]
                for op in "+-"
            }
            open_ops = [op for op in "+-" if fits[op]]
            if not open_ops:
                break
            op = rng.choice(open_ops)
            n = rng.choice(fits[op])
            used.add((op, n))
            total = _apply(total, op, n)
            parts.append(f"{op} {n}")
        else:
            return " ".join(parts)


class ArithTask:
    """Generated multi-step integer arithmetic with a difficulty knob and disjoint train/test splits.

    >>> task = ArithTask(seed=0, difficulty=3)
    >>> p = task.problems("test", 2)[0]
    >>> p.id, p.difficulty, p.answer == str(evaluate(_expr_of(p)))
    ('arith-test-000000', 3, True)
    >>> ArithTask(difficulty=0)
    Traceback (most recent call last):
    l2s.errors.UserError: arith difficulty must be an integer from 1 to 8 (operations per problem), got 0
    """

    name = "arith"

    def __init__(self, seed: int = 0, difficulty: int | None = None, **_: object):
        if difficulty is not None and (
            isinstance(difficulty, bool)
            or not isinstance(difficulty, int)
            or not 1 <= difficulty <= MAX_DIFFICULTY
        ):
            raise UserError(
                f"arith difficulty must be an integer from 1 to {MAX_DIFFICULTY} "
                f"(operations per problem), got {difficulty!r}"
            )
        self.seed = int(seed)
        self.difficulty = difficulty

    def problems(self, split: str = "test", n: int | None = None) -> list[Problem]:
        if split not in SPLITS:
            raise UserError(f"unknown split '{split}' for task arith; choose one of: {', '.join(SPLITS)}")
        if n is not None and n < 0:
            raise UserError(f"number of problems must be >= 0, got {n}")
        want = SPLIT_SIZE[split] if n is None else n
        # String seeds are hashed deterministically by `random` (not by Python's salted hash()).
        rng = random.Random(f"arith/{self.seed}/{split}/{self.difficulty}")
        seen: set[str] = set()
        out: list[Problem] = []
        misses = 0  # draws in a row that gave nothing new: only small spaces (difficulty 1) run dry
        while len(out) < want:
            ops = self.difficulty or rng.choice(MIXED_DIFFICULTIES)
            expr = _draw_expr(rng, ops)
            # _draw_expr already spells the expression canonically.
            if expr in seen or _split_of_canonical(expr) != split:
                misses += 1
                if misses > 20_000:
                    if n is None:
                        break
                    raise UserError(
                        f"arith {split} split has only {len(out)} distinct problems at difficulty "
                        f"{self.difficulty}; ask for fewer"
                    )
                continue
            misses = 0
            seen.add(expr)
            out.append(
                Problem(
                    id=f"arith-{split}-{len(out):06d}",
                    # Spelled as in the traces (no spaces), so the scratchpad's first line is a plain copy.
                    prompt=_PROMPT.format(expr=_compact(expr)),
                    answer=str(evaluate(expr)),
                    difficulty=ops,
                )
            )
        return out
