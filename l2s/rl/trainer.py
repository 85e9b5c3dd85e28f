"""The Kimi k1.5 RL loop (online policy mirror descent, §2.3) on accelerate: `l2s rl` and `run_rl(cfg)`.

One iteration, as the report describes it:
  1. draw prompts (curriculum / prioritized sampling) and roll out k samples each from π_θi, the
     policy at the start of the iteration (partial rollouts: long ones continue next iteration);
  2. score them: correctness from the shared grader (+ Kimi's length reward after its warm-up; or, for
     budget-conditioned RL, minus the reasoning tokens spent past the budget each prompt states);
  3. snapshot log π_θi(y|x) of every finished response — the iteration's reference;
  4. reset the optimizer and take gradient steps on the mirror-descent surrogate (l2s.rl.loss).
Checkpoints every `save_every` iterations (atomic) let a killed run resume where it stopped.
`run_rl` reads in that order: `_setup` (inputs checked by l2s.rl.inputs; a resumed run continues from
its checkpoint), `_iteration` (steps 1–4; the gradient steps and metrics row are in l2s.rl.step),
`_save_checkpoint`, and `_save_final` (the checkpoint, its metrics and its provenance in l2s.json).

Why not TRL's GRPOTrainer: its `_compute_loss` could host the surrogate (with `num_iterations > 1` its
`old_per_token_logps` even play the role of π_θi), but the rest does not fit cleanly: generation is
internal to the trainer, so trajectories cannot be paused into a replay buffer and resumed by the
next policy (partial rollouts, with per-segment loss masks); the HF Trainer owns one optimizer for the
whole run (a per-iteration reset means patching its state from a callback); and the length reward
needs whole groups plus the iteration number. So this is a compact loop on accelerate (device
placement, DDP / DeepSpeed / FSDP wrapping via `accelerate launch --config_file
configs/accelerate/*.yaml`) with l2s's own engines for rollouts. With several processes, each one
rolls out its share of the iteration's prompts and accelerate averages the gradients. The hf engine
generates with the in-memory policy (DDP, ZeRO-2); with engine=vllm one vLLM engine serves the whole run
and receives the policy's new weights in memory before each iteration's rollouts (l2s.rl.weight_sync).
"""

from __future__ import annotations

import functools
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l2s.budget import METHOD
from l2s.checkpoint import atomic_dir, atomic_write_text, validate_checkpoint, write_provenance
from l2s.rl.config import RLConfig
from l2s.rl.inputs import _check_inputs, _check_lengths
from l2s.rl.rollouts import Group, RolloutEngine, draw_budget, iteration_seed
from l2s.rl.run_state import (
    CURVE_FILE,
    METRICS_FILE,
    STATE_FILE,
    _append_metrics,
    _read_metrics,
    _resume_state,
    plot_curve,
    run_fingerprint,
    work_dir,
)
from l2s.rl.step import (
    all_have_groups,
    metrics_row,
    no_steps,
    process_stats,
    train_iteration,
    training_rows,
)
from l2s.tasks import Problem


def run(cfg: RLConfig) -> Path:
    """`l2s rl`: run the RL loop and print the checkpoint it wrote."""
    out = run_rl(cfg)
    print(out)
    return out


# ---------------------------------------------------------------------------------------------------
# The stage: setup, then one Kimi iteration at a time (checkpointing as it goes), then the final save.


def run_rl(cfg: RLConfig) -> Path:
    """Run Kimi RL from `cfg.init` and write the trained policy to `cfg.out`; returns that folder."""
    run = _setup(cfg)

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.iterations, initial=run.start, desc="rl", unit="it", disable=not run.is_main)
    if run.start and run.is_main:
        tqdm.write(f"resuming from iteration {run.start} ({run.work / 'checkpoint'})", file=sys.stderr)
    for iteration in range(run.start, cfg.iterations):
        if _out_of_time(run, iteration):
            break
        _record(run, bar, _iteration(run, iteration))
        done = iteration + 1
        if done % cfg.save_every == 0 or done == cfg.iterations:
            _save_checkpoint(run, done)
    bar.close()
    _close_engine(run)
    return _save_final(run)


