"""`--task jsonl:PATH`: a JSONL file of {"prompt", "answer"[, "difficulty": int][, "id"]}, used as written.

Every record is checked up front; a bad line is a one-line error naming the line number and field.
Records with "split": "train"|"test" go to that split; without it, every record is in both. The prompt is
sent as written unless `--prompt-template` is given. For data as published (other column names, worked
solutions as references, other formats), pass the bare path instead: `l2s.tasks.files` reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

from l2s.errors import UserError
from l2s.tasks import Problem


class JsonlTask:
    name = "jsonl"

    def __init__(self, path: str | Path | None = None, **_: object):
        if path is None:
            raise UserError("the jsonl task needs a file: pass --task jsonl:PATH")
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"task file not found: {self.path}")
        self._records = self._read()

    def _read(self) -> list[tuple[str | None, Problem]]:
        out: list[tuple[str | None, Problem]] = []
        for lineno, line in enumerate(self.path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{self.path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise UserError(f"{self.path}:{lineno}: each line must be a JSON object")
            for field in ("prompt", "answer"):
                if field not in rec or rec[field] in (None, ""):
                    raise UserError(
                        f"{self.path}:{lineno}: missing field '{field}' (each line needs prompt and answer)"
                    )
            difficulty = rec.get("difficulty", 1)
            if not isinstance(difficulty, int):
                raise UserError(f"{self.path}:{lineno}: 'difficulty' must be an integer, got {difficulty!r}")
            pid = str(rec.get("id", f"{self.path.stem}-{lineno}"))
            out.append((rec.get("split"), Problem(pid, str(rec["prompt"]), str(rec["answer"]), difficulty)))
        if not out:
            raise UserError(f"task file {self.path} holds no records")
        return out

    def problems(self, split: str = "test", n: int | None = None) -> list[Problem]:
        probs = [p for s, p in self._records if s in (None, split)]
        return probs[:n] if n is not None else probs
