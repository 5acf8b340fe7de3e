"""A synthetic training case and the real case of the same subject reach the network alike: the
same channel layout (one synthetic volume behind all neighbouring-slice channels), voxel order,
label indices, air rule and normalisation rule, whatever the share of synthetic images. Checked
on nnU-Net's preprocessed data, through the group level's own stages
(benchmarks/synthetic_vs_real.py)."""
import importlib.util

import numpy as np
import pytest

from phantoms import phantom_labels, write_bids

from conftest import ROOT


def _benchmark():
    spec = importlib.util.spec_from_file_location("synthetic_vs_real", ROOT / "benchmarks" / "synthetic_vs_real.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_air_is_background_connected_to_the_border():
    from bibsnet_trainer.synthesis.generator import air_of

    labels = np.zeros((12, 12, 12), np.int32)
    labels[2:10, 2:10, 2:10] = 5          # a head
    labels[5:7, 5:7, 5:7] = 0             # a cavity labelled 0 inside it
    air = air_of(labels)
    assert air[0, 0, 0] and air[1, 6, 6]
    assert not air[6, 6, 6] and not air[3, 3, 3]
    assert air.sum() == 12 ** 3 - 8 ** 3


@pytest.mark.parametrize("zero_air", [True, False])
def test_synthetic_air_is_zero_as_the_air_rule_makes_a_real_scans(zero_air):
    from bibsnet_trainer.config import SynthesisConfig
    from bibsnet_trainer.synthesis import LabelSynthesizer
    from bibsnet_trainer.synthesis.generator import air_of

    labels = phantom_labels(shape=(32, 36, 32), seed=1)
    config = SynthesisConfig(zero_air=zero_air, skull_strip_probability=0.0, rotation=0, zooms=0, shears=0,
                             elastic=0, flip_probability=0)
    images, target = LabelSynthesizer(config, voxel_mm=3.0).sample(labels, seed=3)
    corner = images[0][:3, :3, :3]
    air_share = air_of(labels).mean()
    if zero_air:
        assert np.all(corner == 0)
        # the zeros are the air (the deformation moves it a little), the head keeps its intensities
        assert abs((images[0] == 0).mean() - air_share) < 0.08
    else:
        assert (corner > 0).mean() > 0.9                 # SynthSeg's random background intensity


@pytest.mark.slow
def test_synthetic_and_real_cases_reach_the_network_alike(tmp_path):
    bids = write_bids(tmp_path / "bids", {"01": "both", "02": "both"})
    # two synthetic images per label map: the share at which nnU-Net used to switch off
    # normalisation within the head for every case
    result = _benchmark().compare(bids, tmp_path, ["--preset", "cpu", "--test-subjects", "02",
                                                   "--synthetic-per-map", "2", "--nprocs", "1"], "01")
    real, synthetic = result["cases"]["real"], result["cases"]["synthetic"]
    assert real["channels"] == synthetic["channels"] == len(result["slice_offsets_mm"]) == 5
    assert all(result["use_mask_for_norm"])
    assert real["labels_present"] == synthetic["labels_present"]
    assert np.sign(real["right_minus_left_wm_x"]) == np.sign(synthetic["right_minus_left_wm_x"]) != 0
    # every channel of the synthetic case is its channel 0 at the channel's offset: one volume
    assert min(synthetic["channel_k_is_channel_0_shifted"]) > 0.99
    # the air is zero in both, so nnU-Net crops and normalises both within the head
    assert synthetic["share_outside_nonzero_mask"] > 0.05 and real["share_outside_nonzero_mask"] > 0.05
    for case in (real, synthetic):
        inside = [s["median"] for name, s in case["intensity"].items()
                  if s["voxels"] and name != "outside the non-zero mask"]
        assert abs(np.mean(inside)) < 1.5       # z-scored over the head, not over the box
