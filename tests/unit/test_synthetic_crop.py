"""Synthetic cases are cropped to the brain plus a margin, on the same world grid."""
import numpy as np

from bibsnet_trainer.group.dataset import cropped_to_head


def test_crop_keeps_every_label_voxel_in_place():
    affine = np.array([[-2.0, 0, 0, 90], [0, 0, 2.0, -100], [0, -2.0, 0, 110], [0, 0, 0, 1]])
    target = np.zeros((64, 64, 64), np.int16)
    target[20:40, 25:45, 15:35] = 3
    target[30, 30, 30] = 17
    image = np.random.default_rng(0).normal(50, 10, target.shape).astype(np.float32)   # no zero background

    (channel,), cropped = cropped_to_head([image], target, affine, margin=0.15)

    assert cropped.shape == channel.shape
    assert all(c < 64 for c in cropped.shape)
    assert np.count_nonzero(cropped.get_fdata()) == np.count_nonzero(target)
    # the voxel of label 17 lies at the same world point
    where = np.argwhere(np.asarray(cropped.dataobj) == 17)[0]
    world = cropped.affine @ np.r_[where, 1]
    np.testing.assert_allclose(world, affine @ np.r_[30, 30, 30, 1])
    np.testing.assert_allclose(np.asarray(channel.dataobj)[tuple(where)], image[30, 30, 30])
    # the margin: 15 % of the 20-voxel extent = 3 voxels each side
    assert cropped.shape == (26, 26, 26)


def test_empty_target_is_left_whole():
    target = np.zeros((8, 8, 8), np.int16)
    (channel,), cropped = cropped_to_head([np.ones((8, 8, 8), np.float32)], target, np.eye(4))
    assert cropped.shape == channel.shape == (8, 8, 8)
