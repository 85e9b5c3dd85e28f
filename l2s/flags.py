"""Command-line flags generated from a Config's fields, so each setting is declared once.

Like TRL's `HfArgumentParser` does for its dataclasses, every field of a pydantic `Config` becomes a flag
`--field-name` with the field's type, choices, description and default in its help. Flags default to
None in argparse, so a flag left out never overrides the `--config` YAML: precedence is
defaults < YAML < flags (`l2s.config.load_config`). argparse has no pydantic support and
HfArgumentParser wants dataclasses, so this small adapter is written here.

`FlagRecorder` keeps the calls that built a parser's flags as plain data, and `replay` makes them again
on another parser without the Config (the CLI caches a subcommand's flags this way, so its `--help`
imports neither the Config nor pydantic).
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo


def _unwrap_optional(annotation: Any) -> Any:
    """`int | None` -> int; other annotations unchanged."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _unwrap_optional(args[0])
    return annotation


def _list_parser(item: type, flag: str):
    """A comma-separated list flag: `--sweep 0.1,0.5` -> [0.1, 0.5].

    >>> _list_parser(float, "--sweep")("0.1, 0.5,0.9")
    [0.1, 0.5, 0.9]
    >>> _list_parser(float, "--sweep")("0.1,half")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: takes comma-separated numbers such as 0.1,0.3,0.5; got '0.1,half'
    """

    def parse(text: str) -> list:
        try:
            return [item(x.strip()) for x in text.split(",") if x.strip()]
        except ValueError:
            kind = "numbers such as 0.1,0.3,0.5" if item in (int, float) else f"{item.__name__} values"
            raise argparse.ArgumentTypeError(f"takes comma-separated {kind}; got {text!r}") from None

    return parse


def parse_mapping(text: str) -> dict[str, Any]:
    """`--engine-options dtype=float32,max_model_len=2048` or a JSON object -> dict (values as JSON when
    they parse, else strings).

    >>> parse_mapping("dtype=float32,max_model_len=2048")
    {'dtype': 'float32', 'max_model_len': 2048}
    >>> parse_mapping('{"a": 1}')
    {'a': 1}
    """
    text = text.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(f"is not a valid JSON object ({e.msg})") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError("takes a JSON object or key=value pairs")
        return value
    out: dict[str, Any] = {}
    for item in (x.strip() for x in text.split(",") if x.strip()):
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"takes key=value pairs separated by commas; got {item!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw.strip()
    return out


def flag_name(field: str) -> str:
    """`max_tokens` -> `--max-tokens`."""
    return "--" + field.replace("_", "-")


def _default_text(info: FieldInfo) -> str:
    from pydantic_core import PydanticUndefined

    default = info.default
    if default is PydanticUndefined:
        default = info.default_factory() if info.default_factory is not None else None
    if default is None or default == {} or info.is_required():
        return ""
    if isinstance(default, list):
        default = ",".join(str(x) for x in default)
    return f" (default: {default})"


def add_field(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    name: str,
    info: FieldInfo,
    *,
    show_default: bool = True,
) -> None:
    """Add one Config field as a flag (see the module docstring)."""
    flag = flag_name(name)
    help_ = (info.description or "") + (_default_text(info) if show_default else "")
    help_ = help_.replace("%", "%%")
    kind = _unwrap_optional(info.annotation)
    origin = typing.get_origin(kind)
    kw: dict[str, Any] = {"dest": name, "default": None, "help": help_}
    if kind is bool:
        if info.default is True:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["action"] = "store_true"
        parser.add_argument(flag, **kw)
        return
    if origin is typing.Literal:
        choices = list(typing.get_args(kind))
        kw.update(type=type(choices[0]), choices=choices, metavar="{" + "|".join(map(str, choices)) + "}")
    elif origin is list:
        (item,) = typing.get_args(kind) or (str,)
        kw.update(type=_list_parser(item, flag), metavar="A,B,...")
    elif origin is dict or kind is dict:
        kw.update(type=parse_mapping, metavar="K=V,...")
    elif kind in (int, float, str):
        kw.update(type=kind, metavar=kind.__name__.upper())
    else:
        kw.update(type=str, metavar="VALUE")
    parser.add_argument(flag, **kw)


