"""`make bench`: run every script in benchmarks/ in turn and collect what they print into RESULTS.md.

Each script measures its arms side by side in one run and prints the ratios; this runner only runs
them (one at a time, so they do not compete for the CPU), shows their output live, and writes
benchmarks/RESULTS.md with the command, the date, the machine and each script's output. Scripts that
need the embedded model family (`l2s init` builds it in ~/.cache/l2s/embedded, or $L2S_CACHE) say so in
PLAN below and are skipped with a clear line when it is absent; the others fall back to random models
or need none. A script not in PLAN still runs, with no arguments.

    .venv/bin/python benchmarks/run_all.py [--only merge,cli_startup] [--skip rl_stage] [--out PATH]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EMBEDDED = Path(os.path.expanduser(os.environ.get("L2S_CACHE", "~/.cache/l2s/embedded")))


@dataclass(frozen=True)
class Plan:
    args: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()  # embedded family members the script cannot run without
    what: str = ""  # one line for RESULTS.md


# In the order they run: quick ones first, so a long one that fails leaves the others' results.
PLAN: dict[str, Plan] = {
    "cli_startup": Plan(what="`l2s --help` and every `l2s COMMAND --help` (cached and first run) vs bare Python and `import torch`; no heavy imports"),
    "merge": Plan(what="merge time: `l2s derive --method merge` vs the `mergekit-yaml` CLI vs copying the bytes"),
    "sampling": Plan(args=("--big",), what="sampling engines: hf batched vs hf one at a time vs vLLM"),
    "partial_rollouts": Plan(what="RL iteration time with and without partial rollouts"),
    "workload": Plan(needs=("short", "long-sft"), what="the embedded workload: short vs long-sft accuracy and tokens"),
    "token_efficiency": Plan(args=("--seeds", "3"), needs=("short", "long-sft"), what="the long2short methods vs long (quickstart's report) against Kimi Figure 7's targets, over 3 seeds (the families of seeds 1 and 2 are built when absent)"),
    "budget": Plan(args=("--runs", "runs/bench-quickstart/seed0", "runs/bench-quickstart/seed1", "runs/bench-quickstart/seed2", "--n", "1000"), needs=("long",), what="the budget-conditioned model vs long cut off at the same thinking budgets, over the 3 seeds token_efficiency ran"),
    "effort": Plan(needs=("long",), what="reasoning_effort levels served over HTTP vs their calibration (needs a quickstart run)"),
    "serving": Plan(needs=("short", "long|long-sft"), what="serving throughput, HTTP overhead, latency per mode, auto"),
    "rl_weight_sync": Plan(what="RL with engine=vllm: weights synced in memory vs saved and reloaded, per iteration (runs in .venv-vllm)"),
    "real_model": Plan(what="SmolLM2-135M-Instruct on word problems: flexible vs strict grading, unparsed share, agreement with math-verify, hf vs vllm tokens/s"),
    "kill_resume": Plan(what="kill -9 at many points of SFT, DPO and RL saves, then resume: crashes counted"),
    "rl_stage": Plan(args=("--long2short", "--temperature", "1", "--learning-rate", "5e-5"), needs=("long-sft",), what="full RL stage (at the embedded preset's lr) and long2short RL: T=1 accuracy and tokens"),
}  # fmt: skip


# Scripts `make bench` leaves out: gpu_check needs a borrowed GPU machine (docs/GPU.md).
BY_HAND = ("gpu_check",)


@dataclass
class Outcome:
    name: str
    command: str
    status: str  # ok | failed (exit N) | skipped: why | timed out
    seconds: float = 0.0
    output: str = ""
    errors: list[str] = field(default_factory=list)


def scripts() -> list[str]:
    """Every benchmark script: PLAN's order first, then any other benchmarks/*.py."""
    found = {
        p.stem
        for p in HERE.glob("*.py")
        if p.stem not in ("run_all", *BY_HAND) and not p.stem.startswith("_")
    }
    return [n for n in PLAN if n in found] + sorted(found - set(PLAN))


def missing_members(needs: tuple[str, ...], cache: Path) -> list[str]:
    """The family members (alternatives joined by '|') with no checkpoint in `cache`."""
    missing = [m for m in needs if not any((cache / alt / "config.json").is_file() for alt in m.split("|"))]
    return [m.replace("|", " or ") for m in missing]


