"""The engine protocol every generation backend implements, and its request/result types.

A prompt is either chat messages (`[{"role": "user", "content": ...}]`, rendered with the model's own
chat template) or raw text (used as is). Lengths are counted in the model's own tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Messages = list[dict[str, str]]
Prompt = str | Messages
# on_token(flat_index, token_id): called as tokens are produced; flat_index = prompt_index * n + sample_index.
TokenCallback = Callable[[int, int], None]

# Temperatures below this sample greedily (as vLLM does): dividing logits by 1e-300 overflows to inf/NaN.
GREEDY_BELOW = 1e-5


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    # Thinking budget: after this many tokens inside <think>, force "</think>" and let the model answer.
    # A budget-conditioned model (`l2s derive --method budget`) is also told it in its prompt.
    max_thinking_tokens: int | None = None
    # False: the budget is only told (to a budget-conditioned model), not forced, which measures how well
    # the model keeps to it by itself. For any other model the budget then changes nothing.
    budget_cap: bool = True
    seed: int | None = None
    logprobs: bool = False
    stop: list[str] | None = None

    @property
    def greedy(self) -> bool:
        """True when `temperature` is too small to sample with (0 is the usual way to ask for greedy).

        >>> SamplingParams(temperature=5e-324).greedy, SamplingParams(temperature=0.7).greedy
        (True, False)
        """
        return self.temperature < GREEDY_BELOW

    @property
    def thinking_cap(self) -> int | None:
        """The reasoning tokens after which the engine forces `</think>`: the budget unless `budget_cap` is off.

        >>> SamplingParams(max_thinking_tokens=8).thinking_cap, SamplingParams().thinking_cap
        (8, None)
        >>> SamplingParams(max_thinking_tokens=8, budget_cap=False).thinking_cap
        """
        return self.max_thinking_tokens if self.budget_cap else None


@dataclass
class Generation:
    text: str  # the whole completion as decoded (reasoning and answer), special tokens skipped
    token_ids: list[int]
    finish_reason: str  # "stop" | "length"
    reasoning: str  # text inside the think block
    content: str  # text after </think> (the answer)
    reasoning_tokens: int  # tokens inside the think block
    logprobs: list[float] | None = None  # per generated token, when asked for
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


class Engine(Protocol):
    name: str
    model_path: str

    @property
    def tokenizer(self) -> Any: ...

    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams, on_token: TokenCallback | None = None
    ) -> list[list[Generation]]:
        """One list of `params.n` generations per prompt, in prompt order."""
        ...

    def close(self) -> None: ...
