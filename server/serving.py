"""Serving a routed request: run the chosen model (escalating in auto mode) and shape the answer.

`Endpoint` holds what the lifespan built (a backend per served model), the `ModePolicy`, the metrics
and the admission bound; routes call `chat`, `complete` and their streaming twins. Streaming is SSE
as OpenAI sends it: `data: {chunk}` lines, an optional usage chunk (`stream_options.include_usage`),
then `data: [DONE]`.

auto mode generates the short answer first (not streamed: whether it stands is known only at its end),
scores it with `l2s.confidence`, and streams either that answer or the long model's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from l2s.engines.base import Generation, Prompt, SamplingParams
from l2s.server.backends import Backend
from l2s.server.batching import Admission, TokenSink
from l2s.server.errors import APIError, error_body
from l2s.server.metrics import ServerMetrics
from l2s.server.policy import ModePolicy, Route
from l2s.server.schemas import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    ChoiceLogprobs,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionTokensDetails,
    DeltaMessage,
    Routing,
    TokenLogprob,
    Usage,
    _id,
)
from l2s.server.settings import ServeSettings
from l2s.server.streaming import StreamDecoder

log = logging.getLogger("l2s.server")


@dataclass
class Answer:
    generations: list[list[Generation]]  # per prompt, n each
    routing: Routing
    backend: Backend  # the one that answered
    streamed: bool  # tokens already went to on_token (False: auto replays the short answer)
    prompt_tokens: int
    think_opened: list[bool]


def usage_of(answer: Answer) -> Usage:
    gens = [g for gs in answer.generations for g in gs]
    completion = sum(g.completion_tokens for g in gens)
    return Usage(
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=completion,
        total_tokens=answer.prompt_tokens + completion,
        completion_tokens_details=CompletionTokensDetails(
            reasoning_tokens=sum(g.reasoning_tokens for g in gens)
        ),
    )


def _confidence(gens: list[list[Generation]]) -> float:
    """The request's confidence: that of its least confident answer (one number decides escalation)."""
    from l2s.confidence import confidence

    return min(confidence(g) for gs in gens for g in gs)


