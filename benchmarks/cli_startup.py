"""How long `l2s --help` takes to start, side by side with a bare Python and with `import torch`.

All arms are fresh interpreters of this venv, run interleaved `--repeats` times (median reported):
  python      `python -c pass`: the floor every command pays
  l2s --help  `python -m l2s.cli --help`: what a user waits for before the help text
  torch       `python -c "import torch"`: what `--help` would cost if it imported torch
Then the proof that `--help` imports no heavy library: `python -X importtime -m l2s.cli --help` lists
every module the interpreter imported, and none of torch, transformers, trl, vllm, mergekit, matplotlib
may be among them. Target: `l2s --help` <= 0.5 s, and well under the torch import.

    .venv/bin/python benchmarks/cli_startup.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

HEAVY = ("torch", "transformers", "trl", "vllm", "mergekit", "matplotlib", "datasets", "accelerate")
ARMS = {
    "python": ["-c", "pass"],
    "l2s --help": ["-m", "l2s.cli", "--help"],
    "import torch": ["-c", "import torch"],
}


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True)
    return time.perf_counter() - start


def imported_modules() -> dict[str, int]:
    """Module -> cumulative import microseconds, from `-X importtime` of `l2s --help`."""
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "l2s.cli", "--help"],
        check=True,
        capture_output=True,
        text=True,
    )
    modules = {}
    for line in r.stderr.splitlines():  # "import time: self [us] | cumulative | imported package"
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            modules[parts[2].strip()] = int(parts[1])
    return modules


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()

    for a in ARMS.values():  # warm the page cache: the first run of each reads .pyc files from disk
        timed(a)
    times: dict[str, list[float]] = {name: [] for name in ARMS}
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits every arm alike
        for name, a in ARMS.items():
            times[name].append(timed(a))
    med = {k: statistics.median(v) for k, v in times.items()}

    load = os.getloadavg()[0]
    print(
        f"CLI start-up, median of {args.repeats} fresh interpreters; load average {load:.1f} on {os.cpu_count()} cores"
    )
    print(f"{'':14}{'seconds':>9}{'vs python':>11}{'vs import torch':>17}")
    for k, v in med.items():
        print(f"{k:14}{v:9.3f}{v / med['python']:10.1f}x{v / med['import torch']:16.2f}x")

    modules = imported_modules()
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    slowest = sorted(modules.items(), key=lambda kv: kv[1], reverse=True)
    top = [(m, us) for m, us in slowest if "." not in m][:5]
    print(f"\n`l2s --help` imported {len(modules)} modules; slowest top-level: "
          + ", ".join(f"{m} {us / 1000:.0f} ms" for m, us in top))  # fmt: skip
    print(
        f"heavy libraries imported by --help: {', '.join(heavy) if heavy else 'none'} (checked: {', '.join(HEAVY)})"
    )
    ok = not heavy and med["l2s --help"] <= 0.5
    print(
        f"l2s --help = {med['l2s --help']:.3f}s (target <= 0.5s and no heavy import: {'met' if ok else 'NOT met'})"
    )
    return 0 if not heavy else 1


if __name__ == "__main__":
    sys.exit(main())
