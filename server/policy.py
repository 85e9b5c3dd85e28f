"""ModePolicy: which served model answers a request, and with what budget.

A request picks a mode in one of three ways, first match wins:
1. `mode` (an l2s extension, not in the OpenAI spec): short | long | auto;
2. `model`: `l2s-short`, `l2s-long`, an extra's name, or `l2s-auto`;
3. OpenAI `reasoning_effort`: none/minimal/low -> short, medium -> auto, high/xhigh/max -> long.
With none of them (or `model=l2s-auto` and no effort) the mode is auto.

`auto` answers with the short model and escalates to the long one when the short answer's confidence
(l2s.confidence) is below the threshold `l2s eval` calibrated on held-out problems. A thinking budget
(`max_thinking_tokens`, an l2s extension) is passed to whichever model answers; the engine forces
`</think>` after that many reasoning tokens, as Qwen documents for its thinking models.
"""

from __future__ import annotations

from dataclasses import dataclass

from l2s.server.errors import APIError
from l2s.server.settings import AUTO, LONG, SHORT

EFFORT_TO_MODE = {
    "none": "short",
    "minimal": "short",
    "low": "short",
    "medium": "auto",
    "high": "long",
    "xhigh": "long",
    "max": "long",
}
MODE_TO_MODEL = {"short": SHORT, "long": LONG}
MODEL_TO_MODE = {SHORT: "short", LONG: "long", AUTO: "auto"}


@dataclass(frozen=True)
class Route:
    mode: str | None  # short | long | auto; None for an extra model named directly
    model: str  # the served model that answers first
    escalate_to: str | None = None  # auto: the model that answers when the first is not confident
    threshold: float | None = None  # auto: escalate when confidence < threshold
    max_tokens: int = 512
    max_thinking_tokens: int | None = None


@dataclass
class ModePolicy:
    """Maps (mode, model, reasoning_effort, budgets) to a `Route`, validating against the served models.

    >>> p = ModePolicy(models={"l2s-long", "l2s-short", "merge-0.5"}, threshold=0.7)
    >>> p.route(mode="short").model
    'l2s-short'
    >>> p.route(model="l2s-auto", reasoning_effort="high").model
    'l2s-long'
    >>> r = p.route(reasoning_effort="medium", max_thinking_tokens=64)
    >>> (r.mode, r.model, r.escalate_to, r.threshold, r.max_thinking_tokens)
    ('auto', 'l2s-short', 'l2s-long', 0.7, 64)
    >>> p.route(model="merge-0.5").mode is None
    True
    >>> p.route(model="gpt-4o")
    Traceback (most recent call last):
    l2s.server.errors.APIError: The model 'gpt-4o' does not exist; served models: l2s-auto, l2s-long, l2s-short, merge-0.5
    >>> p.route(mode="short", model="l2s-long")
    Traceback (most recent call last):
    l2s.server.errors.APIError: mode 'short' conflicts with model 'l2s-long'; give one of them
    """

    models: set[str]
    threshold: float | None = None
    default_model: str = AUTO
    default_max_tokens: int = 512
    max_tokens_cap: int = 1024

    def served_names(self) -> list[str]:
        return sorted({AUTO, *self.models})

    def route(
        self,
        *,
        mode: str | None = None,
        model: str | None = None,
        reasoning_effort: str | None = None,
        max_tokens: int | None = None,
        max_thinking_tokens: int | None = None,
    ) -> Route:
        name = model or self.default_model
        if name not in self.models and name != AUTO:
            served = ", ".join(self.served_names())
            raise APIError(
                404,
                f"The model '{name}' does not exist; served models: {served}",
                param="model",
                code="model_not_found",
            )
        model_mode = MODEL_TO_MODE.get(name)
        explicit_model = model is not None and name != AUTO
        if mode is not None and explicit_model and model_mode != mode:
            raise APIError(
                422, f"mode '{mode}' conflicts with model '{name}'; give one of them", param="mode"
            )
        if mode is None:
            mode = model_mode if explicit_model else EFFORT_TO_MODE.get(reasoning_effort or "", model_mode)
        budget = self._max_tokens(max_tokens)
        if max_thinking_tokens is not None and max_thinking_tokens >= budget:
            max_thinking_tokens = None  # the budget cannot bind: max_tokens stops generation first
        if mode is None:  # an extra model, named directly
            return Route(None, name, max_tokens=budget, max_thinking_tokens=max_thinking_tokens)
        if mode == "auto":
            if self.threshold is None:
                raise APIError(
                    422,
                    "mode 'auto' needs a calibrated threshold; start the server with --calibration "
                    "RUN_DIR/calibration.json (from `l2s eval`) or --auto-threshold, or ask for short|long",
                    param="mode",
                    code="auto_not_calibrated",
                )
            return Route("auto", SHORT, LONG, self.threshold, budget, max_thinking_tokens)
        return Route(mode, MODE_TO_MODEL[mode], max_tokens=budget, max_thinking_tokens=max_thinking_tokens)

    def _max_tokens(self, requested: int | None) -> int:
        if requested is None:
            return min(self.default_max_tokens, self.max_tokens_cap)
        if requested > self.max_tokens_cap:
            raise APIError(
                422,
                f"max_tokens {requested} is above this server's cap of {self.max_tokens_cap}",
                param="max_tokens",
                code="max_tokens_too_large",
            )
        return requested
