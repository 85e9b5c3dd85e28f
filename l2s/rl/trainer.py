"""The Kimi k1.5 RL loop (online policy mirror descent, §2.3) on accelerate: `l2s rl` and `run_rl(cfg)`.

One iteration, as the report describes it:
  1. draw prompts (curriculum / prioritized sampling) and roll out k samples each from π_θi, the
     policy at the start of the iteration (partial rollouts: long ones continue next iteration);
  2. score them: correctness from the shared grader (+ Kimi's length reward after its warm-up; or, for
     budget-conditioned RL, minus the reasoning tokens spent past the budget each prompt states);
  3. snapshot log π_θi(y|x) of every finished response — the iteration's reference;
  4. reset the optimizer and take gradient steps on the mirror-descent surrogate (l2s.rl.loss).
Checkpoints every `save_every` iterations (atomic) let a killed run resume where it stopped.

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

import contextlib
import functools
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from l2s.budget import METHOD
from l2s.checkpoint import (
    atomic_dir,
    atomic_write_text,
    ensure_writable,
    validate_checkpoint,
    write_provenance,
)
from l2s.errors import UserError
from l2s.grading import grade
from l2s.rl.config import RLConfig, check_budget
from l2s.rl.rollouts import RolloutEngine, draw_budget, iteration_seed
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
from l2s.tasks import Problem, load_task


def run(cfg: RLConfig) -> Path:
    """`l2s rl`: run the RL loop and print the checkpoint it wrote."""
    out = run_rl(cfg)
    print(out)
    return out


# ---------------------------------------------------------------------------------------------------
# Input checks: every bad input is a one-line UserError before any work starts.


def verifiable_problems(problems: list[Problem], task: str, check: int = 64) -> None:
    """Raise unless the grader accepts each reference answer written as a final answer line.

    >>> verifiable_problems([Problem("a", "1+1?", "2")], "demo")
    >>> verifiable_problems([Problem("a", "Write a poem.", "roses are red\\nviolets are blue")], "demo")
    Traceback (most recent call last):
    l2s.errors.UserError: task demo has no verifiable answers: the grader cannot match problem a's reference 'roses are red\\nviolets are blue'; RL needs short final answers (numbers, expressions)
    """
    sample = problems[:check]
    ok = grade([f"Answer: {p.answer}" for p in sample], [p.answer for p in sample])
    for p, good in zip(sample, ok, strict=True):
        if not p.answer.strip() or not good:
            raise UserError(
                f"task {task} has no verifiable answers: the grader cannot match problem {p.id}'s "
                f"reference {p.answer!r}; RL needs short final answers (numbers, expressions)"
            )


def _check_inputs(cfg: RLConfig) -> tuple[Path, Path, list[Problem]]:
    if not cfg.init:
        raise UserError("no initial checkpoint: pass --init CKPT (e.g. ~/.cache/l2s/embedded/long-sft)")
    if not cfg.out:
        raise UserError("no output folder: pass --out DIR")
    check_budget(cfg)
    init = validate_checkpoint(cfg.init)
    out = Path(cfg.out).expanduser()
    if out.resolve() == init.resolve():
        raise UserError(f"--out {out} is the initial checkpoint; choose another folder")
    ensure_writable(out, force=cfg.force)
    problems = load_task(cfg).problems("train", cfg.train_problems)
    if not problems:
        raise UserError(f"task {cfg.task} has no train problems")
    verifiable_problems(problems, cfg.task)
    return init, out, problems


def _check_lengths(cfg: RLConfig, tokenizer: Any, model_config: Any, prompts: list[str]) -> None:
    """The model's context must hold the longest prompt plus `max_tokens`."""
    context = getattr(model_config, "max_position_embeddings", None)
    longest = max(len(ids) for ids in tokenizer(prompts, add_special_tokens=True)["input_ids"])
    if context is None:
        return
    if context <= longest:
        raise UserError(
            f"the model's max length ({context} tokens) is not above the longest prompt ({longest} tokens)"
        )
    if longest + cfg.max_tokens > context:
        raise UserError(
            f"max_tokens {cfg.max_tokens} plus the longest prompt ({longest} tokens) exceeds the model's "
            f"max length of {context}; lower --max-tokens to at most {context - longest}"
        )


