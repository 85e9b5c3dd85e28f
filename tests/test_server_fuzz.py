"""Fuzzing the server from its own OpenAPI schema with schemathesis, plus the inputs fuzzing turned up.

schemathesis (https://schemathesis.readthedocs.io) reads /openapi.json from a real server on pico
models and generates requests for every operation: valid ones (positive mode) and ones that break
the schema (negative mode). Whatever it sends, the server must answer below 500, and every error
body must be OpenAI's `{"error": {"message", "type", "param", "code"}}`; a stream must not carry a
server error in-band. The server's caps keep generation tiny (max_tokens <= 8, n <= 2), so the whole
run takes about a minute or two.
"""

from __future__ import annotations

import json
from collections import Counter

import httpx
import pytest

KEY = "fuzz-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
# (path, method, examples per generation mode); the two model routes get most of the cases.
OPERATIONS = [
    ("/v1/chat/completions", "POST", 280),
    ("/v1/completions", "POST", 280),
    ("/v1/models", "GET", 5),  # no parameters: hypothesis stops after the one distinct case
    ("/health", "GET", 5),
    ("/metrics", "GET", 5),
]
MIN_CASES = 1000


@pytest.fixture(scope="module")
def server(tmp_path_factory, pico_tokenizer):
    from l2s.embedded.model import save_random_model
    from l2s.server.runner import serve_in_thread
    from l2s.server.settings import ServeSettings

    root = tmp_path_factory.mktemp("fuzz")
    long = save_random_model(root / "long", pico_tokenizer, seed=1)
    short = save_random_model(root / "short", pico_tokenizer, seed=2)
    settings = ServeSettings(
        long=str(long),
        short=str(short),
        api_key=KEY,
        port=0,
        auto_threshold=0.5,
        default_max_tokens=4,
        max_tokens_cap=8,
        max_n=2,
        max_prompts=2,
        batch_wait_ms=0,
    )
    with serve_in_thread(settings) as running:
        yield running


def problems_with(status: int, content_type: str, text: str) -> str | None:
    """What is wrong with one response, or None."""
    if status >= 500:
        return f"{status}: {text[:300]}"
    if status >= 400:
        try:
            body = json.loads(text)
        except json.JSONDecodeError:
            return f"{status} with a body that is not JSON: {text[:300]}"
        err = body.get("error") if isinstance(body, dict) else None
        if (
            set(body) != {"error"}
            or not isinstance(err, dict)
            or set(err) != {"message", "type", "param", "code"}
        ):
            return f"{status} with a body that is not OpenAI-shaped: {text[:300]}"
        if not isinstance(err["message"], str) or not err["message"] or not isinstance(err["type"], str):
            return f"{status} with an empty or mistyped message/type: {text[:300]}"
    elif content_type.startswith("text/event-stream"):
        events = [e.removeprefix("data: ") for e in text.split("\n\n") if e.strip()]
        if not events or events[-1] != "[DONE]":
            return f"stream does not end with [DONE]: {text[-300:]!r}"
        for e in events[:-1]:
            chunk = json.loads(e)
            if "error" in chunk and chunk["error"].get("type") == "server_error":
                return f"server error inside a 200 stream: {e[:300]}"
    return None


def fuzz(operation, mode, examples: int, base_url: str, statuses: Counter, failures: list[str]) -> None:
    """Send `examples` generated cases of one operation in one generation mode; record what came back."""
    from hypothesis import HealthCheck, given, settings

    label = f"{operation.method.upper()} {operation.path} ({mode.value})"

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases every run
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode))
    def run(case) -> None:
        r = case.call(base_url=base_url, headers=AUTH, timeout=60)
        statuses[(operation.path, mode.value, r.status_code)] += 1
        content_type = (r.headers.get("content-type") or [""])[0]  # schemathesis keeps header lists
        problem = problems_with(r.status_code, content_type, r.text)
        if problem:
            failures.append(f"{label} body={json.dumps(case.body)[:300]}: {problem}")

    run()


@pytest.mark.slow
def test_schemathesis_finds_no_5xx_and_only_openai_shaped_errors(server):
    import schemathesis
    from schemathesis.generation.modes import GenerationMode

    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    statuses: Counter = Counter()
    failures: list[str] = []
    for path, method, examples in OPERATIONS:
        fuzz(schema[path][method], GenerationMode.POSITIVE, examples, server.url, statuses, failures)
        if method == "POST":  # GET routes take no parameters or body to break
            fuzz(schema[path][method], GenerationMode.NEGATIVE, examples, server.url, statuses, failures)

    total = sum(statuses.values())
    print(f"\nschemathesis: {total} cases; by (path, mode, status): {dict(sorted(statuses.items()))}")
    kinds = sorted({f.split("}: ", 1)[-1][:160] for f in failures})
    if failures:  # pytrace=False: a short report, no traceback of the server thread's frames to render
        pytest.fail(
            f"{len(failures)} bad answers; kinds:\n" + "\n".join(kinds + failures[:10]), pytrace=False
        )
    assert total >= MIN_CASES
    # the positive cases reached the models, not only the validators
    assert statuses[("/v1/chat/completions", "positive", 200)] > 20
    assert statuses[("/v1/completions", "positive", 200)] > 20
    assert httpx.get(f"{server.url}/health", timeout=10).json()["in_flight"] == 0


# ---- inputs found by probing past the schema (valid JSON that the schema allows) ------------------------

CHAT = {
    "model": "l2s-short",
    "messages": [{"role": "user", "content": "Compute 7 * 6 - 5."}],
    "max_tokens": 2,
}
FOUND = [
    # torch.manual_seed accepts [-2**63, 2**64 - 1]; a larger seed raised ValueError -> 500.
    ("seed-beyond-int64", "/v1/chat/completions", {**CHAT, "seed": 2**64}),
    ("seed-far-beyond", "/v1/chat/completions", {**CHAT, "seed": 2**70}),
    # an empty prompt gives the hf engine an empty float tensor of ids -> RuntimeError in embedding -> 500.
    ("empty-prompt", "/v1/completions", {"model": "l2s-short", "prompt": "", "max_tokens": 2}),
    ("empty-prompt-in-list", "/v1/completions", {"model": "l2s-short", "prompt": [""], "max_tokens": 2}),
]
# A lone UTF-16 surrogate is valid JSON ("\ud800") but not encodable text: the tokenizer raised TypeError -> 500.
RAW = [
    (
        "lone-surrogate-chat",
        "/v1/chat/completions",
        b'{"model": "l2s-short", "max_tokens": 2, "messages": [{"role": "user", "content": "a\\ud800b"}]}',
    ),
    (
        "lone-surrogate-prompt",
        "/v1/completions",
        b'{"model": "l2s-short", "max_tokens": 2, "prompt": "\\udfff"}',
    ),
]


@pytest.mark.parametrize("name, path, body", FOUND + RAW, ids=[c[0] for c in FOUND + RAW])
def test_inputs_found_by_probing_get_a_4xx(server, name, path, body):
    kw = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = httpx.post(server.url + path, headers={**AUTH, "content-type": "application/json"}, timeout=60, **kw)
    assert 400 <= r.status_code < 500, f"{r.status_code}: {r.text[:300]}"
    assert problems_with(r.status_code, r.headers.get("content-type", ""), r.text) is None, r.text
