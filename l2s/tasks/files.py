"""A task read from the user's data: a .jsonl, .json, .parquet or .csv file, or a `save_to_disk` folder.

The `datasets` library reads every format (`load_dataset("json"|"parquet"|"csv", data_files=...)`,
`load_from_disk`), offline: nothing is fetched from the Hub, and its cache is a temporary folder, never the
folder the data sits in. A .json file holding {"data": [...]} is read through the loader's `field`.

What no library does, and so is written here:
- Columns: the prompt is `--prompt-field`, else the one column named prompt, problem or question (then input
  or instruction); the reference is `--answer-field`, else answer, else final_answer, else solution (so
  MATH-500's own answer column wins over its solution). Names match case-insensitively.
- References: each is reduced once, at load, to its final answer by `l2s.grading.reduce_reference` (GSM8K's
  "#### 72", a MATH solution's last \\boxed{}); a row with none is an error naming the row.
- Splits: a split column (`--split-field`, else a column named "split") puts each row in train or test
  (validation, val, valid and dev count as test); a saved DatasetDict's splits are named the same way.
  Without either, a row is held out for testing when a stable hash of its id (or row number) falls under
  `--test-fraction`. The hash does not involve the sampling seed, so every command, whatever its seed,
  sees the same split of the same file and evaluation never sees a training row.
- Ids: an "id" (or "unique_id") column, else "<file stem>-<row>"; difficulty: a "difficulty" or "level"
  column holding N or "Level N", else 1.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from l2s.errors import UserError
from l2s.tasks import Problem, TaskOptions

LOADERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
PROMPT_FIELDS = (("prompt", "problem", "question"), ("input", "instruction"))  # priority tiers
ANSWER_FIELDS = (("answer",), ("final_answer",), ("solution",))
ID_FIELDS = ("id", "unique_id")
DIFFICULTY_FIELDS = ("difficulty", "level")
SPLITS = ("train", "test")
SPLIT_NAMES = {
    "train": "train",
    "test": "test",
    "validation": "test",
    "val": "test",
    "valid": "test",
    "dev": "test",
}
OFFLINE_ENV = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
_LEVEL_RE = re.compile(r"^\s*(?:level\s*)?(\d+)\s*$", re.IGNORECASE)


def pick_field(
    columns: Sequence[str], given: str | None, tiers: tuple, flag: str, what: str, where: str
) -> str:
    """The column holding `what`: `given` if set, else the one candidate of the first tier present.

    >>> pick_field(["question", "answer"], None, PROMPT_FIELDS, "--prompt-field", "prompt", "g.jsonl")
    'question'
    >>> pick_field(["problem", "solution", "answer"], None, ANSWER_FIELDS, "--answer-field", "answer", "m.json")
    'answer'
    >>> pick_field(["prompt", "question"], None, PROMPT_FIELDS, "--prompt-field", "prompt", "x.csv")
    Traceback (most recent call last):
    l2s.errors.UserError: x.csv has several prompt columns (prompt, question); pass --prompt-field with the one to use
    >>> pick_field(["text", "label"], None, ANSWER_FIELDS, "--answer-field", "answer", "x.csv")
    Traceback (most recent call last):
    l2s.errors.UserError: x.csv has no answer column (answer, final_answer or solution); its columns: text, label; pass --answer-field
    """
    cols = ", ".join(columns)
    if given is not None:
        if given not in columns:
            raise UserError(f"{where} has no column '{given}' ({flag}); its columns: {cols}")
        return given
    for tier in tiers:
        found = [c for c in columns if c.lower() in tier]
        if len(found) > 1:
            raise UserError(
                f"{where} has several {what} columns ({', '.join(found)}); pass {flag} with the one to use"
            )
        if found:
            return found[0]
    names = [n for tier in tiers for n in tier]
    wanted = ", ".join(names[:-1]) + " or " + names[-1]
    raise UserError(f"{where} has no {what} column ({wanted}); its columns: {cols}; pass {flag}")


def held_out(key: str, fraction: float) -> bool:
    """Whether the row `key` is in the test split: a stable hash of the key falls under `fraction`.

    >>> held_out("gsm8k-1", 1.0), held_out("gsm8k-1", 1e-12)
    (True, False)
    >>> sum(held_out(str(i), 0.3) for i in range(10_000))  # about 3000
    2975
    """
    bucket = int.from_bytes(hashlib.sha256(f"l2s-heldout/{key}".encode()).digest()[:8], "big")
    return bucket < fraction * 2**64


def difficulty_of(value: Any) -> int:
    """A difficulty from a "difficulty"/"level" cell: N, "N" or "Level N"; anything else is 1.

    >>> [difficulty_of(v) for v in (3, "Level 5", "2", "Level ?", None, True)]
    [3, 5, 2, 1, 1, 1]
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _LEVEL_RE.match(value) if isinstance(value, str) else None
    return int(m.group(1)) if m else 1


