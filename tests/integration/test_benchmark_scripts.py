"""The benchmark scripts still run and print their figures (they are run by hand, on a GPU
too, where a broken script costs scarce device time). No timing is asserted: only that each
prints the lines its README documents."""
import json
import os
import re
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from phantoms import phantom_labels, ras_affine

from conftest import ROOT

pytestmark = pytest.mark.slow


def _run(*args: str, timeout: int = 600) -> str:
    env = {**os.environ, "NIPYPE_NO_ET": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def label_map(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "labels.nii.gz"
    labels = phantom_labels(shape=(40, 48, 40), seed=0)
    nib.save(nib.Nifti1Image(labels.astype(np.int16), ras_affine(1.0, labels.shape)), path)
    return path


def test_synthesis_throughput_prints_both_generators_and_the_ratio(label_map):
    out = _run("benchmarks/synthesis_throughput.py", str(label_map), "--size", "32", "--n", "1", "--device", "cpu")
    assert "ours (LabelSynthesizer)" in out and "plain cornucopia SynthFromLabelTransform" in out
    assert "speed-up of ours over plain cornucopia" in out


def test_synthesis_profile_counts_device_calls(label_map):
    out = _run("benchmarks/synthesis_throughput.py", str(label_map), "--size", "32", "--profile", "--device", "cpu")
    assert "aten operator calls per volume" in out and "on the synthesis device" in out


def test_onthefly_iteration_times_both_trainers():
    out = _run("benchmarks/onthefly_iteration.py", "--device", "cpu", "--threads", "1", "--iterations", "1",
               "--rounds", "1", "--warmup", "1")
    assert "nnUNetTrainerBibsnet " in out and "nnUNetTrainerBibsnetOnTheFly" in out
    assert "ratio on-the-fly / stored images" in out


@pytest.fixture(scope="module")
def tiny_real_scans(tmp_path_factory):
    """benchmarks/real_scans.py at a tiny size (4 mm, seconds of training), run once for the tests
    of its output and of the cross-site benchmark on its model."""
    from conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    work = tmp_path_factory.mktemp("real_scans") / "work"
    out = _run("benchmarks/real_scans.py", str(work), "--shared", str(SHARED_DATA), "--voxel-mm", "4",
               "--minutes", "0.2", "--arms", "real+synthetic", "--synthetic-per-map", "1", "--no-cross-site",
               "--test-subjects", "07", "08")
    return work, out


def test_real_scans_prints_arms_and_the_last_line(tiny_real_scans):
    """The table, the package path and, as its last line, the held-out mean Dice; the real-data
    step of gpu_figures.sh runs this script."""
    work, out = tiny_real_scans
    lines = out.strip().splitlines()
    assert lines[-1].startswith("real+synthetic held-out mean Dice ")
    float(lines[-1].rsplit(" ", 1)[1])
    assert any(line.startswith("Cerebral-White-Matter") for line in lines)
    assert "raw-like" in out and "participant level on held_out, mne, raw_like: " in out
    reports = work / "real_synthetic" / "participant" / "reports"   # one participant run for the three sets
    assert {p.name for p in reports.glob("*_desc-dice_report.json")} >= {
        "sub-heldout07_desc-dice_report.json", "sub-mnemne_desc-dice_report.json", "sub-rawlike08_desc-dice_report.json"}
    assert "real+synthetic model package: " + str(work / "real_synthetic" / "models") in out
    row = next(line.split() for line in lines if line.startswith("real+synthetic ") and "model package" not in line)
    assert int(row[2]) > 0                    # iterations: epochs times the training job's iterations


def test_cross_site_scores_every_set(shared_data, tiny_real_scans, tmp_path):
    """benchmarks/cross_site.py at a tiny size (the 4 mm model above, one of its held-out subjects):
    every set segmented by the participant level and scored, per-subject figures in [0, 1], the
    thick-slice scan on a grid with 5 mm along one axis, and its documented last line."""
    package = next(p for p in (tiny_real_scans[0] / "real_synthetic" / "models").glob("model_seg_*") if p.is_dir())
    work = tmp_path / "cross"
    out = _run("benchmarks/cross_site.py", str(package), str(work), "--shared", str(shared_data), "--voxel-mm", "4",
               "--test-subjects", "07", timeout=900)
    last = out.strip().splitlines()[-1]
    number = r"([01]\.\d{3})"
    assert re.fullmatch(rf"cross-site GM\+WM {number}, skull-stripped aseg {number}, inverted aseg {number}, "
                        rf"MNE aseg {number}", last), last
    result = json.loads((work / "cross_site.json").read_text())
    assert result["model_package"] == str(package.resolve())
    assert "CPU cores" in result["machine"] and result["code"]          # where and with what it was measured
    sets = result["sets"]
    assert set(sets) == {"mne", "nii2mesh", "icbm152", "whole_head", "skull_stripped", "raw_like", "inverted",
                         "thick_slices", "iso3mm"}
    for name, scored in sets.items():   # nilearn (the ICBM152 template) is in the test lock: no set is skipped
        assert scored["status"] == "scored", (name, scored.get("reason"))
        assert len(scored["subjects"]) == 1, name
        for subject, figures in scored["subjects"].items():
            values = [figures[k] for k in ("mask", "csf", "gm", "wm", "gm_wm") if figures[k] is not None]
            values += list(figures.get("structures", {}).values())
            assert values and all(0.0 <= v <= 1.0 for v in values), (name, subject, figures)
        assert (scored["mean"]["aseg_mean"] is not None) == (scored["reference"] == "aseg"), name
    image = nib.load(work / "data" / "thick_slices" / "sub-07" / "anat" / "sub-07_T1w.nii.gz")
    zooms = [round(float(z), 2) for z in image.header.get_zooms()[:3]]
    assert zooms[0] == 5.0 and zooms[1:] == [4.0, 4.0], zooms       # the first subject: thick along axis 0
    assert sets["thick_slices"]["subjects"]["07"]["voxel_mm"] == zooms   # outputs on that grid


def test_cpu_recipe_variants_change_the_training_not_the_dataset():
    import importlib.util
    spec = importlib.util.spec_from_file_location("cpu_recipe", ROOT / "benchmarks" / "cpu_recipe.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    from bibsnet_trainer.nnunet.presets import PRESETS
    variant = recipe.variant_preset(PRESETS["cpu"], "b8", ["batch_size=8", "patch_size=64,64", "initial_lr=0.003"], 5)
    assert (variant.batch_size, variant.patch_size, variant.initial_lr, variant.minutes) == (8, (64, 64), 0.003, 5)
    assert variant.configuration == "2d_small_b8"
    for setting in ("context_slices=1", "target_spacing_mm=1.5"):
        with pytest.raises(SystemExit, match="changes the dataset"):
            recipe.variant_preset(PRESETS["cpu"], "x", [setting], 5)


def test_learning_curve_reads_nnunets_epoch_lines():
    import importlib.util
    spec = importlib.util.spec_from_file_location("learning_curve", ROOT / "benchmarks" / "learning_curve.py")
    curve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(curve)
    log = ("2026-12-07 05:51:05: train_loss 0.5\n2026-12-07 05:51:05: Pseudo dice [np.float32(0.2), np.float32(0.4)]\n"
           "2026-12-07 05:52:05: train_loss 0.25\n2026-12-07 05:52:05: Pseudo dice [np.float32(0.6), np.float32(nan)]\n"
           "2026-12-07 05:53:05: train_loss 0.1\n")       # an epoch cut short: no pseudo-Dice yet
    read = curve.read_log(log)
    assert read["loss"].tolist() == [0.5, 0.25]
    assert np.allclose(read["pseudo_dice"], [0.3, 0.6])
