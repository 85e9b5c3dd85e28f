"""Presets of `l2s init`: how big the embedded family is and how long each stage trains.

`default` is the product's built-in workload, sized to build in minutes on a 2-core CPU; `tiny` builds
a pico family in seconds for tests (its models are untrained noise; only the plumbing is real).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from l2s.config import Config
from l2s.errors import UserError


class TrainSpec(Config):
    """One training stage (pretraining or SFT)."""

    problems: int = Field(description="train-split problems the stage's examples are made from")
    steps: int = Field(description="optimizer steps")
    batch_size: int = Field(description="sequences per optimizer step")
    lr: float = Field(description="peak learning rate (linear warm-up, cosine decay)")
    warmup_steps: int = Field(default=10, description="linear warm-up steps")
    decay_steps: int | None = Field(
        default=None,
        description="None: cosine decay over all steps; N: constant after warm-up, cosine decay over the last N",
    )
    max_length: int = Field(default=512, description="tokens per sequence (longer ones are cut)")
    save_steps: int = Field(default=50, description="Trainer checkpoint interval, so a killed run resumes")


class Preset(Config):
    """Everything `l2s init` needs to rebuild one family bit for bit."""

    name: str = Field(description="preset name")
    seed: int = Field(default=0, description="seed of data generation and training")
    size: str = Field(description="model shape, a key of l2s.embedded.model.SIZES")
    vocab_size: int = Field(default=384, description="BPE vocabulary size (digits are single tokens)")
    tokenizer_problems: int = Field(description="train problems whose text trains the tokenizer")
    instruction_share: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description="share of training prompts carrying one generic instruction (l2s.embedded.corpus), so "
        "the models, like real chat models, still answer when something is added to the prompt",
    )
    instruction_templates: int = Field(
        default=30,
        ge=1,
        description="kinds of instruction the training prompts draw from (the first N of "
        "l2s.embedded.corpus.INSTRUCTIONS): with 10, one of three seeds' long models answered 27-40% "
        "under an instruction it never saw",
    )
    length_instructions: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="share of the instructions that ask for less ('Be brief.', 'Reply in at most N lines.'), "
        "which the long traces follow (l2s.embedded.corpus), so the models learn that a prompt's word on "
        "length matters; 0: every instruction is ignored",
    )
    pretrain: TrainSpec = Field(description="base: causal LM on chat-formatted workload text")
    short: TrainSpec = Field(description="short: SFT from base on short traces")
    long_sft: TrainSpec = Field(description="long-sft: SFT from base on long traces")
    rl: dict[str, Any] = Field(
        default_factory=dict,
        description="long: the full RL stage on long-sft; settings over l2s.rl.config.FULL_STAGE (rl_full.yaml)",
    )


PRESETS: dict[str, Preset] = {
    "default": Preset(
        name="default",
        size="nano",
        tokenizer_problems=3000,
        # The running-total trace (arith.py) is learned abruptly, once an induction lookup forms. A
        # constant lr of 3e-3 with the last 300 of 1200 steps decayed gets base to about 100% greedy
        # accuracy on held-out problems by step 1200-1350 on every seed tried; a higher lr (5e-3)
        # learns the lookup later, and plain-text documents later still (corpus.py).
        pretrain=TrainSpec(
            problems=24_000,
            steps=1200,
            batch_size=16,
            lr=3e-3,
            warmup_steps=30,
            decay_steps=300,
            max_length=128,
        ),
        short=TrainSpec(problems=4000, steps=60, batch_size=32, lr=1e-3, max_length=64),
        long_sft=TrainSpec(problems=4000, steps=100, batch_size=16, lr=1e-3, max_length=384),
        rl=dict(
            iterations=40,
            prompts_per_iteration=16,
            k=8,
            # 5e-5, not rl_full.yaml's 1e-5 (sized for large models): on this 0.5M-parameter family the
            # smaller rate gains a few points of long-sft's T=1 accuracy in 40 iterations, 5e-5 several
            # times as many (greedy is at the ceiling already). benchmarks/rl_stage.py measures it.
            learning_rate=5e-5,
            minibatch_prompts=8,
            max_tokens=128,
            curriculum_iterations=10,
            save_every=5,
            # No wall-time limit: the family must come out the same on a fast and a loaded machine (a
            # limit cut this stage short on a busy CPU, so `long` depended on the machine's speed).
            time_limit_minutes=None,
        ),
    ),
    "tiny": Preset(
        name="tiny",
        size="pico",
        tokenizer_problems=100,
        pretrain=TrainSpec(problems=100, steps=2, batch_size=4, lr=1e-3, max_length=128, save_steps=1000),
        short=TrainSpec(problems=16, steps=2, batch_size=4, lr=1e-3, max_length=64, save_steps=1000),
        long_sft=TrainSpec(problems=16, steps=2, batch_size=4, lr=1e-3, max_length=384, save_steps=1000),
        rl=dict(
            iterations=2,
            prompts_per_iteration=2,
            k=2,
            learning_rate=1e-3,
            minibatch_prompts=2,
            max_tokens=16,
            train_problems=64,
            save_every=1,
        ),
    ),
}


def get_preset(name: str, seed: int | None = None) -> Preset:
    """The preset `name`, with `seed` replacing its default seed when given.

    >>> get_preset("tiny", seed=3).seed
    3
    >>> get_preset("huge")
    Traceback (most recent call last):
    l2s.errors.UserError: unknown preset 'huge'; choose one of: default, tiny
    """
    if name not in PRESETS:
        raise UserError(f"unknown preset '{name}'; choose one of: {', '.join(PRESETS)}")
    preset = PRESETS[name]
    return preset if seed is None else preset.model_copy(update={"seed": int(seed)})
