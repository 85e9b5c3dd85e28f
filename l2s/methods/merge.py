"""Merge (Kimi k1.5 §2.4): average the weights of the long-CoT and short-CoT models; no training.

The merging itself is mergekit's (`MergeConfiguration` + `run_merge`): `linear` is the report's plain
average with alpha = weight of the long model; `task_arithmetic`, `ties` and `dare_ties` add the two
models' task vectors to their common ancestor `--base` (Wu et al. 2025 found these cut length further
than plain averaging). What l2s adds by hand is only what mergekit does not do up front: checking that
the parents share architecture, tokenizer, tensor names and shapes (one-line errors naming the
mismatch), the alpha sweep, atomic output and the `l2s.json` provenance.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from l2s.checkpoint import atomic_dir, ensure_writable, validate_checkpoint, write_provenance
from l2s.config import Config
from l2s.errors import UserError

MERGE_METHODS = ("linear", "task_arithmetic", "ties", "dare_ties")
NEEDS_BASE = ("task_arithmetic", "ties", "dare_ties")
# `--alpha` on the command line replaces a sweep from the YAML, and `--sweep` an alpha (l2s.methods.cli).
FLAG_REPLACES = {"alpha": "sweep", "sweep": "alpha"}


class MergeConfig(Config):
    long: str | None = Field(None, description="the long-CoT checkpoint folder")
    short: str | None = Field(None, description="the short-CoT checkpoint folder")
    base: str | None = Field(None, description="common ancestor; needed by task_arithmetic, ties, dare_ties")
    out: str | None = Field(None, description="output checkpoint folder (a sweep writes OUT/alpha-0.10, ...)")
    alpha: float | None = Field(None, ge=0.0, le=1.0, description="weight of the long model, in [0, 1]")
    sweep: list[float] | None = Field(None, description="alphas in [0, 1], one checkpoint each")
    merge_method: Literal["linear", "task_arithmetic", "ties", "dare_ties"] = Field(
        "linear", description="mergekit method: linear | task_arithmetic | ties | dare_ties"
    )
    density: float = Field(
        0.5, gt=0.0, le=1.0, description="ties/dare_ties: fraction of each task vector kept"
    )
    dtype: str | None = Field(None, description="merge dtype (default: the long model's dtype)")
    seed: int = Field(0, description="random seed (dare_ties drops entries at random)")
    force: bool = Field(False, description="replace an existing output")

    @field_validator("sweep")
    @classmethod
    def _sweep_in_unit_interval(cls, v: list[float] | None) -> list[float] | None:
        if v is not None:
            if not v:
                raise ValueError("sweep needs at least one alpha")
            bad = [a for a in v if not 0.0 <= a <= 1.0]
            if bad:
                raise ValueError(f"sweep values must be in [0, 1], got {bad[0]}")
            if len({round(a, 2) for a in v}) != len(v):
                raise ValueError("sweep values must differ in the first two decimals (one folder each)")
        return v

    @model_validator(mode="after")
    def _alpha_xor_sweep(self):
        if self.alpha is not None and self.sweep is not None:
            raise ValueError("pass either alpha or sweep, not both")
        return self

    def alphas(self) -> list[float]:
        """The alphas to merge at: the sweep, else alpha, else the report's plain average 0.5."""
        if self.sweep is not None:
            return list(self.sweep)
        return [0.5 if self.alpha is None else self.alpha]


# --- up-front compatibility checks ------------------------------------------------------------


def _config(path: Path) -> dict:
    return json.loads((path / "config.json").read_text())


