"""Training on the long model's samples: what shortest rejection sampling and DPO share.

Both methods draw n samples per train prompt from the long model through the shared sampling core
(l2s.sampling), train it with a TRL trainer, and save the result atomically. Written here by hand is
only the glue: the work dir beside the output (l2s.workdir's OUT.work: samples.jsonl and trainer/ with
the Trainer's checkpoints and the settings they belong to, so a killed run resumes and a rerun with other
settings is refused), the Trainer arguments both use, and the atomic final save with the parent's
tokenizer files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from pydantic import Field

from l2s.checkpoint import (
    atomic_dir,
    ensure_writable,
    last_complete_checkpoint,
    validate_checkpoint,
    write_provenance,
)
from l2s.errors import UserError
from l2s.sampling import EngineChoice, GradedTask
from l2s.workdir import discard, resume_or_start, work_dir

# Files that make a checkpoint's tokenizer, chat template and generation defaults; copied verbatim
# from the start model so the trained checkpoint tokenizes and chats exactly as its parent did.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
)


class LongSamplesConfig(GradedTask, EngineChoice):
    """What shortest-rs and DPO share: the task whose train split is sampled and its grader
    (`GradedTask`), where the long model's samples come from, and the run's output."""

    long: str | None = Field(None, description="the long-CoT checkpoint (sampled, and trained by default)")
    out: str | None = Field(None, description="output checkpoint folder (work files go to OUT.work/)")
    force: bool = Field(False, description="replace an existing output and discard unfinished work")
    seed: int = Field(0, description="seed of sampling and training")
    limit: int | None = Field(512, ge=1, description="number of train prompts (None: the whole split)")
    n: int = Field(8, ge=1, description="samples per prompt (Kimi: 8)")
    temperature: float = Field(1.0, gt=0, description="sampling temperature")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass")
    max_tokens: int = Field(512, ge=1, description="max completion tokens per sample")
    sample_batch_size: int = Field(64, ge=1, description="sequences per engine batch while sampling")
    samples: str | None = Field(None, description="reuse this samples.jsonl (sampled from --long) instead")
    epochs: float = Field(2.0, gt=0, description="passes over the training data")
    learning_rate: float = Field(1e-4, gt=0, description="AdamW learning rate")
    batch_size: int = Field(16, ge=1, description="per-device train batch size")
    gradient_accumulation_steps: int = Field(1, ge=1, description="micro-batches per optimizer step")
    max_length: int = Field(1024, ge=16, description="max tokens of prompt + completion in training")
    save_steps: int = Field(50, ge=1, description="Trainer checkpoint every N steps (a killed run resumes)")


def prepare(cfg: LongSamplesConfig, method: str) -> tuple[Path, Path, Path]:
    """Check the inputs before any work: (long, out, work dir OUT.work). `--force` discards old work."""
    missing = [f"--{f}" for f in ("long", "out") if getattr(cfg, f) is None]
    if missing:
        raise UserError(f"{method} needs {' and '.join(missing)} (e.g. --long LONG --out OUT)")
    long = validate_checkpoint(cfg.long)
    out = ensure_writable(cfg.out, force=cfg.force)
    work = work_dir(out)
    if cfg.force:
        discard(work)
    return long, out, work


def long_samples(cfg: LongSamplesConfig, long: Path, work: Path) -> tuple[list[dict[str, Any]], str]:
    """The long model's samples on the task's train split: drawn (resumably) into OUT.work/samples.jsonl
    through the shared core, or read from `cfg.samples`. Returns (records, where they are)."""
    from l2s import sampling

    if cfg.samples is not None:
        path = Path(cfg.samples).expanduser()
        if not path.is_file():
            raise UserError(f"samples file not found: {path} (pass a samples.jsonl written by `l2s sample`)")
        meta = sampling.meta_path(path)
        if meta.is_file():
            source = json.loads(meta.read_text()).get("model")
            if source and Path(source).resolve() != long.resolve():
                raise UserError(
                    f"{path} was sampled from {source}, not from --long {long}; sample --long instead"
                )
        records = sampling.read_samples(path)
        if not records:
            raise UserError(f"{path} holds no samples")
        return records, str(path)
    work.mkdir(parents=True, exist_ok=True)
    path = work / "samples.jsonl"
    sample_cfg = sampling.SampleConfig(
        **cfg.model_dump(include=set(sampling.GradedTask.model_fields) | set(sampling.EngineChoice.model_fields)),
        model=str(long), split="train", limit=cfg.limit, n=cfg.n,
        temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens,
        batch_size=cfg.sample_batch_size, seed=cfg.seed, out=str(path),
    )  # fmt: skip
    import torch
    from accelerate import PartialState

    # Under `accelerate launch`, rank 0 samples; the other ranks then find the finished file (sampling
    # resumes, so they draw nothing) instead of racing to write it. `cpu` as the Trainer will have it
    # (training_args): without it accelerate does not see a CPU-only multi-process launch as one.
    with PartialState(cpu=not torch.cuda.is_available()).main_process_first():
        sampling.run(sample_cfg)
    return sampling.read_samples(path), str(path)


def finished_only(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A sample cut off by max_tokens is not a finished answer: it may never be the one imitated.

    >>> [r["correct"] for r in finished_only([{"correct": True, "finish_reason": "length"},
    ...                                       {"correct": True, "finish_reason": "stop"}])]
    [False, True]
    """
    return [r if r.get("finish_reason", "stop") == "stop" else {**r, "correct": False} for r in records]


def training_args(cfg: LongSamplesConfig, trainer_dir: Path) -> dict[str, Any]:
    """TrainingArguments shared by the SFT and DPO runs (CPU without a GPU; checkpoints for resuming)."""
    import torch

    cuda = torch.cuda.is_available()
    return dict(
        output_dir=str(trainer_dir),
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        max_length=cfg.max_length,
        seed=cfg.seed,
        use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        gradient_checkpointing=False,
        report_to="none",
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        logging_steps=10,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
    )


def resume_point(trainer_dir: Path, settings: dict[str, Any]) -> str | None:
    """The last complete Trainer checkpoint of an unfinished run with the same settings (None: start
    fresh); an unfinished run with other settings is refused (l2s.workdir.resume_or_start). One torn by a
    kill mid-save is skipped and removed, with one line saying so (l2s.checkpoint.last_complete_checkpoint):
    the Trainer would otherwise map or unpickle it."""
    if resume_or_start(trainer_dir, settings):
        return last_complete_checkpoint(trainer_dir)
    return None


def save_trained(trainer: Any, start: Path, out: Path, *, force: bool, provenance: dict[str, Any]) -> Path:
    """Write a TRL trainer's model as a checkpoint folder, atomically: safetensors weights, the start
    model's tokenizer / chat template / generation config verbatim, and `l2s.json`.

    Under several processes (DDP, DeepSpeed ZeRO, FSDP) every rank gathers the full state dict and
    rank 0 alone writes; the others wait, so `out` appears once, whole."""
    accelerator = trainer.accelerator
    state = accelerator.get_state_dict(trainer.model)
    if accelerator.is_main_process:
        with atomic_dir(out, force=force) as tmp:
            accelerator.unwrap_model(trainer.model).save_pretrained(
                tmp, state_dict=state, safe_serialization=True
            )
            for name in TOKENIZER_FILES:
                if (start / name).is_file():
                    shutil.copy2(start / name, tmp / name)
            write_provenance(tmp, **provenance)
        shutil.rmtree(Path(trainer.args.output_dir), ignore_errors=True)
    accelerator.wait_for_everyone()
    return out
