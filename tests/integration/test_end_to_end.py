"""Group then participant on tiny phantom data: a real nnU-Net model is trained on the CPU.

Held-out bar: mean Dice >= DICE_BAR on the held-out real phantom subject (a tiny CPU training on
simple data; real-scan figures come from GPU runs)."""
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bibsnet_trainer.group import plan as group_plan
from bibsnet_trainer.cli.run import main
from conftest import tree_digest
from phantoms import write_bids

DICE_BAR = 0.6
pytestmark = pytest.mark.slow
EPOCHS = 10


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    bids = write_bids(root / "bids", {"01": "both", "02": "both", "03": "both", "04": "both",
                                      "05": "labels", "06": "image"})
    (bids / "participants.tsv").write_text("participant_id\tage\n" + "".join(
        f"sub-{k:02d}\t{age}\n" for k, age in zip(range(1, 7), (30, 40, 50, 2, 36, 45))))
    (bids / "participants.json").write_text(json.dumps({"age": {"Description": "age at scan", "Units": "months"}}))
    # sub-07: sub-06's scan stored in another voxel order (LPS): left must stay left
    img = nib.load(bids / "sub-06" / "anat" / "sub-06_T1w.nii.gz")
    flipped = img.as_reoriented(np.array([[0, -1], [1, -1], [2, 1]]))
    (bids / "sub-07" / "anat").mkdir(parents=True)
    nib.save(flipped, bids / "sub-07" / "anat" / "sub-07_T1w.nii.gz")
    before = tree_digest(bids)
    out, work = root / "out", root / "work"
    direct_writes = []                             # state files must be written atomically, not in place
    write_text = Path.write_text
    with pytest.MonkeyPatch.context() as patch:   # every call a new day: a run crossing midnights
        days = iter(range(1, 29))
        patch.setattr(group_plan, "release_tag", lambda: f"r202602{next(days):02d}")
        patch.setattr(Path, "write_text", lambda self, *a, **k: (direct_writes.append(self.name),
                                                                  write_text(self, *a, **k))[1])
        code = main([str(bids), str(out), "group", "-w", str(work), "--preset", "cpu", "--epochs", str(EPOCHS),
                     "--nprocs", "2", "--device", "cpu", "--test-fraction", "0.25"])
    assert code == 0
    assert not {".bibsnet_complete", "group_config.json", "train_fold0.json"} & set(direct_writes), direct_writes
    assert (work / "group_config.json").is_file() and list(work.rglob(".bibsnet_complete"))
    code = main([str(bids), str(out), "participant", "-w", str(work), "--nprocs", "2", "--device", "cpu"])
    return {"bids": bids, "out": out, "work": work, "before": before, "participant_code": code}


def test_input_untouched(trained):
    assert tree_digest(trained["bids"]) == trained["before"]


