"""report.md and pareto.png from report.json, and `l2s report RUN_DIR`."""

from __future__ import annotations

import json

import pytest

from l2s.errors import UserError
from l2s.report import pareto_figure, read_report, render, render_markdown


def _entry(acc, tokens, method=None, **extra):
    return {
        "accuracy": acc,
        "accuracy_ci95": [max(0.0, acc - 0.05), min(1.0, acc + 0.05)],
        "mean_tokens": tokens,
        "p50_tokens": tokens,
        "p90_tokens": tokens * 1.5,
        "tokens_per_correct": tokens / acc if acc else None,
        "token_ratio_vs_long": tokens / 300,
        "path": f"/m/{method}",
        "method": method,
        **extra,
    }


REPORT = {
    "task": "arith",
    "n": 100,
    "models": {
        "long": _entry(0.9, 300, "rl"),
        "short": _entry(0.5, 20),
        "merge-0.7": _entry(0.8, 180, "merge", alpha=0.7, merge_method="linear"),
        "merge-0.3": _entry(0.6, 60, "merge", alpha=0.3, merge_method="linear"),
        "dpo": _entry(0.85, 120, "dpo"),
    },
    "auto": {"threshold": 0.8, "accuracy": 0.88, "mean_tokens": 150.0, "escalated": 0.4},
}


def test_markdown_table_sorted_by_accuracy():
    md = render_markdown(REPORT)
    rows = [line.split(" | ")[0].strip("| ") for line in md.splitlines() if line.startswith("| ")][1:]
    assert rows == ["long", "dpo", "merge-0.7", "merge-0.3", "short"]
    assert "| merge-0.3 | merge α=0.3 | 0.600 |" in md
    assert "| short | – | 0.500 |" in md and "auto (short, escalating" in md


def test_pareto_has_points_sweep_curve_and_floor():
    import matplotlib.pyplot as plt

    fig = pareto_figure(REPORT)
    ax = fig.axes[0]
    labels = {t.get_text() for t in ax.texts}
    assert set(REPORT["models"]) | {"auto (simulated)"} <= labels
    curves = [line for line in ax.lines if line.get_label() == "merge sweep (linear)"]
    assert len(curves) == 1
    # short (alpha 0) -> 0.3 -> 0.7 -> long (alpha 1), in alpha order
    assert list(curves[0].get_xdata()) == [20, 60, 180, 300]
    assert list(curves[0].get_ydata()) == [0.5, 0.6, 0.8, 0.9]
    floors = [line for line in ax.lines if line.get_label() == "short (floor)"]
    assert floors and list(floors[0].get_ydata()) == [0.5, 0.5]
    assert ax.get_xlabel() == "mean completion tokens" and ax.get_ylabel() == "accuracy"
    plt.close(fig)


def test_report_cli_rerenders(tmp_path):
    from l2s.cli import main

    (tmp_path / "report.json").write_text(json.dumps(REPORT))
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "report.md").read_text() == render_markdown(REPORT)
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    md, png = render(tmp_path)
    assert md.name == "report.md" and png.name == "pareto.png"
    assert not list(tmp_path.glob(".*tmp*"))  # temp files were renamed into place


def test_missing_or_malformed_report_is_one_line(tmp_path, capsys):
    from l2s.cli import main

    assert main(["report", str(tmp_path)]) == 2
    assert "no report.json" in capsys.readouterr().err
    bad = {**REPORT, "models": {"long": {"accuracy": 1.0}}}
    (tmp_path / "report.json").write_text(json.dumps(bad))
    with pytest.raises(UserError, match="missing models.long.accuracy_ci95"):
        read_report(tmp_path)
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(UserError, match="not an l2s report"):
        read_report(tmp_path)


def test_pareto_gives_nearly_coincident_models_one_label():
    import matplotlib.pyplot as plt

    near = json.loads(json.dumps(REPORT))
    near["models"]["merge-0.3"].update(mean_tokens=20.2, accuracy=0.501)  # on top of short (20, 0.5)
    fig = pareto_figure(near)
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert "merge-0.3, short" in labels and "short" not in labels and "merge-0.3" not in labels
    assert "long" in labels and "dpo" in labels  # points apart keep their own labels
    plt.close(fig)