def run_one(name: str, plan: Plan, timeout: float) -> Outcome:
    argv = [sys.executable, str(HERE / f"{name}.py"), *plan.args]
    command = " ".join(["python", f"benchmarks/{name}.py", *plan.args])
    missing = missing_members(plan.needs, EMBEDDED)
    if missing:
        why = (
            f"skipped: needs the embedded family's {', '.join(missing)} in {EMBEDDED} (run `l2s init` first)"
        )
        print(f"\n== {name}: {why}", flush=True)
        return Outcome(name, command, why)
    print(f"\n== {name}: {command}", flush=True)
    start = time.perf_counter()
    # stdout is the result (shown live and kept); stderr (progress bars, logs) goes to the terminal only.
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True, bufsize=1)
    watchdog = threading.Timer(timeout, proc.kill)  # a silent hang cannot block the whole run
    watchdog.start()
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    proc.wait()
    watchdog.cancel()
    seconds = time.perf_counter() - start
    if proc.returncode == 0:
        status = "ok"
    elif seconds >= timeout:
        status = f"timed out after {timeout:.0f}s"
    else:
        status = f"failed (exit {proc.returncode}; its stderr is above in the terminal)"
    return Outcome(name, command, status, seconds, "".join(lines))


def machine() -> str:
    one, five, _ = os.getloadavg()
    try:
        import torch

        torch_v = torch.__version__
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except ImportError:
        torch_v, gpu = "not installed", "?"
    return (
        f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, {gpu}; Python "
        f"{platform.python_version()}, torch {torch_v}; load average {one:.1f} (1 min), {five:.1f} (5 min)"
    )


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            # RESULTS.md itself is rewritten as the scripts finish: it does not make the code dirty
            ["git", "status", "--porcelain", "--", ".", ":(exclude)benchmarks/RESULTS.md"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout
        return rev + (" (with uncommitted changes)" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


HISTORY = "## Measurement history"


def kept_history(path: str | Path) -> str:
    """The measurement history of an existing RESULTS.md (from its HISTORY heading on), kept across runs."""
    p = Path(path)
    text = p.read_text() if p.is_file() else ""
    i = text.find(HISTORY)
    return text[i:] if i >= 0 else ""


def render(outcomes: list[Outcome], command: str, started: str, machine_line: str, history: str = "") -> str:
    out = [
        "# Benchmark results",
        "",
        "Written by `make bench` (benchmarks/run_all.py): every script in benchmarks/ in turn, each measuring",
        "its arms side by side in one run on this machine. Re-run it to refresh this page; numbers from",
        "another machine or another load are not comparable.",
        "",
        f"- command: `{command}`",
        f"- date: {started}",
        f"- machine: {machine_line}",
        f"- code: {git_revision()}",
        f"- embedded family: {EMBEDDED} ({'present' if (EMBEDDED / 'short').is_dir() else 'absent'})",
        "",
        "| script | what it measures | result | wall time |",
        "|---|---|---|---|",
    ]
    for o in outcomes:
        what = PLAN.get(o.name, Plan()).what or "(not described in run_all.PLAN)"
        wall = f"{o.seconds:.0f}s" if o.seconds else "-"
        out.append(f"| {o.name} | {what} | {o.status} | {wall} |")
    for o in outcomes:
        out += ["", f"## {o.name}", "", f"`{o.command}` — {o.status}"]
        if o.output.strip():
            out += ["", "```", o.output.rstrip("\n"), "```"]
    if history:
        out += ["", history.rstrip("\n")]
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help="comma-separated script names to run (default: all)")
    ap.add_argument("--skip", default="", help="comma-separated script names to leave out")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds one script may run")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"), help="where to write the results")
    args = ap.parse_args()

    names = scripts()
    known = set(names)
    chosen = [n.strip() for n in args.only.split(",")] if args.only else names
    skipped = {n.strip() for n in args.skip.split(",") if n.strip()}
    unknown = sorted((set(chosen) | skipped) - known)
    if unknown:
        ap.error(f"no benchmark script named {', '.join(unknown)}; scripts: {', '.join(names)}")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    command = "python benchmarks/run_all.py " + " ".join(sys.argv[1:])
    machine_line = machine()
    from l2s.checkpoint import atomic_write_text

    todo = [n for n in chosen if n not in skipped]
    if not todo:
        ap.error("--only and --skip leave nothing to run")
    outcomes: list[Outcome] = []
    history = kept_history(args.out)
    for i, name in enumerate(todo):
        outcomes.append(run_one(name, PLAN.get(name, Plan()), args.timeout))
        # rewritten after every script, so an interrupted run still leaves what it measured
        pending = [
            Outcome(n, f"python benchmarks/{n}.py", "not run yet (the run was interrupted)")
            for n in todo[i + 1 :]
        ]
        text = render(outcomes + pending, command.strip(), started, machine_line, history)
        atomic_write_text(args.out, text)
    print(f"\nwrote {args.out}")
    for o in outcomes:
        print(f"  {o.name:18} {o.status}")
    return 0 if all(o.status == "ok" or o.status.startswith("skipped") for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