class Endpoint:
    """The served models behind one endpoint."""

    def __init__(
        self,
        backends: dict[str, Backend],
        policy: ModePolicy,
        metrics: ServerMetrics,
        admission: Admission,
        settings: ServeSettings,
    ) -> None:
        self.backends, self.policy, self.metrics, self.admission = backends, policy, metrics, admission
        self.settings, self.created = settings, int(time.time())

    async def close(self) -> None:
        for backend in self.backends.values():
            await backend.close()

    # ---- generation -----------------------------------------------------------------------------------

    async def answer(
        self,
        prompts: Sequence[Prompt],
        route: Route,
        params: SamplingParams,
        on_token: TokenSink | None = None,
    ) -> Answer:
        first = self.backends[route.model]
        budget = params.max_thinking_tokens  # a budget-conditioned model also reads it from its prompt
        infos = [first.prompt_info(p, budget) for p in prompts]
        for backend in {first, self.backends[route.escalate_to or route.model]}:  # before any compute
            _check_context(backend, [backend.prompt_info(p, budget)[0] for p in prompts], params.max_tokens)
        prompt_tokens, opened = sum(n for n, _ in infos), [o for _, o in infos]
        mode_label = route.mode or "model"
        if route.mode != "auto":
            gens = await first.generate(prompts, params, on_token)
            self._count(mode_label, first.name, prompt_tokens, gens)
            routing = Routing(
                mode=route.mode,
                model=first.name,
                effort=route.effort,
                thinking_budget=route.max_thinking_tokens,
            )
            return Answer(gens, routing, first, True, prompt_tokens, opened)
        # auto: the short answer, with the logprobs its confidence needs; escalate when below threshold.
        gens = await first.generate(prompts, replace(params, logprobs=True))
        self._count("auto", first.name, prompt_tokens, gens)
        conf = _confidence(gens)
        routing = Routing(
            mode="auto",
            model=first.name,
            confidence=conf,
            threshold=route.threshold,
            thinking_budget=route.max_thinking_tokens,
        )
        if conf >= route.threshold:
            if not params.logprobs:
                for g in (g for gs in gens for g in gs):
                    g.logprobs = None
            return Answer(gens, routing, first, False, prompt_tokens, opened)
        second = self.backends[route.escalate_to]
        infos = [second.prompt_info(p, budget) for p in prompts]
        prompt_tokens, opened = sum(n for n, _ in infos), [o for _, o in infos]
        attempt = sum(g.completion_tokens for gs in gens for g in gs)
        gens = await second.generate(prompts, params, on_token)
        self._count("auto", second.name, prompt_tokens, gens)
        self.metrics.escalations.inc()
        routing = routing.model_copy(
            update={"model": second.name, "escalated": True, "attempt_tokens": attempt}
        )
        return Answer(gens, routing, second, True, prompt_tokens, opened)

    def _count(self, mode: str, model: str, prompt_tokens: int, gens: list[list[Generation]]) -> None:
        flat = [g for gs in gens for g in gs]
        self.metrics.count_tokens(
            mode,
            model,
            prompt_tokens,
            sum(g.completion_tokens for g in flat),
            sum(g.reasoning_tokens for g in flat),
        )

    def enter(self) -> None:
        """Admit one request or raise the 429."""
        if not self.admission.try_enter():
            self.metrics.rejected.inc()
            raise APIError(
                429,
                f"server is at capacity ({self.admission.limit} requests in flight); retry shortly",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(self.settings.retry_after_s)},
            )

    async def _admitted(self, endpoint: str, mode: str, work: Callable[[], Awaitable]):
        """Run `work()` inside an admission slot, timing and counting it."""
        self.enter()
        start, status = time.perf_counter(), "ok"
        try:
            return await work()
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        except BaseException:
            status = "error"
            raise
        finally:
            self.admission.leave()
            self.metrics.requests.labels(endpoint, mode, status).inc()
            self.metrics.latency.labels(mode).observe(time.perf_counter() - start)

    # ---- non-streaming --------------------------------------------------------------------------------

    async def chat(self, messages, route: Route, params: SamplingParams) -> ChatCompletion:
        async def work() -> ChatCompletion:
            answer = await self.answer([messages], route, params)
            choices = [
                ChatChoice(
                    index=i,
                    message=ChatMessage(content=g.content, reasoning_content=g.reasoning or None),
                    finish_reason=g.finish_reason,
                    logprobs=_chat_logprobs(answer.backend, g) if params.logprobs else None,
                )
                for i, g in enumerate(answer.generations[0])
            ]
            return ChatCompletion(
                model=answer.routing.model, choices=choices, usage=usage_of(answer), l2s=answer.routing
            )

        return await self._admitted("chat", route.mode or "model", work)

    async def complete(
        self, prompts: list[str], route: Route, params: SamplingParams, echo: bool
    ) -> Completion:
        async def work() -> Completion:
            answer = await self.answer(prompts, route, params)
            choices = []
            for p, gs in enumerate(answer.generations):
                for k, g in enumerate(gs):
                    text = (prompts[p] if echo else "") + g.text
                    logprobs = _completion_logprobs(answer.backend, g) if params.logprobs else None
                    choices.append(
                        CompletionChoice(
                            index=p * params.n + k,
                            text=text,
                            finish_reason=g.finish_reason,
                            logprobs=logprobs,
                        )
                    )
            return Completion(
                model=answer.routing.model, choices=choices, usage=usage_of(answer), l2s=answer.routing
            )

        return await self._admitted("completions", route.mode or "model", work)

    # ---- streaming ------------------------------------------------------------------------------------

    def stream(
        self,
        kind: str,
        prompts: Sequence[Prompt],
        route: Route,
        params: SamplingParams,
        include_usage: bool,
        echo_prompts: list[str] | None = None,
    ) -> tuple[AsyncIterator[str], Callable[[], None]]:
        """(SSE body, release): admits now, so a 429 is an HTTP status and not a mid-stream error.

        `release` is idempotent; the body calls it when it ends and the route also hands it to the
        response as a background task, for a client gone before the body ever started.
        """
        self.enter()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.admission.leave()

        return self._sse(kind, prompts, route, params, include_usage, echo_prompts, release), release

    async def _sse(
        self, kind, prompts, route, params, include_usage, echo_prompts, release
    ) -> AsyncIterator[str]:
        mode = route.mode or "model"
        chat = kind == "chat"
        rid, created = _id("chatcmpl" if chat else "cmpl"), int(time.time())
        start, first_token_at, status = time.perf_counter(), None, "ok"
        tokens: asyncio.Queue = asyncio.Queue()
        task = asyncio.create_task(
            self.answer(prompts, route, params, lambda i, t: tokens.put_nowait((i, t)))
        )
        task.add_done_callback(lambda _: tokens.put_nowait(None))
        # Tokens stream from the model that answers: auto streams only an escalation, from the long model.
        streaming = self.backends[route.escalate_to or route.model]
        decoders: dict[int, StreamDecoder] = {}
        # Until the answer is known, chunks name the requested model; the last ones carry the routing.
        requested = "l2s-auto" if route.mode == "auto" else route.model

        def decoder(i: int, backend: Backend, think_opened: bool) -> StreamDecoder:
            if i not in decoders:
                decoders[i] = StreamDecoder(
                    backend.tokenizer, backend.markers, backend.eos_ids, think_opened, params.stop, split=chat
                )
            return decoders[i]

        def chunk(choices, usage=None, routing: Routing | None = None) -> str:
            model = routing.model if routing else requested
            cls = ChatCompletionChunk if chat else Completion
            body = cls(id=rid, created=created, model=model, choices=choices, usage=usage, l2s=routing)
            return f"data: {body.model_dump_json(exclude_none=True)}\n\n"

        def delta(i: int, r: str, c: str, finish: str | None = None, routing: Routing | None = None):
            if not (r or c or finish):
                return None
            if chat:
                message = DeltaMessage(reasoning_content=r or None, content=c or None)
                return chunk([ChunkChoice(index=i, delta=message, finish_reason=finish)], routing=routing)
            return chunk([CompletionChoice(index=i, text=c, finish_reason=finish)], routing=routing)

        try:
            opened = [streaming.prompt_info(p, params.max_thinking_tokens)[1] for p in prompts]
            for p in range(len(prompts)):
                for k in range(params.n):
                    if chat:
                        role = DeltaMessage(role="assistant", content="")
                        yield chunk([ChunkChoice(index=p * params.n + k, delta=role)])
                    elif echo_prompts:
                        yield chunk(
                            [
                                CompletionChoice(
                                    index=p * params.n + k, text=echo_prompts[p], finish_reason=None
                                )
                            ]
                        )
            while (item := await tokens.get()) is not None:
                i, tok = item
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                    self.metrics.first_token.labels(mode).observe(first_token_at - start)
                if line := delta(i, *decoder(i, streaming, opened[i // params.n]).feed(tok)):
                    yield line
            answer: Answer = task.result()
            for p, gs in enumerate(answer.generations):
                for k, g in enumerate(gs):
                    i = p * params.n + k
                    dec = decoder(i, answer.backend, answer.think_opened[p])
                    if not answer.streamed:  # auto kept its short answer: send it now
                        for tok in g.token_ids:
                            if line := delta(i, *dec.feed(tok)):
                                yield line
                    r, c = dec.finish(g)
                    yield delta(i, r, c, g.finish_reason or "stop", answer.routing)
            if include_usage:
                yield chunk([], usage=usage_of(answer), routing=answer.routing)
        except APIError as e:
            status = "error"
            yield f"data: {json.dumps(error_body(e.status, e.message, e.param, e.code))}\n\n"
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        except Exception as e:  # the stream has started: report in-band, as OpenAI and vLLM do
            status = "error"
            log.exception("streaming failed")
            yield f"data: {json.dumps(error_body(500, f'generation failed: {type(e).__name__}'))}\n\n"
        finally:
            if not task.done():
                task.cancel()  # the client went away: drop the request from the queue or batch
            release()
            self.metrics.requests.labels("chat" if chat else "completions", mode, status).inc()
            self.metrics.latency.labels(mode).observe(time.perf_counter() - start)
        yield "data: [DONE]\n\n"


def _check_context(backend: Backend, prompt_tokens: list[int], max_tokens: int) -> None:
    """400 when a prompt plus max_tokens does not fit the model's context (OpenAI's and vLLM's answer)."""
    longest = max(prompt_tokens)
    if longest + max_tokens > backend.context_length:
        raise APIError(
            400,
            f"{backend.name}'s context is {backend.context_length} tokens, but the prompt has {longest} and "
            f"max_tokens asks for {max_tokens}; shorten the prompt or lower max_tokens",
            param="messages",
            code="context_length_exceeded",
        )


def _chat_logprobs(backend: Backend, g: Generation) -> ChoiceLogprobs | None:
    if g.logprobs is None:
        return None
    tokens = backend.tokenizer.convert_ids_to_tokens(g.token_ids)
    return ChoiceLogprobs(
        content=[TokenLogprob(token=t, logprob=lp) for t, lp in zip(tokens, g.logprobs, strict=False)]
    )


def _completion_logprobs(backend: Backend, g: Generation) -> CompletionLogprobs | None:
    if g.logprobs is None:
        return None
    tokens = backend.tokenizer.convert_ids_to_tokens(g.token_ids)
    return CompletionLogprobs(tokens=tokens, token_logprobs=list(g.logprobs[: len(tokens)]))
