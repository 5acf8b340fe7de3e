from dataclasses import replace

import numpy as np
import pytest

from bibsnet_trainer.synthesis import LabelSynthesizer, SynthesisConfig
from phantoms import phantom_labels


@pytest.fixture(scope="module")
def labels():
    return phantom_labels(shape=(32, 36, 32), seed=3)


def test_seed_gives_identical_output(labels):
    synth = LabelSynthesizer(SynthesisConfig(), voxel_mm=3.0)
    a, ta = synth.sample(labels, seed=7)
    b, tb = synth.sample(labels, seed=7)
    c, _ = synth.sample(labels, seed=8)
    assert np.array_equal(a, b) and np.array_equal(ta, tb)
    assert not np.array_equal(a, c)


def test_targets_drop_extra_cerebral_and_channels_share_geometry(labels):
    synth = LabelSynthesizer(SynthesisConfig(skull_strip_probability=0.0), n_channels=2, voxel_mm=3.0)
    images, target = synth.sample(labels, seed=1)
    assert images.shape == (2,) + labels.shape and images.dtype == np.float32
    assert 507 not in np.unique(target)                       # skull: generation label only
    assert {2, 3, 41, 42} <= set(np.unique(target).tolist())
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert not np.allclose(images[0], images[1])               # independent contrasts
    # both channels are drawn from one deformed map: brain region has signal in both
    brain = target > 0
    assert images[0][brain].mean() > 0 and images[1][brain].mean() > 0


def test_synthesis_from_real_synthseg_map(shared_data):
    import nibabel as nib
    from nibabel.processing import resample_to_output
    src = nib.load(shared_data / "synthseg" / "training_label_maps" / "training_seg_05.nii.gz")
    small = resample_to_output(nib.Nifti1Image(np.asanyarray(src.dataobj).astype(np.int32), src.affine), 3.0, order=0)
    codes = np.asarray(small.dataobj).astype(np.int32)
    images, target = LabelSynthesizer(SynthesisConfig(), voxel_mm=3.0).sample(codes, seed=0)
    assert images.shape[1:] == codes.shape
    assert target.max() < 500 and len(np.unique(target)) > 25


def _centroid(target, code, axis=0):
    return np.argwhere(target == code)[:, axis].mean()


def test_flip_swaps_labels_so_left_stays_left(labels):
    config = SynthesisConfig(flip_probability=1.0, rotation=0, zooms=0, elastic=0, skull_strip_probability=0)
    synth = LabelSynthesizer(config, voxel_mm=3.0)
    _, flipped = synth.sample(labels, seed=2, lr_axis=0)
    _, unflipped = synth.sample(labels, seed=2)
    # phantom axis 0 runs left -> right: Left-* structures stay at low indices after the flip
    assert _centroid(flipped, 2) < labels.shape[0] / 2 < _centroid(flipped, 41)
    assert _centroid(unflipped, 2) < labels.shape[0] / 2 < _centroid(unflipped, 41)
    assert not np.array_equal(flipped, unflipped)   # the flip happened (the phantom is not symmetric)


def test_codes_sharing_an_intensity_class_share_a_mean():
    from bibsnet_trainer.synthesis.priors import class_table
    classes = class_table("synthseg")
    assert classes[4] == classes[5] and classes[17] == classes[18] and classes[2] != classes[41]
    codes = np.zeros((24, 24, 24), np.int32)
    codes[4:20, 4:12, 4:20] = 4      # lateral ventricle
    codes[4:20, 12:20, 4:20] = 5     # inferior lateral ventricle: same SynthSeg class
    codes[4:20, 20:23, 4:20] = 2
    flat = SynthesisConfig(rotation=0, zooms=0, elastic=0, skull_strip_probability=0, gmm_fwhm=0,
                           bias_strength=0, gamma=0, motion_fwhm=0, max_slice_mm=3.0, snr=1e6)
    means = []
    for preset in ("synthseg", None):
        images, target = LabelSynthesizer(replace(flat, intensity_classes=preset), voxel_mm=3.0).sample(codes, seed=5)
        means.append([images[0][target == c].mean() for c in (4, 5)])
    assert abs(means[0][0] - means[0][1]) < 0.02          # shared Gaussian
    assert abs(means[1][0] - means[1][1]) > 0.02          # one Gaussian each