# ---------------------------------------------------------------------------------------------------
# Training on the finished groups of one iteration.


def _batch(rows: list[tuple[list[int], list[int]]], pad_id: int, device: Any):
    """Right-padded input_ids / attention_mask / loss_mask tensors from (ids, mask) rows."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.float32)
    for i, (row_ids, row_mask) in enumerate(rows):
        ids[i, : len(row_ids)] = torch.tensor(row_ids)
        attn[i, : len(row_ids)] = 1
        mask[i, : len(row_mask)] = torch.tensor(row_mask, dtype=torch.float32)
    return ids.to(device), attn.to(device), mask.to(device)


def micro_batches(rows: list[int], lengths: list[int], token_budget: int) -> list[list[int]]:
    """Split rows into forward passes of at most `token_budget` padded tokens (rows × longest row).

    Rows are taken shortest first, so short rollouts are not padded to a long one's length (one row
    longer than the budget still gets its own pass). The surrogate is a sum over rows once the
    group advantages are known, so any split gives the same gradient.

    >>> micro_batches([0, 1, 2, 3], lengths=[300, 40, 60, 50], token_budget=120)
    [[1, 3], [2], [0]]
    """
    out: list[list[int]] = []
    current: list[int] = []
    for i in sorted(rows, key=lambda i: lengths[i]):
        if current and (len(current) + 1) * lengths[i] > token_budget:
            out.append(current)
            current = []
        current.append(i)
    if current:
        out.append(current)
    return out


def _train_iteration(cfg, accelerator, model, optimizer, rows, rewards, pad_id) -> dict[str, float]:
    """Snapshot log π_θi, then `epochs` passes of minibatch steps on the mirror-descent surrogate."""
    import torch

    from l2s.rl.loss import group_advantages, mirror_descent_terms, sequence_logprobs

    k = cfg.k
    n_groups = len(rows) // k
    lengths = [len(ids) for ids, _ in rows]

    def forward(idx: list[int]):
        ids, attn, mask = _batch([rows[i] for i in idx], pad_id, accelerator.device)
        return sequence_logprobs(model, ids, attn, mask)

    model.eval()  # π_θi: the policy before this iteration's first update
    ref = torch.zeros(len(rows))
    with torch.no_grad():
        for idx in micro_batches(list(range(len(rows))), lengths, cfg.micro_batch_tokens):
            ref[idx] = forward(idx).float().cpu()
    model.train()
    if cfg.reset_optimizer:
        optimizer.state.clear()  # the report resets the optimizer at every iteration
    advantages = group_advantages(torch.tensor(rewards, dtype=torch.float32), k)
    stats = {"loss": 0.0, "policy_term": 0.0, "kl_term": 0.0, "mean_abs_log_ratio": 0.0, "grad_norm": 0.0}
    steps = 0
    gen = torch.Generator().manual_seed(len(rows))
    for _ in range(cfg.epochs):
        order = torch.randperm(n_groups, generator=gen).tolist()
        for start in range(0, n_groups, cfg.minibatch_prompts):
            batch = [g * k + j for g in order[start : start + cfg.minibatch_prompts] for j in range(k)]
            micros = micro_batches(batch, lengths, cfg.micro_batch_tokens)
            for m, idx in enumerate(micros):
                sync = contextlib.nullcontext() if m == len(micros) - 1 else accelerator.no_sync(model)
                with sync:
                    logp = forward(idx)
                    policy, kl = mirror_descent_terms(
                        logp, ref[idx].to(logp.device), advantages[idx].to(logp.device), cfg.tau
                    )
                    # mean over the minibatch's rows = mean over its prompts of (1/k)Σ_j (l2s.rl.loss)
                    accelerator.backward((kl - policy).sum() / len(batch))
                stats["policy_term"] += float(policy.detach().sum()) / len(batch)
                stats["kl_term"] += float(kl.detach().sum()) / len(batch)
                stats["mean_abs_log_ratio"] += float((logp - ref[idx]).detach().abs().sum()) / len(batch)
            if cfg.max_grad_norm is not None:
                norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                stats["grad_norm"] += float(norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            steps += 1
    stats["loss"] = stats["kl_term"] - stats["policy_term"]
    return {key: v / max(1, steps) for key, v in stats.items()} | {"gradient_steps": steps}


# ---------------------------------------------------------------------------------------------------
# The stage.


def run_rl(cfg: RLConfig) -> Path:
    """Run Kimi RL from `cfg.init` and write the trained policy to `cfg.out`; returns that folder."""
    init, out, problems = _check_inputs(cfg)

    import torch
    from accelerate import Accelerator
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from l2s.budget import open_think_block, with_budget
    from l2s.engines.completion import (
        ThinkMarkers,
        decode_completion,
        eos_token_ids,
        render_prompt,
    )
    from l2s.rl.curriculum import PromptSampler
    from l2s.rl.rewards import length_weight_at, score_groups
    from l2s.rl.rollouts import PartialRollouts, loss_mask

    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    hf_logging.disable_progress_bar()  # our own progress shows; weight-loading bars would interleave
    tokenizer = AutoTokenizer.from_pretrained(init)
    if cfg.budgeted:  # the think block is compulsory for a budget model (l2s.budget); saved with it
        open_think_block(tokenizer)

    @functools.cache
    def prompt_text(p: Problem, budget: int | None = None) -> str:
        """The rendered prompt; with a budget, its user turn states it exactly as served (l2s.budget)."""
        messages = (
            p.messages()
            if budget is None
            else with_budget(p.messages(), budget, cfg.budget_form, cfg.budget_place)
        )
        return render_prompt(tokenizer, messages).text

    longest = sorted(problems, key=lambda p: len(p.prompt), reverse=True)[:32]
    texts = [prompt_text(p, cfg.budget_max) for p in longest]
    _check_lengths(cfg, tokenizer, AutoConfig.from_pretrained(init), texts)

    accelerator = Accelerator(mixed_precision=cfg.mixed_precision)
    work = work_dir(out)
    ckpt, state = _resume_state(cfg, init, work)
    if ckpt is None and accelerator.is_main_process:
        shutil.rmtree(work, ignore_errors=True)
    accelerator.wait_for_everyone()
    work.mkdir(parents=True, exist_ok=True)

    model = AutoModelForCausalLM.from_pretrained(ckpt or init, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    if ckpt is not None and (ckpt / "optimizer.pt").is_file():
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    model, optimizer = accelerator.prepare(model, optimizer)
    markers = ThinkMarkers.of(tokenizer)
    eos_ids = eos_token_ids(tokenizer, accelerator.unwrap_model(model).generation_config)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    sampler = PromptSampler(problems, cfg.sampling, cfg.seed, cfg.curriculum_iterations, cfg.priority_floor)
    repeat = {} if cfg.repeat_detection else None
    rollouts = PartialRollouts(cfg.max_tokens, cfg.segment_tokens, eos_ids, repeat)
    rank, world = accelerator.process_index, accelerator.num_processes
    if state:
        sampler.load_state_dict(state["sampler"])
        rollouts.load_state_dict(state["rollouts"][rank] if rank < len(state["rollouts"]) else {})
    start = int(state.get("iteration", 0))
    elapsed = float(state.get("elapsed_s", 0.0))
    metrics = _read_metrics(work / METRICS_FILE, start)
    if accelerator.is_main_process:
        atomic_write_text(work / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in metrics))
    engine = RolloutEngine(cfg, tokenizer, work)

    def save(iteration: int) -> None:
        buffers = gather_object([rollouts.state_dict()])
        weights = accelerator.get_state_dict(model)
        if accelerator.is_main_process:
            with atomic_dir(work / "checkpoint", force=True) as tmp:
                accelerator.unwrap_model(model).save_pretrained(
                    tmp, state_dict=weights, safe_serialization=True
                )
                tokenizer.save_pretrained(tmp)
                if not cfg.reset_optimizer:
                    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
                record = {
                    "iteration": iteration,
                    "elapsed_s": elapsed,
                    "fingerprint": run_fingerprint(cfg, init),
                    "sampler": sampler.state_dict(),
                    "rollouts": buffers,
                }
                (tmp / STATE_FILE).write_text(json.dumps(record))
        accelerator.wait_for_everyone()

    bar = tqdm(
        total=cfg.iterations, initial=start, desc="rl", unit="it", disable=not accelerator.is_main_process
    )
    if start and accelerator.is_main_process:
        tqdm.write(f"resuming from iteration {start} ({work / 'checkpoint'})", file=sys.stderr)
    iteration = start
    for iteration in range(start, cfg.iterations):
        if cfg.time_limit_minutes is not None and elapsed >= cfg.time_limit_minutes * 60:
            if accelerator.is_main_process:
                tqdm.write(
                    f"time limit of {cfg.time_limit_minutes} min reached after {iteration} iterations",
                    file=sys.stderr,
                )
            break
        t0 = time.perf_counter()
        torch.manual_seed(iteration_seed(cfg.seed, iteration, rank))
        # 1. prompts and rollouts from π_θi
        batch = sampler.sample(cfg.prompts_per_iteration, iteration)[rank::world]
        for p in batch:
            budget = (
                draw_budget(cfg.seed, iteration, p.id, cfg.budget_min, cfg.budget_max)
                if cfg.budgeted
                else None
            )
            text = prompt_text(p, budget)
            forced = round(cfg.budget_forced_share * cfg.k) if budget is not None else 0
            rollouts.start(p, text, render_prompt(tokenizer, text).ids, cfg.k, iteration, budget, forced)
        engine.refresh(accelerator, model, iteration_seed(cfg.seed, iteration, rank))
        groups = rollouts.step(engine.generate, engine.decode, iteration)
        engine.release()
        t_rollout = time.perf_counter() - t0
        # 2. rewards
        texts = [decode_completion(tokenizer, t.token_ids, markers) for g in groups for t in g.trajectories]
        trajs = [t for g in groups for t in g.trajectories]
        length_weight = length_weight_at(iteration, cfg.length_penalty_weight, cfg.length_penalty_warmup)
        parts = score_groups(cfg, groups, texts, markers, eos_ids, length_weight)
        # 3–4. reference snapshot and gradient steps (every process steps together, even with no groups)
        rows = [
            (
                g.prompt_ids + t.token_ids,
                [0] * len(g.prompt_ids) + loss_mask(t, iteration, cfg.mask_old_segments),
            )
            for g in groups
            for t in g.trajectories
        ]
        t1 = time.perf_counter()
        train = (
            _train_iteration(cfg, accelerator, model, optimizer, rows, parts["reward"], pad_id)
            if _all_have_groups(accelerator, bool(groups))
            else dict.fromkeys(
                ("loss", "policy_term", "kl_term", "mean_abs_log_ratio", "grad_norm"), math.nan
            )
            | {"gradient_steps": 0}
        )
        t_train = time.perf_counter() - t1
        # bookkeeping: sampler statistics and metrics, over all processes
        outcomes = gather_object(
            [(g.problem.id, parts["correct"][i * cfg.k : (i + 1) * cfg.k]) for i, g in enumerate(groups)]
        )
        for pid, correct in outcomes:
            sampler.record(pid, [c > 0 for c in correct])
        shared = gather_object(
            [
                {
                    "reward": parts["reward"],
                    "correct": parts["correct"],
                    "tokens": [t.completion_tokens for t in trajs],
                    "budgets": [g.budget for g in groups for _ in g.trajectories if g.budget is not None],
                    "forced": [
                        t.thinking_cap is not None
                        for g in groups
                        if g.budget is not None
                        for t in g.trajectories
                    ],
                    "reasoning": parts.get("reasoning_tokens", []),
                    "trained_tokens": sum(sum(m) for _, m in rows),
                    "repeats": sum(t.repeated for t in trajs),
                    "truncated": sum(t.finish_reason == "length" for t in trajs),
                    "buffered": len(rollouts.buffer),
                }
            ]
        )
        dt = time.perf_counter() - t0
        elapsed += dt
        row = _metrics_row(iteration, cfg.k, shared, train, length_weight, t_rollout, t_train, dt, elapsed)
        metrics.append(row)
        if accelerator.is_main_process:
            _append_metrics(work / METRICS_FILE, row)
            adherence = f"  adherence {row['adherence']:.1%}" if "adherence" in row else ""
            tqdm.write(
                f"iter {iteration + 1}/{cfg.iterations}  reward {row['reward']:.3f}  acc {row['accuracy']:.1%}  "
                f"tokens {row['mean_tokens']:.1f}{adherence}  groups {row['groups']}  kl {row['kl_term']:.4f}  "
                f"{row['iteration_s']:.1f}s (rollout {t_rollout:.1f}s)",
                file=sys.stderr,
            )
        bar.update(1)
        bar.set_postfix(
            reward=f"{row['reward']:.3f}", acc=f"{row['accuracy']:.1%}", tokens=f"{row['mean_tokens']:.0f}"
        )
        iteration += 1
        if iteration % cfg.save_every == 0 or iteration == cfg.iterations:
            save(iteration)
            if accelerator.is_main_process and metrics:
                plot_curve(metrics, work / CURVE_FILE)
    bar.close()
    if engine.sync is not None:
        engine.sync.close()
    elif engine.engine is not None:
        engine.engine.close()

    # The result: an ordinary HF folder with l2s.json, metrics.jsonl and the training curve beside it.
    weights = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        with atomic_dir(out, force=cfg.force) as tmp:
            accelerator.unwrap_model(model).save_pretrained(tmp, state_dict=weights, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            atomic_write_text(tmp / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in metrics))
            if metrics:
                plot_curve(metrics, tmp / CURVE_FILE)
            summary = {"iterations": len(metrics), "processes": world, "train_wall_s": round(elapsed, 1)}
            trained = [r for r in metrics if r["rollouts"]]
            if trained:
                last = trained[-3:]
                for key in ("reward", "accuracy", "mean_tokens", "adherence"):
                    if key in last[0]:
                        summary[f"last3_{key}"] = sum(r[key] for r in last) / len(last)
            write_provenance(
                tmp,
                method=METHOD if cfg.budgeted else "rl",
                parents={"init": str(init)},
                config=cfg.model_dump(exclude={"force"}),
                metrics=summary,
            )
        validate_checkpoint(out)
        shutil.rmtree(work, ignore_errors=True)
    accelerator.wait_for_everyone()
    return out


def _all_have_groups(accelerator: Any, mine: bool) -> bool:
    """Train only when every process has finished groups (they must step together under DDP)."""
    from accelerate.utils import gather_object

    return all(gather_object([mine]))


def _metrics_row(
    iteration, k, shared, train, length_weight, t_rollout, t_train, dt, elapsed
) -> dict[str, Any]:
    rewards = [r for s in shared for r in s["reward"]]
    correct = [c for s in shared for c in s["correct"]]
    tokens = [n for s in shared for n in s["tokens"]]
    n = max(1, len(rewards))
    budgets = [b for s in shared for b in s["budgets"]]
    used = [u for s in shared for u in s["reasoning"]]
    budget = {}
    if budgets:  # budget-conditioned RL: how well the rollouts kept to the budgets their prompts stated
        forced = [f for s in shared for f in s.get("forced", [])] or [False] * len(budgets)
        # adherence and error over the samples left to stop by themselves (not those with `</think>` forced)
        pairs = [(u, b) for u, b, f in zip(used, budgets, forced, strict=True) if not f]
        budget = {
            "mean_budget": sum(budgets) / len(budgets),
            "mean_reasoning_tokens": sum(used) / len(used),
            "adherence": sum(u <= b for u, b in pairs) / len(pairs) if pairs else math.nan,
            "budget_error": sum(abs(u - b) / b for u, b in pairs) / len(pairs) if pairs else math.nan,
        }
    return {
        "iteration": iteration,
        "reward": sum(rewards) / n if rewards else math.nan,
        "accuracy": sum(correct) / n if correct else math.nan,
        "mean_tokens": sum(tokens) / n if tokens else math.nan,
        "groups": len(rewards) // k,
        "rollouts": len(rewards),
        "trained_tokens": sum(s["trained_tokens"] for s in shared),
        "repeat_rate": sum(s["repeats"] for s in shared) / n,
        "truncated_rate": sum(s["truncated"] for s in shared) / n,
        "buffered_groups": sum(s["buffered"] for s in shared),
        "length_weight": length_weight,
        **budget,
        **train,
        "rollout_s": round(t_rollout, 3),
        "train_s": round(t_train, 3),
        "iteration_s": round(dt, 3),
        "elapsed_s": round(elapsed, 1),
    }
