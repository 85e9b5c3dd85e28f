"""ModePolicy, request schemas, error shapes and serve settings: the server's pure parts (fast)."""

from __future__ import annotations

import json

import pytest

from l2s.errors import UserError
from l2s.server.errors import APIError, describe_validation
from l2s.server.policy import EFFORT_TO_MODE, ModePolicy
from l2s.server.schemas import ChatCompletionRequest, CompletionRequest
from l2s.server.settings import ServeSettings, read_threshold

SERVED = {"l2s-long", "l2s-short", "merge-0.5"}


@pytest.fixture
def policy():
    return ModePolicy(models=SERVED, threshold=0.8, default_max_tokens=256, max_tokens_cap=1024)


@pytest.mark.parametrize(
    "effort, model",
    [
        ("none", "l2s-short"),
        ("minimal", "l2s-short"),
        ("low", "l2s-short"),
        ("medium", "l2s-short"),
        ("high", "l2s-long"),
        ("xhigh", "l2s-long"),
        ("max", "l2s-long"),
    ],
)
def test_reasoning_effort_maps_to_a_mode(policy, effort, model):
    route = policy.route(reasoning_effort=effort)
    assert route.model == model and route.mode == EFFORT_TO_MODE[effort]
    assert (route.escalate_to == "l2s-long") == (route.mode == "auto")


def test_precedence_mode_then_model_then_effort(policy):
    assert policy.route(mode="long", reasoning_effort="low").model == "l2s-long"
    assert policy.route(model="l2s-short", reasoning_effort="high").model == "l2s-short"
    assert policy.route(model="l2s-auto", reasoning_effort="high").model == "l2s-long"
    assert policy.route(mode="auto", model="l2s-auto").mode == "auto"
    assert policy.route().mode == "auto"  # nothing named: the default model, l2s-auto


def test_budgets(policy):
    assert policy.route(mode="short").max_tokens == 256  # the default
    assert policy.route(mode="short", max_tokens=1024).max_tokens == 1024  # the cap itself is allowed
    with pytest.raises(APIError) as e:
        policy.route(mode="short", max_tokens=1025)
    assert (e.value.status, e.value.param) == (422, "max_tokens")
    assert policy.route(mode="long", max_tokens=100, max_thinking_tokens=20).max_thinking_tokens == 20
    assert policy.route(mode="long", max_tokens=10, max_thinking_tokens=20).max_thinking_tokens is None


def test_auto_needs_a_threshold():
    uncalibrated = ModePolicy(models=SERVED, threshold=None)
    assert uncalibrated.route(mode="short").model == "l2s-short"
    with pytest.raises(APIError) as e:
        uncalibrated.route(mode="auto")
    assert e.value.status == 422 and e.value.code == "auto_not_calibrated"


def test_extra_models(policy):
    assert policy.route(model="merge-0.5").mode is None
    with pytest.raises(APIError) as e:
        policy.route(model="merge-0.5", mode="short")
    assert e.value.status == 422
    with pytest.raises(APIError) as e:
        policy.route(model="/etc/passwd")  # a request can name only served models, never a path
    assert e.value.status == 404 and e.value.code == "model_not_found"


def test_requests_tolerate_unknown_fields():
    req = ChatCompletionRequest(
        model="l2s-short",
        messages=[{"role": "user", "content": "hi", "name": "bob"}],
        logit_bias={"1": 2},
        user="u",
    )
    assert req.unknown_fields() == ["logit_bias", "user"]
    assert req.prompt_messages() == [{"role": "user", "content": "hi"}]


def test_request_validation():
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert (
        ChatCompletionRequest(messages=[{"role": "user", "content": parts}]).prompt_messages()[0]["content"]
        == "ab"
    )
    assert ChatCompletionRequest(messages=[{"role": "user", "content": "x"}], stop="END").stop == ["END"]
    req = ChatCompletionRequest(
        messages=[{"role": "user", "content": "x"}], max_tokens=5, max_completion_tokens=9
    )
    assert req.requested_max_tokens() == 9
    for bad in (
        {"messages": []},
        {"messages": [{"role": "user", "content": "x"}], "temperature": 3},
        {"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
    ):
        with pytest.raises(ValueError):
            ChatCompletionRequest(**bad)
    with pytest.raises(ValueError):
        CompletionRequest(prompt=[])
    assert CompletionRequest(prompt="a").prompts() == ["a"]


def test_validation_errors_become_one_line_and_a_param():
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as e:
        ChatCompletionRequest(messages=[{"role": "user", "content": "x"}], n=0)
    errors = [{**err, "loc": ("body", *err["loc"])} for err in e.value.errors()]
    status, message, param = describe_validation(errors)
    assert (status, param) == (422, "n") and "greater than or equal to 1" in message


def test_settings_name_checks_and_yaml(tmp_path):
    with pytest.raises(ValueError):
        ServeSettings(models={"l2s-long": "/x"})
    with pytest.raises(ValueError):
        ServeSettings(models={"bad name!": "/x"})
    from l2s.config import load_config

    cfg = load_config(ServeSettings, "configs/serve.yaml")
    assert cfg.engine == "hf" and cfg.max_concurrent > 0
    bad = tmp_path / "serve.yaml"
    bad.write_text("engine: hf\nmax_batch_size: 3\n")
    with pytest.raises(UserError, match="unknown config key 'max_batch_size'"):
        load_config(ServeSettings, bad)


def test_served_models_default_to_the_embedded_family(tmp_path, pico_ckpt):
    empty = ServeSettings(embedded=str(tmp_path / "nothing"))
    with pytest.raises(UserError, match="run `l2s init`"):
        empty.served_models()
    with pytest.raises(UserError, match="both --long and --short"):
        ServeSettings(long=str(pico_ckpt)).served_models()
    family = tmp_path / "embedded"
    family.mkdir()
    (family / "short").symlink_to(pico_ckpt)
    (family / "long-sft").symlink_to(pico_ckpt)
    served = ServeSettings(embedded=str(family)).served_models()
    assert served["l2s-long"].name == "long-sft"  # no RL'd `long` yet: the long-SFT model
    (family / "long").symlink_to(pico_ckpt)
    assert ServeSettings(embedded=str(family)).served_models()["l2s-long"].name == "long"
    with pytest.raises(UserError, match="checkpoint not found"):
        ServeSettings(long=str(tmp_path / "nope"), short=str(pico_ckpt)).served_models()


def test_threshold_from_calibration(tmp_path):
    cal = tmp_path / "calibration.json"
    cal.write_text(json.dumps({"threshold": 0.42, "rule": "..."}))
    assert ServeSettings(calibration=str(cal)).threshold() == 0.42
    assert read_threshold(tmp_path) == 0.42  # a run folder works too
    assert ServeSettings(calibration=str(cal), auto_threshold=0.1).threshold() == 0.1
    cal.write_text("{}")
    with pytest.raises(UserError, match="not a calibration file"):
        read_threshold(cal)
    with pytest.raises(UserError, match="not found"):
        read_threshold(tmp_path / "missing.json")
