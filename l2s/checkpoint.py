"""Hugging Face checkpoint folders: validation, provenance and atomic writes.

A checkpoint is an ordinary HF folder (config.json, *.safetensors, tokenizer files with a chat
template, generation_config.json) plus `l2s.json` — what made it (method, parents, config, metrics,
l2s version). Everything else in the ecosystem (transformers, vLLM, TRL, mergekit) loads it unchanged.

Writes are atomic: a method fills a temp dir beside the target and renames it into place, so no
half-written checkpoint is ever visible; an existing target is never replaced without `force=True`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from l2s import __version__
from l2s.errors import UserError

PROVENANCE = "l2s.json"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def _has_chat_template(path: Path) -> bool:
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    cfg = path / "tokenizer_config.json"
    if cfg.is_file():
        with contextlib.suppress(json.JSONDecodeError):
            return bool(json.loads(cfg.read_text()).get("chat_template"))
    return False


def _check_safetensors(file: Path) -> None:
    """Read the safetensors header; a truncated or corrupted file fails here, not mid-run."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            keys = list(f.keys())
            if keys:
                f.get_slice(keys[-1])
        size = file.stat().st_size
        with open(file, "rb") as fh:
            header_len = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(header_len))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if 8 + header_len + end != size:
            raise ValueError(f"expected {8 + header_len + end} bytes, found {size}")
    except Exception as e:
        raise UserError(
            f"checkpoint weights {file} are corrupted ({str(e).splitlines()[0][:120]}); re-create the checkpoint"
        ) from None


def validate_checkpoint(path: str | Path, *, need_chat_template: bool = True) -> Path:
    """Check that `path` is a loadable HF causal-LM folder; raise a one-line `UserError` if not.

    Checks config.json (with `architectures`), safetensors weights (headers and sizes), a tokenizer
    and, unless told otherwise, a chat template.
    """
    p = Path(path).expanduser()
    if not p.is_dir():
        raise UserError(f"checkpoint not found: {p} (pass a Hugging Face model folder)")
    cfg = p / "config.json"
    if not cfg.is_file():
        raise UserError(f"{p} is not a model folder: config.json is missing")
    try:
        config = json.loads(cfg.read_text())
    except json.JSONDecodeError:
        raise UserError(f"{cfg} is not valid JSON; re-create the checkpoint") from None
    if not config.get("architectures"):
        raise UserError(f"{cfg} names no 'architectures'; l2s needs a causal LM such as LlamaForCausalLM")
    weights = sorted(p.glob("*.safetensors"))
    if not weights:
        pickles = [f.name for f in p.glob("*.bin")]
        hint = (
            " (found pickled .bin weights: l2s loads safetensors only; convert with save_pretrained(safe_serialization=True))"
            if pickles
            else ""
        )
        raise UserError(f"{p} holds no *.safetensors weights{hint}")
    for w in weights:
        _check_safetensors(w)
    if not any((p / f).is_file() for f in _TOKENIZER_FILES):
        raise UserError(f"{p} has no tokenizer (tokenizer.json); save the tokenizer beside the model")
    if need_chat_template and not _has_chat_template(p):
        raise UserError(f"{p} has no chat template; add one to tokenizer_config.json or chat_template.jinja")
    return p


def read_provenance(path: str | Path) -> dict[str, Any]:
    f = Path(path) / PROVENANCE
    return json.loads(f.read_text()) if f.is_file() else {}


def write_provenance(
    path: str | Path,
    *,
    method: str,
    parents: dict[str, str] | None = None,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write `l2s.json`: how this checkpoint was made. Returns its path."""
    record = {
        "method": method,
        "parents": {k: str(v) for k, v in (parents or {}).items()},
        "config": config or {},
        "metrics": metrics or {},
        "l2s_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(path) / PROVENANCE
    atomic_write_text(out, json.dumps(record, indent=2, default=str) + "\n")
    return out


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a file via temp + rename, so readers never see half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def ensure_writable(out: str | Path, *, force: bool = False) -> Path:
    """Refuse to overwrite an existing, non-empty output unless `force`."""
    out = Path(out).expanduser()
    if out.exists() and (out.is_file() or any(out.iterdir())) and not force:
        raise UserError(f"output {out} already exists; pass --force to replace it or choose another --out")
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_temps(out: str | Path) -> list[Path]:
    """Remove the temp dirs `atomic_dir` left beside `out` when its process was killed (kill -9, OOM).

    A temp dir's name carries its writer's pid; only dirs whose writer is gone are removed.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / ".ckpt.tmp-999999999-ab").mkdir(); (d / f".ckpt.tmp-{os.getpid()}-cd").mkdir()
    >>> [p.name for p in sweep_stale_temps(d / "ckpt")]
    ['.ckpt.tmp-999999999-ab']
    >>> sorted(p.name for p in d.iterdir())
    ['.ckpt.tmp-...-cd']
    """
    out = Path(out)
    removed = []
    for tmp in out.parent.glob(f".{out.name}.tmp-*-*"):
        pid = tmp.name[len(f".{out.name}.tmp-") :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_dir(out: str | Path, *, force: bool = False) -> Iterator[Path]:
    """Yield a temp dir beside `out`; on success rename it to `out` (replacing it only with `force`).

    On failure the temp dir is removed and `out` is left untouched.
    """
    out = ensure_writable(out, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(out)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-{os.getpid()}-"))
    try:
        yield tmp
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
