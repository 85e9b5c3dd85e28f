"""The Report tab's data: the latest report (report.md / report.json, pareto.png) in a run folder.

`l2s eval` and `l2s quickstart` write report.json, report.md and pareto.png into a run folder (see
docs/DESIGN.md, "report.json"); the UI shows them as they are. When the folder holds several reports
(e.g. one per eval sub-run), the most recently written one is "the latest". If only report.json
exists, its table is rendered by `l2s.report.render_markdown`, the same function that writes report.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from l2s.errors import UserError

DEFAULT_RUN_DIR = "runs/quickstart"
_REPORT_FILES = ("report.json", "report.md")


@dataclass(frozen=True)
class ReportView:
    markdown: str  # the table (or a message saying why there is none)
    pareto: Path | None  # pareto.png beside the report, when present
    folder: Path | None  # the folder the report was read from


def latest_report_dir(run_dir: str | Path) -> Path | None:
    """The folder holding the newest report at or below `run_dir` (the folder itself wins when it has one)."""
    root = Path(run_dir).expanduser()
    if not root.is_dir():
        return None
    if any((root / f).is_file() for f in _REPORT_FILES):
        return root
    found = [p for f in _REPORT_FILES for p in root.rglob(f) if p.is_file()]
    if not found:
        return None
    return max(found, key=lambda p: p.stat().st_mtime).parent


def load_report(run_dir: str | Path) -> ReportView:
    """What the Report tab shows for `run_dir`; never raises for a missing or broken report."""
    folder = latest_report_dir(run_dir)
    if folder is None:
        return ReportView(
            f"No report in `{run_dir}` yet. Write one with `l2s quickstart --out {run_dir}` "
            "or `l2s eval --models ... --out DIR`, then press **Load**.",
            None,
            None,
        )
    pareto = folder / "pareto.png"
    pareto_path = pareto if pareto.is_file() else None
    md = folder / "report.md"
    if md.is_file():
        text = md.read_text(encoding="utf-8", errors="replace")
    else:
        from l2s.report import read_report, render_markdown

        try:
            text = render_markdown(read_report(folder))
        except UserError as e:
            text = f"⚠ {e}"
    return ReportView(f"Report from `{folder}`\n\n{text}", pareto_path, folder)
