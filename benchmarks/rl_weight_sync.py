"""RL on vLLM: the policy's weights loaded into the running engine in memory vs saved and reloaded, side by side.

Both arms run the real RL stage (`l2s.rl.trainer.run_rl`, engine=vllm: rollouts, rewards, reference
snapshot, gradient steps) with identical settings on a random ~100M-parameter Llama (head size 64)
built on the fly; only the weight sync differs:
  in-memory   one vLLM engine for the whole run; before each iteration's rollouts the trainer's weights
              go into it through vLLM's `reload_weights` (l2s.rl.weight_sync, the default)
  reload      the fallback: the policy is saved as a checkpoint and a new engine is built from it
Kimi's length reward is on, so rewards differ within a group and every iteration moves the weights.

Reported per arm, after `--warmup` iterations (the in-memory arm starts its engine in its first one):
weight-sync seconds per iteration (`PolicySync.refresh`), rollout and training seconds, and whole-iteration
seconds. Targets: sync ratio (reload / in-memory) >= 10 and iteration ratio >= 2.

Runs in the vLLM venv (which also needs accelerate); from the main venv it re-runs itself there:
    .venv-vllm/bin/python benchmarks/rl_weight_sync.py [--iterations 4] [--prompts 4] [--k 2] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# ~113M parameters besides the small embedded vocabulary: 12 x (4 x 768^2 + 3 x 768 x 3072); head size 64.
SIZE = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    num_key_value_heads=12,
)


def random_model(root: Path) -> Path:
    """A random Llama of SIZE with the embedded tokenizer trained on arith prompts and long traces."""
    import random

    from l2s.embedded.model import save_random_model
    from l2s.embedded.tokenizer import build_tokenizer
    from l2s.tasks.arith import ArithTask, long_trace

    rng = random.Random(0)
    problems = ArithTask().problems("train", 200)
    corpus = [p.prompt for p in problems] + [long_trace(p, rng) for p in problems]
    return save_random_model(root / "random-113m", build_tokenizer(corpus), size=SIZE)


def run_arm(init: Path, root: Path, name: str, args) -> tuple[list[dict], list[float]]:
    """One RL run with engine=vllm; returns its metrics rows and the sync seconds of each iteration."""
    from l2s.rl import weight_sync
    from l2s.rl.config import RLConfig
    from l2s.rl.trainer import run_rl

    syncs: list[float] = []

    class Timed(weight_sync.PolicySync):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.in_memory = name == "in-memory"  # reload: the fallback path from the first iteration

        def refresh(self, accelerator, model):
            engine = super().refresh(accelerator, model)
            syncs.append(self.seconds)
            return engine

    weight_sync.PolicySync = Timed  # the trainer looks it up at its first refresh
    cfg = RLConfig(
        init=str(init),
        out=str(root / name),
        task="arith",
        train_problems=500,
        iterations=args.iterations,
        prompts_per_iteration=args.prompts,
        k=args.k,
        max_tokens=args.max_tokens,
        minibatch_prompts=args.prompts,
        engine="vllm",
        sampling="uniform",
        length_penalty_weight=1.0,
        learning_rate=1e-5,
        save_every=10_000,
        seed=args.seed,
        threads=args.threads,
    )
    t = time.perf_counter()
    out = run_rl(cfg)
    print(f"[{name}] done in {time.perf_counter() - t:.0f}s", file=sys.stderr, flush=True)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()], syncs


def summarize(rows: list[dict], syncs: list[float], warmup: int) -> dict[str, float]:
    rows, syncs = rows[warmup:], syncs[warmup:]
    sync = statistics.mean(syncs)
    rollout = statistics.mean(r["rollout_s"] for r in rows)  # the trainer's rollout time includes the sync
    return {
        "weight_sync_s": sync,
        "rollout_s": rollout - sync,
        "train_s": statistics.mean(r["train_s"] for r in rows),
        "iteration_s": statistics.mean(r["iteration_s"] for r in rows),
        "iterations": len(rows),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1, help="iterations left out of the averages")
    ap.add_argument("--prompts", type=int, default=4, help="new prompts per iteration")
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the trainer")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.iterations <= args.warmup:
        ap.error("--iterations must be above --warmup")

    if importlib.util.find_spec("vllm") is None:
        python = ROOT / ".venv-vllm" / "bin" / "python"
        if not python.is_file():
            sys.exit("rl_weight_sync: needs vLLM; build its venv with `make setup-vllm`")
        env = {**os.environ, "VLLM_TARGET_DEVICE": os.environ.get("VLLM_TARGET_DEVICE", "cpu")}
        sys.exit(subprocess.call([str(python), *sys.argv], env=env))
    if importlib.util.find_spec("accelerate") is None:
        sys.exit("rl_weight_sync: the RL stage needs accelerate in the vLLM venv")
    if not _has_cuda():
        os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")

    with tempfile.TemporaryDirectory(prefix="l2s-bench-sync-") as tmp:
        root = Path(tmp)
        init = random_model(root)
        params = _parameters(init)
        load = os.getloadavg()[0]
        arms = {
            name: summarize(*run_arm(init, root, name, args), args.warmup) for name in ("in-memory", "reload")
        }
        load = (load + os.getloadavg()[0]) / 2

    mem, rel = arms["in-memory"], arms["reload"]
    print(
        f"\nmodel: random Llama, {params / 1e6:.1f}M parameters (head size 64), fp32; "
        f"{args.prompts} prompts x k={args.k}, max {args.max_tokens} tokens per iteration; load avg ~{load:.1f}"
    )
    print(f"{'':24}{'in-memory':>12}{'reload':>12}")
    for key in ("weight_sync_s", "rollout_s", "train_s", "iteration_s"):
        print(f"{key:24}{mem[key]:>12.2f}{rel[key]:>12.2f}")
    print(f"{'iterations averaged':24}{mem['iterations']:>12d}{rel['iterations']:>12d}")
    sync_x = rel["weight_sync_s"] / mem["weight_sync_s"]
    iter_x = rel["iteration_s"] / mem["iteration_s"]
    print(
        f"weight sync: in-memory {mem['weight_sync_s']:.2f} s vs reload {rel['weight_sync_s']:.2f} s per iteration "
        f"= sync {sync_x:.1f}x; iteration {iter_x:.2f}x"
    )


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _parameters(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        return sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())  # noqa: SIM118


if __name__ == "__main__":
    main()
