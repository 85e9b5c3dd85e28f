"""The RL stage end to end on a pico model: output checkpoint, bad input, and resume after kill -9."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from l2s.config import load_config
from l2s.rl.config import RLConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# Small enough for seconds per iteration on a pico model; partial rollouts on, so the replay buffer
# crosses a checkpoint.
TINY = """\
train_problems: 40
prompts_per_iteration: 4
k: 2
max_tokens: 16
segment_tokens: 8
minibatch_prompts: 2
learning_rate: 1.0e-3
save_every: 2
curriculum_iterations: 2
"""


# Pico matmuls gain nothing from threads, and on a shared CPU OpenMP spinning makes them far slower.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def l2s(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "l2s.cli", "rl", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


def _one_line_error(r, *needles):
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def tiny_yaml(tmp_path_factory, coin_task):
    """TINY on the coin task: with `coin_ckpt`, rewards differ within a group, so training moves weights."""
    path = tmp_path_factory.mktemp("rlcfg") / "tiny.yaml"
    path.write_text(TINY + f"task: jsonl:{coin_task}\n")
    return path


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, coin_ckpt, tiny_yaml):
    """An uninterrupted 6-iteration run (the resume test must reproduce it exactly)."""
    out = tmp_path_factory.mktemp("rlref") / "out"
    r = l2s("--init", coin_ckpt, "--out", out, "--config", tiny_yaml, "--iterations", 6, "--seed", 3)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


def test_shipped_rl_configs_load():
    for name in ("rl_full.yaml", "rl_long2short.yaml"):
        cfg = load_config(RLConfig, CONFIGS / name)
        assert cfg.k >= 2 and cfg.tau > 0
    full = load_config(RLConfig, CONFIGS / "rl_full.yaml")
    short = load_config(RLConfig, CONFIGS / "rl_long2short.yaml")
    assert full.length_penalty_weight == 0 and short.length_penalty_weight > 0
    assert short.length_penalty_warmup > 0 and short.max_tokens < full.max_tokens


def test_shipped_yaml_equals_the_in_code_stages():
    from l2s.rl.config import full_stage, long2short_stage

    assert load_config(RLConfig, CONFIGS / "rl_full.yaml") == full_stage()
    assert load_config(RLConfig, CONFIGS / "rl_long2short.yaml") == long2short_stage()


def test_accelerate_configs_parse():
    from accelerate.commands.config.config_args import load_config_from_file

    files = sorted((CONFIGS / "accelerate").glob("*.yaml"))
    kinds = {load_config_from_file(str(f)).distributed_type.value for f in files}
    assert {"DEEPSPEED", "FSDP", "MULTI_GPU"} <= kinds


def test_bad_input_is_one_line_exit_2(tmp_path, pico_ckpt, capsys):
    from l2s.cli import main

    def rl(*args):
        code = main(["rl", *map(str, args)])
        return subprocess.CompletedProcess(args, code, "", capsys.readouterr().err)

    out = tmp_path / "out"
    _one_line_error(rl("--init", tmp_path / "missing", "--out", out), "checkpoint not found")
    _one_line_error(rl("--init", pico_ckpt, "--out", out, "--tau", 0), "tau must be > 0")
    _one_line_error(rl("--init", pico_ckpt, "--out", out, "--tau", -1), "tau")
    _one_line_error(rl("--init", pico_ckpt, "--out", out, "--k", 1), "k must be >= 2")
    _one_line_error(rl("--init", pico_ckpt, "--out", out, "--max-tokens", 4000), "max length of 1024")
    poems = tmp_path / "poems.jsonl"
    poems.write_text(
        json.dumps({"prompt": "Write a poem.", "answer": "roses are red\nviolets are blue"}) + "\n"
    )
    _one_line_error(
        rl("--init", pico_ckpt, "--out", out, "--task", f"jsonl:{poems}"), "no verifiable answers"
    )
    assert not out.exists()
    # and through the real console entry: exit code 2, one line
    _one_line_error(l2s("--init", pico_ckpt, "--out", out, "--k", 1), "l2s rl: error: ")


def test_max_length_not_above_prompt(tmp_path, pico_tokenizer):
    from l2s.embedded.model import llama_config
    from l2s.errors import UserError
    from l2s.rl.trainer import _check_lengths

    cfg = RLConfig(max_tokens=8)
    short_ctx = llama_config(len(pico_tokenizer), "pico", pico_tokenizer, max_positions=8)
    with pytest.raises(UserError, match="not above the longest prompt"):
        _check_lengths(cfg, pico_tokenizer, short_ctx, ["Compute 12 + 30 - 4. End with 'Answer: N'."])


@pytest.mark.slow
def test_rl_run_writes_a_valid_checkpoint(reference_run, coin_ckpt, tiny_yaml):
    from l2s.checkpoint import read_provenance, validate_checkpoint

    out, r = reference_run
    validate_checkpoint(out)
    prov = read_provenance(out)
    assert prov["method"] == "rl" and prov["parents"]["init"] == str(coin_ckpt)
    assert prov["config"]["k"] == 2 and prov["metrics"]["iterations"] == 6
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in rows] == list(range(6))
    assert {"reward", "accuracy", "mean_tokens", "loss", "kl_term"} <= set(rows[0])
    assert sum(row["groups"] for row in rows) > 0 and any(row["buffered_groups"] for row in rows)
    accuracy = [row["accuracy"] for row in rows if row["accuracy"] == row["accuracy"]]  # NaN: no group ended
    assert accuracy and 0 < sum(accuracy) < len(accuracy)  # the coin model is right some of the time
    assert (out / "training_curve.png").stat().st_size > 1000
    assert "acc" in r.stderr and "reward" in r.stderr  # per-iteration progress lines
    assert not (out.parent / f"{out.name}.work").exists()
    # An existing output is never replaced silently.
    _one_line_error(
        l2s("--init", coin_ckpt, "--out", out, "--config", tiny_yaml), "already exists", "--force"
    )


@pytest.mark.slow
def test_resume_after_kill_9_reproduces_the_uninterrupted_run(tmp_path, reference_run, coin_ckpt, tiny_yaml):
    import torch
    from safetensors.torch import load_file

    out = tmp_path / "out"
    args = [sys.executable, "-m", "l2s.cli", "rl", "--init", coin_ckpt, "--out", out, "--config", tiny_yaml]
    args += ["--iterations", 6, "--seed", 3]
    state = tmp_path / "out.work" / "checkpoint" / "trainer_state.json"
    proc = subprocess.Popen(
        list(map(str, args)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV
    )
    deadline = time.time() + 90
    while not state.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # kill -9 right after the first checkpoint
    proc.wait()
    assert state.is_file() and not out.exists()
    killed_at = json.loads(state.read_text())["iteration"]
    assert 2 <= killed_at < 6

    r = l2s(*args[4:])
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming from iteration {killed_at}" in r.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in rows] == list(range(6))
    ref_out, _ = reference_run
    ref_rows = [json.loads(line) for line in (ref_out / "metrics.jsonl").read_text().splitlines()]
    # Same prompts and the same sampled tokens in every iteration (lengths would differ otherwise) ...
    for key in ("reward", "mean_tokens", "trained_tokens", "groups"):
        assert [row[key] for row in rows] == [row[key] for row in ref_rows], key
    # ... and the same weights, up to BLAS rounding (MKL sums are not bitwise reproducible across runs).
    got, want = load_file(out / "model.safetensors"), load_file(ref_out / "model.safetensors")
    start = load_file(Path(coin_ckpt) / "model.safetensors")
    for k in want:
        assert torch.allclose(got[k], want[k], atol=1e-5), k
    assert any(not torch.allclose(start[k], want[k], atol=1e-4) for k in want)  # training did move them


@pytest.mark.vllm
def test_rl_with_the_vllm_engine(tmp_path, pico_ckpt, tiny_yaml):
    """Rollouts through vLLM: the policy is saved and the engine reloaded every iteration."""
    pytest.importorskip("vllm")
    pytest.importorskip("accelerate")
    out = tmp_path / "out"
    env = {**ENV, "VLLM_TARGET_DEVICE": os.environ.get("VLLM_TARGET_DEVICE", "cpu")}
    r = subprocess.run(
        [sys.executable, "-m", "l2s.cli", "rl", "--init", str(pico_ckpt), "--out", str(out)]
        + ["--config", str(tiny_yaml), "--iterations", "3", "--engine", "vllm"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and sum(row["rollouts"] for row in rows) > 0
    assert json.loads((out / "l2s.json").read_text())["config"]["engine"] == "vllm"


def test_an_unfinished_run_with_other_settings_needs_force(tmp_path, pico_ckpt):
    from l2s.errors import UserError
    from l2s.rl.trainer import _resume_state, run_fingerprint

    work = tmp_path / "out.work"
    shutil.copytree(pico_ckpt, work / "checkpoint")
    cfg = RLConfig(init=str(pico_ckpt), out=str(tmp_path / "out"), tau=0.1)
    state = {"iteration": 3, "fingerprint": run_fingerprint(cfg, Path(pico_ckpt))}
    (work / "checkpoint" / "trainer_state.json").write_text(json.dumps(state))
    ckpt, got = _resume_state(cfg, Path(pico_ckpt), work)  # same settings: resume
    assert ckpt == work / "checkpoint" and got["iteration"] == 3
    assert _resume_state(cfg.model_copy(update={"iterations": 99}), Path(pico_ckpt), work)[
        1
    ]  # longer: resume
    other = cfg.model_copy(update={"tau": 0.2})
    with pytest.raises(UserError, match="other settings.*--force"):
        _resume_state(other, Path(pico_ckpt), work)
    assert _resume_state(other.model_copy(update={"force": True}), Path(pico_ckpt), work) == (None, {})


@pytest.mark.slow
def test_two_processes(tmp_path, pico_ckpt):
    """Data parallel on 2 CPU processes (gloo): each rolls out half the prompts; metrics cover both."""
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(TINY.replace("segment_tokens: 8", "segment_tokens: null"))
    out = tmp_path / "out"
    # `accelerate launch --cpu --num_processes 2` would start one process (accelerate 1.15 hands several
    # CPU processes to mpirun only): torchrun starts two, and ACCELERATE_USE_CPU makes accelerate see them.
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    r = subprocess.run(
        launch
        + ["-m", "l2s.cli", "rl", "--init", str(pico_ckpt), "--out", str(out), "--config", str(cfg)]
        + ["--iterations", "2"],
        capture_output=True,
        text=True,
        timeout=240,
        env={**ENV, "ACCELERATE_USE_CPU": "1"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((out / "l2s.json").read_text())["metrics"]["processes"] == 2
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # 4 prompts per iteration split over 2 processes, k = 2: 8 rollouts, 4 groups, gathered from both.
    assert [(row["rollouts"], row["groups"]) for row in rows] == [(8, 4), (8, 4)]
    from l2s.checkpoint import validate_checkpoint

    validate_checkpoint(out)
