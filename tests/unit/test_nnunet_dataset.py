import json
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest

from bibsnet_trainer.labels import LabelTable
from bibsnet_trainer.nnunet.dataset import RawDatasetWriter, dataset_name, write_splits
from bibsnet_trainer.nnunet.model_input import ModelInput
from bibsnet_trainer.nnunet.presets import PRESETS, TrainingPreset, add_small_configuration, choose_spacing
from bibsnet_trainer.nnunet.trainers.nnUNetTrainerBibsnet import fitted_epochs, mirror_axes_keeping_sides


def test_writer_stores_ras_images_and_consecutive_labels(tmp_path):
    table = LabelTable.from_codes([0, 2, 41])
    writer = RawDatasetWriter(tmp_path / dataset_name(7, "X"), ModelInput(["T1w"], table))
    data = np.zeros((4, 5, 6), np.int32)
    data[0, 0, 0], data[3, 4, 5] = 2, 41
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])                       # LAS storage
    writer.add_case("case1", [nib.Nifti1Image(data.astype(np.float32), affine)], nib.Nifti1Image(data, affine))
    assert writer.has_case("case1") and writer.case_ids() == ["case1"]
    label = nib.load(writer.label_path("case1"))
    image = nib.load(writer.folder / "imagesTr" / "case1_0000.nii.gz")
    assert nib.aff2axcodes(label.affine) == ("R", "A", "S") == nib.aff2axcodes(image.affine)
    assert sorted(np.unique(np.asarray(label.dataobj)).tolist()) == [0, 1, 2]
    # the voxel labelled 2 (index 1) stays at the same world position
    world = affine @ [0, 0, 0, 1]
    voxel = np.round(np.linalg.inv(label.affine) @ world).astype(int)[:3]
    assert np.asarray(label.dataobj)[tuple(voxel)] == 1
    description = writer.write_dataset_json()
    assert description["image_orientation"] == "RAS" and description["numTraining"] == 1
    assert description["labels"] == {"background": 0, "Left-Cerebral-White-Matter": 1,
                                      "Right-Cerebral-White-Matter": 2}
    saved = json.loads((writer.folder / "dataset.json").read_text())
    assert LabelTable.from_json(saved["freesurfer_labels"]) == table


def test_cases_of_another_label_table_are_not_reused(tmp_path):
    """Stored labels hold table indices: a re-run whose label table changed (a label map added,
    held-out subjects changed) must not reuse them (nnU-Net would reject or, worse, misread them)."""
    folder = tmp_path / dataset_name(7, "X")
    data = np.zeros((4, 5, 6), np.int32)
    data[0, 0, 0] = 41
    image = nib.Nifti1Image(data.astype(np.float32), np.eye(4))
    first = RawDatasetWriter(folder, ModelInput(["T1w"], LabelTable.from_codes([0, 2, 41])))
    first.add_case("case1", [image], nib.Nifti1Image(data, np.eye(4)))
    again = RawDatasetWriter(folder, ModelInput(["T1w"], LabelTable.from_codes([0, 2, 41])))
    assert again.removed_for_new_input == 0 and again.has_case("case1")          # same table: resumed
    other = RawDatasetWriter(folder, ModelInput(["T1w"], LabelTable.from_codes([0, 41])))
    assert other.removed_for_new_input == 1 and not other.has_case("case1")
    assert not list((folder / "imagesTr").iterdir())
    other.add_case("case1", [image], nib.Nifti1Image(data, np.eye(4)))
    assert np.asarray(nib.load(other.label_path("case1")).dataobj).max() == 1    # 41 is index 1 now
    two_channels = RawDatasetWriter(folder, ModelInput(["T1w", "T2w"], LabelTable.from_codes([0, 41])))
    assert two_channels.removed_for_new_input == 1


def test_splits_refuse_overlap(tmp_path):
    write_splits(tmp_path, [(["a", "b"], ["c"]), (["c", "b"], ["a"])])
    assert json.loads((tmp_path / "splits_final.json").read_text()) == [{"train": ["a", "b"], "val": ["c"]},
                                                                        {"train": ["b", "c"], "val": ["a"]}]
    with pytest.raises(ValueError, match="both sides"):
        write_splits(tmp_path, [(["a", "b"], ["c"]), (["a", "c"], ["c"])])


@pytest.mark.parametrize("preset, base", [
    (PRESETS["cpu"], "2d"),
    (TrainingPreset("3d_small", 1, 1, 1, patch_size=(32, 32, 32), features_per_stage=(16, 32, 64, 128),
                    batch_size=2), "3d_fullres")])
def test_small_configuration_is_consistent(preset, base):
    plans = {"configurations": {"3d_fullres": {"architecture": {"arch_kwargs": {"n_stages": 6}},
                                               "patch_size": [128, 128, 128]},
                                "2d": {"architecture": {"arch_kwargs": {"n_stages": 7}}, "patch_size": [160, 160]}}}
    added = add_small_configuration(plans, preset)["configurations"][preset.configuration]
    kwargs = added["architecture"]["arch_kwargs"]
    n = kwargs["n_stages"]
    assert added["inherits_from"] == base
    assert added["patch_size"] == list(preset.patch_size)
    assert all(len(k) == len(preset.patch_size) for k in kwargs["kernel_sizes"] + kwargs["strides"])
    assert len(kwargs["strides"]) == len(kwargs["kernel_sizes"]) == len(kwargs["features_per_stage"]) == n
    assert len(kwargs["n_conv_per_stage_decoder"]) == n - 1
    assert all(p % 2 ** (n - 1) == 0 for p in added["patch_size"])
    assert plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["n_stages"] == 6  # not mutated


