"""Check l2s's GPU path on one machine within a time budget, and record what it measured (dated, as a table
and as JSON with units).

Each step is timed and reported ok, FAILED or skipped with a one-line reason; a failure does not stop the
steps after it. Steps run in this order, the required measurements first; a step is skipped when less of
the budget (--budget-minutes, default 8) is left than it needs. docs/GPU.md says how to run this on a
borrowed GPU machine (`bash benchmarks/gpu_check.sh OUTDIR`).
  bundle      (--install-bundle) install the wheels of `make gpu-bundle` (.gpu-bundle/wheels) into
              .gpu-bundle/site, only those missing here or newer than what is installed
  env         Python, torch, transformers, accelerate, peft; the GPU, its memory, bf16; which of l2s's
              dependencies import (checked before any l2s module is imported)
  model       a random-weight Qwen2 (Qwen2ForCausalLM) built on the device from a config of Qwen2.5-0.5B's
              shape (~494M parameters: its 151,936 embedding rows, tied) with the embedded family's tokenizer,
              saved as an HF folder with a chat template (bf16 on a GPU); --smoke: a ~0.5M one, in fp32
  engine      the hf engine in bf16: where `get_engine("hf", path)` puts the model; greedy tokens/s for a
              batch of prompts (twice: the same tokens) and for prompts sent one at a time; thinking-budget
              forcing (reasoning <= budget)
  sft         `l2s derive --method shortest-rs` (l2s.methods.shortest_rs.run) from a samples file: TRL's
              SFTTrainer in bf16 for a few steps: steps/s, tokens/s, peak GPU memory
  rl-bf16     `run_rl` (engine hf: rollouts by the policy itself, task arith) for 3 iterations, mixed
              precision bf16: s/iteration, tokens learned/s, finite loss, peak GPU memory
  server      l2s's server (l2s.server, hf backend) on the model; 64 concurrent streaming chat requests
              (httpx): tokens/s, p50/p99 latency
  vllm-args   `engine_args(device="gpu")` for two models sharing one GPU (pure; vLLM is not needed)
  engine-fp32 the batched generation again in fp32: tokens/s, rows equal to bf16's
  rl-no       as rl-bf16 with mixed_precision "no"
  dpo         derive's sampling device, then `l2s derive --method dpo` for 5 steps from a samples file
RL, SFT and DPO each run in a fresh process, as their commands do (accelerate keeps one precision per
process). Where l2s runs on the CPU although a GPU is there, the summary lists it under "findings".

    python benchmarks/gpu_check.py [--smoke] [--device auto|cuda|cpu] [--budget-minutes 8] [--out FILE]
                                   [--install-bundle] [--skip STEP,...]
Without a GPU (or with --device cpu) it runs the --smoke sizes on the CPU. JSON goes to --out, else to
$OUT/gpu_check.json when $OUT is set. Exit status 1 when a step FAILED.
"""

from __future__ import annotations

import argparse
import contextlib
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
# Qwen2.5-0.5B's shape (its config.json): 24 x (attention 1.8M + MLP 3 x 896 x 4864) = 358M, plus 151,936 x 896
# = 136M tied embedding rows: 494M. The embedded tokenizer has a few hundred tokens; the embedding keeps
# Qwen2.5's rows so the output layer costs what it costs there (ids past the tokenizer decode to nothing).
FULL = dict(
    size=dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
              num_key_value_heads=2), vocab=151_936,
    prompts=64, tokens=128, one_at_a_time=8, budget=16, budget_tokens=64, sft_rows=80, sft_batch=8,
    rl_prompts=16, rl_k=4, rl_tokens=128, clients=64, rounds=2, server_tokens=128,
)  # fmt: skip
# ~0.5M parameters (vocab = the tokenizer's): the whole check runs in about a minute on 2 CPU cores.
SMOKE = dict(
    size=dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2), vocab=None,
    prompts=8, tokens=16, one_at_a_time=2, budget=8, budget_tokens=24, sft_rows=6, sft_batch=2,
    rl_prompts=2, rl_k=2, rl_tokens=16, clients=64, rounds=1, server_tokens=8,
)  # fmt: skip
# About how long each step takes on one H200 (seconds): it is skipped when less of the budget is left.
NEEDS = {"model": 30, "engine": 60, "sft": 75, "rl-bf16": 75, "server": 60, "vllm-args": 5,
         "engine-fp32": 30, "rl-no": 75, "dpo": 90}  # fmt: skip
