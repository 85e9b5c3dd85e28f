"""ModePolicy: which served model answers a request, and with what budget.

A request picks a mode in one of three ways, first match wins:
1. `mode` (an l2s extension, not in the OpenAI spec): short | long | auto;
2. `model`: `l2s-short`, `l2s-long`, an extra's name, or `l2s-auto`;
3. OpenAI `reasoning_effort`: none/minimal/low -> short, medium -> auto, high/xhigh/max -> long.
With none of them (or `model=l2s-auto` and no effort) the mode is auto.

With an effort map (`efforts`, from effort.json: `l2s calibrate`), step 3 instead sends each level to
the model and thinking budget measured for it, and the alias `l2s` is served: `l2s` or `l2s-auto` with
`reasoning_effort` gets that level (none = minimal; xhigh, max = high), `l2s` without one gets medium.
What a request states explicitly still wins: `mode` or a concrete model name bypass the map, and
`max_thinking_tokens` replaces the level's budget (the level still picks the model).

`auto` answers with the short model and escalates to the long one when the short answer's confidence
(l2s.confidence) is below the threshold `l2s eval` calibrated on held-out problems. A thinking budget
(`max_thinking_tokens`, an l2s extension) is passed to whichever model answers; the engine forces
`</think>` after that many reasoning tokens, as Qwen documents for its thinking models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from l2s.effort import DEFAULT_LEVEL, canonical_level
from l2s.server.errors import APIError
from l2s.server.settings import AUTO, EFFORT, LONG, SHORT

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
    effort: str | None = None  # the reasoning_effort level whose map chose the model; None otherwise


@dataclass(frozen=True)
class EffortLevel:
    """Where the effort map sends one level: a served model and its thinking budget, with what that
    configuration measured (effort.json; reported by /v1/models)."""

    model: str  # a served name
    thinking_budget: int | None = None
    accuracy: float | None = None
    accuracy_ci95: tuple[float, float] | None = None
    mean_tokens: float | None = None
    point: str | None = None  # its name in the eval report (NAME or NAME@BUDGET)


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

    With an effort map, levels go where it says, and `l2s` is served:

    >>> m = {"minimal": EffortLevel("l2s-short"), "low": EffortLevel("merge-0.5", 8),
    ...      "medium": EffortLevel("merge-0.5", 16), "high": EffortLevel("l2s-long")}
    >>> p = ModePolicy(models={"l2s-long", "l2s-short", "merge-0.5"}, threshold=0.7, efforts=m)
    >>> r = p.route(model="l2s", reasoning_effort="low")
    >>> (r.model, r.max_thinking_tokens, r.effort), p.route(model="l2s").effort
    (('merge-0.5', 8, 'low'), 'medium')
    >>> r = p.route(model="l2s", reasoning_effort="xhigh", max_thinking_tokens=32)
    >>> (r.mode, r.model, r.max_thinking_tokens, r.effort)
    ('long', 'l2s-long', 32, 'high')
    >>> p.route(model="l2s-auto").mode, p.route(model="l2s-short", reasoning_effort="high").model
    ('auto', 'l2s-short')
    >>> try:
    ...     p.route(model="l2s", reasoning_effort="extreme")
    ... except APIError as e:
    ...     (e.status, e.param, e.code), e.message
    ((400, 'reasoning_effort', 'unsupported_value'), "unknown reasoning_effort 'extreme'; valid: none, minimal, low, medium, high, xhigh, max")
    """

    models: set[str]
    threshold: float | None = None
    default_model: str = AUTO
    default_max_tokens: int = 512
    max_tokens_cap: int = 1024
    efforts: dict[str, EffortLevel] = field(default_factory=dict)  # level -> route; {}: the fixed table

    def aliases(self) -> set[str]:
        """Names that route rather than name a model: `l2s-auto`, and `l2s` with an effort map."""
        return {AUTO, EFFORT} if self.efforts else {AUTO}

    def served_names(self) -> list[str]:
        return sorted(self.aliases() | self.models)

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
        if name not in self.models and name not in self.aliases():
            served = ", ".join(self.served_names())
            raise APIError(
                404,
                f"The model '{name}' does not exist; served models: {served}",
                param="model",
                code="model_not_found",
            )
        level = None
        if reasoning_effort is not None:
            try:
                level = canonical_level(reasoning_effort)
            except ValueError as e:
                # OpenAI's answer to a value a parameter does not take: 400, code unsupported_value.
                raise APIError(400, str(e), param="reasoning_effort", code="unsupported_value") from None
        model_mode = MODEL_TO_MODE.get(name)
        explicit_model = model is not None and name not in self.aliases()
        if mode is not None and explicit_model and model_mode != mode:
            raise APIError(
                422, f"mode '{mode}' conflicts with model '{name}'; give one of them", param="mode"
            )
        budget = self._max_tokens(max_tokens)
        target = None  # the effort map's route, when it decides
        if mode is None and not explicit_model and self.efforts and (level or name == EFFORT):
            level = level or DEFAULT_LEVEL
            target = self.efforts[level]
            if max_thinking_tokens is None:  # a budget the request names wins over the level's
                max_thinking_tokens = target.thinking_budget
        if max_thinking_tokens is not None and max_thinking_tokens >= budget:
            max_thinking_tokens = None  # the budget cannot bind: max_tokens stops generation first
        if target is not None:
            mode = MODEL_TO_MODE.get(target.model)
            return Route(
                mode, target.model, max_tokens=budget, max_thinking_tokens=max_thinking_tokens, effort=level
            )
        if mode is None:
            mode = model_mode if explicit_model else EFFORT_TO_MODE.get(reasoning_effort or "", model_mode)
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
