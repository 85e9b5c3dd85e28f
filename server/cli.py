"""`l2s serve`: settings from defaults < --config YAML < flags, then uvicorn runs `build_app(settings)`.

With no --long/--short it serves the last `l2s quickstart` run's long model and best derived short
model, auto calibrated for them; without such a run, the embedded family in ~/.cache/l2s/embedded
(`l2s init` builds it). See `l2s.server.settings`.
"""

from __future__ import annotations

import logging
import os
import sys

from l2s.server.settings import LONG, SHORT, ServeSettings


def describe(settings: ServeSettings) -> str:
    """One line saying what is served, from where, and whether auto is on (printed at start-up)."""
    paths = settings.served_models()
    threshold = settings.threshold()
    run = settings.last_run()
    if run is not None:
        origin = f"the last quickstart run {run.run_dir} (short = its '{run.short_name}' model)"
    elif settings.long is None:
        origin = f"the embedded family in {settings.embedded}"
    else:
        origin = "--long/--short"
    auto = f"auto threshold {threshold:.3f}" if threshold is not None else "auto off (no calibration)"
    return f"serving {LONG} = {paths[LONG]}, {SHORT} = {paths[SHORT]} from {origin}; {auto}"


def run(settings: ServeSettings) -> int:
    import uvicorn

    from l2s.server.app import build_app

    if settings.api_key is None and os.environ.get("L2S_API_KEY"):
        settings = settings.model_copy(update={"api_key": os.environ["L2S_API_KEY"]})
    line = describe(settings)  # bad paths or calibration fail here, as one line, before uvicorn starts
    print(f"l2s serve: {line}", file=sys.stderr, flush=True)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        logging.getLogger("l2s.server").warning(
            "serving on %s without an API key; pass --api-key (or set L2S_API_KEY)", settings.host
        )
    uvicorn.run(build_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)
    return 0
