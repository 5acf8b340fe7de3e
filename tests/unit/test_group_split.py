from pathlib import Path

import pytest

from bibsnet_trainer.errors import InputError
from bibsnet_trainer.group.dataset import _synthetic_validation
from bibsnet_trainer.group.plan import choose_modalities
from bibsnet_trainer.bids.inputs import Session
from bibsnet_trainer.group.splits import split_subjects, stratified_folds, stratified_sample


def _session(sub, images=("T1w",), labels=True, ses=None):
    return Session(sub, ses, {m: Path(f"/x/sub-{sub}_{m}.nii.gz") for m in images},
                   Path(f"/x/sub-{sub}_dseg.nii.gz") if labels else None)


def _subjects(sessions):
    return {s.subject for s in sessions}


def test_split_is_by_subject_and_test_subjects_never_feed_synthesis():
    sessions = [_session(f"{k:02d}", ses=ses) for k in range(1, 7) for ses in ("a", "b")]
    sessions += [_session("99", images=(), labels=True)]
    split = split_subjects(sessions, ["T1w"], test_fraction=0.2, seed=3)
    groups = [_subjects(part) for part in (split.train(0), split.val(0), split.test)]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    assert len(groups[2]) == 2 and len(groups[1]) == 1
    assert not (_subjects(split.synth_sources) & groups[2])
    assert not (_subjects(split.synth_for(0)) & groups[1])        # validation subjects never train, even synthetic
    assert "99" in _subjects(split.synth_sources)
    again = split_subjects(sessions, ["T1w"], test_fraction=0.2, seed=3)
    assert [s.key for s in again.test] == [s.key for s in split.test]


def test_k_folds_cover_every_development_subject_once():
    sessions = [_session(f"{k:02d}") for k in range(1, 11)]
    split = split_subjects(sessions, ["T1w"], test_fraction=0.2, seed=1, folds=4)
    assert split.n_folds == 4
    validated = [sub for fold in split.val_folds for sub in fold]
    assert sorted(validated) == sorted(_subjects(split.development)) and len(validated) == 8
    for fold in range(4):
        assert not (_subjects(split.train(fold)) & _subjects(split.val(fold)))
        assert not (_subjects(split.synth_for(fold)) & set(split.val_folds[fold]))
    with pytest.raises(InputError, match="12 folds need at least 12"):
        split_subjects(sessions, ["T1w"], test_fraction=0.2, seed=1, folds=12)


def test_stratified_by_age_bin():
    import random
    subjects = [f"{k:02d}" for k in range(12)]
    bins = {s: ("0-3mo" if int(s) < 8 else "24-60mo") for s in subjects}
    for seed in range(5):
        picked = stratified_sample(subjects, 3, bins, random.Random(seed))
        assert sum(bins[s] == "0-3mo" for s in picked) == 2 and sum(bins[s] == "24-60mo" for s in picked) == 1
    folds = stratified_folds(subjects, 4, bins, random.Random(0))
    assert all(sum(bins[s] == "24-60mo" for s in fold) == 1 for fold in folds)
    sessions = [_session(s) for s in subjects]
    split = split_subjects(sessions, ["T1w"], test_fraction=0.25, seed=2, age_bins=bins)
    assert sorted(bins[s.subject] for s in split.test) == ["0-3mo", "0-3mo", "24-60mo"]


def test_modalities_from_data():
    assert choose_modalities([_session("1", labels=True, images=())], None) == ["T1w"]
    both = [_session("1", images=("T1w", "T2w")), _session("2", images=("T2w", "T1w"))]
    assert choose_modalities(both, None) == ["T1w", "T2w"]
    assert choose_modalities([_session("1", images=("T2w",))], None) == ["T2w"]
    assert choose_modalities(both, ["T2w"]) == ["T2w"]


def test_synthetic_validation_uses_an_unseen_label_map():
    sources = [_session("01"), _session("02")]
    synthetic_of = {"sub-01": ["syn_sub01_000", "syn_sub01_001"], "sub-02": ["syn_sub02_000", "syn_sub02_001"]}
    assert _synthetic_validation(synthetic_of, sources) == ["syn_sub02_000", "syn_sub02_001"]
    assert _synthetic_validation({"sub-01": synthetic_of["sub-01"]}, sources[:1]) == ["syn_sub01_001"]