def test_background_components_become_extra_generation_labels():
    from bibsnet_trainer.labels import to_target
    from bibsnet_trainer.synthesis.background_labels import split_background
    labels = np.zeros((20, 20, 20), np.int32)
    labels[6:14, 6:14, 6:14] = 2
    image = np.zeros(labels.shape, np.float32)
    image[:, :, 10:] = 50.0                      # "scalp" half of the background
    image[:, :, 15:] = 150.0                     # "skull" slab
    image[labels == 2] = 100.0
    image += np.random.default_rng(0).normal(0, 1, labels.shape).astype(np.float32)
    split = split_background(image, labels, 3)
    assert set(np.unique(split).tolist()) == {0, 2, 901, 902}
    assert (split[:, :, :10][labels[:, :, :10] == 0] == 0).all()           # air stays background
    assert (split[:, :, 16:] == 902).all() and (split[labels == 2] == 2).all()
    assert set(np.unique(to_target(split)).tolist()) == {0, 2}             # never a target label


def _axis_roughness(image):
    return np.array([np.mean(np.diff(image, axis=a) ** 2) for a in range(3)])


def test_thick_slices_smooth_one_axis_only():
    rng = np.random.default_rng(0)
    codes = rng.choice([2, 3, 24], size=(10, 10, 10)).repeat(3, 0).repeat(3, 1).repeat(3, 2).astype(np.int32)
    flat = SynthesisConfig(rotation=0, zooms=0, shears=0, elastic=0, skull_strip_probability=0, gmm_fwhm=0,
                           bias_strength=0, gamma=0, motion_fwhm=0, snr=1e6, flip_probability=0,
                           max_slice_mm=8.0, max_iso_mm=8.0)
    spread = {}
    for p in (1.0, 0.0):
        synth = LabelSynthesizer(replace(flat, thick_slice_probability=p), voxel_mm=1.0)
        ratios = []
        for seed in range(6):
            r = _axis_roughness(synth.sample(codes, seed=seed)[0][0])
            ratios.append(r.min() / r.max())
        spread[p] = np.median(ratios)
    assert spread[1.0] < 0.5 * spread[0.0]       # thick slices: one axis much smoother than the others


def test_preview_outlines_each_label_in_its_own_colour():
    from bibsnet_trainer.reports.figures import label_colours, overlay_rgba
    labels = np.zeros((20, 20), np.int32)
    labels[2:9, 2:18], labels[11:18, 2:18] = 2, 41          # left and right cerebral white matter
    rgba = overlay_rgba(labels, label_colours(), 1)          # what the preview draws
    left = {tuple(c) for c in rgba[2:9][rgba[2:9, :, 3] > 0][:, :3].round(3)}
    right = {tuple(c) for c in rgba[11:18][rgba[11:18, :, 3] > 0][:, :3].round(3)}
    assert len(left) == 1 and len(right) == 1 and left != right
    assert rgba[labels == 0][:, 3].max() == 0                 # background stays transparent


def test_given_air_stays_background_and_the_head_is_split():
    """A noisy air split by a mixture alone falls into bands of noise when the head has fewer
    kinds of tissue than components; the air as the air rule finds it stays 0 whole, and the
    components describe the head around the labels."""
    from bibsnet_trainer.nnunet.background import air_mask
    from bibsnet_trainer.synthesis.background_labels import split_background
    rng = np.random.default_rng(0)
    labels = np.zeros((24, 24, 24), np.int32)
    labels[8:16, 8:16, 8:16] = 2
    image = rng.normal(3, 1, labels.shape).astype(np.float32)              # noisy air
    image[4:20, 4:20, 4:20] = rng.normal(60, 1, (16, 16, 16))              # one head tissue
    image[labels == 2] = 100.0
    air = air_mask(image)
    head = (labels == 0) & ~air
    assert air[0, 0, 0] and head[4, 4, 4] and not air[8, 8, 8]
    alone = split_background(image, labels, 3)
    assert (alone[air] == 0).mean() < 0.9                                  # part of the air gets a tissue code
    split = split_background(image, labels, 3, air=air)
    assert (split[air] == 0).all() and np.isin(split[head], [901, 902]).all()
    assert (split[labels == 2] == 2).all()
