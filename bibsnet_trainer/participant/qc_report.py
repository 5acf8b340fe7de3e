"""Visual QC report of one subject/session: mosaics (several slices in three planes) of the
segmentation outlines and of the brain mask over the image, the QC flags and the region volumes,
in one self-contained HTML page (PNGs embedded); and the group QC table (`participants_qc.tsv`
with its JSON sidecar), rebuilt from every session's QC JSON.

Display: `reports.figures.orthogonal_slices`, the one convention of every figure (`CONVENTION`):
voxels in the closest RAS order (no resampling), the subject's left on the left of axial and coronal
views, anterior up in axial views, superior up in coronal and sagittal views, anterior to the right
in sagittal views, each panel lettered.
Outline colours: Left-* labels warm (reds, oranges, yellows), Right-* labels cool (blues, greens)
with the same shade for a pair, midline and unpaired labels violet/white, so a left/right swap shows
as warm outlines on the side marked R."""
from __future__ import annotations

import html
import json
import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from ..bids.derivatives import QC_REPORT, QC_SUMMARY
from ..images import write_text_atomic
from ..reports.figures import (CONVENTION, STATUS_COLOURS, Overlay, embed_png, hex_rgb, label_colours,
                               orthogonal_slices, png_bytes, pyplot)
from ..reports.page import html_page, section
from .qc import DEFINITIONS, FAIL, NA, OK, ORDER, WARN

LOG = logging.getLogger(__name__)

MASK_COLOUR = "#ff1a1a"
PANEL_INCHES, DPI = 1.9, 110


# ----------------------------------------------------------------------------- figures

def mosaic_png(image: nib.spatialimages.SpatialImage, overlay: nib.spatialimages.SpatialImage, *,
               kind: str, title: str, n_slices: int = 7, colours: dict | None = None) -> bytes:
    """Rows sagittal, coronal, axial (`orthogonal_slices`: closest RAS, one convention, letters);
    `n_slices` columns through the labelled region.

    kind "labels": every label's outline in its colour; "mask": the mask's outline in red with a
    light red tint inside. `overlay` must be on `image`'s grid."""
    if kind == "mask":
        mask = (np.asanyarray(overlay.dataobj) > 0).astype(np.uint8)
        layer = Overlay(nib.Nifti1Image(mask, overlay.affine), hex_rgb(MASK_COLOUR), fill=0.1, width=2)
    else:
        layer = Overlay(overlay, colours or label_colours())
    plt = pyplot()
    fig, axes = plt.subplots(3, n_slices, figsize=(PANEL_INCHES * n_slices, 6.6), facecolor="black",
                             squeeze=False, gridspec_kw={"wspace": 0.02, "hspace": 0.16})
    fig.subplots_adjust(left=0.03, right=0.995, bottom=0.01, top=0.86)
    orthogonal_slices(image, layer, n_slices=n_slices, axes=axes, dark=True, dpi=DPI)
    legend = ("outline: brain mask (red), inside tinted" if kind == "mask" else
              "outlines: Left-* labels warm (red/orange/yellow), Right-* labels cool (blue/green), "
              "midline/unpaired violet/white")
    fig.suptitle(f"{title}\n{CONVENTION}\n{legend}", color="white", fontsize=8.5)
    return png_bytes(fig, dpi=DPI, facecolor="black")


# ----------------------------------------------------------------------------- HTML

