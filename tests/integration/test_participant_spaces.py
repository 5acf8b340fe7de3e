"""Participant level with T1w and T2w on different grids (a moved head, another voxel size and
orientation): rigid coregistration, outputs in space-T1w and space-T2w on each image's own grid,
the transforms Nibabies reads; and the registry's clear error when no model fits a session."""
import json

import nibabel as nib
import numpy as np
import pytest
from nibabel.processing import resample_from_to

from bibsnet_trainer.cli.run import main
from bibsnet_trainer.labels import target_code
from oracle import oracle_segmenter, write_fake_package
from phantoms import T2_INTENSITY, dice, phantom_labels, phantom_t1w, ras_affine, rigid, write_description

@pytest.fixture(scope="module")
def two_grid_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("spaces")
    bids = root / "bids"
    anat = bids / "sub-01" / "anat"
    anat.mkdir(parents=True)
    write_description(bids, "spaces")
    labels = phantom_labels(seed=4)
    t1_affine = ras_affine(3.0, labels.shape)
    t1w_path = anat / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(phantom_t1w(labels, 4), t1_affine), t1w_path)
    # the head moved between the scans (8 degrees, a few mm), and the T2w grid is 2.5 mm LPS-stored
    moved = rigid([0.0, 0.0, 8.0], [4.0, -3.0, 2.0]) @ t1_affine
    t2_shape = (48, 58, 48)
    t2_affine = np.diag([-2.5, -2.5, 2.5, 1.0])
    t2_affine[:3, 3] = [60.0, 72.5, -60.0]
    t2_data = np.zeros(labels.shape, np.float32)
    for code, value in T2_INTENSITY.items():
        t2_data[labels == code] = value
    t2w = resample_from_to(nib.Nifti1Image(t2_data, moved), (t2_shape, t2_affine), order=1)
    nib.save(t2w, anat / "sub-01_T2w.nii.gz")
    truth_t2 = np.asarray(resample_from_to(nib.Nifti1Image(labels.astype(np.int16), moved),
                                           (t2_shape, t2_affine), order=0).dataobj)
    reference = root / "sub-01_reference.nii.gz"
    nib.save(nib.Nifti1Image(labels.astype(np.int16), t1_affine), reference)
    codes = sorted({target_code(c) for c in np.unique(labels)})
    package = write_fake_package(root, codes, modalities=("T1w",))
    out = root / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("bibsnet_trainer.nnunet.predict.Segmenter", oracle_segmenter([(t1w_path, reference)]))
        code = main([str(bids), str(out), "participant", "-w", str(root / "work"), "--model", str(package),
                     "--device", "cpu", "--nprocs", "1"])
    return {"code": code, "out": out, "bids": bids, "truth_t2": truth_t2, "labels": labels}


def test_outputs_in_both_spaces_on_each_grid(two_grid_run):
    assert two_grid_run["code"] == 0
    anat = two_grid_run["out"] / "sub-01" / "anat"
    for space in ("T1w", "T2w"):
        source = nib.load(two_grid_run["bids"] / "sub-01" / "anat" / f"sub-01_{space}.nii.gz")
        for kind in ("desc-aseg_dseg", "desc-brain_mask"):
            img = nib.load(anat / f"sub-01_space-{space}_{kind}.nii.gz")
            assert img.shape == source.shape and np.allclose(img.affine, source.affine)
            sidecar = json.loads((anat / f"sub-01_space-{space}_{kind}.json").read_text())
            assert sidecar["SpatialReference"].endswith(f"sub-01_{space}.nii.gz")


def test_registration_puts_labels_on_the_moved_t2w_anatomy(two_grid_run):
    anat = two_grid_run["out"] / "sub-01" / "anat"
    t2_labels = np.asarray(nib.load(anat / "sub-01_space-T2w_desc-aseg_dseg.nii.gz").dataobj)
    truth = two_grid_run["truth_t2"]
    for code in (2, 3, 41, 42):
        assert dice(t2_labels == code, truth == code) > 0.85, code
    for name in ("from-T2w_to-T1w", "from-T1w_to-T2w"):
        text = (anat / f"sub-01_{name}_mode-image_xfm.txt").read_text()
        assert text.startswith("#Insight Transform File V1.0") and "AffineTransform_double_3_3" in text


def test_no_fitting_model_is_one_clear_error_per_session(tmp_path, caplog):
    from phantoms import write_bids
    bids = write_bids(tmp_path / "bids", {"01": "image"})
    out = tmp_path / "out"
    package = write_fake_package(tmp_path, [0, 2, 3, 41, 42], modalities=("T2w",))
    (out / "models").mkdir(parents=True)
    package.rename(out / "models" / package.name)
    code = main([str(bids), str(out), "participant", "-w", str(tmp_path / "work"), "--device", "cpu"])
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert code == 1 and len(errors) == 1
    assert errors[0].startswith("sub-01: no model package fits modalities T1w") and str(out / "models") in errors[0]


def test_oblique_scan_comes_back_on_its_own_grid(tmp_path):
    """An oblique affine (15 degrees about two axes): outputs on the exact input grid, voxel for
    voxel the reference (which shares that grid), left labels at world x < 0."""
    bids = tmp_path / "bids"
    anat = bids / "sub-01" / "anat"
    anat.mkdir(parents=True)
    write_description(bids, "oblique")
    labels = phantom_labels(seed=5)
    oblique = rigid([0.0, 0.0, 15.0], [0, 0, 0]) @ np.array([[1, 0, 0, 0], [0, np.cos(0.26), -np.sin(0.26), 0],
                                                  [0, np.sin(0.26), np.cos(0.26), 0], [0, 0, 0, 1]]) \
        @ ras_affine(3.0, labels.shape)
    image = anat / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(phantom_t1w(labels, 5), oblique), image)
    reference = tmp_path / "reference.nii.gz"
    nib.save(nib.Nifti1Image(labels.astype(np.int16), oblique), reference)
    package = write_fake_package(tmp_path, sorted({target_code(c) for c in np.unique(labels)}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("bibsnet_trainer.nnunet.predict.Segmenter", oracle_segmenter([(image, reference)]))
        code = main([str(bids), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "work"),
                     "--model", str(package), "--device", "cpu", "--nprocs", "1"])
    assert code == 0
    dseg = nib.load(tmp_path / "out" / "sub-01" / "anat" / "sub-01_space-T1w_desc-aseg_dseg.nii.gz")
    assert dseg.shape == labels.shape and np.allclose(dseg.affine, oblique)
    written = np.asarray(dseg.dataobj)
    expected = np.vectorize(target_code)(labels)
    assert np.array_equal(written, expected)
    left = np.argwhere(written == 2)
    world_x = (oblique @ np.c_[left, np.ones(len(left))].T)[0]
    assert world_x.mean() < 0
