"""benchmarks/gpu_check.py in its CPU mode: the steps run end to end, a failing step does not stop the
others, and the JSON summary holds what was printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


def gpu_check(tmp_path: Path, *args: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "gpu_check.json"
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(out), *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip
    return proc, json.loads(out.read_text())


@pytest.mark.slow
def test_cpu_mode_runs_every_step_it_can(tmp_path):
    # rl-no and dpo run the same code paths as rl-bf16 and tests/test_methods_dpo.py; left out for time.
    proc, report = gpu_check(tmp_path, "--small", "--skip", "rl-no,dpo")
    steps = {s["name"]: s for s in report["steps"]}
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(steps) == ["env", "model", "engine", "rl-bf16", "vllm-args"]
    assert all(s["status"] == "ok" for s in steps.values()), steps
    assert (report["device"], report["small"], report["findings"]) == ("cpu", True, [])
    engine = steps["engine"]["details"]
    assert engine["get_engine_default_device"] == "cpu"
    for run in engine["runs"].values():
        assert run["same_output_twice"] and run["device"] == "cpu" and run["tokens_per_s"] > 0
    assert engine["budget"]["max_reasoning_tokens"] <= engine["budget"]["budget"]
    rl = steps["rl-bf16"]["details"]
    assert rl["iterations"] == 3 and rl["gradient_steps"] > 0 and rl["peak_gpu_mem_gib"] is None
    assert 3 < steps["model"]["details"]["parameters_m"] < 6
    assert "l2s GPU check" in proc.stdout and "findings: none" in proc.stdout


def test_a_failed_step_is_reported_and_the_others_still_run(tmp_path):
    proc, report = gpu_check(
        tmp_path, "--tokenizer", str(tmp_path / "missing"), "--skip", "rl-bf16,rl-no,dpo"
    )
    status = {s["name"]: (s["status"], s["line"]) for s in report["steps"]}
    assert proc.returncode == 1
    assert status["env"][0] == "ok"
    assert status["model"][0] == "FAILED" and "missing" in status["model"][1]
    assert status["engine"] == status["vllm-args"] == ("skipped", "no model (the model step failed)")
    assert "FAILED" in proc.stdout


def test_an_existing_output_is_not_overwritten(tmp_path):
    out = tmp_path / "gpu_check.json"
    out.write_text("{}")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(out)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "exists" in proc.stderr
    assert out.read_text() == "{}"
