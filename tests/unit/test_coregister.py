import time

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from scipy.ndimage import map_coordinates
from scipy.spatial.transform import Rotation

from bibsnet_trainer.participant.coregister import (image_t2w_to_t1w, itk_text, labels_t1w_to_t2w, labels_t2w_to_t1w,
                                        ras_matrix, read_transform, register_t2w_to_t1w, write_transforms,
                                        xfm_paths)
from phantoms import T2_INTENSITY, dice, phantom_labels, phantom_t1w, ras_affine, rigid

def oblique_las_affine(shape, voxel_mm, angle_deg, shift_mm) -> np.ndarray:
    """A LAS (x flipped) grid, rotated about z, centred near the origin + shift."""
    rot = Rotation.from_euler("z", angle_deg, degrees=True).as_matrix()
    linear = rot @ np.diag([-voxel_mm, voxel_mm, voxel_mm])
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = shift_mm - linear @ ((np.array(shape) - 1) / 2)
    return affine


def sample_labels(labels, source_affine, target_shape, target_affine, target_to_source_world):
    """Labels of the source at the target grid's points moved by target_to_source_world (4x4 RAS)."""
    ijk = np.indices(target_shape).reshape(3, -1)
    world = target_affine @ np.vstack([ijk, np.ones(ijk.shape[1])])
    src = np.linalg.inv(source_affine) @ target_to_source_world @ world
    return map_coordinates(labels, src[:3], order=0, mode="constant", cval=0).reshape(target_shape)


@pytest.fixture(scope="module")
def pair():
    labels = phantom_labels(seed=3)
    t1_affine = ras_affine(3.0, labels.shape)
    t1w = nib.Nifti1Image(phantom_t1w(labels, seed=3), t1_affine)
    t2_shape = (52, 60, 50)
    t2_affine = oblique_las_affine(t2_shape, 2.5, angle_deg=6.0, shift_mm=np.array([3.0, -5.0, 4.0]))
    # the head moved between the scans: a T1w-world point x is at motion @ x in the T2w world
    motion = rigid([8.0, 4.0, -6.0], np.array([6.0, -4.0, 5.0]), center_mm=np.array([0.0, 0.0, 10.0]))
    t2_labels = sample_labels(labels, t1_affine, t2_shape, t2_affine, np.linalg.inv(motion))
    rng = np.random.default_rng(7)
    t2_data = np.zeros(t2_shape, np.float32)
    for code, value in T2_INTENSITY.items():
        t2_data[t2_labels == code] = value
    t2_data += rng.normal(0, 4, t2_shape).astype(np.float32)
    t2w = nib.Nifti1Image(t2_data, t2_affine)
    return labels, t1w, t2_labels, t2w, motion


@pytest.fixture(scope="module")
def registered(pair):
    labels, t1w, _, t2w, _ = pair
    start = time.perf_counter()
    transform = register_t2w_to_t1w(t1w, t2w, threads=2)
    return transform, time.perf_counter() - start


def test_registration_recovers_the_motion(pair, registered):
    labels, t1w, _, _, motion = pair
    transform, seconds = registered
    brain = np.argwhere((labels > 0) & (labels != 507)).T
    world = t1w.affine @ np.vstack([brain, np.ones(brain.shape[1])])
    recovered = ras_matrix(transform) @ world
    error_mm = np.linalg.norm((recovered - motion @ world)[:3], axis=0)
    print(f"registration {seconds:.1f} s, mean error {error_mm.mean():.3f} mm, max {error_mm.max():.3f} mm")
    assert error_mm.mean() < 1.0          # a third of a T1w voxel (3 mm)
    assert error_mm.max() < 3.0


def test_labels_move_between_grids(pair, registered):
    labels, t1w, t2_labels, t2w, _ = pair
    transform, _ = registered
    on_t2w = labels_t1w_to_t2w(labels, t1w, t2w, transform)
    assert on_t2w.shape == t2w.shape and on_t2w.dtype == labels.dtype
    assert dice(on_t2w > 0, t2_labels > 0) > 0.95
    per_label = [dice(on_t2w == c, t2_labels == c) for c in np.unique(labels) if c]
    assert np.mean(per_label) > 0.9, per_label
    back = labels_t2w_to_t1w(on_t2w, t2w, t1w, transform)
    assert back.shape == labels.shape
    assert dice(back > 0, labels > 0) > 0.95
    t2_on_t1 = image_t2w_to_t1w(t2w, t1w, transform)
    wm = np.isin(labels, (2, 41))
    ventricles = np.isin(labels, (4, 43))
    assert t2_on_t1[ventricles].mean() > t2_on_t1[wm].mean() + 50    # T2w contrast, aligned


def test_transform_files_as_nibabies_reads_them(pair, registered, tmp_path):
    _, t1w, _, t2w, motion = pair
    transform, _ = registered
    paths = write_transforms(transform, tmp_path, "01", "A")
    assert paths == xfm_paths(tmp_path, "01", "A")
    assert paths["t2w_to_t1w"] == tmp_path / "sub-01/ses-A/anat/sub-01_ses-A_from-T2w_to-T1w_mode-image_xfm.txt"
    assert paths["t1w_to_t2w"].name == "sub-01_ses-A_from-T1w_to-T2w_mode-image_xfm.txt"
    assert xfm_paths(tmp_path, "01")["t2w_to_t1w"] == tmp_path / "sub-01/anat/sub-01_from-T2w_to-T1w_mode-image_xfm.txt"
    text = paths["t2w_to_t1w"].read_text()
    lines = text.splitlines()
    assert lines[:3] == ["#Insight Transform File V1.0", "#Transform 0", "Transform: AffineTransform_double_3_3"]
    assert lines[4] == "FixedParameters: 0 0 0"
    # parse as nitransforms does (9 matrix values + 3 translation, LPS, centre 0)
    values = np.array(lines[3].split(":")[1].split(), float)
    lps = np.eye(4)
    lps[:3, :3], lps[:3, 3] = values[:9].reshape(3, 3), values[9:]
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    np.testing.assert_allclose(flip @ lps @ flip, ras_matrix(transform), atol=1e-9)
    # ITK reads both back; the two files are each other's inverse
    forward = read_transform(paths["t2w_to_t1w"])
    backward = read_transform(paths["t1w_to_t2w"])
    point = (10.0, -20.0, 30.0)
    np.testing.assert_allclose(backward.TransformPoint(forward.TransformPoint(point)), point, atol=1e-6)
    np.testing.assert_allclose(forward.TransformPoint(point), transform.TransformPoint(point), atol=1e-6)
    assert itk_text(sitk.Euler3DTransform()).splitlines()[3] == "Parameters: " + " ".join(
        ["1.0", "0.0", "0.0", "0.0", "1.0", "0.0", "0.0", "0.0", "1.0", "0.0", "0.0", "0.0"])
