"""RL iteration wall time with and without partial rollouts (Kimi k1.5 §2.6.2), side by side in one run.

Both arms run the real RL stage (`l2s.rl.trainer.run_rl`: hf-engine rollouts, rewards, reference
snapshot, gradient steps) with identical settings except `segment_tokens`:
  full      every rollout runs to its end inside its iteration (segment_tokens: null)
  partial   each trajectory gets at most `--segment` tokens per iteration; longer ones wait in the
            replay buffer and continue in the next iteration
Workload (long-tailed lengths): by default a pico policy with a fixed next-token distribution that
stops with probability 1/--mean-tokens per token, so lengths are geometric (capped at --max-tokens):
among 64 rollouts the longest is typically ~5x the mean, and it is what holds up an iteration
without partial rollouts. The policy stays fixed (rewards are 0, so the
surrogate's gradient is 0), so both arms face the same length distribution in every iteration. With
`--model CKPT` the workload is that checkpoint on the arith task instead (its own lengths).

Reported per arm, after `--warmup` iterations (the partial arm's buffer needs a few to fill): mean
iteration wall time, tokens learned per iteration (completion tokens in the loss), tokens learned per
second. Target: full / partial iteration time >= 1.5 at about equal tokens learned per iteration.

    .venv/bin/python benchmarks/partial_rollouts.py [--iterations 14] [--segment 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def geometric_policy(root: Path, mean_tokens: int) -> Path:
    """A pico Llama with a fixed next-token distribution: uniform over the ten digits, EOS with
    probability 1/mean_tokens at every step, so rollout lengths are geometric with that mean.

    Made by hand from a random pico model: residual dimension 0 is pinned to a large constant (every
    embedding holds it and no layer writes to it), the final norm keeps only that dimension, so the
    LM head sees the same hidden state at every position and its column 0 acts as a logit bias.
    Digits are single tokens that never merge, so a partial rollout's text re-encodes to exactly the
    tokens sampled, as with real reasoning text.
    """
    import math
    import random

    import torch
    from transformers import AutoModelForCausalLM

    from l2s.embedded.model import save_random_model
    from l2s.embedded.tokenizer import build_tokenizer
    from l2s.tasks.arith import ArithTask, long_trace

    rng = random.Random(0)
    probs = ArithTask().problems("train", 300)
    tok = build_tokenizer([p.prompt for p in probs] + [long_trace(p, rng) for p in probs])
    path = save_random_model(root / "geometric", tok, size="pico")
    model = AutoModelForCausalLM.from_pretrained(path)
    digits = [tok.convert_tokens_to_ids(str(d)) for d in range(10)]
    bias = torch.full((len(tok),), -1e4)
    bias[digits] = 0.0
    bias[tok.eos_token_id] = math.log(len(digits) / (mean_tokens - 1))  # P(EOS) = 1/mean_tokens
    with torch.no_grad():
        dim = model.config.hidden_size
        model.model.embed_tokens.weight[:, 0] = 1e3
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[0, :] = 0.0
            layer.mlp.down_proj.weight[0, :] = 0.0
        model.model.norm.weight.zero_()
        model.model.norm.weight[0] = 1.0  # normed hidden = (≈sqrt(dim), 0, …, 0) at every position
        model.lm_head.weight.zero_()
        model.lm_head.weight[:, 0] = bias / math.sqrt(dim)
    model.save_pretrained(path, safe_serialization=True)
    return path


def run_arm(init: Path, root: Path, name: str, args, segment: int | None) -> list[dict]:
    from l2s.rl.config import RLConfig
    from l2s.rl.trainer import run_rl

    cfg = RLConfig(
        init=str(init),
        out=str(root / name),
        task="arith",
        train_problems=2000,
        iterations=args.iterations,
        prompts_per_iteration=args.prompts,
        k=args.k,
        max_tokens=args.max_tokens,
        segment_tokens=segment,
        rollout_batch_size=1024,
        sampling="uniform",
        learning_rate=1e-6,
        save_every=10_000,
        seed=args.seed,
        threads=args.threads,
        repeat_detection=False,
    )
    t = time.perf_counter()
    out = run_rl(cfg)
    print(f"[{name}] done in {time.perf_counter() - t:.0f}s", flush=True)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def summarize(rows: list[dict], warmup: int) -> dict[str, float]:
    steady = rows[warmup:]
    secs = [r["iteration_s"] for r in steady]
    learned = [r["trained_tokens"] for r in steady]
    return {
        "iterations": len(steady),
        "iteration_s": statistics.mean(secs),
        "rollout_s": statistics.mean(r["rollout_s"] for r in steady),
        "tokens_learned_per_iteration": statistics.mean(learned),
        "tokens_learned_per_s": sum(learned) / sum(secs),
        "groups_per_iteration": statistics.mean(r["groups"] for r in steady),
        "mean_rollout_tokens": statistics.mean(r["mean_tokens"] for r in steady if r["groups"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model", default=None, help="checkpoint to roll out (default: the geometric pico policy)"
    )
    ap.add_argument("--iterations", type=int, default=14)
    ap.add_argument("--warmup", type=int, default=3, help="iterations left out of the averages")
    ap.add_argument("--prompts", type=int, default=8, help="new prompts per iteration")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--segment", type=int, default=64, help="partial rollouts: tokens per iteration")
    ap.add_argument("--mean-tokens", type=int, default=64, help="geometric policy: mean rollout length")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (1 on a busy CPU)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="l2s-bench-partial-") as tmp:
        root = Path(tmp)
        init = Path(args.model).expanduser() if args.model else geometric_policy(root, args.mean_tokens)
        load = os.getloadavg()[0]
        full = summarize(run_arm(init, root, "full", args, None), args.warmup)
        partial = summarize(run_arm(init, root, "partial", args, args.segment), args.warmup)
        load = (load + os.getloadavg()[0]) / 2

    workload = args.model or f"geometric pico policy, mean {args.mean_tokens} tokens, cap {args.max_tokens}"
    print(f"\nworkload: {workload}; {args.prompts} prompts x k={args.k} per iteration; load avg ~{load:.1f}")
    print(f"{'':32}{'full rollouts':>16}{'partial (' + str(args.segment) + ')':>16}")
    for key, fmt in (
        ("iteration_s", "{:.2f}"),
        ("rollout_s", "{:.2f}"),
        ("tokens_learned_per_iteration", "{:.0f}"),
        ("tokens_learned_per_s", "{:.0f}"),
        ("groups_per_iteration", "{:.1f}"),
        ("mean_rollout_tokens", "{:.1f}"),
        ("iterations", "{:d}"),
    ):
        print(f"{key:32}{fmt.format(full[key]):>16}{fmt.format(partial[key]):>16}")
    speed = full["iteration_s"] / partial["iteration_s"]
    through = partial["tokens_learned_per_s"] / full["tokens_learned_per_s"]
    print(f"\niteration speed-up (full / partial): {speed:.2f}x   target >= 1.5x")
    print(f"tokens learned per second (partial / full): {through:.2f}x")


if __name__ == "__main__":
    main()
