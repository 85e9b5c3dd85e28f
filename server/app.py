"""The FastAPI app: `build_app(settings)` wires the lifespan, routers, error handlers and guards.

Shaped like vLLM's `entrypoints/openai/api_server.py`: engines are built once in the lifespan and
kept in `app.state`; routes are thin (parse, route with `ModePolicy`, hand to `Endpoint`); every error
is an OpenAI-shaped body. Nothing here imports torch: the lifespan does, through the backends, so
importing the app and answering `--help` stay fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from l2s.engines.base import SamplingParams
from l2s.server.batching import Admission
from l2s.server.errors import APIError, install_error_handlers
from l2s.server.metrics import ServerMetrics
from l2s.server.policy import ModePolicy, Route
from l2s.server.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EffortCard,
    ErrorResponse,
    ModelCard,
    ModelList,
)
from l2s.server.security import BodySizeLimit, check_api_key
from l2s.server.serving import Endpoint
from l2s.server.settings import AUTO, EFFORT, LONG, SHORT, ServeSettings

log = logging.getLogger("l2s.server")
# Every error is OpenAI's {"error": {...}} body; documenting it here also replaces FastAPI's default 422
# schema (HTTPValidationError) in /openapi.json, so clients generated from the schema see the real shape.
_ERRORS = {
    status: {"model": ErrorResponse, "description": what}
    for status, what in {
        400: "malformed JSON, an unknown reasoning_effort, or prompt + max_tokens beyond the model's context",
        401: "missing or wrong API key",
        404: "unknown model",
        413: "request body over the server's limit",
        422: "invalid parameters",
        429: "server at capacity (see Retry-After)",
        500: "internal error",
        503: "engines still loading",
    }.items()
}
api = APIRouter(prefix="/v1", dependencies=[Depends(check_api_key)], responses=_ERRORS)
ops = APIRouter()


def _endpoint(request: Request) -> Endpoint:
    return request.app.state.endpoint


def _log_unknown(body, endpoint: str) -> None:
    unknown = body.unknown_fields()
    if unknown:
        log.info("%s: ignoring fields l2s does not use: %s", endpoint, ", ".join(unknown))


def _route_and_params(endpoint: Endpoint, body) -> tuple[Route, SamplingParams]:
    settings = endpoint.settings
    if body.n > settings.max_n:
        raise APIError(422, f"n {body.n} is above this server's cap of {settings.max_n}", param="n")
    route = endpoint.policy.route(
        mode=body.mode,
        model=body.model,
        reasoning_effort=body.reasoning_effort,
        max_tokens=body.requested_max_tokens(),
        max_thinking_tokens=body.max_thinking_tokens,
    )
    params = SamplingParams(
        n=body.n,
        temperature=body.temperature,
        top_p=body.top_p,
        max_tokens=route.max_tokens,
        max_thinking_tokens=route.max_thinking_tokens,
        seed=body.seed,
        logprobs=bool(body.logprobs),
        stop=body.stop,
    )
    return route, params


async def _until_disconnect(request: Request, work) -> object:
    """Run `work`, cancelling it when the client disconnects (vLLM's `with_cancellation` pattern).

    FastAPI has read the body already, so the only message left on `receive` is the disconnect.
    """
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watch = asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if task not in done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return Response(status_code=499)  # nobody is listening; the status is for the access log
    return task.result()


def _streaming(body_and_release) -> StreamingResponse:
    body, release = body_and_release
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        background=BackgroundTask(release),
    )


@api.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request):
    endpoint = _endpoint(request)
    _log_unknown(body, "chat.completions")
    route, params = _route_and_params(endpoint, body)
    messages = body.prompt_messages()
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return _streaming(endpoint.stream("chat", [messages], route, params, include_usage))
    return await _until_disconnect(request, endpoint.chat(messages, route, params))


@api.post("/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request):
    endpoint = _endpoint(request)
    _log_unknown(body, "completions")
    prompts = body.prompts()
    if len(prompts) > endpoint.settings.max_prompts:
        raise APIError(
            422,
            f"{len(prompts)} prompts is above this server's cap of {endpoint.settings.max_prompts}",
            param="prompt",
        )
    route, params = _route_and_params(endpoint, body)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        echo = prompts if body.echo else None
        return _streaming(endpoint.stream("completions", prompts, route, params, include_usage, echo))
    return await _until_disconnect(request, endpoint.complete(prompts, route, params, body.echo))


@api.get("/models")
async def models(request: Request) -> ModelList:
    from l2s.effort import ALIASES, DEFAULT_LEVEL

    endpoint = _endpoint(request)
    created = endpoint.created
    modes = {LONG: "long", SHORT: "short", AUTO: "auto"}
    levels = {
        level: EffortCard(
            model=lv.model,
            thinking_budget=lv.thinking_budget,
            accuracy=lv.accuracy,
            accuracy_ci95=list(lv.accuracy_ci95) if lv.accuracy_ci95 else None,
            mean_tokens=lv.mean_tokens,
        )
        for level, lv in endpoint.policy.efforts.items()
    }
    effort = {"effort": levels, "default_effort": DEFAULT_LEVEL, "effort_aliases": dict(ALIASES)}
    cards = [
        ModelCard(
            id=name,
            created=created,
            kind="alias" if name in modes or name == EFFORT else "model",
            mode=modes.get(name),
            **(effort if name == EFFORT else {}),
        )
        for name in endpoint.policy.served_names()
    ]
    return ModelList(data=cards)


@ops.get("/health")
async def health(request: Request) -> JSONResponse:
    endpoint: Endpoint | None = getattr(request.app.state, "endpoint", None)
    if endpoint is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    return JSONResponse(
        {
            "status": "ok",
            "engine": endpoint.settings.engine,
            # Names only: /health is open (no API key), so it must not reveal checkpoint paths on disk.
            "models": sorted(endpoint.backends),
            "auto_threshold": endpoint.policy.threshold,
            "in_flight": endpoint.admission.in_flight,
        }
    )


@ops.get("/metrics")
async def metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    endpoint: Endpoint = _endpoint(request)
    for name, backend in endpoint.backends.items():
        endpoint.metrics.queue_depth.labels(name).set(backend.depth())
    return Response(endpoint.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _lifespan(settings: ServeSettings):
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from l2s.server.backends import build_backend

        paths = settings.served_models()
        threshold = settings.threshold()
        efforts = settings.effort_routes(paths)  # a map naming an unserved model stops here
        metrics = ServerMetrics()
        backends = {}
        try:
            for name, path in paths.items():
                log.info("loading %s from %s (%s engine)", name, path, settings.engine)
                depth = functools.partial(lambda n, v: metrics.queue_depth.labels(n).set(v), name)
                backends[name] = build_backend(settings.engine, name, path, settings, depth)
            policy = ModePolicy(
                models=set(backends),
                threshold=threshold,
                default_model=settings.default_model,
                default_max_tokens=settings.default_max_tokens,
                max_tokens_cap=settings.max_tokens_cap,
                efforts=efforts,
            )
            admission = Admission(settings.max_concurrent, on_change=metrics.in_flight.set)
            if threshold is None:
                log.warning("auto mode is off: no --calibration or --auto-threshold given")
                if policy.default_model == AUTO:
                    # requests that name no model get the effort map's medium, else the reference model
                    policy.default_model = EFFORT if efforts else LONG
            if efforts:
                log.info(
                    "reasoning_effort: %s",
                    ", ".join(f"{lv} -> {r.point or r.model}" for lv, r in efforts.items()),
                )
            app.state.endpoint = Endpoint(backends, policy, metrics, admission, settings)
            log.info("serving %s", ", ".join(policy.served_names()))
            yield
        finally:
            for backend in backends.values():
                await backend.close()
            app.state.endpoint = None

    return lifespan


def build_app(settings: ServeSettings) -> FastAPI:
    """The OpenAI-compatible app for `settings`; engines load when the app starts (its lifespan)."""
    from l2s import __version__

    app = FastAPI(title="l2s", version=__version__, lifespan=_lifespan(settings))
    app.state.settings = settings
    app.state.endpoint = None
    app.include_router(api)
    app.include_router(ops)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
