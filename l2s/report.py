"""report.md and pareto.png from an eval run's report.json (`l2s report RUN_DIR` re-renders them).

report.md is a table of every model's accuracy and tokens (`render_markdown`); pareto.png, accuracy
against tokens after Kimi k1.5's Figure 7, is drawn by `l2s.pareto`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from l2s.config import Config
from l2s.errors import UserError
from l2s.pareto import is_budget_point, plot_pareto
from l2s.pareto import pareto_figure as pareto_figure  # the figure of pareto.png, importable from here too

REQUIRED = ("accuracy", "accuracy_ci95", "mean_tokens", "p50_tokens", "p90_tokens", "tokens_per_correct")
REQUIRED += ("token_ratio_vs_long", "path", "method")  # docs/DESIGN.md, "report.json"
COLUMNS = ["model", "method", "accuracy", "95% CI", "mean tok", "p50", "p90", "tok/correct", "vs long"]


def read_report(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir).expanduser() / "report.json"
    if not path.is_file():
        raise UserError(f"no report.json in {path.parent}; run `l2s eval --out {path.parent}` first")
    try:
        report = json.loads(path.read_text())
        missing = [k for k in ("task", "n", "models") if k not in report]
        missing += [
            f"models.{name}.{k}" for name, m in report["models"].items() for k in REQUIRED if k not in m
        ]
    except (json.JSONDecodeError, KeyError, AttributeError, TypeError):
        missing = ["task, n and models"]
    if missing:
        raise UserError(f"{path} is not an l2s report (missing {missing[0]}); re-run `l2s eval`")
    return report


def _num(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def render_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table, best accuracy first; an `unparsed` column (share of samples
    with no extractable answer) when the entries carry it, the grader when the report names one, and
    a mean reasoning tokens column with a note when it has thinking-budget points.

    >>> r = {"task": "arith", "n": 2, "models": {"long": {"accuracy": 1.0, "accuracy_ci95": [0.34, 1.0],
    ...      "mean_tokens": 40.0, "p50_tokens": 40.0, "p90_tokens": 44.0, "tokens_per_correct": 40.0,
    ...      "token_ratio_vs_long": 1.0, "path": "/m/long", "method": "rl"}}}
    >>> print(render_markdown(r).splitlines()[4])
    | long | rl | 1.000 | [0.340, 1.000] | 40.0 | 40 | 44 | 40.0 | 1.00 |
    >>> r["grader"] = "strict"; r["models"]["long"]["unparsed"] = 0.025
    >>> md = render_markdown(r).splitlines()
    >>> print(md[2]); print(md[4]); print(md[-1])
    | model | method | accuracy | 95% CI | unparsed | mean tok | p50 | p90 | tok/correct | vs long |
    | long | rl | 1.000 | [0.340, 1.000] | 2.5% | 40.0 | 40 | 44 | 40.0 | 1.00 |
    Answers graded by the `strict` grader.
    """
    models = report["models"]
    unparsed = any("unparsed" in m for m in models.values())
    budgeted = any(is_budget_point(name, m) for name, m in models.items())
    columns = COLUMNS[:4] + ["unparsed"] + COLUMNS[4:] if unparsed else list(COLUMNS)
    if budgeted:
        columns.insert(columns.index("mean tok") + 1, "reasoning")
    lines = [
        f"# l2s eval: {report['task']} (n = {report['n']} held-out problems)",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for name, m in sorted(models.items(), key=lambda kv: (-kv[1]["accuracy"], kv[1]["mean_tokens"])):
        method = m.get("method") or "–"
        if m.get("alpha") is not None:
            method += f" α={m['alpha']:g}"
        if m.get("thinking_budget") is not None:
            method += f", budget {m['thinking_budget']}"
            if m.get("budget_enforced") is False:
                method += " (told, not forced)"
        lo, hi = m["accuracy_ci95"]
        cells = [name, method, f"{m['accuracy']:.3f}", f"[{lo:.3f}, {hi:.3f}]"]
        if unparsed:
            cells.append(_num(m.get("unparsed"), ".1%"))
        cells.append(f"{m['mean_tokens']:.1f}")
        if budgeted:
            cells.append(_num(m.get("mean_reasoning_tokens"), ".1f"))
        cells += [
            f"{m['p50_tokens']:.0f}",
            f"{m['p90_tokens']:.0f}",
            _num(m["tokens_per_correct"], ".1f"),
            _num(m["token_ratio_vs_long"], ".2f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if "auto" in report:
        a = report["auto"]
        lines += [
            "",
            f"auto (short, escalating to long below confidence {a['threshold']:.3f}; simulated on these samples): "
            f"accuracy {a['accuracy']:.3f}, mean {a['mean_tokens']:.1f} tokens (both models' tokens when it "
            f"escalates), escalated {a['escalated']:.1%}.",
        ]
    lines += [
        "",
        "Tokens are completion tokens by each model's own tokenizer; CI is Wilson's 95% interval.",
    ]
    if budgeted:
        k = report.get("budget_n")
        where = f", measured on the first {k} of the {report['n']} problems" if k and k < report["n"] else ""
        lines.append(
            f"NAME@B is NAME with a thinking budget of B (`</think>` forced after B reasoning tokens){where}; "
            "NAME@Bfree is a budget-conditioned model told its budget B in the prompt with nothing forced; "
            "reasoning = mean reasoning tokens."
        )
    if report.get("grader"):
        lines.append(f"Answers graded by the `{report['grader']}` grader.")
    return "\n".join(lines + [""])


def render(run_dir: str | Path) -> tuple[Path, Path]:
    """Write report.md and pareto.png beside report.json."""
    from l2s.checkpoint import atomic_write_text

    run_dir = Path(run_dir).expanduser()
    report = read_report(run_dir)
    md = run_dir / "report.md"
    atomic_write_text(md, render_markdown(report))
    return md, plot_pareto(report, run_dir / "pareto.png")


class ReportConfig(Config):
    """`l2s report RUN_DIR`."""

    run_dir: str = Field(description="folder written by `l2s eval` or `l2s quickstart`")


def run(cfg: ReportConfig) -> int:
    md, png = render(cfg.run_dir)
    print(f"wrote {md} and {png}")
    return 0
