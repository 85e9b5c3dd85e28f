"""`l2s init`: build the embedded workload's model family into one cache folder.

    out/
      l2s-cache.json   manifest: marks the folder as an l2s cache; preset, seed, finished stages
      base/            Llama pretrained on chat-formatted workload text (tokenizer built here, shared by all)
      short/           SFT from base on short traces
      long-sft/        SFT from base on long traces
      long/            the full RL stage (Kimi k1.5, `l2s rl`) on long-sft: the family's long-CoT model
      STAGE.work/      an unfinished stage's Trainer or RL checkpoints (l2s.workdir's layout: a killed run
                       resumes from them; removed once the stage is finished)

Stages run in the order of `STAGES`. Each writes a complete checkpoint (weights, tokenizer with chat
template, generation config, l2s.json) into a temp dir that is validated and renamed into place
(`l2s.checkpoint.atomic_dir`), so no half stage is ever visible; the manifest then records it. A second
run reuses finished stages; a stage that is rebuilt makes every later stage stale.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from l2s import __version__, workdir
from l2s.checkpoint import atomic_dir, atomic_write_text, validate_checkpoint, write_provenance
from l2s.config import Config
from l2s.embedded import DEFAULT_CACHE
from l2s.errors import UserError

if TYPE_CHECKING:
    from l2s.embedded.presets import Preset

MANIFEST = "l2s-cache.json"
CACHE_KIND = "l2s-embedded-family"


@dataclass
class StageContext:
    """What a stage needs: the cache folder, the preset (seeded) and where to keep resumable work."""

    out: Path
    preset: Preset

    @property
    def seed(self) -> int:
        return self.preset.seed

    def path(self, stage: str) -> Path:
        return self.out / stage

    def work_dir(self, stage: str) -> Path:
        return workdir.work_dir(self.path(stage))


def _problems(ctx: StageContext, n: int):
    from l2s.tasks.arith import ArithTask

    return ArithTask(seed=ctx.seed).problems("train", n)


def _instruction_mix(ctx: StageContext):
    """The preset's instruction settings, as the corpus draws training prompts with them."""
    from l2s.embedded.corpus import InstructionMix

    p = ctx.preset
    return InstructionMix(p.instruction_share, p.length_instructions, p.instruction_templates)


def _tokenizer(ctx: StageContext):
    """The family's tokenizer, trained once and kept with base's work so a resumed run uses the same one."""
    from transformers import AutoTokenizer

    from l2s.embedded.corpus import tokenizer_corpus
    from l2s.embedded.tokenizer import build_tokenizer

    saved = ctx.work_dir("base") / "tokenizer"
    if (saved / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(saved)
    tok = build_tokenizer(
        tokenizer_corpus(
            _problems(ctx, ctx.preset.tokenizer_problems), ctx.seed, ctx.preset.instruction_templates
        ),
        ctx.preset.vocab_size,
    )
    with atomic_dir(saved, force=True) as tmp:
        tok.save_pretrained(tmp)
    return AutoTokenizer.from_pretrained(saved)


def build_base(ctx: StageContext, dest: Path) -> dict[str, Any]:
    """Tokenizer + a fresh Llama pretrained (causal LM) on chat-formatted problems and long traces."""
    from l2s.embedded.corpus import pretrain_documents
    from l2s.embedded.pretrain import pretrain

    spec = ctx.preset.pretrain
    tok = _tokenizer(ctx)
    docs = pretrain_documents(_problems(ctx, spec.problems), ctx.seed, tok, _instruction_mix(ctx))
    metrics = pretrain(tok, docs, ctx.preset.size, spec, ctx.seed, ctx.work_dir("base"), dest)
    write_provenance(
        dest,
        method="pretrain",
        config={"preset": ctx.preset.name, "size": ctx.preset.size, "seed": ctx.seed, **spec.model_dump()},
        metrics=metrics,
    )
    return metrics


def _build_sft(style: str, stage: str) -> Callable[[StageContext, Path], dict[str, Any]]:
    def build(ctx: StageContext, dest: Path) -> dict[str, Any]:
        from l2s.embedded.corpus import sft_examples
        from l2s.embedded.sft import sft

        spec = ctx.preset.short if style == "short" else ctx.preset.long_sft
        examples = sft_examples(_problems(ctx, spec.problems), style, ctx.seed, _instruction_mix(ctx))
        metrics = sft(ctx.path("base"), examples, spec, ctx.seed, ctx.work_dir(stage), dest)
        write_provenance(
            dest,
            method="sft",
            parents={"base": ctx.path("base")},
            config={"preset": ctx.preset.name, "traces": style, "seed": ctx.seed, **spec.model_dump()},
            metrics=metrics,
        )
        return metrics

    build.__doc__ = f"SFT (TRL) from base on {style} traces."
    return build


def _rl_finished(out: Path) -> bool:
    """`run_rl` writes `out` atomically, so a valid checkpoint there is a finished run (unless a killed
    move below took some of its files: then it no longer validates, and RL runs again)."""
    if not (out / "metrics.jsonl").is_file():
        return False
    try:
        validate_checkpoint(out)
    except UserError:
        return False
    return True


def build_long(ctx: StageContext, dest: Path) -> dict[str, Any]:
    """The full RL stage (Kimi k1.5 policy mirror descent, l2s rl) on long-sft."""
    from l2s.rl.config import full_stage
    from l2s.rl.trainer import run_rl

    # RL writes (and resumes) into a stable folder in the stage's work dir; the result then moves into `dest`.
    out = ctx.work_dir("long") / "out"
    cfg = full_stage(
        **ctx.preset.rl, init=str(ctx.path("long-sft")), out=str(out), task="arith", seed=ctx.seed
    )
    if not _rl_finished(out):  # else: finished earlier, killed before the move below
        shutil.rmtree(out, ignore_errors=True)
        run_rl(cfg)
    for item in out.iterdir():
        shutil.move(str(item), dest / item.name)
    rows = [json.loads(line) for line in (dest / "metrics.jsonl").read_text().splitlines()]
    return {
        "iterations": len(rows),
        "first_accuracy": rows[0]["accuracy"] if rows else None,
        "last_accuracy": rows[-1]["accuracy"] if rows else None,
        "last_mean_tokens": rows[-1]["mean_tokens"] if rows else None,
    }


# The family, in build order. Each stage writes a complete checkpoint into `dest` (l2s.json included)
# and returns its metrics for the manifest.
STAGES: dict[str, Callable[[StageContext, Path], dict[str, Any]]] = {
    "base": build_base,
    "short": _build_sft("short", "short"),
    "long-sft": _build_sft("long", "long-sft"),
    "long": build_long,
}


def _read_manifest(out: Path) -> dict[str, Any] | None:
    f = out / MANIFEST
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text())
    except json.JSONDecodeError:
        raise UserError(f"{f} is corrupted; delete {out} or choose another --out") from None
    if not isinstance(data, dict) or data.get("kind") != CACHE_KIND:
        raise UserError(f"{f} is not an l2s embedded-family manifest; choose another --out")
    return data


