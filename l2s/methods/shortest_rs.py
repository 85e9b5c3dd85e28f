"""Shortest rejection sampling (Kimi k1.5 §2.4): "sample the same question n times (n = 8) ... and
select the shortest correct response for supervised fine-tuning".

  1. sample n completions per train prompt from the long model (l2s.sampling: resumable, graded by
     l2s.grading, length = completion tokens by the long model's tokenizer);
  2. keep the shortest correct one per prompt (l2s.selection.shortest_correct);
  3. SFT on them with TRL's SFTTrainer (prompt-completion rows in the trained model's own chat format,
     l2s.methods.training_text; loss on the completion only), starting from the long model — or from
     `--student`, which distils the long model's shortest answers into another model, as DeepSeek-R1
     does for its small models.

Sampling, SFT and saving are the libraries'; the glue this method shares with DPO (work dir, resume,
Trainer arguments, atomic save) is l2s.methods.sampled_training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from l2s.checkpoint import validate_checkpoint
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


class ShortestRSConfig(LongSamplesConfig):
    student: str | None = Field(None, description="train this model instead of --long (distillation)")


# --- the method ---------------------------------------------------------------------------------


def sft_rows(best: dict[str, dict[str, Any]], text: TrainingText) -> list[dict[str, str]]:
    """TRL's plain-text prompt-completion rows: the prompt as the trained model's template renders it, the
    chosen answer as the long model wrote it (l2s.methods.training_text says why not conversational rows)."""
    from l2s.sampling import record_messages

    rows = []
    for r in best.values():
        msgs = record_messages(r)
        rows.append({"prompt": text.prompt(msgs), "completion": text.completion(msgs, r["completion"])})
    return rows


def run(cfg: ShortestRSConfig) -> Path:
    """Sample the long model n times per train prompt, keep the shortest correct, SFT on them."""
    import time

    from l2s.selection import length_stats, shortest_correct

    started = time.perf_counter()
    long, out, work = prepare(cfg, "shortest-rs")
    start = validate_checkpoint(cfg.student) if cfg.student else long

    # 1. n samples per prompt from the long model.
    records, samples_at = long_samples(cfg, long, work)

    # 2. the shortest correct (finished) one per prompt.
    best = shortest_correct(finished_only(records))
    prompts = {r["prompt_id"] for r in records}
    without = len(prompts) - len(best)
    if not best:
        raise UserError(
            f"no correct samples in {len(records)} samples of {len(prompts)} prompts: raise n or check the grader"
        )
    chosen_mean = sum(r["completion_tokens"] for r in best.values()) / len(best)
    sample_mean = length_stats(records)["mean"]
    print(
        f"shortest-rs: {len(best)}/{len(prompts)} prompts have a correct sample ({without} have none); "
        f"shortest correct: {chosen_mean:.1f} tokens on average vs {sample_mean:.1f} over all samples"
    )

    # 3. SFT on them (completion-only loss), resuming from OUT.work/trainer after a kill.
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    trainer_dir = work / "trainer"
    settings = {
        **cfg.model_dump(exclude={"force", "out"}),
        "start": str(start.resolve()),
        "samples": samples_at,
    }
    resume = resume_point(trainer_dir, settings)
    args = SFTConfig(**training_args(cfg, trainer_dir), completion_only_loss=True)
    tokenizer = AutoTokenizer.from_pretrained(str(start))
    source = AutoTokenizer.from_pretrained(str(long)) if cfg.student else None
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(start)),
        args=args,
        train_dataset=Dataset.from_list(sft_rows(best, TrainingText(tokenizer, source))),
        processing_class=tokenizer,
    )
    result = trainer.train(resume_from_checkpoint=resume)

    metrics = {
        "prompts": len(prompts),
        "prompts_with_correct": len(best),
        "prompts_without_correct": without,
        "samples": len(records),
        "sample_accuracy": sum(r["correct"] for r in records) / len(records),
        "sample_mean_tokens": sample_mean,
        "chosen_mean_tokens": chosen_mean,
        "train_loss": result.training_loss,
        "train_steps": result.global_step,
        "processes": trainer.args.world_size,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    parents = {"long": long.resolve()} | ({"student": start.resolve()} if cfg.student else {})
    save_trained(
        trainer,
        start,
        out,
        force=cfg.force,
        provenance=dict(
            method="shortest-rs", parents=parents, config=cfg.model_dump(mode="json"), metrics=metrics
        ),
    )  # fmt: skip  (removes the trainer dir; samples stay in OUT.work for reuse, e.g. by dpo)
    print(f"shortest-rs -> {out} ({metrics['wall_seconds']:.0f} s; samples kept in {samples_at})")
    return out


CONFIG = ShortestRSConfig