def test_pareto_labels_end_inside_the_axes():
    import matplotlib.pyplot as plt

    fig = pareto_figure(REPORT)
    ax = fig.axes[0]
    fig.canvas.draw()
    inverse = ax.transData.inverted()
    rights = [inverse.transform(t.get_window_extent())[1][0] for t in ax.texts]
    assert max(rights) <= ax.get_xlim()[1]  # the right-most point's label ("long", at 300) included
    plt.close(fig)


def _label_boxes(fig):
    """Display boxes of the axes' text labels (the text alone, without leader lines)."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return {t.get_text(): Text.get_window_extent(t, renderer) for t in fig.axes[0].texts}


def _crowded_report():
    """The quickstart's models (points at the same place, a 7-alpha merge sweep) plus a cluster of
    models close together but not close enough to share a label."""
    rows = {
        "long": (0.999, 64.2, "rl"), "long-sft": (1.0, 63.9, "sft"), "rl": (1.0, 26.9, "rl"),
        "dpo": (0.988, 30.7, "dpo"), "shortest-rs": (0.997, 42.3, "shortest-rs"),
        "merge-0.9": (1.0, 64.3, "merge"), "merge-0.8": (0.998, 65.4, "merge"),
        "merge-0.75": (0.739, 52.2, "merge"), "merge-0.7": (0.119, 9.8, "merge"),
        "merge-0.5": (0.13, 9.0, "merge"), "merge-0.3": (0.128, 9.0, "merge"),
        "merge-0.1": (0.129, 9.0, "merge"), "short": (0.142, 9.0, "sft"),
        "rl-lr1e-4": (0.99, 28.5, "rl"), "rl-lr3e-4": (0.97, 29.9, "rl"), "dpo-beta0.05": (0.975, 32.2, "dpo"),
    }  # fmt: skip
    models = {name: _entry(acc, tok, method) for name, (acc, tok, method) in rows.items()}
    for name, m in models.items():
        if m["method"] == "merge":
            m.update(alpha=float(name.split("-")[1]), merge_method="linear")
    auto = {"threshold": 1.0, "accuracy": 0.999, "mean_tokens": 73.2, "escalated": 1.0}
    return {"task": "arith", "n": 1000, "models": models, "auto": auto}


@pytest.mark.parametrize("report", [REPORT, _crowded_report()], ids=["small", "crowded"])
def test_pareto_labels_never_overlap(report):
    import matplotlib.pyplot as plt

    fig = pareto_figure(report)
    boxes = _label_boxes(fig)
    names = {n for label in boxes for n in label.split(", ")}
    assert set(report["models"]) | {"auto (simulated)"} == names  # every model is named exactly once
    assert sum(len(label.split(", ")) for label in boxes) == len(names)
    items = list(boxes.items())
    for i, (a, box_a) in enumerate(items):
        for b, box_b in items[i + 1 :]:
            assert not box_a.overlaps(box_b), f"labels '{a}' and '{b}' overprint"
    legend = fig.axes[0].get_legend().get_window_extent()
    assert not any(box.overlaps(legend) for box in boxes.values())
    frame = fig.axes[0].get_window_extent()
    assert all(
        frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1
        for b in boxes.values()
    )
    plt.close(fig)


def test_merge_sweep_is_one_curve_in_alpha_order_found_by_name_or_method():
    import matplotlib.pyplot as plt

    report = json.loads(json.dumps(REPORT))
    # a sweep evaluated under its folder names: no alpha in the entry, method unknown
    report["models"]["merge-0.5"] = _entry(0.7, 100, None)
    report["models"]["m-half"] = _entry(0.75, 140, "merge", alpha=0.6)  # method merge, any name
    fig = pareto_figure(report)
    curves = [line for line in fig.axes[0].lines if line.get_label().startswith("merge sweep")]
    assert len(curves) == 1
    # short (0) -> merge-0.3 -> merge-0.5 -> m-half (0.6) -> merge-0.7 -> long (1)
    assert list(curves[0].get_xdata()) == [20, 60, 100, 140, 180, 300]
    plt.close(fig)


def test_markdown_unparsed_column_and_grader_only_when_the_report_has_them():
    assert "unparsed" not in render_markdown(REPORT) and "grader" not in render_markdown(REPORT)
    report = json.loads(json.dumps(REPORT))
    report["grader"] = "flexible"
    report["models"]["short"]["unparsed"] = 0.125
    md = render_markdown(report)
    header = next(line for line in md.splitlines() if line.startswith("| model"))
    assert header.split(" | ")[4] == "unparsed"
    assert "| short | – | 0.500 | [0.450, 0.550] | 12.5% |" in md
    assert "| long | rl | 0.900 | [0.850, 0.950] | – |" in md  # an entry without the field
    assert "Answers graded by the `flexible` grader." in md


def _budgeted_report():
    """The crowded report plus thinking-budget points for long, rl, a merge in the sweep and one that
    answers like short (its budget points sit on short's)."""
    report = _crowded_report()
    models = report["models"]
    for base, rows in {
        "long": [(0.35, 20.1), (0.7, 28.0), (0.97, 44.0)], "rl": [(0.5, 16.0), (0.93, 20.5), (1.0, 26.9)],
        "merge-0.9": [(0.36, 20.0), (0.71, 28.2), (0.97, 44.5)], "merge-0.5": [(0.13, 9.0)] * 3,
    }.items():  # fmt: skip
        for budget, (acc, tokens) in zip((8, 16, 32), rows, strict=True):
            extra = {k: models[base][k] for k in ("alpha", "merge_method") if k in models[base]}
            models[f"{base}@{budget}"] = _entry(
                acc, tokens, models[base]["method"], thinking_budget=budget, **extra
            )
    report["budget_n"] = 300
    return report


def test_budget_points_in_the_markdown():
    report = _budgeted_report()
    report["models"]["rl@8"]["mean_reasoning_tokens"] = 8.0
    md = render_markdown(report)
    header = next(line for line in md.splitlines() if line.startswith("| model"))
    assert header.split(" | ")[4:6] == ["mean tok", "reasoning"]
    assert "| rl@8 | rl, budget 8 | 0.500 | [0.450, 0.550] | 16.0 | 8.0 |" in md
    assert "| long | rl | 0.999 | [0.949, 1.000] | 64.2 | – |" in md  # an entry without the field
    assert "thinking budget of B" in md and "on the first 300 of the 1000 problems" in md
    assert "reasoning" not in render_markdown(REPORT)  # no budget points: the table as before


def test_pareto_draws_each_models_budget_curve_and_keeps_the_sweep_apart():
    import matplotlib.pyplot as plt

    report = _budgeted_report()
    fig = pareto_figure(report)
    ax = fig.axes[0]
    dotted = [line for line in ax.lines if line.get_linestyle() == ":" and len(line.get_xdata())]
    curves = sorted((list(line.get_xdata()), list(line.get_ydata())) for line in dotted)
    assert ([20.1, 28.0, 44.0, 64.2], [0.35, 0.7, 0.97, 0.999]) in curves  # long's: by budget, then long
    assert ([16.0, 20.5, 26.9, 26.9], [0.5, 0.93, 1.0, 1.0]) in curves
    assert len(curves) == 4 and "thinking budgets" in ax.get_legend_handles_labels()[1]
    (sweep,) = [line for line in ax.lines if line.get_label() == "merge sweep (linear)"]
    assert len(sweep.get_xdata()) == 9  # short, seven merges, long: no budget point joins the sweep
    plt.close(fig)


def test_pareto_labels_of_budget_points_never_overlap():
    import matplotlib.pyplot as plt

    report = _budgeted_report()
    fig = pareto_figure(report)
    boxes = _label_boxes(fig)
    named = []
    for label in boxes:
        for part in label.split(", "):
            base, _, budgets = part.partition("@")
            named += [f"{base}@{b}" for b in budgets.split("/")] if budgets else [part]
    assert sorted(named) == sorted([*report["models"], "auto (simulated)"])  # each point named once
    assert "merge-0.5@8/16/32" in next(label for label in boxes if "merge-0.5@" in label)
    items = list(boxes.items())
    for i, (a, box_a) in enumerate(items):
        for b, box_b in items[i + 1 :]:
            assert not box_a.overlaps(box_b), f"labels '{a}' and '{b}' overprint"
    plt.close(fig)