def _check_out(out: Path, preset: Preset, force: bool) -> dict[str, Any]:
    """The manifest to continue from; refuse folders that are not ours or hold another family."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder for the family")
    manifest = _read_manifest(out) if out.is_dir() else None
    if manifest is None and out.is_dir() and any(out.iterdir()):
        raise UserError(
            f"--out {out} exists and is not an l2s cache (no {MANIFEST}); choose an empty or new folder"
        )
    fresh = {
        "kind": CACHE_KIND,
        "preset": preset.name,
        "seed": preset.seed,
        "config": preset.model_dump(),
        "stages": {},
        "l2s_version": __version__,
    }
    if manifest is None or force:
        return fresh
    if manifest.get("config") != preset.model_dump():
        if (manifest.get("preset"), manifest.get("seed")) == (preset.name, preset.seed):
            changed = workdir.differing(manifest.get("config") or {}, preset.model_dump())
            raise UserError(
                f"--out {out} holds a '{preset.name}' family (seed {preset.seed}) built with other preset "
                f"settings than this l2s's ({', '.join(changed[:4])}); pass --force to rebuild it, or "
                "choose another --out"
            )
        raise UserError(
            f"--out {out} holds the '{manifest.get('preset')}' family (seed {manifest.get('seed')}); "
            f"pass --force to rebuild it as '{preset.name}' (seed {preset.seed}) or choose another --out"
        )
    return manifest


def _finished(ctx: StageContext, manifest: dict[str, Any], name: str) -> bool:
    if name not in manifest["stages"]:
        return False
    try:
        validate_checkpoint(ctx.path(name))
    except UserError:
        return False
    return True


def init_family(
    out: str | Path, preset: str = "default", seed: int | None = None, force: bool = False
) -> dict[str, Path]:
    """Build (or reuse, or resume) the embedded family in `out`; returns {stage name: checkpoint path}."""
    from l2s.embedded.presets import get_preset

    chosen = get_preset(preset, seed)
    out = Path(out).expanduser().resolve()
    manifest = _check_out(out, chosen, force)
    ctx = StageContext(out, chosen)
    if force:
        for name in STAGES:
            workdir.discard(ctx.work_dir(name))
    out.mkdir(parents=True, exist_ok=True)

    def save_manifest() -> None:
        atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")

    save_manifest()  # from here on the folder is recognisably ours, even if this run is killed
    stale = False
    paths: dict[str, Path] = {}
    for i, (name, build) in enumerate(STAGES.items(), start=1):
        paths[name] = ctx.path(name)
        if not stale and not force and _finished(ctx, manifest, name):
            print(f"[{i}/{len(STAGES)}] {name}: reused {ctx.path(name)} (finished earlier)", flush=True)
            continue
        stale = True  # every later stage must be rebuilt on top of this one
        manifest["stages"].pop(name, None)
        print(f"[{i}/{len(STAGES)}] {name}: building ({(build.__doc__ or '').strip()})", flush=True)
        start = time.time()
        with atomic_dir(ctx.path(name), force=True) as tmp:
            metrics = build(ctx, tmp)
            validate_checkpoint(tmp)
        seconds = round(time.time() - start, 1)
        manifest["stages"][name] = {
            "path": name,
            "seconds": seconds,
            "metrics": metrics,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        save_manifest()
        workdir.discard(ctx.work_dir(name))
        print(f"[{i}/{len(STAGES)}] {name}: done in {seconds:.0f}s -> {ctx.path(name)}", flush=True)
    return paths


class InitConfig(Config):
    """`l2s init`: where the embedded family goes and how it is trained."""

    out: str = Field(DEFAULT_CACHE, description="cache folder for the family")
    preset: str = Field("default", description="tiny (seconds, for tests) | default (the real workload)")
    seed: int | None = Field(None, description="training seed (default: the preset's)")
    force: bool = Field(False, description="rebuild even if the cache holds a finished family")


def run(cfg: InitConfig) -> dict[str, Path]:
    """`l2s init`: build the family and print where each model is."""
    paths = init_family(cfg.out, preset=cfg.preset, seed=cfg.seed, force=cfg.force)
    print("family ready:")
    for name, path in paths.items():
        print(f"  {name:9s} {path}")
    return paths