# Imported by the steps below: (module, distribution, needed by every l2s step or only some).
DEPENDENCIES = [
    ("pydantic", "pydantic", True), ("pydantic_core", "pydantic_core", True),
    ("math_verify", "math-verify", True), ("latex2sympy2_extended", "latex2sympy2_extended", True),
    ("yaml", "PyYAML", True), ("matplotlib", "matplotlib", False),
    ("datasets", "datasets", False), ("trl", "trl", False), ("mergekit", "mergekit", False),
    ("pyarrow", "pyarrow", False),
] + [(m, m, False) for m in ("fastapi", "starlette", "uvicorn", "httpx", "prometheus_client")]  # fmt: skip
SERVER_MODULES = ("fastapi", "starlette", "uvicorn", "httpx", "prometheus_client")  # the server + its client


class Skipped(Exception):
    """A step that cannot run here (its reason is reported; it is not a failure)."""


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}"


def fig(value: float | None, unit: str, digits: int = 2) -> dict:
    """A measurement with its unit, as it lands in the JSON.

    >>> fig(1234.5678, "tokens/s")
    {'value': 1234.57, 'unit': 'tokens/s'}
    """
    return {"value": None if value is None else round(value, digits), "unit": unit}


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (as benchmarks/serving.py).

    >>> percentile([3.0, 1.0, 2.0, 4.0], 50), percentile([3.0, 1.0, 2.0, 4.0], 99)
    (3.0, 4.0)
    """
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))]


# ---------------------------------------------------------------------------------------------------
# Steps. Each takes the shared state and returns what it saw ("line", "figures", details); findings go
# to state["findings"].


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
    st["gpu"] = info.get("gpu")
    if st["device"] == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda, but torch sees no GPU")
    if missing:
        raise RuntimeError(f"l2s needs {', '.join(missing)}, which do not import (carry `make gpu-bundle`)")
    return info


def step_model(st: dict) -> dict:
    """A random Qwen2 with a chat template, saved as an HF folder (and a pico Llama for vllm-args)."""
    import random

    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

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
    cfg, device = st["cfg"], st["device"]
    vocab = max(cfg["vocab"] or 0, len(tokenizer))
    config = Qwen2Config(vocab_size=vocab, tie_word_embeddings=True, max_position_embeddings=32768,
                         rms_norm_eps=1e-6, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None, **cfg["size"])  # fmt: skip
    torch.manual_seed(0)
    t = time.perf_counter()
    with torch.device(device):  # built where it runs: initialising 0.5B parameters on a CPU takes long
        model = Qwen2ForCausalLM(config)
    model.to(torch.bfloat16 if device == "cuda" else torch.float32)  # as Qwen2.5 ships: bf16
    build_s = time.perf_counter() - t
    params = sum(p.numel() for p in model.parameters())  # the tied output layer counts once
    path = st["work"] / "random-qwen2"
    model.save_pretrained(path)
    GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    ).save_pretrained(path)
    tokenizer.save_pretrained(path)
    dtype = str(model.dtype)
    del model
    free_memory()
    st["model"] = path
    st["second"] = save_random_model(st["work"] / "random-pico", tokenizer, size="pico", seed=1)
    line = (f"random Qwen2ForCausalLM, {params / 1e6:.1f}M parameters ({dtype}, built on {device} in "
            f"{build_s:.1f}s), embedding rows {vocab}, tokenizer {len(tokenizer)} tokens")  # fmt: skip
    return {"line": line, "figures": {"parameters": fig(params / 1e6, "million", 1)},
            "architecture": "Qwen2ForCausalLM", "parameters": params, "vocab_size": vocab,
            "tokenizer_tokens": len(tokenizer), "dtype": dtype, "tokenizer": source, **cfg["size"]}  # fmt: skip


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
    # 2. Greedy bf16 generation on --device (asked for through engine_options): a batch, then one at a time.
    problems = ArithTask().problems("test", cfg["prompts"])
    prompts = [p.messages() for p in problems]
    greedy = SamplingParams(temperature=0, max_tokens=cfg["tokens"])
    engine = get_engine(
        "hf", path, batch_size=len(prompts), engine_options={"device": device, "dtype": "bfloat16"}
    )
    try:
        engine.generate(prompts[:4], SamplingParams(temperature=0, max_tokens=4))  # warm-up
        runs = [timed_ids(engine, prompts, greedy) for _ in range(2)]
        tokens = sum(len(i) for i in runs[0][1])
        batched = {"device": str(engine.model.device), "model_dtype": str(engine.model.dtype), "tokens": tokens,
                   "seconds": [round(s, 3) for s, _ in runs], "tokens_per_s": round(tokens / min(s for s, _ in runs), 1),
                   "same_output_twice": runs[0][1] == runs[1][1]}  # fmt: skip
        single, started = [], time.perf_counter()
        for p in prompts[: cfg["one_at_a_time"]]:  # at most a third of what is left, and at least one prompt
            if single and time.perf_counter() - started > min(60, left(st) / 3):
                break
            single.append(timed_ids(engine, [p], greedy))
        one_tokens, one_s = sum(len(ids[0]) for _, ids in single), sum(s for s, _ in single)
        one = {"prompts": len(single), "tokens": one_tokens, "seconds": round(one_s, 3),
               "tokens_per_s": round(one_tokens / one_s, 1),
               "rows_equal_to_batched": f"{sum(ids[0] == b for (_, ids), b in zip(single, runs[0][1], strict=False))}/{len(single)}"}  # fmt: skip
        out["budget"] = thinking_budget(engine, problems, cfg)
    finally:
        engine.close()
        free_memory()
    st["bf16_ids"] = runs[0][1]
    speedup = batched["tokens_per_s"] / one["tokens_per_s"]
    out |= {"prompts": len(prompts), "max_tokens": cfg["tokens"], "batched": batched, "one_at_a_time": one,
            "batched_speedup": round(speedup, 2)}  # fmt: skip
    out["figures"] = {"generation_batched": fig(batched["tokens_per_s"], "tokens/s", 1),
                      "generation_one_at_a_time": fig(one["tokens_per_s"], "tokens/s", 1),
                      "batched_speedup": fig(speedup, "x", 1)}  # fmt: skip
    b = out["budget"]
    out["line"] = (
        f"bf16 on {batched['device']}: {len(prompts)} prompts x {cfg['tokens']} tokens {batched['tokens_per_s']} tok/s, "
        f"one at a time ({one['prompts']} prompts) {one['tokens_per_s']} tok/s; budget {b['budget']}: max "
        f"reasoning {b['max_reasoning_tokens']}, {b['rows_at_budget']}/{b['rows']} rows at it"
    )
    if not batched["device"].startswith(device):
        out["error"] = f"engine_options device {device!r} left the model on {batched['device']}"
    elif not batched["same_output_twice"]:
        out["error"] = "greedy bf16 output differed between two runs"
    elif not b["ok"]:
        out["error"] = f"thinking budget not enforced: {b}"
    return out


def timed_ids(engine, prompts, params) -> tuple[float, list[list[int]]]:
    """(seconds, token ids per prompt) of one generate call (it returns lists: the GPU has finished)."""
    t = time.perf_counter()
    gens = engine.generate(prompts, params)
    return time.perf_counter() - t, [g[0].token_ids for g in gens]


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


def step_engine_fp32(st: dict) -> dict:
    from l2s.engines import get_engine
    from l2s.engines.base import SamplingParams
    from l2s.tasks.arith import ArithTask

    path, cfg = str(needs_model(st)), st["cfg"]
    if "bf16_ids" not in st:
        raise Skipped("no bf16 generation to compare with (the engine step did not finish)")
    prompts = [p.messages() for p in ArithTask().problems("test", cfg["prompts"])]
    engine = get_engine(
        "hf", path, batch_size=len(prompts), engine_options={"device": st["device"], "dtype": "float32"}
    )
    try:
        engine.generate(prompts[:4], SamplingParams(temperature=0, max_tokens=4))  # warm-up
        seconds, ids = timed_ids(engine, prompts, SamplingParams(temperature=0, max_tokens=cfg["tokens"]))
        device = str(engine.model.device)
    finally:
        engine.close()
        free_memory()
    rate = sum(len(i) for i in ids) / seconds
    same = sum(a == b for a, b in zip(st["bf16_ids"], ids, strict=True))
    return {"line": f"fp32 on {device}: {rate:.1f} tok/s; {same}/{len(ids)} rows equal to bf16's",
            "figures": {"generation_batched": fig(rate, "tokens/s", 1)}, "device": device,
            "seconds": round(seconds, 3), "bf16_rows_equal_to_fp32": f"{same}/{len(ids)}"}  # fmt: skip


def step_server(st: dict) -> dict:
    """l2s's server in a thread of this process (as benchmarks/serving.py and the server tests start it),
    then `clients` concurrent streaming chat requests, `rounds` each, through httpx."""
    import importlib

    import torch

    path, cfg, device = str(needs_model(st)), st["cfg"], st["device"]
    missing = []
    for module in SERVER_MODULES:
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001
            missing.append(module)
    if missing:
        raise Skipped(
            f"{', '.join(missing)} do not import here: add them to the Makefile's GPU_WHEELS (docs/GPU.md)"
        )
    map_server_package()
    from l2s.server.runner import serve_in_thread
    from l2s.server.settings import ServeSettings
    from l2s.tasks.arith import ArithTask

    clients, tokens = cfg["clients"], cfg["server_tokens"]
    options = {"device": device, "dtype": "bfloat16" if device == "cuda" else "float32"}
    settings = ServeSettings(long=path, short=path, engine="hf", engine_options=options, port=0,
                             max_batch=clients, max_concurrent=2 * clients, log_level="warning")  # fmt: skip
    problems = ArithTask().problems("test", clients * cfg["rounds"])
    bodies = [{"model": "l2s-long", "messages": p.messages(), "max_tokens": tokens, "temperature": 0,
               "stream": True, "stream_options": {"include_usage": True}} for p in problems]  # fmt: skip
    t = time.perf_counter()
    with serve_in_thread(settings) as srv:
        startup = time.perf_counter() - t
        url, backend = f"{srv.base_url}/chat/completions", srv.app.state.endpoint.backends["l2s-long"]
        served_on = str(backend.engine.model.device)
        stream_load(url, bodies[:1], 1, timeout=left(st))  # warm-up, and the path works
        before = backend.batcher.batches
        wall, results = stream_load(url, bodies, clients, timeout=left(st))
        calls = backend.batcher.batches - before
    free_memory()
    if torch.cuda.is_available() and served_on == "cpu":
        finding(st, "the server's hf backend runs on cpu although cuda is available")
    latency, done = [r[0] for r in results], sum(r[1] for r in results)
    out = {"requests": len(results), "clients": clients, "max_tokens": tokens, "device": served_on,
           "engine_options": options, "startup_s": round(startup, 1), "wall_s": round(wall, 3),
           "completion_tokens": done, "tokens_per_s": round(done / wall, 1), "generate_calls": calls,
           "latency_p50_s": round(percentile(latency, 50), 3), "latency_p99_s": round(percentile(latency, 99), 3),
           "chunks": sum(r[2] for r in results)}  # fmt: skip
    out["figures"] = {"throughput": fig(done / wall, "tokens/s", 1), "latency_p50": fig(percentile(latency, 50), "s", 3),
                      "latency_p99": fig(percentile(latency, 99), "s", 3), "concurrent": fig(clients, "requests", 0)}  # fmt: skip
    out["line"] = (
        f"{len(results)} streamed requests, {clients} at once, on {served_on}: {out['tokens_per_s']} tok/s, "
        f"latency p50 {out['latency_p50_s']}s p99 {out['latency_p99_s']}s, {calls} generate calls"
    )
    if len(results) != len(bodies) or any(r[1] == 0 for r in results):
        out["error"] = f"expected {len(bodies)} answers with tokens, got {[r[1] for r in results]}"
    return out


def stream_load(url: str, bodies: list[dict], clients: int, timeout: float) -> tuple[float, list[tuple]]:
    """`clients` concurrent clients, each sending its next streaming request when its last one has ended.
    Returns (wall seconds, per request (latency s, completion tokens from the usage chunk, chunks))."""
    import asyncio

    import httpx

    async def one(client: httpx.AsyncClient, body: dict) -> tuple:
        t, usage, chunks, done = time.perf_counter(), None, 0, False
        async with client.stream("POST", url, json=body) as r:
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}: {(await r.aread()).decode()[:200]}")
            async for line in r.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    event, chunks = json.loads(line.removeprefix("data: ")), chunks + 1
                    if "error" in event:
                        raise RuntimeError(f"stream error: {event['error']}")
                    usage = event.get("usage") or usage
        if not done or usage is None:
            raise RuntimeError("a stream ended without its usage chunk and data: [DONE]")
        return time.perf_counter() - t, usage["completion_tokens"], chunks

    async def main() -> tuple[float, list[tuple]]:
        queue, results = list(bodies), []
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

            async def worker() -> None:
                while queue:
                    results.append(await one(client, queue.pop(0)))

            t = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(clients)))
            return time.perf_counter() - t, results

    return asyncio.run(main())


def map_server_package() -> None:
    """pyproject maps the top-level server/ folder to the package l2s.server. Where l2s runs from this tree
    without being installed (the GPU machine), map it here the same way."""
    import importlib.util

    import l2s

    if importlib.util.find_spec("l2s.server") is not None:
        return
    spec = importlib.util.spec_from_file_location(
        "l2s.server", ROOT / "server" / "__init__.py", submodule_search_locations=[str(ROOT / "server")]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["l2s.server"] = module
    spec.loader.exec_module(module)
    l2s.server = module


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


def step_trl(st: dict, kind: str) -> dict:
    import importlib

    needs_model(st)
    try:
        importlib.import_module("trl")
    except Exception as e:  # noqa: BLE001
        raise Skipped(f"trl does not import ({one_line(e)})") from None
    return worker(st, kind, "auto")


# ---------------------------------------------------------------------------------------------------
# Workers: RL, SFT and DPO each run in a fresh process (accelerate keeps one mixed-precision setting per process).


def worker(st: dict, kind: str, precision: str) -> dict:
    result = st["work"] / f"{kind}-{precision}.json"
    cmd = [sys.executable, __file__, "--worker", kind, "--precision", precision, "--model", str(needs_model(st)),
           "--work", str(st["work"]), "--result", str(result), "--device", st["device"]]  # fmt: skip
    cmd += ["--smoke"] if st["smoke"] else []
    timeout = max(1.0, min(st["args"].worker_timeout, left(st)))
    try:
        # Its output (progress, the Trainer's logs) goes to stderr: stdout stays the steps and the summary.
        proc = subprocess.run(cmd, timeout=timeout, stdout=sys.stderr)
    except subprocess.TimeoutExpired:
        raise RuntimeError(
            f"no result within {timeout:.0f}s (worker timeout or what was left of the budget)"
        ) from None
    out = (
        json.loads(result.read_text())
        if result.is_file()
        else {"error": f"exit {proc.returncode}, no result"}
    )
    for line in out.pop("findings", []):
        finding(st, line)
    out.setdefault("line", out.get("error", ""))
    return out


def run_worker(args) -> None:
    cfg = SMOKE if args.smoke else FULL
    out: dict = {}
    try:
        out = {"rl": rl_worker, "sft": sft_worker, "dpo": dpo_worker}[args.worker](args, cfg, out)
    except Exception as e:  # noqa: BLE001  (reported to the parent as the step's one-line reason)
        traceback.print_exc()
        out["error"] = one_line(e)
    Path(args.result).write_text(json.dumps(out, default=str))
    sys.exit(1 if "error" in out else 0)


def rl_worker(args, cfg: dict, out: dict) -> dict:
    import torch
    from accelerate import PartialState

    import l2s.rl.trainer as trainer
    from l2s.rl.config import RLConfig

    try:
        import matplotlib  # noqa: F401  (only the training curve needs it)
    except Exception as e:  # noqa: BLE001
        trainer.plot_curve = lambda *a, **kw: None
        out["curve"] = f"not drawn: matplotlib does not import ({one_line(e)})"
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
    trainer.run_rl(rl)
    out["wall_s"] = round(time.perf_counter() - t, 1)
    out["device"] = str(PartialState().device)
    rows = [json.loads(line) for line in (dest / "metrics.jsonl").read_text().splitlines()]
    out |= {"iterations": len(rows), "prompts": cfg["rl_prompts"], "k": cfg["rl_k"], "max_tokens": cfg["rl_tokens"],
            "iteration_s": [r["iteration_s"] for r in rows], "rollout_s": [r["rollout_s"] for r in rows],
            "train_s": [r["train_s"] for r in rows], "trained_tokens": [r["trained_tokens"] for r in rows],
            "loss": [r["loss"] for r in rows], "gradient_steps": sum(r["gradient_steps"] for r in rows),
            "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}  # fmt: skip
    steady = rows[1:] or rows  # the first iteration pays one-off costs (kernels, allocator)
    per_iteration = sum(r["iteration_s"] for r in steady) / len(steady)
    learned = sum(r["trained_tokens"] for r in steady) / sum(r["iteration_s"] for r in steady)
    out |= {"s_per_iteration": round(per_iteration, 3), "tokens_learned_per_s": round(learned, 1)}
    out["figures"] = {"iteration": fig(per_iteration, "s/iteration", 3), "tokens_learned": fig(learned, "tokens/s", 1),
                      "peak_gpu_memory": fig(out["peak_gpu_mem_gib"], "GiB")}  # fmt: skip
    out["line"] = (
        f"{out['device']}: {per_iteration:.2f} s/iteration, {learned:.0f} tokens learned/s (after the first "
        f"iteration), loss {[round(x, 4) for x in out['loss']]}, peak GPU memory {gib(out['peak_gpu_mem_gib'])}"
    )
    if cuda and out["device"] == "cpu":
        out.setdefault("findings", []).append("run_rl trained on cpu although cuda is available")
    if len(rows) != 3 or not all(math.isfinite(x) for x in out["loss"]) or not out["gradient_steps"]:
        out["error"] = f"expected 3 iterations with finite loss and gradient steps, got {out['loss']}"
    return out


def sft_worker(args, cfg: dict, out: dict) -> dict:
    """`l2s derive --method shortest-rs --samples FILE`: selection, then TRL's SFTTrainer, then the save."""
    import torch
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    import l2s.methods.shortest_rs as shortest_rs

    work = Path(args.work) / "sft"
    work.mkdir(parents=True, exist_ok=True)
    samples = work / "samples.jsonl"
    records = sft_records(AutoTokenizer.from_pretrained(args.model), cfg["sft_rows"])
    samples.write_text("".join(json.dumps(r) + "\n" for r in records))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    clock: dict = {}
    with trainer_clock(SFTTrainer, clock):
        dest = shortest_rs.run(shortest_rs.ShortestRSConfig(
            long=args.model, samples=str(samples), out=str(work / "out"), force=True, epochs=1,
            batch_size=cfg["sft_batch"], learning_rate=1e-5, max_length=256, save_steps=1000))  # fmt: skip
    metrics = json.loads((dest / "l2s.json").read_text())["metrics"]
    return trained(out, clock, metrics, math.ceil(cfg["sft_rows"] / cfg["sft_batch"]), cuda, "SFT")


