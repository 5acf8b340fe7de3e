"""Header and geometry checks before any work: what makes a file unusable is refused in one line
naming it, what is suspicious but usable is a warning."""
import logging

import nibabel as nib
import numpy as np
import pytest

from bibsnet_trainer import geometry
from bibsnet_trainer.errors import InputError
from bibsnet_trainer.images import load_volume


def _image(shape=(12, 12, 12), affine=None, dtype=np.float32, data=None):
    data = np.random.default_rng(0).random(shape).astype(dtype) if data is None else data
    return nib.Nifti1Image(data, np.eye(4) if affine is None else affine)


def _patched(img, path, **fields):
    """Save `img` as an uncompressed NIfTI, then overwrite header fields in the file itself
    (nibabel would rewrite them from the image on saving): a damaged header as a user has it."""
    nib.save(img, path)
    header = nib.Nifti1Header.from_fileobj(open(path, "rb"))
    for name, value in fields.items():
        header[name] = value
    with open(path, "r+b") as handle:
        handle.write(header.binaryblock)
    return path


def _singular_sform(path):
    img = _image()
    img.set_qform(None, code=0)
    return _patched(img, path, srow_y=[0.0, 0.0, 0.0, 0.0], sform_code=1)   # a zero row: no geometry


def _nan_sform(path):
    img = _image()
    img.set_qform(None, code=0)
    return _patched(img, path, srow_y=[0.0, np.nan, 0.0, 0.0], sform_code=1)


def _nan_zoom(path):
    return _patched(_image(), path, pixdim=[1.0, 1.0, np.nan, 1.0, 1.0, 1.0, 1.0, 1.0])


def _saved(make):
    return lambda path: (nib.save(make(), path), path)[1]


@pytest.mark.parametrize("write, words", [
    (_singular_sform, "singular"),
    (_nan_sform, "NaN or Inf"),
    (_nan_zoom, "voxel sizes must be positive"),
    (lambda path: _patched(_image(), path, scl_slope=np.inf), "scl_slope is inf"),
    (lambda path: _patched(_image(), path, scl_slope=2.0, scl_inter=np.nan), "scl_inter is nan"),
    (_saved(lambda: _image(data=np.ones((8, 8, 8), np.complex64))), "real scalars"),
    (_saved(lambda: _image(shape=(1030, 4, 4))), "more than 1024 voxels"),
    (_saved(lambda: _image(affine=np.diag([12.0, 12.0, 12.0, 1.0]))), "voxels of 12 mm"),
    (_saved(lambda: _image(data=np.full((10, 10, 10), 7.0, np.float32))), "same value (7)"),
])
def test_unusable_images_are_refused_naming_the_file(tmp_path, write, words):
    path = write(tmp_path / "sub-01_T1w.nii")
    with pytest.raises(InputError) as error:
        load_volume(path)
    assert words in error.value.message and str(error.value.path) == str(path)


def test_rgb_data_are_refused(tmp_path):
    rgb = np.zeros((6, 6, 6), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    path = tmp_path / "rgb.nii.gz"
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), path)
    with pytest.raises(InputError, match="real scalars"):
        load_volume(path)


def test_suspicious_geometry_is_warned_and_loaded(tmp_path, caplog):
    from scipy.spatial.transform import Rotation

    oblique = np.eye(4)       # the z axis turned towards the cube's diagonal: 55 degrees off
    oblique[:3, :3] = Rotation.from_rotvec(np.radians(54.7) * np.array([1, -1, 0]) / np.sqrt(2)).as_matrix()
    img = _image(affine=oblique @ np.diag([1.0, 1.0, 5.0, 1.0]))
    moved = img.affine.copy()
    moved[:3, 3] += 4.0
    img.set_qform(moved, code=1)                            # qform 7 mm away from the sform
    path = tmp_path / "sub-01_T1w.nii.gz"
    nib.save(img, path)
    with caplog.at_level(logging.WARNING):
        loaded = load_volume(path)
    assert np.allclose(loaded.affine, img.get_sform())     # the sform is used
    text = caplog.text
    assert "sform and qform disagree by up to 6.9 mm" in text and "the sform is used" in text
    assert "oblique by 55 degrees" in text and "anisotropic beyond 4:1" in text and str(path) in text


def test_ordinary_images_pass_quietly():
    img = _image(affine=np.diag([-1.0, 1.0, 1.2, 1.0]))
    assert geometry.header_problem(img) is None and geometry.header_warnings(img) == []
    assert geometry.data_problem(np.asarray(img.dataobj)) is None


def test_a_label_map_elsewhere_in_the_world_is_named(tmp_path):
    from bibsnet_trainer.bids.inputs import Session, validate_session

    image, labels = tmp_path / "sub-01_T1w.nii.gz", tmp_path / "sub-01_desc-aseg_dseg.nii.gz"
    nib.save(_image(), image)
    shifted = np.eye(4)
    shifted[:3, 3] = [0.0, 0.0, 20.0]
    nib.save(nib.Nifti1Image(np.ones((12, 12, 12), np.int16) * 2, shifted), labels)
    with pytest.raises(InputError) as error:
        validate_session(Session("01", None, {"T1w": image}, labels, "T1w"))
    assert "lies elsewhere in the world (up to 20.0 mm apart)" in error.value.message
    assert str(error.value.path) == str(labels)


def test_a_slope_of_zero_or_nan_is_no_scaling(tmp_path, caplog):
    """The NIfTI rule, and what nibabel writes for float data: the stored values as they are; an
    intercept beside a zero slope is ignored, with a warning."""
    data = np.arange(8 ** 3, dtype=np.float32).reshape(8, 8, 8)
    for slope, inter, warned in ((np.nan, 0.0, False), (0.0, 0.0, False), (0.0, 5.0, True)):
        caplog.clear()
        path = _patched(_image(data=data), tmp_path / "scaled.nii", scl_slope=slope, scl_inter=inter)
        with caplog.at_level(logging.WARNING):
            loaded = load_volume(path)
        assert np.array_equal(np.asarray(loaded.dataobj), data)
        assert any("scl_inter 5 is ignored" in r.getMessage() for r in caplog.records) == warned
