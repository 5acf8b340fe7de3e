"""Random tissue contrasts for real training images (nnunet/contrast.py): one mapping for a slice
and its neighbours, the air kept at 0, tissues that swap brightness, and the trainer's place for
it in nnU-Net's augmentation."""
import pytest
import torch
from batchgeneratorsv2.transforms.utils.random import RandomTransform

from bibsnet_trainer.labels import LabelTable
from bibsnet_trainer.nnunet.augmentation import PerChannelGroup
from bibsnet_trainer.nnunet.contrast import RandomContrastTransform, remap_channels, with_random_contrast
from bibsnet_trainer.nnunet.model_input import ModelInput

CSF, GM, WM = -1.2, 0.2, 1.3   # z-scored T1w-like tissue intensities


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors: on a busy 2-core machine two torch threads make each draw many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def head_slice(seed: int = 0, shift: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A 64x64 slice: air (0) around a head of three rings (WM inside GM inside CSF), with noise;
    and its tissue map (0 air, 1 CSF, 2 GM, 3 WM)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    r = ((yy - 32 - shift) ** 2 + (xx - 32) ** 2).sqrt()
    tissue = torch.zeros(64, 64, dtype=torch.long)
    tissue[r < 28], tissue[r < 22], tissue[r < 14] = 1, 2, 3
    means = torch.tensor([0.0, CSF, GM, WM])
    image = means[tissue] + 0.08 * torch.randn(64, 64, generator=g) * (tissue > 0)
    return image, tissue


def context_stack() -> tuple[torch.Tensor, torch.Tensor]:
    """Three channels: a slice and two neighbours (the same head shifted), as nnunet.context gives."""
    images, tissues = zip(*(head_slice(seed=k, shift=s) for k, s in enumerate((0, -2, 2))))
    return torch.stack(images), torch.stack(tissues)


def tissue_means(image: torch.Tensor, tissue: torch.Tensor) -> list[float]:
    return [float(image[tissue == k].mean()) for k in (1, 2, 3)]


def test_a_slice_and_its_neighbours_get_one_contrast_and_the_air_stays_zero():
    stack, tissues = context_stack()
    torch.manual_seed(1)
    changed = 0
    for _ in range(20):
        out = remap_channels(stack)
        assert out.shape == stack.shape and out.dtype == stack.dtype
        assert torch.all(out[tissues == 0] == 0)                       # air and padding stay 0
        head = tissues > 0
        assert float(out[head].mean()) == pytest.approx(float(stack[head].mean()), abs=1e-4)
        assert float(out[head].std()) == pytest.approx(float(stack[head].std()), rel=1e-3)
        means = [tissue_means(out[c], tissues[c]) for c in range(3)]
        for c in (1, 2):   # the neighbours' tissues take the centre slice's new intensities
            assert means[c] == pytest.approx(means[0], abs=0.15)
        changed += max(abs(a - b) for a, b in zip(means[0], (CSF, GM, WM))) > 0.3
    assert changed >= 15


def test_tissues_swap_brightness_in_some_draws_and_keep_it_in_others():
    stack, tissues = context_stack()
    torch.manual_seed(2)
    inverted = kept = 0
    for _ in range(60):
        csf, _, wm = tissue_means(remap_channels(stack)[0], tissues[0])
        inverted += csf > wm + 0.3
        kept += wm > csf + 0.3
    assert inverted >= 10 and kept >= 10


def test_an_image_without_modes_to_fit_comes_back_unchanged():
    flat = torch.full((3, 32, 32), 0.7)
    assert remap_channels(flat) is flat
    empty = torch.zeros(2, 32, 32)
    assert remap_channels(empty) is empty


def nnunet_2d_transforms():
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    return nnUNetTrainer.get_training_transforms((48, 48), (-0.5, 0.5), None, (0,), False)


def test_the_remap_goes_after_the_spatial_augmentation_once_per_modality():
    transforms = nnunet_2d_transforms()
    assert with_random_contrast(transforms, [[0, 1, 2]], 0.0) is transforms
    rebuilt = with_random_contrast(transforms, [[0, 2], [1, 3]], 0.4)
    steps = rebuilt.transforms
    assert len(steps) == len(transforms.transforms) + 1
    first_random = next(i for i, t in enumerate(transforms.transforms) if isinstance(t, RandomTransform))
    remap = steps[first_random]
    assert first_random >= 1 and isinstance(remap, PerChannelGroup) and remap.groups == [[0, 2], [1, 3]]
    assert isinstance(remap.transform, RandomTransform) and remap.transform.apply_probability == 0.4
    assert isinstance(remap.transform.transform, RandomContrastTransform)
    assert steps[:first_random] == transforms.transforms[:first_random]


def test_the_trainer_adds_the_remap_when_its_job_asks_for_it():
    from bibsnet_trainer.nnunet.trainers.nnUNetTrainerBibsnet import nnUNetTrainerBibsnet

    trainer = nnUNetTrainerBibsnet.__new__(nnUNetTrainerBibsnet)
    trainer.dataset_json = ModelInput(["T1w"], LabelTable.from_codes([0, 2]), (0.0, -2.0, 2.0)).to_dataset_json()

    def remaps():
        transforms = trainer.get_training_transforms((48, 48), (-0.5, 0.5), None, (0,), False)
        return [t for t in transforms.transforms
                if isinstance(t, PerChannelGroup) and isinstance(t.transform.transform, RandomContrastTransform)]

    assert remaps() == []                       # off unless asked
    trainer.contrast_augmentation = 0.5
    (remap,) = remaps()
    assert remap.groups == [[0, 1, 2]] and remap.transform.apply_probability == 0.5
    # applied through the composition: one 2.5D image, one mapping for its three slices
    stack, tissues = context_stack()
    torch.manual_seed(3)
    out = remap(image=stack.clone())["image"]
    means = [tissue_means(out[c], tissues[c]) for c in range(3)]
    assert means[1] == pytest.approx(means[0], abs=0.15) and means[2] == pytest.approx(means[0], abs=0.15)


def test_the_benchmark_measures_a_phantom_case():
    """benchmarks/contrast_augmentation.py's `measure` on a preprocessed-like phantom case: five
    channels (a slice and its neighbours), nnU-Net's (channels, slices, y, x) order."""
    import sys

    import numpy as np

    from conftest import ROOT
    from phantoms import T1_INTENSITY, phantom_labels

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import contrast_augmentation

    labels = phantom_labels(shape=(40, 48, 40), seed=0).transpose(2, 1, 0)   # RAS -> (S, A, R)
    codes = sorted(int(c) for c in np.unique(labels))
    seg = np.searchsorted(codes, labels)
    image = np.vectorize(T1_INTENSITY.get)(labels).astype(np.float32)
    image = np.where(labels > 0, (image - image[labels > 0].mean()) / image[labels > 0].std(), 0)
    image = image + 0.05 * np.random.default_rng(0).standard_normal(image.shape) * (labels > 0)
    data = np.stack([np.roll(image, k, axis=0) for k in (0, -1, 1, -2, 2)]).astype(np.float32)
    result = contrast_augmentation.measure(data, seg, codes, draws=40, repeats=2)
    assert result["channels"] == 5 and result["patch"][0] == 5
    assert 0.05 < result["white_matter_darker_than_csf"] < 0.95
    assert 0.05 < result["white_matter_brighter_than_cortex"] < 0.95
    assert result["seconds_per_patch"] > 0
    assert result["stored_tissue_means"]["white matter"] > result["stored_tissue_means"]["CSF"]
