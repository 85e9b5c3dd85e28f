"""Typed settings of `l2s serve`: defaults < configs/serve.yaml < flags (see `l2s.config.load_config`).

`served_models()` turns them into the only models a request may name: `l2s-long`, `l2s-short` and the
extras, each a checkpoint folder given here. A request never names a path, so it cannot make the
server load anything else.

Without --long/--short, `l2s serve` serves what the last `l2s quickstart` chose: its long model, its
best derived short model and auto's threshold calibrated for that pair, read from the pointer
`last-run.json` that the quickstart writes into the embedded family's folder (`LastRun`). Without a
quickstart run (or once its folders are gone) it serves the embedded family's long and short models.
Explicit settings always win: --long/--short replace the run's models, --calibration or
--auto-threshold its threshold.

`reasoning_effort` follows an effort map (`l2s calibrate`, `l2s.effort`) when there is one: the
effort.json in the run folder given as --calibration, else, serving the last quickstart run, the one in
that run's folder (whose models are then served too, each under its report name). Every level must name
a served checkpoint (`effort_routes`); a map naming another one stops the server at startup.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from l2s.config import Config
from l2s.effort import EFFORT_FILE
from l2s.embedded import DEFAULT_CACHE
from l2s.errors import UserError

LONG, SHORT, AUTO = "l2s-long", "l2s-short", "l2s-auto"
EFFORT = "l2s"  # the alias routed by reasoning_effort through the effort map
ALIASES = (LONG, SHORT, AUTO, EFFORT)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
EMBEDDED = DEFAULT_CACHE
LAST_RUN = "last-run.json"  # in the family folder: the run `l2s serve` serves when given no models


@dataclass(frozen=True)
class LastRun:
    """What the last `l2s quickstart` on a family left to serve (its pointer, `FAMILY/last-run.json`)."""

    run_dir: Path  # the quickstart's run folder (report.json, report.md, pareto.png)
    long: Path
    short: Path  # the run's best derived short model (see `l2s.quickstart.best_short`)
    short_name: str  # its name in the run's report.json
    calibration: Path | None  # auto's threshold for this long/short pair
    task: dict[str, Any] = field(default_factory=lambda: {"task": "arith"})  # the run's TaskOptions

    def to_json(self) -> str:
        """The pointer's text.

        >>> run = LastRun(Path("/r"), Path("/r/long"), Path("/r/models/rl"), "rl", None)
        >>> LastRun.from_dict(json.loads(run.to_json())) == run
        True
        """
        record = {k: str(v) if isinstance(v, Path) else v for k, v in vars(self).items()}
        record["written"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return json.dumps(record, indent=2) + "\n"

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> LastRun:
        calibration = record.get("calibration")
        return cls(
            run_dir=Path(record["run_dir"]),
            long=Path(record["long"]),
            short=Path(record["short"]),
            short_name=str(record["short_name"]),
            calibration=Path(calibration) if calibration else None,
            task=dict(record.get("task") or {"task": "arith"}),
        )


def write_last_run(family: str | Path, run: LastRun) -> Path:
    """Point `l2s serve` (and `l2s ui`'s examples) at `run`; returns the pointer's path."""
    from l2s.checkpoint import atomic_write_text

    path = Path(family).expanduser() / LAST_RUN
    atomic_write_text(path, run.to_json())
    return path


def read_last_run(family: str | Path) -> LastRun | None:
    """The run the pointer in `family` names; None without a pointer or when the run's models are gone."""
    path = Path(family).expanduser() / LAST_RUN
    if not path.is_file():
        return None
    try:
        run = LastRun.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        raise UserError(f"{path} is not a quickstart pointer; delete it or re-run `l2s quickstart`") from None
    if not all((p / "config.json").is_file() for p in (run.long, run.short)):
        return None
    return run


class ServeSettings(Config):
    long: str | None = Field(
        None,
        description="long-CoT checkpoint folder (default: the last quickstart's, else the embedded family's)",
    )
    short: str | None = Field(
        None,
        description="short-CoT checkpoint folder (default: the last quickstart's best derived model, "
        "else the embedded family's short)",
    )
    models: dict[str, str] = Field(default_factory=dict, description="extra served models: name -> folder")
    embedded: str = Field(
        EMBEDDED,
        description="embedded family folder: without long/short, the run its last-run.json names is served, "
        "else its long and short",
    )
    engine: Literal["auto", "hf", "vllm"] = Field(
        "hf",
        description="generation engine: hf (batched) | vllm (async) | auto (vllm where it suits the model)",
    )
    tensor_parallel_size: int = Field(1, ge=1, description="vllm engine: GPUs each model is split over")
    data_parallel_size: int = Field(1, ge=1, description="vllm engine: model replicas serving requests")
    engine_options: dict[str, Any] = Field(
        default_factory=dict, description="extra keyword arguments for the engine (e.g. dtype, max_model_len)"
    )
    host: str = Field("127.0.0.1", description="interface to bind; 0.0.0.0 exposes the server")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 = any free port)")
    api_key: str | None = Field(None, description="require 'Authorization: Bearer KEY' (env L2S_API_KEY)")
    default_model: str = Field(AUTO, description="model used when a request names none")
    auto_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="auto escalates when short's confidence is below this"
    )
    calibration: str | None = Field(
        None,
        description="a run folder holding effort.json (`l2s calibrate`: reasoning_effort levels and auto's "
        "threshold), or a calibration.json written by `l2s eval` (auto's threshold only) "
        "(default: the last quickstart's, when serving its models)",
    )
    default_max_tokens: int = Field(512, ge=1, description="max_tokens when a request gives none")
    max_tokens_cap: int = Field(1024, ge=1, description="largest max_tokens a request may ask for")
    max_n: int = Field(8, ge=1, description="largest n (choices per request)")
    max_prompts: int = Field(16, ge=1, description="largest number of prompts in one /v1/completions call")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="request bodies larger than this get 413")
    max_concurrent: int = Field(
        64, ge=1, description="requests admitted at once; more get 429 with Retry-After"
    )
    retry_after_s: int = Field(1, ge=1, description="Retry-After seconds sent with a 429")
    max_batch: int = Field(32, ge=1, description="hf engine: most sequences in one generate call")
    batch_wait_ms: float = Field(5.0, ge=0.0, description="hf engine: how long to gather a batch")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="server log level")

    @field_validator("models")
    @classmethod
    def _check_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if name in ALIASES:
                raise ValueError(f"'{name}' is reserved; pick another name for the extra model")
            if not _NAME_RE.fullmatch(name):
                raise ValueError(f"model name '{name}' must be letters, digits, '.', '_' or '-'")
        return v

    def last_run(self) -> LastRun | None:
        """The quickstart run served when neither long nor short is given (None: there is none)."""
        return read_last_run(self.embedded) if self.long is None and self.short is None else None

    def served_models(self) -> dict[str, Path]:
        """Served name -> checkpoint folder, validated. When long/short are unset: the last quickstart
        run's long and best short model (and the models its effort map names), else the embedded
        family's long and short. An effort map naming a model that is not served is an error here."""
        from l2s.checkpoint import validate_checkpoint

        long, short = self.long, self.short
        if (long is None) != (short is None):
            raise UserError("pass both --long and --short, or neither to serve the embedded family")
        run = self.last_run()
        extras = dict(self.models)
        if run is not None:
            long, short = str(run.long), str(run.short)
            extras = {**self._effort_extras(str(run.long), str(run.short)), **extras}
        elif long is None:
            root = Path(self.embedded).expanduser()
            long_dir = root / "long" if (root / "long" / "config.json").is_file() else root / "long-sft"
            if not (long_dir / "config.json").is_file() or not (root / "short" / "config.json").is_file():
                raise UserError(
                    f"no embedded family in {root}; run `l2s init` first, or pass --long and --short"
                )
            long, short = str(long_dir), str(root / "short")
        paths = {LONG: long, SHORT: short, **extras}
        served = {name: validate_checkpoint(p) for name, p in paths.items()}
        self.effort_routes(served)  # an effort map must fit what is served: one line now, not at startup
        return served

    def _effort_extras(self, long: str, short: str) -> dict[str, str]:
        """The models the served run's effort map sends levels to, beyond long and short, by their
        report names (serving the last quickstart run only: with models given, the map must fit them)."""
        effort = self.effort() if self.calibration is None else None  # --calibration's map must fit
        if effort is None:
            return {}
        have = {_resolved(long), _resolved(short), *(_resolved(p) for p in self.models.values())}
        extras: dict[str, str] = {}
        for level in effort["levels"].values():
            name, path = level["model"], level["path"]
            if _resolved(path) not in have and name not in ALIASES and _NAME_RE.fullmatch(name):
                extras.setdefault(name, path)
                have.add(_resolved(path))
        return extras

    def effort_file(self) -> Path | None:
        """The effort.json that maps reasoning_effort: --calibration's (a run folder holding one, or the
        file itself), else the served last quickstart run's; None: the fixed table of `ModePolicy`."""
        if self.calibration is not None:
            p = Path(self.calibration).expanduser()
            if p.is_dir() and (p / EFFORT_FILE).is_file():
                return p / EFFORT_FILE
            return p if p.is_file() and p.name == EFFORT_FILE else None
        run = self.last_run()
        if run is not None and (run.run_dir / EFFORT_FILE).is_file():
            return run.run_dir / EFFORT_FILE
        return None

    def effort(self) -> dict[str, Any] | None:
        """The effort map (effort.json's content), or None."""
        from l2s.effort import read_effort

        path = self.effort_file()
        return read_effort(path) if path is not None else None

    def effort_routes(self, paths: dict[str, Path]) -> dict[str, Any]:
        """{level: `l2s.server.policy.EffortLevel`}: each level of the effort map sent to the served model
        (of `paths`, served name -> folder) with its checkpoint; {} without a map. A level whose
        checkpoint is not served is a one-line error."""
        from l2s.server.policy import EffortLevel

        effort = self.effort()
        if effort is None:
            return {}
        served: dict[Path, str] = {}
        for name, path in paths.items():
            served.setdefault(_resolved(path), name)  # long first, then short, then the extras
        routes = {}
        for level, lv in effort["levels"].items():
            name = served.get(_resolved(lv["path"]))
            if name is None:
                raise UserError(
                    f"{self.effort_file()} sends reasoning_effort '{level}' to {lv['model']} ({lv['path']}), "
                    f"which this server does not serve; add --models {lv['model']}={lv['path']}, or pass "
                    "--calibration a run of the served models"
                )
            routes[level] = EffortLevel(
                model=name,
                thinking_budget=lv.get("thinking_budget"),
                accuracy=lv.get("accuracy"),
                accuracy_ci95=tuple(lv["accuracy_ci95"]) if lv.get("accuracy_ci95") else None,
                mean_tokens=lv.get("mean_tokens"),
                point=lv.get("point"),
            )
        return routes

    def threshold(self) -> float | None:
        """Auto's confidence threshold: `auto_threshold`, else --calibration's (a calibration.json's, or
        a run folder's effort.json's, else that folder's calibration.json), else (serving the last
        quickstart run's models) the run's calibration for them; None turns auto off."""
        if self.auto_threshold is not None:
            return self.auto_threshold
        if self.calibration is not None:
            effort_path = self.effort_file()
            if effort_path is None:
                return read_threshold(self.calibration)
            auto = self.effort().get("auto") or {}
            if auto.get("threshold") is not None:
                return _check_threshold(auto["threshold"], effort_path)
            cal = effort_path.parent / "calibration.json"
            return read_threshold(cal) if cal.is_file() else None
        run = self.last_run()
        if run is not None and run.calibration is not None:
            return read_threshold(run.calibration)
        return None


def read_threshold(path: str | Path) -> float:
    """The threshold in a calibration.json written by `l2s eval`."""
    import json

    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "calibration.json"
    if not p.is_file():
        raise UserError(f"calibration file not found: {p} (run `l2s eval`, or pass --auto-threshold)")
    try:
        value = json.loads(p.read_text())["threshold"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UserError(f"{p} is not a calibration file with a 'threshold'; re-run `l2s eval`") from None
    return _check_threshold(value, p)


def _check_threshold(value: Any, source: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise UserError(f"{source}: threshold must be a number in [0, 1], got {value!r}")
    return float(value)


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()
