"""`RLConfig`: every knob of the Kimi RL stage, with one line of help each.

Defaults < configs/rl_*.yaml < `l2s rl` flags (see `l2s.config.load_config`). The two shipped YAMLs are
the report's two uses of one engine: configs/rl_full.yaml (the full RL stage: length penalty off, long
maximum length) and configs/rl_long2short.yaml (long2short RL: penalty on after a warm-up, a much
smaller maximum length). A budget range (`budget_min`, `budget_max`) turns the same engine into
budget-conditioned RL (`l2s derive --method budget`, configs/derive_budget.yaml).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from l2s.errors import UserError
from l2s.rl.curriculum import STRATEGIES
from l2s.sampling import GradedTask

# Room a rollout needs after its thinking budget: the `</think>` marker, the final answer line and EOS.
ANSWER_TOKENS = 16


class RLConfig(GradedTask):
    """The task with verifiable answers and its grader (`GradedTask`), then the RL settings."""

    # What to train and where the result goes.
    init: str | None = Field(None, description="checkpoint folder the policy starts from (e.g. long-sft)")
    out: str | None = Field(None, description="output checkpoint folder (HF format + l2s.json)")
    force: bool = Field(False, description="replace an existing --out and discard an unfinished run")
    train_problems: int | None = Field(
        None, ge=1, description="size of the prompt pool drawn from the train split (None: the whole split)"
    )
    seed: int = Field(0, description="seed for prompt sampling, rollouts and training")

    # Online policy mirror descent (§2.3.2).
    iterations: int = Field(20, ge=1, description="RL iterations (each: rollouts, then gradient steps)")
    prompts_per_iteration: int = Field(16, ge=1, description="new prompts started per iteration")
    k: int = Field(8, description="samples per prompt; their mean reward is the baseline (>= 2)")
    tau: float = Field(0.05, description="strength of the KL pull towards the iteration's start policy (> 0)")
    learning_rate: float = Field(1e-5, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    epochs: int = Field(1, ge=1, description="passes over an iteration's rollouts")
    minibatch_prompts: int = Field(8, ge=1, description="prompts (groups of k) per gradient step")
    micro_batch_tokens: int = Field(
        4096, ge=1, description="padded tokens per forward pass (rows sorted by length; gradients accumulate)"
    )
    max_grad_norm: float | None = Field(1.0, description="gradient clipping norm (None: no clipping)")
    reset_optimizer: bool = Field(
        True, description="reset the optimizer state every iteration, as the report does"
    )

    # Rollouts (§2.6.2).
    engine: str = Field(
        "hf",
        description="rollout engine: hf (the in-memory policy) | vllm (one engine, weights loaded in memory "
        "each iteration)",
    )
    engine_options: dict[str, Any] = Field(
        default_factory=dict, description="extra vllm engine keyword arguments (EngineArgs fields)"
    )
    tensor_parallel_size: int = Field(
        1, ge=1, description="vllm engine: GPUs the rollout model is split over"
    )
    max_tokens: int = Field(512, description="maximum completion tokens of a rollout (its whole length)")
    temperature: float = Field(1.0, gt=0, description="rollout sampling temperature")
    top_p: float = Field(1.0, gt=0, le=1, description="rollout nucleus sampling")
    rollout_batch_size: int = Field(256, ge=1, description="rows per generate call of the hf engine")
    segment_tokens: int | None = Field(
        None, ge=1, description="partial rollouts: tokens per trajectory per iteration (None: off)"
    )
    mask_old_segments: bool = Field(
        False, description="partial rollouts: leave segments of older iterations out of the loss"
    )
    repeat_detection: bool = Field(True, description="stop a rollout that ends in a repeated block of tokens")
    repeat_penalty: float = Field(0.0, ge=0, description="reward subtracted from a rollout stopped as a loop")

    # Rewards (§2.3.3) and sampling (§2.3.4).
    length_penalty_weight: float = Field(0.0, ge=0, description="weight of Kimi's length reward (0: off)")
    length_penalty_warmup: int = Field(
        0, ge=0, description="iterations of plain RL before the length reward turns on"
    )
    wrong_answer_length: Literal["kimi", "none"] = Field(
        "kimi",
        description="length reward of a wrong answer: kimi = min(0, λ) as the report | none = 0, so "
        "stopping short of the answer earns nothing over running long",
    )
    sampling: str = Field("curriculum+prioritized", description=f"prompt sampling: {' | '.join(STRATEGIES)}")
    curriculum_iterations: int = Field(
        10, ge=1, description="iterations over which harder problems are phased in"
    )
    priority_floor: float = Field(0.05, ge=0, le=1, description="lowest sampling weight of a solved prompt")

    # Budget-conditioned RL (L1, Aggarwal & Welleck 2025): each group's prompt states a thinking budget N
    # drawn from [budget_min, budget_max], and the reward charges reasoning tokens against it.
    budget_min: int | None = Field(
        None, ge=1, description="smallest thinking budget stated in a rollout's prompt (None: off)"
    )
    budget_max: int | None = Field(
        None, ge=1, description="largest thinking budget stated in a rollout's prompt (None: off)"
    )
    budget_alpha: float = Field(
        1.0,
        ge=0,
        description="weight of the budget penalty: α·(reasoning tokens missing the budget)/budget",
    )
    budget_form: Literal["max", "exact"] = Field(
        "max", description="budget instruction: max (think at most N tokens) | exact (think exactly N tokens)"
    )
    budget_forced_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of each group's samples that get </think> forced at the stated budget, as served",
    )
    budget_place: Literal["user", "system"] = Field(
        "user",
        description="where the budget instruction goes: user (end of the user turn, as L1) | system (the system turn)",
    )

    # Bookkeeping.
    save_every: int = Field(
        5, ge=1, description="checkpoint every N iterations (a run resumes from the last one)"
    )
    time_limit_minutes: float | None = Field(
        None, gt=0, description="stop after this much training wall time"
    )
    threads: int | None = Field(
        None,
        ge=1,
        description="torch CPU threads (None: torch's default; 1 is fastest on a busy or tiny CPU job)",
    )
    mixed_precision: Literal["no", "fp16", "bf16"] | None = Field(
        None,
        description="accelerate mixed precision (None: what `accelerate launch` / its config file says, else fp32)",
    )

    @field_validator("k")
    @classmethod
    def _k_at_least_two(cls, v: int) -> int:
        if v < 2:
            raise ValueError(
                f"k must be >= 2 (the mean-reward baseline needs two samples per prompt), got {v}"
            )
        return v

    @field_validator("tau")
    @classmethod
    def _tau_positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError(f"tau must be > 0 (it weighs the KL term of mirror descent), got {v}")
        return v

    @field_validator("max_tokens")
    @classmethod
    def _max_tokens_positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"max_tokens must be >= 1 (the rollout length), got {v}")
        return v

    @field_validator("sampling")
    @classmethod
    def _known_sampling(cls, v: str) -> str:
        if v not in STRATEGIES:
            raise ValueError(f"unknown sampling '{v}'; choose one of: {', '.join(STRATEGIES)}")
        return v

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, v: str) -> str:
        if v not in ("hf", "vllm"):
            raise ValueError(f"unknown engine '{v}'; choose hf or vllm")
        return v

    @property
    def budgeted(self) -> bool:
        """Whether this is budget-conditioned RL (a budget range is set)."""
        return self.budget_min is not None or self.budget_max is not None

    def fingerprint(self) -> dict:
        """What must match for a run to resume: everything except run length and bookkeeping."""
        skip = {"iterations", "out", "force", "save_every", "time_limit_minutes", "threads"}
        return {k: v for k, v in self.model_dump().items() if k not in skip}


def check_budget(cfg: RLConfig) -> None:
    """Raise a one-line `UserError` unless the budget settings make a budget-conditioned run (or are off)."""
    if not cfg.budgeted:
        return
    if cfg.budget_min is None or cfg.budget_max is None:
        raise UserError("budget-conditioned RL needs both --budget-min and --budget-max")
    if cfg.budget_min > cfg.budget_max:
        raise UserError(
            f"the budget range is empty: --budget-min {cfg.budget_min} is above --budget-max "
            f"{cfg.budget_max}; lower --budget-min or raise --budget-max"
        )
    if cfg.budget_max + ANSWER_TOKENS > cfg.max_tokens:
        raise UserError(
            f"--budget-max {cfg.budget_max} plus {ANSWER_TOKENS} tokens for the answer is above --max-tokens "
            f"{cfg.max_tokens} (the longest rollout); raise --max-tokens to at least "
            f"{cfg.budget_max + ANSWER_TOKENS} or lower --budget-max to at most {cfg.max_tokens - ANSWER_TOKENS}"
        )
    if cfg.budget_forced_share > 0 and cfg.segment_tokens is not None:
        raise UserError(
            f"--budget-forced-share {cfg.budget_forced_share} cannot be used with partial rollouts "
            f"(--segment-tokens {cfg.segment_tokens}): a forced budget counts from the start of the think "
            "block; drop one of the two"
        )
    if cfg.length_penalty_weight > 0:
        raise UserError(
            "budget-conditioned RL replaces Kimi's length reward with the budget penalty; "
            "set --length-penalty-weight 0 (tune --budget-alpha instead)"
        )


# The shipped stages in code, so `l2s init` and `l2s derive --method rl` work from an installed package
# without the repo's configs/ folder. configs/rl_full.yaml and configs/rl_long2short.yaml hold the same
# values (a test keeps them equal).
FULL_STAGE: dict = dict(
    task="arith",
    iterations=40,
    prompts_per_iteration=16,
    k=8,
    tau=0.05,
    learning_rate=1e-5,
    epochs=1,
    minibatch_prompts=8,
    reset_optimizer=True,
    max_tokens=512,
    temperature=1.0,
    segment_tokens=None,
    repeat_detection=True,
    length_penalty_weight=0.0,
    sampling="curriculum+prioritized",
    curriculum_iterations=10,
    save_every=5,
    time_limit_minutes=10,
)

# long2short differs from the full stage only here: fewer iterations, a tight max length, the length
# reward on after a warm-up, and no curriculum.
LONG2SHORT_STAGE: dict = {
    **FULL_STAGE,
    "iterations": 30,
    "max_tokens": 160,
    "length_penalty_weight": 0.5,
    "length_penalty_warmup": 3,
    "sampling": "prioritized",
}


def full_stage(**overrides) -> RLConfig:
    """The full RL stage (configs/rl_full.yaml): long-SFT → long; pass init=, out= (and any override)."""
    return RLConfig(**{**FULL_STAGE, **overrides})


def long2short_stage(**overrides) -> RLConfig:
    """long2short RL (configs/rl_long2short.yaml): length reward on after a warm-up, tight max length."""
    return RLConfig(**{**LONG2SHORT_STAGE, **overrides})
