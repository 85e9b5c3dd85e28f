"""`l2s calibrate RUN_DIR`: OpenAI's `reasoning_effort` levels mapped to measured configurations.

An eval run measures points: each model as it is, and (with `l2s eval --thinking-budgets 8,16,32`) each
model under each thinking budget (`NAME@B`: `</think>` forced after B reasoning tokens). Every point has
an accuracy with its 95% interval and a mean number of completion tokens. This module chooses, for each
effort level, the point that serves it, from the Pareto front of accuracy against mean tokens
(`choose_levels`):

- **high**: the most accurate point;
- **medium**: the fewest mean tokens within `tolerance` of high's accuracy (default one point);
- **low**: the fewest mean tokens within five points of high's accuracy;
- **minimal**: the fewest mean tokens overall.

Points whose budget was only told, not forced (`NAME@Bfree`, `budget_enforced: false`, from
`l2s eval --uncapped-budgets`), are not how a model is served, so no level is chosen from them.

`none` is `minimal`, `xhigh` and `max` are `high`. So the levels cost non-decreasing tokens from minimal
to high, and each says what it measured. The result is RUN_DIR/effort.json (docs/DESIGN.md, "effort.json"),
with auto's calibrated threshold beside it; `l2s serve --calibration RUN_DIR` routes requests by it.
`l2s eval` writes it at the end of every run. The rule is l2s's own (neither the Kimi report nor the
OpenAI API defines what an effort level costs), so it is written here by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from l2s.config import Config
from l2s.errors import UserError

LEVELS = ("minimal", "low", "medium", "high")  # cheapest first
ALIASES = {"none": "minimal", "xhigh": "high", "max": "high"}
DEFAULT_LEVEL = "medium"  # what a request to the `l2s` model without reasoning_effort gets
DEFAULT_TOLERANCE = 0.01  # medium may give up one accuracy point against high
LOW_MARGIN = 0.05  # low may give up five
RULE = (
    "from the Pareto front of accuracy vs mean completion tokens: high = the most accurate point; "
    "medium = the fewest tokens within `tolerance` of high's accuracy; low = the fewest tokens within "
    "`low_margin` of it; minimal = the fewest tokens overall"
)
EFFORT_FILE = "effort.json"
NO_BUDGETS_NOTE = (
    "note: this run has no thinking-budget points; `l2s eval --thinking-budgets 8,16,32 ...` adds them, "
    "so that levels can also trade reasoning for tokens within one model"
)


def valid_levels() -> list[str]:
    """Every `reasoning_effort` value the map answers, levels and aliases.

    >>> valid_levels()
    ['none', 'minimal', 'low', 'medium', 'high', 'xhigh', 'max']
    """
    return ["none", *LEVELS, "xhigh", "max"]


def canonical_level(level: str) -> str:
    """The level an effort value stands for.

    >>> canonical_level("none"), canonical_level("xhigh"), canonical_level("low")
    ('minimal', 'high', 'low')
    >>> canonical_level("extreme")
    Traceback (most recent call last):
    ValueError: unknown reasoning_effort 'extreme'; valid: none, minimal, low, medium, high, xhigh, max
    """
    if level in LEVELS:
        return level
    if level in ALIASES:
        return ALIASES[level]
    raise ValueError(f"unknown reasoning_effort '{level}'; valid: {', '.join(valid_levels())}")


def split_point(name: str) -> tuple[str, int | None]:
    """`NAME@B` -> (NAME, B); a plain model name -> (name, None).

    >>> split_point("rl@16"), split_point("merge-0.5")
    (('rl', 16), ('merge-0.5', None))
    """
    base, sep, budget = name.rpartition("@")
    return (base, int(budget)) if sep and budget.isdigit() else (name, None)


def _order(points: dict[str, tuple[float, float]], name: str) -> tuple:
    """Tie-breaking order: fewer tokens, then more accurate, then a plain model before a budget point."""
    acc, tokens = points[name]
    return (tokens, -acc, split_point(name)[1] is not None, name)


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """The names of `points` ({name: (accuracy, mean tokens)}) that no other point beats, fewest tokens
    first: a point is beaten by one at least as accurate with at most as many tokens, better on one of
    the two (of identical points, the first in tie-breaking order stays).

    >>> pareto_front({"long": (1.0, 60), "rl": (1.0, 25), "rl@8": (0.7, 12), "dpo": (0.9, 30),
    ...               "short": (0.15, 9), "merge-0.5": (0.13, 9)})
    ['short', 'rl@8', 'rl']
    """
    front: list[str] = []
    best_acc = -1.0
    for name in sorted(points, key=lambda n: _order(points, n)):
        if points[name][0] > best_acc:  # more accurate than everything with fewer (or as many) tokens
            front.append(name)
            best_acc = points[name][0]
    return front


def choose_levels(
    points: dict[str, tuple[float, float]],
    tolerance: float = DEFAULT_TOLERANCE,
    low_margin: float = LOW_MARGIN,
) -> dict[str, str]:
    """{level: point name} for `points` ({name: (accuracy, mean tokens)}) by the rule in the module
    docstring.

    >>> pts = {"long": (0.999, 64.2), "rl": (1.0, 26.9), "rl@16": (0.995, 20.1), "rl@8": (0.96, 14.0),
    ...        "rl@4": (0.6, 10.5), "short": (0.142, 9.0)}
    >>> choose_levels(pts)
    {'minimal': 'short', 'low': 'rl@8', 'medium': 'rl@16', 'high': 'rl'}
    >>> choose_levels(pts, tolerance=0.0)["medium"], choose_levels({"long": (0.9, 60)})
    ('rl', {'minimal': 'long', 'low': 'long', 'medium': 'long', 'high': 'long'})
    """
    if not points:
        raise ValueError("no measured points to choose effort levels from")
    front = pareto_front(points)
    high = front[-1]  # the front's most accurate point (its fewest tokens among equals)

    def cheapest_within(margin: float) -> str:
        floor = points[high][0] - margin - 1e-9
        return next(name for name in front if points[name][0] >= floor)

    return {
        "minimal": front[0],
        "low": cheapest_within(low_margin),
        "medium": cheapest_within(tolerance),
        "high": high,
    }


def effort_map(
    report: dict[str, Any],
    tolerance: float = DEFAULT_TOLERANCE,
    auto: dict[str, Any] | None = None,
    low_margin: float = LOW_MARGIN,
) -> dict[str, Any]:
    """effort.json's content for a report.json (`auto`: a calibration.json's content, or None); points
    with a budget that was not enforced are left out.

    >>> m = lambda acc, tokens, **kw: {"accuracy": acc, "mean_tokens": tokens, "path": "p",
    ...                                "accuracy_ci95": [0, 1], **kw}
    >>> report = {"task": "arith", "n": 10, "models": {"long": m(1.0, 60), "budget@8": m(0.9, 12),
    ...           "budget@8free": m(0.9, 10, thinking_budget=8, budget_enforced=False)}}
    >>> effort_map(report)["front"]
    ['budget@8', 'long']
    """
    models = report["models"]
    points = {
        name: (m["accuracy"], m["mean_tokens"])
        for name, m in models.items()
        if m.get("budget_enforced", True)
    }
    chosen = choose_levels(points, tolerance, low_margin)
    levels = {}
    for level, point in chosen.items():
        m = models[point]
        base, budget = split_point(point)
        levels[level] = {
            "model": base if budget is not None else point,
            "path": m["path"],
            "thinking_budget": m.get("thinking_budget", budget),
            "point": point,
            "accuracy": m["accuracy"],
            "accuracy_ci95": m["accuracy_ci95"],
            "mean_tokens": m["mean_tokens"],
            "samples": m.get("samples"),
        }
    return {
        "levels": levels,
        "aliases": dict(ALIASES),
        "default": DEFAULT_LEVEL,
        "rule": RULE,
        "tolerance": tolerance,
        "low_margin": low_margin,
        "front": pareto_front(points),
        "task": report["task"],
        "n": report["n"],
        "grader": report.get("grader"),
        "auto": None
        if auto is None
        else {k: auto.get(k) for k in ("threshold", "short_model", "long_model")},
    }


def has_budget_points(report: dict[str, Any]) -> bool:
    return any(split_point(name)[1] is not None for name in report["models"])


def write_effort(
    run_dir: str | Path, tolerance: float = DEFAULT_TOLERANCE, calibration: str | Path | None = None
) -> Path:
    """Write RUN_DIR/effort.json from RUN_DIR/report.json; auto's threshold comes from `calibration`
    (default RUN_DIR/calibration.json, when there is one). Returns its path."""
    from l2s.checkpoint import atomic_write_text
    from l2s.report import read_report

    run_dir = Path(run_dir).expanduser()
    report = read_report(run_dir)
    cal_path = Path(calibration).expanduser() if calibration else run_dir / "calibration.json"
    auto = None
    if cal_path.is_file():
        try:
            auto = json.loads(cal_path.read_text())
            auto = auto if isinstance(auto, dict) and "threshold" in auto else None
        except json.JSONDecodeError:
            auto = None
        if auto is None:
            raise UserError(f"{cal_path} is not a calibration file with a 'threshold'; re-run `l2s eval`")
    elif calibration is not None:
        raise UserError(f"calibration file not found: {cal_path}")
    effort = effort_map(report, tolerance, auto)
    if auto is not None:
        effort["auto"]["source"] = cal_path.name
    out = run_dir / EFFORT_FILE
    atomic_write_text(out, json.dumps(effort, indent=2) + "\n")
    return out


def read_effort(path: str | Path) -> dict[str, Any]:
    """An effort.json (or a run folder holding one), checked: every level with a model, path and budget."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / EFFORT_FILE
    if not p.is_file():
        raise UserError(f"no {EFFORT_FILE} at {p}; write it with `l2s calibrate {p.parent}`")
    try:
        effort = json.loads(p.read_text())
        levels = effort["levels"]
        for level in LEVELS:
            entry = levels[level]
            assert isinstance(entry["model"], str) and isinstance(entry["path"], str)
            budget = entry.get("thinking_budget")
            assert budget is None or (isinstance(budget, int) and budget >= 0)
    except (json.JSONDecodeError, KeyError, TypeError, AssertionError):
        raise UserError(f"{p} is not an l2s effort map; re-run `l2s calibrate {p.parent}`") from None
    return effort


