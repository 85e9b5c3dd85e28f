"""Budget-conditioned RL (`l2s derive --method budget`, L1) against cutting long's thinking, checked against
its targets.

For each quickstart run folder (one per seed) it evaluates, with `l2s.evaluate`, the run's long and budget
models (paths from the run's report.json) on the same `--n` held-out problems (greedy): long
unconstrained, and both at each of the run's thinking budgets B, where `long@B` only has `</think>`
forced after B reasoning tokens and `budget@B` is also told "Think for at most B tokens." in its prompt,
as in its training; and `budget@Bfree` (`l2s eval --uncapped-budgets`), told B but with nothing forced.
Then, per seed and as mean and worst over the seeds, with a verdict per target:

  gain       budget@B minus long@B accuracy at the two smallest budgets       >= +10 points
  adherence  budget@Bfree's mean reasoning tokens / B, worst budget           <= 1.15x
  top        budget@Bmax minus long (unconstrained) accuracy                  within 2 points (>= -2)

Adherence is measured on the points where the budget is told, not forced: with the forced `</think>`
every point would stay within its budget whatever the model learned, so only `budget@Bfree` shows how
well the model keeps to its budget by itself. The accuracy targets use the forced points, as the
model is served. The last line sums it up.

    .venv/bin/python benchmarks/budget.py --runs runs/seeds/seed0 runs/seeds/seed1 runs/seeds/seed2

Evaluations go to OUT/<run folder name> (default runs/bench-budget/...) and resume, so a second call
only re-reads them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from l2s.evaluate import UNCAPPED

# measure: (target, True when higher is better); measures come from `measures`.
TARGETS: dict[str, tuple[float, bool]] = {
    "gain-1": (10.0, True),  # points, smallest budget
    "gain-2": (10.0, True),  # points, second smallest budget
    "adherence": (1.15, False),  # mean reasoning tokens / B, worst budget
    "top": (-2.0, True),  # points, budget@Bmax vs long unconstrained
}
UNITS = {"gain-1": "points", "gain-2": "points", "adherence": "x B", "top": "points"}
NOTES = {"adherence": "budget told, not forced"}


def run_budgets(models: dict[str, dict]) -> list[int]:
    """The thinking budgets a run's report.json measured points at.

    >>> run_budgets({"long": {}, "long@16": {"thinking_budget": 16}, "rl@8": {"thinking_budget": 8}})
    [8, 16]
    """
    return sorted({m["thinking_budget"] for m in models.values() if m.get("thinking_budget") is not None})


def measures(models: dict[str, dict], budgets: list[int]) -> dict[str, float]:
    """The benchmark's numbers for one seed, from its evaluation's report.json `models`.

    >>> m = lambda acc, reasoning=0.0: {"accuracy": acc, "mean_reasoning_tokens": reasoning}
    >>> models = {"long": m(0.95), "long@8": m(0.30), "long@16": m(0.60), "long@32": m(0.90),
    ...           "budget@8": m(0.45, 7.0), "budget@16": m(0.72, 12.0), "budget@32": m(0.94, 20.0),
    ...           "budget@8free": m(0.5, 9.0), "budget@16free": m(0.75, 14.0), "budget@32free": m(0.95, 24.0)}
    >>> {k: round(v, 3) for k, v in measures(models, [8, 16, 32]).items()}
    {'gain-1': 15.0, 'gain-2': 12.0, 'adherence': 1.125, 'top': -1.0}
    """
    small = budgets[:2]
    out = {
        f"gain-{i}": 100 * (models[f"budget@{b}"]["accuracy"] - models[f"long@{b}"]["accuracy"])
        for i, b in enumerate(small, 1)
    }
    out["adherence"] = max(models[f"budget@{b}{UNCAPPED}"]["mean_reasoning_tokens"] / b for b in budgets)
    out["top"] = 100 * (models[f"budget@{budgets[-1]}"]["accuracy"] - models["long"]["accuracy"])
    return out


def meets(measure: str, value: float) -> bool:
    """Whether one measure meets its target.

    >>> meets("gain-1", 12.0), meets("gain-2", 9.9), meets("adherence", 1.1), meets("top", -2.5)
    (True, False, True, False)
    """
    target, higher = TARGETS[measure]
    return value >= target - 1e-9 if higher else value <= target + 1e-9


def verdicts(per_seed: list[dict[str, float]]) -> list[str]:
    """Per measure: each seed's value, the mean and the worst seed, and whether the worst meets the
    target; the last line sums the targets up.

    >>> a = {"gain-1": 15.0, "gain-2": 12.0, "adherence": 0.88, "top": -1.0}
    >>> b = {"gain-1": 11.0, "gain-2": 8.0, "adherence": 0.95, "top": 0.5}
    >>> for line in verdicts([a, b]): print(line)
    gain-1      seeds +15.0 +11.0   mean +13.0  worst +11.0 points  target >= +10: met
    gain-2      seeds +12.0 +8.0   mean +10.0  worst +8.0 points  target >= +10: MISSED
    adherence   seeds 0.88 0.95   mean 0.92  worst 0.95 x B  target <= 1.15: met (budget told, not forced)
    top         seeds -1.0 +0.5   mean -0.2  worst -1.0 points  target >= -2: met
    budget: 3 of 4 targets met on the worst of 2 seeds (missed: gain-2)
    """
    lines, missed = [], []
    for measure, (target, higher) in TARGETS.items():
        values = [m[measure] for m in per_seed if measure in m]
        if not values:
            lines.append(f"{measure:11} not measured (the runs have fewer budgets)")
            missed.append(measure)
            continue
        worst = min(values) if higher else max(values)
        fmt = "{:+.1f}" if UNITS[measure] == "points" else "{:.2f}"
        ok = meets(measure, worst)
        missed += [] if ok else [measure]
        lines.append(
            f"{measure:11} seeds {' '.join(fmt.format(v) for v in values)}   "
            f"mean {fmt.format(sum(values) / len(values))}  worst {fmt.format(worst)} {UNITS[measure]}  "
            f"target {'>=' if higher else '<='} {fmt.format(target).removesuffix('.0')}: "
            f"{'met' if ok else 'MISSED'}" + (f" ({NOTES[measure]})" if measure in NOTES else "")
        )
    met = len(TARGETS) - len(missed)
    tail = f" (missed: {', '.join(missed)})" if missed else ""
    lines.append(f"budget: {met} of {len(TARGETS)} targets met on the worst of {len(per_seed)} seeds{tail}")
    return lines


def table(models: dict[str, dict], budgets: list[int]) -> list[str]:
    """Accuracy and mean reasoning tokens of long and budget, unconstrained and at each budget (forced,
    and for budget also told but not forced: `budget@Bfree`)."""
    lines = [f"{'point':14}{'accuracy':>10}{'reasoning':>11}{'tokens':>9}"]
    points = [p for b in budgets for p in (f"long@{b}", f"budget@{b}", f"budget@{b}{UNCAPPED}")]
    for name in ["long", "budget", *points]:
        m = models[name]
        lines.append(
            f"{name:14}{m['accuracy']:>10.1%}{m['mean_reasoning_tokens']:>11.1f}{m['mean_tokens']:>9.1f}"
        )
    return lines


def evaluate_run(run: Path, out: Path, n: int, engine: str, max_tokens: int) -> tuple[dict, list[int]]:
    """Evaluate one quickstart run's long and budget models; returns (report.json models, budgets)."""
    from l2s.evaluate import EvalConfig
    from l2s.evaluate import run as evaluate

    report = json.loads((run / "report.json").read_text())
    models = report["models"]
    if "budget" not in models:
        raise SystemExit(f"{run}: its report has no budget model; run the quickstart with method budget")
    budgets = run_budgets(models)
    if len(budgets) < 2:
        raise SystemExit(f"{run}: the benchmark needs at least two thinking budgets; the run has {budgets}")
    task = {"task": report["task"]} if isinstance(report["task"], str) else dict(report["task"])
    spec = f"long={models['long']['path']},budget={models['budget']['path']}"
    cfg = EvalConfig(
        models=spec, n=n, thinking_budgets=budgets, budget_n=n, uncapped_budgets=True, max_tokens=max_tokens,
        engine=engine, grader=report.get("grader", "flexible"), out=str(out), **task,
    )  # fmt: skip
    done = evaluate(cfg)
    return json.loads((done / "report.json").read_text())["models"], budgets


