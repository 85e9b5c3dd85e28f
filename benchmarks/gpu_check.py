"""Check l2s's GPU path on one machine, step by step, and record what was seen (dated, as text and JSON).

Each step is timed and reported ok, FAILED or skipped with a one-line reason; a failure does not stop the
steps after it. docs/GPU.md says how to run this on a borrowed GPU machine.
  bundle     (--install-bundle) install the wheels of `make gpu-bundle` (.gpu-bundle/wheels) into
             .gpu-bundle/site, only those missing here or newer than what is installed
  env        Python, torch, transformers, accelerate, peft; the GPU, its memory, bf16; which of l2s's
             dependencies import (checked before any l2s module is imported)
  model      a random Llama built on the fly (~113M parameters; --small: ~4M) with the embedded family's
             tokenizer, trained on arith text (or --tokenizer DIR), saved as an HF folder with a chat template
  engine     the hf engine: where `get_engine("hf", path)` puts the model (what `l2s eval`, `sample` and
             `derive` get), then greedy generation on --device through engine_options in bf16 and fp32:
             tokens/s, the same tokens on a second run; thinking-budget forcing (reasoning <= budget)
  rl-bf16    `run_rl` (engine hf, task arith) for 3 iterations with mixed_precision bf16, then "no":
  rl-no      finite loss, seconds per iteration, peak GPU memory; each in its own process, as `l2s rl` runs
  vllm-args  `engine_args(device="gpu")` for two models sharing one GPU (pure; vLLM is not needed)
  dpo        (needs trl) where derive's sampling puts the model, then `l2s derive --method dpo` for 5
             steps from a samples file: the trainer's device, precision, loss, peak GPU memory
Where l2s runs on the CPU although a GPU is there, the summary lists it under "findings".

    python benchmarks/gpu_check.py [--device auto|cuda|cpu] [--small] [--out FILE] [--install-bundle]
Without a GPU (or with --device cpu) it runs --small on the CPU. JSON goes to $OUT/gpu_check.json when
$OUT is set, else to --out. Exit status 1 when a step FAILED.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / ".gpu-bundle"
# ~113M parameters: 12 x (4 x 768^2 + 3 x 768 x 3072), head size 64 (as benchmarks/rl_weight_sync.py).
FULL = dict(
    size=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
              num_key_value_heads=12),
    prompts=64, tokens=128, budget=16, budget_tokens=64, rl_prompts=8, rl_k=4, rl_tokens=64,
)  # fmt: skip
# ~4M parameters: 4 x (4 x 256^2 + 3 x 256 x 1024); what a 2-core CPU runs in about a minute.
SMALL = dict(
    size=dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
              num_key_value_heads=4),
    prompts=16, tokens=32, budget=8, budget_tokens=24, rl_prompts=4, rl_k=2, rl_tokens=24,
)  # fmt: skip
# Imported by the steps below: (module, distribution, needed by every l2s step or only some).
DEPENDENCIES = [
    ("pydantic", "pydantic", True), ("pydantic_core", "pydantic_core", True),
    ("math_verify", "math-verify", True), ("latex2sympy2_extended", "latex2sympy2_extended", True),
    ("yaml", "PyYAML", True), ("matplotlib", "matplotlib", True),
    ("datasets", "datasets", False), ("trl", "trl", False), ("mergekit", "mergekit", False),
    ("pyarrow", "pyarrow", False),
]  # fmt: skip


class Skipped(Exception):
    """A step that cannot run here (its reason is reported; it is not a failure)."""


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}"


# ---------------------------------------------------------------------------------------------------
# Steps. Each takes the shared state and returns what it saw; findings go to state["findings"].


def step_bundle(st: dict) -> dict:
    """Install the carried wheels into .gpu-bundle/site (never over a newer installed version)."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.utils import parse_wheel_filename
    from packaging.version import Version

    wheels = sorted((BUNDLE / "wheels").glob("*.whl"))
    if not wheels:
        raise RuntimeError(f"no wheels in {BUNDLE / 'wheels'}: run `make gpu-bundle` and carry .gpu-bundle")
    todo, kept = [], []
    for wheel in wheels:
        name, ver, _, _ = parse_wheel_filename(wheel.name)
        try:
            have = Version(version(name))
        except PackageNotFoundError:
            have = None
        if have is None or ver > have:
            todo.append(str(wheel))
        else:
            kept.append(f"{name} {have}")
    site = BUNDLE / "site"
    if todo:
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--disable-pip-version-check", "--root-user-action=ignore", "--upgrade", "--target", str(site), *todo]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"pip install failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1]}")
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    line = f"installed {len(todo)} wheel(s) into {site.relative_to(ROOT)}, {len(kept)} already there"
    return {"line": line, "installed": [Path(w).name for w in todo], "already_there": kept}