def describe(effort: dict[str, Any]) -> list[str]:
    """One line per level: what serves it and what it measured.

    >>> lv = {"model": "rl", "thinking_budget": 16, "accuracy": 0.995, "accuracy_ci95": [0.98, 0.999],
    ...       "mean_tokens": 20.1}
    >>> describe({"levels": {"medium": lv}})
    ['medium   rl, thinking budget 16: accuracy 0.995 [0.980, 0.999], 20.1 mean tokens']
    """
    lines = []
    for level, lv in effort["levels"].items():
        budget = f", thinking budget {lv['thinking_budget']}" if lv.get("thinking_budget") is not None else ""
        lo, hi = lv["accuracy_ci95"]
        lines.append(
            f"{level:<8} {lv['model']}{budget}: accuracy {lv['accuracy']:.3f} [{lo:.3f}, {hi:.3f}], "
            f"{lv['mean_tokens']:.1f} mean tokens"
        )
    return lines


class CalibrateConfig(Config):
    """`l2s calibrate RUN_DIR`."""

    run_dir: str = Field(description="folder written by `l2s eval` or `l2s quickstart` (holds report.json)")
    tolerance: float = Field(
        DEFAULT_TOLERANCE,
        ge=0,
        le=LOW_MARGIN,
        description="accuracy medium may give up against high (0.01 = one point; at most low's 0.05)",
    )
    auto_calibration: str | None = Field(
        None, description="calibration.json whose auto threshold goes into effort.json (default: RUN_DIR's)"
    )


def run(cfg: CalibrateConfig) -> int:
    from l2s.report import read_report

    run_dir = Path(cfg.run_dir).expanduser()
    report = read_report(run_dir)  # a folder without report.json is a one-line error here
    replacing = (run_dir / EFFORT_FILE).is_file()
    out = write_effort(run_dir, cfg.tolerance, cfg.auto_calibration)
    print(f"wrote {out}" + (" (replacing the previous one)" if replacing else ""))
    print("\n".join(describe(json.loads(out.read_text()))))
    if not has_budget_points(report):
        print(NO_BUDGETS_NOTE)
    return 0
