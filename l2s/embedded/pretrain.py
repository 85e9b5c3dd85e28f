"""Pretrain the embedded base model: a causal LM on packed plain-text documents, via transformers' Trainer.

Documents are joined with the EOS token and cut into fixed blocks (as transformers' `run_clm` example
does), so no compute is spent on padding. Trainer checkpoints go to `work_dir`; a killed run resumes
from the last one. Only the packing is ours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from l2s.embedded.presets import TrainSpec


def pack(token_lists: list[list[int]], eos_id: int, block: int) -> list[list[int]]:
    """Concatenate token lists with `eos_id` after each and cut into full blocks (the tail is dropped).

    >>> pack([[1, 2], [3], [4, 5]], eos_id=0, block=3)  # 1 2 0 3 0 4 5 0: the last two are dropped
    [[1, 2, 0], [3, 0, 4]]
    """
    flat: list[int] = []
    for ids in token_lists:
        flat += ids
        flat.append(eos_id)
    return [flat[i : i + block] for i in range(0, len(flat) - block + 1, block)]


def training_args(spec: TrainSpec, work_dir: Path, seed: int, **extra: Any) -> dict[str, Any]:
    """TrainingArguments shared by pretraining and SFT: CPU, fp32, seeded, resumable, no trackers."""
    return dict(
        output_dir=str(work_dir),
        max_steps=spec.steps,
        per_device_train_batch_size=spec.batch_size,
        learning_rate=spec.lr,
        lr_scheduler_type="cosine",
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
        **extra,
    )


def last_checkpoint(work_dir: Path) -> str | None:
    """The newest Trainer checkpoint in `work_dir`, to resume from (None on a fresh start)."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(work_dir)) if work_dir.is_dir() else None


def pretrain(
    tokenizer: Any, documents: list[str], size: str, spec: TrainSpec, seed: int, work_dir: Path, dest: Path
) -> dict[str, Any]:
    """Train a fresh Llama of shape `size` on `documents`; save model + tokenizer to `dest`."""
    import torch
    from datasets import Dataset
    from transformers import (
        DataCollatorForLanguageModeling,
        GenerationConfig,
        LlamaForCausalLM,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from l2s.embedded.model import llama_config

    set_seed(seed)
    ids = tokenizer(documents, add_special_tokens=False)["input_ids"]
    blocks = pack(ids, tokenizer.eos_token_id, spec.max_length)
    dataset = Dataset.from_dict({"input_ids": blocks})
    model = LlamaForCausalLM(llama_config(len(tokenizer), size, tokenizer, max_positions=1024))
    args = TrainingArguments(**training_args(spec, work_dir, seed))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        processing_class=tokenizer,
    )
    resume = last_checkpoint(work_dir)
    if resume:
        print(f"  resuming from {resume}", flush=True)
    result = trainer.train(resume_from_checkpoint=resume)
    with torch.no_grad():
        model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    ).save_pretrained(dest)
    return {
        "train_loss": round(float(result.training_loss), 4),
        "steps": spec.steps,
        "tokens": spec.steps * spec.batch_size * spec.max_length,
        "blocks": len(blocks),
    }
