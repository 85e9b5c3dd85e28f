"""Task registry: where prompts and reference answers come from.

A task yields `Problem`s for a split ("train" or "test"). `arith` is the embedded, generated workload;
`jsonl` reads the user's file of {prompt, answer[, difficulty]} records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

from l2s.errors import UserError


@dataclass(frozen=True)
class Problem:
    """One prompt with a verifiable reference answer."""

    id: str
    prompt: str
    answer: str
    difficulty: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


class Task(Protocol):
    name: str

    def problems(self, split: str = "test", n: int | None = None) -> list[Problem]: ...


def _arith(**kw) -> Task:
    from l2s.tasks.arith import ArithTask

    return ArithTask(**kw)


def _jsonl(**kw) -> Task:
    from l2s.tasks.jsonl import JsonlTask

    return JsonlTask(**kw)


TASKS: dict[str, Callable[..., Task]] = {"arith": _arith, "jsonl": _jsonl}


def get_task(name: str, **kwargs) -> Task:
    """Build a task by name; `jsonl:PATH` is shorthand for `get_task("jsonl", path=PATH)`.

    >>> get_task("nope")
    Traceback (most recent call last):
    l2s.errors.UserError: unknown task 'nope'; choose one of: arith, jsonl (or jsonl:PATH for your own file)
    """
    if name.startswith("jsonl:"):
        name, kwargs = "jsonl", {**kwargs, "path": name.split(":", 1)[1]}
    elif name.endswith(".jsonl"):
        name, kwargs = "jsonl", {**kwargs, "path": name}
    if name not in TASKS:
        raise UserError(
            f"unknown task '{name}'; choose one of: {', '.join(TASKS)} (or jsonl:PATH for your own file)"
        )
    return TASKS[name](**kwargs)
