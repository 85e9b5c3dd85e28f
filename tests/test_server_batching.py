"""Batcher over the real hf engine (pico): grouping, exact results, streaming callbacks, cancellation."""

from __future__ import annotations

import asyncio
import logging

import pytest

from l2s.engines.base import SamplingParams
from l2s.server.batching import Admission, Batcher, batch_key

MSGS = [[{"role": "user", "content": f"{i} + {i} = ?"}] for i in range(6)]


@pytest.fixture(scope="module")
def engine(pico_ckpt):
    from l2s.engines.hf import HFEngine

    return HFEngine(pico_ckpt, batch_size=16)


def _run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_one_generate_call_and_get_their_own_rows(engine):
    greedy = SamplingParams(max_tokens=10, temperature=0)

    async def main():
        b = Batcher(engine, max_batch=16, wait_s=0.05)
        b.start()
        try:
            out = await asyncio.gather(*(b.generate([m], greedy) for m in MSGS))
        finally:
            await b.stop()
        return out, b.batches

    out, batches = _run(main())
    assert batches == 1
    direct = [engine.generate([m], greedy)[0] for m in MSGS]
    assert [[g.token_ids for g in r[0]] for r in out] == [[g.token_ids for g in d] for d in direct]


def test_only_compatible_requests_batch_together(engine):
    a, b_ = SamplingParams(max_tokens=4, temperature=0), SamplingParams(max_tokens=6, temperature=0)
    seeded = SamplingParams(max_tokens=4, temperature=1.0, seed=3)
    assert batch_key(a) != batch_key(b_)

    async def main():
        b = Batcher(engine, max_batch=3, wait_s=0.05)
        b.start()
        try:
            # 4 of a (max_batch 3 -> 2 calls), 1 of b_, 2 seeded (each alone) -> 5 calls
            jobs = [b.generate([MSGS[0]], a) for _ in range(4)] + [b.generate([MSGS[1]], b_)]
            jobs += [b.generate([MSGS[2]], seeded) for _ in range(2)]
            out = await asyncio.gather(*jobs)
        finally:
            await b.stop()
        return out, b.batches

    out, batches = _run(main())
    assert batches == 5
    assert out[5][0][0].token_ids == out[6][0][0].token_ids  # a seed reproduces, even under load
    assert all(g.completion_tokens <= 4 for g in out[0][0])
    assert out[4][0][0].completion_tokens <= 6


def test_tokens_stream_to_their_own_request(engine):
    params = SamplingParams(max_tokens=8, temperature=0, n=2)

    async def main():
        b = Batcher(engine, max_batch=16, wait_s=0.05)
        b.start()
        seen: dict[int, list[tuple[int, int]]] = {0: [], 1: []}
        try:
            out = await asyncio.gather(
                *(b.generate([MSGS[k]], params, lambda i, t, k=k: seen[k].append((i, t))) for k in (0, 1))
            )
        finally:
            await b.stop()
        return out, seen

    out, seen = _run(main())
    for k in (0, 1):
        for i in (0, 1):
            assert [t for j, t in seen[k] if j == i] == out[k][0][i].token_ids


def test_cancelled_requests_leave_the_queue_and_abandon_their_batch(engine, caplog):
    long = SamplingParams(max_tokens=400, temperature=0)

    async def main():
        b = Batcher(engine, max_batch=1, wait_s=0.0)
        depths = []
        b.on_depth = depths.append
        b.start()
        first_token = asyncio.Event()
        running = asyncio.create_task(b.generate([MSGS[0]], long, lambda i, t: first_token.set()))
        await first_token.wait()  # the first request is generating
        queued = asyncio.create_task(b.generate([MSGS[1]], long))
        await asyncio.sleep(0.05)
        assert b.depth() == 1
        queued.cancel()
        running.cancel()
        await asyncio.gather(running, queued, return_exceptions=True)
        assert b.depth() == 0 and depths[-1] == 0
        # the loop is free again: a short request is answered
        out = await asyncio.wait_for(b.generate([MSGS[2]], SamplingParams(max_tokens=3, temperature=0)), 60)
        await b.stop()
        return out, b.batches

    with caplog.at_level(logging.INFO, logger="l2s.server"):
        out, batches = _run(main())
    assert out[0][0].completion_tokens <= 3
    assert batches == 2  # the cancelled queued request never ran
    assert any("abandoned" in m for m in caplog.messages)


def test_engine_errors_fail_their_requests_not_the_loop(engine):
    async def main():
        b = Batcher(engine, max_batch=4, wait_s=0.0)
        b.start()
        try:
            with pytest.raises(Exception):  # noqa: B017 - whatever the engine raises reaches the caller
                await b.generate([12345], SamplingParams(max_tokens=2))  # not a prompt
            return await b.generate([MSGS[0]], SamplingParams(max_tokens=2, temperature=0))
        finally:
            await b.stop()

    assert _run(main())[0][0].completion_tokens <= 2


def test_admission_bound():
    changes = []
    a = Admission(2, on_change=changes.append)
    assert a.try_enter() and a.try_enter() and not a.try_enter()
    a.leave()
    assert a.try_enter()
    assert changes == [1, 2, 1, 2]
