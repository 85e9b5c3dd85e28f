"""Merge (Kimi k1.5 §2.4): average the weights of the long-CoT and short-CoT models; no training.

The merging itself is mergekit's (`MergeConfiguration` + `run_merge`): `linear` is the report's plain
average with alpha = weight of the long model; `task_arithmetic`, `ties` and `dare_ties` add the two
models' task vectors to their common ancestor `--base` (Wu et al. 2025 found these cut length further
than plain averaging). `--tokenizer-source union` is mergekit's too: it builds the union of the parents'
vocabularies and re-maps the embedding rows by token string.

What l2s adds by hand is only what mergekit does not do:
- up-front checks that the parents share architecture, vocabulary, tensor names and shapes (one-line
  errors naming the mismatch);
- parents with one vocabulary size whose token strings differ only at special tokens (DeepSeek-R1-Distill-Qwen
  against Qwen2.5: R1's special tokens sit at Qwen's special ids) are merged by token id, and the
  tokenizer, chat template and generation config are copied from the parent `tokenizer_source` names
  (mergekit copies them from whichever parent comes first in its unordered set of models);
- the alpha sweep, atomic output and the `l2s.json` provenance.

mergekit only ever sees absolute paths and runs offline (HF_HUB_OFFLINE=1): a folder name such as
`sib` is never taken for a Hugging Face Hub repo id.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import Field, field_validator, model_validator

from l2s.checkpoint import (
    atomic_dir,
    ensure_writable,
    tensor_shapes,
    validate_checkpoint,
    write_provenance,
)
from l2s.config import Config
from l2s.errors import UserError

MERGE_METHODS = ("linear", "task_arithmetic", "ties", "dare_ties")
NEEDS_BASE = ("task_arithmetic", "ties", "dare_ties")
# `--alpha` on the command line replaces a sweep from the YAML, and `--sweep` an alpha (l2s.methods.cli).
FLAG_REPLACES = {"alpha": "sweep", "sweep": "alpha"}
# What a merge takes from its tokenizer side: the files mergekit's own tokenizer copy takes, plus the
# vocab.json of a slow tokenizer. The generation config goes with them: its EOS ids are that tokenizer's.
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "tokenizer.model", "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json",
    "additional_chat_templates", "generation_config.json",
)  # fmt: skip
TOKEN_ID_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id")
UNION_HINT = "pass --tokenizer-source union to merge them (mergekit builds a union vocabulary and re-maps the embeddings)"


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
    tokenizer_source: Literal["long", "short", "base", "union"] = Field(
        "long",
        description="whose tokenizer, chat template and generation config the merge gets: long | short | "
        "base (one vocabulary size, merged by token id) | union (mergekit's union vocabulary)",
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

    def uses_base(self) -> bool:
        """Whether --base takes part: as the task vectors' ancestor, or as the tokenizer's source."""
        return self.merge_method in NEEDS_BASE or self.tokenizer_source == "base"


# --- up-front compatibility checks ------------------------------------------------------------


def _config(path: Path) -> dict:
    return json.loads((path / "config.json").read_text())


def _tokens(path: Path) -> tuple[dict[int, str], set[int]]:
    """Id -> token string (added tokens included), and the ids of the added (special) tokens."""
    if (path / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        vocab, added = tok.get_vocab(with_added_tokens=True), tok.get_added_tokens_decoder()
    else:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(path))
        vocab, added = tok.get_vocab(), tok.added_tokens_decoder
    return {i: t for t, i in vocab.items()}, set(added)


def differing_ids(a: dict[int, str], b: dict[int, str]) -> list[int]:
    """The ids whose token strings differ between two id -> token maps (an id one side lacks differs).

    >>> differing_ids({0: "<|endoftext|>", 1: "a", 2: "b"}, {0: "<｜begin▁of▁sentence｜>", 1: "a", 2: "b"})
    [0]
    >>> differing_ids({0: "a"}, {0: "a", 1: "b"})
    [1]
    """
    return sorted(i for i in a.keys() | b.keys() if a.get(i) != b.get(i))


class TokenDiff(NamedTuple):
    differ: int  # ids whose token strings differ
    size_a: int
    size_b: int


def check_compatible(
    a: Path, b: Path, name_a: str = "--long", name_b: str = "--short", *, union: bool = False
) -> TokenDiff:
    """Raise a one-line `UserError` naming the first difference that makes `a` and `b` unmergeable.

    Merged by token id (`union=False`), the vocabularies must have one size and may differ only at added
    (special) tokens; with `union` they may differ in size, and the embeddings' vocabulary rows with them.
    """
    ca, cb = _config(a), _config(b)
    if ca.get("architectures") != cb.get("architectures") or ca.get("model_type") != cb.get("model_type"):
        raise UserError(
            f"{name_a} and {name_b} have different architectures ({ca.get('architectures')} vs "
            f"{cb.get('architectures')}); merge needs two models of one family"
        )
    (ta, added_a), (tb, added_b) = _tokens(a), _tokens(b)
    differ = differing_ids(ta, tb)
    if not union and len(ta) != len(tb):
        raise UserError(
            f"{name_a} and {name_b} have different tokenizers (vocabulary sizes {len(ta)} vs {len(tb)}); "
            + UNION_HINT
        )
    regular = [i for i in differ if i not in added_a and i not in added_b]
    if not union and regular:
        i = regular[0]
        raise UserError(
            f"{name_a} and {name_b} have different tokenizers ({len(differ)} of {len(ta)} token strings "
            f"differ, not only special tokens: id {i} is {ta.get(i)!r} vs {tb.get(i)!r}); " + UNION_HINT
        )
    sa, sb = tensor_shapes(a), tensor_shapes(b)  # from the safetensors headers: nothing is loaded
    if sa.keys() != sb.keys():
        diff = sorted(sa.keys() ^ sb.keys())
        raise UserError(
            f"{name_a} and {name_b} have different tensors ({len(diff)} differ, e.g. {diff[0]}); merge needs one layout"
        )
    vocab_rows = (ca.get("vocab_size"), cb.get("vocab_size"))
    for k in sorted(sa):
        if sa[k] == sb[k]:
            continue
        rows_only = sa[k][1:] == sb[k][1:] and (sa[k][0], sb[k][0]) == vocab_rows
        if union and rows_only:
            continue
        hint = f" (its vocabulary rows; {UNION_HINT})" if rows_only else ""
        raise UserError(f"{name_a} and {name_b} differ in tensor shape: {k} is {sa[k]} vs {sb[k]}{hint}")
    return TokenDiff(len(differ), len(ta), len(tb))


class Parents(NamedTuple):
    long: Path
    short: Path
    base: Path | None
    diffs: dict[str, TokenDiff]  # "short" / "base" -> how its vocabulary differs from long's


def _validate(cfg: MergeConfig) -> tuple[Parents, Path]:
    missing = [f"--{f}" for f in ("long", "short", "out") if getattr(cfg, f) is None]
    if missing:
        raise UserError(f"merge needs {', '.join(missing)} (e.g. --long LONG --short SHORT --out OUT)")
    if cfg.merge_method in NEEDS_BASE and cfg.base is None:
        raise UserError(
            f"merge method {cfg.merge_method} needs --base (the common ancestor of long and short)"
        )
    if cfg.tokenizer_source == "base" and cfg.base is None:
        raise UserError(
            "--tokenizer-source base needs --base (the checkpoint whose tokenizer the merge gets)"
        )
    out = ensure_writable(cfg.out, force=cfg.force)  # before any heavy work
    union = cfg.tokenizer_source == "union"
    # Absolute paths: mergekit takes a relative name that is not a local folder *from its own cwd* for
    # a hub repo id and asks the hub about it.
    long = validate_checkpoint(cfg.long).resolve()
    short = validate_checkpoint(cfg.short).resolve()
    diffs = {"short": check_compatible(long, short, union=union)}
    base = None
    if cfg.uses_base():
        # the tokenizer side must bring a chat template; a union on a --base is built on the base's
        template = cfg.tokenizer_source == "base" or (union and cfg.merge_method in NEEDS_BASE)
        base = validate_checkpoint(cfg.base, need_chat_template=template).resolve()
        diffs["base"] = check_compatible(long, base, "--long", "--base", union=union)
    return Parents(long, short, base, diffs), out


# --- the merge ----------------------------------------------------------------------------------


def _ref(path: Path) -> dict:
    # A mapping, not a string: mergekit reads '+' in a model string as a LoRA and '@' as a revision.
    return {"model": {"path": str(path)}}


def merge_configuration(cfg: MergeConfig, long: Path, short: Path, base: Path | None, alpha: float):
    """The mergekit `MergeConfiguration` for one alpha (weight `alpha` on long, `1 - alpha` on short).

    A linear merge names long as mergekit's base model (linear ignores it in the average): mergekit takes
    the output's config.json, and a union vocabulary's ids, from its base model, else from whichever
    model its unordered set lists first.
    """
    from mergekit.config import MergeConfiguration

    def model(path: Path, weight: float) -> dict:
        params: dict = {"weight": weight}
        if cfg.merge_method in ("ties", "dare_ties"):
            params["density"] = cfg.density
        return {"model": _ref(path.resolve()), "parameters": params}

    dtype = cfg.dtype or _config(long).get("dtype") or _config(long).get("torch_dtype") or "float32"
    spec: dict = {
        "merge_method": cfg.merge_method,
        "models": [model(long, alpha), model(short, 1.0 - alpha)],
        "base_model": _ref((base if cfg.merge_method in NEEDS_BASE else long).resolve()),
        "dtype": dtype,
    }
    if cfg.tokenizer_source == "union":
        spec["tokenizer_source"] = "union"
    return MergeConfiguration.model_validate(spec)


def tokenizer_side(cfg: MergeConfig, parents: Parents) -> tuple[str, Path]:
    """The parent whose chat template and generation config the merge gets (and, unless union, tokenizer).

    mergekit builds a union vocabulary on its base model: --base for the task-vector methods, else long.
    """
    if cfg.tokenizer_source == "union":
        name = "base" if cfg.merge_method in NEEDS_BASE else "long"
    else:
        name = cfg.tokenizer_source
    return name, getattr(parents, name)


def _take_tokenizer(src: Path, dest: Path, *, files: tuple[str, ...] = TOKENIZER_FILES) -> None:
    """Copy `files` from `src` and give config.json the token ids of `src`'s config."""
    for name in files:
        if (src / name).is_dir():
            shutil.copytree(src / name, dest / name, dirs_exist_ok=True)
        elif (src / name).is_file():
            shutil.copy2(src / name, dest / name)
    config, own = _config(dest), _config(src)
    ids = {k: own[k] for k in TOKEN_ID_KEYS if k in own}
    if any(config.get(k) != v for k, v in ids.items()):
        (dest / "config.json").write_text(json.dumps({**config, **ids}, indent=2, sort_keys=True) + "\n")


