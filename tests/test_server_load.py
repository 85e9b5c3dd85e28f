"""Load: hundreds of mixed requests at concurrency 32 against a real server on pico models, then overload.

Every request must get a complete answer (a whole JSON body, or a stream that ends in `data: [DONE]`
with a finish reason for every choice) or a 429 with Retry-After: no 5xx, no connection dropped, no
request left hanging. Then a server with a tiny admission bound is flooded: it answers 429 with
Retry-After to what it cannot hold, and serves normally once the flood is over. Loopback only; the
request count and every wait are bounded.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest

KEY = "load-key"
PROMPTS = ["Compute 7 * 6 - 5.", "Compute 12 + 30.", "What is 9 * 9?", "Compute (3 + 4) * 2."]
REQUESTS = 512
CONCURRENCY = 32


@pytest.fixture(scope="module")
def family(tmp_path_factory, pico_tokenizer):
    from l2s.embedded.model import save_random_model

    root = tmp_path_factory.mktemp("load")
    return (
        save_random_model(root / "long", pico_tokenizer, seed=1),
        save_random_model(root / "short", pico_tokenizer, seed=2),
    )


def _settings(family, **kw):
    from l2s.server.settings import ServeSettings

    long, short = family
    base = dict(
        long=str(long),
        short=str(short),
        api_key=KEY,
        port=0,
        auto_threshold=0.5,  # random pico models: some answers are kept, some escalate
        default_max_tokens=8,
        max_tokens_cap=64,
        max_n=2,
    )
    return ServeSettings(**{**base, **kw})


# ---- the request mix --------------------------------------------------------------------------------

ROUTING = [  # (fields that pick the model, the mode the answer must report)
    ({"mode": "short"}, "short"),
    ({"mode": "long"}, "long"),
    ({"mode": "auto"}, "auto"),
    ({"model": "l2s-short"}, "short"),
    ({"model": "l2s-long"}, "long"),
    ({"model": "l2s-auto"}, "auto"),
    ({"reasoning_effort": "low"}, "short"),
    ({"reasoning_effort": "medium"}, "auto"),
    ({"reasoning_effort": "high"}, "long"),
]
EXTRAS = [{}, {"temperature": 0}, {"seed": 7}, {"stop": ["\n"]}, {"max_thinking_tokens": 2}, {"n": 2}]


@dataclass
class Req:
    i: int
    path: str
    body: dict
    mode: str  # the mode the answer must report

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def choices(self) -> int:
        prompts = self.body.get("prompt")
        return self.body.get("n", 1) * (len(prompts) if isinstance(prompts, list) else 1)


def request_mix(count: int) -> list[Req]:
    """`count` requests cycling through every endpoint x stream x routing x extras combination."""
    combos = itertools.cycle(itertools.product(["chat", "completions"], [False, True], ROUTING, EXTRAS))
    reqs = []
    for i, (endpoint, stream, (routing, mode), extra) in zip(range(count), combos, strict=False):
        body = {**routing, **extra, "max_tokens": 1 + i % 8, "stream": stream}
        if stream and i % 3 == 0:
            body["stream_options"] = {"include_usage": True}
        prompt = PROMPTS[i % len(PROMPTS)]
        if endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
            path = "/v1/chat/completions"
        else:
            body["prompt"] = prompt if i % 2 else [prompt, PROMPTS[(i + 1) % len(PROMPTS)]]
            path = "/v1/completions"
        reqs.append(Req(i, path, body, mode))
    return reqs


# ---- checking answers -------------------------------------------------------------------------------


@dataclass
class Tally:
    status: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    modes: Counter = field(default_factory=Counter)
    retry_after: Counter = field(default_factory=Counter)
    escalated: int = 0

    def bad(self, req: Req, what: str) -> None:
        self.problems.append(f"request {req.i} {req.path} {json.dumps(req.body)[:160]}: {what}")


def check_error(tally: Tally, req: Req, status: int, headers, text: str) -> None:
    try:
        err = json.loads(text)["error"]
        assert set(err) == {"message", "type", "param", "code"}
    except Exception:
        tally.bad(req, f"{status} without an OpenAI error body: {text[:200]}")
        return
    if status == 429:
        tally.retry_after[headers.get("retry-after")] += 1
        if not (headers.get("retry-after") or "").isdigit():
            tally.bad(req, "429 without a Retry-After")
    elif status != 429:
        tally.bad(req, f"status {status}: {err['message']}")


def check_routing(tally: Tally, req: Req, routing: dict | None) -> None:
    if not routing or routing.get("mode") != req.mode:
        tally.bad(req, f"answered with routing {routing}, expected mode {req.mode}")
        return
    tally.modes[routing["model"]] += 1
    tally.escalated += bool(routing.get("escalated"))
    expected = {"short": {"l2s-short"}, "long": {"l2s-long"}, "auto": {"l2s-short", "l2s-long"}}[req.mode]
    if routing["model"] not in expected:
        tally.bad(req, f"mode {req.mode} answered by {routing['model']}")


def check_whole(tally: Tally, req: Req, body: dict) -> None:
    choices = body.get("choices") or []
    if sorted(c["index"] for c in choices) != list(range(req.choices)):
        tally.bad(req, f"choices {[c['index'] for c in choices]}, expected {req.choices}")
    if any(c.get("finish_reason") not in ("stop", "length") for c in choices):
        tally.bad(req, f"finish reasons {[c.get('finish_reason') for c in choices]}")
    usage = body.get("usage") or {}
    if not 0 <= usage.get("completion_tokens", -1) <= req.choices * req.body["max_tokens"]:
        tally.bad(req, f"usage {usage} for max_tokens {req.body['max_tokens']}")
    check_routing(tally, req, body.get("l2s"))


def check_stream(tally: Tally, req: Req, text: str) -> None:
    events = [e.removeprefix("data: ") for e in text.split("\n\n") if e.strip()]
    if not events or events[-1] != "[DONE]":
        tally.bad(req, f"stream does not end with [DONE]: {text[-200:]!r}")
        return
    chunks = [json.loads(e) for e in events[:-1]]
    if any("error" in c for c in chunks):
        tally.bad(req, f"error inside the stream: {[c for c in chunks if 'error' in c]}")
        return
    finished = {
        ch["index"]: ch.get("finish_reason") for c in chunks for ch in c["choices"] if ch.get("finish_reason")
    }
    if sorted(finished) != list(range(req.choices)) or set(finished.values()) - {"stop", "length"}:
        tally.bad(req, f"finish reasons {finished}, expected one per choice of {req.choices}")
    if (req.body.get("stream_options") or {}).get("include_usage") and not chunks[-1].get("usage"):
        tally.bad(req, "include_usage asked but the last chunk has no usage")
    check_routing(tally, req, next((c["l2s"] for c in reversed(chunks) if c.get("l2s")), None))


async def send(client: httpx.AsyncClient, req: Req, tally: Tally) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    try:
        if req.stream:
            async with client.stream("POST", req.path, json=req.body, headers=headers) as r:
                text = (await r.aread()).decode()
        else:
            r = await client.post(req.path, json=req.body, headers=headers)
            text = r.text
    except Exception as e:  # a dropped connection or a timeout is a lost response
        tally.status["lost"] += 1
        tally.bad(req, f"lost: {type(e).__name__}: {e}")
        return
    tally.status[r.status_code] += 1
    if r.status_code != 200:
        check_error(tally, req, r.status_code, r.headers, text)
    elif req.stream:
        check_stream(tally, req, text)
    else:
        check_whole(tally, req, json.loads(text))


async def fire(url: str, reqs: list[Req], concurrency: int, timeout: float = 120) -> Tally:
    tally, gate = Tally(), asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:

        async def one(req: Req) -> None:
            async with gate:
                await send(client, req, tally)

        await asyncio.gather(*(one(r) for r in reqs))
    return tally


def _idle(url: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/health", timeout=10).json()["in_flight"] == 0:
            return True
        time.sleep(0.05)
    return False


# ---- the tests --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_mixed_load_at_concurrency_32_loses_nothing(family):
    from l2s.server.runner import serve_in_thread

    reqs = request_mix(REQUESTS)
    assert {r.mode for r in reqs} == {"short", "long", "auto"} and {r.stream for r in reqs} == {False, True}
    assert {r.path for r in reqs} == {"/v1/chat/completions", "/v1/completions"}
    with serve_in_thread(_settings(family)) as server:
        start = time.perf_counter()
        tally = asyncio.run(asyncio.wait_for(fire(server.url, reqs, CONCURRENCY), timeout=300))
        wall = time.perf_counter() - start
        assert _idle(server.url), "requests still in flight after every response arrived"
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    print(f"\n{REQUESTS} requests at concurrency {CONCURRENCY} in {wall:.1f}s: {dict(tally.status)}, "
          f"answered by {dict(tally.modes)}, {tally.escalated} auto escalations")  # fmt: skip
    assert tally.problems == [], "\n".join(tally.problems[:20])
    assert sum(tally.status.values()) == REQUESTS and set(tally.status) <= {200, 429}
    assert tally.status[200] >= REQUESTS * 0.9, tally.status
    assert tally.modes["l2s-short"] and tally.modes["l2s-long"] and tally.escalated
    assert 'status="error"' not in metrics


@pytest.mark.slow
def test_overload_answers_429_with_retry_after_and_recovers(family):
    from l2s.server.runner import serve_in_thread

    flood = [
        Req(i, "/v1/chat/completions", {"mode": "long", "max_tokens": 64, "temperature": 0, "stream": i % 2 == 1,
            "messages": [{"role": "user", "content": PROMPTS[i % 4]}]}, "long")
        for i in range(48)
    ]  # fmt: skip
    with serve_in_thread(_settings(family, max_concurrent=2, retry_after_s=3)) as server:
        tally = asyncio.run(asyncio.wait_for(fire(server.url, flood, 48), timeout=300))
        assert _idle(server.url)
        after = httpx.post(
            f"{server.base_url}/chat/completions",
            json={"mode": "short", "max_tokens": 4, "messages": [{"role": "user", "content": PROMPTS[0]}]},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=60,
        )
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    print(
        f"\nflood of {len(flood)} at max_concurrent=2: {dict(tally.status)}; then a normal request: {after.status_code}"
    )
    assert tally.problems == [], "\n".join(tally.problems[:20])
    assert tally.status[200] >= 2 and tally.status[429] >= 10 and set(tally.status) == {200, 429}, (
        tally.status
    )
    assert tally.retry_after == Counter({"3": tally.status[429]})
    assert after.status_code == 200 and after.json()["choices"], after.text
    assert f"l2s_requests_rejected_total {float(tally.status[429])}" in metrics
