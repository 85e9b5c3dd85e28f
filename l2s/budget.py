"""Budget-conditioned models: the instruction that states a thinking budget in the prompt.

A model derived with `l2s derive --method budget` (length-controlled RL, as in L1 — Aggarwal & Welleck
2025, "L1: Controlling How Long a Reasoning Model Thinks With Reinforcement Learning") learned to read
its thinking budget from the prompt: every training rollout's prompt stated it,
"Think for at most N tokens." So wherever such a model is asked for a budget — eval's
`--thinking-budgets`, the server's `max_thinking_tokens` or an effort level's budget — the same sentence
is written into the prompt exactly as in training (`BudgetPrompt`: at the end of the user turn, L1's
convention, or in the system turn), and the forced `</think>` at N reasoning tokens
stays as the hard cap. Any other model's prompt is left as it is.

The think block is compulsory for such a model: its chat template opens `<think>` in the generation
prompt (`open_think_block`, as R1-distill templates do), so everything it writes before `</think>` is
reasoning, counted against the budget and cut by the forced `</think>`. Without that, RL finds the
cheap way out: leave `<think>` out, reason in the open, and nothing is counted or capped. Because the
template itself is saved with the checkpoint, every engine (l2s's own, or vLLM serving the folder)
renders the same prompt.

The model is recognised by its l2s.json (`method: budget`), which also records the instruction's form
and place.
No library ships this convention, hence this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METHOD = "budget"
THINK_OPENER = "<think>\n"  # what the template appends to the generation prompt (R1-distill style)
FORMS = ("max", "exact")
PLACES = ("user", "system")  # where the instruction goes: end of the last user turn | the system turn
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


def with_budget(
    messages: Sequence[dict[str, Any]], n: int, form: str = "max", place: str = "user"
) -> list[dict[str, Any]]:
    """A copy of chat `messages` that states a thinking budget of `n` tokens.

    place "user" (L1's convention): the last user turn ends with the budget instruction, on its own
    line. place "system": the instruction is the system turn's last line (a system turn is added when
    there is none), leaving the user's text exactly as it was; a small model trained on one prompt
    format is disturbed far less by that (benchmarks/RESULTS.md).

    >>> with_budget([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}], 8)
    [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': '2+2?\\nThink for at most 8 tokens.'}]
    >>> with_budget([{"role": "user", "content": "2+2?"}], 8, place="system")
    [{'role': 'system', 'content': 'Think for at most 8 tokens.'}, {'role': 'user', 'content': '2+2?'}]
    >>> with_budget([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}], 8,
    ...             place="system")[0]
    {'role': 'system', 'content': 'Be brief.\\nThink for at most 8 tokens.'}
    >>> with_budget([{"role": "assistant", "content": "hi"}], 8)
    Traceback (most recent call last):
    ValueError: the messages have no user turn to state the thinking budget in
    """
    sentence = budget_instruction(n, form)
    out = [dict(m) for m in messages]
    if place == "system":
        if out and out[0].get("role") == "system":
            out[0]["content"] = f"{out[0].get('content') or ''}\n{sentence}"
        else:
            out.insert(0, {"role": "system", "content": sentence})
        return out
    if place != "user":
        raise ValueError(f"unknown budget place '{place}'; choose one of: {', '.join(PLACES)}")
    for m in reversed(out):
        if m.get("role") == "user":
            m["content"] = f"{m.get('content') or ''}\n{sentence}"
            return out
    raise ValueError("the messages have no user turn to state the thinking budget in")


@dataclass(frozen=True)
class BudgetPrompt:
    """How a budget-conditioned model was told its budget in training, so that it is told the same way
    wherever it is asked for one: the instruction's form and where in the messages it goes.

    >>> BudgetPrompt().apply([{"role": "user", "content": "2+2?"}], 4)[-1]["content"]
    '2+2?\\nThink for at most 4 tokens.'
    """

    form: str = "max"
    place: str = "user"

    def apply(self, messages: Sequence[dict[str, Any]], n: int) -> list[dict[str, Any]]:
        return with_budget(messages, n, self.form, self.place)


def budget_prompt(model_path: str | Path) -> BudgetPrompt | None:
    """How a budget-conditioned checkpoint was told its budget, or None for any other model.

    Reads the checkpoint's l2s.json (`method: budget`, `config.budget_form` and `config.budget_place`);
    a missing or unreadable file means "not budget-conditioned".

    >>> budget_prompt("/nonexistent") is None
    True
    """
    from l2s.checkpoint import read_provenance

    try:
        record = read_provenance(model_path)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("method") != METHOD:
        return None
    config = record.get("config") or {}
    form, place = config.get("budget_form", "max"), config.get("budget_place", "user")
    return BudgetPrompt(form if form in FORMS else "max", place if place in PLACES else "user")


def _generation_prompt(tokenizer: Any) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True
    )


def open_think_block(tokenizer: Any) -> bool:
    """Make `tokenizer`'s chat template open the think block in its generation prompt; True if changed.

    A template that already leaves `<think>` open (R1-distill) is kept as it is. The opener is appended
    after the template's own output when a generation prompt is asked for, so the rest of the template
    (roles, system prompt, tool turns) is untouched.

    >>> from types import SimpleNamespace
    >>> import jinja2
    >>> class Tok(SimpleNamespace):
    ...     def apply_chat_template(self, messages, tokenize, add_generation_prompt):
    ...         return jinja2.Template(self.chat_template).render(
    ...             messages=messages, add_generation_prompt=add_generation_prompt)
    >>> tok = Tok(chat_template="{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
    ...     "{% if add_generation_prompt %}<assistant>{% endif %}")
    >>> open_think_block(tok), tok.apply_chat_template([{"role": "user", "content": "2+2?"}], False, True)
    (True, '<user>2+2?<assistant><think>\\n')
    >>> open_think_block(tok)  # already open: left alone
    False
    """
    from l2s.engines.completion import opens_think
    from l2s.errors import UserError

    if opens_think(_generation_prompt(tokenizer)):
        return False
    suffix = "{%- if add_generation_prompt %}{{- '" + THINK_OPENER.replace("\n", "\\n") + "' }}{%- endif %}"
    template = tokenizer.chat_template
    if isinstance(template, str):
        tokenizer.chat_template = template + suffix
    elif isinstance(template, dict) and isinstance(template.get("default"), str):
        tokenizer.chat_template = {**template, "default": template["default"] + suffix}
    else:
        raise UserError(
            "the model has no chat template to open the think block in; add one to its "
            "tokenizer_config.json or chat_template.jinja"
        )
    if not opens_think(_generation_prompt(tokenizer)):
        raise UserError(
            "could not make the chat template open <think> in the generation prompt; end the template's "
            f"generation prompt with {THINK_OPENER!r} yourself"
        )
    return True
