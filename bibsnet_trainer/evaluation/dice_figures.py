"""The Dice report's figures: the box plot of Dice per label, and the overlay of a case's reference and
prediction in three planes."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..images import padded_box, write_bytes_atomic
from ..reports.figures import intensity_window, png_bytes, pyplot
from .metrics import EXCELLENT, GOOD, PASS


GRADE_COLOURS = {"excellent": "#1a9850", "good": "#91cf60", "pass": "#fee08b", "fail": "#d73027",
                 "absent": "#bbbbbb"}


REFERENCE_COLOUR, PREDICTION_COLOUR = (0.0, 0.85, 1.0), (1.0, 0.1, 0.55)


def dice_boxplot_png(rows: list[dict], summary: list[dict], title: str, synthetic: bool = False) -> bytes:
    """Box plot of Dice per label over cases (box colour: grade of the label's mean), each case a dot,
    the mean a black diamond, the pass/good/excellent marks as grey lines."""
    plt = pyplot()
    by_label = {s["label"]: [r["dice"] for r in rows if r["label"] == s["label"] and r["dice"] is not None]
                for s in summary}
    values = [by_label[s["label"]] for s in summary]
    fig, ax = plt.subplots(figsize=(max(6.5, 0.36 * len(summary) + 2), 4.8))
    positions = np.arange(len(summary))
    boxes = ax.boxplot(values, positions=positions, widths=0.6, patch_artist=True, showfliers=False,
                       medianprops={"color": "black", "linewidth": 1.2})
    for patch, s in zip(boxes["boxes"], summary):
        patch.set_facecolor(GRADE_COLOURS[s["grade"]])
        patch.set_alpha(0.85)
    jitter = np.random.default_rng(0)
    for x, v in zip(positions, values):
        ax.scatter(x + jitter.uniform(-0.15, 0.15, len(v)), v, s=9, color="#333333", alpha=0.6, zorder=3,
                   linewidths=0)
    ax.scatter(positions, [s["mean_dice"] for s in summary], marker="D", s=20, facecolor="white",
               edgecolor="black", linewidths=0.9, zorder=4, label="mean", clip_on=False)
    for mark, style, name in ((PASS, ":", "pass"), (GOOD, "--", "good"), (EXCELLENT, "-", "excellent")):
        ax.axhline(mark, color="grey", linestyle=style, linewidth=0.8, label=f"{name} {mark:.2f}")
    lowest = min((min(v) for v in values if v), default=0.0)
    ax.set_ylim(max(0.0, min(0.7, math.floor((lowest - 0.05) * 10) / 10)), 1.005)
    ax.set_xticks(positions, [s["name"] for s in summary], rotation=75, ha="right", fontsize=7)
    ax.set_xlim(-0.7, len(summary) - 0.3)
    ax.set_ylabel("Dice")
    cases = len({r["case"] for r in rows})
    ax.set_title(f"{title}\n{cases} case{'s' if cases != 1 else ''}; box: quartiles, line: median, "
                 "dots: cases", fontsize=9, color="#b2182b" if synthetic else "black",
                 fontweight="bold" if synthetic else "normal")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return png_bytes(fig)


def _labelled_box(reference: np.ndarray, prediction: np.ndarray, margin: float = 0.08) -> tuple[slice, ...]:
    """The box holding every labelled voxel of either map, a little wider (the whole array if none)."""
    box = padded_box((reference != 0) | (prediction != 0), margin)
    return box if box is not None else tuple(slice(0, n) for n in reference.shape)


def _slice_centre(reference: np.ndarray, prediction: np.ndarray) -> tuple[int, ...]:
    """Centre of the reference's labelled box (else the prediction's, else the array's)."""
    for labels in (reference, prediction):
        found = np.nonzero(labels)
        if found[0].size:
            return tuple(int((axis.min() + axis.max()) // 2) for axis in found)
    return tuple(n // 2 for n in reference.shape)


def _slice_position(fixed: int, centre: tuple[int, ...], affine) -> str:
    """'x = +12 mm' for the slice through `centre` along axis `fixed` of a RAS array (its world
    coordinate on that axis), or 'slice 40' without an affine."""
    if affine is None:
        return f"slice {centre[fixed]}"
    world = float(np.asarray(affine)[fixed, :3] @ np.asarray(centre, float) + np.asarray(affine)[fixed, 3])
    return f"{'xyz'[fixed]} = {world:+.0f} mm"


def _draw_outlines(ax, labels: np.ndarray, colour, linewidth: float) -> None:
    """One contour line around each non-zero label of a 2-D slice (drawn transposed, as shown)."""
    for code in np.unique(labels):
        if code != 0:
            ax.contour((labels == code).T.astype(np.float32), levels=[0.5], colors=[colour],
                       linewidths=linewidth, antialiased=True)


def write_overlay_png(path, image: np.ndarray, reference: np.ndarray, prediction: np.ndarray, title: str,
                      *, spacing=None, affine=None) -> Path:
    """Three orthogonal mid-slices (through the centre of the reference labels, cropped to the labelled
    region) of a 3-D image, with the reference label outlines in cyan (wide) and the predicted ones in
    magenta (thin, on top): where they agree the magenta line runs inside the cyan one. Arrays are
    read as RAS (first axis left->right); spacing (mm per axis) sets the aspect; with the arrays'
    affine, each panel is titled with its slice's world coordinate in mm (else its index)."""
    image = np.squeeze(np.asarray(image, dtype=np.float32))
    reference, prediction = np.asarray(reference), np.asarray(prediction)
    if image.ndim != 3 or image.shape != reference.shape or image.shape != prediction.shape:
        raise ValueError(f"image {image.shape}, reference {reference.shape} and prediction "
                         f"{prediction.shape} must be 3-D arrays of one shape")
    spacing = tuple(float(s) for s in (spacing or (1.0, 1.0, 1.0)))
    centre = _slice_centre(reference, prediction)
    box = _labelled_box(reference, prediction)
    low, high = intensity_window(image[box])
    plt = pyplot()
    from matplotlib.lines import Line2D
    # name, fixed axis, (axis across, axis up), letters (left, right, bottom, top) of a RAS array
    views = (("sagittal", 0, (1, 2), "PAIS"), ("coronal", 1, (0, 2), "LRIS"), ("axial", 2, (0, 1), "LRPA"))
    fig, axes = plt.subplots(1, 3, figsize=(13, 5.0))
    for ax, (name, fixed, (across, up), letters) in zip(axes, views):
        index = list(box)
        index[fixed] = centre[fixed]
        index = tuple(index)
        aspect = spacing[up] / spacing[across]
        ax.imshow(image[index].T, cmap="gray", vmin=low, vmax=high, origin="lower", aspect=aspect,
                  interpolation="nearest")
        _draw_outlines(ax, reference[index], REFERENCE_COLOUR, 2.0)
        _draw_outlines(ax, prediction[index], PREDICTION_COLOUR, 0.8)
        ax.set_title(f"{name}, {_slice_position(fixed, centre, affine)}", fontsize=9)
        for letter, (x, y) in zip(letters, ((0.02, 0.5), (0.98, 0.5), (0.5, 0.02), (0.5, 0.98))):
            ax.text(x, y, letter, transform=ax.transAxes, color="yellow", fontsize=10, fontweight="bold",
                    ha="center", va="center")
        ax.set_axis_off()
    fig.legend(handles=[Line2D([], [], color=REFERENCE_COLOUR, linewidth=2.5, label="reference"),
                        Line2D([], [], color=PREDICTION_COLOUR, linewidth=1.2, label="prediction")],
               loc="lower center", ncol=2, fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return write_bytes_atomic(path, png_bytes(fig, dpi=110))