def add_config_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    fields: dict[str, FieldInfo],
    *,
    skip: Iterable[str] = (),
    show_default: bool = True,
) -> list[str]:
    """Add a flag per field not in `skip`; returns the names added."""
    skipped = set(skip)
    added = []
    for name, info in fields.items():
        if name in skipped:
            continue
        add_field(parser, name, info, show_default=show_default)
        added.append(name)
    return added


def flag_values(args: argparse.Namespace, fields: Iterable[str]) -> dict[str, Any]:
    """The fields the user set on the command line (argparse leaves the others None)."""
    return {k: v for k in fields if (v := getattr(args, k, None)) is not None}


_BUILTIN_TYPES = {t.__name__: t for t in (int, float, str)}


class FlagRecorder:
    """Stands in for an argparse parser (or group): passes every `add_argument` and `add_argument_group`
    on to `target` and keeps them as JSON-ready data in `book`, for `replay`.

    `book["portable"]` turns False when a call holds something that does not survive as data. A `type`
    other than int, float or str is left out: it only parses values, and the help never shows it.

    >>> rec = FlagRecorder(argparse.ArgumentParser(prog="demo"))
    >>> rec.add_argument("--n", type=int, default=None, help="how many")
    >>> rec.add_argument_group("extra").add_argument("--on", action=argparse.BooleanOptionalAction)
    >>> rec.book["calls"][1]
    {'group': 0, 'args': ['--on'], 'kwargs': {'action': 'argparse.BooleanOptionalAction'}}
    >>> replay(rec.book, argparse.ArgumentParser(prog="demo")).parse_args(["--n", "3", "--no-on"])
    Namespace(n=3, on=False)
    """

    def __init__(self, target: Any, book: dict[str, Any] | None = None, group: int | None = None):
        self.target, self.group = target, group
        self.book = {"groups": [], "calls": [], "portable": True} if book is None else book

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        self.target.add_argument(*args, **kwargs)
        data = {}
        for key, value in kwargs.items():
            if key == "type" and value not in _BUILTIN_TYPES.values():
                continue
            if key == "type":
                value = value.__name__
            elif key == "action" and isinstance(value, type):
                value = (
                    f"argparse.{value.__name__}"
                    if getattr(argparse, value.__name__, None) is value
                    else value
                )
            if not _is_data(value):
                self.book["portable"] = False
            data[key] = value
        if not all(_is_data(a) for a in args):
            self.book["portable"] = False
        self.book["calls"].append({"group": self.group, "args": list(args), "kwargs": data})

    def add_argument_group(self, title: str | None = None, description: str | None = None) -> FlagRecorder:
        self.book["groups"].append({"title": title, "description": description})
        group = self.target.add_argument_group(title, description)
        return FlagRecorder(group, self.book, len(self.book["groups"]) - 1)


def _is_data(value: Any) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    return isinstance(value, (list, tuple)) and all(_is_data(v) for v in value)


def replay(book: dict[str, Any], parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make the calls a `FlagRecorder` kept again on `parser`; returns it."""
    groups = [parser.add_argument_group(g["title"], g["description"]) for g in book["groups"]]
    for call in book["calls"]:
        kwargs = dict(call["kwargs"])
        if "type" in kwargs:
            kwargs["type"] = _BUILTIN_TYPES[kwargs["type"]]
        if str(kwargs.get("action", "")).startswith("argparse."):
            kwargs["action"] = getattr(argparse, kwargs["action"].removeprefix("argparse."))
        (parser if call["group"] is None else groups[call["group"]]).add_argument(*call["args"], **kwargs)
    return parser
