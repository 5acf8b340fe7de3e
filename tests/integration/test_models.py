import json
import zipfile
from pathlib import Path

import pytest

from bibsnet_trainer.errors import ModelError, RefusedError
from bibsnet_trainer.models.package import (extract_zip, model_name, open_package, release_tag, verify_package,
                                    write_package, zip_package)


@pytest.fixture
def trained(tmp_path):
    folder = tmp_path / "results" / "nnUNetTrainerBibsnet__nnUNetPlans__3d_small"
    (folder / "fold_0").mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps({"image_orientation": "RAS"}))
    (folder / "plans.json").write_text("{}")
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"weights")
    (folder / "fold_0" / "checkpoint_latest.pth").write_bytes(b"not shipped")
    return folder


def test_package_round_trip_and_tamper_detection(trained, tmp_path):
    package = write_package(trained, tmp_path / "models" / "m", {"name": "m", "modalities": ["T1w"]})
    manifest = verify_package(package)
    assert manifest["folds"] == ["fold_0"]
    assert not list(package.rglob("checkpoint_latest.pth"))
    assert {e["path"] for e in manifest["files"]} == {f"{trained.name}/dataset.json", f"{trained.name}/plans.json",
                                      f"{trained.name}/fold_0/checkpoint_final.pth"}
    (package / trained.name / "fold_0" / "checkpoint_final.pth").write_bytes(b"tampered")
    with pytest.raises(ModelError, match="checksum mismatch"):
        verify_package(package)


def test_existing_package_is_not_overwritten(trained, tmp_path):
    write_package(trained, tmp_path / "m", {"name": "m"})
    with pytest.raises(RefusedError):
        write_package(trained, tmp_path / "m", {"name": "m"})


def test_zip_round_trip_and_escape_refused(trained, tmp_path):
    package = write_package(trained, tmp_path / "m", {"name": "m"})
    archive = zip_package(package, tmp_path / "m_r20260101.zip")
    opened, manifest = open_package(archive, tmp_path / "unpack")
    assert manifest["name"] == "m" and opened.is_dir()
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("m/../../outside.txt", "x")
    with pytest.raises(ModelError, match="escapes"):
        extract_zip(evil, tmp_path / "unpack2")
    assert not (tmp_path / "outside.txt").exists()


def test_names():
    assert model_name(["T1w", "T2w"]) == "model_seg_aseg_t1w-t2w_nnunet"
    import datetime
    assert release_tag(datetime.date(2026, 11, 22)) == "r20261122"


def test_models_commands_list_verify_install(trained, tmp_path, capsys):
    from bibsnet_trainer.cli.models import main
    package = write_package(trained, tmp_path / "built" / "m", {"name": "m", "release": "r20260101",
                                                                "modalities": ["T1w"]})
    archive = zip_package(package, tmp_path / "m_r20260101.zip")
    target = tmp_path / "lab2" / "models"
    assert main(["install", str(archive), str(target)]) == 0
    assert (target / "m" / "manifest.json").is_file()
    assert main(["install", str(archive), str(target)]) == 73          # no silent overwrite
    assert main(["list", str(target)]) == 0 and "m\tr20260101\tT1w" in capsys.readouterr().out
    assert main(["verify", str(archive)]) == 0
    (target / "m" / trained.name / "plans.json").write_text('{"tampered": 1}')
    assert main(["verify", str(target / "m")]) == 65
    assert "checksum mismatch" in capsys.readouterr().err
    assert main(["verify"]) == 64


def test_install_from_a_folder_copies_and_leaves_the_source(trained, tmp_path):
    from bibsnet_trainer.cli.models import main
    package = write_package(trained, tmp_path / "built" / "m", {"name": "m", "release": "r20260101",
                                                                "modalities": ["T1w"]})
    before = {p.relative_to(package): p.read_bytes() for p in package.rglob("*") if p.is_file()}
    target = tmp_path / "lab2" / "models"
    assert main(["install", str(package), str(target)]) == 0
    after = {p.relative_to(package): p.read_bytes() for p in package.rglob("*") if p.is_file()}
    assert after == before                                             # the source is untouched
    verify_package(target / "m")
    assert [p.name for p in target.iterdir()] == ["m"]                 # no staging left behind


def test_manifest_names_the_digest_algorithm_and_old_packages_still_verify(trained, tmp_path):
    import hashlib
    package = write_package(trained, tmp_path / "m", {"name": "m"})
    manifest = json.loads((package / "manifest.json").read_text())
    weights = next(e for e in manifest["files"] if e["path"].endswith("checkpoint_final.pth"))
    assert weights == {"path": f"{trained.name}/fold_0/checkpoint_final.pth",
                       "sha256": hashlib.sha256(b"weights").hexdigest(), "bytes": len(b"weights")}
    # a package written before: {path: sha256}
    manifest["files"] = {e["path"]: e["sha256"] for e in manifest["files"]}
    (package / "manifest.json").write_text(json.dumps(manifest))
    assert verify_package(package)["name"] == "m"
    (package / trained.name / "plans.json").write_text('{"changed": 1}')
    with pytest.raises(ModelError, match="checksum mismatch"):
        verify_package(package)


def test_models_command_papercuts(trained, tmp_path, capsys):
    from bibsnet_trainer.cli.models import main
    assert main(["list", str(tmp_path / "missing")]) == 0
    assert "no model folder at" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert main(["list", str(tmp_path / "empty")]) == 0
    assert "no model packages in" in capsys.readouterr().out
    assert main(["--version"]) == 0 and "bibsnet-trainer" in capsys.readouterr().out
    # a tampered zip: the error names the zip and the member, not a temporary folder
    package = write_package(trained, tmp_path / "built" / "m", {"name": "m", "release": "r1", "modalities": ["T1w"]})
    archive = tmp_path / "m_r1.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(p for p in package.rglob("*") if p.is_file()):
            data = b'{"tampered": 1}' if path.name == "plans.json" else path.read_bytes()
            z.writestr(str(Path("m") / path.relative_to(package)), data)
    assert main(["verify", str(archive)]) == 65
    err = capsys.readouterr().err
    assert f"{archive}: checksum mismatch" in err and f"(member m/{trained.name}/plans.json)" in err
    assert "/tmp" not in err.replace(str(tmp_path), "")