def step_env(st: dict) -> dict:
    import importlib
    from importlib.metadata import version

    import accelerate
    import torch
    import transformers

    info = {
        "python": platform.python_version(), "executable": sys.executable, "cpus": os.cpu_count(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "transformers": transformers.__version__,
        "accelerate": accelerate.__version__, "cuda_available": torch.cuda.is_available(),
    }  # fmt: skip
    try:
        info["peft"] = version("peft")
    except Exception as e:  # noqa: BLE001
        info["peft"] = f"missing ({one_line(e)})"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info |= {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                 "capability": f"{props.major}.{props.minor}", "bf16": torch.cuda.is_bf16_supported()}  # fmt: skip
    deps, missing = {}, []
    for module, dist, needed in DEPENDENCIES:
        try:
            importlib.import_module(module)
            deps[module] = version(dist)
        except Exception as e:  # noqa: BLE001  (a broken install raises anything)
            deps[module] = f"does not import ({one_line(e)})"
            missing += [module] if needed else []
    info["dependencies"] = deps
    info["line"] = (
        f"python {info['python']}, torch {info['torch']} (cuda {info['torch_cuda']}), transformers "
        f"{info['transformers']}; {info.get('gpu', 'no GPU')}, {info.get('gpu_memory_gib', '-')} GiB, bf16 {info.get('bf16', '-')}"
    )
    if st["device"] == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda, but torch sees no GPU")
    if missing:
        raise RuntimeError(f"l2s needs {', '.join(missing)}, which do not import (carry `make gpu-bundle`)")
    return info


def step_model(st: dict) -> dict:
    """A random Llama with a chat template, saved as an HF folder (and a small one for vllm-args)."""
    import random

    from transformers import AutoTokenizer

    from l2s.embedded.model import save_random_model
    from l2s.embedded.tokenizer import build_tokenizer
    from l2s.tasks.arith import ArithTask, long_trace

    if st["args"].tokenizer:
        tokenizer, source = AutoTokenizer.from_pretrained(st["args"].tokenizer), st["args"].tokenizer
    else:
        rng = random.Random(0)
        problems = ArithTask().problems("train", 200)
        tokenizer = build_tokenizer([p.prompt for p in problems] + [long_trace(p, rng) for p in problems])
        source = "built from arith text (l2s.embedded.tokenizer)"
    st["model"] = save_random_model(st["work"] / "random", tokenizer, size=st["cfg"]["size"])
    st["second"] = save_random_model(st["work"] / "random-pico", tokenizer, size="pico", seed=1)
    size = parameters(st["model"]) / 1e6
    return {"line": f"random Llama, {size:.1f}M parameters, vocab {len(tokenizer)}", "parameters_m": round(size, 1),
            "tokenizer": source, **st["cfg"]["size"]}  # fmt: skip


def step_engine(st: dict) -> dict:
    import inspect

    import torch

    from l2s.engines import get_engine, resolve_engine
    from l2s.engines.base import SamplingParams
    from l2s.engines.hf import HFEngine
    from l2s.tasks.arith import ArithTask

    path, cfg, device = str(needs_model(st)), st["cfg"], st["device"]
    out: dict = {"auto_resolves_to": resolve_engine("auto", path)}
    # 1. What the commands get: `l2s eval/sample/derive --engine hf` (and auto without vLLM).
    default = get_engine("hf", path)
    out["get_engine_default_device"] = str(default.model.device)
    default.close()
    if torch.cuda.is_available() and out["get_engine_default_device"] == "cpu":
        param = inspect.signature(HFEngine.__init__).parameters["device"].default
        finding(
            st,
            f"get_engine('hf', path) loads the model on cpu although cuda is available (HFEngine device "
            f"default {param!r}; auto -> {out['auto_resolves_to']} without vLLM): l2s eval, sample, derive's "
            'sampling and the hf server run on the CPU unless given engine_options {"device": "cuda"}',
        )
    # 2. Greedy throughput and repeatability on --device, asked for through engine_options.
    problems = ArithTask().problems("test", cfg["prompts"])
    prompts = [p.messages() for p in problems]
    greedy = SamplingParams(temperature=0, max_tokens=cfg["tokens"])
    runs = {}
    for dtype in ("bfloat16", "float32"):
        engine = get_engine("hf", path, batch_size=64, engine_options={"device": device, "dtype": dtype})
        engine.generate(prompts[:4], SamplingParams(temperature=0, max_tokens=4))  # warm-up
        times, ids = [], []
        for _ in range(2):
            t = time.perf_counter()
            gens = engine.generate(prompts, greedy)
            times.append(time.perf_counter() - t)
            ids.append([g[0].token_ids for g in gens])
        tokens = sum(len(i) for i in ids[0])
        runs[dtype] = {"device": str(engine.model.device), "model_dtype": str(engine.model.dtype),
                       "tokens": tokens, "seconds": [round(s, 3) for s in times],
                       "tokens_per_s": round(tokens / min(times), 1), "same_output_twice": ids[0] == ids[1]}  # fmt: skip
        runs[dtype]["_ids"] = ids[0]
        if dtype == "bfloat16":
            out["budget"] = thinking_budget(engine, problems, cfg)
        engine.close()
    same = sum(a == b for a, b in zip(runs["bfloat16"].pop("_ids"), runs["float32"].pop("_ids"), strict=True))
    out |= {"prompts": len(prompts), "max_tokens": cfg["tokens"], "runs": runs,
            "bf16_rows_equal_to_fp32": f"{same}/{len(prompts)}"}  # fmt: skip
    if st["device"] == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    b = out["budget"]
    out["line"] = (
        f"get_engine default device {out['get_engine_default_device']}; "
        + " | ".join(f"{k} on {v['device']}: {v['tokens_per_s']} tok/s" for k, v in runs.items())
        + f"; budget {b['budget']}: max reasoning {b['max_reasoning_tokens']}, {b['rows_at_budget']}/{b['rows']} rows at it"
    )
    off = [k for k, v in runs.items() if not v["device"].startswith(device)]
    if off:
        raise RuntimeError(f"engine_options device {device!r} left the model on {runs[off[0]]['device']}")
    bad = [d for d, r in runs.items() if not r["same_output_twice"]]
    if bad:
        raise RuntimeError(f"greedy output differed between two runs in {', '.join(bad)}")
    if not out["budget"]["ok"]:
        raise RuntimeError(f"thinking budget not enforced: {out['budget']}")
    return out


def thinking_budget(engine, problems, cfg) -> dict:
    """Prompts that open <think> (as R1-distill templates do): every row's reasoning must stay <= budget,
    and a random model that never closes the block on its own must be made to close it at the budget."""
    from l2s.engines.base import SamplingParams
    from l2s.engines.completion import render_prompt

    texts = [render_prompt(engine.tokenizer, p.messages()).text + "<think>\n" for p in problems]
    params = SamplingParams(temperature=0, max_tokens=cfg["budget_tokens"], max_thinking_tokens=cfg["budget"])
    gens = [g[0] for g in engine.generate(texts, params)]
    reasoning = [g.reasoning_tokens for g in gens]
    closed = sum(engine.markers.close_ids[0] in g.token_ids for g in gens)
    at_budget = sum(r == cfg["budget"] for r in reasoning)
    return {"budget": cfg["budget"], "max_reasoning_tokens": max(reasoning), "rows_at_budget": at_budget,
            "rows_closed": closed, "rows": len(gens), "ok": max(reasoning) <= cfg["budget"] and at_budget > 0}  # fmt: skip


def step_rl(st: dict, precision: str) -> dict:
    return worker(st, "rl", precision)


def step_vllm_args(st: dict) -> dict:
    from l2s.engines.vllm_args import GPU_MEMORY_BUDGET, engine_args, memory_shares, weight_bytes

    models = {"long": needs_model(st), "short": st["second"]}
    shares = memory_shares({name: weight_bytes(p) for name, p in models.items()})
    args = {
        name: engine_args(p, device="gpu", offline=False, memory_share=shares[name])
        for name, p in models.items()
    }
    rl = engine_args(models["long"], device="gpu", memory_share=0.5, sleep_mode=True, weights_in_memory=True)
    for name, a in {**args, "rl-rollouts": rl}.items():
        print(f"  engine_args[{name}] = {json.dumps(a, default=str)}", flush=True)
    total = sum(a["gpu_memory_utilization"] for a in args.values())
    if total > GPU_MEMORY_BUDGET + 1e-9 or any("enforce_eager" in a for a in args.values()):
        raise RuntimeError(f"GPU args wrong: utilization sum {total}, enforce_eager in {list(args)}")
    shown = ", ".join(f"{name} {a['gpu_memory_utilization']}" for name, a in args.items())
    line = f"two models on one GPU: gpu_memory_utilization {shown} (sum {total:.4f}); no enforce_eager"
    return {"line": line, "engine_args": args, "rl_rollouts": rl}


def step_dpo(st: dict) -> dict:
    import importlib

    try:
        importlib.import_module("trl")
    except Exception as e:  # noqa: BLE001
        raise Skipped(f"trl does not import ({one_line(e)})") from None
    return worker(st, "dpo", "auto")


# ---------------------------------------------------------------------------------------------------
# Workers: RL and DPO each run in a fresh process (accelerate keeps one mixed-precision setting per process).


def worker(st: dict, kind: str, precision: str) -> dict:
    result = st["work"] / f"{kind}-{precision}.json"
    cmd = [sys.executable, __file__, "--worker", kind, "--precision", precision, "--model", str(needs_model(st)),
           "--work", str(st["work"]), "--result", str(result), "--device", st["device"]]  # fmt: skip
    cmd += ["--small"] if st["small"] else []
    try:
        # Its output (progress, the Trainer's logs) goes to stderr: stdout stays the steps and the summary.
        proc = subprocess.run(cmd, timeout=st["args"].worker_timeout, stdout=sys.stderr)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"no result within {st['args'].worker_timeout}s") from None
    out = (
        json.loads(result.read_text())
        if result.is_file()
        else {"error": f"exit {proc.returncode}, no result"}
    )
    for line in out.pop("findings", []):
        finding(st, line)
    if "error" in out:
        raise RuntimeError(out["error"])
    return out


