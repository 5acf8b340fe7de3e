"""Random tissue contrasts for real training images (contrast augmentation).

A network trained on real T1w images learns T1w contrast: white matter bright, CSF dark. The
same anatomy with another contrast (a T2w image, an inverted T1w) then fails, although the
shapes are the same. Synthetic images teach contrast invariance from label maps, at the price
of images that look unlike real scans. This transform keeps the real image, its anatomy, noise
and partial volumes, and changes only what each intensity mode is: the contrast augmentation of
Meyer et al. (2021, Frontiers in Neuroscience 15:708196, "A contrast augmentation approach to
improve multi-scanner generalization in MRI"), as cornucopia implements it
(`cornucopia.ContrastMixtureTransform`):

1. a Gaussian mixture with `n_classes` modes is fitted to the head's intensities in the image's
   first channel (`cornucopia.utils.gmm.fit_gmm`, on a random subset of `FIT_VOXELS` voxels).
   Voxels at exactly 0 are not the head: the air, which the air rule sets to 0 and nnU-Net's
   z-score within the head leaves there (`nnunet.background`), and the spatial augmentation's
   padding; they take no part and stay 0;
2. each mode gets a new mean drawn uniformly between the lowest and highest fitted mean, and a
   new spread between the smallest and largest fitted one, so tissues may swap brightness (white
   matter darker than grey matter with CSF brightest happens: a T2w-like look);
3. every voxel is whitened by each mode's fitted Gaussian, coloured by the mode's new one and
   weighted by its posterior (the arithmetic of cornucopia's `ContrastMixtureFinalTransform`,
   written out for one channel: cornucopia's general form, with a K x C x C matrix product
   per voxel, took 80 ms per 96 x 96 patch of five channels on one core, this 15-30 ms);
4. the head is rescaled to the mean and standard deviation it had, so nnU-Net's later
   intensity augmentation sees the range it expects.

The neighbouring slices of a 2.5D input (`nnunet.context`) are further channels of the same
image: they are mapped by the same mixture and the same new contrast (their posteriors computed
from their own intensities), as they come from one scan at test time. Meant to be given the
channels of one modality (`augmentation.PerChannelGroup`); segmentations are left alone."""
from __future__ import annotations

import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform, ImageOnlyTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.random import RandomTransform

from .augmentation import PerChannelGroup

N_CLASSES = 6   # intensity modes of the head: CSF, grey and white matter, and room for fat, skull and scalp
EM_ITERATIONS = 10
FIT_VOXELS = 2000   # the mixture is fitted to a random subset of the patch's voxels (speed)


def draw_contrast(mu0: torch.Tensor, sd0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """New means and standard deviations (K, 1) for the modes fitted with means `mu0` and
    standard deviations `sd0` (K, 1): uniform within the fitted ranges."""
    u = torch.rand(2, *mu0.shape, dtype=mu0.dtype)
    return mu0.min() + u[0] * (mu0.max() - mu0.min()), sd0.min() + u[1] * (sd0.max() - sd0.min())


def remap_channels(image: torch.Tensor, n_classes: int = N_CLASSES) -> torch.Tensor:
    """`image` (channels, *spatial) with one new random contrast for all its channels, the
    mixture fitted to channel 0 (see the module's docstring). Returned unchanged when the fit
    fails (a patch of one value, a singular mode)."""
    from cornucopia.utils.gmm import fit_gmm, log_likelihood

    x = image.float()
    head = x != 0
    if head.sum() < 2 * n_classes:
        return image
    mean, sd = x[head].mean(), x[head].std()
    if not torch.isfinite(sd) or sd < 1e-6:
        return image
    try:
        _, mu0, sigma0, pi = fit_gmm(x[:1], n_classes, max_iter=EM_ITERATIONS, max_n=FIT_VOXELS)
        sd0 = sigma0[:, :, 0].sqrt()                                                  # (K, 1)
        mu, sd1 = draw_contrast(mu0, sd0)
        # every voxel of every channel: its posteriors under the one fitted mixture, one mapping
        voxels = x.reshape(1, -1)
        z = torch.softmax(log_likelihood(voxels, mu0, sigma0, pi), dim=0)            # (K, voxels)
        out = (z * ((voxels - mu0) / sd0 * sd1 + mu)).sum(0).reshape(x.shape)
    except (RuntimeError, ValueError):   # torch.linalg errors are RuntimeErrors
        return image
    if not torch.isfinite(out).all():
        return image
    out = (out - out[head].mean()) / out[head].std().clamp_min(1e-6) * sd + mean
    out[~head] = 0               # the air (0 after the air rule and nnU-Net's masked z-score) and padding
    return out.to(image.dtype)


class RandomContrastTransform(ImageOnlyTransform):
    """batchgeneratorsv2 transform: `remap_channels` on all channels it is given (wrap it in a
    `RandomTransform` for a probability, and in `augmentation.PerChannelGroup` for one draw per
    modality)."""

    def __init__(self, n_classes: int = N_CLASSES):
        super().__init__()
        self.n_classes = int(n_classes)

    def _apply_to_image(self, img: torch.Tensor, **params) -> torch.Tensor:
        return remap_channels(img, self.n_classes)

    def __repr__(self):
        return f"{type(self).__name__}(n_classes={self.n_classes})"


def with_random_contrast(transforms: BasicTransform, groups: list[list[int]], probability: float,
                         n_classes: int = N_CLASSES) -> BasicTransform:
    """nnU-Net's training transforms with `RandomContrastTransform` right after the spatial
    augmentation (before noise, blur, brightness, contrast, low resolution and gamma), applied to
    each modality's channels (`groups`) with `probability`, one draw per modality. Unchanged when
    `probability` is 0 or the transforms are not a list."""
    if probability <= 0 or not isinstance(transforms, ComposeTransforms):
        return transforms
    steps = list(transforms.transforms)
    first_intensity = next((i for i, t in enumerate(steps) if isinstance(t, RandomTransform)), len(steps))
    remap = PerChannelGroup(RandomTransform(RandomContrastTransform(n_classes), apply_probability=probability), groups)
    return ComposeTransforms(steps[:first_intensity] + [remap] + steps[first_intensity:])