@dataclass
class _Run:
    """What the loop works on: built once by `_setup`, advanced by `_iteration`, saved by `_save_*`."""

    cfg: RLConfig
    init: Path  # the initial checkpoint
    out: Path  # the output folder
    work: Path  # OUT.work: the last checkpoint, metrics and curve while the run lasts (l2s.rl.run_state)
    accelerator: Any
    tokenizer: Any
    prompt_text: Callable[..., str]  # (problem, budget=None) -> the prompt rendered by the chat template
    model: Any  # the policy, prepared by accelerate
    optimizer: Any
    markers: Any  # the model's think markers (l2s.engines.completion.ThinkMarkers)
    eos_ids: set[int]
    pad_id: int
    sampler: Any  # l2s.rl.curriculum.PromptSampler
    rollouts: Any  # l2s.rl.rollouts.PartialRollouts: this process's replay buffer
    engine: RolloutEngine
    start: int  # the first iteration to run (above 0 when resuming)
    elapsed: float  # seconds spent in iterations, resumed ones included
    metrics: list[dict[str, Any]]  # one row per iteration so far

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process


def _setup(cfg: RLConfig) -> _Run:
    """Check the inputs, then build what the loop needs: from OUT.work's checkpoint when it holds one of
    this same run (weights, optimizer, sampler statistics, replay buffers, metrics), else from `init`."""
    init, out, problems = _check_inputs(cfg)

    import torch
    from accelerate import Accelerator
    from transformers.utils import logging as hf_logging

    from l2s.engines.completion import ThinkMarkers, eos_token_ids
    from l2s.rl.curriculum import PromptSampler
    from l2s.rl.rollouts import PartialRollouts

    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    hf_logging.disable_progress_bar()  # our own progress shows; weight-loading bars would interleave
    tokenizer, prompt_text = _prompts(cfg, init, problems)

    accelerator = Accelerator(mixed_precision=cfg.mixed_precision)
    work = work_dir(out)
    ckpt, state = _resume_state(cfg, init, work)
    if ckpt is None and accelerator.is_main_process:
        shutil.rmtree(work, ignore_errors=True)
    accelerator.wait_for_everyone()
    work.mkdir(parents=True, exist_ok=True)

    model, optimizer = _policy(cfg, accelerator, init, ckpt)
    markers = ThinkMarkers.of(tokenizer)
    eos_ids = eos_token_ids(tokenizer, accelerator.unwrap_model(model).generation_config)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    sampler = PromptSampler(problems, cfg.sampling, cfg.seed, cfg.curriculum_iterations, cfg.priority_floor)
    repeat = {} if cfg.repeat_detection else None
    rollouts = PartialRollouts(cfg.max_tokens, cfg.segment_tokens, eos_ids, repeat)
    rank = accelerator.process_index
    if state:
        sampler.load_state_dict(state["sampler"])
        rollouts.load_state_dict(state["rollouts"][rank] if rank < len(state["rollouts"]) else {})
    start = int(state.get("iteration", 0))
    metrics = _read_metrics(work / METRICS_FILE, start)
    if accelerator.is_main_process:
        atomic_write_text(work / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in metrics))
    return _Run(
        cfg=cfg,
        init=init,
        out=out,
        work=work,
        accelerator=accelerator,
        tokenizer=tokenizer,
        prompt_text=prompt_text,
        model=model,
        optimizer=optimizer,
        markers=markers,
        eos_ids=eos_ids,
        pad_id=pad_id,
        sampler=sampler,
        rollouts=rollouts,
        engine=RolloutEngine(cfg, tokenizer, work),
        start=start,
        elapsed=float(state.get("elapsed_s", 0.0)),
        metrics=metrics,
    )


def _prompts(cfg: RLConfig, init: Path, problems: list[Problem]) -> tuple[Any, Callable[..., str]]:
    """The tokenizer and the (cached) prompt renderer, once the longest prompts are known to fit."""
    from transformers import AutoConfig, AutoTokenizer

    from l2s.budget import BudgetPrompt, open_think_block
    from l2s.engines.completion import render_prompt

    tokenizer = AutoTokenizer.from_pretrained(init)
    if cfg.budgeted:  # the think block is compulsory for a budget model (l2s.budget); saved with it
        open_think_block(tokenizer)
    told = BudgetPrompt(cfg.budget_form, cfg.budget_place)  # what serving reads back from l2s.json

    @functools.cache
    def prompt_text(p: Problem, budget: int | None = None) -> str:
        """The rendered prompt; with a budget, it states it exactly as served (l2s.budget.BudgetPrompt)."""
        messages = p.messages() if budget is None else told.apply(p.messages(), budget)
        return render_prompt(tokenizer, messages).text

    longest = sorted(problems, key=lambda p: len(p.prompt), reverse=True)[:32]
    texts = [prompt_text(p, cfg.budget_max) for p in longest]
    _check_lengths(cfg, tokenizer, AutoConfig.from_pretrained(init), texts)
    return tokenizer, prompt_text


