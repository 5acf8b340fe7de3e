"""Synthetic image/label pairs from a FreeSurfer label map, on any torch device, with cornucopia.

Generation labels are made contiguous before cornucopia sees them (its Gaussian mixture loops
over every value up to the maximum). Labels of one intensity class share one Gaussian, whose mean
and sd are drawn from that class's priors (`priors.py`) for each channel. Each channel (T1w, T2w)
draws its own contrast from its own priors on the same deformed label map, so multi-channel
samples stay aligned. The segmentation target is the
deformed label map with extra-cerebral codes dropped and SynthSeg's merges applied
(`labels.target_code`).

The air (background voxels connected to the border of the volume) is set to 0 in every
channel (`zero_air`), as the air rule sets a real scan's air to 0 before nnU-Net sees it
(`nnunet.background`): otherwise a synthetic brain floats in a random uniform intensity that
no scan at prediction has, and nnU-Net crops and normalises synthetic and real cases
differently (benchmarks/README.md, "Synthetic images against real ones").
"""
from __future__ import annotations

import functools
import random

import numpy as np
import torch

from ..config import SynthesisConfig
from ..labels import EXTRA_CEREBRAL_MIN, mirror_lut, target_code
from .gmm import FastGaussianMixtureTransform
from .priors import IntensityPriors, load_priors
from .smoothing import lean_cornucopia_smoothing


def configured_priors(config: SynthesisConfig) -> IntensityPriors:
    """The priors a config names. `estimated` priors come from a dataset (dataset_priors.py) and
    are passed per sample; without them, SynthSeg's uniform defaults stand in."""
    return load_priors("uniform" if config.priors == "estimated" else config.priors, config.intensity_classes)


def _seed_everything(seed: int) -> None:
    """cornucopia draws from the global Python and torch generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_resolution(intensity, config: SynthesisConfig, voxel_mm: float) -> None:
    """In a cornucopia IntensityTransform, which switches between thick slices (along a random
    axis, partial volume across the slice) and isotropic low resolution with equal odds, set both
    bounds (config's mm over the voxel size) and the odds."""
    import cornucopia as cc
    switch = next((t for t in intensity.transforms if isinstance(t, cc.SwitchTransform)), None)
    if switch is None:
        return
    noise = switch.transforms[0].sample.get("noise")
    slice_factor = max(1.0, config.max_slice_mm / voxel_mm)
    iso_factor = max(1.0, config.max_iso_mm / voxel_mm)
    switch.transforms = [cc.RandomLowResSliceTransform(slice_factor, noise=noise),
                         cc.RandomLowResTransform(iso_factor, noise=noise)]
    p = min(max(config.thick_slice_probability, 0.0), 1.0)
    switch.prob = [p, 1.0 - p] if 0 < p < 1 else ([1.0, 0.0] if p >= 1 else [0.0, 1.0])


class LabelSynthesizer:
    """Draws (images, target) pairs from one label map; one contrast per channel (T1w, T2w...),
    each from that channel's intensity priors."""

    def __init__(self, config: SynthesisConfig, *, channels: list[str] | None = None, n_channels: int = 1,
                 voxel_mm: float = 1.0, device: str | torch.device = "cpu", priors: IntensityPriors | None = None):
        import cornucopia as cc

        self.config = config
        self.channels = list(channels) if channels else [f"channel{i}" for i in range(n_channels)]
        self.n_channels = len(self.channels)
        self.device = torch.device(device)
        self.priors = priors or configured_priors(config)
        common = dict(gmm_fwhm=config.gmm_fwhm, bias_strength=config.bias_strength, gamma=config.gamma,
                      motion_fwhm=config.motion_fwhm, resolution=2.0, snr=config.snr, order=config.field_order)
        self._first = cc.SynthFromLabelTransform(
            rotation=config.rotation, zooms=config.zooms, shears=config.shears, elastic=config.elastic,
            returns=["image", "deformed"], **common)
        self._extra = cc.SynthFromLabelTransform(geom=False, returns=["image"], **common)
        for synth in (self._first, self._extra):
            set_resolution(synth.intensity, config, voxel_mm)
            if config.texture_bins:  # cornucopia's per-class texture loop -> a few smoothing passes
                synth.gmm = FastGaussianMixtureTransform(fwhm=config.gmm_fwhm, n_bins=config.texture_bins)

    def sample(self, label_codes: np.ndarray, seed: int, lr_axis: int | None = None,
               priors: IntensityPriors | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return images [C, X, Y, Z] float32 in [0, 1] and the target label map (FreeSurfer codes).

        lr_axis: the array axis running left-right; with it, samples are flipped at random along
        that axis with Left-*/Right-* codes swapped, so anatomy and labels stay consistent.
        priors: this sample's intensity priors (e.g. those of its age bin) instead of the default."""
        priors = priors or self.priors
        _seed_everything(seed)
        flip = lr_axis is not None and random.random() < self.config.flip_probability
        strip = random.random() < self.config.skull_strip_probability
        # label bookkeeping on the device through lookup tables (np.unique alone took ~0.2 s
        # of a 160^3 volume on the CPU, more than the GPU needs for a whole sample)
        label_codes = torch.as_tensor(np.ascontiguousarray(label_codes), device=self.device).long()
        if flip:
            label_codes = _mirror_lut(int(label_codes.max()), self.device)[label_codes.flip(lr_axis)]
        present = torch.bincount(label_codes.flatten()).nonzero()[:, 0]
        codes = present.cpu().numpy()
        to_generation = torch.zeros(int(codes[-1]) + 1, dtype=torch.long, device=self.device)
        to_generation[present] = torch.arange(len(present), device=self.device)
        if strip:  # extra-cerebral labels erased into the first label (background)
            to_generation[present[present >= EXTRA_CEREBRAL_MIN]] = 0
        labels = to_generation[label_codes][None]
        # torch.device as a context: cornucopia 0.5.1 builds some tensors on the default device
        with torch.no_grad(), self.device, lean_cornucopia_smoothing():
            channels = []
            for index, name in enumerate(self.channels):
                synth = self._first if index == 0 else self._extra
                if self.config.texture_bins:
                    synth.gmm.class_params = priors.draw(name, codes, device=self.device)
                if index == 0:
                    image, deformed = synth(labels)
                else:
                    image = synth(deformed)[0]
                channels.append(image)
            images = torch.cat([_rescale(c) for c in channels]).float().cpu().numpy()
            if self.config.zero_air:
                images[:, air_of(deformed[0].cpu().numpy())] = 0.0
            to_target = torch.as_tensor([target_code(c) for c in codes], dtype=torch.int32, device=self.device)
            target = to_target[deformed[0].long()].cpu().numpy()
        return images, target


@functools.cache
def _mirror_lut(max_code: int, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(mirror_lut(max_code), dtype=torch.long, device=device)


def air_of(generation_labels: np.ndarray) -> np.ndarray:
    """Boolean mask of a label map's air: background (0) voxels connected to the border of the
    volume (cavities labelled 0 inside the head are not air)."""
    from scipy import ndimage

    regions, _ = ndimage.label(generation_labels == 0)
    faces = [regions.take(i, axis=a) for a in range(regions.ndim) for i in (0, -1)]
    touching = np.unique(np.concatenate([f.ravel() for f in faces]))
    return np.isin(regions, touching[touching > 0])


def _rescale(image: torch.Tensor) -> torch.Tensor:
    low, high = image.min(), image.max()
    return (image - low) / (high - low).clamp_min(1e-6)