def sft_records(tokenizer, rows: int) -> list[dict]:
    """One correct long answer per arith train problem, as l2s.sampling writes sample records."""
    import random

    from l2s.tasks.arith import ArithTask, long_trace

    rng = random.Random(0)
    recs = []
    for p in ArithTask().problems("train", rows):
        completion = long_trace(p, rng)
        tokens = len(tokenizer(completion, add_special_tokens=False)["input_ids"])
        recs.append(dict(prompt_id=p.id, sample_idx=0, prompt=p.prompt, completion=completion,
                         completion_tokens=tokens, reasoning_tokens=0, finish_reason="stop", correct=True))  # fmt: skip
    return recs


@contextlib.contextmanager
def trainer_clock(cls, clock: dict):
    """Patch a TRL trainer class's `train` to record, into `clock`: its device, parameter dtype and bf16
    flag, the tokens of its dataset, its seconds, and the time at the end of every optimizer step."""
    import torch
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            if torch.cuda.is_available():
                torch.cuda.synchronize()  # the step's kernels have run: the times are the GPU's
            if not clock["step_ends"] and model is not None:  # where it trains, once training has begun
                p = next(model.parameters())
                clock.update(device=str(p.device), param_dtype=str(p.dtype))
            clock["step_ends"].append(time.perf_counter())

    train = cls.train

    def timed(self, *a, **kw):
        p, data = next(self.model.parameters()), self.train_dataset
        # SFT rows have input_ids; DPO rows prompt_, chosen_ and rejected_input_ids
        tokens = sum(len(x) for c in data.column_names if c.endswith("input_ids") for x in data[c]) or None
        clock.update(device=str(p.device), param_dtype=str(p.dtype), bf16=self.args.bf16, dataset_tokens=tokens,
                     step_ends=[])  # fmt: skip
        self.add_callback(StepClock())
        t = time.perf_counter()
        result = train(self, *a, **kw)
        clock["train_s"] = time.perf_counter() - t
        return result

    cls.train = timed
    try:
        yield clock
    finally:
        cls.train = train


