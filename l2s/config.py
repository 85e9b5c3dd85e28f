"""Typed configs: defaults < `--config file.yaml` < CLI flags.

Every config is a pydantic model with `extra="forbid"`, so an unknown key in YAML or flags is an error
that names the key and lists the valid ones. Each field carries one line of help (`description`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from l2s.errors import UserError

C = TypeVar("C", bound="Config")


class Config(BaseModel):
    """Base of every l2s config: unknown keys are errors, assignments are validated.

    Validators are built on a config's first use, not when its module is imported (`defer_build`):
    `l2s COMMAND --help` reads only the fields, and the first validator built also has pydantic look
    for plugins in every installed package, about 30 ms.
    """

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, protected_namespaces=(), defer_build=True
    )


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every failure into a one-line `UserError`."""
    import yaml  # here, not at the top: `--help` reads no YAML

    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {p} (pass an existing YAML file to --config)")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"config file {p} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {p} must hold a mapping of keys to values, got {type(data).__name__}")
    return data


def _format_validation(cls: type[Config], err: ValidationError | dict, source: str) -> str:
    """One line for the first error (or for `err`, one of `ValidationError.errors()`)."""
    first = err.errors()[0] if isinstance(err, ValidationError) else err
    loc = ".".join(str(x) for x in first["loc"]) or "<root>"
    if first["type"] == "extra_forbidden":
        valid = ", ".join(sorted(cls.model_fields))
        return f"unknown config key '{loc}' in {source}; valid keys: {valid}"
    if source == "flags" and first["loc"]:
        flag = "--" + str(first["loc"][0]).replace("_", "-")
        if first["type"] == "missing":
            return f"missing {flag}: pass it, or set '{first['loc'][0]}' in the --config YAML"
        return f"bad value for {flag}: {validation_message(first)}"
    return f"bad value for '{loc}' in {source}: {validation_message(first)}"


def validation_message(error: dict) -> str:
    """Pydantic's message for one error, without the "Value error, " it puts before our own validators'.

    >>> validation_message({"msg": "Value error, alpha must be in [0, 1]"})
    'alpha must be in [0, 1]'
    """
    return str(error.get("msg", "invalid value")).removeprefix("Value error, ")


def load_config(cls: type[C], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> C:
    """Build `cls` from its defaults, then the YAML at `path`, then `overrides` (CLI flags; None = unset).

    An error in the YAML names the file; an error in a flag names the flag.

    >>> class Demo(Config):
    ...     n: int = 8
    >>> load_config(Demo, overrides={"n": 4}).n
    4
    >>> load_config(Demo, overrides={"m": 1})
    Traceback (most recent call last):
    l2s.errors.UserError: unknown config key 'm' in flags; valid keys: n
    >>> load_config(Demo, overrides={"n": "ten"})
    Traceback (most recent call last):
    l2s.errors.UserError: bad value for --n: Input should be a valid integer, unable to parse string as an integer
    """
    data: dict[str, Any] = read_yaml(path) if path is not None else {}
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    if data:
        try:
            cls(**data)
        except ValidationError as e:
            # Settings the YAML leaves to the flags are not the YAML's error.
            if any(err["type"] != "missing" for err in e.errors()):
                own = next(err for err in e.errors() if err["type"] != "missing")
                raise UserError(_format_validation(cls, own, str(path))) from None
    try:
        return cls(**{**data, **flags})
    except ValidationError as e:
        first = e.errors()[0]
        key = first["loc"][0] if first["loc"] else None
        source = str(path) if key in data and key not in flags else "flags"
        raise UserError(_format_validation(cls, e, source)) from None
