"""One Kimi iteration's gradient steps and the metrics row it logs (the loop itself is l2s.rl.trainer).

- `training_rows`: each finished rollout as (prompt + completion ids, loss mask), the mask keeping only
  the completion (and, with `mask_old_segments`, only the segments this iteration's policy wrote).
- `train_iteration`: snapshot log π_θi(y|x) of every row (the iteration's reference), then `epochs`
  passes of minibatch steps on the mirror-descent surrogate (l2s.rl.loss). Each minibatch is split by
  `micro_batches` into forward passes of bounded padded size; under DDP the gradients are averaged
  once, on the minibatch's last pass.
- `process_stats` / `metrics_row`: what each process saw in the iteration, and the metrics.jsonl row
  made from all of them.

Written here rather than taken from TRL because the reference is per iteration, the optimizer may be
reset every iteration and rows may be partial rollouts; l2s.rl.trainer says why GRPOTrainer does not fit.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

from l2s.rl.config import RLConfig
from l2s.rl.rollouts import Group, loss_mask

TRAIN_STATS = ("loss", "policy_term", "kl_term", "mean_abs_log_ratio", "grad_norm")


def training_rows(
    groups: list[Group], iteration: int, mask_old_segments: bool
) -> list[tuple[list[int], list[int]]]:
    """(prompt + completion ids, loss mask) per rollout, group by group; the prompt never counts.

    >>> from l2s.rl.rollouts import Segment, Trajectory
    >>> from l2s.tasks import Problem
    >>> t = Trajectory(0, [Segment([1, 2], 3), Segment([3], 4)], "stop")
    >>> g = Group(Problem("a", "1+1?", "2"), "1+1?", [7, 8], 3, [t])
    >>> training_rows([g], 4, mask_old_segments=True)
    [([7, 8, 1, 2, 3], [0, 0, 0, 0, 1])]
    """
    return [
        (g.prompt_ids + t.token_ids, [0] * len(g.prompt_ids) + loss_mask(t, iteration, mask_old_segments))
        for g in groups
        for t in g.trajectories
    ]


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


def all_have_groups(accelerator: Any, mine: bool) -> bool:
    """Train only when every process has finished groups (they must step together under DDP)."""
    from accelerate.utils import gather_object

    return all(gather_object([mine]))


def no_steps() -> dict[str, float]:
    """The training statistics of an iteration that took no gradient step: NaN, and 0 steps.

    >>> no_steps()["gradient_steps"], math.isnan(no_steps()["loss"])
    (0, True)
    """
    return dict.fromkeys(TRAIN_STATS, math.nan) | {"gradient_steps": 0}


def train_iteration(
    cfg: RLConfig, accelerator: Any, model: Any, optimizer: Any, rows, rewards, pad_id: int
) -> dict[str, float]:
    """Snapshot log π_θi, then `epochs` passes of minibatch steps on the mirror-descent surrogate.

    `rows` are whole groups of k (training_rows), `rewards` one per row; returns the mean of each
    statistic over the gradient steps, and their number.
    """
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
    stats = dict.fromkeys(TRAIN_STATS, 0.0)
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
# The iteration's metrics row.


def process_stats(
    groups: list[Group], parts: dict[str, list], rows: list[tuple[list[int], list[int]]], buffered: int
) -> dict[str, Any]:
    """What one process saw this iteration: its rollouts' rewards (`parts`, from score_groups), lengths
    and budgets, the tokens it trained on, and the unfinished groups left in its replay buffer."""
    trajs = [t for g in groups for t in g.trajectories]
    return {
        "reward": parts["reward"],
        "correct": parts["correct"],
        "tokens": [t.completion_tokens for t in trajs],
        "budgets": [g.budget for g in groups for _ in g.trajectories if g.budget is not None],
        "forced": [
            t.thinking_cap is not None for g in groups if g.budget is not None for t in g.trajectories
        ],
        "reasoning": parts.get("reasoning_tokens", []),
        "trained_tokens": sum(sum(m) for _, m in rows),
        "repeats": sum(t.repeated for t in trajs),
        "truncated": sum(t.finish_reason == "length" for t in trajs),
        "buffered": buffered,
    }


def metrics_row(
    iteration: int,
    k: int,
    shared: list[dict[str, Any]],
    train: dict[str, float],
    length_weight: float,
    t_rollout: float,
    t_train: float,
    dt: float,
    elapsed: float,
) -> dict[str, Any]:
    """One metrics.jsonl row from every process's `process_stats` and the training statistics.

    >>> s = {"reward": [1.0, 0.0], "correct": [1.0, 0.0], "tokens": [10, 30], "budgets": [],
    ...      "forced": [], "reasoning": [], "trained_tokens": 40, "repeats": 0, "truncated": 1, "buffered": 0}
    >>> row = metrics_row(0, 2, [s], no_steps(), 0.0, 0.5, 0.25, 1.0, 1.0)
    >>> row["accuracy"], row["mean_tokens"], row["groups"], row["truncated_rate"], row["gradient_steps"]
    (0.5, 20.0, 1, 0.5, 0)
    """
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
