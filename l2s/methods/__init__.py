"""The long2short methods of Kimi k1.5 §2.4 and budget-conditioned RL (L1), one module each, in one
visible registry.

Every method module holds a typed config (`CONFIG`, a `l2s.config.Config`) and a linear
`run(cfg) -> Path` that writes a checkpoint folder. Modules are imported only when picked, so
`l2s --help` never imports torch, TRL or mergekit.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from types import ModuleType

from l2s.config import load_config
from l2s.errors import UserError

METHODS: dict[str, str] = {
    "merge": "l2s.methods.merge",
    "shortest-rs": "l2s.methods.shortest_rs",
    "dpo": "l2s.methods.dpo",
    "rl": "l2s.methods.rl",
    "budget": "l2s.methods.budget",
}

# Namespace entries that are not settings of a method.
_NOT_SETTINGS = {"command", "method", "config"}


def get_method(name: str) -> ModuleType:
    """The module of a method by name.

    >>> get_method("merge").__name__
    'l2s.methods.merge'
    >>> get_method("prune")
    Traceback (most recent call last):
    l2s.errors.UserError: unknown method 'prune'; choose one of: merge, shortest-rs, dpo, rl, budget
    """
    if name not in METHODS:
        raise UserError(f"unknown method '{name}'; choose one of: {', '.join(METHODS)}")
    return importlib.import_module(METHODS[name])


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def method_configs() -> dict[str, type]:
    """{method name: its Config class}: what `l2s derive` generates its flags from."""
    return {name: get_method(name).CONFIG for name in METHODS}


def run_method(args: argparse.Namespace) -> Path:
    """`l2s derive`: build the method's config (defaults < --config YAML < flags) and run it."""
    module = get_method(args.method)
    cls = module.CONFIG
    every = {f for c in method_configs().values() for f in c.model_fields}
    flags = {k: v for k in every if (v := getattr(args, k, None)) is not None}
    foreign = [k for k in flags if k not in cls.model_fields]
    if foreign:
        own = ", ".join(_flag(k) for k in cls.model_fields)
        raise UserError(f"{_flag(foreign[0])} does not apply to --method {args.method} (its flags: {own})")
    cfg = load_config(cls, args.config)  # the YAML alone: its errors name the file
    # A flag replaces the YAML's value of its exclusive partner (merge: --alpha replaces a YAML sweep).
    replaced = {partner for flag, partner in getattr(module, "FLAG_REPLACES", {}).items() if flag in flags}
    if replaced & cfg.model_fields_set:
        cfg = load_config(cls, None, {**cfg.model_dump(exclude_unset=True, exclude=replaced), **flags})
    else:
        cfg = load_config(cls, args.config, flags)
    return module.run(cfg)
