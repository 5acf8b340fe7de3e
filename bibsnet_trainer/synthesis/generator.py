"""Synthetic image/label pairs from a FreeSurfer label map, on any torch device, with cornucopia.

Generation labels are made contiguous before cornucopia sees them (its Gaussian mixture loops
over every value up to the maximum). Each channel (T1w, T2w) draws its own random contrast from
the same deformed label map, so multi-channel samples stay aligned. The segmentation target is the
deformed label map with extra-cerebral codes dropped and SynthSeg's merges applied
(`labels.target_code`).
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..labels import EXTRA_CEREBRAL_MIN, target_code


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

    def as_dict(self) -> dict:
        return asdict(self)


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

    def sample(self, label_codes: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Return images [C, X, Y, Z] float32 in [0, 1] and the target label map (FreeSurfer codes)."""
        _seed_everything(seed)
        codes, generation = np.unique(label_codes, return_inverse=True)
        generation = generation.reshape(label_codes.shape)
        if random.random() < self.config.skull_strip_probability:
            erased = np.flatnonzero(codes >= EXTRA_CEREBRAL_MIN)
            generation[np.isin(generation, erased)] = 0 if codes[0] == 0 else generation.min()
        labels = torch.as_tensor(generation[None], dtype=torch.long, device=self.device)
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
