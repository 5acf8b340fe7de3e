import json

import pytest

from bibsnet_trainer.bids.ages import age_bin, age_months, bin_order
from bibsnet_trainer.errors import InputError


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _layout(root):
    from bids import BIDSLayout
    _write(root / "dataset_description.json", json.dumps({"Name": "ages", "BIDSVersion": "1.9.0"}))
    for sub in ("01", "02", "03"):
        if not (root / f"sub-{sub}").is_dir():
            _write(root / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz", "")
    return BIDSLayout(str(root), validate=False)


def test_sessions_then_participants_with_units(tmp_path):
    _write(tmp_path / "participants.tsv", "participant_id\tage\nsub-01\t2\nsub-02\tn/a\n")
    _write(tmp_path / "participants.json", json.dumps({"age": {"Units": "years"}}))
    _write(tmp_path / "sub-01" / "sub-01_sessions.tsv", "session_id\tage\nses-a\t26\nses-b\tn/a\n")
    _write(tmp_path / "sub-01" / "sub-01_sessions.json", json.dumps({"age": {"Units": "weeks"}}))
    _write(tmp_path / "sub-01" / "ses-a" / "anat" / "sub-01_ses-a_T1w.nii.gz", "")
    _write(tmp_path / "sub-01" / "ses-b" / "anat" / "sub-01_ses-b_T1w.nii.gz", "")
    layout = _layout(tmp_path)
    assert age_months(layout, "01", "a") == pytest.approx(26 * 12 / 52.1775)
    assert age_months(layout, "01", "b") == pytest.approx(24.0)      # falls back to participants.tsv
    assert age_months(layout, "01") == pytest.approx(24.0)
    assert age_months(layout, "02") is None and age_months(layout, "03") is None


def test_scans_tsv_and_explicit_column(tmp_path):
    image = tmp_path / "sub-01" / "ses-a" / "anat" / "sub-01_ses-a_T1w.nii.gz"
    _write(image, "")
    _write(tmp_path / "sub-01" / "ses-a" / "sub-01_ses-a_scans.tsv",
           "filename\tage_months\nanat/sub-01_ses-a_T1w.nii.gz\t5.5\n")
    _write(tmp_path / "participants.tsv", "participant_id\tage\nsub-01\t9\n")   # no sidecar: months
    layout = _layout(tmp_path)
    assert age_months(layout, "01", "a", image) == pytest.approx(5.5)
    assert age_months(layout, "01", "a") == pytest.approx(9)


def test_bad_age_names_the_file(tmp_path):
    _write(tmp_path / "participants.tsv", "participant_id\tage\nsub-01\tyoung\n")
    layout = _layout(tmp_path)
    with pytest.raises(InputError) as err:
        age_months(layout, "01")
    assert "participants.tsv" in str(err.value) and "young" in str(err.value)
    _write(tmp_path / "participants.tsv", "participant_id\tage\nsub-01\t3\n")
    _write(tmp_path / "participants.json", json.dumps({"age": {"Units": "fortnights"}}))
    layout = _layout(tmp_path)
    with pytest.raises(InputError, match="fortnights"):
        age_months(layout, "01")


def test_age_bins():
    assert age_bin(None) is None and age_bin(0) == "0-3mo" and age_bin(4.5) == "3-6mo"
    assert age_bin(30) == "24-60mo" and age_bin(5000) == "1200+mo" and age_bin(-1) == "<0mo"
    labels = ["1200+mo", "3-6mo", "<0mo", "0-3mo", "24-60mo", "7-9mo"]      # the last is no bin of ours
    assert sorted(labels, key=bin_order) == ["<0mo", "0-3mo", "3-6mo", "24-60mo", "1200+mo", "7-9mo"]