class FileTask:
    """The problems of one data file or `save_to_disk` folder, split into train and test at load."""

    def __init__(self, path: str | Path, opts: TaskOptions):
        self.path = Path(path)
        self.name = str(path)
        self.opts = opts
        self._split_by = ("fraction", "")  # or ("dict", "") or ("column", name): for the empty-split error
        with _read(self.path) as parts:
            rows = self._problems(parts)
        if not rows:
            raise UserError(f"task file {self.path} holds no records")
        self._rows = rows

    def problems(self, split: str = "test", n: int | None = None) -> list[Problem]:
        if split not in SPLITS:
            raise UserError(
                f"unknown split '{split}' for {self.path.name}; choose one of: {', '.join(SPLITS)}"
            )
        probs = [p for s, p in self._rows if s == split]
        if not probs:
            raise UserError(f"{self.path.name} has no {split} problems: {self._why_empty(split)}")
        return probs[:n] if n is not None else probs

    def _why_empty(self, split: str) -> str:
        how, column = self._split_by
        if how == "dict":
            return "the saved DatasetDict has no such split; pass --split-field with a column naming each row's split"
        if how == "column":
            return f"its split column '{column}' names none; pass --split-field with another column"
        f, rows = self.opts.test_fraction, len(self._rows)
        if split == "train":
            return (
                f"--test-fraction {f} held out all {rows} rows; lower --test-fraction or add a split column"
            )
        return f"--test-fraction {f} held out none of its {rows} rows; raise --test-fraction"

    def _problems(self, parts: list[tuple[str | None, Any]]) -> list[tuple[str, Problem]]:
        from l2s.grading import reduce_reference

        opts, out, seen = self.opts, [], {}
        for key, ds in parts:
            where = self.path.name if key is None else f"{self.path.name} (split {key})"
            cols = ds.column_names
            prompt_col = pick_field(cols, opts.prompt_field, PROMPT_FIELDS, "--prompt-field", "prompt", where)
            answer_col = pick_field(cols, opts.answer_field, ANSWER_FIELDS, "--answer-field", "answer", where)
            split_col = self._split_column(cols, where)
            id_col = next((c for c in cols if c.lower() in ID_FIELDS), None)
            level_col = next((c for c in cols if c.lower() in DIFFICULTY_FIELDS), None)
            stem = self.path.stem if key is None else f"{self.path.stem}-{key}"
            wanted = dict.fromkeys(c for c in (prompt_col, answer_col, split_col, id_col, level_col) if c)
            for i, rec in enumerate(ds.select_columns(list(wanted)), start=1):
                row = f"row {i} of {where}"
                prompt = _text(rec[prompt_col], row, prompt_col, "prompt")
                answer = reduce_reference(_text(rec[answer_col], row, answer_col, "answer"))
                if answer is None:
                    raise UserError(
                        f"{row}: the answer field '{answer_col}' holds no final answer (no '#### N' or \\boxed{{}}); "
                        "pass --answer-field with a column that does"
                    )
                own_id = rec[id_col] if id_col else None
                pid = f"{stem}-{i}" if own_id is None else str(own_id)
                if pid in seen:
                    raise UserError(f"{row}: id '{pid}' repeats {seen[pid]}; ids must be unique")
                seen[pid] = row
                split = self._split_of(rec, split_col, key, str(i) if own_id is None else pid, row)
                difficulty = difficulty_of(rec[level_col]) if level_col else 1
                out.append((split, Problem(pid, prompt, answer, difficulty)))
        return out

    def _split_column(self, cols: Sequence[str], where: str) -> str | None:
        given = self.opts.split_field
        if given == "":
            return None
        if given is not None and given not in cols:
            raise UserError(
                f"{where} has no column '{given}' (--split-field); its columns: {', '.join(cols)}"
            )
        return given if given is not None else next((c for c in cols if c.lower() == "split"), None)

    def _split_of(self, rec: dict, split_col: str | None, key: str | None, hash_key: str, row: str) -> str:
        if split_col is not None:
            value = rec[split_col]
            split = SPLIT_NAMES.get(str(value).strip().lower()) if value is not None else None
            if split is None:
                raise UserError(
                    f"{row}: split column '{split_col}' holds {value!r}, not train or test (or validation, val, "
                    "valid, dev); pass --split-field with another column, or --split-field '' to hold out "
                    "--test-fraction of the rows instead"
                )
            self._split_by = ("column", split_col)
            return split
        if key is not None:
            if key.lower() not in SPLIT_NAMES:
                raise UserError(
                    f"{self.path.name} has a split '{key}', not train or test (or validation, val, valid, dev); "
                    "pass --split-field with a column that names each row's split"
                )
            self._split_by = ("dict", "")
            return SPLIT_NAMES[key.lower()]
        return "test" if held_out(hash_key, self.opts.test_fraction) else "train"


