"""`output_dir/index.html`: one page linking what the app wrote there (the group Dice report,
each session's QC report with its status, the QC table, the model packages), rebuilt from the
files on disk after every run of either level, so it is never out of date."""
from __future__ import annotations

import html
import json
from pathlib import Path

from ..bids.derivatives import GROUP_DICE_REPORT, MODELS, QC_REPORT, QC_SUMMARY, REPORTS
from ..images import write_text_atomic
from ..models.package import find_packages
from .figures import STATUS_COLOURS
from .page import html_page, section

INDEX = "index.html"


def _qc_rows(reports: Path) -> list[tuple[str, str, str]]:
    """(session key, status, page) for every QC report JSON with its HTML page."""
    rows = []
    for path in sorted(reports.glob(f"*_{QC_REPORT}.json")):
        try:
            content = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        page = path.with_suffix(".html")
        if isinstance(content, dict) and page.is_file():
            rows.append((str(content.get("key", path.name)), str(content.get("status", "?")),
                         page.relative_to(reports.parent).as_posix()))
    return rows


def index_html(output_dir: Path) -> str:
    output_dir = Path(output_dir)
    reports = output_dir / REPORTS
    esc = html.escape
    sections = []
    group = sorted(reports.glob(f"{GROUP_DICE_REPORT}.html")) if reports.is_dir() else []
    if group:
        sections.append(section("Model evaluation (group level)", "<ul>" + "".join(
            f"<li><a href='{esc(p.relative_to(output_dir).as_posix())}'>{esc(p.name)}</a></li>" for p in group)
            + "</ul>"))
    models = find_packages(output_dir / MODELS)
    if models:
        sections.append(section("Model packages", "<ul>" + "".join(
            f"<li><a href='{esc(p.relative_to(output_dir).as_posix())}/manifest.json'>{esc(p.name)}</a></li>"
            for p in models) + "</ul>"))
    rows = _qc_rows(reports) if reports.is_dir() else []
    if rows:
        table = "".join(f"<tr style='background:{STATUS_COLOURS.get(status, '#eee')}'><td><a href='{esc(page)}'>"
                        f"{esc(key)}</a></td><td><b>{esc(status)}</b></td></tr>" for key, status, page in rows)
        counts = {s: sum(1 for _, st, _ in rows if st == s) for s in ("ok", "warn", "fail")}
        sections.append(section("Segmentation QC (participant level)", f"<p>{len(rows)} sessions: "
                                + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
                                + (f"; table: <a href='{REPORTS}/{QC_SUMMARY}'>{QC_SUMMARY}</a>"
                                   if (reports / QC_SUMMARY).is_file() else "")
                                + f"</p><table><tr><th>session</th><th>QC</th></tr>{table}</table>"))
    if not sections:
        sections.append("<p>Nothing written here yet.</p>")
    return html_page(f"bibsnet-trainer: {output_dir.name}", "bibsnet-trainer outputs", sections, back=None)


def write_index(output_dir: Path) -> Path:
    return write_text_atomic(Path(output_dir) / INDEX, index_html(output_dir))
