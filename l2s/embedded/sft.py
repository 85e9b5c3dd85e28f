"""Supervised fine-tuning of the embedded base into `short` / `long-sft`, through TRL's SFTTrainer.

The examples are conversational prompt-completion records, so TRL applies the chat template and
computes the loss on the completion only. Trainer checkpoints go to `work_dir`; a killed run resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from l2s.embedded.presets import TrainSpec
from l2s.embedded.pretrain import train_and_save, training_args


def sft(
    base: Path, examples: list[dict], spec: TrainSpec, seed: int, work_dir: Path, dest: Path
) -> dict[str, Any]:
    """Fine-tune the checkpoint `base` on `examples`; save model + tokenizer to `dest`."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    args = SFTConfig(
        **training_args(spec, work_dir, seed),
        max_length=spec.max_length,
        completion_only_loss=True,
        packing=False,
        # Batches of similar length waste less compute on padding.
        train_sampling_strategy="group_by_length",
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(examples), processing_class=tokenizer
    )
    result = train_and_save(trainer, tokenizer, work_dir, dest)
    return {
        "train_loss": round(float(result.training_loss), 4),
        "steps": spec.steps,
        "examples": len(examples),
    }
