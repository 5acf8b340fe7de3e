"""Intensity priors: presets, estimation from real images, channel-specific draws, and the
estimated-priors path of the group level."""
import json
from dataclasses import replace

import numpy as np
import pytest

from bibsnet_trainer.synthesis import LabelSynthesizer, SynthesisConfig
from bibsnet_trainer.synthesis.priors import (ChannelPriors, IntensityPriors, class_table, estimate_priors,
                                              load_priors, synthseg_t1_priors)

FLAT = SynthesisConfig(rotation=0, zooms=0, shears=0, elastic=0, skull_strip_probability=0, gmm_fwhm=0,
                       bias_strength=0, gamma=0, motion_fwhm=0, max_slice_mm=3.0, max_iso_mm=3.0, snr=1e6,
                       flip_probability=0, intensity_classes=None)
CLASSES = {0: 0, 2: 1, 3: 2, 24: 3, 507: 4}      # background, WM, cortex, CSF, skull


def _tissue_map(shape=(30, 30, 30)):
    codes = np.zeros(shape, np.int32)
    codes[3:27, 3:27, 3:27] = 507
    codes[5:25, 5:25, 5:25] = 24
    codes[7:23, 7:23, 7:23] = 3
    codes[10:20, 10:20, 10:20] = 2
    return codes


def _image(codes, values, noise=1.0, seed=0):
    rng = np.random.default_rng(seed)
    image = np.zeros(codes.shape, np.float32)
    for code, value in values.items():
        image[codes == code] = value
    return image + rng.normal(0, noise, codes.shape).astype(np.float32) * (codes > 0)


def test_estimated_priors_recover_known_class_means():
    codes = _tissue_map()
    samples = []
    for shift in (-10.0, 0.0, 10.0):     # skull at 255 pins the 99.5th percentile; background at 0
        values = {2: 200 + shift, 3: 120 + shift, 24: 40 + shift, 507: 255}
        samples.append(({"T1w": _image(codes, values)}, codes))
    priors = estimate_priors(samples, CLASSES, "normal")
    means = priors.channels["T1w"].means
    assert means[0, 1] == pytest.approx(200, abs=2) and means[0, 2] == pytest.approx(120, abs=2)
    assert means[0, 3] == pytest.approx(40, abs=2)
    assert means[1, 1] == pytest.approx(np.std([190, 200, 210]), abs=1.5)   # sd across subjects
    assert priors.channels["T1w"].stds[0, 1] == pytest.approx(1.0, abs=0.5)  # within-class noise
    ranges = estimate_priors(samples, CLASSES, "uniform").channels["T1w"].means
    assert ranges[0, 1] < 190 and ranges[1, 1] > 210 and ranges[1, 3] < ranges[0, 1]


def test_priors_round_trip_and_unseen_classes_fall_back_to_defaults():
    means = np.array([[np.nan, 200.0], [np.nan, 1.0]])
    priors = IntensityPriors({0: 0, 2: 1}, {"T1w": ChannelPriors("normal", means, np.full((2, 2), 1.0))})
    again = IntensityPriors.from_json(json.loads(json.dumps(priors.as_json())))
    drawn, _ = again.draw("T1w", np.array([0, 2, 41]))
    assert drawn[1] * 255 == pytest.approx(200, abs=5)        # known class: its prior
    assert 0 <= drawn[0] <= 250 / 255 and 0 <= drawn[2] <= 250 / 255   # unseen / unknown: defaults


def test_channel_specific_priors_give_t1w_and_t2w_contrast():
    codes = _tissue_map()
    t1 = {2: (200, 2), 3: (110, 2), 24: (30, 2), 507: (150, 2)}
    t2 = {2: (60, 2), 3: (110, 2), 24: (230, 2), 507: (90, 2)}

    def channel(values):
        means = np.array([[0] + [values[c][0] for c in (2, 3, 24, 507)], [1] + [values[c][1] for c in (2, 3, 24, 507)]])
        return ChannelPriors("normal", means, np.array([[1.0] * 5, [0.5] * 5]))

    priors = IntensityPriors(CLASSES, {"T1w": channel(t1), "T2w": channel(t2)})
    synth = LabelSynthesizer(FLAT, channels=["T1w", "T2w"], voxel_mm=3.0, priors=priors)
    images, target = synth.sample(codes, seed=3)
    mean = lambda c, code: images[c][target == code].mean()  # noqa: E731
    assert mean(0, 2) > mean(0, 3) > mean(0, 24)     # T1w: white matter bright, CSF dark
    assert mean(1, 24) > mean(1, 3) > mean(1, 2)     # T2w: CSF bright, white matter dark


