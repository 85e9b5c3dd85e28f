"""reasoning_effort levels from measured points: the choice rule, effort.json and `l2s calibrate`."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l2s.cli import main
from l2s.effort import LEVELS, choose_levels, pareto_front, read_effort, write_effort
from l2s.errors import UserError


def _entry(acc: float, tokens: float, path: str, budget: int | None = None) -> dict:
    entry = {
        "accuracy": acc, "accuracy_ci95": [max(0.0, acc - 0.02), min(1.0, acc + 0.02)], "mean_tokens": tokens,
        "p50_tokens": tokens, "p90_tokens": tokens, "tokens_per_correct": tokens, "token_ratio_vs_long": None,
        "path": path, "method": "rl", "mean_reasoning_tokens": tokens - 4, "samples": 300 if budget else 1000,
    }  # fmt: skip
    return entry | ({"thinking_budget": budget} if budget is not None else {})


def _report(budgets: bool = True) -> dict:
    models = {
        "long": _entry(0.999, 64.2, "/m/long"), "short": _entry(0.142, 9.0, "/m/short"),
        "rl": _entry(1.0, 26.9, "/run/models/rl"), "dpo": _entry(0.988, 30.7, "/run/models/dpo"),
    }  # fmt: skip
    if budgets:
        models |= {
            "rl@8": _entry(0.96, 14.0, "/run/models/rl", 8), "rl@16": _entry(0.995, 20.1, "/run/models/rl", 16),
            "long@16": _entry(0.7, 28.0, "/m/long", 16),
        }  # fmt: skip
    return {"task": "arith", "n": 1000, "grader": "flexible", "models": models}


@pytest.fixture
def run_dir(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps(_report()))
    cal = {"threshold": 0.93, "short_model": "/m/short", "long_model": "/m/long", "rule": "..."}
    (tmp_path / "calibration.json").write_text(json.dumps(cal))
    return tmp_path


def test_calibrate_writes_the_effort_map(run_dir, capsys):
    assert main(["calibrate", str(run_dir)]) == 0
    effort = json.loads((run_dir / "effort.json").read_text())
    levels = effort["levels"]
    assert list(levels) == list(LEVELS)
    assert {k: (v["model"], v["thinking_budget"]) for k, v in levels.items()} == {
        "minimal": ("short", None), "low": ("rl", 8), "medium": ("rl", 16), "high": ("rl", None),
    }  # fmt: skip
    assert levels["low"] == {
        "model": "rl", "path": "/run/models/rl", "thinking_budget": 8, "point": "rl@8", "accuracy": 0.96,
        "accuracy_ci95": [0.94, 0.98], "mean_tokens": 14.0, "samples": 300,
    }  # fmt: skip
    assert effort["aliases"] == {"none": "minimal", "xhigh": "high", "max": "high"}
    assert effort["default"] == "medium" and effort["tolerance"] == 0.01 and effort["low_margin"] == 0.05
    assert effort["front"] == ["short", "rl@8", "rl@16", "rl"]
    assert effort["auto"] == {
        "threshold": 0.93, "short_model": "/m/short", "long_model": "/m/long", "source": "calibration.json"
    }  # fmt: skip
    out = capsys.readouterr().out
    assert "low      rl, thinking budget 8: accuracy 0.960 [0.940, 0.980], 14.0 mean tokens" in out
    assert "--thinking-budgets" not in out  # the run has budget points: no note
    # a wider tolerance lets medium give up more; calibrating again says it replaced the map
    assert main(["calibrate", str(run_dir), "--tolerance", "0.05"]) == 0
    assert read_effort(run_dir)["levels"]["medium"]["point"] == "rl@8"
    assert "(replacing the previous one)" in capsys.readouterr().out


def test_calibrate_without_budget_points_says_how_to_add_them(tmp_path, capsys):
    (tmp_path / "report.json").write_text(json.dumps(_report(budgets=False)))
    assert main(["calibrate", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if "--thinking-budgets" in line]
    assert len(notes) == 1 and "l2s eval --thinking-budgets" in notes[0]
    effort = read_effort(tmp_path)
    assert [effort["levels"][k]["point"] for k in LEVELS] == ["short", "rl", "rl", "rl"]
    assert effort["auto"] is None  # no calibration.json in the run


def test_bad_runs_and_flags_are_one_line(tmp_path, capsys):
    assert main(["calibrate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no report.json" in err
    (tmp_path / "report.json").write_text(json.dumps(_report()))
    assert main(["calibrate", str(tmp_path), "--tolerance", "0.2"]) == 2
    assert "--tolerance" in capsys.readouterr().err
    with pytest.raises(UserError, match="calibration file not found"):
        write_effort(tmp_path, calibration=tmp_path / "missing.json")
    (tmp_path / "calibration.json").write_text("{}")
    with pytest.raises(UserError, match="not a calibration file"):
        write_effort(tmp_path)
    with pytest.raises(UserError, match="no effort.json"):
        read_effort(tmp_path)
    (tmp_path / "effort.json").write_text(json.dumps({"levels": {"low": {}}}))
    with pytest.raises(UserError, match="not an l2s effort map"):
        read_effort(tmp_path)


_points = st.dictionaries(
    st.text("abcdefgh@0123456789", min_size=1, max_size=6),
    st.tuples(st.floats(0, 1), st.floats(1, 100)),
    min_size=1,
    max_size=12,
)


@given(_points, st.floats(0, 0.05))
def test_levels_cost_more_tokens_for_more_accuracy(points, tolerance):
    levels = choose_levels(points, tolerance)
    front = pareto_front(points)
    assert set(levels.values()) <= set(front)
    acc = [points[levels[k]][0] for k in LEVELS]
    tokens = [points[levels[k]][1] for k in LEVELS]
    assert acc == sorted(acc) and tokens == sorted(tokens)
    assert acc[-1] == max(a for a, _ in points.values())  # high: the most accurate of all
    assert tokens[0] == min(t for _, t in points.values())  # minimal: the fewest tokens of all
    assert acc[2] >= acc[-1] - tolerance - 1e-9 and acc[1] >= acc[-1] - 0.05 - 1e-9