def _tensor_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape, read from the safetensors headers only (no weights loaded)."""
    shapes: dict[str, list[int]] = {}
    for f in sorted(path.glob("*.safetensors")):
        with open(f, "rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        shapes.update({k: v["shape"] for k, v in header.items() if k != "__metadata__"})
    return shapes


def _vocab(path: Path) -> dict[str, int]:
    """Token -> id, added tokens included (read with `tokenizers` when there is a tokenizer.json)."""
    if (path / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(path / "tokenizer.json")).get_vocab(with_added_tokens=True)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path)).get_vocab()


def check_compatible(a: Path, b: Path, name_a: str = "--long", name_b: str = "--short") -> None:
    """Raise a one-line `UserError` naming the first difference that makes `a` and `b` unmergeable."""
    ca, cb = _config(a), _config(b)
    if ca.get("architectures") != cb.get("architectures") or ca.get("model_type") != cb.get("model_type"):
        raise UserError(
            f"{name_a} and {name_b} have different architectures ({ca.get('architectures')} vs "
            f"{cb.get('architectures')}); merge needs two models of one family"
        )
    va, vb = _vocab(a), _vocab(b)
    if va != vb:
        if len(va) != len(vb):
            why = f"vocab sizes {len(va)} vs {len(vb)}"
        else:
            tok = next(t for t in sorted(va) if vb.get(t) != va[t])
            why = f"token {tok!r} has id {va[tok]} vs {vb.get(tok)}"
        raise UserError(
            f"{name_a} and {name_b} have different tokenizers ({why}); merge needs one vocabulary"
        )
    sa, sb = _tensor_shapes(a), _tensor_shapes(b)
    if sa.keys() != sb.keys():
        diff = sorted(sa.keys() ^ sb.keys())
        raise UserError(
            f"{name_a} and {name_b} have different tensors ({len(diff)} differ, e.g. {diff[0]}); merge needs one layout"
        )
    for k in sorted(sa):
        if sa[k] != sb[k]:
            raise UserError(f"{name_a} and {name_b} differ in tensor shape: {k} is {sa[k]} vs {sb[k]}")


def _validate(cfg: MergeConfig) -> tuple[Path, Path, Path | None, Path]:
    missing = [f"--{f}" for f in ("long", "short", "out") if getattr(cfg, f) is None]
    if missing:
        raise UserError(f"merge needs {', '.join(missing)} (e.g. --long LONG --short SHORT --out OUT)")
    if cfg.merge_method in NEEDS_BASE and cfg.base is None:
        raise UserError(
            f"merge method {cfg.merge_method} needs --base (the common ancestor of long and short)"
        )
    out = ensure_writable(cfg.out, force=cfg.force)  # before any heavy work
    long = validate_checkpoint(cfg.long)
    short = validate_checkpoint(cfg.short)
    check_compatible(long, short)
    base = None
    if cfg.merge_method in NEEDS_BASE:
        base = validate_checkpoint(cfg.base, need_chat_template=False)
        check_compatible(long, base, "--long", "--base")
    return long, short, base, out


# --- the merge ----------------------------------------------------------------------------------


def merge_configuration(cfg: MergeConfig, long: Path, short: Path, base: Path | None, alpha: float):
    """The mergekit `MergeConfiguration` for one alpha (weight `alpha` on long, `1 - alpha` on short)."""
    from mergekit.config import MergeConfiguration

    def model(path: Path, weight: float) -> dict:
        params: dict = {"weight": weight}
        if cfg.merge_method in ("ties", "dare_ties"):
            params["density"] = cfg.density
        return {"model": str(path), "parameters": params}

    dtype = cfg.dtype or _config(long).get("dtype") or _config(long).get("torch_dtype") or "float32"
    spec: dict = {
        "merge_method": cfg.merge_method,
        "models": [model(long, alpha), model(short, 1.0 - alpha)],
        "dtype": dtype,
    }
    if base is not None:
        spec["base_model"] = str(base)
    return MergeConfiguration.model_validate(spec)


def _merge_one(
    cfg: MergeConfig, long: Path, short: Path, base: Path | None, alpha: float, dest: Path, quiet: bool
) -> None:
    from mergekit.merge import MergeOptions, run_merge

    run_merge(
        merge_configuration(cfg, long, short, base, alpha),
        str(dest),
        MergeOptions(random_seed=cfg.seed, copy_tokenizer=True, quiet=quiet),
    )
    parents = {"long": long.resolve(), "short": short.resolve()}
    if base is not None:
        parents["base"] = base.resolve()
    write_provenance(
        dest,
        method="merge",
        parents=parents,
        config={**cfg.model_dump(mode="json"), "alpha": alpha, "merge_method": cfg.merge_method},
    )


def sweep_dirname(alpha: float) -> str:
    """Folder of one alpha of a sweep.

    >>> sweep_dirname(0.1), sweep_dirname(1)
    ('alpha-0.10', 'alpha-1.00')
    """
    return f"alpha-{alpha:.2f}"


def run(cfg: MergeConfig) -> Path:
    """Merge long and short at one alpha (OUT) or at each alpha of a sweep (OUT/alpha-0.10, ...)."""
    from tqdm.auto import tqdm

    long, short, base, out = _validate(cfg)
    logging.getLogger("mergekit").setLevel(logging.ERROR)
    alphas = cfg.alphas()
    with atomic_dir(out, force=cfg.force) as tmp:
        if cfg.sweep is None:
            _merge_one(cfg, long, short, base, alphas[0], tmp, quiet=False)
        else:
            for alpha in tqdm(alphas, desc=f"merge ({cfg.merge_method}) sweep", unit="alpha"):
                _merge_one(cfg, long, short, base, alpha, tmp / sweep_dirname(alpha), quiet=True)
    print(f"merged ({cfg.merge_method}, alpha {', '.join(f'{a:g}' for a in alphas)}) -> {out}")
    return out


CONFIG = MergeConfig
