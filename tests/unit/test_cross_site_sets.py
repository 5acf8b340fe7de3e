"""benchmarks/cross_site.py: the thick-slice copy of the k-th held-out subject has its 5 mm slices
along axis k % 3 (every axis covered by three subjects), in-plane voxels of --voxel-mm, and image
and labels on one grid. The suite's run of the script scores one subject (axis 0) only."""
import sys

import nibabel as nib
import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import cross_site  # noqa: E402


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_thick_slices_run_along_axis_k_mod_3(k):
    shape = (40, 40, 40)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    t1 = nib.Nifti1Image(np.random.default_rng(k).random(shape, np.float32), affine)
    aseg = nib.Nifti1Image(np.full(shape, 2, np.int16), affine)
    image, labels = cross_site.held_out_variant("thick_slices", k, t1, aseg, np.ones(shape, bool), 4.0)
    zooms = [round(float(z), 2) for z in image.header.get_zooms()[:3]]
    expected = [4.0, 4.0, 4.0]
    expected[k % 3] = 5.0
    assert zooms == expected
    assert image.shape == labels.shape and np.allclose(image.affine, labels.affine)
    assert set(np.unique(np.asarray(labels.dataobj))) == {2}
