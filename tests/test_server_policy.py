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


# ---- reasoning_effort through an effort map (effort.json, `l2s calibrate`) --------------------------


@pytest.fixture
def mapped():
    from l2s.server.policy import EffortLevel

    efforts = {
        "minimal": EffortLevel("l2s-short"),
        "low": EffortLevel("merge-0.5", 8),
        "medium": EffortLevel("l2s-long", 16),
        "high": EffortLevel("l2s-long"),
    }
    return ModePolicy(models=SERVED, threshold=0.8, default_max_tokens=256, efforts=efforts)


@pytest.mark.parametrize(
    "effort, model, budget, level",
    [
        ("none", "l2s-short", None, "minimal"),
        ("minimal", "l2s-short", None, "minimal"),
        ("low", "merge-0.5", 8, "low"),
        ("medium", "l2s-long", 16, "medium"),
        ("high", "l2s-long", None, "high"),
        ("xhigh", "l2s-long", None, "high"),
        ("max", "l2s-long", None, "high"),
        (None, "l2s-long", 16, "medium"),  # `l2s` without an effort: medium
    ],
)
def test_effort_levels_follow_the_map(mapped, effort, model, budget, level):
    for alias in ("l2s", "l2s-auto") if effort else ("l2s",):
        route = mapped.route(model=alias, reasoning_effort=effort)
        assert (route.model, route.max_thinking_tokens, route.effort) == (model, budget, level)
        assert route.escalate_to is None


def test_explicit_settings_win_over_the_map(mapped):
    assert mapped.route(model="l2s", reasoning_effort="low", max_thinking_tokens=3).max_thinking_tokens == 3
    assert mapped.route(model="l2s", reasoning_effort="low", max_thinking_tokens=3).model == "merge-0.5"
    route = mapped.route(model="l2s", mode="short", reasoning_effort="high")
    assert (route.model, route.effort, route.max_thinking_tokens) == ("l2s-short", None, None)
    assert mapped.route(model="merge-0.5", reasoning_effort="high").model == "merge-0.5"
    assert mapped.route(model="l2s-long", reasoning_effort="minimal").max_thinking_tokens is None
    assert mapped.route(model="l2s-auto").mode == "auto"  # l2s-auto without an effort stays auto
    assert mapped.route(reasoning_effort="low").model == "merge-0.5"  # no model named: the default alias
    # a level's budget that max_tokens cannot reach does not bind
    assert mapped.route(model="l2s", reasoning_effort="medium", max_tokens=16).max_thinking_tokens is None


def test_l2s_alias_and_unknown_levels(mapped, policy):
    assert mapped.served_names() == ["l2s", "l2s-auto", "l2s-long", "l2s-short", "merge-0.5"]
    assert "l2s" not in policy.served_names()
    with pytest.raises(APIError) as e:
        policy.route(model="l2s")  # no effort map: no `l2s`
    assert (e.value.status, e.value.code) == (404, "model_not_found")
    for p in (mapped, policy):
        with pytest.raises(APIError) as e:
            p.route(reasoning_effort="extreme")
        assert e.value.param == "reasoning_effort"
        assert "valid: none, minimal, low, medium, high, xhigh, max" in e.value.message


def _effort_run(root, long, short, extra=None):
    """A run folder whose effort.json sends minimal to short, low/medium to `extra` (or short) with budgets,
    high to long; auto's threshold 0.6 beside it."""
    extra = extra or short
    level = lambda model, path, budget=None: {  # noqa: E731
        "model": model, "path": str(path), "thinking_budget": budget, "accuracy": 0.9,
        "accuracy_ci95": [0.85, 0.95], "mean_tokens": 20.0, "point": model,
    }  # fmt: skip
    effort = {
        "levels": {"minimal": level("short", short), "low": level("dpo", extra, 8),
                   "medium": level("dpo", extra, 16), "high": level("long", long)},
        "auto": {"threshold": 0.6},
    }  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    (root / "effort.json").write_text(json.dumps(effort))
    return root


def test_settings_read_the_effort_map_of_a_run_folder(tmp_path, pico_ckpt):
    import shutil

    long, short, dpo = (shutil.copytree(pico_ckpt, tmp_path / name) for name in ("long", "short", "dpo"))
    run = _effort_run(tmp_path / "run", long, short, dpo)
    settings = ServeSettings(long=str(long), short=str(short), models={"dpo": str(dpo)}, calibration=str(run))
    assert settings.effort_file() == run / "effort.json" and settings.threshold() == 0.6
    routes = settings.effort_routes(settings.served_models())
    assert {k: (r.model, r.thinking_budget) for k, r in routes.items()} == {
        "minimal": ("l2s-short", None), "low": ("dpo", 8), "medium": ("dpo", 16), "high": ("l2s-long", None)
    }  # fmt: skip
    # a map naming a model the server does not serve: one line, when the models are resolved
    missing = ServeSettings(long=str(long), short=str(short), calibration=str(run))
    with pytest.raises(UserError, match=r"sends reasoning_effort 'low' to dpo .* add --models dpo="):
        missing.served_models()
    # a calibration.json path keeps working as before: a threshold and no map
    (run / "calibration.json").write_text(json.dumps({"threshold": 0.3}))
    plain = ServeSettings(long=str(long), short=str(short), calibration=str(run / "calibration.json"))
    assert plain.effort_file() is None and plain.threshold() == 0.3
    assert plain.effort_routes(plain.served_models()) == {}
    (run / "effort.json").write_text("{}")
    with pytest.raises(UserError, match="not an l2s effort map"):
        ServeSettings(long=str(long), short=str(short), calibration=str(run)).served_models()
    with pytest.raises(ValueError, match="reserved"):
        ServeSettings(models={"l2s": str(dpo)})


def test_the_last_quickstart_runs_effort_map_is_served_with_its_models(tmp_path, pico_ckpt):
    import shutil

    from l2s.server.settings import LastRun, write_last_run

    family = tmp_path / "family"
    long, short = (shutil.copytree(pico_ckpt, family / name) for name in ("long", "short"))
    run = tmp_path / "run"
    rl, dpo = (shutil.copytree(pico_ckpt, run / "models" / name) for name in ("rl", "dpo"))
    write_last_run(family, LastRun(run, long, rl, "rl", None))
    _effort_run(run, long, rl, dpo)
    settings = ServeSettings(embedded=str(family))
    served = settings.served_models()
    assert served == {"l2s-long": long, "l2s-short": rl, "dpo": dpo}  # dpo joins for low and medium
    assert settings.effort_routes(served)["low"].model == "dpo"
    assert settings.threshold() is None  # the pointer names no calibration
