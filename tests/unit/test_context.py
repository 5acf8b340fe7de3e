"""Neighbouring slices as extra channels (nnunet/context.py): physical offsets, the same context
from a 1 mm and a 2 mm image, the channel order nnU-Net sees, and the dataset that holds them."""
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from bibsnet_trainer.config import TrainingPreset
from bibsnet_trainer.group.plan import _model_input, _slice_context
from bibsnet_trainer.labels import LabelTable
from bibsnet_trainer.nnunet import context
from bibsnet_trainer.nnunet.dataset import RawDatasetWriter, dataset_name
from bibsnet_trainer.nnunet.model_input import ModelInput
from bibsnet_trainer.nnunet.presets import PRESETS


def test_offsets_and_channel_names():
    assert context.offsets(0, 2.0) == (0.0,)
    assert context.offsets(2, 2.0) == (0.0, -2.0, 2.0, -4.0, 4.0)
    assert context.channel_names(["T1w", "T2w"], (0.0, -1.5, 1.5)) == [
        "T1w", "T2w", "T1w -1.5mm", "T2w -1.5mm", "T1w +1.5mm", "T2w +1.5mm"]
    assert PRESETS["cpu"].context_slices == 2 and PRESETS["gpu"].context_slices == 0


def test_a_shifted_channel_holds_the_slice_above_or_below():
    data = np.arange(4 * 3 * 6, dtype=np.float32).reshape(4, 3, 6)
    below, above = context.with_context([data], 2.0, (0.0, -2.0, 2.0))[1:]
    assert np.array_equal(below[..., 1:], data[..., :-1]) and np.array_equal(below[..., 0], data[..., 0])
    assert np.array_equal(above[..., :-1], data[..., 1:]) and np.array_equal(above[..., -1], data[..., -1])


def test_the_context_is_physical_a_1mm_image_gets_the_2mm_neighbours():
    """Slices 2 mm away: 2 voxels of a 1 mm image, 1 of a 2 mm image, 2/3 of a 3 mm image."""
    heights = np.arange(0, 40, 1.0)                   # a 1 mm image that is its own height (mm)
    fine = np.broadcast_to(heights, (3, 3, 40)).astype(np.float32)
    up = context.shifted_slices(fine, 2.0, 1.0)
    assert np.allclose(up[0, 0, 5:-2] - fine[0, 0, 5:-2], 2.0)
    coarse = np.broadcast_to(np.arange(0, 40, 3.0), (3, 3, 14)).astype(np.float32)
    up = context.shifted_slices(coarse, 2.0, 3.0)     # linear interpolation between slices
    assert np.allclose(up[0, 0, 2:-2] - coarse[0, 0, 2:-2], 2.0)


def test_shifts_along_any_axis():
    data = np.arange(5 * 4 * 3, dtype=np.float32).reshape(5, 4, 3)
    above = context.shifted_slices(data, 2.0, 2.0, axis=0)
    assert np.array_equal(above[:-1], data[1:]) and np.array_equal(above[-1], data[-1])


def test_the_network_gets_the_channels_training_wrote(tmp_path):
    """The predictor hands nnU-Net the very channels the training case holds (air zeroed, slices
    shifted, before nnU-Net's crop and normalisation), so nnU-Net preprocesses both alike. Shifting
    after nnU-Net's preprocessing changed the masks at the head's edge and cost 0.017 cortex Dice."""
    from bibsnet_trainer.images import to_canonical
    from bibsnet_trainer.nnunet.predict import Segmenter

    table = LabelTable.from_codes([0, 2])
    folder = tmp_path / dataset_name(9, "X")
    offsets = (0.0, -2.0, 2.0, -4.0, 4.0)
    writer = RawDatasetWriter(folder, ModelInput(["T1w"], table, offsets, zero_air=True))
    rng = np.random.default_rng(1)
    data = rng.random((12, 10, 9)).astype(np.float32) * 0.02          # noise in the air
    data[3:9, 2:8, 2:7] += 1.0 + rng.random((6, 6, 5)).astype(np.float32)   # the head
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])                          # LAS storage
    image = nib.Nifti1Image(data, affine)
    writer.add_case("case1", [image], nib.Nifti1Image((data > 0.5).astype(np.int32) * 2, affine))
    written = [np.asarray(nib.load(folder / "imagesTr" / f"case1_{c:04d}.nii.gz").dataobj) for c in range(5)]

    writer.write_dataset_json()
    segmenter = Segmenter(folder, predictor=object())   # the input side only, read from dataset.json
    assert segmenter.model_input == ModelInput(["T1w"], table, offsets, zero_air=True)
    channels, properties = segmenter.network_input([to_canonical(image)])
    assert channels.shape == (5, 9, 10, 12)              # nnU-Net's order: superior, anterior, right
    for c in range(5):
        assert np.array_equal(channels[c], written[c].transpose(2, 1, 0)), c
    assert (written[0] == 0).any() and properties == {"spacing": [2.0, 2.0, 2.0]}