def _merge_one(cfg: MergeConfig, parents: Parents, alpha: float, dest: Path, quiet: bool) -> None:
    from mergekit.merge import MergeOptions, run_merge

    long, short, base, diffs = parents
    run_merge(
        merge_configuration(cfg, long, short, base, alpha),
        str(dest),
        # l2s.json records the merge; mergekit's model card would name the temp folder.
        MergeOptions(random_seed=cfg.seed, copy_tokenizer=False, write_model_card=False, quiet=quiet),
    )
    side, src = tokenizer_side(cfg, parents)
    union = cfg.tokenizer_source == "union"
    # a union's tokenizer (chat template included) is mergekit's; its generation config is not written
    _take_tokenizer(src, dest, files=("generation_config.json",) if union else TOKENIZER_FILES)
    metrics: dict = {
        "tokenizer_from": f"union on {side}" if union else side,
        "token_strings_differ_from_long": {k: d.differ for k, d in diffs.items()},
        "vocab_sizes": {"long": diffs["short"].size_a, **{k: d.size_b for k, d in diffs.items()}},
    }
    if union:
        metrics["merged_vocab_size"] = _config(dest).get("vocab_size")
    write_provenance(
        dest,
        method="merge",
        parents={"long": long, "short": short, **({"base": base} if base is not None else {})},
        config={**cfg.model_dump(mode="json"), "alpha": alpha, "merge_method": cfg.merge_method},
        metrics=metrics,
    )