def _policy(cfg: RLConfig, accelerator: Any, init: Path, ckpt: Path | None) -> tuple[Any, Any]:
    """The policy and its AdamW (from the checkpoint being resumed, if any), prepared by accelerate."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(ckpt or init, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    if ckpt is not None and (ckpt / "optimizer.pt").is_file():
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    model, optimizer = accelerator.prepare(model, optimizer)
    return model, optimizer


def _out_of_time(run: _Run, iteration: int) -> bool:
    """Whether `time_limit_minutes` is spent (then the run stops and saves what it has)."""
    limit = run.cfg.time_limit_minutes
    if limit is None or run.elapsed < limit * 60:
        return False
    if run.is_main:
        from tqdm.auto import tqdm

        tqdm.write(f"time limit of {limit} min reached after {iteration} iterations", file=sys.stderr)
    return True


def _iteration(run: _Run, iteration: int) -> dict[str, Any]:
    """One Kimi iteration (the module docstring's steps 1–4), on every process; returns its metrics row."""
    import torch
    from accelerate.utils import gather_object

    from l2s.engines.completion import decode_completion
    from l2s.rl.rewards import length_weight_at, score_groups

    cfg = run.cfg
    t0 = time.perf_counter()
    torch.manual_seed(iteration_seed(cfg.seed, iteration, run.rank))
    # 1. prompts and rollouts from π_θi
    groups = _rollouts(run, iteration)
    t_rollout = time.perf_counter() - t0
    # 2. rewards
    texts = [
        decode_completion(run.tokenizer, t.token_ids, run.markers) for g in groups for t in g.trajectories
    ]
    length_weight = length_weight_at(iteration, cfg.length_penalty_weight, cfg.length_penalty_warmup)
    parts = score_groups(cfg, groups, texts, run.markers, run.eos_ids, length_weight)
    # 3–4. reference snapshot and gradient steps (every process steps together, even with no groups)
    rows = training_rows(groups, iteration, cfg.mask_old_segments)
    t1 = time.perf_counter()
    train = (
        train_iteration(cfg, run.accelerator, run.model, run.optimizer, rows, parts["reward"], run.pad_id)
        if all_have_groups(run.accelerator, bool(groups))
        else no_steps()
    )
    t_train = time.perf_counter() - t1
    # bookkeeping: sampler statistics and metrics, over all processes
    outcomes = gather_object(
        [(g.problem.id, parts["correct"][i * cfg.k : (i + 1) * cfg.k]) for i, g in enumerate(groups)]
    )
    for pid, correct in outcomes:
        run.sampler.record(pid, [c > 0 for c in correct])
    shared = gather_object([process_stats(groups, parts, rows, len(run.rollouts.buffer))])
    dt = time.perf_counter() - t0
    run.elapsed += dt
    return metrics_row(iteration, cfg.k, shared, train, length_weight, t_rollout, t_train, dt, run.elapsed)


def _rollouts(run: _Run, iteration: int) -> list[Group]:
    """Step 1: k rollouts from π_θi for each of this process's share of the iteration's prompts; returns
    the groups that finished (with partial rollouts, the others wait in the buffer for the next policy)."""
    from l2s.engines.completion import render_prompt

    cfg = run.cfg
    for p in run.sampler.sample(cfg.prompts_per_iteration, iteration)[run.rank :: run.world]:
        budget = (
            draw_budget(cfg.seed, iteration, p.id, cfg.budget_min, cfg.budget_max) if cfg.budgeted else None
        )
        text = run.prompt_text(p, budget)
        forced = round(cfg.budget_forced_share * cfg.k) if budget is not None else 0
        run.rollouts.start(p, text, render_prompt(run.tokenizer, text).ids, cfg.k, iteration, budget, forced)
    run.engine.refresh(run.accelerator, run.model, iteration_seed(cfg.seed, iteration, run.rank))
    groups = run.rollouts.step(run.engine.generate, run.engine.decode, iteration)
    run.engine.release()
    return groups


def _record(run: _Run, bar: Any, row: dict[str, Any]) -> None:
    """Keep the iteration's row, append it to OUT.work's metrics.jsonl, and show it."""
    from tqdm.auto import tqdm

    run.metrics.append(row)
    if run.is_main:
        _append_metrics(run.work / METRICS_FILE, row)
        adherence = f"  adherence {row['adherence']:.1%}" if "adherence" in row else ""
        tqdm.write(
            f"iter {row['iteration'] + 1}/{run.cfg.iterations}  reward {row['reward']:.3f}  "
            f"acc {row['accuracy']:.1%}  tokens {row['mean_tokens']:.1f}{adherence}  groups {row['groups']}  "
            f"kl {row['kl_term']:.4f}  {row['iteration_s']:.1f}s (rollout {row['rollout_s']:.1f}s)",
            file=sys.stderr,
        )
    bar.update(1)
    bar.set_postfix(
        reward=f"{row['reward']:.3f}", acc=f"{row['accuracy']:.1%}", tokens=f"{row['mean_tokens']:.0f}"
    )


def _save_checkpoint(run: _Run, iteration: int) -> None:
    """Atomically replace OUT.work/checkpoint with the run after `iteration` iterations (weights,
    tokenizer, optimizer unless it is reset anyway, sampler statistics, every process's replay buffer),
    then redraw the training curve."""
    import torch
    from accelerate.utils import gather_object

    buffers = gather_object([run.rollouts.state_dict()])
    weights = run.accelerator.get_state_dict(run.model)
    if run.is_main:
        with atomic_dir(run.work / "checkpoint", force=True) as tmp:
            run.accelerator.unwrap_model(run.model).save_pretrained(
                tmp, state_dict=weights, safe_serialization=True
            )
            run.tokenizer.save_pretrained(tmp)
            if not run.cfg.reset_optimizer:
                torch.save(run.optimizer.state_dict(), tmp / "optimizer.pt")
            record = {
                "iteration": iteration,
                "elapsed_s": run.elapsed,
                "fingerprint": run_fingerprint(run.cfg, run.init),
                "sampler": run.sampler.state_dict(),
                "rollouts": buffers,
            }
            (tmp / STATE_FILE).write_text(json.dumps(record))
    run.accelerator.wait_for_everyone()
    if run.is_main and run.metrics:
        plot_curve(run.metrics, run.work / CURVE_FILE)


def _close_engine(run: _Run) -> None:
    """Shut down the rollout engine (with engine=vllm, through its weight sync)."""
    if run.engine.sync is not None:
        run.engine.sync.close()
    elif run.engine.engine is not None:
        run.engine.engine.close()


def _save_final(run: _Run) -> Path:
    """The result: an ordinary HF folder with l2s.json, metrics.jsonl and the training curve beside it.
    OUT.work goes once the folder is written and validated."""
    cfg, metrics, out = run.cfg, run.metrics, run.out
    weights = run.accelerator.get_state_dict(run.model)
    if run.is_main:
        with atomic_dir(out, force=cfg.force) as tmp:
            run.accelerator.unwrap_model(run.model).save_pretrained(
                tmp, state_dict=weights, safe_serialization=True
            )
            run.tokenizer.save_pretrained(tmp)
            atomic_write_text(tmp / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in metrics))
            if metrics:
                plot_curve(metrics, tmp / CURVE_FILE)
            summary = {
                "iterations": len(metrics),
                "processes": run.world,
                "train_wall_s": round(run.elapsed, 1),
            }
            trained = [r for r in metrics if r["rollouts"]]
            if trained:
                last = trained[-3:]
                for key in ("reward", "accuracy", "mean_tokens", "adherence"):
                    if key in last[0]:
                        summary[f"last3_{key}"] = sum(r[key] for r in last) / len(last)
            write_provenance(
                tmp,
                method=METHOD if cfg.budgeted else "rl",
                parents={"init": str(run.init)},
                config=cfg.model_dump(exclude={"force"}),
                metrics=summary,
            )
        validate_checkpoint(out)
        shutil.rmtree(run.work, ignore_errors=True)
    run.accelerator.wait_for_everyone()
    return out
