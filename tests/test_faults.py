"""Faults: `kill -9` in the middle of a long job, then the same command again.

What must hold: no half-written checkpoint is ever visible at --out; the rerun completes; training
resumes from its last Trainer checkpoint instead of starting over. Each test runs the real CLI in a
subprocess on pico models and kills it with SIGKILL at a point it waits for (a file appearing), so the
kill lands mid-job every time.

Covered elsewhere, not repeated here:
- `l2s sample`: tests/test_sampling.py::test_kill_9_then_resume_equals_an_uninterrupted_run (the rerun's
  file is byte-identical to an uninterrupted run's);
- `l2s rl`: tests/test_rl_trainer.py::test_resume_after_kill_9_reproduces_the_uninterrupted_run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ENV = {**os.environ, "TQDM_DISABLE": "1", "TOKENIZERS_PARALLELISM": "false"}


def l2s_popen(args, log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "l2s.cli", *map(str, args)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env or ENV,
    )


def l2s_run(args, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "l2s.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env or ENV,
        timeout=timeout,
    )


def kill_9_when(proc: subprocess.Popen, ready: Callable[[], bool], log: Path, timeout: float = 120) -> None:
    """SIGKILL `proc` as soon as `ready()`; fail if it ends (or the wait times out) before that."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(
                f"the job ended (exit {proc.returncode}) before the kill point:\n{log.read_text()[-3000:]}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the kill point never came:\n{log.read_text()[-3000:]}")
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


class Watch:
    """Polls `out` in a thread while a job runs: every time it exists it must be a whole checkpoint."""

    def __init__(self, out: Path, complete: Callable[[Path], bool]) -> None:
        self.out, self.complete, self.seen, self.partial = out, complete, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.out.exists():
                self.seen += 1
                if not self.complete(self.out):
                    self.partial.append(sorted(p.name for p in self.out.iterdir()))
            time.sleep(0.002)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# ---- merge ----------------------------------------------------------------------------------------------

ALPHAS = (0.2, 0.5, 0.8)


@pytest.fixture(scope="module")
def parents(tmp_path_factory, pico_tokenizer):
    """Two random Llamas sharing a tokenizer, a little bigger than pico (~1.5M parameters)."""
    from l2s.embedded.model import save_random_model

    size = dict(
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=8,
    )
    root = tmp_path_factory.mktemp("parents")
    return (
        save_random_model(root / "long", pico_tokenizer, size, seed=1),
        save_random_model(root / "short", pico_tokenizer, size, seed=2),
    )


def _whole_sweep(out: Path) -> bool:
    return all((out / f"alpha-{a:.2f}" / "l2s.json").is_file() for a in ALPHAS)


@pytest.mark.slow
def test_kill_9_during_a_merge_sweep_leaves_nothing_at_out_and_the_rerun_completes(parents, tmp_path):
    """Killed after the first alpha of the sweep is merged into the temp folder, before the rename."""
    import torch
    from safetensors.torch import load_file

    from l2s.checkpoint import validate_checkpoint

    long, short = parents
    out = tmp_path / "merged"
    args = ["derive", "--method", "merge", "--long", long, "--short", short, "--out", out]
    args += ["--sweep", ",".join(map(str, ALPHAS))]
    log = tmp_path / "killed.log"

    def first_alpha_merged() -> bool:
        return any((t / "alpha-0.20" / "l2s.json").is_file() for t in tmp_path.glob(".merged.tmp-*"))

    with Watch(out, _whole_sweep) as watch:
        kill_9_when(l2s_popen(args, log), first_alpha_merged, log)
    assert watch.seen == 0 and not out.exists(), "a killed merge must leave nothing at --out"

    with Watch(out, _whole_sweep) as watch:
        r = l2s_run(args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert watch.seen > 0 and watch.partial == [], f"half-written output seen at --out: {watch.partial}"
    a, b = load_file(long / "model.safetensors"), load_file(short / "model.safetensors")
    for alpha in ALPHAS:
        folder = validate_checkpoint(out / f"alpha-{alpha:.2f}")
        merged = load_file(folder / "model.safetensors")
        name = "model.layers.0.mlp.up_proj.weight"
        torch.testing.assert_close(merged[name], alpha * a[name] + (1 - alpha) * b[name])
        assert json.loads((folder / "l2s.json").read_text())["config"]["alpha"] == alpha


# ---- shortest-rs SFT and DPO ----------------------------------------------------------------------------

# A checkpoint every 4 steps: after the first one, 4 quick steps pass before the next save begins, so
# the kill usually lands between saves (a kill during a save is the torn-checkpoint test below).
TRAIN = dict(save_steps=4, batch_size=2, max_length=128, learning_rate=1e-3)


def _train_yaml(path: Path, samples: Path, **kw) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"samples": str(samples), **TRAIN, **kw}))
    return path


def _complete_checkpoints(trainer_dir: Path) -> list[int]:
    """Steps of the Trainer checkpoints that were fully written (trainer_state.json is written last)."""
    return sorted(
        int(p.name.split("-")[1])
        for p in trainer_dir.glob("checkpoint-*")
        if (p / "trainer_state.json").is_file()
    )


