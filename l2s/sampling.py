"""Sample n completions per prompt through an engine, grade them, and append them to a resumable JSONL.

The shared core: rejection sampling, DPO pairs, RL rollouts and evaluation all get their samples here
(or from `sample_records`), so "correct" (l2s.grading) and "length" (completion tokens by the model's own
tokenizer) mean the same thing everywhere.

Resuming (written by hand; no library resumes a sampling run): the work is cut into batches with fixed
boundaries over the full list of problems, and batch `b` samples under seed `seed * 1_000_003 + b`. What
a batch produces therefore does not depend on which batches ran before, so after `kill -9` a rerun
re-samples only the unfinished batches, drops a truncated last line, skips finished (prompt_id,
sample_idx) keys — and with the hf engine the file ends up byte-identical to an uninterrupted run's.
A sidecar `<out>.meta.json` records the settings and the model's weights (l2s.workdir's fingerprint);
resuming with other settings or other weights is refused (--force starts over).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from l2s.config import Config
from l2s.engines.base import Engine, Generation, SamplingParams
from l2s.engines.completion import sent_by
from l2s.errors import UserError
from l2s.tasks import Problem, TaskOptions
from l2s.workdir import differing, weights_fingerprint

BATCH_SEED_STRIDE = 1_000_003  # a prime: seeds of different runs' batches do not collide for b < stride


class GradedTask(TaskOptions):
    """A task (`TaskOptions`) and the grader that decides which of its answers are correct."""

    grader: Literal["flexible", "strict"] = Field(
        "flexible",
        description="flexible: boxed, final-answer phrases, else the last expression | strict: boxed and "
        "final-answer phrases only (for rewards a trailing number must not game)",
    )

    def task_settings(self) -> dict[str, Any]:
        """The task and grader settings that differ from their defaults (what a samples sidecar records)."""
        fields = GradedTask.model_fields
        return {
            k: getattr(self, k)
            for k in fields
            if k == "task" or getattr(self, k) != fields[k].get_default(call_default_factory=True)
        }


class EngineChoice(Config):
    """Which generation engine runs a model, and its options."""

    engine: str = Field(
        "auto", description="auto (vllm where it imports and suits the model, else hf) | hf | vllm"
    )
    engine_options: dict[str, Any] = Field(
        default_factory=dict,
        description="extra engine keyword arguments (vllm: EngineArgs fields such as max_model_len; hf: dtype)",
    )
    tensor_parallel_size: int = Field(1, ge=1, description="vllm engine: GPUs one model is split over")

    def engine_kwargs(self) -> dict[str, Any]:
        """What `l2s.engines.get_engine` takes besides the engine name and model."""
        return {"engine_options": self.engine_options, "tensor_parallel_size": self.tensor_parallel_size}

    def engine_settings(self, engine: str) -> dict[str, Any]:
        """What a samples sidecar records about the engine: the one that ran, and any options."""
        extra = {"engine_options": self.engine_options} if self.engine_options else {}
        return {"engine": engine, **extra}


class SampleConfig(GradedTask, EngineChoice):
    """`l2s sample`: what to sample and where to write it."""

    model: str = Field(description="checkpoint folder")
    split: str = Field("test", description="train | test")
    limit: int | None = Field(None, ge=1, description="number of prompts (default: the whole split)")
    n: int = Field(8, ge=1, description="samples per prompt")
    temperature: float = Field(1.0, ge=0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass")
    max_tokens: int = Field(512, ge=1, description="max completion tokens per sample")
    max_thinking_tokens: int | None = Field(
        None, ge=0, description="thinking budget (force </think> after N)"
    )
    batch_size: int = Field(64, ge=1, description="sequences per engine batch")
    seed: int = Field(0, description="sampling seed")
    logprobs: bool = Field(False, description="also record each sample's answer confidence (l2s.confidence)")
    out: str = Field(description="samples.jsonl to write (resumed if it exists)")
    force: bool = Field(False, description="start over even if --out holds other samples")


def meta_path(out: str | Path) -> Path:
    return Path(f"{out}.meta.json")


def problems_digest(problems: Sequence[Problem]) -> str:
    """A fingerprint of the prompts and references, so a resumed file is known to be for the same ones."""
    h = hashlib.sha256()
    for p in problems:
        h.update(json.dumps([p.id, p.prompt, p.answer, *([p.system] if p.system else [])]).encode())
    return h.hexdigest()[:16]


def read_samples(path: str | Path) -> list[dict[str, Any]]:
    """The complete records of a samples.jsonl (a truncated last line, from a killed run, is ignored)."""
    return _read_complete(Path(path))[0]


def _read_complete(path: Path) -> tuple[list[dict[str, Any]], int]:
    """(records, byte length of the complete lines). Only the last line may be broken."""
    if not path.is_file():
        return [], 0
    data = path.read_bytes()
    records, good = [], 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if good + len(line) < len(data):
                raise UserError(
                    f"{path} has a corrupted line in the middle; pass --force to start over"
                ) from None
            break
        good += len(line)
    return records, good


def batches(problems: Sequence[Problem], n: int, batch_size: int) -> list[list[Problem]]:
    """Fixed batch boundaries: `max(1, batch_size // n)` prompts (each sampled n times) per batch.

    >>> [len(b) for b in batches([Problem(str(i), "p", "1") for i in range(10)], n=4, batch_size=16)]
    [4, 4, 2]
    """
    per = max(1, batch_size // n)
    return [list(problems[i : i + per]) for i in range(0, len(problems), per)]


def to_record(
    problem: Problem,
    idx: int,
    gen: Generation,
    *,
    model: str,
    seed: int,
    grader: str = "flexible",
    prompt: str | None = None,
) -> dict[str, Any]:
    """One sample record (docs/DESIGN.md "Sample record"), graded by `l2s.grading`.

    `answer` is None when the grader finds no final answer (an "unparsed" sample). `prompt` is the user
    turn as the engine sent it when that differs from the problem's (a budget-conditioned model's
    budget instruction, `l2s.budget`), so `record_messages` gives back the messages actually sent."""
    from l2s.grading import extract_answer, is_equivalent

    answer = extract_answer(gen.text, grader=grader, think_opened=gen.extra.get("think_opened", False))
    record = {
        "prompt_id": problem.id,
        "sample_idx": idx,
        "prompt": problem.prompt if prompt is None else prompt,
        **({"system": problem.system} if problem.system else {}),
        "completion": gen.text,
        "completion_tokens": gen.completion_tokens,
        "reasoning_tokens": gen.reasoning_tokens,
        "finish_reason": gen.finish_reason,
        "answer": answer,
        "correct": is_equivalent(answer, problem.answer),
        "reference": problem.answer,
        "grader": grader,
        "difficulty": problem.difficulty,
        "model": model,
        "seed": seed,
    }
    if gen.logprobs is not None:
        from l2s.confidence import confidence

        record["confidence"] = confidence(gen)
    return record


def sample_records(
    engine: Engine,
    problems: Sequence[Problem],
    params: SamplingParams,
    *,
    batch_size: int = 64,
    done: set[tuple[str, int]] | frozenset = frozenset(),
    model: str | None = None,
    grader: str = "flexible",
) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """Yield (batch index, records not in `done`) per fixed batch; `params.seed` is the run seed."""
    run_seed = params.seed or 0
    for b, group in enumerate(batches(problems, params.n, batch_size)):
        if all((p.id, i) in done for p in group for i in range(params.n)):
            continue
        batch_params = SamplingParams(**{**vars(params), "seed": run_seed * BATCH_SEED_STRIDE + b})
        messages = [p.messages() for p in group]
        gens = engine.generate(messages, batch_params)
        sent = [sent_by(engine, m, batch_params)[-1]["content"] for m in messages]  # the user turns as sent
        yield (
            b,
            [
                to_record(p, i, g, model=model or engine.name, seed=run_seed, grader=grader, prompt=s)
                for p, s, row in zip(group, sent, gens, strict=True)
                for i, g in enumerate(row)
                if (p.id, i) not in done
            ],
        )


def _check_resumable(out: Path, meta: dict[str, Any], force: bool) -> None:
    mp = meta_path(out)
    if force:
        out.unlink(missing_ok=True)
        mp.unlink(missing_ok=True)
        return
    if out.is_file() and out.stat().st_size > 0:
        if not mp.is_file():
            raise UserError(
                f"{out} exists but has no {mp.name}, so it is not resumable; pass --force to start over"
            )
        old = json.loads(mp.read_text())
        if "model_weights" not in old:  # a sidecar from before l2s recorded the weights: trust the path
            old["model_weights"] = meta.get("model_weights")
        old.setdefault("budget_cap", True)  # a sidecar from before the cap could be turned off
        diff = differing(old, meta)
        if diff == ["model_weights"]:
            raise UserError(
                f"{out} was sampled from {meta['model']} before its weights were written again (a retrained "
                "model at the same path), so its samples are another model's; pass --force to sample it "
                "again or choose another --out"
            )
        if diff:
            raise UserError(
                f"{out} was sampled with other settings ({', '.join(diff)}), so it is not resumable; "
                "pass --force to start over or choose another --out"
            )


def sample_meta(
    model: str | Path,
    problems: Sequence[Problem],
    params: SamplingParams,
    batch_size: int,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the sidecar records: everything that changes the samples."""
    path = Path(model).expanduser()
    meta = {
        "model": str(path.resolve()) if path.exists() else str(model),
        "model_weights": weights_fingerprint(path),
        **(settings or {}),
        **vars(params),
        "batch_size": batch_size,
        "problems": len(problems),
        "problems_digest": problems_digest(problems),
    }
    return json.loads(json.dumps(meta, default=str))


