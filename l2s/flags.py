"""Command-line flags generated from a Config's fields, so each setting is declared once.

Like TRL's `HfArgumentParser` does for its dataclasses, every field of a pydantic `Config` becomes a flag
`--field-name` with the field's type, choices, description and default in its help. Flags default to
None in argparse, so a flag left out never overrides the `--config` YAML: precedence is
defaults < YAML < flags (`l2s.config.load_config`). argparse has no pydantic support and
HfArgumentParser wants dataclasses, so this small adapter is written here.
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from collections.abc import Iterable
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined


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
