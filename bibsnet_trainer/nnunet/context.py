"""Neighbouring slices as extra input channels (2.5D input, as FastSurfer's networks take).

A 2D nnU-Net configuration sees one axial slice at a time. Giving it the slices above and below
as extra channels lets it tell small structures apart (choroid plexus, inferior lateral
ventricles, corpus callosum) from what lies next to them, at the cost of a few input channels.
nnU-Net needs no change for this: every channel of a case is an image on the same grid, and its
2D data loader and predictor take the same slice of every channel.

Offsets are physical (mm), so a model trained on 2 mm slices sees the same context on a 1 mm
scan: channel k of the slice at height z is the image at z + offset_k, interpolated linearly
along the inferior-superior axis (edges repeat the outermost slice). Images are in canonical RAS
voxel order, so that axis is array axis 2. Channels: every modality as it is (in the order of the
modalities, as without context), then every modality at each non-zero offset."""
from __future__ import annotations

import numpy as np

SUPERIOR_AXIS = 2   # of an image in canonical RAS voxel order
DATASET_KEY = "slice_context_mm"   # dataset.json: the offsets, a model without it has none


def offsets(slices_each_side: int, spacing_mm: float) -> tuple[float, ...]:
    """(0, -d, +d, -2d, +2d, ...) in mm for `slices_each_side` slices of `spacing_mm` each side."""
    offsets = [0.0]
    for k in range(1, slices_each_side + 1):
        offsets += [-k * float(spacing_mm), k * float(spacing_mm)]
    return tuple(round(o, 4) for o in offsets)


def channel_names(modalities: list[str], offsets_mm: tuple[float, ...]) -> list[str]:
    """nnU-Net channel names: the modalities, then each modality at each non-zero offset."""
    shifted = [f"{m} {o:+g}mm" for o in offsets_mm if o != 0 for m in modalities]
    return list(modalities) + shifted


def shifted_slices(data: np.ndarray, offset_mm: float, voxel_mm: float, axis: int = SUPERIOR_AXIS) -> np.ndarray:
    """The volume whose slice z holds the image at height z + offset_mm along `axis` (the superior
    axis of canonical RAS data by default)."""
    from scipy import ndimage

    if offset_mm == 0:
        return data
    shift = -float(offset_mm) / float(voxel_mm)
    steps = [0.0] * data.ndim
    steps[axis] = shift
    if float(shift).is_integer():   # the common case (offsets a multiple of the voxel): exact and fast
        index = np.clip(np.arange(data.shape[axis]) - int(shift), 0, data.shape[axis] - 1)
        return np.take(data, index, axis=axis)
    return ndimage.shift(data, steps, order=1, mode="nearest")


def with_context(channels: list[np.ndarray], voxel_mm: float, offsets_mm: tuple[float, ...],
                 axis: int = SUPERIOR_AXIS) -> list[np.ndarray]:
    """The input channels of a model with `offsets_mm`: `channels` (one per modality, slice
    thickness `voxel_mm` along `axis`: canonical RAS by default) then their shifted copies."""
    shifted = [shifted_slices(c, o, voxel_mm, axis) for o in offsets_mm if o != 0 for c in channels]
    return list(channels) + shifted


def input_channels(canonical_images: list, offsets_mm: tuple[float, ...], zero_air: bool = False) -> list[np.ndarray]:
    """The model's input channels from images in canonical RAS voxel order (one per modality, on
    one grid): their data as float32 (the air set to 0 for models trained so: `background`), then
    the shifted copies (`with_context`)."""
    from .background import with_air_zeroed

    voxel = float(canonical_images[0].header.get_zooms()[SUPERIOR_AXIS])
    data = [np.asarray(img.dataobj, dtype=np.float32) for img in canonical_images]
    return with_context([with_air_zeroed(d) for d in data] if zero_air else data, voxel, offsets_mm)
