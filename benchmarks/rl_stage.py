"""The full RL stage on the embedded family: long-sft's held-out accuracy before and after, side by side.

  1. `run_rl` with configs/rl_full.yaml (its time limit caps the training wall time) from long-sft;
  2. `l2s eval`'s core (`l2s.evaluate.run`): greedy decoding of long-sft and the RL'd model on the same
     `--n` held-out arith problems (Wilson 95% intervals);
  3. with `--long2short`: configs/rl_long2short.yaml from the RL'd model, evaluated beside it.
Targets: RL raises accuracy by >= 5 points (or to >= 95%) within 10 minutes of CPU wall time;
long2short RL keeps >= long's accuracy - 1 point at <= 50% of its mean tokens.

    .venv/bin/python benchmarks/rl_stage.py [--cache ~/.cache/l2s/embedded] [--n 1000] [--long2short]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EMBEDDED = Path(os.path.expanduser(os.environ.get("L2S_CACHE", "~/.cache/l2s/embedded")))


def train(
    config: Path, init: Path, out: Path, threads: int | None, learning_rate: float | None = None
) -> tuple[Path, dict]:
    from l2s.config import load_config
    from l2s.rl.config import RLConfig
    from l2s.rl.trainer import run_rl

    flags = {"init": str(init), "out": str(out), "threads": threads}
    if learning_rate is not None:
        flags["learning_rate"] = learning_rate
    cfg = load_config(RLConfig, config, flags)
    if not out.exists():
        load = os.getloadavg()
        t = time.perf_counter()
        run_rl(cfg)
        wall = time.perf_counter() - t
        print(f"[{out.name}] {wall:.0f}s wall (load avg before: {load[0]:.1f})", flush=True)
    metrics = json.loads((out / "l2s.json").read_text())["metrics"]
    return out, metrics


def evaluate(models: dict[str, Path], n: int, out: Path, temperature: float = 0.0) -> dict:
    from l2s.evaluate import EvalConfig, run

    spec = ",".join(f"{name}={path}" for name, path in models.items())
    run(EvalConfig(models=spec, n=n, temperature=temperature, max_tokens=512, out=str(out), batch_size=200))
    return json.loads((out / "report.json").read_text())["models"]


def row(name: str, m: dict) -> str:
    lo, hi = m["accuracy_ci95"]
    return f"{name:14}{m['accuracy']:>10.1%}  [{lo:.1%}, {hi:.1%}]{m['mean_tokens']:>12.1f}{m['p90_tokens']:>10.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=str(EMBEDDED), help="embedded family folder (holds long-sft/)")
    ap.add_argument("--config", default=str(ROOT / "configs" / "rl_full.yaml"))
    ap.add_argument("--l2s-config", default=str(ROOT / "configs" / "rl_long2short.yaml"))
    ap.add_argument("--n", type=int, default=1000, help="held-out problems")
    ap.add_argument("--out", default="runs/bench-rl", help="work folder (reused: finished steps are skipped)")
    ap.add_argument("--long2short", action="store_true", help="also run long2short RL on the RL'd model")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for training (1 on a busy CPU)")
    ap.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="the full stage's learning rate (default: the config's; the embedded preset uses 5e-5)",
    )
    ap.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="evaluation temperature (0 = greedy; 1 = the sampled policy RL optimizes, useful when greedy "
        "is already at the ceiling)",
    )
    args = ap.parse_args()

    cache, work = Path(args.cache).expanduser(), Path(args.out)
    long_sft = cache / "long-sft"
    if not (long_sft / "config.json").is_file():
        raise SystemExit(f"no long-sft in {cache}; run `l2s init` first")
    # a learning-rate override gets its own folder: a finished run in `work` is reused, never retrained
    stage_dir = work / ("long" if args.learning_rate is None else f"long-lr{args.learning_rate:g}")
    long, info = train(Path(args.config), long_sft, stage_dir, args.threads, args.learning_rate)
    models = {"long-sft": long_sft, "long": long}
    l2s_info = None
    if args.long2short:
        l2s_model, l2s_info = train(Path(args.l2s_config), long, work / "long2short-rl", args.threads)
        models["long2short-rl"] = l2s_model
    tag = "greedy" if args.temperature == 0 else f"T{args.temperature:g}"
    report = evaluate(models, args.n, work / f"eval-{tag}-{stage_dir.name}", args.temperature)

    print(f"\nheld-out arith, n={args.n}, {tag} (one sample per problem); RL: {args.config}")
    print(f"{'model':14}{'accuracy':>10}  {'95% CI':16}{'mean tok':>12}{'p90 tok':>10}")
    for name in models:
        print(row(name, report[name]))
    before, after = report["long-sft"], report["long"]
    gain = 100 * (after["accuracy"] - before["accuracy"])
    print(
        f"\nfull RL stage: {gain:+.1f} points in {info['train_wall_s']:.0f}s of training wall time "
        f"({info['iterations']} iterations)   target: >= +5 points (or >= 95%) within 600s"
    )
    if l2s_info is not None:
        short = report["long2short-rl"]
        ratio = short["mean_tokens"] / after["mean_tokens"]
        delta = 100 * (short["accuracy"] - after["accuracy"])
        print(
            f"long2short RL: {ratio:.0%} of long's mean tokens, {delta:+.1f} points accuracy "
            f"({l2s_info['train_wall_s']:.0f}s)   target: <= 50% tokens at >= -1 point"
        )


if __name__ == "__main__":
    main()
