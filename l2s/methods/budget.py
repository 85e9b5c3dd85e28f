"""Budget-conditioned RL (L1 / LCPO: Aggarwal & Welleck 2025, "L1: Controlling How Long a Reasoning Model
Thinks With Reinforcement Learning", arXiv 2503.04697): a long2short model whose thinking length is set
per request.

Every rollout group's prompt states a thinking budget N ("Think for at most N tokens.", `l2s.budget`),
drawn per prompt from [budget_min, budget_max]; the k samples of the group share it. The reward is
correctness minus budget_alpha times the reasoning tokens (those inside the think block) past N, over N
(form "max"), or missing N either way (form "exact"): l2s.rl.rewards.budgeted_reward. Kimi's per-group
length reward is off: the budget penalty replaces it. So the model learns to read its budget from the
prompt, and serving states the same sentence wherever a budget is asked for.

The engine is l2s's own Kimi RL loop (`l2s.rl.trainer.run_rl`), started from the long model; its
checkpoint's l2s.json says `method: budget` and records the budget settings (`l2s.budget.budget_prompt`
reads the form and place from it). The defaults are those of configs/derive_budget.yaml (tests/test_configs.py
keeps the two equal).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from l2s.errors import UserError
from l2s.methods.rl import RLMethodConfig
from l2s.rl.config import RLConfig


class BudgetConfig(RLMethodConfig):
    """The rl method's settings with a budget range on and Kimi's length reward off (budget_form,
    budget_place and budget_forced_share keep RLConfig's defaults)."""

    max_tokens: int = Field(
        96, description="maximum completion tokens of a rollout: budget_max plus room for the answer"
    )
    budget_min: int | None = Field(8, ge=1, description="smallest thinking budget stated in a prompt")
    budget_max: int | None = Field(64, ge=1, description="largest thinking budget stated in a prompt")
    budget_alpha: float = Field(
        0.3,
        ge=0,
        description="weight of the budget penalty: α·(reasoning tokens missing the budget)/budget",
    )
    length_penalty_weight: float = Field(
        0.0, ge=0, description="Kimi's length reward: must stay 0 (the budget penalty replaces it)"
    )
    length_penalty_warmup: int = Field(0, ge=0, description="unused: the length reward is off")
    learning_rate: float = Field(2e-4, gt=0, description="AdamW learning rate")


def run(cfg: BudgetConfig) -> Path:
    """RL from the long model, each prompt stating a thinking budget and the reward charging against it."""
    from l2s.rl.trainer import run_rl

    if cfg.length_penalty_weight > 0:
        raise UserError(
            f"--length-penalty-weight {cfg.length_penalty_weight} does not apply to --method budget: the "
            "budget penalty replaces Kimi's length reward (tune --budget-alpha instead)"
        )
    if cfg.budget_min is None or cfg.budget_max is None:
        raise UserError("budget needs a budget range: pass --budget-min and --budget-max")
    if (
        cfg.long
        and cfg.init
        and Path(cfg.long).expanduser().resolve() != Path(cfg.init).expanduser().resolve()
    ):
        raise UserError(
            f"--long {cfg.long} and init {cfg.init} disagree; budget starts from --long, drop init"
        )
    init = cfg.long or cfg.init
    if init is None:
        raise UserError("budget needs --long (the long-CoT checkpoint to start from) and --out")
    return run_rl(RLConfig(**cfg.model_dump(exclude={"long", "init"}), init=init))


CONFIG = BudgetConfig
