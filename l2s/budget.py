"""Budget-conditioned models: the instruction that states a thinking budget in the prompt.

A model derived with `l2s derive --method budget` (length-controlled RL, as in L1 — Aggarwal & Welleck
2025, "L1: Controlling How Long a Reasoning Model Thinks With Reinforcement Learning") learned to read
its thinking budget from the prompt: every training rollout's user turn ended with
"Think for at most N tokens." So wherever such a model is asked for a budget — eval's
`--thinking-budgets`, the server's `max_thinking_tokens` or an effort level's budget — the same sentence
is appended to the user turn, exactly as in training, and the forced `</think>` at N reasoning tokens
stays as the hard cap. Any other model's prompt is left as it is.

The model is recognised by its l2s.json (`method: budget`), which also records the instruction's form.
No library ships this convention, hence this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

METHOD = "budget"
FORMS = ("max", "exact")
_INSTRUCTIONS = {"max": "Think for at most {n} tokens.", "exact": "Think for exactly {n} tokens."}


def budget_instruction(n: int, form: str = "max") -> str:
    """The sentence that states a thinking budget of `n` tokens.

    >>> budget_instruction(16)
    'Think for at most 16 tokens.'
    >>> budget_instruction(16, "exact")
    'Think for exactly 16 tokens.'
    """
    if form not in _INSTRUCTIONS:
        raise ValueError(f"unknown budget form '{form}'; choose one of: {', '.join(FORMS)}")
    return _INSTRUCTIONS[form].format(n=int(n))


def with_budget(messages: Sequence[dict[str, Any]], n: int, form: str = "max") -> list[dict[str, Any]]:
    """A copy of chat `messages` whose last user turn ends with the budget instruction (on its own line).

    >>> with_budget([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}], 8)
    [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': '2+2?\\nThink for at most 8 tokens.'}]
    >>> with_budget([{"role": "assistant", "content": "hi"}], 8)
    Traceback (most recent call last):
    ValueError: the messages have no user turn to state the thinking budget in
    """
    out = [dict(m) for m in messages]
    for m in reversed(out):
        if m.get("role") == "user":
            m["content"] = f"{m.get('content') or ''}\n{budget_instruction(n, form)}"
            return out
    raise ValueError("the messages have no user turn to state the thinking budget in")


def budget_form(model_path: str | Path) -> str | None:
    """The instruction form a budget-conditioned checkpoint was trained with, or None for any other model.

    Reads the checkpoint's l2s.json (`method: budget`, `config.budget_form`); a missing or unreadable
    file means "not budget-conditioned".

    >>> budget_form("/nonexistent") is None
    True
    """
    from l2s.checkpoint import read_provenance

    try:
        record = read_provenance(model_path)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("method") != METHOD:
        return None
    form = (record.get("config") or {}).get("budget_form", "max")
    return form if form in FORMS else "max"
