"""The participant level on a real adult scan: the MNE sample subject (FreeSurfer T1.mgz and
aseg.mgz, 86³ at 3 mm, stored LIA) in ../shared/data/dev_real/mne_sample.

No network is trained here: on 2 CPU cores the group level alone (synthesis, nnU-Net planning,
2 epochs, held-out evaluation) took 4.5 minutes for this scan, and a model trained that briefly
predicts noise, so left/right checks on its output would prove nothing. Instead the FreeSurfer aseg
goes through the production path as a perfect model's answer (oracle.py): the real
`Segmenter.segment` reorientation and label mapping, the mask, the writers, the QC. sub-01 is the scan
as stored (LIA, MGH converted to NIfTI without resampling); sub-02 is the same scan stored RAS, so any
left/right or axis slip in the write path shows as a difference between the two. (The real network's
prediction path is covered by test_end_to_end.py on phantoms, an LPS-stored copy included.)"""
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bibsnet_trainer.cli.run import main
from bibsnet_trainer.labels import freesurfer_names, to_target
from oracle import oracle_segmenter, write_fake_package
from conftest import SHARED_DATA
from nibabies_queries import NIBABIES_24_BASELINE, resolve_bids_uri
from phantoms import write_description

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    source = SHARED_DATA / "dev_real" / "mne_sample"
    if not (source / "T1.mgz").is_file():
        pytest.skip("../shared/data/dev_real/mne_sample is not present")
    root = tmp_path_factory.mktemp("mne")
    bids = root / "bids"
    labels_root = bids / "derivatives" / "freesurfer"
    write_description(bids, "mne sample")
    write_description(labels_root, "aseg", derivative_of="FreeSurfer")
    # the MNE sample subject is an adult of unpublished age: sub-01 leaves it unknown, sub-02 gets an
    # assumed adult age to exercise the age-specific range
    (bids / "participants.tsv").write_text("participant_id\tage_years\nsub-01\tn/a\nsub-02\t30\n")
    t1, aseg = nib.load(source / "T1.mgz"), nib.load(source / "aseg.mgz")
    image = nib.Nifti1Image(np.asarray(t1.dataobj).astype(np.float32), t1.affine)
    labels = nib.Nifti1Image(np.asarray(aseg.dataobj).astype(np.int16), aseg.affine)
    pairs = []
    for subject, img, lab in (("01", image, labels),
                              ("02", nib.as_closest_canonical(image), nib.as_closest_canonical(labels))):
        anat = bids / f"sub-{subject}" / "anat"
        anat.mkdir(parents=True)
        nib.save(img, anat / f"sub-{subject}_T1w.nii.gz")
        (labels_root / f"sub-{subject}" / "anat").mkdir(parents=True)
        label_path = labels_root / f"sub-{subject}" / "anat" / f"sub-{subject}_space-T1w_desc-aseg_dseg.nii.gz"
        nib.save(lab, label_path)
        pairs.append((anat / f"sub-{subject}_T1w.nii.gz", label_path))
    codes = np.unique(to_target(np.asarray(aseg.dataobj).astype(np.int32)))
    package = write_fake_package(root, codes)
    out = root / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("bibsnet_trainer.nnunet.predict.Segmenter", oracle_segmenter(pairs))
        code = main([str(bids), str(out), "participant", "-w", str(root / "work"), "--model", str(package),
                     "--device", "cpu", "--nprocs", "1"])   # in process: the oracle is patched here
    return {"code": code, "out": out, "bids": bids, "aseg": aseg}


def _output(run, subject, suffix):
    return run["out"] / f"sub-{subject}" / "anat" / f"sub-{subject}_space-T1w_{suffix}"


def _world_centroids(img, codes):
    data = np.asarray(img.dataobj)
    voxels = np.argwhere(np.isin(data, list(codes)))
    return nib.affines.apply_affine(img.affine, voxels).mean(axis=0)


def test_runs(real_run):
    assert real_run["code"] == 0


def test_outputs_on_the_input_grid_and_orientation(real_run):
    for subject in ("01", "02"):
        source = nib.load(real_run["bids"] / f"sub-{subject}" / "anat" / f"sub-{subject}_T1w.nii.gz")
        for suffix in ("desc-aseg_dseg.nii.gz", "desc-brain_mask.nii.gz"):
            img = nib.load(_output(real_run, subject, suffix))
            assert img.shape == source.shape and np.allclose(img.affine, source.affine, atol=1e-5)
            assert nib.aff2axcodes(img.affine) == nib.aff2axcodes(source.affine)
    assert nib.aff2axcodes(nib.load(_output(real_run, "01", "desc-aseg_dseg.nii.gz")).affine) == ("L", "I", "A")


