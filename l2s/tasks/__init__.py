"""Tasks: where prompts and reference answers come from.

A task yields `Problem`s for a split ("train" or "test"). `--task` names one of:
- `arith`: the embedded, generated workload (`l2s.tasks.arith`);
- a data file (.jsonl, .json, .parquet, .csv) or a folder written by `datasets`' `save_to_disk`: the
  prompt and reference columns are guessed or named with `--prompt-field`/`--answer-field`, worked
  solutions are reduced to their final answer, and a default prompt template asks for a `\\boxed{}`
  answer (`l2s.tasks.files`);
- `jsonl:PATH`: a JSONL file with exactly the fields prompt and answer, used as written (`l2s.tasks.jsonl`).

`TaskOptions` holds the flags every command that reads a task shares; `load_task` builds the task from them.
The prompt template and system prompt are applied here, once, so `Problem.prompt` is what the user turn says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

from pydantic import Field, field_validator

from l2s.config import Config
from l2s.errors import UserError

# The prompt of Qwen2.5-Math's and DeepSeek-R1's math evaluations; l2s grades the last \boxed{} first.
DEFAULT_TEMPLATE = "{prompt}\nPlease reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class Problem:
    """One prompt with a verifiable reference answer; `system` is the system prompt, if any."""

    id: str
    prompt: str
    answer: str
    difficulty: int = 1
    system: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def messages(self) -> list[dict[str, str]]:
        """The chat messages to send: the system prompt (if any), then the user turn.

        >>> Problem("a", "1+1?", "2", system="Be brief.").messages()
        [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': '1+1?'}]
        >>> Problem("a", "1+1?", "2").messages()
        [{'role': 'user', 'content': '1+1?'}]
        """
        head = [{"role": "system", "content": self.system}] if self.system else []
        return [*head, {"role": "user", "content": self.prompt}]


class Task(Protocol):
    name: str

    def problems(self, split: str = "test", n: int | None = None) -> list[Problem]: ...


class TaskOptions(Config):
    """Which task to read and how to turn its records into prompts; every command that reads a task has these."""

    task: str = Field(
        "arith",
        description="arith | a data file (.jsonl/.json/.parquet/.csv) or datasets folder | jsonl:PATH",
    )
    prompt_field: str | None = Field(
        None, description="data file column holding the prompt (default: prompt, problem or question)"
    )
    answer_field: str | None = Field(
        None,
        description="data file column holding the reference (default: answer, else final_answer, else solution)",
    )
    split_field: str | None = Field(
        None, description="data file column holding train/test (default: 'split' if present; '' = none)"
    )
    test_fraction: float = Field(
        0.5,
        gt=0,
        le=1,
        description="share of a data file's rows held out for testing when it has no split column",
    )
    prompt_template: str | None = Field(
        None,
        description="user turn, {prompt} standing for the problem (data files default to asking for \\boxed{})",
    )
    system_prompt: str | None = Field(None, description="system prompt sent before every problem")

    @field_validator("prompt_template")
    @classmethod
    def _has_slot(cls, v: str | None) -> str | None:
        if v is not None and "{prompt}" not in v:
            raise ValueError("prompt_template must contain {prompt}, where the problem text goes")
        return v


def apply_template(template: str | None, prompt: str) -> str:
    """The user turn: `template` with `{prompt}` replaced (other braces, as in `\\boxed{}`, stay as written).

    >>> apply_template("Q: {prompt}\\nAnswer in \\\\boxed{}.", "1+1?")
    'Q: 1+1?\\nAnswer in \\\\boxed{}.'
    >>> apply_template(None, "1+1?")
    '1+1?'
    """
    return prompt if template is None else template.replace("{prompt}", prompt)


class PromptedTask:
    """A task whose problems are shown through a prompt template and system prompt."""

    def __init__(self, task: Task, template: str | None, system: str | None):
        self.task, self.template, self.system = task, template, system
        self.name = task.name

    def problems(self, split: str = "test", n: int | None = None) -> list[Problem]:
        if self.template is None and self.system is None:
            return self.task.problems(split, n)
        return [
            replace(p, prompt=apply_template(self.template, p.prompt), system=self.system or p.system)
            for p in self.task.problems(split, n)
        ]


def load_task(opts: TaskOptions, seed: int = 0) -> Task:
    """The task `opts.task` names, its prompts templated. `seed` seeds arith's generator; a data file's
    train/test split never depends on it, so every command sees the same split of the same file.

    >>> load_task(TaskOptions(task="arith", system_prompt="Be brief.")).problems("test", 1)[0].messages()[0]
    {'role': 'system', 'content': 'Be brief.'}
    >>> load_task(TaskOptions(task="arith", answer_field="y"))
    Traceback (most recent call last):
    l2s.errors.UserError: --answer-field applies to data files, not to --task arith
    """
    name = opts.task
    if name == "arith" or name.startswith("jsonl:"):
        for field in ("prompt_field", "answer_field", "split_field"):
            if getattr(opts, field) is not None:
                flag = "--" + field.replace("_", "-")
                hint = (
                    ""
                    if name == "arith"
                    else "; jsonl:PATH reads prompt and answer as written, a bare path lets you choose"
                )
                raise UserError(f"{flag} applies to data files, not to --task {name}{hint}")
        task = get_task(name, seed=seed)
        return PromptedTask(task, opts.prompt_template, opts.system_prompt)
    from l2s.tasks.files import FileTask

    task = FileTask(_data_path(name), opts)
    return PromptedTask(task, opts.prompt_template or DEFAULT_TEMPLATE, opts.system_prompt)


def _arith(**kw) -> Task:
    from l2s.tasks.arith import ArithTask

    return ArithTask(**kw)


def _jsonl(**kw) -> Task:
    from l2s.tasks.jsonl import JsonlTask

    return JsonlTask(**kw)


TASKS: dict[str, Callable[..., Task]] = {"arith": _arith, "jsonl": _jsonl}
DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


def _data_path(name: str) -> Path:
    """The data file or folder `name` names; a one-line error when it is neither a task nor a data path."""
    path = Path(name).expanduser()
    if path.is_dir() or path.is_file():
        return path
    if path.suffix in DATA_SUFFIXES or "/" in name:
        raise UserError(f"task file not found: {path}")
    raise UserError(
        f"unknown task '{name}'; choose one of: arith, a data file ({'/'.join(DATA_SUFFIXES)}), "
        "a datasets folder, or jsonl:PATH"
    )


def get_task(name: str, **kwargs) -> Task:
    """Build a task by name with its own keyword arguments (no template). `jsonl:PATH`, or a bare path
    ending in .jsonl, is `get_task("jsonl", path=PATH)`; another data path is read with the default
    `TaskOptions` (`load_task`).

    >>> get_task("nope")
    Traceback (most recent call last):
    l2s.errors.UserError: unknown task 'nope'; choose one of: arith, a data file (.jsonl/.json/.parquet/.csv), a datasets folder, or jsonl:PATH
    """
    if name.startswith("jsonl:"):
        name, kwargs = "jsonl", {**kwargs, "path": name.split(":", 1)[1]}
    elif name.endswith(".jsonl"):
        name, kwargs = "jsonl", {**kwargs, "path": name}
    if name in TASKS:
        return TASKS[name](**kwargs)
    return load_task(TaskOptions(task=str(_data_path(name))), seed=kwargs.get("seed", 0))
