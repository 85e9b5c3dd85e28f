"""Measure the embedded workload's trade-off: short vs long-sft on held-out arith problems.

    .venv/bin/python benchmarks/workload.py                      # the family in ~/.cache/l2s/embedded
    .venv/bin/python benchmarks/workload.py --build /tmp/fam     # build it from scratch first, timed

Prints, side by side from one run:
- greedy accuracy and mean completion tokens of each model on --n held-out problems;
- short's mean tokens as a share of long-sft's;
- long-sft's length variation: 8 samples per prompt at T=1 on --variation-prompts prompts, the mean
  over prompts of max/min completion tokens;
- with --build: the wall time of `l2s init` from scratch, and the load average around it (the machine
  is shared, so the time depends on what else runs).
Targets: accuracy gap >= 15 points, token share <= 30%, variation >= 1.5, build <= 8 min.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def measure(
    path: Path, problems, *, temperature: float, n: int, batch_size: int, max_tokens: int, seed: int = 0
):
    """Generate with the hf engine; return per-prompt lists of (completion tokens, correct)."""
    from l2s.engines import get_engine
    from l2s.engines.base import SamplingParams
    from l2s.grading import grade

    engine = get_engine("hf", str(path), batch_size=batch_size)
    prompts = [[{"role": "user", "content": p.prompt}] for p in problems]
    params = SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens, seed=seed)
    gens = engine.generate(prompts, params)
    out = []
    for p, samples in zip(problems, gens, strict=True):
        ok = grade([g.text for g in samples], [p.answer] * len(samples))
        out.append([(g.completion_tokens, c) for g, c in zip(samples, ok, strict=True)])
    engine.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/l2s/embedded"))
    ap.add_argument("--build", default=None, help="build the family from scratch into this folder first")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--n", type=int, default=1000, help="held-out problems for greedy accuracy/tokens")
    ap.add_argument("--variation-prompts", type=int, default=200, help="prompts sampled 8x at T=1")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--max-tokens", type=int, default=384)
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    args = ap.parse_args()

    from l2s.tasks.arith import ArithTask

    results: dict = {}
    cache = Path(args.cache).expanduser()
    if args.build:
        from l2s.embedded.build import init_family

        cache = Path(args.build).expanduser()
        before = _load()
        start = time.time()
        init_family(cache, preset=args.preset)
        results["init_seconds"] = round(time.time() - start, 1)
        results["init_load"] = {"before": before, "after": _load()}

    problems = ArithTask(seed=0).problems("test", args.n)
    for name in ("short", "long-sft"):
        start = time.time()
        rows = measure(
            cache / name,
            problems,
            temperature=0.0,
            n=1,
            batch_size=args.batch_size,
            max_tokens=args.max_tokens,
        )
        results[name] = {
            "accuracy": round(100 * statistics.mean(r[0][1] for r in rows), 1),
            "mean_tokens": round(statistics.mean(r[0][0] for r in rows), 1),
            "accuracy_by_difficulty": {
                d: round(
                    100
                    * statistics.mean(
                        r[0][1] for r, p in zip(rows, problems, strict=True) if p.difficulty == d
                    ),
                    1,
                )
                for d in sorted({p.difficulty for p in problems})
            },
            "eval_seconds": round(time.time() - start, 1),
        }
    short, long_ = results["short"], results["long-sft"]
    results["accuracy_gap_points"] = round(long_["accuracy"] - short["accuracy"], 1)
    results["short_token_share"] = round(short["mean_tokens"] / long_["mean_tokens"], 3)

    start = time.time()
    sampled = measure(
        cache / "long-sft",
        problems[: args.variation_prompts],
        temperature=1.0,
        n=args.samples,
        batch_size=args.batch_size,
        max_tokens=args.max_tokens,
    )
    ratios = [max(t for t, _ in s) / max(1, min(t for t, _ in s)) for s in sampled]
    results["long_sft_T1"] = {
        "prompts": len(sampled),
        "samples_per_prompt": args.samples,
        "mean_max_over_min_tokens": round(statistics.mean(ratios), 3),
        "accuracy": round(100 * statistics.mean(c for s in sampled for _, c in s), 1),
        "mean_tokens": round(statistics.mean(t for s in sampled for t, _ in s), 1),
        "seconds": round(time.time() - start, 1),
    }
    results["load"] = _load()

    print(f"\nembedded workload, {args.n} held-out arith problems (greedy)")
    print(f"{'model':10s} {'accuracy':>9s} {'mean tokens':>12s}")
    for name in ("short", "long-sft"):
        print(f"{name:10s} {results[name]['accuracy']:8.1f}% {results[name]['mean_tokens']:12.1f}")
    print(f"long-sft - short accuracy: {results['accuracy_gap_points']:+.1f} points (target >= 15)")
    print(f"short tokens / long-sft tokens: {results['short_token_share']:.1%} (target <= 30%)")
    v = results["long_sft_T1"]
    print(
        f"long-sft at T=1, {v['samples_per_prompt']} samples x {v['prompts']} prompts: "
        f"mean max/min tokens {v['mean_max_over_min_tokens']:.2f} (target >= 1.5), "
        f"accuracy {v['accuracy']:.1f}%, mean tokens {v['mean_tokens']:.1f}"
    )
    if "init_seconds" in results:
        print(
            f"l2s init from scratch: {results['init_seconds']:.0f}s (target <= 480s); {results['init_load']}"
        )
    print(results["load"])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
