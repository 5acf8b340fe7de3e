import gzip
import importlib.util
import json
import shlex
import socket
import sys
import zipfile
from pathlib import Path

import pytest

from bibsnet_trainer.templates import (ADULT_TEMPLATE, INFANT_TEMPLATE, MNIINFANT_COHORT_MAX_MONTHS, Template,
                                       TemplateError, age_matched_template_file, mniinfant_cohort,
                                       prefetch_command, template_file, template_for_age, templateflow_home)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to resolve a name or open a connection fails the test."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield attempts
    assert not attempts


def fake_nifti(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(b"\x5c\x01" + bytes(346)))   # the gzip magic is what is checked
    return path


@pytest.fixture
def tf_home(tmp_path):
    home = tmp_path / "templateflow"
    fake_nifti(home / "tpl-MNIInfant/cohort-2/tpl-MNIInfant_cohort-2_res-1_T1w.nii.gz")
    fake_nifti(home / "tpl-MNIInfant/cohort-2/tpl-MNIInfant_cohort-2_res-1_T2w.nii.gz")
    fake_nifti(home / "tpl-MNIInfant/cohort-2/tpl-MNIInfant_cohort-2_res-2_T1w.nii.gz")
    fake_nifti(home / "tpl-MNI152NLin2009cAsym/tpl-MNI152NLin2009cAsym_res-01_T1w.nii.gz")
    fake_nifti(home / "tpl-MNI152NLin2009cAsym/tpl-MNI152NLin2009cAsym_res-01_desc-brain_T1w.nii.gz")
    stub = home / "tpl-MNIInfant/cohort-3/tpl-MNIInfant_cohort-3_res-1_T1w.nii.gz"   # skeleton placeholder
    stub.parent.mkdir(parents=True)
    stub.touch()
    return home


@pytest.mark.parametrize("age,expected", [
    (-1, 1), (0, 1), (2, 1), (2.01, 2), (5, 2), (6, 3), (9.5, 4), (11, 4), (12, 5), (16, 6), (18, 7), (24, 8),
    (30, 9), (40, 10), (44, 10), (50, 11), (60, 11)])
def test_cohort_by_age(age, expected):
    assert mniinfant_cohort(age) == expected
    assert template_for_age(age) == Template(INFANT_TEMPLATE, expected)


def test_adult_and_unknown_age():
    assert template_for_age(60.5) == Template(ADULT_TEMPLATE)
    assert template_for_age(400) == Template(ADULT_TEMPLATE)
    assert template_for_age(None) == Template(ADULT_TEMPLATE)
    assert template_for_age(None, default=Template(INFANT_TEMPLATE, 1)).label == "MNIInfant:cohort-1"
    with pytest.raises(ValueError):
        mniinfant_cohort(61)


def test_cohort_table_matches_templateflow_description():
    """The table equals the cohort ages in the template_description.json that the installed
    templateflow client ships in its skeleton (read from the zip; templateflow is not imported)."""
    spec = importlib.util.find_spec("templateflow")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("templateflow is not installed")
    skeleton = Path(list(spec.submodule_search_locations)[0]) / "conf" / "templateflow-skel.zip"
    if not skeleton.is_file():
        pytest.skip("templateflow skeleton not found")
    with zipfile.ZipFile(skeleton) as archive:
        description = json.loads(archive.read("tpl-MNIInfant/template_description.json"))
    cohorts = description["cohort"]
    ages = [cohorts[str(n)]["age"] for n in range(1, len(cohorts) + 1)]
    assert all(cohorts[str(n)]["units"] == "months" for n in range(1, len(cohorts) + 1))
    assert tuple(int(high) for _, high in ages) == MNIINFANT_COHORT_MAX_MONTHS
    assert all(ages[i][0] == ages[i - 1][1] for i in range(1, len(ages)))


def test_resolves_from_disk_without_network(tf_home, no_network, monkeypatch):
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tf_home))
    before = set(sys.modules)
    template, path = age_matched_template_file(3.5)
    assert template == Template("MNIInfant", 2)
    assert path == tf_home / "tpl-MNIInfant/cohort-2/tpl-MNIInfant_cohort-2_res-1_T1w.nii.gz"
    assert template_file(template, "T2w").name == "tpl-MNIInfant_cohort-2_res-1_T2w.nii.gz"
    assert template_file(template, resolution=2).name == "tpl-MNIInfant_cohort-2_res-2_T1w.nii.gz"
    adult, path = age_matched_template_file(300)
    assert path.name == "tpl-MNI152NLin2009cAsym_res-01_T1w.nii.gz"                # res-01 spelling, no desc
    assert template_file(adult, desc="brain").name == "tpl-MNI152NLin2009cAsym_res-01_desc-brain_T1w.nii.gz"
    assert not any(m == "templateflow" or m.startswith("templateflow.") for m in set(sys.modules) - before)


def test_missing_template_error_names_template_folder_and_command(tf_home, no_network):
    with pytest.raises(TemplateError) as info:
        template_file(Template("MNIInfant", 7), home=tf_home)
    err = info.value
    assert err.exit_code == 65
    assert err.path == str(tf_home / "tpl-MNIInfant" / "cohort-7")
    assert "MNIInfant:cohort-7 T1w (res-1)" in err.message
    command = ("python -c \"import templateflow.api as t; "
               "t.get('MNIInfant', cohort=7, resolution=1, suffix='T1w', desc=None)\"")
    assert f"TEMPLATEFLOW_HOME={tf_home} {command}" in err.message
    with pytest.raises(TemplateError, match="placeholder"):                     # 0-byte skeleton stub
        template_file(Template("MNIInfant", 3), home=tf_home)
    with pytest.raises(TemplateError, match="MNI152NLin2009cAsym T2w"):
        template_file(Template("MNI152NLin2009cAsym"), "T2w", home=tf_home)


def test_prefetch_command_is_valid_python():
    command = prefetch_command(Template("MNIInfant", 2), "T2w", 1, None)
    code = shlex.split(command)[2]
    compile(code, "<prefetch>", "exec")
    assert "cohort=2" in code and "suffix='T2w'" in code
    assert "cohort" not in prefetch_command(Template(ADULT_TEMPLATE))


def test_templateflow_home(tmp_path, monkeypatch):
    assert templateflow_home({"TEMPLATEFLOW_HOME": str(tmp_path)}) == tmp_path
    monkeypatch.delenv("TEMPLATEFLOW_HOME", raising=False)
    assert templateflow_home({}).name == "templateflow"
