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
