"""The Dice report's figures: the box plot of Dice per label, and the overlay of a case's reference and
prediction in three planes."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..images import write_bytes_atomic
from ..reports.figures import Overlay, orthogonal_slices, png_bytes, pyplot
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


def write_overlay_png(path, image: np.ndarray, reference: np.ndarray, prediction: np.ndarray, title: str,
                      *, spacing=None, affine=None) -> Path:
    """Three orthogonal slices (through the centre of the reference labels, cropped to the labelled
    region; `orthogonal_slices`, its convention and letters) of a 3-D image, with the reference label
    outlines in cyan (wide) and the predicted ones in magenta (thin, on top): where they agree the
    magenta line runs along the cyan band. Arrays without `affine` are read as RAS (first axis
    left->right) with voxel sizes `spacing`; with the arrays' affine, each panel is titled with its
    slice's world coordinate in mm (else its index)."""
    image = np.squeeze(np.asarray(image, dtype=np.float32))
    reference, prediction = np.asarray(reference), np.asarray(prediction)
    if image.ndim != 3 or image.shape != reference.shape or image.shape != prediction.shape:
        raise ValueError(f"image {image.shape}, reference {reference.shape} and prediction "
                         f"{prediction.shape} must be 3-D arrays of one shape")
    from matplotlib.lines import Line2D
    fig = orthogonal_slices(image, (Overlay(reference, REFERENCE_COLOUR, width=3),
                                    Overlay(prediction, PREDICTION_COLOUR, width=1)),
                            affine=affine, spacing=spacing, size=(13, 5.0), dpi=110)
    fig.legend(handles=[Line2D([], [], color=REFERENCE_COLOUR, linewidth=2.5, label="reference"),
                        Line2D([], [], color=PREDICTION_COLOUR, linewidth=1.2, label="prediction")],
               loc="lower center", ncol=2, fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return write_bytes_atomic(path, png_bytes(fig, dpi=110))
