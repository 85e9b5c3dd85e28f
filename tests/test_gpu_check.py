"""benchmarks/gpu_check.py and its wrapper gpu_check.sh in the CPU (--smoke) mode: the steps run end to end
and measure what they say, a failing step does not stop the others, the time budget skips what it cannot
fit, and the JSON summary holds what was printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPT, WRAPPER = BENCHMARKS / "gpu_check.py", BENCHMARKS / "gpu_check.sh"
ENV = {k: v for k, v in os.environ.items() if k != "OUT"}


def gpu_check(tmp_path: Path, *args: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(out), *args],
        capture_output=True, text=True, timeout=timeout, env=ENV,
    )  # fmt: skip
    return proc, json.loads(out.read_text())


@pytest.mark.slow
def test_smoke_runs_every_step_it_can_and_measures(tmp_path):
    # rl-no and dpo run the same code paths as rl-bf16 and sft (and tests/test_methods_dpo.py); left out for time.
    proc, report = gpu_check(tmp_path, "--smoke", "--skip", "rl-no,dpo")
    steps = {s["name"]: s for s in report["steps"]}
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(steps) == ["env", "model", "engine", "sft", "rl-bf16", "server", "vllm-args", "engine-fp32"]
    assert all(s["status"] == "ok" for s in steps.values()), steps
    assert (report["device"], report["smoke"], report["findings"]) == ("cpu", True, [])
    model = steps["model"]["details"]
    assert model["architecture"] == "Qwen2ForCausalLM" and model["parameters"] < 5_000_000
    engine = steps["engine"]["details"]
    assert engine["get_engine_default_device"] == "cpu"
    assert engine["batched"]["same_output_twice"] and engine["batched"]["device"] == "cpu"
    assert engine["batched"]["tokens_per_s"] > 0 and engine["one_at_a_time"]["tokens_per_s"] > 0
    assert engine["budget"]["max_reasoning_tokens"] <= engine["budget"]["budget"]
    sft = steps["sft"]["details"]
    assert sft["train_steps"] == 3 and sft["trainer"]["device"] == "cpu" and sft["steps_per_s"] > 0
    rl = steps["rl-bf16"]["details"]
    assert rl["iterations"] == 3 and rl["gradient_steps"] > 0 and rl["peak_gpu_mem_gib"] is None
    assert rl["s_per_iteration"] > 0
    server = steps["server"]["details"]
    assert (server["requests"], server["clients"], server["device"]) == (64, 64, "cpu")
    assert server["completion_tokens"] > 0 and 0 < server["latency_p50_s"] <= server["latency_p99_s"]
    assert steps["engine-fp32"]["details"]["bf16_rows_equal_to_fp32"].endswith(f"/{engine['prompts']}")
    # every measurement carries its unit, in the step and in the flat list
    units = {k: v["unit"] for k, v in report["measurements"].items()}
    assert units["engine.generation_batched"] == units["server.throughput"] == "tokens/s"
    assert units["sft.steps"] == "steps/s" and units["rl-bf16.iteration"] == "s/iteration"
    assert units["server.latency_p99"] == "s" and report["measurements"]["server.concurrent"]["value"] == 64
    assert "l2s GPU check" in proc.stdout and "key figures" in proc.stdout and "findings: none" in proc.stdout
    assert "throughput" in proc.stdout and "tokens/s" in proc.stdout


def test_a_failed_step_is_reported_and_the_others_still_run(tmp_path):
    proc, report = gpu_check(tmp_path, "--tokenizer", str(tmp_path / "missing"), "--skip", "rl-no,dpo")
    status = {s["name"]: (s["status"], s["line"]) for s in report["steps"]}
    assert proc.returncode == 1
    assert status["env"][0] == "ok"
    assert status["model"][0] == "FAILED" and "missing" in status["model"][1]
    skipped = ("skipped", "no model (the model step failed)")
    assert status["engine"] == status["vllm-args"] == status["sft"] == status["server"] == skipped
    assert "FAILED" in proc.stdout


def test_steps_that_do_not_fit_the_budget_are_skipped_with_the_reason(tmp_path):
    # through the wrapper, from another directory, with a relative OUTDIR; no bundle here to install
    proc = subprocess.run(
        ["bash", str(WRAPPER), "out", "--device", "cpu", "--skip", "bundle", "--budget-minutes", "0.001"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**ENV, "PYTHON": sys.executable},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert "--install-bundle" in report["argv"] and (tmp_path / "out" / "gpu_check.stderr.log").is_file()
    status = {s["name"]: (s["status"], s["line"]) for s in report["steps"]}
    assert status.pop("env")[0] == "ok"
    assert status and all(s == "skipped" and "budget left" in line for s, line in status.values())
    assert "budget left" in proc.stdout


def test_the_wrapper_wants_an_outdir(tmp_path):
    for args in ([], ["--smoke"], [""]):
        proc = subprocess.run(["bash", str(WRAPPER), *args], capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 2 and "usage: bash benchmarks/gpu_check.sh OUTDIR" in proc.stderr
    (tmp_path / "gpu_check.json").write_text("{}")
    proc = subprocess.run(["bash", str(WRAPPER), str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "exists" in proc.stderr
    assert (tmp_path / "gpu_check.json").read_text() == "{}"


def test_an_existing_output_is_not_overwritten_and_unknown_steps_are_refused(tmp_path):
    out = tmp_path / "gpu_check.json"
    out.write_text("{}")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(out)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "exists" in proc.stderr
    assert out.read_text() == "{}"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--skip", "rl"], capture_output=True, text=True, env=ENV
    )
    assert proc.returncode == 2 and "no step rl" in proc.stderr
