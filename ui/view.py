"""What the comparison columns and the running tally say: pure functions from results to Markdown.

No Gradio here, so every sentence the demo shows is unit-tested. "Correct" is `l2s.grading.grade`, the
one definition l2s uses everywhere; "tokens" are the server's `usage.completion_tokens` (counted by
the answering model's own tokenizer), never a count made in the browser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from l2s.ui.client import ColumnResult, lane_level

MODE_BLURBS = {
    "short": "short-CoT model",
    "long": "long-CoT model",
    "auto": "short first; escalates to long when unsure",
}

EFFORT_BLURBS = {
    "minimal": "fewest tokens measured",
    "low": "fewest tokens within 5 points of high",
    "medium": "fewest tokens within the tolerance of high",
    "high": "most accurate measured",
}


def _measured(card: dict) -> str:
    """`96.0% · 14.0 tok` from an effort level's card (`l2s.ui.client.fetch_effort_map`)."""
    acc, tokens = card.get("accuracy"), card.get("mean_tokens")
    parts = [
        f"{100 * acc:.1f}%" if acc is not None else "",
        f"{tokens:.1f} tok" if tokens is not None else "",
    ]
    return " · ".join(p for p in parts if p)


def _served(card: dict) -> str:
    budget = card.get("thinking_budget")
    return f"{card.get('model', '?')}" + (f" @{budget}" if budget is not None else "")


def effort_choice_label(level: str, card: dict | None) -> str:
    """The effort selector's label of a level: its measured accuracy and mean tokens, and what serves it.

    >>> effort_choice_label("low", {"model": "rl", "thinking_budget": 8, "accuracy": 0.96, "mean_tokens": 14.0})
    'low · 96.0% · 14.0 tok · rl @8'
    >>> effort_choice_label("high", None)
    'high'
    """
    if not card:
        return level
    return " · ".join(p for p in (level, _measured(card), _served(card)) if p)


def lane_header(lane: str, card: dict | None = None) -> str:
    """A column's heading: the mode and what it is, or the effort level, what serves it and what it measured.

    >>> print(lane_header("auto"))
    ### auto
    short first; escalates to long when unsure
    >>> card = {"model": "rl", "thinking_budget": 8, "accuracy": 0.96, "accuracy_ci95": [0.94, 0.98],
    ...         "mean_tokens": 14.0}
    >>> print(lane_header("effort-low", card))
    ### effort: low
    `rl`, thinking budget 8 · measured 96.0% [94.0, 98.0] at 14.0 tokens
    """
    level = lane_level(lane)
    if level is None:
        return f"### {lane}\n{MODE_BLURBS.get(lane, '')}"
    if not card:
        return f"### effort: {level}\n{EFFORT_BLURBS[level]} (the server has no effort map)"
    budget = card.get("thinking_budget")
    served = f"`{card.get('model', '?')}`" + (f", thinking budget {budget}" if budget is not None else "")
    ci = card.get("accuracy_ci95")
    ci_text = f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else ""
    acc, tokens = card.get("accuracy"), card.get("mean_tokens")
    measured = (
        f" · measured {100 * acc:.1f}%{ci_text} at {tokens:.1f} tokens" if acc is not None and tokens else ""
    )
    return f"### effort: {level}\n{served}{measured}"


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-!|~])")


def md_escape(text: str) -> str:
    r"""Escape Markdown/HTML so model output shows as the literal text it is.

    >>> md_escape("Answer: -5 * 2 <think>")
    'Answer: \\-5 \\* 2 \\<think\\>'
    """
    return _MD_SPECIAL.sub(r"\\\1", text)


def is_correct(result: ColumnResult, reference: str) -> bool | None:
    """The column's grade against the reference answer; None while streaming, on error or without one.

    >>> is_correct(ColumnResult("short", content="Answer: 42", done=True), "42")
    True
    >>> is_correct(ColumnResult("long", content="Answer: 41", done=True), "42")
    False
    >>> is_correct(ColumnResult("long", content="Answer: 42", done=True), "") is None
    True
    """
    from l2s.grading import grade

    if not result.done or result.error or not reference.strip():
        return None
    return grade([result.content], [reference.strip()])[0]


def thinking_label(result: ColumnResult) -> str:
    """Label of the collapsible Thinking block.

    >>> thinking_label(ColumnResult("long", reasoning="12+3=15", reasoning_tokens=9, done=True))
    'Thinking · 9 tokens'
    >>> thinking_label(ColumnResult("short", reasoning_tokens=0, done=True))
    'Thinking · empty'
    >>> thinking_label(ColumnResult("long", reasoning="12+"))
    'Thinking · streaming…'
    """
    if not result.done:
        return "Thinking · streaming…" if result.reasoning else "Thinking"
    if result.reasoning_tokens is not None:
        return (
            f"Thinking · {result.reasoning_tokens} tokens" if result.reasoning_tokens else "Thinking · empty"
        )
    return "Thinking" if result.reasoning else "Thinking · empty"


def answer_markdown(result: ColumnResult, reference: str = "") -> str:
    """The answer area: the error, or the answer text with a correct/incorrect mark once done.

    >>> print(answer_markdown(ColumnResult("short", content="Answer: 42", done=True), "42"))
    Answer: 42
    <BLANKLINE>
    ✓ **correct** (reference: 42)
    >>> print(answer_markdown(ColumnResult("long", error="Cannot reach the l2s server.", done=True)))
    ⚠ Cannot reach the l2s server.
    """
    if result.error:
        # Our own sentence (its `commands` stay code); only HTML is escaped, for the server's detail.
        return "⚠ " + result.error.replace("<", "&lt;").replace(">", "&gt;")
    text = md_escape(result.content.strip()) if result.content.strip() else ""
    if not result.done:
        if text:
            return text
        return "_thinking…_" if result.reasoning else "_waiting for the first token…_"
    if not text:
        text = "_(no answer after the think block)_"
    mark = is_correct(result, reference)
    if mark is None:
        return text
    verdict = "✓ **correct**" if mark else "✗ **incorrect**"
    return f"{text}\n\n{verdict} (reference: {md_escape(reference.strip())})"


