"""Sampling throughput: the same prompts through hf batched, hf one at a time, and vLLM, side by side.

One run, greedy decoding everywhere (the engines agree token for token, see tests/test_engines_vllm.py),
model load and a warm-up call excluded from every timing:
  hf batched        HFEngine(batch_size=B).generate(all prompts)               (one process, this venv)
  hf one at a time  HFEngine(batch_size=1), one prompt per call
  vllm              VLLMEngine(max_num_seqs=B).generate(all prompts)           (the vLLM venv, a subprocess)
tokens/s = generated completion tokens / wall seconds. Target: hf batched >= 5x hf one at a time on the
embedded long model. Then hf batched vs vllm on a ~100M-parameter random Llama (`--big`).

The model defaults to the embedded long model (~/.cache/l2s/embedded/long, else long-sft); when neither
exists a random Llama of the embedded default shape ("nano") is built and the output says so.

    .venv/bin/python benchmarks/sampling.py [--model CKPT] [--prompts 64] [--max-tokens 128] [--big]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EMBEDDED = Path(os.path.expanduser(os.environ.get("L2S_CACHE", "~/.cache/l2s/embedded")))
# ~100M parameters with the embedded tokenizer's small vocabulary: 8 x (4 x 1024^2 + 3 x 1024 x 2816).
BIG_SIZE = dict(
    hidden_size=1024,
    intermediate_size=2816,
    num_hidden_layers=8,
    num_attention_heads=16,
    num_key_value_heads=16,
)


def _vllm_python() -> Path | None:
    for cand in (os.environ.get("L2S_VLLM_PYTHON"), ROOT / ".venv-vllm/bin/python", "/tmp/vv/bin/python"):
        if cand and Path(cand).is_file():
            return Path(cand)
    return None


def _prompts(n: int) -> list[list[dict]]:
    from l2s.tasks import get_task

    return [[{"role": "user", "content": p.prompt}] for p in get_task("arith").problems("test", n)]


def _params(max_tokens: int):
    from l2s.engines.base import SamplingParams

    return SamplingParams(n=1, temperature=0, max_tokens=max_tokens)


def _timed(engine, prompts, max_tokens: int, one_at_a_time: bool = False) -> dict:
    engine.generate(prompts[:2], _params(4))  # warm-up
    start = time.perf_counter()
    if one_at_a_time:
        gens = [engine.generate([p], _params(max_tokens))[0][0] for p in prompts]
    else:
        gens = [g[0] for g in engine.generate(prompts, _params(max_tokens))]
    seconds = time.perf_counter() - start
    tokens = sum(g.completion_tokens for g in gens)
    return {
        "tokens": tokens,
        "seconds": seconds,
        "tok_s": tokens / seconds,
        "ids": [g.token_ids for g in gens],
    }


def _run_vllm(model: Path, n: int, max_tokens: int, batch: int) -> dict | None:
    py = _vllm_python()
    if py is None:
        print("vllm: skipped (no vLLM venv: `make setup-vllm`, or set L2S_VLLM_PYTHON)")
        return None
    cmd = [str(py), __file__, "--worker-vllm", "--model", str(model), "--prompts", str(n)]
    cmd += ["--max-tokens", str(max_tokens), "--batch-size", str(batch)]
    env = {**os.environ, "VLLM_TARGET_DEVICE": os.environ.get("VLLM_TARGET_DEVICE", "cpu")}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [x for x in res.stdout.splitlines() if x.startswith("{")]
    if res.returncode != 0 or not lines:
        print(f"vllm: failed (exit {res.returncode}): {res.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(lines[-1])


def _worker_vllm(args) -> None:
    from l2s.engines.vllm import VLLMEngine

    engine = VLLMEngine(args.model, dtype="float32", max_model_len=1024, max_num_seqs=args.batch_size)
    print(json.dumps(_timed(engine, _prompts(args.prompts), args.max_tokens)), flush=True)


def _params_count(model: Path) -> int:
    from safetensors import safe_open

    total = 0
    for f in model.glob("*.safetensors"):
        with safe_open(str(f), framework="pt") as st:
            total += sum(_prod(st.get_slice(k).get_shape()) for k in st.keys())  # noqa: SIM118 (safe_open is not iterable)
    return total


def _prod(shape) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def _random_model(root: Path, size) -> Path:
    """A random Llama with the embedded tokenizer trained on arith prompts and long traces."""
    import random

    from l2s.embedded.model import save_random_model
    from l2s.embedded.tokenizer import build_tokenizer
    from l2s.tasks.arith import ArithTask, long_trace

    rng = random.Random(0)
    problems = ArithTask().problems("train", 200)
    corpus = [p.prompt for p in problems] + [long_trace(p, rng) for p in problems]
    return save_random_model(
        root / f"random-{size if isinstance(size, str) else 'big'}", build_tokenizer(corpus), size=size
    )


def _row(name: str, r: dict | None, ref: dict) -> str:
    if r is None:
        return f"  {name:<22} {'—':>8} {'—':>9} {'—':>9} {'—':>8}"
    return f"  {name:<22} {r['tokens']:>8} {r['seconds']:>9.2f} {r['tok_s']:>9.1f} {r['tok_s'] / ref['tok_s']:>7.2f}x"


def compare(model: Path, note: str, n: int, max_tokens: int, batch: int, one_at_a_time: bool) -> None:
    from l2s.engines.hf import HFEngine

    print(f"\nmodel: {model} ({note}; {_params_count(model) / 1e6:.1f}M parameters)")
    print(
        f"prompts: {n} arith held-out, greedy, max_tokens {max_tokens}, batch {batch}, torch threads {_threads()}"
    )
    batched = _timed(HFEngine(model, batch_size=batch), _prompts(n), max_tokens)
    single = (
        _timed(HFEngine(model, batch_size=1), _prompts(n), max_tokens, one_at_a_time=True)
        if one_at_a_time
        else None
    )
    vllm = _run_vllm(model, n, max_tokens, batch)
    ref = single or batched
    print(
        f"  {'arm':<22} {'tokens':>8} {'seconds':>9} {'tok/s':>9} {'vs ' + ('1-at-a-time' if single else 'hf batched'):>8}"
    )
    print(_row(f"hf batched ({batch})", batched, ref))
    if single:
        print(_row("hf one at a time", single, ref))
    print(_row(f"vllm ({batch} seqs)", vllm, ref))
    if single:
        ratio = batched["tok_s"] / single["tok_s"]
        print(
            f"  hf batched / hf one at a time: {ratio:.2f}x (target >= 5x: {'met' if ratio >= 5 else 'NOT met'})"
        )
        print(f"  same tokens batched and one at a time: {batched['ids'] == single['ids']}")
    if vllm:
        print(
            f"  vllm / hf batched: {vllm['tok_s'] / batched['tok_s']:.2f}x; same tokens: {vllm['ids'] == batched['ids']}"
        )


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint (default: the embedded long model)")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--big", action="store_true", help="also hf batched vs vllm on a ~100M random Llama")
    ap.add_argument("--big-prompts", type=int, default=32)
    ap.add_argument("--big-max-tokens", type=int, default=64)
    ap.add_argument(
        "--threads", type=int, default=None, help="torch/OpenMP threads for every arm (default: torch's)"
    )
    ap.add_argument("--worker-vllm", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the vLLM subprocess inherits it
    if args.worker_vllm:
        return _worker_vllm(args)

    with tempfile.TemporaryDirectory(prefix="l2s-bench-") as tmp:
        if args.model:
            model, note = Path(args.model).expanduser(), "given"
        elif (EMBEDDED / "long").is_dir() or (EMBEDDED / "long-sft").is_dir():
            model = EMBEDDED / "long" if (EMBEDDED / "long").is_dir() else EMBEDDED / "long-sft"
            note = "the embedded long model"
        else:
            model = _random_model(Path(tmp), "nano")
            note = "NO embedded family found: a random Llama of the embedded 'nano' shape"
        compare(model, note, args.prompts, args.max_tokens, args.batch_size, one_at_a_time=True)
        if args.big:
            big = _random_model(Path(tmp), BIG_SIZE)
            compare(
                big,
                "random Llama",
                args.big_prompts,
                args.big_max_tokens,
                args.batch_size,
                one_at_a_time=False,
            )


if __name__ == "__main__":
    sys.exit(main())
