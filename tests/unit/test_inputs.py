import json

import pytest

from bibsnet_trainer.errors import InputError
from bibsnet_trainer.bids.inputs import build_layout, collect_sessions, find_derivatives, validate_session


def _sessions(bids, **kwargs):
    layout = build_layout(bids, find_derivatives(bids), validate=True)
    return collect_sessions(layout, **kwargs)


def test_collects_images_and_label_maps(phantom_bids):
    sessions = {s.subject: s for s in _sessions(phantom_bids)}
    assert set(sessions) == {"01", "02", "03", "04"}
    assert set(sessions["01"].images) == {"T1w"} and sessions["01"].label_map is not None
    assert sessions["01"].label_space == "T1w"
    assert not sessions["03"].images and sessions["03"].label_map is not None
    assert sessions["04"].label_map is None
    for s in sessions.values():
        validate_session(s)


def test_participant_labels_with_and_without_prefix(phantom_bids):
    assert [s.subject for s in _sessions(phantom_bids, participant_labels=["sub-01", "02"])] == ["01", "02"]
    with pytest.raises(InputError, match="sub-99"):
        _sessions(phantom_bids, participant_labels=["99"])


def test_missing_and_invalid_description(phantom_bids):
    desc = phantom_bids / "dataset_description.json"
    desc.write_text("{not json")
    with pytest.raises(InputError, match="invalid JSON") as err:
        _sessions(phantom_bids)
    assert str(desc) in str(err.value)
    desc.unlink()
    with pytest.raises(InputError, match="missing dataset_description"):
        _sessions(phantom_bids)


def test_label_grid_mismatch_names_label_map(phantom_bids):
    import nibabel as nib
    import numpy as np
    label = next((phantom_bids / "derivatives").rglob("sub-01_*dseg.nii.gz"))
    img = nib.load(label)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:-2], img.affine), label)
    session = next(s for s in _sessions(phantom_bids) if s.subject == "01")
    with pytest.raises(InputError, match="does not match") as err:
        validate_session(session)
    assert str(label) in str(err.value)


def test_group_needs_label_maps(tmp_path):
    from phantoms import write_bids
    bids = write_bids(tmp_path / "b", {"01": "image"})
    with pytest.raises(InputError, match="no label maps"):
        _sessions(bids, need_labels=True)


def test_filters_select_run(phantom_bids):
    import shutil
    anat = phantom_bids / "sub-04" / "anat"
    shutil.copy(anat / "sub-04_T1w.nii.gz", anat / "sub-04_run-2_T1w.nii.gz")
    (anat / "sub-04_T1w.nii.gz").rename(anat / "sub-04_run-1_T1w.nii.gz")
    chosen = _sessions(phantom_bids, participant_labels=["04"], bids_filters={"t1w": {"run": 2}})
    assert chosen[0].images["T1w"].name == "sub-04_run-2_T1w.nii.gz"
    default = _sessions(phantom_bids, participant_labels=["04"])
    assert default[0].images["T1w"].name == "sub-04_run-1_T1w.nii.gz"


def test_derivative_without_generated_by_names_its_description(phantom_bids):
    desc = phantom_bids / "derivatives" / "labels" / "dataset_description.json"
    desc.write_text(json.dumps({"Name": "labels", "BIDSVersion": "1.9.0", "DatasetType": "derivative"}))
    with pytest.raises(InputError, match="GeneratedBy") as err:
        find_derivatives(phantom_bids)
    assert str(desc) in str(err.value)


def test_session_id_matching_nothing_says_so(phantom_bids):
    with pytest.raises(InputError, match="--session-id 3mo matches no session .*sessions found: none"):
        _sessions(phantom_bids, session_ids=["ses-3mo"])


def test_filter_matching_nothing_says_so(phantom_bids):
    with pytest.raises(InputError, match='matches the --bids-filter-file filters .*"run": 7'):
        _sessions(phantom_bids, participant_labels=["01"], bids_filters={"t1w": {"run": 7}}, need_images=True)


def test_participant_without_label_map_is_told_which_have_one(phantom_bids):
    with pytest.raises(InputError, match="selected participants/sessions have no label map.*sub-01, sub-02, sub-03"):
        _sessions(phantom_bids, participant_labels=["04"], need_labels=True)
