"""benchmarks/real_data.py: downsampling real scans for the benchmarks keeps image and labels
on one grid, in the same world position."""
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import real_data  # noqa: E402


def test_block_downsampling_keeps_world_positions_and_majority_labels():
    affine = np.array([[-1.0, 0, 0, 128], [0, 0, 1, -128], [0, -1, 0, 128], [0, 0, 0, 1]])   # LIA, 1 mm
    labels = np.zeros((8, 8, 8), np.int16)
    labels[:2, :2, :2] = 17
    labels[0, 0, 0] = 4                      # a minority voxel in the first block
    image = labels.astype(np.float32) * 10
    small_image, small_labels = real_data.resample_pair(nib.Nifti1Image(image, affine),
                                                        nib.Nifti1Image(labels, affine), 2.0)
    assert small_labels.shape == (4, 4, 4) and np.allclose(small_image.affine, small_labels.affine)
    assert np.asarray(small_labels.dataobj)[0, 0, 0] == 17
    assert np.isclose(np.asarray(small_image.dataobj)[0, 0, 0], (7 * 170 + 40) / 8)
    # the first 2 mm voxel's centre is the mean of its eight 1 mm voxel centres
    centres = affine @ np.array([[i, j, k, 1] for i in (0, 1) for j in (0, 1) for k in (0, 1)]).T
    assert np.allclose(small_labels.affine @ [0, 0, 0, 1], centres.mean(1))
    assert np.allclose(np.abs(np.diag(small_labels.affine[:3, :3]))[[0]], 2.0)