def test_small_configuration_shrinks_to_small_images():
    """Images smaller than the preset's patch (the phantoms, a cropped infant head) get nnU-Net's
    own smaller patch and fewer stages, every side still divisible by the downsampling."""
    plans = {"configurations": {"2d": {"architecture": {"arch_kwargs": {}}, "patch_size": [48, 40]}}}
    added = add_small_configuration(plans, PRESETS["cpu"])["configurations"]["2d_small"]
    n = added["architecture"]["arch_kwargs"]["n_stages"]
    assert added["patch_size"] == [48, 40] and n == 4
    assert added["architecture"]["arch_kwargs"]["features_per_stage"] == list(PRESETS["cpu"].features_per_stage[:4])


@pytest.mark.parametrize("voxels, given, expected", [
    ([1.0, 1.0, 1.2], None, 2.0),      # cpu preset, finer data: 2 mm, said in the log
    ([3.0, 3.0], None, None),          # coarser data: nnU-Net's own (median) spacing
    ([1.0], 1.5, 1.5)])                # the user's choice wins
def test_cpu_preset_chooses_its_spacing(voxels, given, expected):
    preset = PRESETS["cpu"] if given is None else replace(PRESETS["cpu"], target_spacing_mm=given)
    spacing, why = choose_spacing(preset, voxels)
    assert spacing == expected
    assert (f"{expected:g} mm" in why) if expected else why == ""
    assert choose_spacing(PRESETS["gpu"], [1.0])[0] is None


def test_time_budget_fits_epochs():
    # 10 epochs took 100 s of a 600 s budget: 50 more fit
    assert fitted_epochs(100.0, 10, 10, 600.0, 1000) == 60
    assert fitted_epochs(100.0, 10, 10, 600.0, 40) == 40          # never past the preset's epochs
    assert fitted_epochs(700.0, 10, 10, 600.0, 1000) == 10        # over budget: stop now


@pytest.mark.parametrize("transpose, patch_dims, mirror, expected", [
    ([0, 1, 2], 3, (0, 1, 2), (0, 1)),
    ([0, 1, 2], 2, (0, 1), (0,)),      # 2D patches are array axes 1 and 2: left-right is patch axis 1
    ([2, 0, 1], 3, (0, 1, 2), (1, 2))])
def test_never_mirrors_left_right(transpose, patch_dims, mirror, expected):
    assert mirror_axes_keeping_sides(mirror, transpose, patch_dims) == expected


def test_runner_children_import_this_package(tmp_path):
    """A child stage imports the parent's own bibsnet_trainer (not another installed copy)."""
    import subprocess
    import sys
    from pathlib import Path

    import bibsnet_trainer
    from bibsnet_trainer.nnunet.training import NnunetFolders
    env = NnunetFolders(tmp_path).environment(nprocs=1, omp_nthreads=1)
    found = subprocess.run([sys.executable, "-c", "import bibsnet_trainer; print(bibsnet_trainer.__file__)"],
                           env=env, cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(found).resolve() == Path(bibsnet_trainer.__file__).resolve()
    assert env["PYTHONPATH"].split(":")[0] == str(Path(bibsnet_trainer.__file__).resolve().parents[1])


@pytest.mark.parametrize("patch", [[128, 96], [128, 128], [128, 128, 128], [16, 128, 128]])
def test_training_never_rotates_a_slice_by_a_half_turn(patch):
    """nnU-Net rotates nearly square 2D patches (and 3D data it treats as 2D) by up to 180 degrees,
    which puts the left hemisphere on the right under its Left-* labels; our trainer bounds it."""
    import math
    from types import SimpleNamespace

    from bibsnet_trainer.nnunet.trainers.nnUNetTrainerBibsnet import nnUNetTrainerBibsnet
    trainer = object.__new__(nnUNetTrainerBibsnet)
    trainer.configuration_manager = SimpleNamespace(patch_size=patch)
    trainer.plans_manager = SimpleNamespace(transpose_forward=[0, 1, 2])
    trainer.print_to_log_file = lambda *args, **kwargs: None
    trainer.local_rank = 0
    rotation, dummy_2d, initial_patch, mirror_axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert -math.radians(30) - 1e-9 <= rotation[0] and rotation[1] <= math.radians(30) + 1e-9
    assert all(i >= p for i, p in zip(initial_patch, patch))        # room for the rotation, as nnU-Net's
    left_right = len(patch) - 1                                       # RAS read as (z, y, x): x is last
    assert left_right not in (mirror_axes or ())


def test_default_test_time_mirroring():
    from bibsnet_trainer.nnunet.predict import default_mirroring
    assert default_mirroring("cuda", 3) and default_mirroring("cpu", 2)
    assert not default_mirroring("cpu", 3)           # a 3D network on a CPU: 4 passes (2 axes) instead of 1


def test_the_synthesis_preview_gets_freesurfer_codes_not_nnunet_indices(tmp_path, monkeypatch):
    from bibsnet_trainer.group import dataset as group
    from bibsnet_trainer.synthesis import preview
    table = LabelTable.from_codes([0, 2, 41])
    writer = RawDatasetWriter(tmp_path / dataset_name(7, "X"), ModelInput(["T1w"], table))
    data = np.zeros((8, 8, 8), np.int32)
    data[:4], data[4:] = 2, 41
    writer.add_case("syn_a", [nib.Nifti1Image(data.astype(np.float32), np.eye(4))], nib.Nifti1Image(data, np.eye(4)))
    seen = {}
    monkeypatch.setattr(preview, "write_preview", lambda path, samples: seen.setdefault("samples", samples))
    group._write_preview(writer, ["syn_a"], tmp_path / "p.png")
    (name, _, target), = seen["samples"]
    assert name == "syn_a" and set(np.unique(target)) == {2, 41}     # stored as indices 1 and 2