def sample(
    engine: Engine,
    problems: Sequence[Problem],
    out: str | Path,
    params: SamplingParams,
    *,
    batch_size: int = 64,
    force: bool = False,
    settings: dict[str, Any] | None = None,
    progress: bool = True,
    grader: str = "flexible",
) -> list[dict[str, Any]]:
    """Sample `params.n` completions per problem into `out` (resuming it); returns all of its records.

    `settings` (task, engine, ...) go into the sidecar with the sampling parameters; a later call with
    different ones refuses to resume.
    """
    from l2s.checkpoint import atomic_write_text

    out = Path(out).expanduser()
    meta = sample_meta(engine.model_path, problems, params, batch_size, settings)
    _check_resumable(out, meta, force)
    records, good = _read_complete(out)
    done = {(r["prompt_id"], r["sample_idx"]) for r in records}
    atomic_write_text(meta_path(out), json.dumps(meta, indent=2) + "\n")
    bar = _progress(len(problems) * params.n, len(done), out.name, progress)
    start, tokens = time.perf_counter(), 0
    with open(out, "ab") as f:
        f.truncate(good)  # drop a half-written last line from a killed run
        new_batches = sample_records(
            engine, problems, params, batch_size=batch_size, done=done, grader=grader
        )
        for _, new in new_batches:
            f.write("".join(json.dumps(r) + "\n" for r in new).encode())
            f.flush()
            os.fsync(f.fileno())  # a killed run loses at most the batch in flight
            records += new
            tokens += sum(r["completion_tokens"] for r in new)
            bar.update(len(new))
            bar.set_postfix(tok_s=f"{tokens / (time.perf_counter() - start):.0f}", refresh=False)
    bar.close()
    return records


