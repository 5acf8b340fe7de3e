"""Brain mask from a segmentation: every brain label, holes filled, largest connected component."""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def brain_mask(segmentation: np.ndarray) -> np.ndarray:
    """uint8 mask of the largest 26-connected component of all non-zero labels, holes filled."""
    foreground = segmentation > 0
    if not foreground.any():
        return foreground.astype(np.uint8)
    components, count = ndimage.label(foreground, structure=np.ones((3, 3, 3)))
    if count > 1:
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        foreground = components == sizes.argmax()
    foreground = ndimage.binary_closing(foreground, structure=np.ones((3, 3, 3)), iterations=1) | foreground
    return ndimage.binary_fill_holes(foreground).astype(np.uint8)