def trained(out: dict, clock: dict, metrics: dict, steps: int, cuda: bool, name: str) -> dict:
    """A TRL run's figures from its clock and l2s.json metrics; an error when it did not take `steps` steps."""
    import torch

    ends = clock.get("step_ends", [])
    rate = (len(ends) - 1) / (ends[-1] - ends[0]) if len(ends) > 1 else None  # after the first step
    tokens = clock.get("dataset_tokens")
    out |= {"trainer": {k: clock.get(k) for k in ("device", "param_dtype", "bf16")},
            "train_steps": metrics["train_steps"], "train_loss": metrics["train_loss"],
            "train_s": round(clock.get("train_s", math.nan), 2), "steps_per_s": rate and round(rate, 3),
            "tokens_per_s": round(tokens / clock["train_s"], 1) if tokens and "train_s" in clock else None,
            "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}  # fmt: skip
    out["figures"] = {"steps": fig(rate, "steps/s", 3), "tokens": fig(out["tokens_per_s"], "tokens/s", 1),
                      "peak_gpu_memory": fig(out["peak_gpu_mem_gib"], "GiB")}  # fmt: skip
    device, bf16 = clock.get("device"), clock.get("bf16")
    out["line"] = (
        f"{name} on {device} ({clock.get('param_dtype')}, bf16 {bf16}): {metrics['train_steps']} steps, "
        f"{out['steps_per_s']} steps/s after the first, {out['tokens_per_s']} tokens/s, loss "
        f"{metrics['train_loss']:.4f}, peak GPU memory {gib(out['peak_gpu_mem_gib'])}"
    )
    if cuda and device == "cpu":
        out.setdefault("findings", []).append(f"{name} trained on cpu although cuda is available")
    if metrics["train_steps"] != steps or not math.isfinite(metrics["train_loss"]):
        out["error"] = (
            f"expected {steps} steps with a finite loss, got {metrics['train_steps']}, {metrics['train_loss']}"
        )
    return out


def dpo_worker(args, cfg: dict, out: dict) -> dict:
    import torch
    from trl import DPOTrainer

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
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    clock: dict = {}
    with trainer_clock(DPOTrainer, clock):
        dest = dpo.run(dpo.DPOMethodConfig(long=args.model, samples=str(samples), out=str(work / "out"), force=True,
                                           epochs=1, batch_size=3, learning_rate=1e-5, max_length=128,
                                           save_steps=1000))  # fmt: skip
    metrics = json.loads((dest / "l2s.json").read_text())["metrics"]
    out["pairs"] = metrics["pairs"]
    trained(out, clock, metrics, 5, cuda, "DPO")
    out["line"] = f"sampled on {out['sampling_device']}; " + out["line"]
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
# The run: steps in order within the budget, the JSON after each (so a killed run still leaves what it saw).

STEPS = [("env", step_env), ("model", step_model), ("engine", step_engine),
         ("sft", lambda st: step_trl(st, "sft")), ("rl-bf16", lambda st: worker(st, "rl", "bf16")),
         ("server", step_server),  # the required measurements end here
         ("vllm-args", step_vllm_args), ("engine-fp32", step_engine_fp32),
         ("rl-no", lambda st: worker(st, "rl", "no")), ("dpo", lambda st: step_trl(st, "dpo"))]  # fmt: skip


def finding(st: dict, line: str) -> None:
    if line not in st["findings"]:
        st["findings"].append(line)


def needs_model(st: dict) -> Path:
    if "model" not in st:
        raise Skipped("no model (the model step failed)")
    return st["model"]


def left(st: dict) -> float:
    """Seconds left of the budget."""
    return st["deadline"] - time.monotonic()


def free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


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
    st["smoke"] = st["args"].smoke or st["device"] == "cpu"
    st["cfg"] = SMOKE if st["smoke"] else FULL


def figures_text(figures: dict) -> str:
    """The table's key figures.

    >>> figures_text({"throughput": fig(812.345, "tokens/s", 1), "peak_gpu_memory": fig(None, "GiB")})
    'throughput 812.3 tokens/s; peak_gpu_memory n/a GiB'
    """
    shown = {k: "n/a" if v["value"] is None else f"{v['value']:g}" for k, v in figures.items()}
    return "; ".join(f"{k} {shown[k]} {v['unit']}" for k, v in figures.items())


def summary_text(report: dict) -> str:
    gpu = f" ({report['gpu']})" if report.get("gpu") else ""
    lines = [f"l2s GPU check, {report['date']} — device {report['device']}{gpu}, "
             f"{'smoke' if report['smoke'] else 'full'} sizes, code {report['code']}, host {report['host']}; "
             f"budget {report['budget_minutes']:g} min, used {report['used_s']:.0f}s",
             f"  {'step':<12} {'status':<8} {'seconds':>8}  key figures (or what happened)"]  # fmt: skip
    for s in report["steps"]:
        shown = figures_text(s["figures"]) if s["status"] == "ok" and s["figures"] else s["line"]
        if s["status"] == "FAILED" and s["figures"]:  # measured, but a check failed
            shown += f" (measured: {figures_text(s['figures'])})"
        lines.append(f"  {s['name']:<12} {s['status']:<8} {s['seconds']:>8.1f}  {shown}")
    lines.append("findings:" if report["findings"] else "findings: none")
    lines += [f"  - {f}" for f in report["findings"]]
    return "\n".join(lines)


def gib(value: float | None) -> str:
    return "n/a (no GPU)" if value is None else f"{value} GiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    ap.add_argument("--smoke", "--small", dest="smoke", action="store_true",
                    help="a ~0.5M model and small counts (always so on the CPU): seconds, to prove the script")  # fmt: skip
    ap.add_argument("--budget-minutes", type=float, default=8.0, help="time for all steps; a step is skipped "
                    "when less is left than it needs")  # fmt: skip
    ap.add_argument("--out", help="the JSON summary (default: $OUT/gpu_check.json when $OUT is set)")
    ap.add_argument("--install-bundle", action="store_true", help="first install `make gpu-bundle`'s wheels")
    ap.add_argument("--tokenizer", help="a tokenizer folder to use (default: build the embedded one)")
    ap.add_argument("--skip", default="", help="comma-separated steps to leave out")
    ap.add_argument(
        "--worker-timeout", type=float, default=240, help="most seconds for each RL / SFT / DPO process"
    )
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
    unknown = set(filter(None, args.skip.split(","))) - {n for n, _ in STEPS} - {"bundle"}
    if unknown:
        ap.error(
            f"--skip: no step {', '.join(sorted(unknown))}; steps: bundle, {', '.join(n for n, _ in STEPS)}"
        )
    skip = set(filter(None, args.skip.split(",")))
    steps = ([("bundle", step_bundle)] if args.install_bundle else []) + STEPS
    started = time.monotonic()
    report = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "host": platform.node(),
              "code": git_commit(), "argv": sys.argv[1:], "device": args.device, "smoke": args.smoke,
              "budget_minutes": args.budget_minutes, "used_s": 0.0, "steps": [], "measurements": {},
              "findings": []}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="l2s-gpu-check-") as tmp:
        st = {"args": args, "work": Path(tmp), "findings": report["findings"], "device": args.device,
              "deadline": started + 60 * args.budget_minutes}  # fmt: skip
        for name, fn in steps:
            if name in skip:
                continue
            if name not in ("bundle", "env") and "cfg" not in st:
                resolve_device(st)  # after env: torch is known to import, l2s's dependencies were checked
                report |= {"device": st["device"], "smoke": st["smoke"], "gpu": st.get("gpu")}
            print(f"== {name}", flush=True)
            t = time.perf_counter()
            try:
                if name in NEEDS and left(st) < NEEDS[name]:
                    raise Skipped(f"{max(0, left(st)):.0f}s of the {args.budget_minutes:g}-minute budget left; "
                                  f"this step needs about {NEEDS[name]}s")  # fmt: skip
                details = fn(st)
                status, line = "ok", details.pop("line")
                if "error" in details:  # it measured, but its check failed: the figures stay
                    status, line, details["measured"] = "FAILED", details.pop("error"), line
            except Skipped as e:
                details, status, line = {}, "skipped", str(e)
            except Exception as e:  # noqa: BLE001  (one step's failure must not stop the others)
                traceback.print_exc()
                details, status, line = {}, "FAILED", one_line(e)
            seconds = round(time.perf_counter() - t, 1)
            figures = details.pop("figures", {})
            report["steps"].append({"name": name, "status": status, "seconds": seconds, "line": line,
                                    "figures": figures, "details": details})  # fmt: skip
            report["measurements"] |= {f"{name}.{k}": v for k, v in figures.items()}
            report["used_s"] = round(time.monotonic() - started, 1)
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