def test_left_labels_on_the_left_in_world_space(real_run):
    names = freesurfer_names()
    left = {c for c, n in names.items() if n.startswith("Left-")}
    right = {c for c, n in names.items() if n.startswith("Right-")}
    reference = real_run["aseg"]
    for subject in ("01", "02"):
        dseg = nib.load(_output(real_run, subject, "desc-aseg_dseg.nii.gz"))
        x_left, x_right = _world_centroids(dseg, left)[0], _world_centroids(dseg, right)[0]
        assert x_left < 0 < x_right                       # this scan's origin lies between the hemispheres
        assert x_left == pytest.approx(_world_centroids(reference, left)[0], abs=1e-3)
        for code, mirror in ((2, 41), (3, 42), (17, 53)):   # white matter, cortex, hippocampus
            assert _world_centroids(dseg, {code})[0] < _world_centroids(dseg, {mirror})[0]
    # the same scan stored in two voxel orders gives the same segmentation in world space
    a = nib.as_closest_canonical(nib.load(_output(real_run, "01", "desc-aseg_dseg.nii.gz")))
    b = nib.as_closest_canonical(nib.load(_output(real_run, "02", "desc-aseg_dseg.nii.gz")))
    assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))


def test_qc_flags_are_present_and_sensible(real_run):
    reports = real_run["out"] / "reports"
    for subject, age in (("01", None), ("02", 360.0)):
        report = json.loads((reports / f"sub-{subject}_desc-qc_report.json").read_text())
        flags = {f["name"]: f for f in report["flags"]}
        assert set(flags) == {"brain_volume_cm3", "hemisphere_ratio", "left_right_side_mm", "mask_components",
                              "mask_largest_fraction", "labels_in_mask_fraction", "mask_symmetry", "dice_mean",
                              "major_labels_present", "label_volumes", "model_evaluation", "age_in_model_range",
                              "input_geometry"}
        assert flags["major_labels_present"]["status"] == "ok" and flags["model_evaluation"]["status"] == "ok"
        assert flags["age_in_model_range"]["status"] == "n/a"            # the model gives no age range
        assert report["age_months"] == age and report["status"] == "ok", flags
        assert 1100 < flags["brain_volume_cm3"]["value"] < 1400          # FreeSurfer: about 1.28 l of tissue
        assert 0.95 < flags["hemisphere_ratio"]["value"] < 1.05
        assert flags["left_right_side_mm"]["value"] > 40                  # hemisphere centroids ~55 mm apart
        assert flags["mask_symmetry"]["status"] == "ok"                   # a real brain's mask, mirrored
        assert flags["label_volumes"]["status"] == "n/a"                  # the test package carries no volumes
        assert flags["dice_mean"]["value"] == 1.0
        html = (reports / f"sub-{subject}_desc-qc_report.html").read_text()
        assert html.count("data:image/png;base64,") == 2
    summary = (reports / "participants_qc.tsv").read_text().splitlines()
    assert [line.split("\t")[:4] for line in summary[1:]] == [["sub-01", "n/a", "n/a", "ok"],
                                                             ["sub-02", "n/a", "360.0", "ok"]]
    volumes = _output(real_run, "01", "desc-aseg_volumes.tsv").read_text().splitlines()
    assert volumes[0] == "index\tname\tvolume_mm3\tvoxels"
    assert any(r.startswith("17\tLeft-Hippocampus\t") for r in volumes)


def test_nibabies_finds_the_real_outputs(real_run):
    from bids import BIDSLayout
    out = real_run["out"]
    layout = BIDSLayout(str(out), validate=False, config=["bids", "derivatives"])
    for subject in ("01", "02"):
        for key in ("t1w_aseg", "t1w_mask"):
            found = layout.get(return_type="filename", subject=subject, **NIBABIES_24_BASELINE[key])
            assert len(found) == 1
            reference = json.loads(Path(found[0]).with_name(Path(found[0]).name.replace(".nii.gz", ".json"))
                                   .read_text())["SpatialReference"]
            assert resolve_bids_uri(reference, out) == real_run["bids"].resolve() / f"sub-{subject}" / "anat" / \
                f"sub-{subject}_T1w.nii.gz"
        for key in ("t2w_aseg", "t2w_mask", "t1w_dseg", "t1w_preproc"):
            assert layout.get(return_type="filename", subject=subject, **NIBABIES_24_BASELINE[key]) == []
