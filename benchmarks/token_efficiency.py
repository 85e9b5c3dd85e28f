"""Token efficiency of the four long2short methods, as in Kimi k1.5's Figure 7, checked against its targets.

Runs `l2s quickstart` (reusing the embedded family and whatever an earlier run in --out finished), then
reads its report.json and prints, for every model, accuracy and mean completion tokens beside long's,
side by side from that one evaluation (same held-out problems, greedy), with a verdict per target:
  rl                  <= 50% of long's mean tokens at >= long's accuracy - 1 point
  shortest-rs, dpo    <= 75% of long's mean tokens at >= long's accuracy - 2 points
  merge               at least one alpha at <= 70% of long's mean tokens (the sweep is drawn as a curve)
  short               the floor, on the plot

    .venv/bin/python benchmarks/token_efficiency.py [--out runs/bench-quickstart] [--n 1000]

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench-quickstart", help="quickstart run folder (reused)")
    ap.add_argument("--n", type=int, default=1000, help="held-out problems")
    args = ap.parse_args()

    from l2s.quickstart import QuickstartConfig, run

    out, failed = run(QuickstartConfig(cache=str(EMBEDDED), out=args.out, n=args.n))
    report = json.loads((out / "report.json").read_text())
    models = report["models"]
    long = models["long"]
    print(f"\ntoken efficiency, {report['task']} (n = {report['n']} held-out problems, greedy)")
    print(f"{'model':14}{'accuracy':>10}{'vs long':>10}{'mean tok':>10}{'vs long':>9}")
    for name, m in sorted(models.items(), key=lambda kv: (-kv[1]["accuracy"], kv[1]["mean_tokens"])):
        delta = 100 * (m["accuracy"] - long["accuracy"])
        print(
            f"{name:14}{m['accuracy']:>10.1%}{delta:>+9.1f}p{m['mean_tokens']:>10.1f}"
            f"{m['token_ratio_vs_long']:>9.2f}"
        )
    print()
    for line in verdicts(models):
        print(line)
    for method, why in failed.items():
        print(f"{method} failed: {why}")


if __name__ == "__main__":
    main()
