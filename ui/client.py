"""The UI's HTTP side: stream one chat completion per mode from the l2s server with the openai client.

The server is OpenAI-compatible; what is l2s-specific travels as extension fields: `mode` and
`max_thinking_tokens` in the request (`extra_body`), `delta.reasoning_content` in streamed chunks, the
answering model, its thinking budget, the effort level and whether `auto` escalated in the response.
A column ("lane") is a mode (`short`, `long`, `auto`) or an effort level of the `l2s` model
(`effort-low`: OpenAI's `reasoning_effort="low"`, which the server's effort map routes); the levels'
measured accuracy and tokens come from the `l2s` card of `/v1/models` (`fetch_effort_map`). `stream_mode` turns one streamed request
into successive `ColumnResult` snapshots and never raises for server trouble: `error_message` maps each
openai exception to one readable line the UI shows instead of a stack trace. Written by hand because
no library maps OpenAI errors to end-user sentences.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

MODES = ("short", "long", "auto")
UPDATE_EVERY_S = 0.05  # coalesce streamed chunks into at most ~20 UI updates a second
EFFORTS = ("minimal", "low", "medium", "high")  # the effort map's levels, cheapest first
EFFORT_LANE = "effort-"  # lane name prefix: "effort-low" is reasoning_effort="low" on the `l2s` model


def effort_lane(level: str) -> str:
    """The lane (column) name of an effort level.

    >>> effort_lane("low")
    'effort-low'
    """
    return f"{EFFORT_LANE}{level}"


def lane_level(lane: str) -> str | None:
    """The effort level of a lane; None for a mode.

    >>> lane_level("effort-high"), lane_level("auto")
    ('high', None)
    """
    level = lane.removeprefix(EFFORT_LANE)
    return level if lane.startswith(EFFORT_LANE) and level in EFFORTS else None


@dataclass(frozen=True)
class RequestParams:
    """Sampling knobs the parameters accordion sets; the same for every column of one comparison."""

    temperature: float = 0.0
    max_tokens: int = 512
    max_thinking_tokens: int | None = None  # None: the server's own budget for the mode


@dataclass(frozen=True)
class ColumnResult:
    """What one column shows: the streamed text so far and, once the stream ends, its usage."""

    mode: str
    reasoning: str = ""
    content: str = ""
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    latency_s: float | None = None
    model: str | None = None  # which served model answered (the server's `l2s.model` extension)
    escalated: bool | None = None  # auto only: whether the long model answered (`l2s.escalated`)
    effort: str | None = None  # the effort level that chose the model (`l2s.effort`)
    thinking_budget: int | None = None  # the thinking budget it answered under (`l2s.thinking_budget`)
    attempt_tokens: int | None = None  # auto, escalated: tokens of the discarded short answer
    finish_reason: str | None = None
    error: str | None = None
    done: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # auto's confidence and threshold, when sent

    @property
    def generated_tokens(self) -> int | None:
        """What the answer cost: its completion tokens plus, for an escalated auto, the short attempt's.

        >>> ColumnResult("auto", completion_tokens=90, attempt_tokens=10).generated_tokens
        100
        """
        if self.completion_tokens is None:
            return None
        return self.completion_tokens + (self.attempt_tokens or 0)


def request_kwargs(mode: str, prompt: str, params: RequestParams) -> dict[str, Any]:
    """Arguments of `client.chat.completions.create` for one column (`mode`: a mode or an effort lane).

    `mode` and `max_thinking_tokens` are l2s extensions, so they go in `extra_body`; `model` carries
    the same mode as an alias for servers that only read `model`. An effort lane asks the `l2s` model
    with OpenAI's own `reasoning_effort`; a thinking budget set here replaces the level's.

    >>> kw = request_kwargs("short", "2+2?", RequestParams(max_thinking_tokens=16))
    >>> kw["model"], kw["extra_body"], kw["stream_options"]
    ('l2s-short', {'mode': 'short', 'max_thinking_tokens': 16}, {'include_usage': True})
    >>> "max_thinking_tokens" in request_kwargs("long", "x", RequestParams())["extra_body"]
    False
    >>> kw = request_kwargs("effort-low", "2+2?", RequestParams())
    >>> kw["model"], kw["reasoning_effort"], kw["extra_body"]
    ('l2s', 'low', {})
    """
    level = lane_level(mode)
    if mode not in MODES and level is None:
        lanes = (*MODES, *map(effort_lane, EFFORTS))
        raise ValueError(f"unknown mode {mode!r}; choose one of {lanes}")
    extra: dict[str, Any] = {} if level else {"mode": mode}
    if params.max_thinking_tokens is not None:
        extra["max_thinking_tokens"] = int(params.max_thinking_tokens)
    effort = {"reasoning_effort": level} if level else {}
    return {
        "model": "l2s" if level else f"l2s-{mode}",
        **effort,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": float(params.temperature),
        "max_tokens": int(params.max_tokens),
        "stream": True,
        "stream_options": {"include_usage": True},
        "extra_body": extra,
    }


def fetch_effort_map(client: Any) -> dict[str, dict[str, Any]]:
    """{level: {model, thinking_budget, accuracy, accuracy_ci95, mean_tokens}} from the server's `l2s`
    model card; {} when the server has no effort map or cannot be asked (the UI then offers none)."""
    try:
        cards = client.models.list().data
    except Exception:  # a server that is down or refuses: no effort levels to offer, never a crash
        return {}
    for card in cards:
        if card.id == "l2s":
            levels = _extension(card, "effort")
            if isinstance(levels, dict):
                return {lv: dict(levels[lv]) for lv in EFFORTS if isinstance(levels.get(lv), dict)}
    return {}


def _server_detail(body: object) -> str:
    """The human part of an OpenAI-shaped error body (`{"message": ...}` once the client unwrapped it).

    >>> _server_detail({"message": "bad key", "type": "invalid_request_error"})
    'bad key'
    >>> _server_detail("<html>oops</html>")
    ''
    """
    if isinstance(body, dict):
        message = body.get("message") or body.get("detail")
        if isinstance(message, str):
            return message.strip().splitlines()[0] if message.strip() else ""
    return ""


def error_message(exc: BaseException, server_url: str = "") -> str:
    """One readable line for an exception raised while talking to the server (never a traceback).

    The cases a demo meets: the server is down or unreachable, the API key is missing or wrong (401),
    too many requests (429), a request the server rejects (400/404/422), a server-side failure (5xx).
    """
    import openai

    where = f" at {server_url}" if server_url else ""
    if isinstance(exc, openai.APITimeoutError):
        return f"The l2s server{where} did not answer in time. It may be overloaded; try again or lower max tokens."
    if isinstance(exc, openai.APIConnectionError):
        return (
            f"Cannot reach the l2s server{where}. Is it running? Start it with `l2s serve`, "
            "or pass the right address to `l2s ui --server URL`."
        )
    if isinstance(exc, openai.APIStatusError):
        code, detail = exc.status_code, _server_detail(exc.body)
        said = f" The server said: {detail.rstrip('.')}." if detail else ""
        if code == 401:
            return f"The l2s server{where} refused the API key (401).{said} Pass its key with `l2s ui --api-key KEY`."
        if code == 403:
            return f"The l2s server{where} denied access (403).{said}"
        if code == 429:
            retry = exc.response.headers.get("retry-after")
            wait = f" Retry after {retry} s." if retry else " Wait a moment and try again."
            return f"The l2s server{where} is busy: too many requests (429).{said}{wait}"
        if code in (400, 404, 413, 422):
            return f"The l2s server{where} rejected the request ({code}).{said}"
        if code >= 500:
            return f"The l2s server{where} failed while answering ({code}).{said} See the server's log."
        return f"The l2s server{where} answered with an error ({code}).{said}"
    if isinstance(exc, openai.APIError):
        detail = _server_detail(exc.body) or str(exc).splitlines()[0]
        return f"The l2s server{where} reported an error mid-stream: {detail}"
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return f"Unexpected error talking to the l2s server{where}: {type(exc).__name__}: {first_line}"


def _extension(obj: Any, *names: str) -> Any:
    """The first non-None extension field among `names` on an openai model (fields outside the spec)."""
    extra = getattr(obj, "model_extra", None) or {}
    for name in names:
        value = extra.get(name, getattr(obj, name, None))
        if value is not None:
            return value
    return None


def stream_mode(
    client: Any, mode: str, prompt: str, params: RequestParams, server_url: str = ""
) -> Iterator[ColumnResult]:
    """Stream one mode's answer; yield a `ColumnResult` snapshot after every chunk, the last one `done`.

    `client` is an `openai.OpenAI`. Errors end the stream with `error` set instead of raising.
    """
    result = ColumnResult(mode=mode)
    start = time.perf_counter()
    stream = None
    try:
        stream = client.chat.completions.create(**request_kwargs(mode, prompt, params))
        for chunk in stream:
            result = _apply_chunk(result, chunk)
            result = replace(result, latency_s=time.perf_counter() - start)
            yield result
        yield replace(result, latency_s=time.perf_counter() - start, done=True)
    except GeneratorExit:
        raise
    except Exception as exc:  # every failure becomes the column's message, never a traceback
        yield replace(
            result, latency_s=time.perf_counter() - start, error=error_message(exc, server_url), done=True
        )
    finally:
        if stream is not None:
            stream.close()


def _apply_chunk(result: ColumnResult, chunk: Any) -> ColumnResult:
    """Fold one streamed chunk into the column: text deltas, finish reason, usage, routing.

    The server's routing extension `l2s` ({mode, model, escalated, confidence, threshold,
    attempt_tokens}, see server/schemas.py `Routing`) says which model answered and whether auto escalated.
    """
    changes: dict[str, Any] = {}
    routing = _extension(chunk, "l2s")
    if isinstance(routing, dict):
        if routing.get("model") is not None:
            changes["model"] = str(routing["model"])
        if routing.get("escalated") is not None:
            changes["escalated"] = bool(routing["escalated"])
        if routing.get("attempt_tokens") is not None:
            changes["attempt_tokens"] = int(routing["attempt_tokens"])
        if routing.get("effort") is not None:
            changes["effort"] = str(routing["effort"])
        if routing.get("thinking_budget") is not None:
            changes["thinking_budget"] = int(routing["thinking_budget"])
        extra = {k: routing[k] for k in ("confidence", "threshold") if routing.get(k) is not None}
        if extra:
            changes["extra"] = {**result.extra, **extra}
    for choice in chunk.choices or []:
        delta = choice.delta
        if delta is not None:
            reasoning = _extension(delta, "reasoning_content")
            if reasoning:
                changes["reasoning"] = result.reasoning + reasoning
            if delta.content:
                changes["content"] = result.content + delta.content
        if choice.finish_reason:
            changes["finish_reason"] = choice.finish_reason
    usage = getattr(chunk, "usage", None)
    if usage is not None:
        changes["completion_tokens"] = usage.completion_tokens
        details = getattr(usage, "completion_tokens_details", None)
        if details is not None and details.reasoning_tokens is not None:
            changes["reasoning_tokens"] = details.reasoning_tokens
    return replace(result, **changes) if changes else result


def run_modes(client, modes, prompt, params, server_url, sequential, cancel: threading.Event):
    """Stream every selected mode (or effort lane) at once, or one after another; yield
    {mode: ColumnResult} snapshots, at most one per `UPDATE_EVERY_S` while streaming."""
    results = {m: ColumnResult(mode=m) for m in modes}
    events: queue.Queue = queue.Queue()

    def worker(mode: str) -> None:
        try:
            for snap in stream_mode(client, mode, prompt, params, server_url):
                events.put((mode, snap))
                if cancel.is_set():
                    break
        finally:
            events.put((mode, None))

    with ThreadPoolExecutor(max_workers=1 if sequential else len(modes)) as pool:
        for m in modes:
            pool.submit(worker, m)
        running, last = len(modes), 0.0
        while running:
            mode, snap = events.get()
            while True:  # fold in everything already waiting, then show it once
                if snap is None:
                    running -= 1
                else:
                    results[mode] = snap
                try:
                    mode, snap = events.get_nowait()
                except queue.Empty:
                    break
            if time.monotonic() - last >= UPDATE_EVERY_S or not running:
                last = time.monotonic()
                yield dict(results)
    for m, r in results.items():  # a worker cancelled mid-stream leaves an unfinished column
        if not r.done:
            results[m] = replace(r, error="stopped before the answer finished", done=True)
    yield dict(results)
