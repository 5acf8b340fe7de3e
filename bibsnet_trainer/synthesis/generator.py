"""Synthetic image/label pairs from a FreeSurfer label map, on any torch device, with cornucopia.

Generation labels are made contiguous before cornucopia sees them (its Gaussian mixture loops
over every value up to the maximum). Each channel (T1w, T2w) draws its own random contrast from
the same deformed label map, so multi-channel samples stay aligned. The segmentation target is the
deformed label map with extra-cerebral codes dropped and SynthSeg's merges applied
(`labels.target_code`).
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from importlib import resources

import numpy as np
import torch

from ..labels import EXTRA_CEREBRAL_MIN, mirror_codes, target_code
from .gmm import FastGaussianMixtureTransform


@dataclass
class SynthesisConfig:
    """Parameters of the generative model (cornucopia names); recorded with every model."""

    samples_per_map: int = 2
    seed: int = 0
    skull_strip_probability: float = 0.25   # chance that extra-cerebral labels are erased
    rotation: float = 15.0                   # degrees
    zooms: float = 0.15
    elastic: float = 0.05                    # fraction of the field of view
    bias_strength: float = 0.5
    gamma: float = 0.6
    gmm_fwhm: float = 3.0                    # texture smoothing, voxels
    motion_fwhm: float = 2.0
    max_slice_mm: float = 6.0                # thickest simulated slice / coarsest resolution
    snr: float = 10.0
    texture_bins: int = 3                    # 0: cornucopia's own per-class Gaussian mixture
    flip_probability: float = 0.5            # left-right flip, with left and right labels swapped
    intensity_classes: str | None = "synthseg"   # codes sharing a class share a Gaussian (None: one each)

    def as_dict(self) -> dict:
        return asdict(self)


def intensity_classes(preset: str | None) -> dict[int, int] | None:
    """FreeSurfer code -> intensity class, from a preset in package data (None: no sharing)."""
    if preset is None:
        return None
    text = resources.files("bibsnet_trainer.data").joinpath(f"{preset}_generation_classes.json").read_text()
    return {int(code): int(cls) for code, cls in json.loads(text)["classes"].items()}


def _seed_everything(seed: int) -> None:
    """cornucopia draws from the global Python and torch generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class LabelSynthesizer:
    """Draws (images, target) pairs from one label map; `n_channels` contrasts per sample."""

    def __init__(self, config: SynthesisConfig, *, n_channels: int = 1, voxel_mm: float = 1.0,
                 device: str | torch.device = "cpu"):
        import cornucopia as cc

        self.config = config
        self.n_channels = n_channels
        self.device = torch.device(device)
        resolution = max(1.0, config.max_slice_mm / max(voxel_mm, 1e-3))
        common = dict(gmm_fwhm=config.gmm_fwhm, bias_strength=config.bias_strength, gamma=config.gamma,
                      motion_fwhm=config.motion_fwhm, resolution=resolution, snr=config.snr)
        self._first = cc.SynthFromLabelTransform(
            rotation=config.rotation, zooms=config.zooms, elastic=config.elastic,
            returns=["image", "deformed"], **common)
        self._extra = cc.SynthFromLabelTransform(geom=False, returns=["image"], **common)
        if config.texture_bins:  # cornucopia's per-class texture loop -> a few smoothing passes
            for synth in (self._first, self._extra):
                synth.gmm = FastGaussianMixtureTransform(fwhm=config.gmm_fwhm, n_bins=config.texture_bins)
        self.classes = intensity_classes(config.intensity_classes) if config.texture_bins else None

    def _class_of(self, codes: np.ndarray) -> np.ndarray:
        """Intensity class of each generation label; codes without a class get one of their own."""
        known = self.classes
        fresh = max(known.values(), default=-1) + 1
        out = []
        for code in codes:
            if int(code) in known:
                out.append(known[int(code)])
            else:
                out.append(fresh)
                fresh += 1
        out = np.asarray(out)
        return np.unique(out, return_inverse=True)[1].reshape(-1)   # contiguous, background first

    def sample(self, label_codes: np.ndarray, seed: int, lr_axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return images [C, X, Y, Z] float32 in [0, 1] and the target label map (FreeSurfer codes).

        lr_axis: the array axis running left-right; with it, samples are flipped at random along
        that axis with Left-*/Right-* codes swapped, so anatomy and labels stay consistent."""
        _seed_everything(seed)
        if lr_axis is not None and random.random() < self.config.flip_probability:
            label_codes = mirror_codes(np.flip(label_codes, axis=lr_axis))
        codes, generation = np.unique(label_codes, return_inverse=True)
        generation = generation.reshape(label_codes.shape)
        if random.random() < self.config.skull_strip_probability:
            erased = np.flatnonzero(codes >= EXTRA_CEREBRAL_MIN)
            generation[np.isin(generation, erased)] = 0 if codes[0] == 0 else generation.min()
        labels = torch.as_tensor(generation[None], dtype=torch.long, device=self.device)
        if self.classes is not None:
            classes = torch.as_tensor(self._class_of(codes), device=self.device)
            for synth in (self._first, self._extra):
                synth.gmm.classes = classes
        # torch.device as a context: cornucopia 0.5.1 builds some tensors on the default device
        with torch.no_grad(), self.device:
            image, deformed = self._first(labels)
            channels = [image]
            for _ in range(self.n_channels - 1):
                channels.append(self._extra(deformed)[0])
        images = torch.cat([_rescale(c) for c in channels]).float().cpu().numpy()
        to_target = np.array([target_code(c) for c in codes], dtype=np.int32)
        target = to_target[deformed[0].long().cpu().numpy()]
        return images, target


def _rescale(image: torch.Tensor) -> torch.Tensor:
    low, high = image.min(), image.max()
    return (image - low) / (high - low).clamp_min(1e-6)
