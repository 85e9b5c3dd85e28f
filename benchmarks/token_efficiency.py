"""Token efficiency of the four long2short methods, as in Kimi k1.5's Figure 7, checked against its targets.

Runs `l2s quickstart` (reusing the embedded family and whatever an earlier run in --out finished), then
reads its report.json and prints, for every model, accuracy and mean completion tokens beside long's,
side by side from that one evaluation (same held-out problems, greedy), with a verdict per target:
  rl                  <= 50% of long's mean tokens at >= long's accuracy - 1 point
  shortest-rs, dpo    <= 75% of long's mean tokens at >= long's accuracy - 2 points
  merge               at least one alpha at <= 70% of long's mean tokens (the sweep is drawn as a curve)
  short               the floor, on the plot

    .venv/bin/python benchmarks/token_efficiency.py [--out runs/bench-quickstart] [--n 1000] [--seeds 3]

With `--seeds 3` it builds (or reuses) the family of each seed and runs the methods on it, then reports
each model's mean, min and max over the seeds and whether every target holds on the worst seed.

The family is read from ~/.cache/l2s/embedded (or $L2S_CACHE); without one, `l2s init` builds it first.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

EMBEDDED = Path(os.path.expanduser(os.environ.get("L2S_CACHE", "~/.cache/l2s/embedded")))

# method: (max share of long's mean tokens, max accuracy drop in points)
TARGETS: dict[str, tuple[float, float]] = {"rl": (0.50, 1.0), "shortest-rs": (0.75, 2.0), "dpo": (0.75, 2.0)}


def verdicts(models: dict[str, dict]) -> list[str]:
    """One line per target, from report.json's `models`.

    >>> long = {"accuracy": 0.9, "mean_tokens": 100.0}
    >>> print(verdicts({"long": long, "rl": {"accuracy": 0.895, "mean_tokens": 40.0}})[0])
    rl           40% of long's tokens, -0.5 points   target <= 50% at >= -1: met
    >>> print(verdicts({"long": long, "merge-0.5": {"accuracy": 0.5, "mean_tokens": 80.0}})[-1])
    merge        best alpha 0.5 at 80% of long's tokens (40.0 points below long)   target one alpha <= 70%: MISSED
    """
    long = models["long"]
    lines = []
    for method, (share, drop) in TARGETS.items():
        if method not in models:
            lines.append(f"{method:12} not in the report (the method failed or was not run)")
            continue
        m = models[method]
        ratio = m["mean_tokens"] / long["mean_tokens"]
        delta = 100 * (m["accuracy"] - long["accuracy"])
        ok = ratio <= share and delta >= -drop
        lines.append(
            f"{method:12} {ratio:.0%} of long's tokens, {delta:+.1f} points   "
            f"target <= {share:.0%} at >= -{drop:g}: {'met' if ok else 'MISSED'}"
        )
    merges = {k.removeprefix("merge-"): v for k, v in models.items() if k.startswith("merge-")}
    if merges:
        alpha, m = min(merges.items(), key=lambda kv: kv[1]["mean_tokens"])
        ratio = m["mean_tokens"] / long["mean_tokens"]
        below = 100 * (long["accuracy"] - m["accuracy"])
        lines.append(
            f"{'merge':12} best alpha {alpha} at {ratio:.0%} of long's tokens ({below:.1f} points below long)   "
            f"target one alpha <= 70%: {'met' if ratio <= 0.70 else 'MISSED'}"
        )
    return lines


def seed_cache(seed: int, base: Path = EMBEDDED) -> Path:
    """The family cache of `seed`: the usual one for seed 0, a sibling `<cache>-seed<N>` for the others.

    >>> str(seed_cache(0, Path("/c/embedded"))), str(seed_cache(2, Path("/c/embedded")))
    ('/c/embedded', '/c/embedded-seed2')
    """
    return base if seed == 0 else base.with_name(f"{base.name}-seed{seed}")


def spread(per_seed: list[dict[str, dict]]) -> list[str]:
    """Mean, min and max over seeds of each model's accuracy and token ratio vs long, one line per model
    present in every seed's report (budget points `NAME@B` left out), then each target's verdict per
    seed and on the worst seed.

    >>> long = {"accuracy": 1.0, "mean_tokens": 100.0}
    >>> a = {"long": long, "rl": {"accuracy": 0.995, "mean_tokens": 45.0}}
    >>> b = {"long": long, "rl": {"accuracy": 0.97, "mean_tokens": 40.0}}
    >>> for line in spread([a, b]): print(line)
    model          accuracy mean   min   max   tokens/long mean   min   max
    long                   100.0% 100.0% 100.0%              1.00  1.00  1.00
    rl                      98.2%  97.0%  99.5%              0.43  0.40  0.45
    rl           met on 1 of 2 seeds; worst seed: MISSED
    """
    names = [n for n in per_seed[0] if "@" not in n and all(n in m for m in per_seed)]
    lines = [f"{'model':14}{'accuracy mean   min   max':>26}{'tokens/long mean   min   max':>31}"]
    for name in names:
        acc = [m[name]["accuracy"] for m in per_seed]
        ratio = [m[name]["mean_tokens"] / m["long"]["mean_tokens"] for m in per_seed]
        lines.append(
            f"{name:14}{sum(acc) / len(acc):>15.1%}{min(acc):>7.1%}{max(acc):>7.1%}"
            f"{sum(ratio) / len(ratio):>18.2f}{min(ratio):>6.2f}{max(ratio):>6.2f}"
        )
    per_target: dict[str, list[bool]] = {}
    for models in per_seed:
        for line in verdicts(models):
            if "not in the report" in line:
                continue
            per_target.setdefault(line.split()[0], []).append(line.endswith(": met"))
    for method, oks in per_target.items():
        worst = "met" if all(oks) else "MISSED"
        lines.append(f"{method:12} met on {sum(oks)} of {len(oks)} seeds; worst seed: {worst}")
    return lines


def table(report: dict) -> list[str]:
    models = report["models"]
    long = models["long"]
    lines = [
        f"token efficiency, {report['task']} (n = {report['n']} held-out problems, greedy)",
        f"{'model':14}{'accuracy':>10}{'vs long':>10}{'mean tok':>10}{'vs long':>9}",
    ]
    whole = {n: m for n, m in models.items() if "@" not in n}  # budget points: see report.md / budget.py
    for name, m in sorted(whole.items(), key=lambda kv: (-kv[1]["accuracy"], kv[1]["mean_tokens"])):
        delta = 100 * (m["accuracy"] - long["accuracy"])
        lines.append(
            f"{name:14}{m['accuracy']:>10.1%}{delta:>+9.1f}p{m['mean_tokens']:>10.1f}"
            f"{m['mean_tokens'] / long['mean_tokens']:>9.2f}"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench-quickstart", help="quickstart run folder (reused)")
    ap.add_argument("--n", type=int, default=1000, help="held-out problems")
    ap.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="run the family and the methods for seeds 0..N-1 (family caches <cache>-seed<N>, runs "
        "OUT/seed<N>) and report the spread",
    )
    ap.add_argument("--methods", default=None, help="comma-separated methods (default: quickstart's)")
    args = ap.parse_args()

    from l2s.quickstart import QuickstartConfig, run

    extra = {"methods": args.methods.split(",")} if args.methods else {}
    per_seed, failures = [], []
    for seed in range(args.seeds):
        out = Path(args.out) if args.seeds == 1 else Path(args.out) / f"seed{seed}"
        cfg = QuickstartConfig(cache=str(seed_cache(seed)), out=str(out), n=args.n, seed=seed, **extra)
        out, failed = run(cfg)
        report = json.loads((out / "report.json").read_text())
        per_seed.append(report["models"])
        print(f"\nseed {seed}: " + "\n".join(table(report)) + "\n")
        for line in verdicts(report["models"]):
            print(line)
        failures += [f"seed {seed}: {method} failed: {why}" for method, why in failed.items()]
    if args.seeds > 1:
        print(f"\nover {args.seeds} seeds (mean, min, max):")
        for line in spread(per_seed):
            print(line)
    for line in failures:
        print(line)


if __name__ == "__main__":
    main()
