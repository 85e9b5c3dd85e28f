"""Admission control and request batching for engines that generate a batch at a time (the hf engine).

Written by hand because transformers has no serving loop (vLLM has one, and the vllm backend uses it).
`Batcher` gathers the requests that arrive within a few milliseconds, groups those with the same
sampling parameters, runs one `engine.generate` for the group in a worker thread, and resolves each
request's future with its slice of the result. Tokens reach streaming requests through the engine's
`on_token(flat_index, token_id)` callback, hopped onto the event loop with `call_soon_threadsafe`.

A request whose client went away is cancelled: it leaves the queue if it has not started, and when every
request of a running batch is gone the batch is aborted from the token callback, so its slot and its
compute are freed. `Admission` bounds the requests in the server; the rest get 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from l2s.engines.base import Engine, Generation, Prompt, SamplingParams

log = logging.getLogger("l2s.server")

TokenSink = Callable[[int, int], None]  # (flat index within the request, token id), called on the loop


class Overloaded(Exception):
    """The server holds as many requests as it admits; the caller answers 429."""


class Admission:
    """A bounded count of admitted requests (a semaphore that refuses instead of waiting).

    >>> a = Admission(1)
    >>> with a.slot():
    ...     a.in_flight, a.try_enter()
    (1, False)
    >>> a.in_flight
    0
    """

    def __init__(self, limit: int, on_change: Callable[[int], None] | None = None) -> None:
        self.limit, self.in_flight, self.on_change = limit, 0, on_change

    def try_enter(self) -> bool:
        if self.in_flight >= self.limit:
            return False
        self._set(self.in_flight + 1)
        return True

    def leave(self) -> None:
        self._set(self.in_flight - 1)

    def _set(self, value: int) -> None:
        self.in_flight = value
        if self.on_change:
            self.on_change(value)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        if not self.try_enter():
            raise Overloaded
        try:
            yield
        finally:
            self.leave()


def batch_key(params: SamplingParams) -> tuple:
    """Requests batch together only when one generate call serves them all exactly."""
    return (
        params.n,
        params.temperature,
        params.top_p,
        params.max_tokens,
        params.max_thinking_tokens,
        params.seed,
        params.logprobs,
        tuple(params.stop or ()),
    )


@dataclass
class _Job:
    prompts: Sequence[Prompt]
    params: SamplingParams
    future: asyncio.Future
    on_token: TokenSink | None
    rows: int = field(init=False)

    def __post_init__(self) -> None:
        self.rows = len(self.prompts) * self.params.n

    @property
    def gone(self) -> bool:
        return self.future.done()


class _Abandoned(Exception):
    """Raised from the token callback to stop a batch whose requests were all cancelled."""


class Batcher:
    """Runs one engine's requests in batches, one generate call at a time."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = 32,
        wait_s: float = 0.005,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        self.engine, self.max_batch, self.wait_s, self.on_depth = engine, max_batch, wait_s, on_depth
        self._pending: deque[_Job] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.batches = 0  # generate calls made (the batching test and the benchmark read it)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"batcher-{self.engine.name}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in self._pending:
            if not job.gone:
                job.future.set_exception(RuntimeError("server is shutting down"))
        self._pending.clear()

    def depth(self) -> int:
        """Sequences waiting for a batch."""
        return sum(j.rows for j in self._pending if not j.gone)

    async def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams, on_token: TokenSink | None = None
    ) -> list[list[Generation]]:
        job = _Job(prompts, params, asyncio.get_running_loop().create_future(), on_token)
        self._pending.append(job)
        self._depth_changed()
        self._wakeup.set()
        try:
            return await job.future  # cancelling the caller cancels the future: the job is dropped
        finally:
            if job in self._pending and job.gone:
                self._pending.remove(job)
                self._depth_changed()

    def _depth_changed(self) -> None:
        if self.on_depth:
            self.on_depth(self.depth())

    def _take(self) -> list[_Job]:
        """The oldest live job plus every later job with the same sampling key, up to max_batch rows."""
        while self._pending and self._pending[0].gone:
            self._pending.popleft()
        if not self._pending:
            return []
        first = self._pending.popleft()
        batch, rows, key = [first], first.rows, batch_key(first.params)
        if first.params.seed is None:  # a seeded request runs alone, so its seed reproduces its output
            for job in list(self._pending):
                if not job.gone and batch_key(job.params) == key and rows + job.rows <= self.max_batch:
                    batch.append(job)
                    rows += job.rows
                    self._pending.remove(job)
        self._depth_changed()
        return batch

    async def _loop(self) -> None:
        while True:
            await self._wakeup.wait()
            if self.wait_s:
                await asyncio.sleep(self.wait_s)  # let concurrent requests arrive
            batch = self._take()
            if not self._pending:
                self._wakeup.clear()
            if batch:
                await self._run(batch)

    async def _run(self, jobs: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        prompts = [p for job in jobs for p in job.prompts]
        owner: list[tuple[_Job, int]] = [(job, i) for job in jobs for i in range(job.rows)]

        live = [len(jobs)]  # jobs still wanted; futures' done-callbacks count down on the loop thread
        for job in jobs:
            job.future.add_done_callback(lambda _: live.__setitem__(0, live[0] - 1))

        def on_token(
            flat: int, token: int
        ) -> None:  # runs in the worker thread, once per token: keep it O(1)
            if live[0] <= 0:
                raise _Abandoned
            job, local = owner[flat]
            if job.on_token is not None:
                loop.call_soon_threadsafe(_deliver, job, local, token)

        self.batches += 1
        try:
            results = await asyncio.to_thread(self.engine.generate, prompts, jobs[0].params, on_token)
        except _Abandoned:
            log.info("batch of %d abandoned: every client disconnected", len(jobs))
            return
        except Exception as e:  # a broken engine fails its requests, not the loop
            log.exception("generate failed")
            for job in jobs:
                if not job.gone:
                    job.future.set_exception(e)
            return
        start = 0
        for job in jobs:
            if not job.gone:
                job.future.set_result(results[start : start + len(job.prompts)])
            start += len(job.prompts)


def _deliver(job: _Job, local: int, token: int) -> None:
    if not job.gone and job.on_token is not None:
        job.on_token(local, token)
