"""What both engines share: prompt rendering, think-block bookkeeping, and turning token ids into a `Generation`.

Written by hand because no library does this part: transformers and vLLM return token ids, but the
reasoning/answer split, the reasoning-token count (Kimi k1.5 measures "length" in the model's own
tokens) and the R1-distill case — a chat template that opens `<think>` in the prompt, so the completion
starts inside the think block — are l2s's contract (docs/DESIGN.md, "Reasoning format"). Both engines build
their `Generation`s here, so "reasoning_tokens" and "text" mean the same thing whichever engine ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from l2s.engines.base import Generation, Prompt, SamplingParams
from l2s.errors import UserError
from l2s.grading import THINK_CLOSE, THINK_OPEN, answer_span, split_reasoning

if TYPE_CHECKING:
    from l2s.budget import BudgetPrompt


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    ids: list[int]
    think_opened: bool  # the prompt ends inside an open <think> block (R1-distill style templates)


@dataclass(frozen=True)
class ThinkMarkers:
    """The token sequences of `<think>` and `</think>` in one tokenizer (one token each when special)."""

    open_ids: tuple[int, ...]
    close_ids: tuple[int, ...]

    @classmethod
    def of(cls, tokenizer: Any) -> ThinkMarkers:
        enc = lambda s: tuple(tokenizer.encode(s, add_special_tokens=False))  # noqa: E731
        return cls(enc(THINK_OPEN), enc(THINK_CLOSE))


def opens_think(prompt_text: str) -> bool:
    """Whether a rendered prompt leaves a `<think>` block open (the model continues inside it).

    >>> opens_think("<|im_start|>assistant\\n<think>\\n")
    True
    >>> opens_think("<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n")  # Qwen3 enable_thinking=False
    False
    >>> opens_think("<|im_start|>assistant\\n")
    False
    """
    return prompt_text.rfind(THINK_OPEN) > prompt_text.rfind(THINK_CLOSE)


def prompt_as_sent(prompt: Prompt, max_thinking_tokens: int | None, told: BudgetPrompt | None) -> Prompt:
    """The prompt an engine actually sends: chat messages to a budget-conditioned model (`told`, from
    `l2s.budget.budget_prompt`) asked for a thinking budget state the budget as in the model's training
    (`l2s.budget.BudgetPrompt.apply`); anything else is sent as given.

    Raw text is left alone: it is already the model's input, and where its user turn ends is the chat
    template's business, so a raw-text caller writes the instruction in itself. Messages without a user
    turn are sent as given too. Either way the forced `</think>` at the budget still caps the reasoning,
    unless `SamplingParams.budget_cap` is off (the budget is then only told).

    >>> msgs = [{"role": "user", "content": "2+2?"}]
    >>> from l2s.budget import BudgetPrompt
    >>> prompt_as_sent(msgs, 16, BudgetPrompt())[0]["content"]
    '2+2?\\nThink for at most 16 tokens.'
    >>> prompt_as_sent(msgs, 16, BudgetPrompt(place="system"))[0]
    {'role': 'system', 'content': 'Think for at most 16 tokens.'}
    >>> prompt_as_sent(msgs, None, BudgetPrompt()) == msgs, prompt_as_sent(msgs, 16, None) == msgs
    (True, True)
    >>> prompt_as_sent("raw text", 16, BudgetPrompt())
    'raw text'
    """
    if told is None or max_thinking_tokens is None or isinstance(prompt, str):
        return prompt
    if not any(m.get("role") == "user" for m in prompt):
        return prompt
    return told.apply(prompt, max_thinking_tokens)


def sent_by(engine: Any, prompt: Prompt, params: SamplingParams) -> Prompt:
    """The prompt `engine` sends for `prompt` under `params` (what a sample record should show).

    An engine that has no `budget_prompt` (e.g. a test double) sends every prompt as given."""
    return prompt_as_sent(prompt, params.max_thinking_tokens, getattr(engine, "budget_prompt", None))


def render_prompt(tokenizer: Any, prompt: Prompt) -> RenderedPrompt:
    """Chat messages go through the model's own chat template; a plain string is used as is."""
    if isinstance(prompt, str):
        text = prompt
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    else:
        if not getattr(tokenizer, "chat_template", None):
            raise UserError(
                "the model has no chat template; add one to tokenizer_config.json or chat_template.jinja, "
                "or pass raw text prompts"
            )
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        # The template already holds any BOS it wants; adding special tokens again would double it.
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return RenderedPrompt(text, list(ids), opens_think(text))


def _ends_with(seq: Sequence[int], suffix: Sequence[int], end: int) -> bool:
    n = len(suffix)
    return n > 0 and end >= n and tuple(seq[end - n : end]) == tuple(suffix)


