"""`l2s serve`: settings from defaults < --config YAML < flags, then uvicorn runs `build_app(settings)`.

With no --long/--short the embedded family in ~/.cache/l2s/embedded is served (`l2s init` builds it).
"""

from __future__ import annotations

import logging
import os

from l2s.config import load_config
from l2s.errors import UserError
from l2s.server.settings import ServeSettings


def _extra_models(pairs: list[str] | None) -> dict[str, str] | None:
    """`--model name=CKPT` flags as a dict.

    >>> _extra_models(["merge-0.5=/ckpt/m", "rs=/ckpt/rs"])
    {'merge-0.5': '/ckpt/m', 'rs': '/ckpt/rs'}
    >>> _extra_models(["oops"])
    Traceback (most recent call last):
    l2s.errors.UserError: --model takes name=CKPT, got 'oops'
    """
    if not pairs:
        return None
    models = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--model takes name=CKPT, got '{pair}'")
        models[name.strip()] = path.strip()
    return models


def settings_from_args(args) -> ServeSettings:
    """ServeSettings from the parsed `l2s serve` flags (and the YAML they name)."""
    flags = {
        "long": args.long,
        "short": args.short,
        "models": _extra_models(args.model),
        "engine": args.engine,
        "api_key": args.api_key or os.environ.get("L2S_API_KEY") or None,
        "host": args.host,
        "port": args.port,
        "calibration": getattr(args, "calibration", None),
        "auto_threshold": getattr(args, "auto_threshold", None),
    }
    settings = load_config(ServeSettings, args.config, flags)
    if settings.models and args.model and args.config:
        # flags add to the YAML's extras instead of replacing them
        from l2s.config import read_yaml

        yaml_models = read_yaml(args.config).get("models") or {}
        settings = settings.model_copy(update={"models": {**yaml_models, **settings.models}})
    return settings


def cli(args) -> int:
    import uvicorn

    from l2s.server.app import build_app

    settings = settings_from_args(args)
    settings.served_models()  # fail here, as one line, before uvicorn starts
    settings.threshold()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        logging.getLogger("l2s.server").warning(
            "serving on %s without an API key; pass --api-key (or set L2S_API_KEY)", settings.host
        )
    uvicorn.run(build_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)
    return 0
