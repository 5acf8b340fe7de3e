from pathlib import Path

from bibsnet_trainer.group import _synthetic_validation, choose_modalities, split_subjects
from bibsnet_trainer.inputs import Session


def _session(sub, images=("T1w",), labels=True, ses=None):
    return Session(sub, ses, {m: Path(f"/x/sub-{sub}_{m}.nii.gz") for m in images},
                   Path(f"/x/sub-{sub}_dseg.nii.gz") if labels else None)


def test_split_is_by_subject_and_test_subjects_never_feed_synthesis():
    sessions = [_session(f"{k:02d}", ses=ses) for k in range(1, 7) for ses in ("a", "b")]
    sessions += [_session("99", images=(), labels=True)]
    split = split_subjects(sessions, ["T1w"], test_fraction=0.2, seed=3)
    groups = [{s.subject for s in part} for part in (split.train, split.val, split.test)]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    assert len(groups[2]) == 2 and len(groups[1]) == 1
    assert not ({s.subject for s in split.synth_sources} & groups[2])
    assert "99" in {s.subject for s in split.synth_sources}
    again = split_subjects(sessions, ["T1w"], test_fraction=0.2, seed=3)
    assert [s.key for s in again.test] == [s.key for s in split.test]


def test_modalities_from_data():
    assert choose_modalities([_session("1", labels=True, images=())], None) == ["T1w"]
    both = [_session("1", images=("T1w", "T2w")), _session("2", images=("T2w", "T1w"))]
    assert choose_modalities(both, None) == ["T1w", "T2w"]
    assert choose_modalities([_session("1", images=("T2w",))], None) == ["T2w"]
    assert choose_modalities(both, ["T2w"]) == ["T2w"]


def test_synthetic_validation_uses_an_unseen_label_map():
    sources = [_session("01"), _session("02")]
    ids = ["syn_sub01_000", "syn_sub01_001", "syn_sub02_000", "syn_sub02_001"]
    assert _synthetic_validation(ids, sources) == ["syn_sub02_000", "syn_sub02_001"]
    assert _synthetic_validation(ids[:2], sources[:1]) == ["syn_sub01_001"]