def count_reasoning_tokens(ids: Sequence[int], markers: ThinkMarkers, think_opened: bool = False) -> int:
    """Tokens strictly inside think blocks (the markers themselves are not counted).

    >>> m = ThinkMarkers(open_ids=(1,), close_ids=(2,))
    >>> count_reasoning_tokens([1, 7, 7, 7, 2, 9, 0], m)
    3
    >>> count_reasoning_tokens([7, 7, 2, 9], m, think_opened=True)
    2
    >>> count_reasoning_tokens([9, 9], m), count_reasoning_tokens([1, 7, 7], m)
    (0, 2)
    >>> count_reasoning_tokens([5, 6, 7, 8, 5, 6, 9], ThinkMarkers((5, 6), (8, 5, 6)), think_opened=False)
    1
    """
    inside, count = think_opened, 0
    for end in range(1, len(ids) + 1):
        if not inside and _ends_with(ids, markers.open_ids, end):
            inside = True
            continue
        if inside:
            if _ends_with(ids, markers.close_ids, end):
                # The first len(close)-1 tokens of a multi-token marker were counted as they came.
                count -= len(markers.close_ids) - 1
                inside = False
                continue
            count += 1
    return max(count, 0)


def decode_completion(tokenizer: Any, ids: Sequence[int], markers: ThinkMarkers) -> str:
    """Decode with special tokens skipped, except `<think>`/`</think>`, which the grader needs to see."""
    keep = {markers.open_ids[0]: THINK_OPEN} if len(markers.open_ids) == 1 else {}
    if len(markers.close_ids) == 1:
        keep[markers.close_ids[0]] = THINK_CLOSE
    parts, start = [], 0
    for i, t in enumerate(ids):
        if t in keep:
            parts += [tokenizer.decode(list(ids[start:i]), skip_special_tokens=True), keep[t]]
            start = i + 1
    parts.append(tokenizer.decode(list(ids[start:]), skip_special_tokens=True))
    return "".join(parts)


def first_stop(text: str, stops: Sequence[str] | None) -> int:
    """Character index where the earliest stop string starts in `text`, or -1.

    >>> first_stop("a b STOP c END", ["END", "STOP"]), first_stop("abc", ["x"]), first_stop("abc", None)
    (4, -1, -1)
    """
    hits = [i for s in (stops or []) if s and (i := text.find(s)) >= 0]
    return min(hits) if hits else -1


def answer_token_span(
    tokenizer: Any, ids: Sequence[int], markers: ThinkMarkers, text: str, *, think_opened: bool = False
) -> list[int] | None:
    """[start, end) of the tokens that spell the final answer (`l2s.grading.answer_span`), or None without one.

    `text` is `ids` decoded by `decode_completion`; `think_opened` as in `answer_span` (R1-distill templates).
    Prefix decodes are walked back from the end, where the answer sits, so this costs a few decodes.
    """
    span = answer_span(text, think_opened=think_opened)
    if span is None:
        return None
    start, end = span
    cache: dict[int, int] = {}

    def length(k: int) -> int:
        if k not in cache:
            cache[k] = len(decode_completion(tokenizer, ids[:k], markers))
        return cache[k]

    lo = hi = None
    for k in range(len(ids), 0, -1):  # token k-1 spans characters [length(k-1), length(k))
        if length(k) <= start:
            break
        if length(k - 1) < end:
            hi = k if hi is None else hi
            lo = k - 1
    return None if lo is None else [lo, hi]


def make_generation(
    tokenizer: Any,
    ids: Sequence[int],
    *,
    eos_ids: set[int],
    markers: ThinkMarkers,
    think_opened: bool,
    stops: Sequence[str] | None = None,
    logprobs: Sequence[float] | None = None,
) -> Generation:
    """Build a `Generation` from a row's generated ids (already cut after its first EOS, EOS included).

    On a stop string the text is cut before it (OpenAI semantics) and the ids after the token that
    completed it; finish_reason is "stop" on EOS or a stop string, "length" otherwise.
    """
    ids = list(ids)
    finish_eos = bool(ids) and ids[-1] in eos_ids  # EOS is a completion token but never a reasoning one
    finish = "stop" if finish_eos else "length"
    text = decode_completion(tokenizer, ids, markers)
    cut = first_stop(text, stops)
    if cut >= 0:
        # The shortest prefix of ids whose text already holds the stop string (monotone: binary search).
        lo, hi = 1, len(ids)
        while lo < hi:
            mid = (lo + hi) // 2
            if first_stop(decode_completion(tokenizer, ids[:mid], markers), stops) >= 0:
                hi = mid
            else:
                lo = mid + 1
        ids, text, finish, finish_eos = ids[:lo], text[:cut], "stop", False
    reasoning, content = split_reasoning(text, think_opened=think_opened)
    extra: dict[str, Any] = {"think_opened": True} if think_opened else {}  # graders need it
    if logprobs is not None:  # what l2s.confidence needs: where the answer's tokens are
        extra["answer_tokens"] = answer_token_span(tokenizer, ids, markers, text, think_opened=think_opened)
    return Generation(
        text=text,
        token_ids=ids,
        finish_reason=finish,
        reasoning=reasoning,
        content=content,
        reasoning_tokens=count_reasoning_tokens(ids[:-1] if finish_eos else ids, markers, think_opened),
        logprobs=list(logprobs[: len(ids)]) if logprobs is not None else None,
        extra=extra,
    )


def eos_token_ids(tokenizer: Any, generation_config: Any = None) -> set[int]:
    """EOS ids from the model's generation_config (int or list) and the tokenizer."""
    ids: set[int] = set()
    eos = getattr(generation_config, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif eos:
        ids.update(int(e) for e in eos)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids
