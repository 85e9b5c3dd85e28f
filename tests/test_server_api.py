"""The OpenAI-compatible server end to end: real pico checkpoints, real uvicorn on 127.0.0.1, the real
`openai` client (sync, async, streaming) and raw HTTP for the bad-input cases.

Pico models are random, so their text is noise; token counts, the reasoning split, routing, streaming,
errors, admission and batching are what these tests check, against the hf engine called directly.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest

from l2s.engines.base import SamplingParams

KEY = "test-key-123"
MSG = [{"role": "user", "content": "Compute 7 * 6 - 5."}]


@pytest.fixture(scope="module")
def family(tmp_path_factory, pico_tokenizer):
    """A long/short pair: two random pico models with different seeds, same tokenizer."""
    from l2s.embedded.model import save_random_model

    root = tmp_path_factory.mktemp("family")
    ckpts = {
        "long": save_random_model(root / "long", pico_tokenizer, seed=1),
        "short": save_random_model(root / "short", pico_tokenizer, seed=2),
        "r1": save_random_model(root / "r1", pico_tokenizer, seed=3),
    }
    # R1-distill style chat template: the assistant turn opens <think>, so answers start reasoning.
    tpl = ckpts["r1"] / "chat_template.jinja"
    tpl.write_text(
        tpl.read_text().replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\n<think>\\n'")
    )
    assert "<think>" in tpl.read_text()
    return ckpts


@pytest.fixture(scope="module")
def server(family):
    from l2s.server.runner import serve_in_thread
    from l2s.server.settings import ServeSettings

    settings = ServeSettings(
        long=str(family["long"]),
        short=str(family["short"]),
        models={"pico-extra": str(family["short"]), "pico-r1": str(family["r1"])},
        api_key=KEY,
        port=0,
        auto_threshold=0.5,
        default_max_tokens=16,
        max_tokens_cap=256,
        max_n=4,
        max_body_bytes=4096,
        batch_wait_ms=50,  # generous, so concurrent test requests reliably share a batch
    )
    with serve_in_thread(settings) as running:
        yield running


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=60)


@pytest.fixture
def family_state(server):
    return server.app.state.endpoint


def _direct(family_state, name: str, prompt, **params):
    """The same generation without HTTP: the engine behind the served name, called directly."""
    return family_state.backends[name].engine.generate([prompt], SamplingParams(**params))[0]


def _extra(obj, name):
    return (obj.model_extra or {}).get(name)


# ---- models, routing, responses --------------------------------------------------------------------


def test_models_lists_the_family_and_extras(client):
    ids = [m.id for m in client.models.list().data]
    assert ids == ["l2s-auto", "l2s-long", "l2s-short", "pico-extra", "pico-r1"]


@pytest.mark.parametrize(
    "kwargs, answered",
    [
        ({"model": "l2s-short"}, "l2s-short"),
        ({"model": "l2s-long"}, "l2s-long"),
        ({"model": "l2s-auto", "extra_body": {"mode": "short"}}, "l2s-short"),
        ({"model": "l2s-auto", "reasoning_effort": "low"}, "l2s-short"),
        ({"model": "l2s-auto", "reasoning_effort": "high"}, "l2s-long"),
        ({"model": "pico-extra"}, "pico-extra"),
    ],
)
def test_mode_routing(client, kwargs, answered):
    r = client.chat.completions.create(messages=MSG, max_tokens=4, temperature=0, **kwargs)
    assert r.model == answered
    assert _extra(r, "l2s")["model"] == answered


def test_chat_matches_the_engine(client, family_state):
    """Content, reasoning and token counts are the engine's own, for both models."""
    from l2s.engines.completion import render_prompt

    for name in ("l2s-long", "l2s-short"):
        r = client.chat.completions.create(model=name, messages=MSG, max_tokens=40, temperature=0)
        (g,) = _direct(family_state, name, MSG, max_tokens=40, temperature=0)
        choice = r.choices[0]
        assert choice.message.content == g.content
        assert (_extra(choice.message, "reasoning_content") or "") == g.reasoning
        assert choice.finish_reason == g.finish_reason
        prompt_ids = render_prompt(family_state.backends[name].tokenizer, MSG).ids
        assert r.usage.prompt_tokens == len(prompt_ids)
        assert r.usage.completion_tokens == g.completion_tokens
        assert r.usage.completion_tokens_details.reasoning_tokens == g.reasoning_tokens
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


@pytest.mark.parametrize(
    "model, extra",
    [("l2s-long", {}), ("l2s-short", {}), ("pico-r1", {"max_thinking_tokens": 6}), ("pico-r1", {})],
    ids=["long", "short", "r1-budget", "r1"],
)
def test_streaming_chat_adds_up_to_the_non_streamed_answer(client, model, extra):
    kw = dict(model=model, messages=MSG, max_tokens=48, temperature=0, extra_body=extra)
    whole = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    reasoning = "".join(_extra(c.choices[0].delta, "reasoning_content") or "" for c in chunks if c.choices)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == whole.choices[0].message.content
    assert reasoning == (_extra(whole.choices[0].message, "reasoning_content") or "")
    if model == "pico-r1":  # the template opened <think>: the answer starts as reasoning
        assert reasoning and whole.usage.completion_tokens_details.reasoning_tokens > 0
    if extra:  # the budget closed the think block after 6 tokens; the rest is the answer
        assert whole.usage.completion_tokens_details.reasoning_tokens == 6 and content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert _extra(chunks[-1], "l2s")["model"] == model


def test_stream_ends_with_done_and_omits_usage_unless_asked(server):
    body = {"model": "l2s-short", "messages": MSG, "max_tokens": 5, "stream": True}
    with httpx.stream(
        "POST", f"{server.base_url}/chat/completions", json=body, headers=_auth(), timeout=60
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    assert not any("usage" in e for e in events)


def test_n_choices_with_a_seed_reproduce_the_engine(client, family_state):
    kw = dict(model="l2s-short", messages=MSG, max_tokens=6, n=3, seed=5)
    r = client.chat.completions.create(**kw)
    direct = _direct(family_state, "l2s-short", MSG, n=3, max_tokens=6, seed=5)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert [c.message.content for c in r.choices] == [g.content for g in direct]
    assert r.usage.completion_tokens == sum(g.completion_tokens for g in direct)
    streamed = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    assert sorted({c.choices[0].index for c in streamed if c.choices}) == [0, 1, 2]
    assert streamed[-1].usage == r.usage  # same seed, same samples


def test_completions_endpoint(client, family_state):
    r = client.completions.create(
        model="l2s-long", prompt=["12 + 30 =", "7 * 6 ="], max_tokens=8, n=2, temperature=0
    )
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    direct = family_state.backends["l2s-long"].engine.generate(
        ["12 + 30 =", "7 * 6 ="], SamplingParams(n=2, max_tokens=8, temperature=0)
    )
    assert [c.text for c in r.choices] == [g.text for gs in direct for g in gs]
    assert r.usage.completion_tokens == sum(g.completion_tokens for gs in direct for g in gs)
    echo = client.completions.create(model="l2s-short", prompt="abc", max_tokens=3, echo=True)
    assert echo.choices[0].text.startswith("abc")
    streamed = list(
        client.completions.create(
            model="l2s-long", prompt="12 + 30 =", max_tokens=8, temperature=0, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == r.choices[0].text


def test_openapi_documents_openai_shaped_errors(server):
    import httpx

    spec = httpx.get(f"{server.url}/openapi.json").json()
    for path in ("/v1/chat/completions", "/v1/completions"):
        responses = spec["paths"][path]["post"]["responses"]
        for status in ("401", "404", "422", "429"):
            ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorResponse"), (path, status, ref)
    assert "HTTPValidationError" not in str(spec)


def test_tiny_temperature_and_top_p_decode_greedily(client):
    """Found by schemathesis: temperature=5e-324 divided the logits into inf/NaN and answered 500."""
    greedy = client.completions.create(model="l2s-long", prompt="12 + 30 =", max_tokens=8, temperature=0)
    tiny = client.completions.create(
        model="l2s-long", prompt="12 + 30 =", max_tokens=8, temperature=5e-324, top_p=5e-324
    )
    assert tiny.choices[0].text == greedy.choices[0].text


def test_thinking_budget(client):
    """A raw prompt that opens <think>: the budget forces </think> after N reasoning tokens."""
    prompt = "<|im_start|>user\n2+2<|im_end|>\n<|im_start|>assistant\n<think>\n"
    free = client.completions.create(model="l2s-long", prompt=prompt, max_tokens=40, temperature=0)
    capped = client.completions.create(
        model="l2s-long", prompt=prompt, max_tokens=40, temperature=0, extra_body={"max_thinking_tokens": 3}
    )
    assert free.usage.completion_tokens_details.reasoning_tokens > 3
    assert capped.usage.completion_tokens_details.reasoning_tokens == 3  # greedy: same first 3 tokens
    assert "</think>" in capped.choices[0].text


def test_async_clients_share_generate_calls(server, family_state):
    batcher = family_state.backends["l2s-short"].batcher
    before = batcher.batches

    async def main():
        c = openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=60)
        return await asyncio.gather(
            *(
                c.chat.completions.create(model="l2s-short", messages=MSG, max_tokens=8, temperature=0)
                for _ in range(8)
            )
        )

    out = asyncio.run(main())
    assert len(out) == 8 and len({r.choices[0].message.content for r in out}) == 1  # greedy: all the same
    assert batcher.batches - before < 8  # gathered into fewer generate calls than requests


# ---- auto ----------------------------------------------------------------------------------------


def test_auto_keeps_a_confident_short_answer_and_escalates_otherwise(client, family_state):
    policy = family_state.policy
    saved = policy.threshold
    try:
        policy.threshold = 0.0  # every answer is confident enough
        kept = client.chat.completions.create(model="l2s-auto", messages=MSG, max_tokens=12, temperature=0)
        policy.threshold = 1.0  # no answer is
        up = client.chat.completions.create(model="l2s-auto", messages=MSG, max_tokens=12, temperature=0)
        up_stream = list(
            client.chat.completions.create(
                model="l2s-auto",
                messages=MSG,
                max_tokens=12,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    finally:
        policy.threshold = saved
    k, u = _extra(kept, "l2s"), _extra(up, "l2s")
    assert (kept.model, k["escalated"], k["mode"]) == ("l2s-short", False, "auto")
    assert (up.model, u["escalated"]) == ("l2s-long", True)
    assert 0.0 <= k["confidence"] <= 1.0 and u["attempt_tokens"] > 0
    long = client.chat.completions.create(model="l2s-long", messages=MSG, max_tokens=12, temperature=0)
    assert up.choices[0].message.content == long.choices[0].message.content
    assert _extra(up_stream[-1], "l2s")["escalated"] is True
    assert (
        "".join(c.choices[0].delta.content or "" for c in up_stream if c.choices)
        == long.choices[0].message.content
    )


# ---- errors ---------------------------------------------------------------------------------------


def _auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


BAD = [
    ("malformed json", b'{"model": "l2s-short", "messages": [', _auth(), 400, None),
    ("json not an object", b"[1, 2]", _auth(), 422, None),
    ("wrong type", {"model": "l2s-short", "messages": MSG, "max_tokens": "ten"}, _auth(), 422, "max_tokens"),
    ("messages wrong type", {"model": "l2s-short", "messages": "hi"}, _auth(), 422, "messages"),
    ("unknown mode", {"messages": MSG, "mode": "medium"}, _auth(), 422, "mode"),
    ("unknown model", {"model": "gpt-4o", "messages": MSG}, _auth(), 404, "model"),
    (
        "negative max_tokens",
        {"model": "l2s-short", "messages": MSG, "max_tokens": -1},
        _auth(),
        422,
        "max_tokens",
    ),
    (
        "huge max_tokens",
        {"model": "l2s-short", "messages": MSG, "max_tokens": 10**9},
        _auth(),
        422,
        "max_tokens",
    ),
    ("empty messages", {"model": "l2s-short", "messages": []}, _auth(), 422, "messages"),
    ("bad role", {"model": "l2s-short", "messages": [{"role": "robot", "content": "x"}]}, _auth(), 422, None),
    ("n too large", {"model": "l2s-short", "messages": MSG, "n": 99}, _auth(), 422, "n"),
    ("mode conflicts", {"model": "l2s-long", "messages": MSG, "mode": "short"}, _auth(), 422, "mode"),
    ("mode on an extra", {"model": "pico-extra", "messages": MSG, "mode": "long"}, _auth(), 422, "mode"),
    ("bad effort", {"messages": MSG, "reasoning_effort": "extreme"}, _auth(), 400, "reasoning_effort"),
    ("negative budget", {"messages": MSG, "max_thinking_tokens": -5}, _auth(), 422, "max_thinking_tokens"),
    ("image part", {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, _auth(), 422, None),
    (
        "prompt over context",
        {"model": "l2s-short", "messages": [{"role": "user", "content": "1" * 900}], "max_tokens": 200},
        _auth(),
        400,
        "messages",
    ),
    ("missing key", {"model": "l2s-short", "messages": MSG}, {}, 401, None),
    ("wrong key", {"model": "l2s-short", "messages": MSG}, _auth("nope"), 401, None),
    (
        "body too large",
        {"model": "l2s-short", "messages": [{"role": "user", "content": "x" * 5000}]},
        _auth(),
        413,
        None,
    ),
]


@pytest.mark.parametrize("case, body, headers, status, param", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_an_openai_shaped_4xx(server, case, body, headers, status, param):
    kw = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = httpx.post(
        f"{server.base_url}/chat/completions",
        headers={"content-type": "application/json", **headers},
        timeout=30,
        **kw,
    )
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"] and err["type"]
    if param is not None:
        assert err["param"] == param
    # the server keeps serving
    ok = httpx.post(
        f"{server.base_url}/chat/completions",
        json={"model": "l2s-short", "messages": MSG, "max_tokens": 2},
        headers=_auth(),
        timeout=30,
    )
    assert ok.status_code == 200


def test_openai_client_sees_typed_errors(server):
    bad_key = openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.models.list()
    good = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError) as e:
        good.chat.completions.create(model="gpt-4o", messages=MSG)
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.UnprocessableEntityError):
        good.chat.completions.create(model="l2s-short", messages=MSG, max_tokens=10**6)


def test_unknown_routes_and_methods_are_openai_shaped(server):
    for r in (
        httpx.get(f"{server.url}/v2/nothing"),
        httpx.get(f"{server.base_url}/chat/completions", headers=_auth()),
    ):
        assert r.status_code in (404, 405) and "error" in r.json()


def test_unknown_fields_are_accepted_and_logged(client, caplog):
    with caplog.at_level("INFO", logger="l2s.server"):
        r = client.chat.completions.create(
            model="l2s-short", messages=MSG, max_tokens=2, frequency_penalty=0.5, extra_body={"my_field": 1}
        )
    assert r.choices
    assert any("frequency_penalty" in m and "my_field" in m for m in caplog.messages)


def test_open_endpoints_need_no_key(server, client):
    client.chat.completions.create(model="l2s-short", messages=MSG, max_tokens=2)
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["models"] == ["l2s-long", "l2s-short", "pico-extra", "pico-r1"]
    assert "/" not in str(health)  # no filesystem paths on an endpoint that needs no key
    text = httpx.get(f"{server.url}/metrics").text
    for name in (
        "l2s_requests_total",
        "l2s_tokens_total",
        "l2s_request_latency_seconds_bucket",
        "l2s_queue_depth",
    ):
        assert name in text
    assert 'l2s_tokens_total{kind="completion",mode="short",model="l2s-short"}' in text


# ---- overload and disconnects ---------------------------------------------------------------------


def test_overload_answers_429_with_retry_after(server, family_state):
    admission = family_state.admission
    saved = admission.limit
    admission.limit = 2
    try:

        async def main():
            async with httpx.AsyncClient(timeout=120) as c:
                body = {"model": "l2s-long", "messages": MSG, "max_tokens": 200, "temperature": 0}
                return await asyncio.gather(
                    *(
                        c.post(f"{server.base_url}/chat/completions", json=body, headers=_auth())
                        for _ in range(6)
                    )
                )

        replies = asyncio.run(main())
        admission.limit = 0  # a stream is refused before it starts, with a real HTTP status
        body = {"model": "l2s-short", "messages": MSG, "max_tokens": 2, "stream": True}
        refused = httpx.post(f"{server.base_url}/chat/completions", json=body, headers=_auth(), timeout=30)
    finally:
        admission.limit = saved
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
    codes = sorted(r.status_code for r in replies)
    assert codes.count(200) >= 2 and 429 in codes and set(codes) <= {200, 429}
    rejected = next(r for r in replies if r.status_code == 429)
    assert rejected.headers["retry-after"] == "1"
    assert rejected.json()["error"]["type"] == "rate_limit_error"
    assert httpx.get(f"{server.url}/health").json()["in_flight"] == 0


def _wait_idle(server, timeout=20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{server.url}/health").json()["in_flight"] == 0:
            return True
        time.sleep(0.05)
    return False


def test_disconnected_clients_free_their_slots(server, family_state):
    body = {"model": "l2s-long", "messages": MSG, "max_tokens": 256, "temperature": 0}
    # streaming: read one chunk, hang up
    with httpx.stream(
        "POST", f"{server.base_url}/chat/completions", json={**body, "stream": True}, headers=_auth()
    ) as r:
        next(r.iter_lines())
    assert _wait_idle(server)
    # non-streaming: give up before the answer
    with pytest.raises(httpx.TimeoutException):
        httpx.post(
            f"{server.base_url}/chat/completions", json=body, headers=_auth(), timeout=0.1
        )  # well before 256 tokens
    assert _wait_idle(server)
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'l2s_requests_total{endpoint="chat",mode="long",status="cancelled"}' in metrics
    batcher = family_state.backends["l2s-long"].batcher
    assert batcher.depth() == 0


def test_body_limit_holds_without_content_length(server):
    """A chunked upload declares no size; the limit is enforced on the bytes as they arrive."""

    def chunks():
        yield b'{"model": "l2s-short", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}]}'

    r = httpx.post(
        f"{server.base_url}/chat/completions",
        content=chunks(),
        headers={"content-type": "application/json", **_auth()},
        timeout=30,
    )
    assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error"


# ---- reasoning_effort through an effort map ---------------------------------------------------------


@pytest.fixture(scope="module")
def effort_server(family, tmp_path_factory):
    """The family served with an effort map (an effort.json as `l2s calibrate` writes it): minimal ->
    short, low and medium -> the R1-style model under thinking budgets 2 and 5, high -> long."""
    from l2s.server.runner import serve_in_thread
    from l2s.server.settings import ServeSettings

    def level(model, budget, accuracy, tokens):
        path = str(family[model])
        ci = [round(accuracy - 0.05, 2), round(min(1.0, accuracy + 0.05), 2)]
        return {"model": model, "path": path, "thinking_budget": budget, "point": model,
                "accuracy": accuracy, "accuracy_ci95": ci, "mean_tokens": tokens}  # fmt: skip

    run = tmp_path_factory.mktemp("effort-run")
    levels = {"minimal": level("short", None, 0.2, 9.0), "low": level("r1", 2, 0.8, 14.0),
              "medium": level("r1", 5, 0.95, 20.0), "high": level("long", None, 0.99, 60.0)}  # fmt: skip
    (run / "effort.json").write_text(json.dumps({"levels": levels, "auto": {"threshold": 0.5}}))
    settings = ServeSettings(
        long=str(family["long"]),
        short=str(family["short"]),
        models={"pico-r1": str(family["r1"])},
        calibration=str(run),
        port=0,
        default_max_tokens=16,
        max_tokens_cap=256,
    )
    with serve_in_thread(settings) as running:
        yield running


@pytest.fixture
def effort_client(effort_server):
    return openai.OpenAI(base_url=effort_server.base_url, api_key="none", max_retries=0, timeout=60)


def test_models_lists_l2s_with_the_effort_map(effort_client):
    cards = {m.id: m for m in effort_client.models.list().data}
    assert list(cards) == ["l2s", "l2s-auto", "l2s-long", "l2s-short", "pico-r1"]
    card = cards["l2s"].model_extra
    assert card["kind"] == "alias" and card["default_effort"] == "medium"
    assert card["effort_aliases"] == {"none": "minimal", "xhigh": "high", "max": "high"}
    assert card["effort"]["low"] == {
        "model": "pico-r1", "thinking_budget": 2, "accuracy": 0.8, "accuracy_ci95": [0.75, 0.85], "mean_tokens": 14.0
    }  # fmt: skip
    assert card["effort"]["high"]["model"] == "l2s-long" and card["effort"]["minimal"]["model"] == "l2s-short"


@pytest.mark.parametrize(
    "kwargs, model, budget, level",
    [
        ({"model": "l2s", "reasoning_effort": "low"}, "pico-r1", 2, "low"),
        ({"model": "l2s-auto", "reasoning_effort": "medium"}, "pico-r1", 5, "medium"),
        ({"model": "l2s"}, "pico-r1", 5, "medium"),
        ({"model": "l2s", "reasoning_effort": "none"}, "l2s-short", None, "minimal"),
        ({"model": "l2s", "reasoning_effort": "xhigh"}, "l2s-long", None, "high"),
        (
            {"model": "l2s", "reasoning_effort": "low", "extra_body": {"max_thinking_tokens": 4}},
            "pico-r1",
            4,
            "low",
        ),
        ({"model": "l2s", "reasoning_effort": "low", "extra_body": {"mode": "long"}}, "l2s-long", None, None),
        ({"model": "l2s-short", "reasoning_effort": "high"}, "l2s-short", None, None),
    ],
)
def test_effort_routing_says_which_model_budget_and_level_answered(
    effort_client, kwargs, model, budget, level
):
    r = effort_client.chat.completions.create(messages=MSG, max_tokens=24, temperature=0, **kwargs)
    routing = _extra(r, "l2s")
    assert (r.model, routing["model"], routing["thinking_budget"], routing["effort"]) == (
        model,
        model,
        budget,
        level,
    )
    if budget is not None:  # the R1-style template opens <think>: the budget closes it after `budget` tokens
        assert r.usage.completion_tokens_details.reasoning_tokens == budget


def test_effort_routing_streams_its_routing(effort_client):
    chunks = list(
        effort_client.chat.completions.create(
            model="l2s", reasoning_effort="low", messages=MSG, max_tokens=24, temperature=0, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    routing = _extra(chunks[-1], "l2s")
    assert (routing["model"], routing["effort"], routing["thinking_budget"]) == ("pico-r1", "low", 2)
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == 2


def test_unknown_effort_lists_the_valid_levels(effort_server):
    body = {"model": "l2s", "messages": MSG, "reasoning_effort": "extreme"}
    r = httpx.post(f"{effort_server.base_url}/chat/completions", json=body, timeout=30)
    error = r.json()["error"]
    assert r.status_code == 400 and set(r.json()) == {"error"}
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "reasoning_effort",
        "unsupported_value",
    )
    assert all(
        level in error["message"] for level in ("none", "minimal", "low", "medium", "high", "xhigh", "max")
    )


def test_an_effort_map_naming_unserved_models_stops_the_server_in_one_line(family, tmp_path):
    import subprocess
    import sys

    run = tmp_path / "run"
    run.mkdir()
    level = {"model": "dpo", "path": str(tmp_path / "dpo"), "thinking_budget": None}
    (run / "effort.json").write_text(
        json.dumps({"levels": dict.fromkeys(("minimal", "low", "medium", "high"), level)})
    )
    args = [
        "--long",
        str(family["long"]),
        "--short",
        str(family["short"]),
        "--calibration",
        str(run),
        "--port",
        "0",
    ]
    r = subprocess.run(
        [sys.executable, "-m", "l2s.cli", "serve", *args], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "sends reasoning_effort 'minimal' to dpo" in line and "which this server does not serve" in line
