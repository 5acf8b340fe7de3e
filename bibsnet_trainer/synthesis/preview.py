"""A PNG grid of synthetic samples: three orthogonal mid-slices of each image with the outlines
of its target labels, so a user sees at a glance whether synthesis is sensible."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _views(volume: np.ndarray) -> list[np.ndarray]:
    """Sagittal, coronal, axial mid-slices of a RAS-ordered volume, oriented for display; a 2D
    patch (a 2D configuration's slice) is its own single view."""
    if volume.ndim == 2:
        return [np.rot90(volume)]
    x, y, z = (s // 2 for s in volume.shape)
    return [np.rot90(volume[x]), np.rot90(volume[:, y]), np.rot90(volume[:, :, z])]


def write_preview(path: Path, samples: list[tuple[str, np.ndarray, np.ndarray]],
                  title: str = "SYNTHETIC training samples (image, outlines of target labels)") -> Path:
    """samples: (title, image, target) with 3D (or 2D patch) arrays (RAS-ordered for whole volumes; patches are
    shown in their own array order). Writes a PNG atomically, returns its path."""
    from ..images import write_bytes_atomic
    from ..figures import intensity_window, outline, png_bytes, pyplot
    plt = pyplot()

    rows = max(1, len(samples))
    fig, axes = plt.subplots(rows, 3, figsize=(7.5, 2.5 * rows), squeeze=False)
    for row, (name, image, target) in enumerate(samples):
        low, high = intensity_window(image)
        for col, (img2d, lab2d) in enumerate(zip(_views(image), _views(target))):
            ax = axes[row][col]
            ax.imshow(img2d, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
            overlay = np.ma.masked_where(~outline(lab2d), np.ones(lab2d.shape))
            ax.imshow(overlay, cmap="autumn", alpha=0.8, interpolation="nearest")
            ax.set_axis_off()
        for ax in axes[row][len(_views(image)):]:
            ax.set_axis_off()
        axes[row][0].set_title(name, fontsize=8, loc="left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return write_bytes_atomic(path, png_bytes(fig, dpi=100))
