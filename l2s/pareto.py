"""pareto.png: accuracy against mean completion tokens, one labelled point per model.

The plot follows Kimi k1.5's Figure 7 (long2short: accuracy against mean response tokens): one labelled
point per model with its 95% interval, a merge alpha sweep joined into one curve from short (alpha 0)
to long (alpha 1) in order of alpha, short's accuracy drawn as the floor, and each model's thinking-budget
points (`NAME@B`, from `l2s eval --thinking-budgets`) joined into a dotted curve that ends at the model
without a budget. Points up and to the left are better. matplotlib does the drawing (Agg backend, no
display needed; imported only when a figure is drawn); label placement is ours (see `place_labels`):
matplotlib has none, and overprinted names make a crowded plot unreadable.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

PARENTS = ("long", "short", "long-sft")  # drawn in their own colours, whatever method made them
_MERGE_NAME = re.compile(r"merge-(\d*\.?\d+)")


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


def merge_alpha(name: str, entry: dict[str, Any]) -> float | None:
    """The alpha (the long model's weight) of a merge-sweep model: its report entry's `alpha`, else the
    number in a `merge-<alpha>` name; None for a model that is not a merge or whose alpha is unknown.

    >>> merge_alpha("m", {"method": "merge", "alpha": 0.3}), merge_alpha("merge-0.75", {"method": None})
    (0.3, 0.75)
    >>> merge_alpha("rl", {"method": "rl"}), merge_alpha("my-merge", {"method": "merge"})
    (None, None)
    """
    if entry.get("alpha") is not None and (entry.get("method") == "merge" or _MERGE_NAME.fullmatch(name)):
        return float(entry["alpha"])
    match = _MERGE_NAME.fullmatch(name)
    return float(match.group(1)) if match else None


def merge_curves(models: dict[str, dict[str, Any]]) -> dict[str, list[tuple[float, str]]]:
    """{merge method: [(alpha, model name), ...]} in order of alpha, with short at alpha 0 and long at
    alpha 1 when the report has them (a linear merge at those ends is that parent).

    >>> ms = {"long": {}, "short": {}, "merge-0.9": {}, "merge-0.1": {}, "m": {"method": "merge", "alpha": 0.5}}
    >>> merge_curves(ms)
    {'linear': [(0.0, 'short'), (0.1, 'merge-0.1'), (0.5, 'm'), (0.9, 'merge-0.9'), (1.0, 'long')]}
    >>> merge_curves({"long": {}, "short": {}})
    {}
    """
    curves: dict[str, list[tuple[float, str]]] = {}
    for name, m in models.items():
        if is_budget_point(name, m):
            continue  # a merge under a thinking budget belongs to that merge's budget curve
        alpha = merge_alpha(name, m)
        if alpha is not None:
            curves.setdefault(m.get("merge_method") or "linear", []).append((alpha, name))
    ends = [(a, name) for a, name in ((0.0, "short"), (1.0, "long")) if name in models]
    for points in curves.values():
        points += [e for e in ends if all(e[0] != a for a, _ in points)]
        points.sort()
    return curves


def is_budget_point(name: str, entry: dict[str, Any]) -> bool:
    """Whether a report entry is a thinking-budget point (`NAME@B`, from `l2s eval --thinking-budgets`).

    >>> is_budget_point("long@16", {"thinking_budget": 16}), is_budget_point("long", {})
    (True, False)
    """
    return entry.get("thinking_budget") is not None and "@" in name


def budget_curves(models: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """{model: [its budget points in order of budget, then the model itself]} for every model that has
    budget points (`NAME@B` entries with `thinking_budget`); the model without a budget ends its curve.
    Points whose budget was only told, not forced (`budget_enforced: false`), stay off the curves.

    >>> ms = {"long": {}, "long@16": {"thinking_budget": 16}, "long@8": {"thinking_budget": 8},
    ...       "rl@8": {"thinking_budget": 8}, "short": {},
    ...       "rl@8free": {"thinking_budget": 8, "budget_enforced": False}}
    >>> budget_curves(ms)
    {'long': ['long@8', 'long@16', 'long'], 'rl': ['rl@8']}
    """
    curves: dict[str, list[tuple[int, str]]] = {}
    for name, m in models.items():
        if is_budget_point(name, m) and m.get("budget_enforced", True):
            curves.setdefault(name.rpartition("@")[0], []).append((m["thinking_budget"], name))
    return {
        base: [name for _, name in sorted(points)] + ([base] if base in models else [])
        for base, points in curves.items()
    }


def label_text(names: list[str]) -> str:
    """One label for points drawn at (nearly) one place: budget points of one model share its name,
    `rl@8/16` for `rl@8` and `rl@16`.

    >>> label_text(["merge-0.5", "merge-0.5@16", "merge-0.5@8", "short"])
    'merge-0.5, merge-0.5@8/16, short'
    >>> label_text(["long", "long-sft", "rl@8", "rl@8free"])
    'long, long-sft, rl@8, rl@8free'
    """
    budgets: dict[str, list[int]] = {}
    order: list[str] = []  # plain names, and each budgeted model once, where it first appears
    for name in names:
        base, sep, b = name.rpartition("@")
        if sep and b.isdigit():
            if base not in budgets:
                order.append(name)
            budgets.setdefault(base, []).append(int(b))
        else:
            order.append(name)
    parts = []
    for name in order:
        base, sep, b = name.rpartition("@")
        parts.append(f"{base}@{'/'.join(map(str, sorted(budgets[base])))}" if sep and b.isdigit() else name)
    return ", ".join(parts)


# Where a label may go around its point, tried in this order at growing distances: right, above,
# below, left, then the diagonals. Distances are in points; past the first, a leader line joins the
# label to its point.
_DIRECTIONS = ((1, 0), (0, 1), (0, -1), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))
_DISTANCES = (4, 10, 18, 28, 40, 55, 75, 100, 130, 170, 220, 280)


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Whether two display boxes (x0, y0, x1, y1) intersect.

    >>> _overlaps((0, 0, 2, 2), (1, 1, 3, 3)), _overlaps((0, 0, 1, 1), (1, 0, 2, 1))
    (True, False)
    """
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def label_box(point: tuple[float, float], size: tuple[float, float], direction: tuple[int, int], d: float):
    """The box (x0, y0, x1, y1) of a w x h label whose near side (or corner) is `d` away from `point` in
    `direction` (each of x, y in -1, 0, 1; 0 centres the label on the point along that axis).

    >>> label_box((100, 50), (40, 10), (1, 0), 5), label_box((100, 50), (40, 10), (-1, 1), 5)
    ((105, 45.0, 145, 55.0), (55, 55, 95, 65))
    """
    (px, py), (w, h), (ux, uy) = point, size, direction
    x0 = px + d * ux - (w if ux < 0 else 0) - (w / 2 if ux == 0 else 0)
    y0 = py + d * uy - (h if uy < 0 else 0) - (h / 2 if uy == 0 else 0)
    return (x0, y0, x0 + w, y0 + h)


def place_labels(
    ax, labels: list[tuple[str, float, float]], avoid: list[tuple[float, ...]] = (), fontsize: float = 8
) -> list:
    """Annotate each (text, x, y) beside its point so that no label overlaps another label or the legend,
    in three passes of decreasing demands: also clear of every labelled point's marker and of the
    `avoid` boxes (x0, y0, x1, y1 in data coordinates, e.g. error bars) and inside the axes; then inside
    the axes; then anywhere. Call it once the axes' limits and the figure's layout are final: labels are
    offset in points from their data points, so a later change of scale would move them.
    """
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    to_pt = 72.0 / fig.dpi
    fx0, fy0, fx1, fy1 = ax.get_window_extent(renderer).extents
    anchors = [tuple(ax.transData.transform((x, y))) for _, x, y in labels]
    markers = [(px - 5, py - 5, px + 5, py + 5) for px, py in anchors]
    for x0, y0, x1, y1 in avoid:
        (a, b), (c, d) = ax.transData.transform([(x0, y0), (x1, y1)])
        markers.append((min(a, c) - 4, min(b, d) - 1, max(a, c) + 4, max(b, d) + 1))
    placed = [tuple(ax.get_legend().get_window_extent(renderer).extents)] if ax.get_legend() else []
    leader = {"arrowstyle": "-", "lw": 0.5, "color": "grey", "shrinkA": 0, "shrinkB": 4}
    texts = []
    for (text, x, y), anchor in zip(labels, anchors, strict=True):
        probe = ax.text(0, 0, text, fontsize=fontsize)
        ext = probe.get_window_extent(renderer)
        probe.remove()
        spots = [
            (d, label_box(anchor, (ext.width, ext.height), u, d / to_pt))
            for d in _DISTANCES
            for u in _DIRECTIONS
        ]
        inside = [fx0 <= b[0] and b[2] <= fx1 and fy0 <= b[1] and b[3] <= fy1 for _, b in spots]
        free = [not any(_overlaps(b, o) for o in placed) for _, b in spots]
        unmarked = [not any(_overlaps(b, o) for o in markers) for _, b in spots]
        passes = (
            [i and f and u for i, f, u in zip(inside, free, unmarked, strict=True)],
            [i and f for i, f in zip(inside, free, strict=True)],
            free,
        )
        d, chosen = next((spots[k] for ok in passes for k in range(len(spots)) if ok[k]), spots[-1])
        texts.append(
            ax.annotate(
                text,
                (x, y),
                textcoords="offset points",
                xytext=((chosen[0] - anchor[0]) * to_pt, (chosen[1] - anchor[1]) * to_pt),
                fontsize=fontsize,
                ha="left",
                va="bottom",
                arrowprops=leader if d > _DISTANCES[0] else None,
            )
        )
        placed.append(chosen)
    return texts


def pareto_figure(report: dict[str, Any]):
    """Accuracy vs mean completion tokens: one labelled point per model with its 95% CI, one curve per
    merge sweep in order of alpha, one dotted curve per model's thinking budgets (small squares, in its
    colour), short's accuracy as the floor, auto's simulated point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = report["models"]
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=120)
    colors: dict[str, Any] = {}
    palette = plt.get_cmap("tab10")

    def color(method: str):
        return colors.setdefault(method, palette(len(colors) % 10))

    curves = merge_curves(models)
    for merge_method, points in curves.items():
        ax.plot(
            [models[name]["mean_tokens"] for _, name in points],
            [models[name]["accuracy"] for _, name in points],
            "-",
            color=color("merge"),
            alpha=0.5,
            label=f"merge sweep ({merge_method})",
        )
    in_sweep = {name for points in curves.values() for _, name in points} - {"short", "long"}

    def point_color(name: str):
        m = models[name]
        return color("merge" if name in in_sweep else name if name in PARENTS else m.get("method") or name)

    budgets = budget_curves(models)
    of_base = {point: base for base, names in budgets.items() for point in names}
    for base, names in budgets.items():
        ax.plot(
            [models[name]["mean_tokens"] for name in names],
            [models[name]["accuracy"] for name in names],
            ":",
            color=point_color(base) if base in models else "grey",
            alpha=0.7,
        )
    if budgets:  # one legend entry for every model's curve, each drawn in its model's colour
        ax.plot([], [], ":", color="grey", label="thinking budgets")
    if "short" in models:
        ax.axhline(models["short"]["accuracy"], ls="--", lw=1, color="grey", label="short (floor)")
    for name, m in models.items():
        lo, hi = m["accuracy_ci95"]
        ax.errorbar(
            m["mean_tokens"],
            m["accuracy"],
            yerr=[[max(0.0, m["accuracy"] - lo)], [max(0.0, hi - m["accuracy"])]],
            fmt="s" if is_budget_point(name, m) else "o",
            ms=4 if is_budget_point(name, m) else 6,
            capsize=3,
            color=point_color(base if (base := of_base.get(name, name)) in models else name),
        )
    if "auto" in report:
        a = report["auto"]
        ax.plot(a["mean_tokens"], a["accuracy"], "x", color="black", ms=8)
    ax.set_xlim(left=0)
    ax.margins(y=0.08)
    ax.set_xlabel("mean completion tokens")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{report['task']}: accuracy vs tokens (n = {report['n']}, 95% CI)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    # Models at (nearly) the same point (merges that answer like short, say) share one label.
    points = {name: (m["mean_tokens"], m["accuracy"]) for name, m in models.items()}
    labels = [(label_text(names), x, y) for (x, y), names in label_groups(points)]
    if "auto" in report:
        labels.append(("auto (simulated)", report["auto"]["mean_tokens"], report["auto"]["accuracy"]))
    bars = [
        (m["mean_tokens"], m["accuracy_ci95"][0], m["mean_tokens"], m["accuracy_ci95"][1])
        for m in models.values()
    ]
    place_labels(ax, labels, avoid=bars)
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
