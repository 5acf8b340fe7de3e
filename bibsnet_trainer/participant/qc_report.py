"""Visual QC report of one subject/session: mosaics (several slices in three planes) of the
segmentation outlines and of the brain mask over the image, the QC flags and the region volumes,
in one self-contained HTML page (PNGs embedded).

Display: voxels are put in the closest RAS order (a permutation/flip, no resampling) and shown in
the neurological convention: the subject's left on the left of axial and coronal views, anterior up
in axial views, superior up in coronal and sagittal views, anterior to the right in sagittal views.
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

from ..bids.derivatives import QC_SUMMARY
from ..images import padded_box, to_canonical, write_text_atomic
from ..reports.provenance import provenance_html
from .qc import DEFINITIONS, summary_rows, summary_sidecar
from ..reports.figures import STATUS_COLOURS, embed_png, hex_rgb, intensity_window, label_colours, overlay_rgba, png_bytes, pyplot

LOG = logging.getLogger(__name__)

PLANES = (("axial", 2, (0, 1), ("L", "R", "P", "A")),      # name, fixed axis, (across, up), edge letters
          ("coronal", 1, (0, 2), ("L", "R", "I", "S")),
          ("sagittal", 0, (1, 2), ("P", "A", "I", "S")))
MASK_COLOUR = "#ff1a1a"
PANEL_INCHES, DPI = 1.9, 110
CONVENTION = ("Neurological convention: subject's left on the left (axial, coronal); "
              "anterior up (axial), superior up (coronal, sagittal), anterior right (sagittal)")


# ----------------------------------------------------------------------------- geometry

def canonical(img: nib.spatialimages.SpatialImage) -> tuple[np.ndarray, tuple[float, float, float], np.ndarray]:
    """Data in closest-RAS voxel order, its voxel sizes and affine."""
    ras = to_canonical(nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine))
    return np.asanyarray(ras.dataobj), tuple(float(z) for z in ras.header.get_zooms()[:3]), ras.affine


def _box(*masks: np.ndarray, margin: float = 0.08) -> tuple[slice, slice, slice]:
    """Bounding box of the non-zero voxels of the first non-empty mask (padded), else everything."""
    for mask in masks:
        box = padded_box(mask, margin)
        if box is not None:
            return box
    return tuple(slice(0, n) for n in masks[0].shape)


def slice_indices(extent: slice, count: int) -> list[int]:
    """`count` slices evenly inside [start, stop), away from the edges."""
    start, stop = extent.start, extent.stop
    positions = [start + (stop - start) * (i + 1) / (count + 1) for i in range(count)]
    return sorted({min(stop - 1, max(start, int(round(p)))) for p in positions})


# ----------------------------------------------------------------------------- figures

def mosaic_png(image: nib.spatialimages.SpatialImage, overlay: nib.spatialimages.SpatialImage, *,
               kind: str, title: str, n_slices: int = 7, colours: dict | None = None) -> bytes:
    """Rows axial, coronal, sagittal; `n_slices` columns through the labelled region.

    kind "labels": every label's outline in its colour; "mask": the mask's outline in red with a
    light red tint inside. `overlay` must be on `image`'s grid."""
    data, zooms, affine = canonical(image)
    labels, _, _ = canonical(overlay)
    if data.shape[:3] != labels.shape[:3]:
        raise ValueError(f"image {data.shape} and overlay {labels.shape} are not on one grid")
    data = np.asarray(data, np.float32).reshape(data.shape[:3])
    labels = np.asarray(labels).reshape(labels.shape[:3]).astype(np.int32)
    if kind == "mask":
        labels = (labels > 0).astype(np.int32)
        colours, fill = {1: hex_rgb(MASK_COLOUR)}, 0.1
    else:
        colours, fill = colours or label_colours(), 0.0
    box = _box(labels)
    low, high = intensity_window(data, labels > 0)
    plt = pyplot()
    from matplotlib import patheffects
    halo = [patheffects.withStroke(linewidth=2, foreground="black")]
    fig, axes = plt.subplots(3, n_slices, figsize=(PANEL_INCHES * n_slices, 6.6), facecolor="black",
                             gridspec_kw={"wspace": 0.02, "hspace": 0.16})
    for row, (name, fixed, (across, up), letters) in enumerate(PLANES):
        indices = slice_indices(box[fixed], n_slices)
        for col in range(n_slices):
            ax = axes[row, col]
            ax.set_facecolor("black")
            ax.set_axis_off()
            if col >= len(indices):
                continue
            index = [box[0], box[1], box[2]]
            index[fixed] = indices[col]
            plane_image = data[tuple(index)].T               # rows: `up` axis, columns: `across`
            plane_labels = labels[tuple(index)].T
            # about one overlay pixel per screen pixel (panels are ~PANEL_INCHES at DPI)
            factor = max(1, int(round(PANEL_INCHES * DPI / max(plane_labels.shape))))
            extent = (box[across].start * zooms[across], box[across].stop * zooms[across],
                      box[up].start * zooms[up], box[up].stop * zooms[up])
            ax.imshow(plane_image, cmap="gray", vmin=low, vmax=high, origin="lower", extent=extent,
                      interpolation="bilinear")
            ax.imshow(overlay_rgba(plane_labels, colours, factor, fill=fill, thick=kind == "mask"),
                      origin="lower", extent=extent,
                      interpolation="nearest")
            ax.set_aspect("equal")
            centre = [(b.start + b.stop - 1) / 2 for b in box]
            centre[fixed] = indices[col]
            world = float(affine[fixed, :3] @ centre + affine[fixed, 3])
            ax.set_title(f"{'xyz'[fixed]} = {world:+.0f} mm", color="#bbbbbb", fontsize=7, pad=2)
            if col == 0:
                ax.text(-0.04, 0.5, name, color="white", fontsize=8, rotation=90, transform=ax.transAxes,
                        ha="right", va="center")
            for text, x, y, ha, va in ((letters[0], 0.01, 0.5, "left", "center"),
                                       (letters[1], 0.99, 0.5, "right", "center"),
                                       (letters[2], 0.5, 0.01, "center", "bottom"),
                                       (letters[3], 0.5, 0.99, "center", "top")):
                ax.text(x, y, text, color="#ffff66", fontsize=7, fontweight="bold", transform=ax.transAxes,
                        ha=ha, va=va, path_effects=halo)
    legend = ("outline: brain mask (red), inside tinted" if kind == "mask" else
              "outlines: Left-* labels warm (red/orange/yellow), Right-* labels cool (blue/green), "
              "midline/unpaired violet/white")
    fig.suptitle(f"{title}\n{CONVENTION}\n{legend}", color="white", fontsize=8.5)
    fig.subplots_adjust(left=0.03, right=0.995, bottom=0.01, top=0.86)
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
    images = "".join(f"<h2>{esc(caption)}</h2>{embed_png(png, caption)}" for caption, png in figures)
    definitions = "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in DEFINITIONS.items())
    shown = ("subject", "session", "age_months", "image", "model", "files", "reference", "generated_by")
    def text(value) -> str:
        return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    context = "".join(f"<li><b>{esc(k)}</b>: {esc(text(content[k]))}</li>" for k in shown if content.get(k) is not None)
    status = content["status"]
    return f"""<!DOCTYPE html><html><head><meta charset='utf-8'><title>QC {esc(content['key'])}</title>
<style>body{{font-family:sans-serif;max-width:1400px;margin:1.5em auto}}
table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 8px}}
.status{{font-size:1.3em;padding:6px 12px;display:inline-block}}
.swatch{{display:inline-block;width:1.4em;height:0.9em;border:1px solid #333;background:#000}}</style></head>
<body><p><a href='../index.html'>&larr; all outputs</a></p><h1>QC report: {esc(content['key'])}</h1>
<p class='status' style='background:{STATUS_COLOURS[status]}'>QC status: <b>{status}</b></p>
<p>Age at scan: {esc('unknown' if content.get('age_months') is None else f"{content['age_months']:.1f} months")}.
Flags: ok, warn (look at the figures), fail (check before handing to Nibabies), n/a (could not be
computed here; the detail says why).</p>
<table id='flags'><tr><th>flag</th><th>value</th><th>expected</th><th>status</th><th>detail</th></tr>{flags}</table>
{images}
<details open><summary>Region volumes and outline colours (the legend of the segmentation figure)</summary>
<table id='volumes'><tr><th>colour</th><th>code</th><th>structure</th><th>volume (cm³)</th>
<th>voxels</th></tr>{volumes}</table></details>
<h2>Flag definitions</h2><ul>{definitions}</ul><h2>Context</h2><ul>{context}</ul>{provenance_html(content.get("provenance"))}
</body></html>
"""


# ----------------------------------------------------------------------------- writers

def write_qc_report(paths: dict, content: dict, image, dseg, mask, volumes: list[dict]) -> dict:
    """Render the two mosaics, write the HTML page, then the JSON (last: it marks the QC done)."""
    figures = [("Segmentation outlines", mosaic_png(image, dseg, kind="labels",
                                                     title=f"{content['key']}: segmentation")),
               ("Brain mask", mosaic_png(image, mask, kind="mask", title=f"{content['key']}: brain mask"))]
    write_text_atomic(paths["html"], qc_html({**content, "volumes": volumes}, figures))
    write_text_atomic(paths["json"], json.dumps(content, indent=2) + "\n")
    return paths


def read_qc_reports(folder) -> list[dict]:
    """Every readable per-session QC JSON in `folder` (unreadable ones are skipped with a warning)."""
    reports = []
    for path in sorted(Path(folder).glob("sub-*_desc-qc_report.json")):
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