def _text(value: Any, row: str, col: str, kind: str) -> str:
    """A prompt or reference cell as text: numbers as written (12.0 as 12); empty or not text is an error.

    >>> _text(12.0, "row 1 of a.csv", "answer", "answer"), _text(" 3/4 ", "row 1 of a.csv", "answer", "answer")
    ('12', ' 3/4 ')
    >>> _text(float("nan"), "row 2 of a.csv", "Answer", "answer")
    Traceback (most recent call last):
    l2s.errors.UserError: row 2 of a.csv: the answer field 'Answer' is empty; pass --answer-field with another column
    """
    flag = f"--{kind}-field"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or (value is not None and not isinstance(value, str | int | float)):
        raise UserError(
            f"{row}: the field '{col}' holds {type(value).__name__}, not text; pass {flag} with a text column"
        )
    if value is None or value != value or not str(value).strip():  # value != value: NaN
        raise UserError(f"{row}: the {kind} field '{col}' is empty; pass {flag} with another column")
    return str(value)


@contextmanager
def _read(path: Path) -> Iterator[list[tuple[str | None, Any]]]:
    """The file's datasets as [(split name or None, Dataset)], valid inside the `with` (their cache is temporary)."""
    if not path.exists():
        raise UserError(f"task file not found: {path}")
    if path.is_file() and path.suffix not in LOADERS:
        raise UserError(
            f"cannot read {path.name} as a task: use a {'/'.join(LOADERS)} file or a datasets folder"
        )
    if path.is_file() and path.stat().st_size == 0:
        raise UserError(f"task file {path} holds no records")
    with _offline() as datasets, tempfile.TemporaryDirectory(prefix="l2s-task-") as cache:
        if path.is_dir():
            try:
                loaded = datasets.load_from_disk(str(path))
            except FileNotFoundError:
                raise UserError(
                    f"{path} is a folder but not one written by datasets' save_to_disk; pass a data file or such a folder"
                ) from None
            yield list(loaded.items()) if isinstance(loaded, datasets.DatasetDict) else [(None, loaded)]
            return
        kind = LOADERS[path.suffix]
        ds = _load_file(datasets, kind, path, cache)
        if path.suffix == ".json" and ds.num_rows == 1 and len(ds.column_names) == 1:  # {"data": [records]}
            field = ds.column_names[0]
            if isinstance(ds[0][field], list):
                ds = _load_file(datasets, kind, path, cache, field=field)
        yield [(None, ds)]


def _load_file(datasets: Any, kind: str, path: Path, cache: str, **kw: Any) -> Any:
    try:
        return datasets.load_dataset(kind, data_files=str(path), split="train", cache_dir=cache, **kw)
    except Exception as e:  # the loaders raise many types; the user needs the reason, in one line
        cause = e.__cause__ or e
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise UserError(f"cannot read {path} as {kind.upper()}: {reason}") from None


@contextmanager
def _offline() -> Iterator[Any]:
    """`datasets`, imported here (it is slow to import), made offline and quiet for the duration."""
    import datasets
    from datasets.utils import logging as ds_logging
    from datasets.utils.tqdm import are_progress_bars_disabled

    saved_env = {k: os.environ.get(k) for k in OFFLINE_ENV}
    os.environ.update(dict.fromkeys(OFFLINE_ENV, "1"))
    saved = (datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE)
    bars_off, verbosity = are_progress_bars_disabled(), ds_logging.get_verbosity()
    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    datasets.disable_progress_bars()
    ds_logging.set_verbosity(logging.CRITICAL)  # a bad file's reason comes back in the UserError instead
    try:
        yield datasets
    finally:
        datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE = saved
        ds_logging.set_verbosity(verbosity)
        if not bars_off:
            datasets.enable_progress_bars()
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
