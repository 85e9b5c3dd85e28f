"""Pretrain the embedded base model: a causal LM on text documents, via transformers' Trainer.

One padded sequence per document (see `documents_to_sequences`), in the Trainer's shuffled order.
Trainer checkpoints go to `work_dir`; a killed run resumes from the last one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from l2s.embedded.presets import TrainSpec


def documents_to_sequences(token_lists: list[list[int]], eos_id: int, max_length: int) -> list[list[int]]:
    """One training sequence per document, `eos_id` appended, cut at `max_length`.

    Documents are not packed into shared blocks: with packing, attention also reaches into the previous
    documents, whose expressions the scratchpad's copy steps can then pick up by mistake. Measured on the
    default preset (200 held-out problems): long-sft 25% packed vs 37% unpacked — but the unpacked run
    also saw more real tokens per step, so the share due to packing alone is not known.

    >>> documents_to_sequences([[1, 2], [3, 4, 5, 6]], eos_id=0, max_length=4)
    [[1, 2, 0], [3, 4, 5, 6]]
    """
    return [(ids + [eos_id])[:max_length] for ids in token_lists]


def training_args(spec: TrainSpec, work_dir: Path, seed: int, **extra: Any) -> dict[str, Any]:
    """TrainingArguments shared by pretraining and SFT: CPU, fp32, seeded, resumable, no trackers."""
    schedule: dict[str, Any] = dict(lr_scheduler_type="cosine")
    if spec.decay_steps:
        schedule = dict(
            lr_scheduler_type="warmup_stable_decay", lr_scheduler_kwargs={"num_decay_steps": spec.decay_steps}
        )
    return dict(
        output_dir=str(work_dir),
        max_steps=spec.steps,
        per_device_train_batch_size=spec.batch_size,
        learning_rate=spec.lr,
        warmup_steps=spec.warmup_steps,
        weight_decay=0.01,
        adam_beta2=0.98,
        max_grad_norm=1.0,
        logging_steps=max(1, spec.steps // 10),
        save_strategy="steps",
        save_steps=spec.save_steps,
        save_total_limit=1,
        seed=seed,
        data_seed=seed,
        use_cpu=True,
        bf16=False,
        report_to="none",
        dataloader_num_workers=0,
        **schedule,
        **extra,
    )


def last_checkpoint(work_dir: Path) -> str | None:
    """The newest complete Trainer checkpoint in `work_dir`, to resume from (None on a fresh start); one
    torn by a kill mid-save is skipped (`l2s.checkpoint.last_complete_checkpoint`)."""
    from l2s.checkpoint import last_complete_checkpoint

    return last_complete_checkpoint(work_dir) if work_dir.is_dir() else None


def train_and_save(trainer: Any, tokenizer: Any, work_dir: Path, dest: Path) -> Any:
    """Train (resuming from `work_dir`'s last Trainer checkpoint), then write `dest` as a complete
    checkpoint: weights, tokenizer (left padding, for generation) and a generation config."""
    from transformers import GenerationConfig

    resume = last_checkpoint(work_dir)
    if resume:
        print(f"  resuming from {resume}", flush=True)
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.model.save_pretrained(dest, safe_serialization=True)
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(dest)
    GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    ).save_pretrained(dest)
    return result


def pretrain(
    tokenizer: Any, documents: list[str], size: str, spec: TrainSpec, seed: int, work_dir: Path, dest: Path
) -> dict[str, Any]:
    """Train a fresh Llama of shape `size` on `documents`; save model + tokenizer to `dest`."""
    from datasets import Dataset
    from transformers import (
        DataCollatorForLanguageModeling,
        LlamaForCausalLM,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from l2s.embedded.model import llama_config

    set_seed(seed)
    ids = tokenizer(documents, add_special_tokens=False)["input_ids"]
    blocks = documents_to_sequences(ids, tokenizer.eos_token_id, spec.max_length)
    dataset = Dataset.from_dict({"input_ids": blocks})
    model = LlamaForCausalLM(llama_config(len(tokenizer), size, tokenizer, max_positions=1024))
    args = TrainingArguments(**training_args(spec, work_dir, seed))
    tokenizer.padding_side = "right"  # training pads after each document; generation (saved below) pads left
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        processing_class=tokenizer,
    )
    result = train_and_save(trainer, tokenizer, work_dir, dest)
    return {
        "train_loss": round(float(result.training_loss), 4),
        "steps": spec.steps,
        "documents": len(blocks),
        "mean_tokens_per_document": round(sum(map(len, blocks)) / max(len(blocks), 1), 1),
    }
