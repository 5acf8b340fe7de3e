import gzip

import nibabel as nib
import numpy as np
import pytest

from bibsnet_trainer.errors import InputError
from bibsnet_trainer.images import from_canonical, load_volume, save_atomic, to_canonical


def _save(tmp_path, data, name="img.nii.gz", affine=None):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    return path


def test_truncated_file_names_the_file(tmp_path):
    path = _save(tmp_path, np.ones((10, 10, 10), np.float32))
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(InputError) as err:
        load_volume(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("shape", [(10, 10), (10, 10, 10, 3), (10, 10, 1)])
def test_not_3d_is_refused(tmp_path, shape):
    path = _save(tmp_path, np.ones(shape, np.float32))
    with pytest.raises(InputError, match="3D"):
        load_volume(path)


def test_nan_image_refused(tmp_path):
    data = np.ones((5, 5, 5), np.float32)
    data[1, 1, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        load_volume(_save(tmp_path, data))


def test_label_maps(tmp_path):
    floats = np.zeros((5, 5, 5), np.float32)
    floats[2, 2, 2] = 17.0
    assert load_volume(_save(tmp_path, floats, "a.nii.gz"), kind="label").get_data_dtype() == np.int32
    floats[1, 1, 1] = 2.5
    with pytest.raises(InputError, match="non-integer"):
        load_volume(_save(tmp_path, floats, "b.nii.gz"), kind="label")
    with pytest.raises(InputError, match="empty"):
        load_volume(_save(tmp_path, np.zeros((5, 5, 5), np.int16), "c.nii.gz"), kind="label")


def _affine(codes):
    """2 mm affine whose array axes point along `codes` (e.g. ("L", "I", "A"))."""
    affine = np.eye(4)
    affine[:3, :3] = 0
    for axis, code in enumerate(codes):
        world = "RLAPSI".index(code) // 2
        affine[world, axis] = 2.0 if code in "RAS" else -2.0
    return affine


@pytest.mark.parametrize("codes", [("R", "A", "S"), ("L", "A", "S"), ("L", "P", "S"), ("L", "I", "A")])
def test_canonical_round_trip_keeps_world_positions(codes):
    affine = _affine(codes)
    rotation = nib.eulerangles.euler2mat(0.2, 0.1, 0.05)
    affine[:3, :3] = rotation @ affine[:3, :3]           # oblique too
    data = np.arange(6 * 7 * 8, dtype=np.int32).reshape(6, 7, 8)
    img = nib.Nifti1Image(data, affine)
    canon = to_canonical(img)
    assert nib.aff2axcodes(canon.affine) == ("R", "A", "S")
    assert np.array_equal(from_canonical(np.asarray(canon.dataobj), img), data)
    # the voxel holding value v maps to the same world point in both images
    v = 123
    world = img.affine @ np.r_[np.argwhere(data == v)[0], 1]
    world_canon = canon.affine @ np.r_[np.argwhere(np.asarray(canon.dataobj) == v)[0], 1]
    assert np.allclose(world, world_canon)


def test_save_atomic_leaves_no_temp(tmp_path):
    save_atomic(nib.Nifti1Image(np.zeros((3, 3, 3), np.uint8), np.eye(4)), tmp_path / "x" / "y.nii.gz")
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["y.nii.gz"]


def test_left_right_axis():
    from bibsnet_trainer.images import left_right_axis
    assert left_right_axis(_affine(("R", "A", "S"))) == 0
    assert left_right_axis(_affine(("A", "S", "L"))) == 2
    assert left_right_axis(_affine(("L", "I", "A"))) == 0
    assert nib.aff2axcodes(_affine(("A", "S", "L"))) == ("A", "S", "L")


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    import os
    import stat
    from bibsnet_trainer.images import save_atomic, write_text_atomic
    old = os.umask(0o022)
    try:
        text = write_text_atomic(tmp_path / "a.json", "{}")
        image = save_atomic(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)), tmp_path / "a.nii.gz")
    finally:
        os.umask(old)
    assert stat.S_IMODE(text.stat().st_mode) == 0o644 and stat.S_IMODE(image.stat().st_mode) == 0o644
