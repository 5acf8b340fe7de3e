"""Unlabelled voxels as extra generation labels: a Gaussian mixture fitted to the intensities of a
real image's background (label 0) splits it into components (air, scalp, skull, neck...), each a
generation label of its own, so synthetic heads get varied textures where the label map is silent.
The air stays background (0): given the air as the air rule finds it in the real image
(`nnunet.background.air_mask`), exactly those voxels, and the mixture is fitted to the rest of the
background (the head around the labels) with one component fewer; without it, the darkest
component. Synthetic air is then the real scan's air whatever its noise (a mixture fitted to a noisy
air alone splits the air into bands of noise, and most of it would get a tissue texture). The new
codes are extra-cerebral (>= 900): they shape the image and never appear in the segmentation target."""
from __future__ import annotations

import numpy as np

BACKGROUND_CODE_BASE = 900
MAX_FIT_VOXELS = 200_000


def split_background(image: np.ndarray, labels: np.ndarray, n_components: int, seed: int = 0,
                     air: np.ndarray | None = None) -> np.ndarray:
    """Label map with background voxels relabelled 0 (the air) or 901, 902, ... by increasing
    mean intensity. n_components counts the air: 3 is air and two head components."""
    from sklearn.mixture import GaussianMixture

    if n_components < 2:
        return labels
    out = np.array(labels, copy=True)
    background = labels == 0
    if air is not None:
        background &= ~air
        n_components -= 1
    values = np.asarray(image, dtype=np.float64)[background]
    if values.size < 10 * n_components:
        return out
    rng = np.random.default_rng(seed)
    fit_on = values if values.size <= MAX_FIT_VOXELS else rng.choice(values, MAX_FIT_VOXELS, replace=False)
    mixture = GaussianMixture(n_components, random_state=seed).fit(fit_on[:, None])
    rank = np.argsort(np.argsort(mixture.means_.ravel()))      # component -> brightness rank
    component_rank = rank[mixture.predict(values[:, None])]
    if air is not None:      # the air is given: every component is head, the darkest is 901
        out[background] = BACKGROUND_CODE_BASE + 1 + component_rank
    else:
        out[background] = np.where(component_rank == 0, 0, BACKGROUND_CODE_BASE + component_rank)
    return out
