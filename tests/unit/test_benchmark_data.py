"""benchmarks/real_data.py: downsampling real scans for the benchmarks keeps image and labels
on one grid, in the same world position."""
import sys

import nibabel as nib
import numpy as np

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
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


def test_raw_like_perturbation_is_smooth_deterministic_and_keeps_the_anatomy():
    import real_data
    image = np.zeros((32, 32, 32), np.float32)
    image[8:24, 8:24, 8:24] = 110.0
    field = real_data.bias_field(image.shape, seed=3)
    assert 0.6 < field.min() < 1.0 < field.max() < 1.5
    assert np.abs(np.diff(field, axis=0)).max() < 0.05                     # smooth: a coil, not noise
    a, b = real_data.perturb_scan(image, seed=3), real_data.perturb_scan(image, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a[8:24, 8:24, 8:24].mean() > 5 * a[:4].mean()                    # the object still stands out
    assert not np.allclose(a[8:24, 8:24, 8:24] / a[8:24, 8:24, 8:24].mean(), 1.0, atol=0.05)   # but unevenly
