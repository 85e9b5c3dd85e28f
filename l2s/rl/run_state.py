"""The state of an RL run on disk: OUT.work/ beside the output (l2s.workdir's layout) holds the last
checkpoint, the metrics of every iteration (metrics.jsonl) and the training curve. A run resumes from it
only with the same settings and initial weights (its fingerprint, saved in the checkpoint's
trainer_state.json and compared by l2s.workdir's guard), and a checkpoint torn by a kill is skipped.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from l2s import workdir
from l2s.checkpoint import checkpoint_is_complete
from l2s.rl.config import RLConfig

STATE_FILE = "trainer_state.json"
CHECKPOINT_FILES = ((STATE_FILE,), ("config.json",), ("*.safetensors",))  # what a resume reads
METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "training_curve.png"


def work_dir(out: Path) -> Path:
    """OUT.work beside the output (l2s.workdir.work_dir)."""
    return workdir.work_dir(out)


def _find_checkpoint(work: Path) -> Path | None:
    """The checkpoint to resume from: checkpoint/, or after a kill between atomic_dir's two renames the
    previous one, renamed .checkpoint.old-PID. A folder that is not whole (a kill while atomic_dir
    removed an old one) is skipped with one line saying why, before anything loads or maps it."""
    olds = sorted(work.glob(".checkpoint.old-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for ckpt in [work / "checkpoint", *olds]:
        if not ckpt.is_dir():
            continue
        complete, why = checkpoint_is_complete(ckpt, CHECKPOINT_FILES)
        if complete:
            return ckpt
        if os.environ.get("RANK", "0") == "0":  # every rank decides alike; one reports
            print(f"l2s rl: skipping torn checkpoint {ckpt} ({why})", file=sys.stderr, flush=True)
    return None


def run_fingerprint(cfg: RLConfig, init: Path) -> dict[str, Any]:
    """What must match for a run to resume: the settings, and the initial weights
    (l2s.workdir.weights_fingerprint)."""
    return workdir.as_saved({"config": cfg.fingerprint(), "init_weights": workdir.weights_fingerprint(init)})


def _resume_state(cfg: RLConfig, init: Path, work: Path) -> tuple[Path | None, dict[str, Any]]:
    """(checkpoint, its trainer state) to resume from, or (None, {}) to start fresh: no whole checkpoint,
    or one of a run with other settings under --force (the caller then discards `work`). Without --force
    such a run is refused (l2s.workdir.check_same_settings)."""
    ckpt = _find_checkpoint(work)
    if ckpt is None:
        return None, {}
    state = json.loads((ckpt / STATE_FILE).read_text())
    saved, current = state.get("fingerprint") or {}, run_fingerprint(cfg, init)
    if cfg.force and workdir.differing(saved, current):
        return None, {}
    workdir.check_same_settings(work, saved, current)
    return ckpt, state


def _read_metrics(path: Path, before: int) -> list[dict[str, Any]]:
    """Metrics lines of iterations < `before` (a line cut by a kill is dropped)."""
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                row = json.loads(line)
                if row.get("iteration", before) < before:
                    rows.append(row)
    return rows


def _append_metrics(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def plot_curve(rows: list[dict[str, Any]], path: Path) -> None:
    """Reward, rollout accuracy and mean completion tokens per iteration (matplotlib, Agg); for
    budget-conditioned RL also the budget adherence (share of rollouts within their budget)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = [r["iteration"] for r in rows]
    panels = {
        "reward": "mean reward",
        "accuracy": "rollout accuracy",
        "mean_tokens": "mean completion tokens",
    }
    if any("adherence" in r for r in rows):
        panels["adherence"] = "budget adherence"
    fig, axes = plt.subplots(1, len(panels), figsize=(4.3 * len(panels), 3.6))
    for ax, (key, label) in zip(axes, panels.items(), strict=True):
        ax.plot(its, [r.get(key, math.nan) for r in rows], marker="o", ms=3)
        ax.set_xlabel("iteration")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
