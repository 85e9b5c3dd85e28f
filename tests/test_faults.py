"""Faults: `kill -9` in the middle of a long job, then the same command again.

What must hold: no half-written checkpoint is ever visible at --out; the rerun completes; training
resumes from its last complete Trainer checkpoint instead of starting over, and a checkpoint torn by
the kill is skipped, never loaded. Each test runs the real CLI in a subprocess on pico models and kills
it with SIGKILL at a point it waits for (a file or a log line appearing), so the kill lands mid-job
every time; one kills a run that saves after every step at varied delays into its saves, under CPU
load, again and again (benchmarks/kill_resume.py is its longer version, over SFT, DPO and RL). Every
way a file of a checkpoint can be cut short is tested on the validator in tests/test_checkpoint.py.

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


def kill_9_when(
    proc: subprocess.Popen, ready: Callable[[], bool], log: Path, timeout: float = 120, delay: float = 0
) -> None:
    """SIGKILL `proc` `delay` seconds after `ready()`; fail if it ends (or the wait times out) before that."""
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
    time.sleep(delay)
    if proc.poll() is not None:
        pytest.fail(f"the job ended (exit {proc.returncode}) before the kill:\n{log.read_text()[-3000:]}")
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
    """Steps of the Trainer checkpoints that were fully written (read-only: nothing is removed)."""
    from l2s.checkpoint import checkpoint_is_complete

    return sorted(
        int(p.name.split("-")[1]) for p in trainer_dir.glob("checkpoint-*") if checkpoint_is_complete(p)[0]
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


def _resume_and_finish(args, out: Path, resume_step: int, total_steps: int, folders=()) -> tuple[dict, str]:
    env = {**ENV, "TRANSFORMERS_VERBOSITY": "info"}  # the Trainer logs where it resumed
    with Watch(out, lambda o: (o / "l2s.json").is_file()) as watch:
        r = l2s_run(args, env=env)
    assert r.returncode == 0, f"checkpoints at the kill: {folders}\n{r.stderr[-3000:]}"
    assert watch.partial == []
    assert "Resuming training from checkpoint with epoch" in r.stderr, r.stderr[-3000:]
    assert f"global step {resume_step}\n" in r.stderr, f"did not resume from checkpoint-{resume_step}"
    prov = json.loads((out / "l2s.json").read_text())
    assert prov["metrics"]["train_steps"] == total_steps
    return prov, r.stderr


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
    prov, _ = _resume_and_finish(args, out, last, total_steps=30, folders=killed_sft["folders"])
    assert prov["method"] == "shortest-rs"
    validate_checkpoint(out)
    assert not (tmp_path / "rerun" / "out.work" / "trainer").exists()  # cleaned up once finished


def _cut(file: Path, keep: float) -> None:
    file.write_bytes(file.read_bytes()[: int(file.stat().st_size * keep)])


# How a kill -9 can leave checkpoint-N: mid-save (the Trainer writes weights, optimizer.pt, scheduler.pt,
# rng_state.pth, then trainer_state.json), or mid-rotation (old checkpoints are deleted file by file).
TEARS = {
    "half the weights, no trainer state": lambda c: (_cut(c / "model.safetensors", 0.5), (c / "trainer_state.json").unlink()),
    "optimizer cut short, trainer state present": lambda c: _cut(c / "optimizer.pt", 0.9),
    "trainer state empty (killed as it was written)": lambda c: _cut(c / "trainer_state.json", 0),
    "weights deleted by the rotation": lambda c: (c / "model.safetensors").unlink(),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("tear", TEARS)
def test_a_checkpoint_torn_by_the_kill_is_skipped_on_resume(killed_sft, tmp_path, tear):
    """The rerun must resume from the last *complete* checkpoint, saying in one line which one it skipped
    and why, rather than crash on the torn one (as every later rerun would too). The torn checkpoint
    is made as a kill leaves it: a newer checkpoint-N, whole but for the damage."""
    args, out, trainer = _rerun_elsewhere(killed_sft, tmp_path / "torn")
    last = killed_sft["steps"][-1]
    torn = trainer / f"checkpoint-{last + TRAIN['save_steps']}"
    shutil.copytree(trainer / f"checkpoint-{last}", torn)
    TEARS[tear](torn)
    _, stderr = _resume_and_finish(args, out, last, total_steps=30)
    skipped = [line for line in stderr.splitlines() if "skipping torn checkpoint" in line]
    assert len(skipped) == 1 and str(torn) in skipped[0], skipped
    assert skipped[0].endswith(f"; resuming from checkpoint-{last}")


SAVING = "Saving model checkpoint to"  # the Trainer's log line (at info) as a save begins


def _left_by_kill(trainer: Path) -> str:
    """What a kill left: the newest checkpoint whole, or torn and why (read-only)."""
    from l2s.checkpoint import checkpoint_is_complete

    folders = sorted(trainer.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if not folders:
        return "no checkpoint"
    complete, why = checkpoint_is_complete(folders[-1])
    return f"{folders[-1].name} {'whole' if complete else 'torn: ' + why}"


def _kill_during_saves(args: list, trainer: Path, root: Path, delays: list[float]) -> list[str]:
    """Start `args` and SIGKILL it `delay` seconds after it begins a save, for each delay in turn, each
    time rerunning the same command; then let the last rerun finish. A busy loop loads the CPU all
    along. Every rerun must resume from the newest complete checkpoint and get to a save of its own
    (no crash on resume); the last must exit 0. Returns what each kill left behind."""
    env = {**ENV, "TRANSFORMERS_VERBOSITY": "info", "PYTHONFAULTHANDLER": "1"}
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    left: list[str] = []
    try:
        for i, delay in enumerate([*delays, None]):
            expect = (_complete_checkpoints(trainer) or [None])[-1]
            log = root / f"run-{i}.log"
            proc = l2s_popen(args, log, env)
            if delay is None:
                assert proc.wait(timeout=300) == 0, f"kills left: {left}\n{log.read_text()[-3000:]}"
            else:
                kill_9_when(proc, lambda log=log: SAVING in log.read_text(), log, timeout=180, delay=delay)
            if expect is not None:
                assert f"global step {expect}\n" in log.read_text(), (
                    f"not resumed from checkpoint-{expect}: {left}"
                )
            if delay is not None:
                left.append(_left_by_kill(trainer))
    finally:
        busy.kill()
        busy.wait()
    return left


@pytest.mark.slow
def test_kill_9_at_varied_points_of_saves_under_load_then_resume(tmp_path, pico_ckpt):
    """A checkpoint after every step, so much of the run is spent saving: kills at varied delays after
    a save begins can land in the weights, the optimizer, scheduler and rng state, the trainer state, the
    rotation that deletes old checkpoints, or between saves. No rerun may crash; the last finishes the
    whole run. (benchmarks/kill_resume.py does this 50 times over SFT, DPO and RL.)"""
    from test_methods_shortest_rs import make_records, write_samples

    from l2s.checkpoint import validate_checkpoint

    samples = write_samples(tmp_path / "samples.jsonl", make_records())
    config = _train_yaml(tmp_path / "srs.yaml", samples, save_steps=1, epochs=10)  # 30 steps, 30 saves
    out = tmp_path / "out"
    args = ["derive", "--method", "shortest-rs", "--long", pico_ckpt, "--config", config, "--out", out]
    left = _kill_during_saves(args, tmp_path / "out.work" / "trainer", tmp_path, [0.0, 0.04, 0.12])
    assert len(left) == 3
    validate_checkpoint(out)
    assert json.loads((out / "l2s.json").read_text())["metrics"]["train_steps"] == 30, left


@pytest.mark.slow
def test_kill_9_during_dpo_resumes_from_the_last_checkpoint(tmp_path, pico_ckpt):
    # 15 pairs (tests/test_methods_dpo.py): 8 steps per epoch at batch size 2, 16 steps in 2 epochs.
    killed = _killed_training(tmp_path / "dpo", pico_ckpt, "dpo", epochs=2, beta=0.1)
    last = killed["steps"][-1]
    assert 4 <= last < 16, killed
    prov, _ = _resume_and_finish(
        killed["args"], killed["out"], last, total_steps=16, folders=killed["folders"]
    )
    assert prov["method"] == "dpo" and prov["metrics"]["pairs"] == 15


# ---- l2s rl ---------------------------------------------------------------------------------------------


def test_rl_resume_skips_a_previous_checkpoint_torn_while_it_was_removed(tmp_path, pico_ckpt, capsys):
    """`l2s rl` saves through atomic_dir: checkpoint/ is renamed .checkpoint.old-PID, the new one renamed
    in, the old one deleted. Kills there can leave only old ones, one of them half deleted (and newer by
    mtime, as deleting touches it): resume takes the whole one and names the other in one line."""
    from l2s.rl.run_state import _find_checkpoint

    work = tmp_path / "out.work"
    whole, torn = work / ".checkpoint.old-111", work / ".checkpoint.old-222"
    for folder, iteration in ((whole, 4), (torn, 2)):
        shutil.copytree(pico_ckpt, folder)
        (folder / "trainer_state.json").write_text(json.dumps({"iteration": iteration}))
    (torn / "model.safetensors").unlink()
    os.utime(whole, (time.time() - 60, time.time() - 60))
    assert _find_checkpoint(work) == whole
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and f"skipping torn checkpoint {torn} (no *.safetensors)" in lines[0], lines

    shutil.copytree(pico_ckpt, work / "checkpoint")
    (work / "checkpoint" / "trainer_state.json").write_text(json.dumps({"iteration": 6}))
    assert _find_checkpoint(work) == work / "checkpoint" and capsys.readouterr().err == ""
    (work / "checkpoint" / "trainer_state.json").write_text("")
    assert _find_checkpoint(work) == whole
