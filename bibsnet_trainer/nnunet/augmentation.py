"""nnU-Net's intensity augmentation, made consistent across the slices of one image (2.5D input).

nnU-Net treats every input channel as a modality of its own: brightness, contrast, gamma, blur
and simulated low resolution draw their parameters for each channel independently
(`synchronize_channels=False`, and blur and low resolution pick each channel with probability
`p_per_channel`). With neighbouring slices as channels (`nnunet.context`) that teaches the
network something false: at test time the slices above and below come from the same image, with
the same contrast, while in training about 70 % of samples had them changed differently from
the centre slice.

`by_modality` rebuilds those transforms so that every modality's channels (the image itself and
its shifted copies) share one draw: the transform is applied to each modality's group of
channels as one (synchronised, every channel of the group), with the probability a single
channel had in nnU-Net (`apply_probability * p_per_channel`), independently per modality, as
nnU-Net does for separate modalities. Spatial transforms already treat all channels alike.
Without context channels nothing changes (`channel_groups` gives one channel per group)."""
from __future__ import annotations

import copy

from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.random import RandomTransform


def channel_groups(n_channels: int, offsets_mm) -> list[list[int]]:
    """The channels of each modality, in the order `context.channel_names` writes them: the
    modalities first (offset 0), then every modality at each non-zero offset."""
    n_offsets = len(offsets_mm)
    if n_offsets < 1 or n_channels % n_offsets:
        raise ValueError(f"{n_channels} channels do not split into {n_offsets} slice offsets")
    n_modalities = n_channels // n_offsets
    return [[m + k * n_modalities for k in range(n_offsets)] for m in range(n_modalities)]


class PerChannelGroup(BasicTransform):
    """Applies `transform` to each group of image channels on its own, as if the group were the
    whole image (a fresh draw of its parameters per group); segmentations are left alone."""

    def __init__(self, transform: BasicTransform, groups: list[list[int]]):
        super().__init__()
        self.transform = transform
        self.groups = [list(g) for g in groups]

    def apply(self, data_dict: dict, **params) -> dict:
        image = data_dict.get("image")
        if image is None:
            return data_dict
        for group in self.groups:
            image[group] = self.transform(image=image[group])["image"]
        data_dict["image"] = image
        return data_dict

    def __repr__(self):
        return f"{type(self).__name__}(groups={self.groups}, transform={self.transform})"


def _synchronised(random_transform: RandomTransform) -> RandomTransform:
    """`random_transform` with its inner transform acting on all channels it is given alike."""
    inner = copy.copy(random_transform.transform)
    inner.synchronize_channels = True
    p_channel = float(getattr(inner, "p_per_channel", 1.0))
    if hasattr(inner, "p_per_channel"):
        inner.p_per_channel = 1.0
    return RandomTransform(inner, apply_probability=random_transform.apply_probability * p_channel)


def by_modality(transforms: BasicTransform, groups: list[list[int]]) -> BasicTransform:
    """nnU-Net's training transforms with every per-channel intensity transform applied per
    modality group (see the module's docstring). Unchanged when every group is one channel."""
    if all(len(g) == 1 for g in groups) or not isinstance(transforms, ComposeTransforms):
        return transforms
    rebuilt = []
    for t in transforms.transforms:
        if isinstance(t, RandomTransform) and hasattr(t.transform, "synchronize_channels"):
            t = PerChannelGroup(_synchronised(t), groups)
        rebuilt.append(t)
    return ComposeTransforms(rebuilt)