def _value(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def qc_html(content: dict, figures: list[tuple[str, bytes]]) -> str:
    """The page: status, flags, figures, region volumes, definitions and context."""
    esc = html.escape
    flags = "".join(
        f"<tr style='background:{STATUS_COLOURS[f['status']]}'><td>{esc(f['name'])}</td>"
        f"<td>{esc(_value(f['value']))}</td><td>{esc(f['expected'])}</td><td><b>{f['status']}</b></td>"
        f"<td>{esc(f['detail'])}</td></tr>" for f in content["flags"])
    colours = label_colours()
    def swatch(code: int) -> str:
        red, green, blue = (round(255 * c) for c in colours.get(int(code), (1.0, 1.0, 1.0)))
        return (f"<span class='swatch' style='background:rgb({red},{green},{blue})' "
                f"title='outline colour in the figure'></span>")
    volumes = "".join(f"<tr><td>{swatch(r['index'])}</td><td>{r['index']}</td><td>{esc(r['name'])}</td>"
                      f"<td>{r['volume_mm3'] / 1000:.2f}</td><td>{r['voxels']}</td></tr>"
                      for r in content.get("volumes", []))
    images = [section(caption, embed_png(png, caption)) for caption, png in figures]
    definitions = "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in DEFINITIONS.items())
    shown = ("subject", "session", "age_months", "image", "model", "files", "reference", "generated_by")
    def text(value) -> str:
        return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    context = "".join(f"<li><b>{esc(k)}</b>: {esc(text(content[k]))}</li>" for k in shown if content.get(k) is not None)
    status = content["status"]
    age = "unknown" if content.get("age_months") is None else f"{content['age_months']:.1f} months"
    summary = (f"<p class='status' style='background:{STATUS_COLOURS[status]}'>QC status: <b>{status}</b></p>\n"
               f"<p>Age at scan: {esc(age)}.\nFlags: ok, warn (look at the figures), fail (check before handing "
               "to Nibabies), n/a (could not be\ncomputed here; the detail says why).</p>\n"
               "<table id='flags'><tr><th>flag</th><th>value</th><th>expected</th><th>status</th><th>detail</th>"
               f"</tr>{flags}</table>")
    volumes = ("<details open><summary>Region volumes and outline colours (the legend of the segmentation "
               "figure)</summary>\n<table id='volumes'><tr><th>colour</th><th>code</th><th>structure</th>"
               f"<th>volume (cm³)</th>\n<th>voxels</th></tr>{volumes}</table></details>")
    return html_page(f"QC {content['key']}", f"QC report: {content['key']}",
                     [summary, *images, volumes, section("Flag definitions", f"<ul>{definitions}</ul>"),
                      section("Context", f"<ul>{context}</ul>")], provenance=content.get("provenance"))


# ----------------------------------------------------------------------------- writers

def write_qc_report(paths: dict, content: dict, image, dseg, mask, volumes: list[dict]) -> dict:
    """Render the two mosaics, write the HTML page, then the JSON (last: it marks the QC done)."""
    figures = [("Segmentation outlines", mosaic_png(image, dseg, kind="labels",
                                                     title=f"{content['key']}: segmentation")),
               ("Brain mask", mosaic_png(image, mask, kind="mask", title=f"{content['key']}: brain mask"))]
    write_text_atomic(paths["html"], qc_html({**content, "volumes": volumes}, figures))
    write_text_atomic(paths["json"], json.dumps(content, indent=2) + "\n")
    return paths


# ----------------------------------------------------------------------------- group summary

SUMMARY_HEAD = ("participant_id", "session_id", "age_months", "qc_status")


def summary_rows(reports: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Per-session QC JSON contents -> (columns, rows) of the group summary: one row per session,
    each flag's value and status in two columns (flags in ORDER, unknown ones after); n/a if absent."""
    names = list(ORDER) + sorted({f["name"] for r in reports for f in r["flags"]} - set(ORDER))
    present = [n for n in names if any(f["name"] == n for r in reports for f in r["flags"])]
    columns = list(SUMMARY_HEAD) + [c for n in present for c in (n, f"{n}_status")]

    def cell(value):
        return "n/a" if value is None else str(value)

    rows = []
    for report in sorted(reports, key=lambda r: (r["subject"], r.get("session") or "")):
        by_name = {f["name"]: f for f in report["flags"]}
        row = [f"sub-{report['subject']}", f"ses-{report['session']}" if report.get("session") else "n/a",
               cell(None if report.get("age_months") is None else round(report["age_months"], 2)),
               report["status"]]
        for name in present:
            flag = by_name.get(name)
            row += [cell(flag["value"]), flag["status"]] if flag else ["n/a", "n/a"]
        rows.append(row)
    return columns, rows


def summary_sidecar(columns: list[str]) -> dict:
    described = {"participant_id": {"Description": "subject label"},
                 "session_id": {"Description": "session label (n/a without sessions)"},
                 "age_months": {"Description": "age at scan as read from the BIDS dataset", "Units": "months"},
                 "qc_status": {"Description": "worst status of the session's flags",
                               "Levels": {OK: "all flags ok", WARN: "look at the report", FAIL: "check before use"}}}
    for name, text in DEFINITIONS.items():
        if name in columns:
            described[name] = {"Description": text}
            described[f"{name}_status"] = {"Description": f"status of {name}",
                                           "Levels": {OK: "ok", WARN: "warning", FAIL: "failed",
                                                      NA: "not computed (see the session's QC report)"}}
    return {c: described[c] for c in columns if c in described}


def read_qc_reports(folder) -> list[dict]:
    """Every readable per-session QC JSON in `folder` (unreadable ones are skipped with a warning)."""
    reports = []
    for path in sorted(Path(folder).glob(f"sub-*_{QC_REPORT}.json")):
        try:
            content = json.loads(path.read_text())
            if isinstance(content, dict) and {"subject", "status", "flags"} <= set(content):
                reports.append(content)
                continue
        except (OSError, json.JSONDecodeError):
            pass
        LOG.warning("%s: not a QC report; left out of the summary", path)
    return reports


def write_qc_summary(folder, name: str = QC_SUMMARY):
    """Rebuild the group summary TSV (+ JSON) from every per-session QC JSON in `folder`, under a
    lock so that participant jobs running side by side do not lose each other's rows."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tsv = folder / name
    lock = os.open(folder, os.O_RDONLY)   # the folder itself is the lock: no lock file left behind
    try:
        try:
            import fcntl
            fcntl.flock(lock, fcntl.LOCK_EX)
        except (ImportError, OSError):   # no POSIX locks here (some network file systems): best effort
            pass
        reports = read_qc_reports(folder)
        columns, rows = summary_rows(reports)
        write_text_atomic(tsv.with_suffix(".json"), json.dumps(summary_sidecar(columns), indent=2) + "\n")
        write_text_atomic(tsv, "\n".join("\t".join(r) for r in [columns, *rows]) + "\n")
    finally:
        os.close(lock)
    return tsv
