"""Where a long job keeps its unfinished state, and when a rerun may resume it.

Every job that a kill can interrupt (shortest-rs and DPO training, `l2s rl`, the stages of `l2s init`)
keeps what it needs to resume in one folder beside its output:

    OUT/        the output, written atomically (whole or not at all) when the job finishes
    OUT.work/   the unfinished state: samples, Trainer or RL checkpoints, the settings they belong to

Rerunning the same command resumes from OUT.work/. A rerun with other settings is refused, because
resuming would mix two runs into one model: it names the settings that differ and says to rerun
unchanged or pass `--force`, which discards OUT.work/ and starts over. A finished job removes from
OUT.work/ what only an unfinished run needs (samples stay, for reuse by another method).

What a run's settings are is the job's own business (a JSON object); what identifies the weights of
a checkpoint it starts from is `weights_fingerprint`, the same for every job. No library keeps such
state for a whole job (transformers' Trainer resumes from its checkpoint-N but compares no settings),
so this module is written by hand.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from l2s.errors import UserError

WORK_SUFFIX = ".work"
SETTINGS_FILE = "l2s-settings.json"  # the settings a state folder's unfinished run was started with
WEIGHT_SUFFIXES = (".safetensors", ".bin")  # the files whose stamps make `weights_fingerprint`


def work_dir(out: str | Path) -> Path:
    """The folder beside `out` that holds the unfinished state of the job writing `out`.

    >>> work_dir("runs/srs").as_posix()
    'runs/srs.work'
    >>> work_dir("cache/long.work/out").as_posix()
    'cache/long.work/out.work'
    """
    out = Path(out).expanduser()
    return out.with_name(out.name + WORK_SUFFIX)


def discard(work: str | Path) -> None:
    """What `--force` does to a work folder: remove it and everything in it (nothing if it is absent)."""
    shutil.rmtree(work, ignore_errors=True)


def weights_fingerprint(path: str | Path) -> str | None:
    """What identifies a checkpoint's weights: the names, sizes and modification times (ns) of its
    *.safetensors and *.bin files, hashed. Saving a model rewrites these files, so a model trained again
    into the same folder gets a new fingerprint; reading only file metadata keeps it instant for
    checkpoints of many gigabytes. config.json and the tokenizer files do not count: editing them by hand
    (a fixed chat template, say) leaves the weights, and the work made from them, as they were.
    None for a path that is not a folder of weights (a scripted engine's model name, say).

    >>> weights_fingerprint("/nonexistent") is None
    True
    """
    folder = Path(path).expanduser()
    files = sorted(f for f in folder.glob("*") if f.suffix in WEIGHT_SUFFIXES) if folder.is_dir() else []
    if not files:
        return None
    stamp = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:16]


def as_saved(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` as they read back from JSON (paths and other objects as strings), so that what a run
    saved and what a rerun computes compare equal when they are equal.

    >>> as_saved({"out": Path("runs/x"), "sweep": (0.5, 0.7)})
    {'out': 'runs/x', 'sweep': [0.5, 0.7]}
    """
    return json.loads(json.dumps(settings, default=str))


def differing(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """The settings whose values differ, sorted; nested objects by dotted path.

    >>> differing({"n": 8, "cfg": {"lr": 1e-4, "k": 2}}, {"n": 8, "cfg": {"lr": 2e-4, "k": 2}, "seed": 1})
    ['cfg.lr', 'seed']
    """
    keys = []
    for k in sorted(set(saved) | set(current)):
        a, b = saved.get(k), current.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += differing(a, b, f"{prefix}{k}.")
        elif a != b:
            keys.append(f"{prefix}{k}")
    return keys


def check_same_settings(where: str | Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume the unfinished run in `where` unless it was started with the `current` settings.

    >>> check_same_settings("runs/srs.work", {"epochs": 2}, {"epochs": 2})
    >>> check_same_settings("runs/srs.work", {"epochs": 2}, {"epochs": 3})
    Traceback (most recent call last):
    l2s.errors.UserError: runs/srs.work holds an unfinished run with other settings (epochs); rerun it unchanged to resume, or pass --force to discard it
    """
    if diff := differing(as_saved(saved), as_saved(current)):
        raise UserError(
            f"{where} holds an unfinished run with other settings ({', '.join(diff)}); "
            "rerun it unchanged to resume, or pass --force to discard it"
        )


def resume_or_start(state: str | Path, settings: dict[str, Any]) -> bool:
    """Open the state folder of a run with `settings`: True if it holds an unfinished run with the same
    settings (resume it); False if it holds none, after creating it and saving the settings in it (start
    fresh); a one-line `UserError` if it holds one with other settings (`check_same_settings`).

    >>> import tempfile
    >>> state = Path(tempfile.mkdtemp()) / "out.work" / "trainer"
    >>> resume_or_start(state, {"epochs": 2}), resume_or_start(state, {"epochs": 2})
    (False, True)
    """
    from l2s.checkpoint import atomic_write_text

    state = Path(state)
    saved = state / SETTINGS_FILE
    if saved.is_file():
        try:
            old = json.loads(saved.read_text())
        except ValueError:
            raise UserError(f"{saved} is corrupted; pass --force to discard the unfinished run") from None
        check_same_settings(state, old, settings)
        return True
    state.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, json.dumps(as_saved(settings), indent=2) + "\n")
    return False
