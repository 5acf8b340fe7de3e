"""--target-spacing (with --train-on-all): a 1 mm dataset trained at 2 mm (the cpu preset, 2D, a few CPU minutes)
segments a 1 mm input onto its own grid; nnU-Net resamples the class probabilities, not the
labels, back to the input grid. Bar: mean Dice >= DICE_BAR against the input's reference."""
import json

import nibabel as nib
import numpy as np
import pytest

from bibsnet_trainer.cli.run import main
from bibsnet_trainer.evaluation.metrics import dice_per_label
from phantoms import write_bids

DICE_BAR = 0.6
pytestmark = pytest.mark.slow
SHAPE = (64, 72, 64)   # at 1 mm


def test_trained_at_2mm_segments_1mm_input_on_its_grid(tmp_path):
    bids = write_bids(tmp_path / "bids", {"01": "both", "02": "both", "03": "both", "04": "both"},
                      voxel_mm=1.0, shape=SHAPE)
    out, work = tmp_path / "out", tmp_path / "work"
    code = main([str(bids), str(out), "group", "-w", str(work), "--preset", "cpu", "--target-spacing", "2",
                 "--epochs", "9", "--iterations-per-epoch", "20", "--nprocs", "2", "--device", "cpu",
                 "--test-subjects", "04", "--train-on-all"])
    assert code == 0
    # --train-on-all: the three subjects not held out all train; nnU-Net validates on them
    split, = json.loads(next(work.rglob("splits_final.json")).read_text())
    assert set(split["val"]) == {"real_sub01", "real_sub02", "real_sub03"} <= set(split["train"])
    report = json.loads((out / "reports" / "group_desc-dice_report.json").read_text())
    assert report["training"]["validation"] == "the real training subjects (none kept out to validate)"
    package = out / "models" / "model_seg_aseg_t1w_nnunet"
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest["training_spacing_mm"] == [2.0, 2.0]        # 2D: in-plane spacing
    # neighbouring slices 2 and 4 mm away (2 and 4 voxels of the 1 mm input) as channels
    assert manifest["slice_context_mm"] == [0.0, -2.0, 2.0, -4.0, 4.0]
    plans = json.loads((package / manifest["nnunet_folder"] / "plans.json").read_text())
    assert plans["configurations"]["2d"]["spacing"] == [2.0, 2.0]
    assert plans["configurations"]["3d_fullres"]["spacing"] == [2.0, 2.0, 2.0]

    code = main([str(bids), str(out), "participant", "-w", str(work), "--participant-label", "04",
                 "--nprocs", "1", "--device", "cpu"])
    assert code == 0
    t1w = nib.load(bids / "sub-04" / "anat" / "sub-04_T1w.nii.gz")
    dseg = nib.load(out / "sub-04" / "anat" / "sub-04_space-T1w_desc-aseg_dseg.nii.gz")
    assert dseg.shape == t1w.shape == SHAPE and np.allclose(dseg.affine, t1w.affine)
    reference = np.asarray(nib.load(next(bids.rglob("sub-04_space-T1w_desc-aseg_dseg.nii.gz"))).dataobj)
    reference = np.where(np.isin(reference, [2, 3, 4, 16, 41, 42, 43]), reference, 0)
    scores = dice_per_label(np.asarray(dseg.dataobj), reference, [2, 3, 4, 16, 41, 42, 43])
    assert np.nanmean(list(scores.values())) >= DICE_BAR, scores
    # probabilities, not labels, were resampled: boundaries follow the 1 mm grid, not 2 mm blocks
    labels = np.asarray(dseg.dataobj)
    assert (labels[0::2] != labels[1::2]).any() and (labels[1:-1:2] != labels[2::2]).any()
