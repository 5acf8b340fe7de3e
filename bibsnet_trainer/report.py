"""Dice reports: JSON and TSV for machines, an HTML page with a figure for people.

Marks follow the BIBSNet model-creation guide: pass >= 0.80, good >= 0.90, excellent >= 0.95.
Every report states what it was computed on; Dice on synthetic images is labelled as such."""
from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

from .images import write_text_atomic
from .labels import label_name
from .metrics import EXCELLENT, GOOD, PASS, grade

REAL = "real held-out subjects"
SYNTHETIC = "SYNTHETIC validation images (no real subject with a label map was available to hold out)"


def report_rows(scores: dict[str, dict[int, float]]) -> list[dict]:
    """scores: case -> {code: dice} -> flat rows."""
    rows = []
    for case, per_label in sorted(scores.items()):
        for code, dice in sorted(per_label.items()):
            rows.append({"case": case, "label": code, "name": label_name(code),
                         "dice": None if math.isnan(dice) else round(dice, 4), "grade": grade(dice)})
    return rows


def label_summary(rows: list[dict]) -> list[dict]:
    by_label: dict[int, list[float]] = {}
    for row in rows:
        if row["dice"] is not None:
            by_label.setdefault(row["label"], []).append(row["dice"])
    summary = []
    for code, values in sorted(by_label.items()):
        mean = sum(values) / len(values)
        summary.append({"label": code, "name": label_name(code), "mean_dice": round(mean, 4),
                        "min_dice": round(min(values), 4), "n": len(values), "grade": grade(mean)})
    return summary


def _figure_png(summary: list[dict], title: str) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 0.32 * len(summary) + 2), 4.5))
    names = [s["name"] for s in summary]
    means = [s["mean_dice"] for s in summary]
    colours = {"excellent": "#1a9850", "good": "#91cf60", "pass": "#fee08b", "fail": "#d73027"}
    ax.bar(range(len(names)), means, color=[colours[s["grade"]] for s in summary])
    for mark, style in ((PASS, ":"), (GOOD, "--"), (EXCELLENT, "-")):
        ax.axhline(mark, color="grey", linestyle=style, linewidth=0.8)
    ax.set_xticks(range(len(names)), names, rotation=75, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("mean Dice")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def write_dice_report(folder: Path, stem: str, scores: dict[str, dict[int, float]], *,
                      evaluated_on: str, context: dict, figures: list[tuple[str, Path]] = ()) -> dict[str, Path]:
    """Write <stem>.json, <stem>.tsv, <stem>.png and <stem>.html into folder."""
    folder = Path(folder)
    rows = report_rows(scores)
    summary = label_summary(rows)
    overall = (sum(s["mean_dice"] for s in summary) / len(summary)) if summary else float("nan")
    content = {"evaluated_on": evaluated_on, "synthetic": evaluated_on == SYNTHETIC,
               "marks": {"pass": PASS, "good": GOOD, "excellent": EXCELLENT},
               "mean_dice": None if math.isnan(overall) else round(overall, 4),
               "grade": grade(overall), "labels": summary, "cases": rows, **context}
    paths = {"json": folder / f"{stem}.json", "tsv": folder / f"{stem}.tsv",
             "png": folder / f"{stem}.png", "html": folder / f"{stem}.html"}
    write_text_atomic(paths["json"], json.dumps(content, indent=2) + "\n")
    lines = ["case\tlabel\tname\tdice\tgrade"] + [
        f"{r['case']}\t{r['label']}\t{r['name']}\t{'n/a' if r['dice'] is None else r['dice']}\t{r['grade']}"
        for r in rows]
    write_text_atomic(paths["tsv"], "\n".join(lines) + "\n")
    title = f"Dice per label on {evaluated_on}"
    png = _figure_png(summary, title) if summary else b""
    paths["png"].parent.mkdir(parents=True, exist_ok=True)
    paths["png"].write_bytes(png)
    write_text_atomic(paths["html"], _html(content, png, title, figures))
    return paths


def _embed(png: bytes, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def _html(content: dict, png: bytes, title: str, figures=()) -> str:
    esc = html.escape
    extra = "".join(f"<h2>{esc(caption)}</h2>{_embed(Path(path).read_bytes(), caption)}" for caption, path in figures)
    warning = ("<p class='warn'><b>Synthetic only.</b> No real subject with a label map was held out; "
               "these figures are on synthetic images and say little about real scans.</p>"
               if content["synthetic"] else "")
    rows = "".join(
        f"<tr class='{s['grade']}'><td>{s['label']}</td><td>{esc(s['name'])}</td><td>{s['mean_dice']:.3f}</td>"
        f"<td>{s['min_dice']:.3f}</td><td>{s['n']}</td><td>{s['grade']}</td></tr>" for s in content["labels"])
    context = "".join(f"<li><b>{esc(str(k))}</b>: {esc(json.dumps(v) if isinstance(v, (dict, list)) else str(v))}</li>"
                      for k, v in content.items() if k not in ("labels", "cases", "marks", "synthetic"))
    image = _embed(png, "Dice per label") if png else ""
    return f"""<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px}} .excellent{{background:#d9f0d3}} .good{{background:#eef7e0}}
.pass{{background:#fff7d6}} .fail{{background:#fbe0dc}} .warn{{background:#fbe0dc;padding:8px}}</style></head>
<body><h1>Dice report</h1><p>Evaluated on <b>{esc(content['evaluated_on'])}</b>. Marks: pass &ge; {PASS:.2f},
good &ge; {GOOD:.2f}, excellent &ge; {EXCELLENT:.2f} (BIBSNet model-creation guide).</p>{warning}
<p>Mean Dice over labels: <b>{content['mean_dice']}</b> ({content['grade']})</p>{image}
<table><tr><th>code</th><th>structure</th><th>mean Dice</th><th>min Dice</th><th>cases</th><th>grade</th></tr>{rows}</table>
{extra}<h2>Context</h2><ul>{context}</ul></body></html>
"""
