"""report.md and pareto.png from an eval run's report.json (`l2s report RUN_DIR` re-renders them).

The plot follows Kimi k1.5's Figure 7 (long2short: accuracy against mean response tokens): one labelled
point per model with its 95% interval, merge alpha sweeps joined into a curve from short (alpha 0) to
long (alpha 1), short's accuracy drawn as the floor. Points up and to the left are better.
matplotlib does the drawing (Agg backend, no display needed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from l2s.errors import UserError

REQUIRED = ("accuracy", "accuracy_ci95", "mean_tokens", "p50_tokens", "p90_tokens", "tokens_per_correct")
REQUIRED += ("token_ratio_vs_long", "path", "method")  # DESIGN.md's report contract
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
    """The report as a Markdown table, best accuracy first.

    >>> r = {"task": "arith", "n": 2, "models": {"long": {"accuracy": 1.0, "accuracy_ci95": [0.34, 1.0],
    ...      "mean_tokens": 40.0, "p50_tokens": 40.0, "p90_tokens": 44.0, "tokens_per_correct": 40.0,
    ...      "token_ratio_vs_long": 1.0, "path": "/m/long", "method": "rl"}}}
    >>> print(render_markdown(r).splitlines()[4])
    | long | rl | 1.000 | [0.340, 1.000] | 40.0 | 40 | 44 | 40.0 | 1.00 |
    """
    lines = [
        f"# l2s eval: {report['task']} (n = {report['n']} held-out problems)",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    ordered = sorted(report["models"].items(), key=lambda kv: (-kv[1]["accuracy"], kv[1]["mean_tokens"]))
    for name, m in ordered:
        method = m.get("method") or "–"
        if m.get("alpha") is not None:
            method += f" α={m['alpha']:g}"
        lo, hi = m["accuracy_ci95"]
        lines.append(
            f"| {name} | {method} | {m['accuracy']:.3f} | [{lo:.3f}, {hi:.3f}] | {m['mean_tokens']:.1f} | "
            f"{m['p50_tokens']:.0f} | {m['p90_tokens']:.0f} | {_num(m['tokens_per_correct'], '.1f')} | "
            f"{_num(m['token_ratio_vs_long'], '.2f')} |"
        )
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
        "",
    ]
    return "\n".join(lines)


def label_groups(
    points: dict[str, tuple[float, float]], tol: float = 0.03
) -> list[tuple[tuple[float, float], list[str]]]:
    """Group names whose points lie within `tol` of the data's span of each other on both axes, so that
    one label per group is drawn instead of overprinted ones. Each group is anchored at its first point
    (in order of tokens, then accuracy); names within a group are sorted.

    >>> pts = {"long": (64.2, 0.999), "long-sft": (63.9, 1.0), "merge-0.9": (64.3, 1.0), "rl": (26.9, 1.0),
    ...        "short": (9.0, 0.142), "merge-0.5": (9.0, 0.13)}
    >>> for anchor, names in label_groups(pts): print(anchor, names)
    (9.0, 0.13) ['merge-0.5', 'short']
    (26.9, 1.0) ['rl']
    (63.9, 1.0) ['long', 'long-sft', 'merge-0.9']
    """
    if not points:
        return []
    xs, ys = [p[0] for p in points.values()], [p[1] for p in points.values()]
    dx, dy = tol * ((max(xs) - min(xs)) or 1.0), tol * ((max(ys) - min(ys)) or 1.0)
    groups: list[tuple[tuple[float, float], list[str]]] = []
    for name, (x, y) in sorted(points.items(), key=lambda kv: (kv[1][0], kv[1][1], kv[0])):
        for (ax_, ay), names in groups:
            if abs(x - ax_) <= dx and abs(y - ay) <= dy:
                names.append(name)
                break
        else:
            groups.append(((x, y), [name]))
    return [(anchor, sorted(names)) for anchor, names in groups]


def pareto_figure(report: dict[str, Any]):
    """Accuracy vs mean completion tokens, one labelled point per model, 95% CI bars, merge curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = report["models"]
    fig, ax = plt.subplots(figsize=(7, 4.8), dpi=120)
    colors: dict[str, Any] = {}
    palette = plt.get_cmap("tab10")

    def color(method: str):
        return colors.setdefault(method, palette(len(colors) % 10))

    # Merge sweeps: one curve per merge method, alpha = the long model's weight (0 = short, 1 = long).
    sweeps: dict[str, list[tuple[float, dict]]] = {}
    for m in models.values():
        if m.get("method") == "merge" and m.get("alpha") is not None:
            sweeps.setdefault(m.get("merge_method") or "linear", []).append((float(m["alpha"]), m))
    for merge_method, points in sweeps.items():
        ends = [(0.0, models["short"])] if "short" in models else []
        ends += [(1.0, models["long"])] if "long" in models else []
        curve = sorted(points + [e for e in ends if all(e[0] != a for a, _ in points)], key=lambda p: p[0])
        ax.plot(
            [m["mean_tokens"] for _, m in curve],
            [m["accuracy"] for _, m in curve],
            "-",
            color=color("merge"),
            alpha=0.5,
            label=f"merge sweep ({merge_method})",
        )
    if "short" in models:
        ax.axhline(models["short"]["accuracy"], ls="--", lw=1, color="grey", label="short (floor)")
    for name, m in models.items():
        method = m.get("method") or name
        lo, hi = m["accuracy_ci95"]
        ax.errorbar(
            m["mean_tokens"],
            m["accuracy"],
            yerr=[[max(0.0, m["accuracy"] - lo)], [max(0.0, hi - m["accuracy"])]],
            fmt="o",
            capsize=3,
            color=color(method),
        )
    texts = []

    def label(text: str, x: float, y: float, dy: float) -> None:
        texts.append(ax.annotate(text, (x, y), textcoords="offset points", xytext=(5, dy), fontsize=8))

    # Models at (nearly) the same point (merges that answer like short, say) share one label.
    for (tokens, accuracy), names in label_groups(
        {name: (m["mean_tokens"], m["accuracy"]) for name, m in models.items()}
    ):
        label(", ".join(names), tokens, accuracy, 4)
    if "auto" in report:
        a = report["auto"]
        ax.plot(a["mean_tokens"], a["accuracy"], "x", color="black", ms=8)
        label("auto (simulated)", a["mean_tokens"], a["accuracy"], -10)
    # Widen the x axis so that the labels of the right-most points end inside it.
    fig.canvas.draw()
    inverse = ax.transData.inverted()
    text_right = max((inverse.transform(t.get_window_extent())[1][0] for t in texts), default=None)
    if text_right is not None and text_right > ax.get_xlim()[1]:
        ax.set_xlim(right=text_right + 0.02 * (text_right - ax.get_xlim()[0]))
    ax.set_xlabel("mean completion tokens")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{report['task']}: accuracy vs tokens (n = {report['n']}, 95% CI)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def plot_pareto(report: dict[str, Any], path: str | Path) -> Path:
    """Save `pareto_figure(report)` as a PNG at `path` (temp file, then rename)."""
    import matplotlib.pyplot as plt

    fig = pareto_figure(report)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def render(run_dir: str | Path) -> tuple[Path, Path]:
    """Write report.md and pareto.png beside report.json."""
    from l2s.checkpoint import atomic_write_text

    run_dir = Path(run_dir).expanduser()
    report = read_report(run_dir)
    md = run_dir / "report.md"
    atomic_write_text(md, render_markdown(report))
    return md, plot_pareto(report, run_dir / "pareto.png")


def cli(args) -> int:
    md, png = render(args.run_dir)
    print(f"wrote {md} and {png}")
    return 0
