"""A budget-conditioned model served for real: the thinking budget a request names, or the one its
reasoning_effort level maps to, reaches the model's prompt as "Think for at most N tokens." (as in its
training), and usage counts the tokens of that prompt. Other models' prompts are left as they are.
"""

from __future__ import annotations

import json
import shutil

import openai
import pytest

from l2s.budget import with_budget
from l2s.engines.base import SamplingParams
from l2s.engines.completion import render_prompt

MSG = [{"role": "user", "content": "Compute 7 * 6 - 5."}]


@pytest.fixture(scope="module")
def served(tmp_path_factory, pico_tokenizer):
    """long/short pico models, plus `pico-budget`: an R1-style pico model whose l2s.json says it was
    derived with `--method budget`; the effort map sends `low` to it under a budget of 4."""
    from l2s.embedded.model import save_random_model
    from l2s.server.runner import serve_in_thread
    from l2s.server.settings import ServeSettings

    root = tmp_path_factory.mktemp("budget-family")
    long, short = (
        save_random_model(root / n, pico_tokenizer, seed=s) for n, s in (("long", 1), ("short", 2))
    )
    budget = root / "budget"
    shutil.copytree(long, budget)
    tpl = budget / "chat_template.jinja"
    tpl.write_text(
        tpl.read_text().replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\n<think>\\n'")
    )
    (budget / "l2s.json").write_text(json.dumps({"method": "budget", "config": {"budget_form": "max"}}))

    def level(path, b):
        return {"model": path.name, "path": str(path), "thinking_budget": b, "point": path.name,
                "accuracy": 0.9, "accuracy_ci95": [0.8, 0.95], "mean_tokens": 10.0}  # fmt: skip

    run = root / "run"
    run.mkdir()
    levels = {"minimal": level(short, None), "low": level(budget, 4), "medium": level(budget, 8), "high": level(long, None)}  # fmt: skip
    (run / "effort.json").write_text(json.dumps({"levels": levels, "auto": {"threshold": 0.5}}))
    settings = ServeSettings(
        long=str(long),
        short=str(short),
        models={"pico-budget": str(budget)},
        calibration=str(run),
        port=0,
        default_max_tokens=16,
        max_tokens_cap=256,
    )
    with serve_in_thread(settings) as running:
        yield running


@pytest.fixture
def client(served):
    return openai.OpenAI(base_url=served.base_url, api_key="none", max_retries=0, timeout=60)


def _prompt_tokens(served, name: str, messages) -> int:
    return len(render_prompt(served.app.state.endpoint.backends[name].tokenizer, messages).ids)


def test_a_named_budget_reaches_the_budget_models_prompt(served, client):
    kw = dict(model="pico-budget", messages=MSG, max_tokens=24, temperature=0, logprobs=True)
    r = client.chat.completions.create(extra_body={"max_thinking_tokens": 4}, **kw)
    from l2s.engines.hf import HFEngine

    served_engine = served.app.state.endpoint.backends["pico-budget"].engine
    plain = HFEngine.from_objects(served_engine.model, served_engine.tokenizer)  # writes no sentence itself
    params = SamplingParams(max_tokens=24, temperature=0, logprobs=True, max_thinking_tokens=4)
    (by_hand,) = plain.generate([with_budget(MSG, 4)], params)[0]  # the sentence written in by hand
    assert r.usage.prompt_tokens == _prompt_tokens(served, "pico-budget", with_budget(MSG, 4))
    assert r.usage.completion_tokens == by_hand.completion_tokens
    assert r.usage.completion_tokens_details.reasoning_tokens == by_hand.reasoning_tokens <= 4
    assert [t.logprob for t in r.choices[0].logprobs.content] == pytest.approx(by_hand.logprobs, abs=1e-4)
    free = client.chat.completions.create(**kw)  # no budget: the prompt as the user wrote it
    assert free.usage.prompt_tokens == _prompt_tokens(served, "pico-budget", MSG) < r.usage.prompt_tokens


def test_an_effort_levels_budget_reaches_the_budget_models_prompt(served, client):
    r = client.chat.completions.create(model="l2s", reasoning_effort="low", messages=MSG, max_tokens=24)
    routing = (r.model_extra or {})["l2s"]
    assert (routing["model"], routing["thinking_budget"]) == ("pico-budget", 4)
    assert r.usage.prompt_tokens == _prompt_tokens(served, "pico-budget", with_budget(MSG, 4))
    chunks = list(
        client.chat.completions.create(
            model="l2s", reasoning_effort="medium", messages=MSG, max_tokens=24, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    assert chunks[-1].usage.prompt_tokens == _prompt_tokens(served, "pico-budget", with_budget(MSG, 8))


def test_other_models_prompts_are_left_as_they_are(served, client):
    r = client.chat.completions.create(
        model="l2s-long", messages=MSG, max_tokens=24, extra_body={"max_thinking_tokens": 4}
    )
    assert r.usage.prompt_tokens == _prompt_tokens(served, "l2s-long", MSG)
    raw = client.completions.create(
        model="pico-budget", prompt="2 + 2 =", max_tokens=8, extra_body={"max_thinking_tokens": 4}
    )
    assert raw.usage.prompt_tokens == _prompt_tokens(served, "pico-budget", "2 + 2 =")  # raw text: as sent