def test_synthseg_t1_preset_makes_white_matter_brighter_than_cortex():
    priors = synthseg_t1_priors()
    assert priors.n_classes == 25 and priors.classes[2] == priors.classes[41]   # tissue classes
    codes = _tissue_map()
    synth = LabelSynthesizer(replace(FLAT, priors="synthseg-t1"), channels=["T1w"], voxel_mm=3.0)
    brighter = 0
    for seed in range(5):
        images, target = synth.sample(codes, seed=seed)
        brighter += images[0][target == 2].mean() > images[0][target == 3].mean()
    assert brighter >= 4


def test_presets_and_bad_priors():
    tissue, infant = class_table("synthseg-tissue"), class_table("infant")
    assert tissue[3] == tissue[42] and tissue[24] == tissue[4]          # cortex L/R, CSF and ventricles
    assert infant[172] not in class_table("synthseg").values() and infant[31] == infant[136]
    assert load_priors("uniform", "synthseg").classes == class_table("synthseg")
    with pytest.raises(ValueError, match="unknown intensity-class preset"):
        class_table("martian")
    with pytest.raises(ValueError, match="neither a preset"):
        load_priors("/no/such/priors.json", None)


def test_infant_preset_covers_the_infant_label_maps(shared_data):
    import nibabel as nib
    infant = class_table("infant")
    for path in sorted((shared_data / "infant_asegs").glob("*.nii.gz"))[:3]:
        codes = set(np.unique(np.asarray(nib.load(path).dataobj)).astype(int).tolist())
        assert codes <= set(infant), path.name


def test_group_estimates_priors_by_age(capsys, phantom_bids, tmp_path, monkeypatch):
    from bibsnet_trainer.group import pipeline as group
    from bibsnet_trainer.cli.run import main
    stages = []   # the dataset stage's result: what the on-the-fly trainer's job will carry
    original = group.write_training_data
    monkeypatch.setattr(group, "write_training_data", lambda *a: stages.append(original(*a)) or stages[-1])
    (phantom_bids / "participants.tsv").write_text(
        "participant_id\tage\nsub-01\t2\nsub-02\t30\nsub-03\t30\nsub-04\tn/a\n")
    (phantom_bids / "participants.json").write_text(json.dumps({"age": {"Units": "months"}}))
    work = tmp_path / "work"
    code = main([str(phantom_bids), str(tmp_path / "out"), "group", "-w", str(work), "--synthesize-only",
                 "--synthetic-per-map", "1", "--device", "cpu", "--test-fraction", "0.01",
                 "--priors", "estimated", "--background-components", "3", "--trainer", "onthefly"])
    assert code == 0, capsys.readouterr().err
    priors = json.loads((work / "priors.json").read_text())
    # sub-01 and sub-02 have images and labels; one of them is held out, so one age bin is estimated
    assert len(priors["by_age"]) == 1 and set(priors["by_age"]) <= {"0-3mo", "24-60mo"}
    # the on-the-fly trainer gets the same priors and every training case's age bin: the
    # development subject's real and synthetic cases and sub-03's synthetic one (30 months)
    onthefly = stages[0].onthefly
    assert onthefly["priors"]["by_age"] == priors["by_age"]
    bins = onthefly["case_age_bins"]
    assert bins["syn_sub03_000"] == "24-60mo" and len(bins) == 3
    assert set(bins.values()) <= {"0-3mo", "24-60mo"}
    # the classes are the default preset's (the run named none): white matter brighter than cortex
    classes = class_table(SynthesisConfig().intensity_classes)
    means = priors["pooled"]["channels"]["T1w"]["means"][0]
    assert means[classes[2]] > means[classes[3]]


def test_priors_file_that_is_not_json_is_a_usage_error(capsys, phantom_bids, tmp_path):
    from bibsnet_trainer.cli.run import main
    bad = tmp_path / "priors.json"
    bad.write_text("{not json")
    code = main([str(phantom_bids), str(tmp_path / "out"), "group", "-w", str(tmp_path / "work"),
                 "--priors", str(bad)])
    err = capsys.readouterr().err
    assert code == 64 and str(bad) in err and "priors" in err