def test_model_package(trained):
    from bibsnet_trainer.models.package import verify_package
    packages = list((trained["out"] / "models").glob("model_seg_aseg_t1w_nnunet"))
    assert len(packages) == 1
    manifest = verify_package(packages[0])
    assert manifest["modalities"] == ["T1w"] and manifest["release"].startswith("r")
    assert manifest["age_range"][0] == 2.0 and manifest["age_range"][1] <= 50   # ages it learnt from
    priors = json.loads((packages[0] / "priors.json").read_text())
    assert priors["pooled"]["classes"] and "files" in manifest and "priors.json" in {e["path"] for e in manifest["files"]}
    # each label's share of the labelled volume in the training label maps, for the participant QC
    shares = manifest["label_volume_fractions"]
    held_out = set(manifest["training_data"]["held_out_subjects"])
    assert shares["maps"] == 5 - len(held_out & {"01", "02", "03", "04", "05"})   # the demo's label maps not held out
    assert set(shares["ranges"]) == {str(e["freesurfer"]) for e in manifest["labels"]} - {"0"}
    assert all(0 <= low <= high < 1 for low, high in shares["ranges"].values())
    assert 0.1 < shares["ranges"]["2"][0] < 0.3                      # cerebral white matter: a large share
    folder = packages[0] / manifest["nnunet_folder"]
    assert json.loads((folder / "dataset.json").read_text())["image_orientation"] == "RAS"
    # the cpu preset: a 2D network (the package's plans) trained with AdamW (the training job, and
    # the run's configuration in the manifest)
    configuration = json.loads((folder / "plans.json").read_text())["configurations"]["2d_small"]
    assert manifest["nnunet_folder"].endswith("__2d_small") and configuration["inherits_from"] == "2d"
    job = json.loads((trained["work"] / "nnunet" / "jobs" / "train_fold0.json").read_text())
    assert job["settings"] == {"optimizer": "adamw", "initial_lr": 0.01, "cpu_precision": "bf16"}
    assert manifest["configuration"]["preset"]["optimizer"] == "adamw"
    assert manifest["configuration"]["execution"]["seed"] == job["seed"] == 0
    assert "work_dir" not in manifest["configuration"]["execution"]
    # a 2D model predicts with test-time mirroring on the CPU too, never along left-right
    from bibsnet_trainer.nnunet.predict import Segmenter
    from bibsnet_trainer.nnunet.trainers.nnUNetTrainerBibsnet import mirror_axes_keeping_sides
    predictor = Segmenter(folder, device="cpu").predictor
    transpose = predictor.plans_manager.transpose_forward
    assert predictor.use_mirroring
    assert tuple(predictor.allowed_mirroring_axes) == mirror_axes_keeping_sides((0, 1), transpose, 2)
    # one release tag per run, wherever it is written
    release = manifest["release"]
    assert json.loads((folder / "dataset.json").read_text())["release"] == release
    assert (trained["out"] / "models" / f"model_seg_aseg_t1w_nnunet_{release}.zip").is_file()
    assert manifest["training_spacing_mm"] == [3.0, 3.0]
    # 2.5D input: two neighbouring slices each side, one training spacing (3 mm) apart
    assert manifest["slice_context_mm"] == [0.0, -3.0, 3.0, -6.0, 6.0]
    assert len(json.loads((folder / "dataset.json").read_text())["channel_names"]) == 5
    assert (folder / "fold_0" / "checkpoint_final.pth").is_file()
    assert not list(folder.rglob("checkpoint_latest.pth"))
    assert list((trained["out"] / "models").glob("model_seg_aseg_t1w_nnunet_r*.zip"))


def test_group_dice_on_held_out_real_subject(trained):
    report = json.loads((trained["out"] / "reports" / "group_desc-dice_report.json").read_text())
    assert report["synthetic"] is False and report["evaluated_on"].startswith("real")
    held_out = report["training"]["held_out_subjects"]
    assert len(held_out) == 1 and held_out[0] not in report["training"]["real_train_subjects"]
    assert report["mean_dice"] >= DICE_BAR, report["labels"]
    assert all(label["mean_hd95_mm"] is not None for label in report["labels"])
    assert report["age_bins"] and report["overlays"]
    html = (trained["out"] / "reports" / "group_desc-dice_report.html").read_text()
    assert f"Mean Dice over labels: <b>{report['mean_dice']}</b> ({report['grade']})" in html and "<img" in html
    assert "Training curves, fold 0: training and validation loss, validation pseudo-Dice" in html
    # what the figures are: whose scans, at what voxel size, after how much training on what machine
    setting = report["setting"]
    name = json.loads((trained["bids"] / "dataset_description.json").read_text())["Name"]
    assert setting["dataset"] == name and setting["cases"] == [f"sub-{s}" for s in held_out]
    t1w = nib.load(trained["bids"] / f"sub-{held_out[0]}" / "anat" / f"sub-{held_out[0]}_T1w.nii.gz")
    assert setting["voxel_mm"] == pytest.approx(float(np.mean(t1w.header.get_zooms()[:3])), abs=0.01)
    trained_record = report["training"]["trained"]
    assert trained_record["epochs"] > 0 and trained_record["iterations"] == setting["iterations"] > 0
    assert 0 < setting["training_minutes"] < 30 and "CPU cores" in setting["machine"]
    assert f"Scored on 1 case of {name} (sub-{held_out[0]})" in html
    manifest = json.loads((trained["out"] / "models" / "model_seg_aseg_t1w_nnunet" / "manifest.json").read_text())
    assert manifest["training_data"]["trained"]["iterations"] == setting["iterations"]


