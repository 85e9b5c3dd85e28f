"""The RL stage's input checks, run before anything loads: each bad input is one line (UserError).

- `verifiable_problems`: the grader must accept each reference answer, or no rollout can earn a reward.
- `_check_inputs`: the initial checkpoint, the output folder, the budget range and the train problems.
- `_check_lengths`: the model's context must hold the longest prompt plus `max_tokens`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from l2s.checkpoint import ensure_writable, validate_checkpoint
from l2s.errors import UserError
from l2s.grading import grade
from l2s.rl.config import RLConfig, check_budget
from l2s.tasks import Problem, load_task


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
