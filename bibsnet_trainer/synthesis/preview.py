"""A PNG grid of synthetic samples: three orthogonal slices through the middle of each image
(`reports.figures.orthogonal_slices`: the one convention of every figure, with letters) with the
outlines of its target labels, each label in its own colour (the QC report's: Left-* warm, Right-*
cool, midline violet/white), so a user sees at a glance whether synthesis is sensible."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_preview(path: Path, samples: list[tuple[str, np.ndarray, np.ndarray]],
                  title: str = "SYNTHETIC training samples: image and target-label outlines "
                               "(Left-* warm, Right-* cool, midline violet/white)",
                  *, ras: bool = True) -> Path:
    """samples: (title, image, target) with 3D (or 2D patch) arrays, targets in FreeSurfer codes.
    With `ras`, 3D arrays are in RAS voxel order (whole volumes as written for nnU-Net) and panels
    carry anatomical letters; without, their order is unknown (a network's patches) and panels are
    named by array axis. 2D patches are shown in their own array order. Writes a PNG atomically,
    returns its path."""
    from ..images import write_bytes_atomic
    from ..reports.figures import Overlay, label_colours, orthogonal_slices, png_bytes, pyplot
    plt = pyplot()
    colours = label_colours()

    rows = max(1, len(samples))
    fig, axes = plt.subplots(rows, 3, figsize=(7.5, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for row, (name, image, target) in enumerate(samples):
        orthogonal_slices(image, Overlay(np.asarray(target).astype(np.int64), colours), crop=False,
                          anatomical=ras, axes=axes[row:row + 1], row_label=name, dpi=100)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_size_inches()[1]))   # room for the title
    return write_bytes_atomic(path, png_bytes(fig, dpi=100))