def test_participant_outputs_on_input_grid(trained):
    out, bids = trained["out"], trained["bids"]
    # sub-05 has a label map but no image: not a participant-level failure
    assert trained["participant_code"] == 0
    for sub in ("01", "06", "07"):
        t1w = nib.load(bids / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz")
        for name in (f"sub-{sub}_space-T1w_desc-aseg_dseg.nii.gz", f"sub-{sub}_space-T1w_desc-brain_mask.nii.gz"):
            img = nib.load(out / f"sub-{sub}" / "anat" / name)
            assert img.shape == t1w.shape and np.allclose(img.affine, t1w.affine)
        sidecar = json.loads((out / f"sub-{sub}" / "anat" / f"sub-{sub}_space-T1w_desc-aseg_dseg.json").read_text())
        assert sidecar["SpatialReference"] == f"bids:raw:sub-{sub}/anat/sub-{sub}_T1w.nii.gz"


def _world_centroid_x(path, code):
    img = nib.load(path)
    voxels = np.argwhere(np.asarray(img.dataobj) == code)
    return (img.affine @ np.c_[voxels, np.ones(len(voxels))].T)[0].mean()


def test_left_stays_left_in_any_storage_order(trained):
    out = trained["out"]
    for sub in ("06", "07"):
        dseg = out / f"sub-{sub}" / "anat" / f"sub-{sub}_space-T1w_desc-aseg_dseg.nii.gz"
        assert _world_centroid_x(dseg, 2) < 0 < _world_centroid_x(dseg, 41)   # RAS: left is x < 0
    a = nib.as_closest_canonical(nib.load(out / "sub-06/anat/sub-06_space-T1w_desc-aseg_dseg.nii.gz"))
    b = nib.as_closest_canonical(nib.load(out / "sub-07/anat/sub-07_space-T1w_desc-aseg_dseg.nii.gz"))
    assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))