def test_the_dataset_holds_the_context_channels(tmp_path):
    table = LabelTable.from_codes([0, 2])
    folder = tmp_path / dataset_name(7, "X")
    writer = RawDatasetWriter(folder, ModelInput(["T1w"], table, (0.0, -2.0, 2.0)))
    data = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])            # LAS storage: channels are written in RAS
    writer.add_case("case1", [nib.Nifti1Image(data, affine)], nib.Nifti1Image((data > 0.5).astype(np.int32) * 2, affine))
    channels = [np.asarray(nib.load(folder / "imagesTr" / f"case1_{c:04d}.nii.gz").dataobj) for c in range(3)]
    assert not (folder / "imagesTr" / "case1_0003.nii.gz").exists()
    assert np.array_equal(channels[1][..., 1:], channels[0][..., :-1])
    assert np.array_equal(channels[2][..., :-1], channels[0][..., 1:])
    description = writer.write_dataset_json()
    assert description["channel_names"] == {"0": "T1w", "1": "T1w -2mm", "2": "T1w +2mm"}
    assert ModelInput.read(folder).context_mm == (0.0, -2.0, 2.0)
    # cases written with other offsets are not reused (their channels differ)
    assert RawDatasetWriter(folder, ModelInput(["T1w"], table, (0.0, -2.0, 2.0))).removed_for_new_input == 0
    assert RawDatasetWriter(folder, ModelInput(["T1w"], table)).removed_for_new_input == 1


def test_a_model_without_the_keys_has_no_context_and_no_air_rule():
    table = LabelTable.from_codes([0, 2])
    assert ModelInput.from_dataset_json({"channel_names": {"0": "T1w"}, "freesurfer_labels": table.as_json()}) \
        == ModelInput(["T1w"], table)


def _opts(trainer="standard", slices=2, spacing=None):
    preset = TrainingPreset("2d_small", 1, 1, 1, context_slices=slices, target_spacing_mm=spacing)
    return SimpleNamespace(preset=preset, trainer=trainer)


@pytest.mark.parametrize("opts, voxels, expected", [
    (_opts(), [1.0, 1.0, 3.0], (0.0, -1.0, 1.0, -2.0, 2.0)),           # the data's median voxel
    (_opts(spacing=2.0), [1.0, 1.0], (0.0, -2.0, 2.0, -4.0, 4.0)),      # the training spacing
    (_opts(trainer="onthefly"), [1.0], (0.0,)),                         # synthesises single slices
    (_opts(slices=0), [1.0], (0.0,)),
])
def test_the_group_level_chooses_the_offsets(opts, voxels, expected):
    assert _slice_context(opts, voxels) == expected


def test_fine_tuning_keeps_the_base_models_input(tmp_path):
    """A fine-tuned model is fed as its base model was (offsets, air rule), whatever the preset
    says, with this run's labels."""
    base = ModelInput(["T1w"], LabelTable.from_codes([0, 2]), (0.0, -3.0, 3.0), zero_air=True)
    base_model = {"folder": tmp_path, "dataset": base.to_dataset_json()}   # as _open_model gives it
    opts = _opts(slices=1)
    table = LabelTable.from_codes([0, 2, 41])
    model_input = _model_input(opts, ["T1w"], table, [1.0], base_model)
    assert model_input == ModelInput(["T1w"], table, (0.0, -3.0, 3.0), zero_air=True)
    assert _model_input(opts, ["T1w"], table, [1.0], None) == ModelInput(["T1w"], table, (0.0, -1.0, 1.0), False)
