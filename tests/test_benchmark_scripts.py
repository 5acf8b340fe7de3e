"""The benchmark scripts still run and print their figures (they are run by hand, on a lent GPU
too, where a broken script costs scarce device time). No timing is asserted: only that each
prints the lines its README documents."""
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from phantoms import phantom_labels, ras_affine

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(*args: str) -> str:
    env = {**os.environ, "NIPYPE_NO_ET": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
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


def test_real_scans_prints_arms_and_the_last_line(shared_data, tmp_path):
    """benchmarks/real_scans.py end to end at a tiny size (4 mm, seconds of training): the table,
    the package path and, as its last line, the held-out mean Dice; the real-data step of
    gpu_session.sh runs this script."""
    out = _run("benchmarks/real_scans.py", str(tmp_path / "work"), "--shared", str(shared_data), "--voxel-mm", "4",
               "--minutes", "0.2", "--arms", "real+synthetic", "--synthetic-per-map", "1")
    lines = out.strip().splitlines()
    assert lines[-1].startswith("real+synthetic held-out mean Dice ")
    float(lines[-1].rsplit(" ", 1)[1])
    assert any(line.startswith("Cerebral-White-Matter") for line in lines)
    assert "raw-like" in out and (tmp_path / "work" / "real_synthetic" / "participant_raw_like" / "reports").is_dir()
    assert "real+synthetic model package: " + str(tmp_path / "work" / "real_synthetic" / "models") in out
    row = next(line.split() for line in lines if line.startswith("real+synthetic ") and "model package" not in line)
    assert int(row[2]) > 0                    # iterations: epochs times the training job's iterations


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