def stats_markdown(result: ColumnResult) -> str:
    """Token counts, latency and routing of one column.

    >>> r = ColumnResult("auto", completion_tokens=120, reasoning_tokens=100, latency_s=1.234,
    ...                  model="l2s-long", escalated=True, finish_reason="stop", done=True)
    >>> print(stats_markdown(r))
    **120** completion tokens · **100** reasoning · 1.23 s
    <BLANKLINE>
    answered by `l2s-long` · escalated to long: **yes**
    >>> print(stats_markdown(ColumnResult("short", latency_s=0.5)))
    streaming… 0.50 s
    """
    if result.error:
        return f"failed after {result.latency_s:.2f} s" if result.latency_s is not None else "failed"
    latency = f"{result.latency_s:.2f} s" if result.latency_s is not None else ""
    if not result.done:
        return f"streaming… {latency}".strip()
    if result.completion_tokens is None:
        tokens = "token counts: n/a (the server sent no usage)"
    else:
        reasoning = result.reasoning_tokens if result.reasoning_tokens is not None else "n/a"
        tokens = f"**{result.completion_tokens}** completion tokens · **{reasoning}** reasoning"
    lines = [f"{tokens} · {latency}" if latency else tokens]
    route = [f"answered by `{result.model}`"] if result.model else []
    if result.effort:
        route.append(f"effort **{result.effort}**")
    if result.thinking_budget is not None:
        route.append(f"thinking budget {result.thinking_budget}")
    if result.mode == "auto" and result.escalated is not None:
        route.append(f"escalated to long: **{'yes' if result.escalated else 'no'}**")
        if result.attempt_tokens:
            route.append(f"+{result.attempt_tokens} tokens of the discarded short attempt")
    if result.finish_reason == "length":
        route.append("stopped at max tokens")
    if route:
        lines.append(" · ".join(route))
    return "\n\n".join(lines)


@dataclass(frozen=True)
class ModeTally:
    """Running totals of one mode over the prompts compared in this browser session."""

    prompts: int = 0  # prompts this mode answered with token counts
    tokens: int = 0  # tokens it generated for them (auto: including a discarded short attempt)
    vs_long_prompts: int = 0  # of those, prompts long answered too
    vs_long_tokens: int = 0  # this mode's tokens on those prompts
    long_tokens: int = 0  # long's tokens on the same prompts
    graded: int = 0
    correct: int = 0


Tally = dict[str, ModeTally]


def add_round(tally: Tally, results: dict[str, ColumnResult], reference: str = "") -> Tally:
    """Add one comparison to the tally; "saved vs long" only counts prompts long answered too.

    A mode's tokens are what it generated (`ColumnResult.generated_tokens`), so an escalated auto
    answer pays for its discarded short attempt.

    >>> t = add_round({}, {"short": ColumnResult("short", content="Answer: 4", completion_tokens=10, done=True),
    ...                    "long": ColumnResult("long", content="Answer: 4", completion_tokens=50, done=True)}, "4")
    >>> t["short"].vs_long_tokens, t["short"].long_tokens, t["short"].correct
    (10, 50, 1)
    """
    long = results.get("long")
    long_tokens = long.completion_tokens if long is not None and not long.error else None
    out = dict(tally)
    for mode, r in results.items():
        tokens = r.generated_tokens
        if not r.done or r.error or tokens is None:
            continue
        t = out.get(mode, ModeTally())
        t = replace(t, prompts=t.prompts + 1, tokens=t.tokens + tokens)
        if mode != "long" and long_tokens is not None:
            t = replace(
                t,
                vs_long_prompts=t.vs_long_prompts + 1,
                vs_long_tokens=t.vs_long_tokens + tokens,
                long_tokens=t.long_tokens + long_tokens,
            )
        mark = is_correct(r, reference)
        if mark is not None:
            t = replace(t, graded=t.graded + 1, correct=t.correct + int(mark))
        out[mode] = t
    return out


def tally_markdown(tally: Tally) -> str:
    """The running tally as a Markdown table.

    >>> print(tally_markdown({"short": ModeTally(2, 30, 2, 30, 120, 2, 1), "long": ModeTally(2, 120, graded=2, correct=2)}))
    | mode | prompts | tokens | saved vs long | correct |
    |---|---|---|---|---|
    | short | 2 | 30 | **90** of 120 (75%) | 1/2 |
    | long | 2 | 120 | — | 2/2 |
    """
    if not tally:
        return "_No comparisons yet: pick an example or type a prompt, then press **Compare**._"
    rows = ["| mode | prompts | tokens | saved vs long | correct |", "|---|---|---|---|---|"]
    for mode in [m for m in MODE_BLURBS if m in tally] + [m for m in tally if m not in MODE_BLURBS]:
        t = tally[mode]
        if mode == "long":
            saved = "—"
        elif t.vs_long_prompts == 0:
            saved = "— (run long too)"
        else:
            diff = t.long_tokens - t.vs_long_tokens
            pct = f" ({100 * diff / t.long_tokens:.0f}%)" if t.long_tokens else ""
            saved = f"**{diff}** of {t.long_tokens}{pct}"
        correct = f"{t.correct}/{t.graded}" if t.graded else "—"
        rows.append(f"| {mode} | {t.prompts} | {t.tokens} | {saved} | {correct} |")
    return "\n".join(rows)
