import json

import pytest

from bibsnet_trainer.ages import age_bin, age_months
from bibsnet_trainer.errors import InputError


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_sessions_then_participants_with_units(tmp_path):
    _write(tmp_path / "participants.tsv", "participant_id\tage\nsub-01\t2\nsub-02\tn/a\n")
    _write(tmp_path / "participants.json", json.dumps({"age": {"Units": "years"}}))
    _write(tmp_path / "sub-01" / "sub-01_sessions.tsv", "session_id\tage\nses-a\t26\nses-b\tn/a\n")
    _write(tmp_path / "sub-01" / "sub-01_sessions.json", json.dumps({"age": {"Units": "weeks"}}))
    assert age_months(tmp_path, "01", "a") == pytest.approx(26 * 12 / 52.1775)
    assert age_months(tmp_path, "01", "b") == pytest.approx(24.0)      # falls back to participants.tsv
    assert age_months(tmp_path, "01") == pytest.approx(24.0)
    assert age_months(tmp_path, "02") is None and age_months(tmp_path, "03") is None


def test_scans_tsv_and_explicit_column(tmp_path):
    image = tmp_path / "sub-01" / "ses-a" / "anat" / "sub-01_ses-a_T1w.nii.gz"
    _write(image, "")
    _write(tmp_path / "sub-01" / "ses-a" / "sub-01_ses-a_scans.tsv",
           "filename\tage_months\nanat/sub-01_ses-a_T1w.nii.gz\t5.5\n")
    _write(tmp_path / "participants.tsv", "participant_id\tage\nsub-01\t9\n")   # no sidecar: months
    assert age_months(tmp_path, "01", "a", image) == pytest.approx(5.5)
    assert age_months(tmp_path, "01", "a") == pytest.approx(9)


def test_bad_age_names_the_file(tmp_path):
    _write(tmp_path / "participants.tsv", "participant_id\tage\nsub-01\tyoung\n")
    with pytest.raises(InputError) as err:
        age_months(tmp_path, "01")
    assert "participants.tsv" in str(err.value) and "young" in str(err.value)
    _write(tmp_path / "participants.tsv", "participant_id\tage\nsub-01\t3\n")
    _write(tmp_path / "participants.json", json.dumps({"age": {"Units": "fortnights"}}))
    with pytest.raises(InputError, match="fortnights"):
        age_months(tmp_path, "01")


def test_age_bins():
    assert age_bin(None) is None and age_bin(0) == "0-3mo" and age_bin(4.5) == "3-6mo"
    assert age_bin(30) == "24-60mo" and age_bin(5000) == "1200+mo"