def _progress(total: int, initial: int, name: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=f"sampling {name}", unit="sample", disable=not enabled)


def sampling_params(cfg: SampleConfig) -> SamplingParams:
    return SamplingParams(
        n=cfg.n,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_tokens=cfg.max_tokens,
        max_thinking_tokens=cfg.max_thinking_tokens,
        seed=cfg.seed,
        logprobs=cfg.logprobs,
    )


def run(cfg: SampleConfig) -> Path:
    """Build the task and engine from `cfg` and sample into `cfg.out`."""
    from l2s.checkpoint import validate_checkpoint
    from l2s.engines import get_engine, resolve_engine
    from l2s.tasks import load_task

    problems = load_task(cfg, seed=cfg.seed).problems(cfg.split, cfg.limit)
    if not problems:
        raise UserError(f"task {cfg.task} has no {cfg.split} problems")
    validate_checkpoint(cfg.model)
    engine_name = resolve_engine(cfg.engine, cfg.model)
    params, out = sampling_params(cfg), Path(cfg.out).expanduser()
    settings = {**cfg.task_settings(), "split": cfg.split, **cfg.engine_settings(engine_name)}
    if not cfg.force:  # refuse a non-resumable output before paying for the model load
        _check_resumable(out, sample_meta(cfg.model, problems, params, cfg.batch_size, settings), False)
    engine = get_engine(engine_name, cfg.model, batch_size=cfg.batch_size, **cfg.engine_kwargs())
    try:
        records = sample(
            engine,
            problems,
            out,
            params,
            batch_size=cfg.batch_size,
            force=cfg.force,
            settings=settings,
            grader=cfg.grader,
        )
    finally:
        engine.close()
    acc = sum(r["correct"] for r in records) / len(records)
    mean = sum(r["completion_tokens"] for r in records) / len(records)
    unparsed = sum(r["answer"] is None for r in records) / len(records)
    print(
        f"{out}: {len(records)} samples, accuracy {acc:.3f} ({cfg.grader} grader, {unparsed:.1%} unparsed), "
        f"mean {mean:.1f} completion tokens"
    )
    return out


def record_messages(record: dict[str, Any]) -> list[dict[str, str]]:
    """The chat messages a sample record's prompt was sent as (its system prompt, then the user turn)."""
    head = [{"role": "system", "content": record["system"]}] if record.get("system") else []
    return [*head, {"role": "user", "content": record["prompt"]}]
