"""`kill -9` during checkpoint saves, then the same command again: does every resumed run finish?

For shortest-rs (TRL's SFTTrainer), DPO (TRL's DPOTrainer) and RL (l2s's own loop), on a pico model
that saves a checkpoint after every step, so that much of a run is spent saving: start the real CLI in
a subprocess, and once it has begun its first save of this run, SIGKILL it after a random delay
(uniform in 0..--delay-ms, 150 by default: a save and a step on a loaded CPU), so kills land at every point of a save (weights, optimizer, scheduler,
rng state, trainer state, the rotation that deletes old checkpoints) and between saves. Then start the
same command again, which must resume; after --chain kills, the last run must finish. Busy-loop
processes (one per core by default) load the CPU the whole time, as other work on a shared machine does.

A crash is any run that ends by itself without finishing (an error exit or a signal such as SIGSEGV,
including a resumed run that dies before we kill it), or a last run whose output is not a valid
checkpoint with the full number of training steps. Each kill is reported with where it landed: the
newest checkpoint it left behind, whole or torn and why (l2s.checkpoint.checkpoint_is_complete).

    .venv/bin/python benchmarks/kill_resume.py [--kills 50] [--chain 8] [--load 2] [--seed 0]

Prints one line per kill, a summary per method, and last "N kills, K crashes".
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "TQDM_DISABLE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
    "TRANSFORMERS_VERBOSITY": "info",  # the Trainer logs "Saving model checkpoint to ..." per save
    "PYTHONFAULTHANDLER": "1",  # a crash in native code prints the Python stack it happened under
}
SAVE_LINE = "Saving model checkpoint to"


@dataclass
class Method:
    name: str
    args: list[str]  # the CLI command, --out last
    out: Path
    steps: int  # training steps (or RL iterations) of the whole run
    saves: list[str] = field(default_factory=list)  # where each kill landed
    kills: int = 0
    crashes: list[str] = field(default_factory=list)


def _records() -> list[dict]:
    """Canned samples (as `l2s sample` writes them): per prompt a long correct answer, a short correct
    one, a wrong one and one cut off by max_tokens. 5 prompts give SFT 5 rows and DPO 15 pairs."""
    rows = []
    for p in range(6):
        a, b = 10 + p, 30 + p
        s = a + b
        long = f"<think>\n{a} + {b} = {s}\nwait, check: {s} - {b} = {a}\n</think>\nAnswer: {s}"
        variants = [(long, 24, True, "stop"), (f"Answer: {s}", 6, True, "stop")]
        variants += [(f"Answer: {s + 1}", 6, False, "stop"), (f"Answer: {s}"[:-1], 5, True, "length")]
        for i, (text, tokens, correct, finish) in enumerate(variants):
            rows.append(
                dict(prompt_id=f"p{p}", sample_idx=i, prompt=f"Compute {a} + {b}. End with 'Answer: N'.",
                     completion=text, completion_tokens=tokens, reasoning_tokens=0, finish_reason=finish,
                     correct=correct and p < 5)
            )  # fmt: skip
    return rows


def setup(root: Path) -> list[Method]:
    """A pico model and one command per method, each saving after every step."""
    import yaml

    sys.path.insert(0, str(ROOT))
    from l2s.embedded.model import save_random_model
    from l2s.embedded.tokenizer import build_tokenizer

    corpus = [
        "<think>\n12 + 30 = 42\nwait, check: 42 - 30 = 12\n</think>\nAnswer: 42",
        "Compute 7 * 6 - 5. Give the final answer as 'Answer: N'.",
        "<think>\n</think>\nAnswer: 37",
    ] * 8
    model = save_random_model(root / "pico", build_tokenizer(corpus))
    samples = root / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in _records()))
    coin = root / "coin.jsonl"
    coin.write_text("".join(json.dumps({"prompt": f"Pick 1 or 2 (round {i}).", "answer": str(1 + i % 2)}) + "\n"
                            for i in range(40)))  # fmt: skip
    train = dict(samples=str(samples), save_steps=1, batch_size=2, max_length=128, learning_rate=1e-3)
    (root / "shortest-rs.yaml").write_text(yaml.safe_dump({**train, "epochs": 20}))  # 3 steps per epoch
    (root / "dpo.yaml").write_text(yaml.safe_dump({**train, "epochs": 8, "beta": 0.1}))  # 8 per epoch
    (root / "rl.yaml").write_text(
        yaml.safe_dump(dict(task=f"jsonl:{coin}", train_problems=40, prompts_per_iteration=4, k=2,
                            max_tokens=16, segment_tokens=8, minibatch_prompts=2, learning_rate=1e-3,
                            save_every=1, curriculum_iterations=2, iterations=40))
    )  # fmt: skip

    def derive(method: str, steps: int) -> Method:
        out = root / method / "out"
        args = ["derive", "--method", method, "--long", str(model), "--config", str(root / f"{method}.yaml")]
        return Method(method, [*args, "--out", str(out)], out, steps)

    rl_out = root / "rl" / "out"
    rl = Method(
        "rl",
        ["rl", "--init", str(model), "--config", str(root / "rl.yaml"), "--out", str(rl_out)],
        rl_out,
        40,
    )
    return [derive("shortest-rs", 60), derive("dpo", 64), rl]


def trainer_dir(m: Method) -> Path:
    return work_folder(m) / "trainer"


def work_folder(m: Method) -> Path:
    """OUT.work, where every method keeps an unfinished run (l2s.workdir)."""
    from l2s.workdir import work_dir

    return work_dir(m.out)


def rl_iteration(m: Method) -> int:
    state = work_folder(m) / "checkpoint" / "trainer_state.json"
    try:
        return json.loads(state.read_text())["iteration"]
    except (OSError, ValueError, KeyError):
        return -1


class SaveWatch:
    """Has this run begun a save? SFT/DPO: the Trainer's "Saving model checkpoint" log line. RL: its
    checkpoint temp dir (named with its pid), or a checkpoint newer than the one it started from."""

    def __init__(self, m: Method, proc: subprocess.Popen, log: Path) -> None:
        self.m, self.proc, self.log, self.seen = m, proc, log.open(errors="replace"), ""
        self.start_iteration = rl_iteration(m) if m.name == "rl" else None

    def __call__(self) -> bool:
        if self.m.name != "rl":
            self.seen = self.seen[-len(SAVE_LINE) :] + self.log.read()
            return SAVE_LINE in self.seen
        work = work_folder(self.m)
        return (
            any(work.glob(f".checkpoint.tmp-{self.proc.pid}-*"))
            or rl_iteration(self.m) > self.start_iteration
        )


# The order transformers' Trainer writes a checkpoint in (Trainer._save_checkpoint).
SAVE_ORDER = (
    "config.json",
    "model.safetensors",
    "optimizer.pt",
    "scheduler.pt",
    "rng_state.pth",
    "trainer_state.json",
)


def landing(m: Method) -> str:
    """Where the kill landed, read from what it left on disk."""
    from l2s.checkpoint import checkpoint_is_complete

    if m.name == "rl":
        work = work_folder(m)
        if any(work.glob(".checkpoint.tmp-*")):
            return "inside a save (its temp dir)"
        if any(work.glob(".checkpoint.old-*")):
            between = not (work / "checkpoint").is_dir()
            return "between a save's two renames" if between else "removing the previous checkpoint"
        return "between saves"
    folders = sorted(trainer_dir(m).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if not folders:
        return "before the first save"
    states = [checkpoint_is_complete(f) for f in folders]
    if not states[-1][0]:
        newest = folders[-1]
        for name in SAVE_ORDER:
            if not (newest / name).is_file():
                return f"in a save, before {name}"
            if name in states[-1][1]:
                return f"in a save, writing {name}"
        return f"in a save ({states[-1][1]})"
    if not all(ok for ok, _ in states):
        return "in the rotation that deletes old checkpoints"
    return "between saves"


def finished(m: Method) -> str | None:
    """None if --out is a valid checkpoint with the whole run's steps; else what is wrong."""
    from l2s.checkpoint import validate_checkpoint

    try:
        validate_checkpoint(m.out)
    except Exception as e:
        return f"output not valid: {e}"
    metrics = json.loads((m.out / "l2s.json").read_text())["metrics"]
    steps = metrics.get("train_steps", metrics.get("iterations"))
    return None if steps == m.steps else f"output trained {steps} steps, not {m.steps}"