def run_worker(args) -> None:
    cfg = SMALL if args.small else FULL
    out: dict = {}
    try:
        out = (rl_worker if args.worker == "rl" else dpo_worker)(args, cfg, out)
    except Exception as e:  # noqa: BLE001  (reported to the parent as the step's one-line reason)
        traceback.print_exc()
        out["error"] = one_line(e)
    Path(args.result).write_text(json.dumps(out, default=str))
    sys.exit(1 if "error" in out else 0)


def rl_worker(args, cfg: dict, out: dict) -> dict:
    import torch
    from accelerate import PartialState

    from l2s.rl.config import RLConfig
    from l2s.rl.trainer import run_rl

    dest = Path(args.work) / f"rl-{args.precision}"
    rl = RLConfig(init=args.model, out=str(dest), force=True, task="arith", train_problems=200, iterations=3,
                  prompts_per_iteration=cfg["rl_prompts"], k=cfg["rl_k"], max_tokens=cfg["rl_tokens"],
                  minibatch_prompts=cfg["rl_prompts"], engine="hf", sampling="uniform",
                  length_penalty_weight=1.0, learning_rate=1e-5, save_every=100, seed=0,
                  mixed_precision=args.precision)  # fmt: skip
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    run_rl(rl)
    out["wall_s"] = round(time.perf_counter() - t, 1)
    out["device"] = str(PartialState().device)
    rows = [json.loads(line) for line in (dest / "metrics.jsonl").read_text().splitlines()]
    out |= {"iterations": len(rows), "iteration_s": [r["iteration_s"] for r in rows],
            "rollout_s": [r["rollout_s"] for r in rows], "train_s": [r["train_s"] for r in rows],
            "loss": [r["loss"] for r in rows], "gradient_steps": sum(r["gradient_steps"] for r in rows),
            "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}  # fmt: skip
    out["line"] = (
        f"{out['device']}: loss {[round(x, 4) for x in out['loss']]}, iteration s {out['iteration_s']}, "
        f"peak GPU memory {gib(out['peak_gpu_mem_gib'])}"
    )
    if cuda and out["device"] == "cpu":
        out.setdefault("findings", []).append("run_rl trained on cpu although cuda is available")
    if len(rows) != 3 or not all(math.isfinite(x) for x in out["loss"]) or not out["gradient_steps"]:
        out["error"] = f"expected 3 iterations with finite loss and gradient steps, got {out['loss']}"
    return out


def dpo_worker(args, cfg: dict, out: dict) -> dict:
    import torch

    import l2s.methods.dpo as dpo
    from l2s.engines.hf import HFEngine
    from l2s.methods.sampled_training import long_samples

    work = Path(args.work) / "dpo"
    cuda = torch.cuda.is_available()
    # 1. Derive's sampling step, as `l2s derive --method dpo` runs it (engine auto): where is the model?
    seen: list[str] = []
    setup = HFEngine._setup

    def spy(self, model, *a, **kw):
        seen.append(str(model.device))
        return setup(self, model, *a, **kw)

    HFEngine._setup = spy
    try:
        sample_cfg = dpo.DPOMethodConfig(long=args.model, out=str(work / "sampled"), task="arith", limit=2,
                                         n=2, max_tokens=8)  # fmt: skip
        long_samples(sample_cfg, Path(args.model), work / "sampled.work")
    finally:
        HFEngine._setup = setup
    out["sampling_device"] = seen[0] if seen else "not an hf engine"
    if cuda and out["sampling_device"] == "cpu":
        out["findings"] = [
            "derive's sampling (shortest-rs, dpo: l2s.methods.sampled_training.long_samples -> l2s.sampling.run "
            "-> get_engine) runs the long model on cpu although cuda is available; only training uses the GPU"
        ]
    # 2. DPO for 5 steps from a samples file: 5 prompts x 3 pairs, batch 3, one epoch.
    samples = work / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in dpo_records()))
    trained: dict = {}
    save = dpo.save_trained

    def record(trainer, *a, **kw):
        p = next(trainer.model.parameters())
        trained.update(device=str(p.device), param_dtype=str(p.dtype), bf16=trainer.args.bf16)
        return save(trainer, *a, **kw)

    dpo.save_trained = record
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    try:
        t = time.perf_counter()
        dest = dpo.run(dpo.DPOMethodConfig(long=args.model, samples=str(samples), out=str(work / "out"), force=True,
                                           epochs=1, batch_size=3, learning_rate=1e-5, max_length=128,
                                           save_steps=1000))  # fmt: skip
        out["wall_s"] = round(time.perf_counter() - t, 1)
    finally:
        dpo.save_trained = save
    metrics = json.loads((dest / "l2s.json").read_text())["metrics"]
    out |= {"trainer": trained, "pairs": metrics["pairs"], "train_steps": metrics["train_steps"],
            "train_loss": metrics["train_loss"],
            "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}  # fmt: skip
    out["line"] = (
        f"sampled on {out['sampling_device']}; trained on {trained.get('device')} (bf16 {trained.get('bf16')}): "
        f"{metrics['train_steps']} steps, loss {metrics['train_loss']:.4f}, peak GPU memory {gib(out['peak_gpu_mem_gib'])}"
    )
    if cuda and trained.get("device") == "cpu":
        out.setdefault("findings", []).append("DPO trained on cpu although cuda is available")
    if metrics["train_steps"] != 5 or not math.isfinite(metrics["train_loss"]):
        out["error"] = (
            f"expected 5 steps with a finite loss, got {metrics['train_steps']}, {metrics['train_loss']}"
        )
    return out


def dpo_records() -> list[dict]:
    """Sample records as l2s.sampling writes them: per prompt a long and a short correct answer, a wrong
    one and a truncated one, so the 1.5x rule makes 3 pairs per prompt (5 prompts: 15 pairs)."""
    recs = []
    for p in range(5):
        a, b = 10 + p, 30 + p
        rows = [(f"<think>\n{a} + {b}: {a} + {b - 1} = {a + b - 1}, plus 1 is {a + b}\n</think>\nAnswer: {a + b}", 24, True, "stop"),
                (f"<think>\n</think>\nAnswer: {a + b}", 6, True, "stop"),
                (f"<think>\n</think>\nAnswer: {a + b + 1}", 6, False, "stop"),
                (f"<think>\n</think>\nAnswer: {a}", 5, True, "length")]  # fmt: skip
        for i, (completion, tokens, correct, finish) in enumerate(rows):
            recs.append(dict(prompt_id=f"p{p}", sample_idx=i, prompt=f"Compute {a} + {b}. End with 'Answer: N'.",
                             completion=completion, completion_tokens=tokens, reasoning_tokens=0,
                             finish_reason=finish, correct=correct))  # fmt: skip
    return recs


# ---------------------------------------------------------------------------------------------------
# The run: steps in order, the summary after each (so a killed run still leaves what it saw).


def finding(st: dict, line: str) -> None:
    if line not in st["findings"]:
        st["findings"].append(line)


def needs_model(st: dict) -> Path:
    if "model" not in st:
        raise Skipped("no model (the model step failed)")
    return st["model"]


def parameters(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def resolve_device(st: dict) -> None:
    import torch

    if st["device"] == "auto":
        st["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    st["small"] = st["args"].small or st["device"] == "cpu"
    st["cfg"] = SMALL if st["small"] else FULL


def summary_text(report: dict) -> str:
    lines = [f"l2s GPU check, {report['date']} — device {report['device']}{' (small)' if report['small'] else ''}, "
             f"code {report['code']}, host {report['host']}"]  # fmt: skip
    for s in report["steps"]:
        lines.append(f"  {s['name']:<10} {s['status']:<8} {s['seconds']:>7.1f}s  {s['line']}")
    lines.append("findings:" if report["findings"] else "findings: none")
    lines += [f"  - {f}" for f in report["findings"]]
    return "\n".join(lines)


def gib(value: float | None) -> str:
    return "n/a (no GPU)" if value is None else f"{value} GiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    ap.add_argument("--small", action="store_true", help="a ~4M model and fewer prompts (always on the CPU)")
    ap.add_argument("--out", help="the JSON summary (default: $OUT/gpu_check.json when $OUT is set)")
    ap.add_argument("--install-bundle", action="store_true", help="first install `make gpu-bundle`'s wheels")
    ap.add_argument("--tokenizer", help="a tokenizer folder to use (default: build the embedded one)")
    ap.add_argument("--skip", default="", help="comma-separated steps to leave out")
    ap.add_argument("--worker-timeout", type=float, default=240, help="seconds for each RL / DPO process")
    for hidden in ("--worker", "--precision", "--model", "--work", "--result"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.device == "cpu":  # before torch loads: accelerate and the Trainer then stay on the CPU too
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never wait on an unreachable hub
    sys.path.insert(0, str(ROOT))  # l2s from this tree, installed or not
    if args.worker:
        return run_worker(args)
    out_dir = os.environ.get("OUT")
    dest = Path(args.out) if args.out else Path(out_dir) / "gpu_check.json" if out_dir else None
    if dest is not None and dest.exists():
        ap.error(f"{dest} exists; remove it or pass another --out")
    skip = set(filter(None, args.skip.split(",")))
    steps = [("bundle", step_bundle)] if args.install_bundle else []
    steps += [("env", step_env), ("model", step_model), ("engine", step_engine),
              ("rl-bf16", lambda st: step_rl(st, "bf16")), ("rl-no", lambda st: step_rl(st, "no")),
              ("vllm-args", step_vllm_args), ("dpo", step_dpo)]  # fmt: skip
    report = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "host": platform.node(),
              "code": git_commit(), "argv": sys.argv[1:], "device": args.device, "small": args.small,
              "steps": [], "findings": []}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="l2s-gpu-check-") as tmp:
        st = {"args": args, "work": Path(tmp), "findings": report["findings"], "device": args.device}
        for name, fn in steps:
            if name in skip:
                continue
            if name not in ("bundle", "env") and "cfg" not in st:
                resolve_device(st)  # after env: torch is known to import, l2s's dependencies were checked
                report |= {"device": st["device"], "small": st["small"]}
            print(f"== {name}", flush=True)
            t = time.perf_counter()
            try:
                details, status = fn(st), "ok"
                line = details.pop("line")
            except Skipped as e:
                details, status, line = {}, "skipped", str(e)
            except Exception as e:  # noqa: BLE001  (one step's failure must not stop the others)
                traceback.print_exc()
                details, status, line = {}, "FAILED", one_line(e)
            seconds = round(time.perf_counter() - t, 1)
            report["steps"].append({"name": name, "status": status, "seconds": seconds, "line": line,
                                    "details": details})  # fmt: skip
            print(f"   {status}: {line}", flush=True)
            if dest is not None:  # after every step, so a run stopped midway still leaves what it saw
                write_json(report, dest)
    print("\n" + summary_text(report), flush=True)
    if dest is not None:
        print(f"(JSON: {dest})")
    sys.exit(1 if any(s["status"] == "FAILED" for s in report["steps"]) else 0)


def write_json(report: dict, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    part.write_text(json.dumps(report, indent=2, default=str) + "\n")
    part.replace(dest)


if __name__ == "__main__":
    main()
