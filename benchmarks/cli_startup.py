"""How long `l2s --help` and every `l2s COMMAND --help` take to start, beside a bare Python and `import torch`.

Every arm is a fresh interpreter of this venv. The arms run interleaved `--repeats` times (after one
warm-up run each) and medians are reported, so drift in the machine's load hits every arm alike: wall
seconds, the same as a multiple of `python -c pass` (which says how loaded the machine was), and the
child's CPU seconds (user + system), which a loaded machine inflates far less than wall time.
  python -c pass       the floor every command pays
  l2s --help           the list of subcommands
  l2s COMMAND --help   what a user waits for: the flags replayed from l2s's help cache
  first run            the same with an empty help cache: imports the Config (and pydantic) and fills
                       the cache, as the first `--help` after l2s or the environment changed does
  import torch         what a `--help` that imported torch would cost
The children run as an installed l2s does: with a bytecode cache (a private one, as this venv may set
PYTHONDONTWRITEBYTECODE) and a private help cache, never the user's. Then the proof that no help
imports a heavy library: `python -X importtime` of each first run lists every module it imported, and
none of torch, transformers, trl, vllm, mergekit, matplotlib, datasets, accelerate may be among them.
Target: every `l2s COMMAND --help` under 0.1 s wall.

    .venv/bin/python benchmarks/cli_startup.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "transformers", "trl", "vllm", "mergekit", "matplotlib", "datasets", "accelerate")
COMMANDS = [
    "init", "sample", "eval", "report", "calibrate", "rl", "derive", "serve", "ui", "quickstart", "convert-gguf",
]  # fmt: skip
TARGET_S = 0.1
ROOT = Path(__file__).resolve().parent.parent


class Runner:
    """Fresh interpreters with a private bytecode cache; `fresh_cache=True` gives each an empty help cache."""

    def __init__(self, scratch: Path):
        self.scratch, self.count = scratch, itertools.count()
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.env["PYTHONPYCACHEPREFIX"] = str(scratch / "bytecode")
        self.env["XDG_CACHE_HOME"] = str(scratch / "cache")

    def run(self, args: list[str], *, fresh_cache: bool = False) -> subprocess.CompletedProcess:
        env = dict(self.env)
        if fresh_cache:
            env["XDG_CACHE_HOME"] = str(self.scratch / f"empty-{next(self.count)}")
        return subprocess.run(
            [sys.executable, *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        )

    def timed(self, args: list[str], *, fresh_cache: bool = False) -> tuple[float, float]:
        """(wall seconds, CPU seconds: user + system of the child) of one run."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        self.run(args, fresh_cache=fresh_cache)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def imported_modules(runner: Runner, args: list[str]) -> dict[str, int]:
    """Module -> cumulative import microseconds, from `-X importtime` of a first run (empty help cache)."""
    r = runner.run(["-X", "importtime", *args], fresh_cache=True)
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

    # arm -> (interpreter arguments, whether each run starts with an empty help cache)
    arms: dict[str, tuple[list[str], bool]] = {
        "python -c pass": (["-c", "pass"], False),
        "l2s --help": (["-m", "l2s.cli", "--help"], False),
    }
    for c in COMMANDS:
        arms[f"l2s {c} --help"] = (["-m", "l2s.cli", c, "--help"], False)
        arms[f"first {c}"] = (["-m", "l2s.cli", c, "--help"], True)
    arms["import torch"] = (["-c", "import torch"], False)

    with tempfile.TemporaryDirectory(prefix="l2s-cli-startup-") as scratch:
        runner = Runner(Path(scratch))
        for a, fresh in arms.values():  # warm-up: writes the bytecode and help caches the timed runs read
            runner.timed(a, fresh_cache=fresh)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in arms}
        for _ in range(args.repeats):
            for name, (a, fresh) in arms.items():
                times[name].append(runner.timed(a, fresh_cache=fresh))
        imports = {
            c: imported_modules(runner, ["-m", "l2s.cli", *([c] if c else []), "--help"])
            for c in ["", *COMMANDS]
        }
    med = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
    floor = med["python -c pass"]

    def cells(arm: str) -> str:
        return f"{med[arm]:9.3f}{med[arm] / floor:6.1f}x{cpu[arm]:7.3f}"

    load = os.getloadavg()[0]
    print(
        f"CLI start-up, median of {args.repeats} fresh interpreters; load average {load:.1f} on {os.cpu_count()} cores"
    )
    print(f"{'':24}{'cached help':>23}{'':7}{'first run (empty cache)':>23}")
    print(f"{'':24}{'wall':>9}{'':7}{'cpu':>7}{'':7}{'wall':>9}{'':7}{'cpu':>7}  heavy imports (first run)")
    print(f"{'python -c pass':24}{cells('python -c pass')}")
    for c in ["", *COMMANDS]:
        name = f"l2s {c} --help" if c else "l2s --help"
        heavy = sorted(m for m in imports[c] if m.split(".")[0] in HEAVY)
        first = f"{'':7}{cells(f'first {c}')}" if c else f"{'':29}"
        print(f"{name:24}{cells(name)}{first}  {', '.join(heavy) or 'none'}")
    print(f"{'import torch':24}{cells('import torch')}")
    print("(seconds; `x` = multiple of python -c pass's wall time; cpu = user + system time of the child)")

    top = sorted(((m, us) for m, us in imports["derive"].items() if "." not in m), key=lambda kv: -kv[1])[:5]
    print(
        "\nslowest top-level imports of a first `l2s derive --help`: "
        + ", ".join(f"{m} {us / 1000:.0f} ms" for m, us in top)
    )
    any_heavy = any(m.split(".")[0] in HEAVY for mods in imports.values() for m in mods)
    slowest = max(COMMANDS, key=lambda c: med[f"l2s {c} --help"])
    worst = med[f"l2s {slowest} --help"]
    ok = not any_heavy and worst < TARGET_S
    print(
        f"slowest `l2s COMMAND --help`: {slowest} {worst:.3f}s wall = {worst / floor:.1f}x python -c pass, "
        f"{cpu[f'l2s {slowest} --help']:.3f}s cpu (target < {TARGET_S}s wall and no heavy import: "
        f"{'met' if ok else 'NOT met'})"
    )
    return 1 if any_heavy else 0


if __name__ == "__main__":
    sys.exit(main())
