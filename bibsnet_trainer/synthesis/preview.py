"""A PNG grid of synthetic samples: three orthogonal mid-slices of each image with the outlines
of its target labels, each label in its own colour (the QC report's: Left-* warm, Right-* cool,
midline violet/white), so a user sees at a glance whether synthesis is sensible."""
from __future__ import annotations

from pathlib import Path

import numpy as np

VIEW_TITLES = ("sagittal", "coronal", "axial")


def _views(volume: np.ndarray) -> list[np.ndarray]:
    """Sagittal, coronal, axial mid-slices of a RAS-ordered volume, oriented for display; a 2D
    patch (a 2D configuration's slice) is its own single view."""
    if volume.ndim == 2:
        return [np.rot90(volume)]
    x, y, z = (s // 2 for s in volume.shape)
    return [np.rot90(volume[x]), np.rot90(volume[:, y]), np.rot90(volume[:, :, z])]


def write_preview(path: Path, samples: list[tuple[str, np.ndarray, np.ndarray]],
                  title: str = "SYNTHETIC training samples: image and target-label outlines "
                               "(Left-* warm, Right-* cool, midline violet/white)") -> Path:
    """samples: (title, image, target) with 3D (or 2D patch) arrays, targets in FreeSurfer codes (RAS-ordered for whole volumes; patches are
    shown in their own array order). Writes a PNG atomically, returns its path."""
    from ..images import write_bytes_atomic
    from ..reports.figures import intensity_window, label_colours, overlay_rgba, png_bytes, pyplot
    plt = pyplot()
    colours = label_colours()

    rows = max(1, len(samples))
    fig, axes = plt.subplots(rows, 3, figsize=(7.5, 2.5 * rows), squeeze=False)
    for row, (name, image, target) in enumerate(samples):
        low, high = intensity_window(image)
        for col, (img2d, lab2d) in enumerate(zip(_views(image), _views(target))):
            ax = axes[row][col]
            ax.imshow(img2d, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
            ax.imshow(overlay_rgba(np.asarray(lab2d).astype(np.int64), colours, 1), interpolation="nearest")
            ax.set_axis_off()
            if row == 0 and image.ndim == 3:
                ax.set_title(VIEW_TITLES[col], fontsize=8)
        for ax in axes[row][len(_views(image)):]:
            ax.set_axis_off()
        axes[row][0].text(-0.04, 0.5, name, fontsize=7, rotation=90, ha="right", va="center",
                          transform=axes[row][0].transAxes)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_size_inches()[1]))   # room for the title
    return write_bytes_atomic(path, png_bytes(fig, dpi=100))

