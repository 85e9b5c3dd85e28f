"""Hugging Face checkpoint folders: validation, provenance and atomic writes.

A checkpoint is an ordinary HF folder (config.json, *.safetensors, tokenizer files with a chat
template, generation_config.json) plus `l2s.json` — what made it (method, parents, config, metrics,
l2s version). Everything else in the ecosystem (transformers, vLLM, TRL, mergekit) loads it unchanged.

Writes are atomic: a method fills a temp dir beside the target and renames it into place, so no
half-written checkpoint is ever visible; an existing target is never replaced without `force=True`.

Resuming is the other side. transformers' Trainer writes checkpoint-N in place, file by file, and its
rotation deletes old ones file by file, so a `kill -9` can leave a torn folder. Handed one, the Trainer
fails the resume (and every rerun, as the torn folder stays the newest), or, missing optimizer.pt or
scheduler.pt, silently resumes with a fresh optimizer. Weight files are memory-mapped (safetensors; a
transformers 5 model keeps its weights as views of the map), so a file's size must be known good before
anything maps it. `checkpoint_is_complete` checks a folder from file headers alone: each safetensors
file is exactly as long as its header says, each torch.save file (optimizer, scheduler, rng state) is a
zip with its central directory (written last), each JSON file parses. No library offers this check, so
it is written here, from the formats: safetensors' (8-byte header length, JSON header, data) and
PyTorch's zip serialization. The same header reader gives `tensor_shapes`, which a merge compares.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from l2s import __version__
from l2s.errors import UserError

PROVENANCE = "l2s.json"
GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file (llama.cpp's gguf.md)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def _has_chat_template(path: Path) -> bool:
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    cfg = path / "tokenizer_config.json"
    if cfg.is_file():
        with contextlib.suppress(json.JSONDecodeError):
            return bool(json.loads(cfg.read_text()).get("chat_template"))
    return False


def _safetensors_header(file: Path) -> tuple[dict[str, Any], int]:
    """(the JSON header, its length) of a safetensors file: 8 bytes of little-endian header length N,
    then N bytes of JSON giving each tensor's dtype, shape and byte range in the data that follows.
    Raises ValueError saying what is cut short or corrupted; nothing is mapped or loaded."""
    size = file.stat().st_size
    with open(file, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        if size < 8 or n > size - 8:
            raise ValueError(f"{file.name} is cut short inside its header ({size} bytes)")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except ValueError:
        header = None
    if not isinstance(header, dict):
        raise ValueError(f"{file.name} has a corrupted header")
    return header, n


def safetensors_problem(file: Path) -> str | None:
    """Why a safetensors file is not whole (None: it is), read from its header alone: the file must end
    exactly where the last tensor's byte range ends.

    >>> import tempfile
    >>> head = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    >>> f = Path(tempfile.mkdtemp()) / "model.safetensors"
    >>> whole = len(head).to_bytes(8, "little") + head + bytes(8)
    >>> _ = f.write_bytes(whole); safetensors_problem(f) is None
    True
    >>> _ = f.write_bytes(whole[:-1]); safetensors_problem(f)
    'model.safetensors holds 76 of its 77 bytes'
    >>> _ = f.write_bytes(whole[:30]); safetensors_problem(f)
    'model.safetensors is cut short inside its header (30 bytes)'
    """
    try:
        header, n = _safetensors_header(file)
    except ValueError as e:
        return str(e)
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return f"{file.name} has a corrupted header"
    size = file.stat().st_size
    if 8 + n + end != size:
        return f"{file.name} holds {size} of its {8 + n + end} bytes"
    return None


def tensor_shapes(folder: str | Path) -> dict[str, list[int]]:
    """Tensor name -> shape over a checkpoint folder's safetensors files, read from their headers alone
    (no weights are mapped or loaded). The folder should have passed `validate_checkpoint`.

    >>> import tempfile
    >>> head = json.dumps({"w": {"dtype": "F32", "shape": [2, 1], "data_offsets": [0, 8]}}).encode()
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "model.safetensors").write_bytes(len(head).to_bytes(8, "little") + head + bytes(8))
    >>> tensor_shapes(d)
    {'w': [2, 1]}
    """
    shapes: dict[str, list[int]] = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        header, _ = _safetensors_header(file)
        shapes.update({k: list(v["shape"]) for k, v in header.items() if k != "__metadata__"})
    return shapes


def torch_file_problem(file: Path) -> str | None:
    """Why a `torch.save` file (optimizer, scheduler, rng state) is not whole (None: it is), unpickling
    nothing: torch.save writes a zip archive whose central directory comes last, so a file cut short
    has none.

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "optimizer.pt"
    >>> with zipfile.ZipFile(f, "w") as z:
    ...     z.writestr("optimizer/data.pkl", bytes(100))
    >>> torch_file_problem(f) is None
    True
    >>> _ = f.write_bytes(f.read_bytes()[:-1]); torch_file_problem(f)
    'optimizer.pt is cut short or corrupted (no intact zip directory)'
    """
    try:
        with zipfile.ZipFile(file) as z:
            if not z.infolist():
                return f"{file.name} is an empty archive"
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return f"{file.name} is cut short or corrupted (no intact zip directory)"
    return None


def _json_problem(file: Path) -> str | None:
    try:
        json.loads(file.read_bytes())
    except (ValueError, OSError):
        return f"{file.name} is cut short or not valid JSON"
    return None


# What transformers' Trainer reads to resume (`_load_from_checkpoint`, `_load_optimizer_and_scheduler`,
# `_load_rng_state`): each entry is a set of alternatives, one of which a checkpoint must hold. DeepSpeed
# (global_step*/) and FSDP (pytorch_model_fsdp*, optimizer_*) keep weights and optimizer their own way.
# `_save_checkpoint` writes the model, optimizer.pt, scheduler.pt, rng_state*.pth and trainer_state.json
# last; the Trainer's rotation deletes old checkpoints in any order.
TRAINER_CHECKPOINT: tuple[tuple[str, ...], ...] = (
    ("trainer_state.json",),
    ("config.json", "adapter_config.json"),
    ("*.safetensors", "pytorch_model*.bin", "global_step*", "pytorch_model_fsdp*"),
    ("optimizer.pt", "optimizer.bin", "optimizer_*", "global_step*"),
    ("scheduler.pt", "global_step*"),
)


def checkpoint_is_complete(
    folder: str | Path, required: tuple[tuple[str, ...], ...] = TRAINER_CHECKPOINT
) -> tuple[bool, str]:
    """Whether a checkpoint folder can be resumed from, and if not why, checked before anything loads
    or maps it: the `required` files are there (glob alternatives; by default a Trainer checkpoint's),
    every safetensors file is as long as its header says and every shard of an index is there, every
    torch.save file (*.pt, *.pth, *.bin, also under DeepSpeed's global_step*/) has its zip directory,
    and every JSON file (trainer state, config, tokenizer) parses.

    >>> checkpoint_is_complete("/nonexistent/checkpoint-4")
    (False, 'not a folder')
    """
    folder = Path(folder)
    if not folder.is_dir():
        return False, "not a folder"
    for alternatives in required:
        if not any(next(folder.glob(pattern), None) for pattern in alternatives):
            return False, f"no {' or '.join(alternatives)}"
    for file in sorted(folder.glob("*.json")):
        if why := _json_problem(file):
            return False, why
    for index in sorted(folder.glob("*.safetensors.index.json")):
        weight_map = json.loads(index.read_text()).get("weight_map")
        if not isinstance(weight_map, dict):
            return False, f"{index.name} has no weight_map"
        if missing := sorted(s for s in set(weight_map.values()) if not (folder / s).is_file()):
            return False, f"{index.name} names {missing[0]}, which is not there"
    for file in sorted(folder.glob("*.safetensors")):
        if why := safetensors_problem(file):
            return False, why
    torch_files = (f for ext in ("pt", "pth", "bin") for f in folder.rglob(f"*.{ext}") if f.is_file())
    for file in sorted(torch_files):
        if why := torch_file_problem(file):
            return False, why
    return True, ""


def last_complete_checkpoint(trainer_dir: str | Path) -> str | None:
    """The newest Trainer checkpoint-N in `trainer_dir` that `checkpoint_is_complete` accepts, to pass
    to `Trainer.train(resume_from_checkpoint=...)`; None when there is none (start fresh).

    Torn checkpoints (a kill during a save, or during the rotation that deletes old ones) are removed,
    each named on one line of stderr with what is wrong with it, so the Trainer never reads them and
    its rotation never counts them. In a multi-process run every rank picks the same folder; rank 0
    alone reports and removes.
    """
    trainer_dir = Path(trainer_dir)
    if not trainer_dir.is_dir():
        return None
    numbered = []
    for p in trainer_dir.iterdir():
        if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and p.is_dir():
            numbered.append((int(m.group(1)), p))
    chosen, torn = None, []
    for _, ckpt in sorted(numbered, reverse=True):
        complete, why = checkpoint_is_complete(ckpt)
        if complete and chosen is None:
            chosen = ckpt
        elif not complete:
            torn.append((ckpt, why, chosen is None))
    if os.environ.get("RANK", "0") == "0":
        then = f"resuming from {chosen.name}" if chosen else "starting over"
        for ckpt, why, newer in torn:
            print(
                f"l2s: skipping torn checkpoint {ckpt} ({why}); {then if newer else 'removed'}",
                file=sys.stderr,
                flush=True,
            )
            shutil.rmtree(ckpt, ignore_errors=True)
    return str(chosen) if chosen else None


def _check_safetensors(file: Path) -> None:
    """A torn or corrupted weights file fails here, as a one-line error, before anything maps it."""
    why = safetensors_problem(file)
    if why is None:
        from safetensors import safe_open

        try:
            with safe_open(str(file), framework="pt") as f:
                keys = list(f.keys())
                if keys:
                    f.get_slice(keys[-1])
        except Exception as e:
            why = str(e).splitlines()[0][:120]
    if why:
        raise UserError(f"checkpoint weights {file} are corrupted ({why}); re-create the checkpoint")


def validate_checkpoint(path: str | Path, *, need_chat_template: bool = True) -> Path:
    """Check that `path` is a loadable HF causal-LM folder; raise a one-line `UserError` if not.

    Checks config.json (with `architectures`), safetensors weights (each file's size against its header
    before anything maps it, and the shards an index names), a tokenizer and, unless told otherwise, a
    chat template. A GGUF file gets the command that converts it.
    """
    p = Path(path).expanduser()
    if p.is_file():
        with open(p, "rb") as fh:
            if fh.read(4) == GGUF_MAGIC:
                raise UserError(
                    f"{p} is a GGUF file; convert it with `l2s convert-gguf {p} --out DIR` (needs the gguf package)"
                )
        raise UserError(f"{p} is a file, not a checkpoint folder (pass a Hugging Face model folder)")
    if not p.is_dir():
        raise UserError(f"checkpoint not found: {p} (pass a Hugging Face model folder)")
    cfg = p / "config.json"
    if not cfg.is_file():
        raise UserError(
            f"{p} has no config.json: not a Hugging Face checkpoint folder "
            "(a GGUF file converts with `l2s convert-gguf FILE --out DIR`)"
        )
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
    for index in p.glob("*.safetensors.index.json"):
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (ValueError, KeyError, AttributeError):
            raise UserError(f"{index} is not a valid shard index; re-create the checkpoint") from None
        if missing := sorted(s for s in shards if not (p / s).is_file()):
            raise UserError(f"{index} names {missing[0]}, which is missing; re-create the checkpoint")
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