def _killed_training(root: Path, ckpt: Path, method: str, **kw) -> dict:
    """Run `l2s derive --method METHOD` on canned samples and kill -9 it after its first Trainer checkpoint."""
    from test_methods_shortest_rs import make_records, write_samples

    root.mkdir()
    samples = write_samples(root / "samples.jsonl", make_records())
    config = _train_yaml(root / f"{method}.yaml", samples, **kw)
    out = root / "out"
    args = ["derive", "--method", method, "--long", ckpt, "--config", config, "--out", out]
    trainer = root / "out.work" / "trainer"
    log = root / "killed.log"
    with Watch(out, lambda o: (o / "l2s.json").is_file()) as watch:
        kill_9_when(l2s_popen(args, log), lambda: bool(_complete_checkpoints(trainer)), log)
    assert watch.seen == 0 and not out.exists(), "a killed training run must leave nothing at --out"
    folders = sorted(p.name for p in trainer.glob("checkpoint-*"))
    return {
        "args": args,
        "out": out,
        "work": root / "out.work",
        "steps": _complete_checkpoints(trainer),
        "folders": folders,
    }


def _rerun_elsewhere(killed: dict, dest: Path) -> tuple[list, Path, Path]:
    """The killed run's work folder copied beside a fresh --out (its settings do not name --out)."""
    dest.mkdir()
    shutil.copytree(killed["work"], dest / "out.work")
    args = [dest / "out" if a == killed["out"] else a for a in killed["args"]]
    return args, dest / "out", dest / "out.work" / "trainer"


def _resume_and_finish(args, out: Path, resume_step: int, total_steps: int, folders=()) -> dict:
    env = {**ENV, "TRANSFORMERS_VERBOSITY": "info"}  # the Trainer logs where it resumed
    with Watch(out, lambda o: (o / "l2s.json").is_file()) as watch:
        r = l2s_run(args, env=env)
    assert r.returncode == 0, f"checkpoints at the kill: {folders}\n{r.stderr[-3000:]}"
    assert watch.partial == []
    assert "Resuming training from checkpoint with epoch" in r.stderr, r.stderr[-3000:]
    assert f"global step {resume_step}\n" in r.stderr, f"did not resume from checkpoint-{resume_step}"
    prov = json.loads((out / "l2s.json").read_text())
    assert prov["metrics"]["train_steps"] == total_steps
    return prov


@pytest.fixture(scope="module")
def killed_sft(tmp_path_factory, pico_ckpt):
    # 5 prompts have a shortest correct answer: 3 steps per epoch at batch size 2, 30 steps in all.
    return _killed_training(tmp_path_factory.mktemp("sft") / "run", pico_ckpt, "shortest-rs", epochs=10)


@pytest.mark.slow
def test_kill_9_during_shortest_rs_sft_resumes_from_the_last_checkpoint(killed_sft, tmp_path):
    from l2s.checkpoint import validate_checkpoint

    args, out, _ = _rerun_elsewhere(killed_sft, tmp_path / "rerun")
    last = killed_sft["steps"][-1]
    assert 4 <= last < 30, killed_sft
    prov = _resume_and_finish(args, out, last, total_steps=30, folders=killed_sft["folders"])
    assert prov["method"] == "shortest-rs"
    validate_checkpoint(out)
    assert not (tmp_path / "rerun" / "out.work" / "trainer").exists()  # cleaned up once finished


@pytest.mark.slow
def test_a_checkpoint_torn_by_the_kill_is_skipped_on_resume(killed_sft, tmp_path):
    """kill -9 can land while the Trainer writes checkpoint-N (weights first, trainer_state.json last).

    The rerun must resume from the last *complete* checkpoint rather than crash on the torn one, as
    every later rerun would too. Made here as a kill mid-save leaves it: a newer checkpoint folder
    with half its weights and no trainer_state.json.
    """
    args, out, trainer = _rerun_elsewhere(killed_sft, tmp_path / "torn")
    last = killed_sft["steps"][-1]
    torn = trainer / f"checkpoint-{last + TRAIN['save_steps']}"
    shutil.copytree(trainer / f"checkpoint-{last}", torn)
    (torn / "trainer_state.json").unlink()
    weights = torn / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    _resume_and_finish(args, out, last, total_steps=30)


@pytest.mark.slow
def test_kill_9_during_dpo_resumes_from_the_last_checkpoint(tmp_path, pico_ckpt):
    # 15 pairs (tests/test_methods_dpo.py): 8 steps per epoch at batch size 2, 16 steps in 2 epochs.
    killed = _killed_training(tmp_path / "dpo", pico_ckpt, "dpo", epochs=2, beta=0.1)
    last = killed["steps"][-1]
    assert 4 <= last < 16, killed
    prov = _resume_and_finish(killed["args"], killed["out"], last, total_steps=16, folders=killed["folders"])
    assert prov["method"] == "dpo" and prov["metrics"]["pairs"] == 15