def test_nibabies_queries_find_every_file(trained):
    from bids import BIDSLayout
    layout = BIDSLayout(str(trained["out"]), validate=False)
    for sub in ("01", "06", "07"):
        dseg = layout.get(subject=sub, space="T1w", desc="aseg", suffix="dseg", extension=[".nii.gz", ".nii"])
        mask = layout.get(subject=sub, space="T1w", desc="brain", suffix="mask", extension=[".nii.gz", ".nii"])
        assert len(dseg) == 1 and len(mask) == 1
        assert dseg[0].get_metadata()["SpatialReference"].endswith(f"sub-{sub}_T1w.nii.gz")
    description = json.loads((trained["out"] / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "bibsnet-trainer" and description["SourceDatasets"]
    tsv = (trained["out"] / "desc-aseg_dseg.tsv").read_text().splitlines()
    assert tsv[0] == "index\tname\tcolor" and "2\tLeft-Cerebral-White-Matter\t#f5f5f5" in tsv


def test_participant_dice_report_when_reference_exists(trained):
    group = json.loads((trained["out"] / "reports" / "group_desc-dice_report.json").read_text())
    held_out = group["training"]["held_out_subjects"][0]
    trained_on = group["training"]["real_train_subjects"][0]
    report = json.loads((trained["out"] / "reports" / f"sub-{held_out}_desc-dice_report.json").read_text())
    assert report["evaluated_on"].startswith("real held-out") and report["mean_dice"] is not None
    report = json.loads((trained["out"] / "reports" / f"sub-{trained_on}_desc-dice_report.json").read_text())
    assert "used in training" in report["evaluated_on"]
    assert not (trained["out"] / "reports" / "sub-06_desc-dice_report.json").exists()   # no reference


def test_reruns_resume_or_refuse(trained, capsys):
    out, bids, work = trained["out"], trained["bids"], trained["work"]
    mask = out / "sub-06" / "anat" / "sub-06_space-T1w_desc-brain_mask.nii.gz"
    stamp = mask.stat().st_mtime_ns
    assert main([str(bids), str(out), "participant", "-w", str(work), "--device", "cpu"]) == 0
    assert mask.stat().st_mtime_ns == stamp           # complete sessions are skipped
    manifest = (out / "models" / "model_seg_aseg_t1w_nnunet" / "manifest.json").read_bytes()
    code = main([str(bids), str(out), "group", "-w", str(work), "--preset", "cpu", "--device", "cpu"])
    assert code == 73 and "exists already" in capsys.readouterr().err
    assert (out / "models" / "model_seg_aseg_t1w_nnunet" / "manifest.json").read_bytes() == manifest


def test_participant_with_zipped_model_elsewhere(trained, tmp_path):
    archive = next((trained["out"] / "models").glob("*.zip"))
    out = tmp_path / "other"
    code = main([str(trained["bids"]), str(out), "participant", "-w", str(tmp_path / "w"), "--model", str(archive),
                 "--participant-label", "06", "--device", "cpu"])
    assert code == 0
    assert (out / "sub-06" / "anat" / "sub-06_space-T1w_desc-aseg_dseg.nii.gz").is_file()
    shutil.rmtree(out)


def test_qc_fails_a_mostly_empty_segmentation(trained, tmp_path):
    """A scan with no brain in it (a failed acquisition: smooth noise): whatever the demo-sized
    model makes of it (an empty segmentation, or structures drawn in noise by a model trained on
    random contrasts), its QC must say fail, never ok, and say why."""
    bids = tmp_path / "bids"
    anat = bids / "sub-01" / "anat"
    anat.mkdir(parents=True)
    shutil.copy(trained["bids"] / "dataset_description.json", bids)
    source = nib.load(trained["bids"] / "sub-06" / "anat" / "sub-06_T1w.nii.gz")
    noise = np.random.default_rng(0).normal(20, 2, source.shape).astype(np.float32)
    nib.save(nib.Nifti1Image(noise, source.affine), anat / "sub-01_T1w.nii.gz")
    package = next(p for p in (trained["out"] / "models").iterdir() if p.is_dir())
    out = tmp_path / "out"
    main([str(bids), str(out), "participant", "-w", str(tmp_path / "w"), "--model", str(package), "--device", "cpu",
          "--skip-bids-validation"])
    report = json.loads((out / "reports" / "sub-01_desc-qc_report.json").read_text())
    flags = {f["name"]: f for f in report["flags"]}
    assert report["status"] == "fail", flags
    failed = {name for name, flag in flags.items() if flag["status"] == "fail"}
    assert failed, flags                  # the flags that fail it say why
    assert flags["dice_mean"]["status"] == "n/a"


def test_folds_ensemble_fine_tuning_and_comparison(trained, tmp_path):
    """Two folds fine-tuned from the first model for a handful of iterations, evaluated as an
    ensemble and compared with the first model on the same held-out subject."""
    base = trained["out"] / "models" / "model_seg_aseg_t1w_nnunet"
    out, work = tmp_path / "out", tmp_path / "work"
    code = main([str(trained["bids"]), str(out), "group", "-w", str(work), "--preset", "cpu", "--epochs", "2",
                 "--iterations-per-epoch", "3", "--nprocs", "2", "--device", "cpu", "--test-fraction", "0.25",
                 "--folds", "2", "--init-from", str(base), "--compare-to", str(base)])
    assert code == 0
    splits = json.loads(next(work.rglob("splits_final.json")).read_text())
    assert len(splits) == 2 and set(splits[0]["val"]).isdisjoint(splits[1]["val"])
    assert all(c.startswith("real_") for fold in splits for c in fold["val"])           # real validation only
    package = out / "models" / "model_seg_aseg_t1w_nnunet"
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest["folds"] == ["fold_0", "fold_1"] and manifest["fine_tuned_from"]["name"] == base.name
    base_manifest = json.loads((base / "manifest.json").read_text())
    assert manifest["slice_context_mm"] == base_manifest["slice_context_mm"]     # the base model's input
    log = next(work.rglob("logs/train_fold1.log")).read_text()
    assert "pretrained weights" in log.lower() and "output-layer tensors transferred too" in log
    report = json.loads((out / "reports" / "group_desc-dice_report.json").read_text())
    assert report["training"]["evaluation"] == "ensemble of all folds"
    # six iterations from scratch give Dice near 0; from the first model's weights they keep most of it
    assert report["mean_dice"] >= 0.5, report["labels"]
    assert report["comparison"]["labels"] and report["comparison"]["paired_subjects"]


def test_the_console_shows_the_apps_own_messages(trained, tmp_path):
    """A participant run as a user starts it: the console carries the app's progress and results
    only; nnU-Net's device note, torch's and numpy's warnings go to the run's log file, which a
    line names."""
    import subprocess
    import sys

    package = next(p for p in (trained["out"] / "models").iterdir() if p.is_dir())
    work = tmp_path / "w"
    run = subprocess.run([sys.executable, "-m", "bibsnet_trainer.cli.run", str(trained["bids"]), str(tmp_path / "out"),
                          "participant", "--participant-label", "06", "--model", str(package), "-w", str(work),
                          "--device", "cpu", "--nprocs", "1"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    import re

    lines = [line for line in run.stderr.splitlines() if line.strip()]
    logged = [re.match(r"\d\d:\d\d:\d\d (\S+) (\w+): ", line) for line in lines]
    assert lines and all(m and m[1].startswith("bibsnet_trainer") for m in logged), lines
    assert not any("Warning" in line or "warn(" in line for line in lines), lines
    log = next((work / "logs").glob("participant_*.log"))
    assert any(str(log) in line for line in lines)
    assert "perform_everything_on_device" in log.read_text()     # nnU-Net's note: in the log only
    assert "perform_everything_on_device" not in run.stderr + run.stdout


@pytest.mark.parametrize("nprocs", ["1", "2"], ids=["Linear", "MultiProc"])
def test_one_bad_session_among_three(trained, tmp_path, caplog, nprocs):
    """A session whose image breaks mid-file fails with one line naming the file and its crash
    file; the other two are written; exit 1. In this process (Linear) and in workers (MultiProc)."""
    bids = tmp_path / "bids"
    source = trained["bids"] / "sub-06" / "anat" / "sub-06_T1w.nii.gz"
    for subject in ("01", "02", "03"):
        (bids / f"sub-{subject}" / "anat").mkdir(parents=True)
        shutil.copy(source, bids / f"sub-{subject}" / "anat" / f"sub-{subject}_T1w.nii.gz")
    shutil.copy(trained["bids"] / "dataset_description.json", bids)
    bad = bids / "sub-02" / "anat" / "sub-02_T1w.nii.gz"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    package = next(p for p in (trained["out"] / "models").iterdir() if p.is_dir())
    out = tmp_path / "out"
    code = main([str(bids), str(out), "participant", "-w", str(tmp_path / "w"), "--model", str(package),
                 "--device", "cpu", "--nprocs", nprocs, "--skip-bids-validation"])
    assert code == 1
    written = sorted(p.name for p in out.rglob("*_desc-aseg_dseg.nii.gz"))
    assert written == ["sub-01_space-T1w_desc-aseg_dseg.nii.gz", "sub-03_space-T1w_desc-aseg_dseg.nii.gz"]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and r.name.startswith("bibsnet_trainer")]
    assert len(errors) == 1 and errors[0].startswith("sub-02: ") and str(bad) in errors[0], errors
    crash = Path(errors[0].rsplit("crash file ", 1)[1].rstrip(")"))
    assert crash.is_file() and "sub_02" in crash.name