def tokenizer_line(cfg: MergeConfig, parents: Parents) -> str:
    """The one line a merge prints about its tokenizer: whose it is and how many token strings differ.

    >>> r1_vs_qwen = Parents(Path("/r1"), Path("/qwen"), None, {"short": TokenDiff(7, 151665, 151665)})
    >>> tokenizer_line(MergeConfig(tokenizer_source="short"), r1_vs_qwen)
    'tokenizer and chat template from --short (7 of 151665 token strings differ between --long and --short; weights merged by token id)'
    """
    side, _ = tokenizer_side(cfg, parents)
    counts = []
    for name, d in parents.diffs.items():
        sizes = "" if d.size_a == d.size_b else f" ({d.size_a} vs {d.size_b} tokens)"
        counts.append(f"{d.differ} of {d.size_a} token strings differ between --long and --{name}{sizes}")
    differ = "; ".join(counts)
    if cfg.tokenizer_source == "union":
        return (
            f"tokenizer: mergekit's union vocabulary, built on --{side}'s with its chat template ({differ})"
        )
    return f"tokenizer and chat template from --{side} ({differ}; weights merged by token id)"


def sweep_dirname(alpha: float) -> str:
    """Folder of one alpha of a sweep.

    >>> sweep_dirname(0.1), sweep_dirname(1)
    ('alpha-0.10', 'alpha-1.00')
    """
    return f"alpha-{alpha:.2f}"


def run(cfg: MergeConfig) -> Path:
    """Merge long and short at one alpha (OUT) or at each alpha of a sweep (OUT/alpha-0.10, ...).

    Reads local folders only: sets HF_HUB_OFFLINE=1 for this process before mergekit is imported.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    from tqdm.auto import tqdm

    parents, out = _validate(cfg)
    logging.getLogger("mergekit").setLevel(logging.ERROR)
    print(tokenizer_line(cfg, parents), flush=True)
    alphas = cfg.alphas()
    with atomic_dir(out, force=cfg.force) as tmp:
        tmp = tmp.resolve()
        if cfg.sweep is None:
            _merge_one(cfg, parents, alphas[0], tmp, quiet=False)
        else:
            for alpha in tqdm(alphas, desc=f"merge ({cfg.merge_method}) sweep", unit="alpha"):
                _merge_one(cfg, parents, alpha, tmp / sweep_dirname(alpha), quiet=True)
    print(f"merged ({cfg.merge_method}, alpha {', '.join(f'{a:g}' for a in alphas)}) -> {out}")
    return out


CONFIG = MergeConfig
