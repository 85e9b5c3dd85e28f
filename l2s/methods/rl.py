"""long2short RL (Kimi k1.5 §2.4): "after the main RL stage, pick the model with the best balance of
performance and token efficiency, and run a second RL phase with the length penalty on and a much
smaller maximum rollout length".

The engine is l2s's own Kimi RL (`l2s.rl.trainer.run_rl`, the same loop as the full RL stage); this
method only starts it from the long model with the long2short settings. Its defaults are those of
configs/rl_long2short.yaml (tests/test_configs.py checks that the two agree), so
`l2s derive --method rl --long LONG --out OUT` and
`l2s derive --method rl --long LONG --config configs/rl_long2short.yaml --out OUT` do the same.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from l2s.errors import UserError
from l2s.rl.config import RLConfig
from l2s.rl.curriculum import STRATEGIES


class RLMethodConfig(RLConfig):
    """`RLConfig` with the long model as the start and the long2short settings as defaults."""

    long: str | None = Field(None, description="the long-CoT checkpoint RL starts from (the policy's init)")
    iterations: int = Field(30, ge=1, description="RL iterations (each: rollouts, then gradient steps)")
    max_tokens: int = Field(
        160, description="maximum completion tokens of a rollout: much smaller than the full stage's"
    )
    length_penalty_weight: float = Field(
        0.5, ge=0, description="weight of Kimi's length reward (on for long2short)"
    )
    length_penalty_warmup: int = Field(
        3, ge=0, description="iterations of plain RL before the length reward turns on"
    )
    sampling: str = Field("prioritized", description=f"prompt sampling: {' | '.join(STRATEGIES)}")
    time_limit_minutes: float | None = Field(10, gt=0, description="stop after this much training wall time")


def run(cfg: RLMethodConfig) -> Path:
    """Second RL phase from the long model: length penalty on, tight max length."""
    from l2s.rl.trainer import run_rl

    if (
        cfg.long
        and cfg.init
        and Path(cfg.long).expanduser().resolve() != Path(cfg.init).expanduser().resolve()
    ):
        raise UserError(f"--long {cfg.long} and init {cfg.init} disagree; rl starts from --long, drop init")
    if cfg.budget_min is not None or cfg.budget_max is not None:
        raise UserError(
            "--budget-min/--budget-max make a budget-conditioned model: use --method budget (rl is Kimi's "
            "long2short RL with the length penalty)"
        )
    init = cfg.long or cfg.init
    if init is None:
        raise UserError("rl needs --long (the long-CoT checkpoint to start from) and --out")
    if cfg.length_penalty_weight == 0:
        print("rl: length_penalty_weight is 0, so this is plain RL, not long2short", flush=True)
    rl_cfg = RLConfig(**cfg.model_dump(exclude={"long", "init"}), init=init)
    return run_rl(rl_cfg)


CONFIG = RLMethodConfig