def test_fold_cases_keep_every_session_of_a_label_map_subject():
    from bibsnet_trainer.group.dataset import fold_cases
    sessions = [_session("01"), _session("02"), _session("03"),
                _session("04", images=(), ses="a"), _session("04", images=(), ses="b")]
    split = split_subjects(sessions, ["T1w"], test_fraction=0.2, seed=0)
    real_ids = {s.key: f"real_{s.key.replace('-', '').replace('_', '')}" for s in split.development}
    synthetic_of = {"sub-04_ses-a": [f"syn_sub04sesa_{k:03d}" for k in range(2)],
                    "sub-04_ses-b": [f"syn_sub04sesb_{k:03d}" for k in range(2)]}
    sources = [s for s in split.synth_sources if s.subject == "04"]
    (train, val), = fold_cases(split, real_ids, synthetic_of, sources)
    assert {c for cases in synthetic_of.values() for c in cases} <= set(train)   # both sessions' images train
    assert val and set(val) <= set(real_ids.values()) and not set(train) & set(val)


def test_test_subjects_can_be_chosen():
    """--test-subjects: the held-out set is the user's (arms of a benchmark score the same subjects);
    a subject without images and a label map is refused by name."""
    sessions = [_session(f"{k:02d}") for k in range(1, 8)] + [_session("88", images=(), labels=True)]
    split = split_subjects(sessions, ["T1w"], test_fraction=0.2, seed=3, test_subjects=["02", "05", "07"])
    assert _subjects(split.test) == {"02", "05", "07"}
    assert not (_subjects(split.development) | _subjects(split.synth_sources)) & {"02", "05", "07"}
    with pytest.raises(InputError, match="88"):
        split_subjects(sessions, ["T1w"], test_fraction=0.2, seed=3, test_subjects=["01", "88"])


def test_train_on_all_trains_every_development_subject(tmp_path):
    """--train-on-all (nnU-Net's 'all' fold): no real subject is kept out of training to validate;
    nnU-Net validates on the real training cases; test subjects stay held out."""
    import json

    from bibsnet_trainer.group.dataset import fold_cases
    from bibsnet_trainer.nnunet.dataset import write_splits
    sessions = [_session(f"{k:02d}") for k in range(1, 10)]
    split = split_subjects(sessions, ["T1w"], test_fraction=0.2, seed=0, test_subjects=["07", "08"],
                           train_on_all=True)
    assert _subjects(split.train(0)) == {"01", "02", "03", "04", "05", "06", "09"} and not split.val(0)
    real_ids = {s.key: f"real_sub{s.subject}" for s in split.development}
    synthetic_of = {"sub-01": ["syn_sub01_000"]}
    (train, val), = fold_cases(split, real_ids, synthetic_of, [split.synth_sources[0]])
    assert set(val) == set(real_ids.values()) and set(train) == set(val) | {"syn_sub01_000"}
    written = json.loads(write_splits(tmp_path, [(train, val)], validation_trains=True).read_text())
    assert written == [{"train": sorted(train), "val": sorted(val)}]
    with pytest.raises(ValueError, match="both sides"):         # without the flag, overlap is a bug
        write_splits(tmp_path, [(train, val)])
    with pytest.raises(ValueError, match="do not train"):
        write_splits(tmp_path, [(train[:1], val)], validation_trains=True)
    with pytest.raises(InputError, match="--train-on-all"):
        split_subjects([_session("01"), _session("02", images=())], ["T1w"], test_fraction=0.2, seed=0,
                       test_subjects=["01"], train_on_all=True)


def test_a_preset_that_trains_on_all_does_so_only_where_it_can():
    """train_on_all=None (the cpu preset's default): every real subject not held out trains when
    there are any and one fold; synthetic-only data and k folds keep their validation."""
    from bibsnet_trainer.config import Execution, GroupConfig
    from bibsnet_trainer.group.plan import _train_on_all
    from bibsnet_trainer.nnunet.presets import PRESETS

    sessions = [_session(f"{k:02d}") for k in range(1, 7)]
    split = split_subjects(sessions, ["T1w"], 0.2, 0, test_subjects=["06"], train_on_all=None)
    assert split.validate_on_training and not split.val(0) and _subjects(split.train(0)) == {"01", "02", "03", "04", "05"}
    split = split_subjects(sessions, ["T1w"], 0.2, 0, test_subjects=["06"], train_on_all=None, folds=2)
    assert not split.validate_on_training and len(split.val_folds) == 2
    label_maps_only = [_session("01"), _session("02", images=()), _session("03", images=())]
    split = split_subjects(label_maps_only, ["T1w"], 0.2, 0, test_subjects=["01"], train_on_all=None)
    assert not split.validate_on_training and split.val_folds == [[]]      # no error: it was not asked for

    def config(preset, **kw):
        return GroupConfig(output_dir=Path("out"), execution=Execution(Path("w")), preset=PRESETS[preset], **kw)
    assert _train_on_all(config("cpu")) is None                           # the preset's choice
    assert _train_on_all(config("cpu", folds=3)) is False
    assert _train_on_all(config("cpu", train_on_all=False)) is False      # --no-train-on-all
    assert _train_on_all(config("gpu")) is False
    assert _train_on_all(config("gpu", train_on_all=True)) is True
