"""The air around the head set to exactly 0, before nnU-Net sees an image (training and prediction).

nnU-Net crops every image to its non-zero voxels and, when that crop removes much of the volume,
normalises intensities over those voxels only (`use_mask_for_norm`). FreeSurfer's T1.mgz, the
usual training image, has exactly 0 outside the head, so a model trained on it learns that
normalisation; a raw scan has noise in the air, nothing is cropped, the mean and spread come from
the whole field of view, and the network sees other intensities than in training (measured on held-out
real scans with 2 % noise added: benchmarks/README.md, "The air around the head"). Setting the
air to 0 in both
training and prediction gives every image the same normalisation, whatever its background.

Air: voxels whose smoothed intensity is at most `AIR_FRACTION` of the image's 99.5th percentile
and that connect to the border of the volume; dark tissue inside the head (skull, CSF) is not
connected to the outside through such voxels and stays. Pure numpy/scipy; models say whether
they were trained so (`DATASET_KEY` in their dataset.json, read by `model_input`; a model
without the key was not)."""
from __future__ import annotations

import numpy as np

DATASET_KEY = "air_zeroed"
AIR_FRACTION = 0.05     # of the 99.5th percentile of the smoothed image
SMOOTHING_VOXELS = 1.0  # Gaussian sigma before thresholding: noise must not break the air into pieces


def air_mask(data: np.ndarray, fraction: float = AIR_FRACTION, sigma: float = SMOOTHING_VOXELS) -> np.ndarray:
    """Boolean mask of the air: dark voxels (smoothed) connected to the border of the volume."""
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(np.asarray(data, dtype=np.float32), sigma)
    ceiling = float(np.percentile(smooth, 99.5))
    if ceiling <= 0:
        return np.zeros(data.shape, dtype=bool)
    regions, _ = ndimage.label(smooth <= fraction * ceiling)
    faces = [regions.take(i, axis=a) for a in range(regions.ndim) for i in (0, -1)]
    touching = np.unique(np.concatenate([f.ravel() for f in faces]))
    return np.isin(regions, touching[touching > 0])


def with_air_zeroed(data: np.ndarray) -> np.ndarray:
    """`data` (float32) with its air (`air_mask`) set to 0; the input is not changed."""
    out = np.array(data, dtype=np.float32, copy=True)
    out[air_mask(out)] = 0.0
    return out
