"""`l2s quickstart`: end to end on the tiny preset (every step runs for real on pico models), and what
it leaves for `l2s serve` and `l2s ui`, on a finished run made up of pico checkpoints.

The tiny family is untrained noise, so no long sample is correct: shortest-rs and DPO must say so and
be left out, while merge, rl and the evaluation still run and the report holds every other model.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from l2s.server.settings import LONG, SHORT, ServeSettings


@pytest.mark.slow
def test_quickstart_tiny_runs_every_step(tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    cmd = [sys.executable, "-m", "l2s.cli", "quickstart", "--preset", "tiny", "--cache", str(cache),
           "--out", str(out), "--n", "8"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr[-2000:]  # two methods could not run on noise: reported, not hidden
    assert "not in the report: shortest-rs (no correct samples" in r.stdout
    assert "not in the report: dpo (no correct samples" in r.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["n"] == 8
    names = set(report["models"])
    assert {"long", "short", "rl"} <= names and {f"merge-{a:g}" for a in (0.1, 0.3, 0.5, 0.7, 0.9)} <= names
    assert report["models"]["merge-0.5"]["method"] == "merge"
    # the budget model is measured at every budget beside long (its samples: tests/test_evaluate.py)
    assert {"budget", "budget@16", "budget@64", "long@16", "long@64"} <= names
    assert report["models"]["budget@16"]["method"] == "budget"
    assert (
        report["models"]["budget@16"]["thinking_budget"]
        == report["models"]["long@16"]["thinking_budget"]
        == 16
    )
    assert (out / "report.md").is_file() and (out / "pareto.png").stat().st_size > 10_000
    assert "where the time went:" in r.stdout
    # the next commands name this family's folder, so `l2s serve` finds the run's pointer there
    assert f"L2S_CACHE={cache.resolve()} " in r.stdout and " serve\n" in r.stdout
    pointer = json.loads((cache / "last-run.json").read_text())
    assert pointer["short_name"] in names - {"budget"} and Path(pointer["calibration"]).is_file()

    # A second run reuses the family, the derived models and the samples.
    r2 = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert "reused" in r2.stdout and "merge: reused" in r2.stdout
    assert json.loads((out / "report.json").read_text())["models"].keys() == report["models"].keys()


@pytest.mark.parametrize("preset", ["default", "tiny"])
def test_quickstart_overrides_are_valid_method_settings(preset):
    """The default preset's overrides are only exercised by `make quickstart` (too slow for a test):
    check here that every key is a real setting of the config it goes to."""
    from l2s.evaluate import EvalConfig
    from l2s.methods import get_method
    from l2s.methods.shortest_rs import ShortestRSConfig
    from l2s.quickstart import DEFAULT_OVERRIDES, TINY_OVERRIDES

    over = DEFAULT_OVERRIDES if preset == "default" else TINY_OVERRIDES
    assert set(over) == {"sampling", "shortest-rs", "dpo", "rl", "budget", "eval"}
    ShortestRSConfig(**over["sampling"])
    for method in ("shortest-rs", "dpo", "rl", "budget"):
        get_method(method).CONFIG(**over[method])
    EvalConfig(models="long=x", out="run", **over["eval"])


def _entry(acc: float, tokens: float, path: Path | str, method: str | None) -> dict:
    return {
        "accuracy": acc, "accuracy_ci95": [max(0.0, acc - 0.05), min(1.0, acc + 0.05)],
        "mean_tokens": tokens, "p50_tokens": tokens, "p90_tokens": tokens, "tokens_per_correct": tokens,
        "token_ratio_vs_long": tokens / 60, "path": str(path), "method": method,
    }  # fmt: skip


def fake_run(root: Path, tokenizer, task: dict | None = None) -> tuple[Path, Path]:
    """A finished quickstart run on pico checkpoints: (run folder, family folder). Its report makes `rl`
    the best short model (dpo has fewer tokens but is 1.5 points below long), and its eval samples
    calibrate auto for long + rl at 0.9 (one of rl's ten answers is wrong, at confidence 0.4)."""
    from l2s.embedded.model import save_random_model

    family, run = root / "family", root / "run"
    long = save_random_model(family / "long", tokenizer, seed=1)
    short = save_random_model(family / "short", tokenizer, seed=2)
    rl = save_random_model(run / "models" / "rl", tokenizer, seed=3)
    models = {
        "long": _entry(1.0, 60, long, "rl"), "short": _entry(0.2, 9, short, "sft"),
        "rl": _entry(0.99, 25, rl, "rl"), "dpo": _entry(0.985, 20, run / "models" / "dpo", "dpo"),
        "merge-0.5": _entry(0.2, 9, run / "models" / "merge" / "alpha-0.50", "merge"),
    }  # fmt: skip
    report = {"task": (task or {"task": "arith"})["task"], "n": 10, "grader": "flexible", "models": models}
    (run / "report.json").write_text(json.dumps(report))
    (run / "samples").mkdir()
    for name, wrong in (("long", None), ("rl", 3)):
        rows = [
            {"prompt_id": str(i), "sample_idx": 0, "correct": i != wrong, "completion_tokens": 25,
             "confidence": 0.4 if i == wrong else 0.9}
            for i in range(10)
        ]  # fmt: skip
        (run / "samples" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run, family


def test_best_short_model_is_served_by_default_with_its_own_calibration(tmp_path, pico_tokenizer):
    from l2s.quickstart import choose_served

    run, family = fake_run(tmp_path, pico_tokenizer)
    served = choose_served(run, family, ["rl", "dpo", "merge-0.5"])
    assert (served.short_name, served.short) == ("rl", run / "models" / "rl")
    cal = json.loads((run / "calibration-rl.json").read_text())
    assert cal["threshold"] == 0.9 and cal["tolerance"] == 0.01 and cal["short_model"] == str(served.short)

    # `l2s serve` with no models given: the run's long and rl, auto on at the pair's threshold
    default = ServeSettings(embedded=str(family))
    assert default.served_models() == {LONG: family / "long", SHORT: run / "models" / "rl"}
    assert default.threshold() == 0.9
    # explicit settings win over the run
    own = ServeSettings(embedded=str(family), long=str(family / "short"), short=str(family / "long"))
    assert own.served_models()[LONG] == family / "short" and own.threshold() is None
    assert ServeSettings(embedded=str(family), auto_threshold=0.25).threshold() == 0.25
    assert ServeSettings(embedded=str(family), calibration=str(tmp_path / "nope.json")).last_run() is not None
    with pytest.raises(Exception, match="calibration file not found"):
        ServeSettings(embedded=str(family), calibration=str(tmp_path / "nope.json")).threshold()


def _add_budget_model(run: Path, tokenizer) -> Path:
    """A budget model in the fake run, with points budget (unconstrained) and budget@16 in its report:
    budget@16 is as accurate as long in the fewest tokens, so the effort map sends low/medium to it."""
    from l2s.checkpoint import write_provenance
    from l2s.embedded.model import save_random_model

    path = save_random_model(run / "models" / "budget", tokenizer, seed=4)
    write_provenance(path, method="budget", config={"budget_form": "max"})
    report = json.loads((run / "report.json").read_text())
    report["models"]["budget"] = _entry(1.0, 15, path, "budget")  # fewer tokens than rl, as accurate
    report["models"]["budget@16"] = {**_entry(1.0, 12, path, "budget"), "thinking_budget": 16}
    (run / "report.json").write_text(json.dumps(report))
    return path


def test_the_budget_model_is_not_served_as_short_but_at_its_effort_levels(tmp_path, pico_tokenizer):
    from l2s.effort import write_effort
    from l2s.quickstart import choose_served

    run, family = fake_run(tmp_path, pico_tokenizer)
    _set_report(run, "merge-0.5", mean_tokens=10)  # minimal: the family's short, not an absent merge
    budget = _add_budget_model(run, pico_tokenizer)
    served = choose_served(run, family, ["rl", "dpo", "merge-0.5", "budget"])
    assert served.short_name == "rl"  # budget is shorter and as accurate, but meant to run at a budget
    effort = json.loads(write_effort(run, calibration=served.calibration).read_text())
    assert effort["levels"]["medium"]["point"] == "budget@16"
    # `l2s serve` with no models given loads the budget model too, and routes its levels to it at 16
    settings = ServeSettings(embedded=str(family))
    served_models = settings.served_models()
    assert (served_models[LONG], served_models[SHORT]) == (family / "long", run / "models" / "rl")
    assert served_models["budget"] == budget
    routes = settings.effort_routes(served_models)
    assert (routes["medium"].model, routes["medium"].thinking_budget) == ("budget", 16)
    assert routes["high"].model in (LONG, "budget")


def _set_report(run: Path, name: str, **values) -> None:
    report = json.loads((run / "report.json").read_text())
    report["models"][name].update(values)
    (run / "report.json").write_text(json.dumps(report))


def test_without_a_shorter_derived_model_the_family_short_is_served(tmp_path, pico_tokenizer):
    from l2s.quickstart import choose_served

    run, family = fake_run(tmp_path, pico_tokenizer)
    _set_report(run, "merge-0.5", accuracy=1.0, mean_tokens=70)  # as accurate as long, but longer
    (run / "samples" / "short.jsonl").write_text((run / "samples" / "rl.jsonl").read_text())
    served = choose_served(run, family, ["merge-0.5"])
    assert served.short_name == "short" and served.short == family / "short"
    assert ServeSettings(embedded=str(family)).served_models()[SHORT] == family / "short"


def test_without_one_near_long_the_most_accurate_shorter_is_served(tmp_path, pico_tokenizer):
    from l2s.quickstart import choose_served

    run, family = fake_run(tmp_path, pico_tokenizer)
    _set_report(run, "rl", accuracy=0.95)  # 5 points below long: none is within one point
    served = choose_served(run, family, ["rl", "merge-0.5"])
    assert (served.short_name, served.short) == ("rl", run / "models" / "rl")


def test_a_stale_or_broken_pointer(tmp_path, pico_tokenizer):
    import shutil

    from l2s.errors import UserError
    from l2s.quickstart import choose_served

    run, family = fake_run(tmp_path, pico_tokenizer)
    choose_served(run, family, ["rl"])
    shutil.rmtree(run / "models" / "rl")  # the run was deleted: serve the family again
    assert ServeSettings(embedded=str(family)).last_run() is None
    assert ServeSettings(embedded=str(family)).served_models()[SHORT] == family / "short"
    (family / "last-run.json").write_text("{not json")
    with pytest.raises(UserError, match="not a quickstart pointer; delete it or re-run `l2s quickstart`"):
        ServeSettings(embedded=str(family)).served_models()


def test_next_commands_are_exact(tmp_path, pico_tokenizer, monkeypatch):
    import dataclasses

    from l2s.embedded import DEFAULT_CACHE
    from l2s.quickstart import choose_served, next_commands

    run, family = fake_run(tmp_path, pico_tokenizer)
    served = choose_served(run, family, ["rl"])
    monkeypatch.chdir(tmp_path)
    # another family folder and another --out: both named in the commands
    lines = [line.strip() for line in next_commands(served, family).strip().splitlines()]
    assert lines[1].startswith(f"L2S_CACHE={family} ") and lines[1].endswith(" serve")
    assert lines[2].startswith(f"L2S_CACHE={family} ")
    assert lines[2].endswith(f" ui --server http://127.0.0.1:8000 --run-dir {run}")
    assert "'rl'" in lines[3] and "calibration-rl.json" in lines[3]
    # the default family and the default --out (runs/quickstart here): the bare commands
    default = dataclasses.replace(served, run_dir=(tmp_path / "runs" / "quickstart").resolve())
    lines = [line.strip() for line in next_commands(default, DEFAULT_CACHE).strip().splitlines()]
    assert lines[1].split()[-1] == "serve" and len(lines[1].split()) == 2
    assert lines[2].split()[1:] == ["ui", "--server", "http://127.0.0.1:8000"]


def test_ui_examples_come_from_the_served_runs_task(tmp_path, pico_tokenizer):
    from l2s.quickstart import choose_served
    from l2s.ui.app import example_rows, example_task

    data = tmp_path / "capitals.jsonl"
    rows = [{"prompt": f"Capital number {i}?", "answer": str(i), "split": "test"} for i in range(3)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run, family = fake_run(tmp_path, pico_tokenizer, task={"task": f"jsonl:{data}"})
    assert example_task(str(family)) == {"task": "arith"}  # no run yet: the embedded task
    assert example_rows(2, task=example_task(str(family)))[0][0].startswith("Compute ")
    choose_served(run, family, ["rl"])
    assert example_task(str(family)) == {"task": f"jsonl:{data}"}
    assert example_rows(8, task=example_task(str(family))) == [
        [f"Capital number {i}?", str(i)] for i in range(3)
    ]
