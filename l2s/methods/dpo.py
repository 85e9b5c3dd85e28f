"""DPO (Kimi k1.5 §2.4): "the shortest correct solution is used as the positive sample, while longer
responses are treated as negative samples, including both wrong longer responses and correct longer
responses (1.5 times longer than the chosen positive sample)".

  1. sample n completions per train prompt from the long model (the same step as shortest-rs; pass
     `--samples OUT.work/samples.jsonl` of a shortest-rs run to reuse them);
  2. build pairs with the core's 1.5x rule (l2s.selection.preference_pairs);
  3. train with TRL's DPOTrainer from the long model, the long model also being the frozen reference.

Everything here is TRL's and the core's; the sampling, resuming and saving glue is shared with
shortest-rs (l2s.methods.sampled_training; the work dir and its settings guard are l2s.workdir's).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from l2s.errors import UserError
from l2s.methods.sampled_training import (
    LongSamplesConfig,
    finished_only,
    long_samples,
    prepare,
    resume_point,
    save_trained,
    training_args,
)
from l2s.methods.training_text import TrainingText

# TRL 1.16 DPOConfig.loss_type: the losses DPOTrainer implements (trl/trainer/dpo_config.py).
LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
    "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
)  # fmt: skip


class DPOMethodConfig(LongSamplesConfig):
    beta: float = Field(0.1, gt=0, description="DPO beta: how far the policy may move from the long model")
    loss_type: str = Field(
        "sigmoid", description="TRL loss type; comma-separated to combine (e.g. sigmoid,sft)"
    )
    loss_weights: list[float] | None = Field(
        None,
        description="weight of each loss type, in --loss-type's order (e.g. 1,2 with sigmoid,sft); None: all 1",
    )
    ratio: float = Field(
        1.5, ge=1.0, description="a correct answer >= ratio x the shortest is rejected (Kimi: 1.5)"
    )
    max_pairs_per_prompt: int | None = Field(4, ge=1, description="cap on pairs per prompt (None: all)")
    learning_rate: float = Field(2e-5, gt=0, description="AdamW learning rate")
    epochs: float = Field(1.0, gt=0, description="passes over the pairs")
    batch_size: int = Field(8, ge=1, description="per-device train batch size (pairs)")

    @field_validator("loss_type")
    @classmethod
    def _known_loss(cls, v: str) -> str:
        bad = [t for t in v.split(",") if t.strip() not in LOSS_TYPES]
        if bad:
            raise ValueError(f"unknown DPO loss type '{bad[0]}'; choose from: {', '.join(LOSS_TYPES)}")
        return v

    @model_validator(mode="after")
    def _weights_match_losses(self) -> DPOMethodConfig:
        n = len(self.loss_type.split(","))
        if self.loss_weights is not None and len(self.loss_weights) != n:
            raise ValueError(
                f"--loss-weights has {len(self.loss_weights)} values for {n} loss type(s) "
                f"({self.loss_type}); give one weight per loss type"
            )
        return self


def dpo_rows(pairs: list[dict[str, Any]], text: TrainingText) -> list[dict[str, str]]:
    """TRL's plain-text preference rows, in the long model's own chat format (l2s.methods.training_text)."""
    from l2s.sampling import record_messages

    return [
        {
            "prompt": text.prompt(record_messages(p)),
            "chosen": text.completion(record_messages(p), p["chosen"]),
            "rejected": text.completion(record_messages(p), p["rejected"]),
        }
        for p in pairs
    ]


def run(cfg: DPOMethodConfig) -> Path:
    """Sample the long model, pair shortest-correct against wrong and 1.5x-longer answers, train DPO."""
    from l2s.selection import preference_pairs

    started = time.perf_counter()
    long, out, work = prepare(cfg, "dpo")

    # 1. n samples per prompt from the long model.
    records, samples_at = long_samples(cfg, long, work)

    # 2. pairs by the 1.5x rule (a sample cut off by max_tokens may be rejected, never chosen).
    pairs = preference_pairs(
        finished_only(records), ratio=cfg.ratio, max_pairs_per_prompt=cfg.max_pairs_per_prompt
    )
    prompts = {r["prompt_id"] for r in records}
    with_pairs = {p["prompt_id"] for p in pairs}
    if not any(r["correct"] for r in finished_only(records)):
        raise UserError(
            f"no correct samples in {len(records)} samples of {len(prompts)} prompts: raise n or check the grader"
        )
    if not pairs:
        raise UserError(
            f"no preference pairs: every prompt's answers are correct and within {cfg.ratio}x of the shortest; "
            "raise n or the temperature, or lower --ratio"
        )
    n_long_correct = sum(p["rejected_correct"] for p in pairs)
    print(
        f"dpo: {len(pairs)} pairs from {len(with_pairs)}/{len(prompts)} prompts "
        f"({len(prompts) - len(with_pairs)} without a pair); rejected: {len(pairs) - n_long_correct} wrong, "
        f"{n_long_correct} correct but >= {cfg.ratio}x longer"
    )

    # 3. DPO from the long model against itself as the frozen reference, resuming after a kill.
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    trainer_dir = work / "trainer"
    resume = resume_point(trainer_dir, {**cfg.model_dump(exclude={"force", "out"}), "samples": samples_at})
    args = DPOConfig(
        **training_args(cfg, trainer_dir),
        beta=cfg.beta,
        loss_type=[t.strip() for t in cfg.loss_type.split(",")],
        loss_weights=cfg.loss_weights,
    )
    tokenizer = AutoTokenizer.from_pretrained(str(long))
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(long)),
        ref_model=AutoModelForCausalLM.from_pretrained(str(long)),
        args=args,
        train_dataset=Dataset.from_list(dpo_rows(pairs, TrainingText(tokenizer))),
        processing_class=tokenizer,
    )
    result = trainer.train(resume_from_checkpoint=resume)

    metrics = {
        "prompts": len(prompts),
        "prompts_with_pairs": len(with_pairs),
        "prompts_without_correct": len(prompts)
        - len({r["prompt_id"] for r in finished_only(records) if r["correct"]}),
        "pairs": len(pairs),
        "rejected_wrong": len(pairs) - n_long_correct,
        "rejected_long_correct": n_long_correct,
        "chosen_mean_tokens": sum(p["chosen_tokens"] for p in pairs) / len(pairs),
        "rejected_mean_tokens": sum(p["rejected_tokens"] for p in pairs) / len(pairs),
        "train_loss": result.training_loss,
        "train_steps": result.global_step,
        "processes": trainer.args.world_size,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    save_trained(
        trainer, long, out, force=cfg.force,
        provenance=dict(method="dpo", parents={"long": long.resolve()}, config=cfg.model_dump(mode="json"), metrics=metrics),
    )  # fmt: skip
    print(f"dpo -> {out} ({metrics['wall_seconds']:.0f} s; samples kept in {samples_at})")
    return out


CONFIG = DPOMethodConfig