def main() -> None:
    from l2s.quickstart import DEFAULT_OVERRIDES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, help="quickstart run folders, one per seed")
    ap.add_argument("--n", type=int, default=1000, help="held-out problems (every point, budgets included)")
    ap.add_argument("--out", default="runs/bench-budget", help="folder for the evaluations (resumed)")
    ap.add_argument("--engine", default="auto", help="generation engine: auto | hf | vllm")
    ap.add_argument(
        "--max-tokens",
        type=int,
        default=DEFAULT_OVERRIDES["eval"]["max_tokens"],
        help="max completion tokens per sample (default: the quickstart's evaluation setting)",
    )
    args = ap.parse_args()
    runs = [Path(r) for r in args.runs]
    if len({r.resolve().name for r in runs}) != len(runs):
        raise SystemExit("--runs folders must have different names (each gets OUT/<name>)")

    per_seed = []
    for run in runs:
        models, budgets = evaluate_run(
            run, Path(args.out) / run.resolve().name, args.n, args.engine, args.max_tokens
        )
        m = measures(models, budgets)
        per_seed.append(m)
        print(f"\n{run} (n = {args.n}, budgets {', '.join(map(str, budgets))}):")
        print("\n".join(table(models, budgets)))
        print(", ".join(f"{k} {v:+.1f}" if UNITS[k] == "points" else f"{k} {v:.2f}" for k, v in m.items()))
    print(f"\nover {len(runs)} seeds:")
    print("\n".join(verdicts(per_seed)))


if __name__ == "__main__":
    main()
