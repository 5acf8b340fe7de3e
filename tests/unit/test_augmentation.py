"""Intensity augmentation per modality for 2.5D input (nnunet/augmentation.py): a slice and its
neighbours get one contrast, modalities each their own, as nnU-Net draws for separate images."""
import pytest
import torch
from batchgeneratorsv2.transforms.intensity.gaussian_noise import GaussianNoiseTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.random import RandomTransform
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from bibsnet_trainer.nnunet import context
from bibsnet_trainer.nnunet.augmentation import PerChannelGroup, by_modality, channel_groups
from bibsnet_trainer.nnunet.model_input import ModelInput
from bibsnet_trainer.labels import LabelTable


def test_channel_groups_follow_the_channel_order_of_the_dataset():
    names = context.channel_names(["T1w", "T2w"], (0.0, -2.0, 2.0))
    groups = channel_groups(len(names), (0.0, -2.0, 2.0))
    assert [[names[i] for i in g] for g in groups] == [["T1w", "T1w -2mm", "T1w +2mm"],
                                                      ["T2w", "T2w -2mm", "T2w +2mm"]]
    assert channel_groups(1, (0.0,)) == [[0]]
    with pytest.raises(ValueError, match="5 channels"):
        channel_groups(5, (0.0, -2.0, 2.0))


def nnunet_2d_transforms():
    return nnUNetTrainer.get_training_transforms((48, 48), (-0.5, 0.5), None, (0,), False)


def intensity_only(transforms: ComposeTransforms) -> ComposeTransforms:
    """The per-channel intensity transforms of a composition (its noise, spatial and label
    transforms left out: noise differs voxel by voxel whatever the channel)."""
    def inner(t):
        return t.transform.transform if isinstance(t, PerChannelGroup) else t.transform
    return ComposeTransforms([t for t in transforms.transforms
                              if isinstance(t, (RandomTransform, PerChannelGroup))
                              and hasattr(inner(t), "synchronize_channels")
                              and not isinstance(inner(t), GaussianNoiseTransform)])


def draws(transforms, n_channels: int, n: int = 150):
    torch.manual_seed(0)
    base = torch.rand(1, 48, 48) + 0.5
    for _ in range(n):
        yield transforms(image=base.repeat(n_channels, 1, 1).clone())["image"]


def test_nnunet_changes_neighbouring_slices_differently_and_by_modality_does_not():
    groups = channel_groups(6, (0.0, -2.0, 2.0))          # two modalities, 3 slices each
    theirs = intensity_only(nnunet_2d_transforms())
    ours = intensity_only(by_modality(nnunet_2d_transforms(), groups))
    assert len(ours.transforms) == len(theirs.transforms) >= 5

    def split(images):
        within = across = 0
        for image in images:
            within += any(not torch.allclose(image[g[0]], image[c]) for g in groups for c in g[1:])
            across += not torch.allclose(image[0], image[1])
        return within, across

    within, _ = split(draws(theirs, 6))
    assert within > 50          # nnU-Net: most samples change a slice's neighbours unlike the slice
    within, across = split(draws(ours, 6))
    assert within == 0          # ours: never within one modality
    assert across > 30          # ...while the two modalities still get their own draws


def test_by_modality_keeps_the_rate_of_a_single_channel_and_the_other_transforms():
    transforms = nnunet_2d_transforms()
    rebuilt = by_modality(transforms, channel_groups(5, context.offsets(2, 2.0)))
    assert len(rebuilt.transforms) == len(transforms.transforms)
    for old, new in zip(transforms.transforms, rebuilt.transforms):
        if isinstance(new, PerChannelGroup):
            inner = old.transform
            assert new.transform.apply_probability == pytest.approx(
                old.apply_probability * getattr(inner, "p_per_channel", 1.0))
            assert new.transform.transform.synchronize_channels
            assert not inner.synchronize_channels or isinstance(inner, GaussianNoiseTransform)
        else:
            assert new is old   # spatial, mirroring and label transforms are nnU-Net's own
    # one channel per group (no slice context): nnU-Net's transforms as they are
    assert by_modality(transforms, channel_groups(2, (0.0,))) is transforms


def test_the_trainer_builds_its_transforms_per_modality():
    from bibsnet_trainer.nnunet.trainers.nnUNetTrainerBibsnet import nnUNetTrainerBibsnet

    trainer = nnUNetTrainerBibsnet.__new__(nnUNetTrainerBibsnet)
    trainer.dataset_json = ModelInput(["T1w"], LabelTable.from_codes([0, 2]), (0.0, -2.0, 2.0)).to_dataset_json()
    transforms = trainer.get_training_transforms((48, 48), (-0.5, 0.5), None, (0,), False)
    groups = [t.groups for t in transforms.transforms if isinstance(t, PerChannelGroup)]
    assert groups and all(g == [[0, 1, 2]] for g in groups)
    within = sum(any(not torch.allclose(image[0], image[c]) for c in (1, 2))
                 for image in draws(intensity_only(transforms), 3, 60))
    assert within == 0