def chain(m: Method, kills: int, delay_s: float, rng: random.Random, root: Path) -> None:
    """Run, kill -9 mid-save, rerun ... `kills` times, then let the last run finish."""
    import shutil

    shutil.rmtree(m.out.parent, ignore_errors=True)
    m.out.parent.mkdir(parents=True)
    cmd = [sys.executable, "-m", "l2s.cli", *m.args]
    for i in range(kills + 1):
        log = root / f"{m.name}-{m.kills}.log"
        proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=ENV, cwd=ROOT)
        last, saving = i == kills, SaveWatch(m, proc, log)
        while not last and proc.poll() is None and not saving():
            time.sleep(0.001)
        if not last and proc.poll() is None:
            time.sleep(rng.uniform(0, delay_s))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                m.kills += 1
                where = landing(m)
                m.saves.append(where)
                print(f"{m.name} kill {m.kills}: {where}", flush=True)
                continue
        proc.wait(timeout=600)
        tail = log.read_text(errors="replace")[-2000:]
        if proc.returncode != 0:
            how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
            m.crashes.append(f"{how} after kill {m.kills}:\n{tail}")
            print(f"{m.name}: CRASH ({how}) after kill {m.kills}; log {log}:\n{tail}", flush=True)
            return
        if why := finished(m):
            m.crashes.append(why)
            print(f"{m.name}: CRASH ({why})", flush=True)
        return  # the run finished (the last one, or one whose remaining steps ended before the kill)


def main() -> None:
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # setup's own saves
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=50, help="kills in all, spread over the three methods")
    ap.add_argument("--chain", type=int, default=8, help="kills per run before it may finish")
    ap.add_argument("--delay-ms", type=float, default=150, help="kill within this long after a save begins")
    ap.add_argument("--load", type=int, default=os.cpu_count(), help="busy-loop processes beside the runs")
    ap.add_argument("--methods", default="shortest-rs,dpo,rl")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="l2s-kill-resume-"))
    methods = [m for m in setup(root) if m.name in args.methods.split(",")]
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    started = time.perf_counter()
    try:
        per_method = args.kills // len(methods)
        for j, m in enumerate(methods):
            want = per_method + (1 if j < args.kills % len(methods) else 0)
            while m.kills < want:
                before = m.kills
                chain(m, min(args.chain, want - m.kills), args.delay_ms / 1000, rng, root)
                if m.crashes or m.kills == before:
                    break
    finally:
        for p in busy:
            p.kill()
            p.wait()
    print(
        f"\nmachine: {os.cpu_count()} cores, {args.load} busy loops; {time.perf_counter() - started:.0f} s; logs in {root}"
    )
    for m in methods:
        where = collections.Counter(m.saves)
        print(
            f"{m.name}: {m.kills} kills, {len(m.crashes)} crashes; landed: "
            + "; ".join(f"{k}: {v}" for k, v in where.most_common())
        )
    kills, crashes = sum(m.kills for m in methods), sum(len(m.crashes) for m in methods)
    print(f"{kills} kills, {crashes} crashes")


if __name__ == "__main__":
    main()
