"""How long `l2s derive --method merge` takes next to mergekit's own CLI and next to copying the bytes.

All three run in this one process, side by side, on the same inputs, each timed `--repeats` times
(median reported):
  l2s derive     `l2s derive --method merge --long A --short B --alpha 0.5` (a subprocess: imports,
                 up-front checks of architecture/tokenizer/shapes, mergekit, provenance, atomic rename)
  mergekit-yaml  mergekit's CLI on the identical MergeConfiguration (a subprocess)
  copy           copying one parent folder (the same number of bytes as the output) on disk
Target: l2s / mergekit-yaml <= 1.1. Inputs default to the embedded family's long and short models
when they exist, else two random Llamas of `--size` built here (same tokenizer, different seeds).

    .venv/bin/python benchmarks/merge.py [--long A --short B] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
EMBEDDED = Path(os.path.expanduser(os.environ.get("L2S_CACHE", "~/.cache/l2s/embedded")))
# About 50M parameters: big enough that tensor work, not start-up, is a visible share of the time.
BENCH_SIZE = dict(
    hidden_size=768,
    intermediate_size=2048,
    num_hidden_layers=8,
    num_attention_heads=24,
    num_key_value_heads=24,
)


def _random_pair(root: Path) -> tuple[Path, Path]:
    from l2s.embedded.model import save_random_model
    from l2s.embedded.tokenizer import build_tokenizer

    tok = build_tokenizer(["<think>\n12 + 30 = 42\n</think>\nAnswer: 42", "Compute 7 * 6 - 5."] * 8)
    return (
        save_random_model(root / "long", tok, size=BENCH_SIZE, seed=1),
        save_random_model(root / "short", tok, size=BENCH_SIZE, seed=2),
    )


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")


def _size_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--long", default=None)
    ap.add_argument("--short", default=None)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from l2s.methods.merge import MergeConfig, merge_configuration

    with tempfile.TemporaryDirectory(prefix="l2s-bench-merge-") as tmp:
        root = Path(tmp)
        if args.long and args.short:
            long, short = Path(args.long).expanduser(), Path(args.short).expanduser()
        elif (EMBEDDED / "long").is_dir() and (EMBEDDED / "short").is_dir():
            long, short = EMBEDDED / "long", EMBEDDED / "short"
        else:
            long, short = _random_pair(root)
        cfg = MergeConfig(long=str(long), short=str(short), alpha=args.alpha)
        yml = root / "merge.yml"
        yml.write_text(merge_configuration(cfg, long, short, None, args.alpha).to_yaml())

        def l2s(i: int) -> None:
            _run([str(BIN / "l2s"), "derive", "--method", "merge", "--long", str(long), "--short", str(short),
                  "--alpha", str(args.alpha), "--out", str(root / f"l2s-{i}")])  # fmt: skip

        def mergekit(i: int) -> None:
            _run([str(BIN / "mergekit-yaml"), str(yml), str(root / f"mk-{i}"), "--quiet"])

        def copy(i: int) -> None:
            shutil.copytree(long, root / f"cp-{i}")
            os.sync()

        times: dict[str, list[float]] = {"l2s derive": [], "mergekit-yaml": [], "copy": []}
        for i in range(args.repeats):  # interleaved, so drift in machine load hits all three alike
            times["l2s derive"].append(_timed(lambda i=i: l2s(i)))
            times["mergekit-yaml"].append(_timed(lambda i=i: mergekit(i)))
            times["copy"].append(_timed(lambda i=i: copy(i)))
        med = {k: statistics.median(v) for k, v in times.items()}
        size = _size_bytes(long) / 2**20

    print(
        f"merge benchmark: {long} + {short} ({size:.1f} MiB each), alpha {args.alpha}, median of {args.repeats}"
    )
    print(f"{'':16}{'seconds':>9}{'vs mergekit-yaml':>18}{'vs copy':>10}")
    for k, v in med.items():
        print(f"{k:16}{v:9.2f}{v / med['mergekit-yaml']:17.2f}x{v / med['copy']:9.1f}x")
    ratio = med["l2s derive"] / med["mergekit-yaml"]
    print(
        f"l2s derive / mergekit-yaml = {ratio:.2f} (target <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
