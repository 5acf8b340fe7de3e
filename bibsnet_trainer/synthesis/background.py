"""Unlabelled voxels as extra generation labels: a Gaussian mixture fitted to the intensities of a
real image's background (label 0) splits it into components (air, scalp, skull, neck...), each a
generation label of its own, so synthetic heads get varied textures where the label map is silent.
The darkest component stays background (air). The new codes are extra-cerebral (>= 900): they
shape the image and never appear in the segmentation target."""
from __future__ import annotations

import numpy as np

BACKGROUND_CODE_BASE = 900
MAX_FIT_VOXELS = 200_000


def split_background(image: np.ndarray, labels: np.ndarray, n_components: int, seed: int = 0) -> np.ndarray:
    """Label map with background voxels relabelled 0 (darkest component) or 901, 902, ... by
    increasing mean intensity."""
    from sklearn.mixture import GaussianMixture

    if n_components < 2:
        return labels
    background = labels == 0
    values = np.asarray(image, dtype=np.float64)[background]
    if values.size < 10 * n_components:
        return labels
    rng = np.random.default_rng(seed)
    fit_on = values if values.size <= MAX_FIT_VOXELS else rng.choice(values, MAX_FIT_VOXELS, replace=False)
    mixture = GaussianMixture(n_components, random_state=seed).fit(fit_on[:, None])
    rank = np.argsort(np.argsort(mixture.means_.ravel()))      # component -> brightness rank
    component_rank = rank[mixture.predict(values[:, None])]
    out = np.array(labels, copy=True)
    out[background] = np.where(component_rank == 0, 0, BACKGROUND_CODE_BASE + component_rank)
    return out
