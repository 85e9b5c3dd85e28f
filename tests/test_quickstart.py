"""`l2s quickstart` end to end on the tiny preset: every step runs for real on pico models.

The tiny family is untrained noise, so no long sample is correct: shortest-rs and DPO must say so and
be left out, while merge, rl and the evaluation still run and the report holds every other model.
"""

import json
import subprocess
import sys

import pytest


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
    assert (out / "report.md").is_file() and (out / "pareto.png").stat().st_size > 10_000
    assert "where the time went:" in r.stdout and "l2s serve" in r.stdout

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
    assert set(over) == {"sampling", "shortest-rs", "dpo", "rl", "eval"}
    ShortestRSConfig(**over["sampling"])
    for method in ("shortest-rs", "dpo", "rl"):
        get_method(method).CONFIG(**over[method])
    EvalConfig(models="long=x", out="run", **over["eval"])
