"""Bad input: one line naming the file, the documented exit code, and the input tree unchanged."""
import gzip
import json
import os
import re

import nibabel as nib
import numpy as np
import pytest

from bibsnet_trainer.cli.run import main
from conftest import tree_digest
from phantoms import write_description


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if "error" in line]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and "bibsnet-trainer" in capsys.readouterr().out


def test_usage_error_is_64(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path), str(tmp_path / "out"), "sideways"])
    assert exit_.value.code == 64


def test_output_inside_bids_is_refused(capsys, phantom_bids):
    before = tree_digest(phantom_bids)
    code, errors = _run(capsys, phantom_bids, phantom_bids / "derivatives" / "out", "participant")
    assert code == 64 and "inside" in errors[0]
    assert tree_digest(phantom_bids) == before


def _corrupt(path):
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 3]))


def _make_4d(path):
    img = nib.load(path)
    data = np.asarray(img.dataobj)
    nib.save(nib.Nifti1Image(np.stack([data, data], -1), img.affine), path)


def _nan(path):
    img = nib.load(path)
    data = np.asarray(img.dataobj, dtype=np.float32).copy()
    data[3, 3, 3] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), path)


def _fractional(path):
    img = nib.load(path)
    data = np.asarray(img.dataobj).astype(np.float32)
    data[data == 2] = 2.5
    nib.save(nib.Nifti1Image(data, img.affine), path)


def _empty(path):
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.int16), img.affine), path)


def _shift(path):
    img = nib.load(path)
    affine = img.affine.copy()
    affine[0, 3] += 5
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine), path)


CASES = [  # (which file, how to break it, words expected in the message)
    ("image", _corrupt, "cannot read"),
    ("image", _make_4d, "3D"),
    ("image", _nan, "NaN"),
    ("label", _fractional, "non-integer"),
    ("label", _empty, "empty"),
    ("label", _shift, "lies elsewhere in the world"),
]


@pytest.mark.parametrize("which,breaker,words", CASES, ids=[c[1].__name__ for c in CASES])
def test_bad_input_group(capsys, phantom_bids, tmp_path, which, breaker, words):
    if which == "image":
        target = phantom_bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    else:
        target = next((phantom_bids / "derivatives").rglob("sub-01_*dseg.nii.gz"))
    breaker(target)
    before = tree_digest(phantom_bids)
    code, errors = _run(capsys, phantom_bids, tmp_path / "out", "group", "-w", tmp_path / "work", "--preset", "cpu")
    assert code == 65
    assert len(errors) == 1 and str(target) in errors[0] and words in errors[0]
    assert tree_digest(phantom_bids) == before
    assert not (tmp_path / "out" / "models").exists()


def test_unknown_participant_and_missing_description(capsys, phantom_bids, tmp_path):
    code, errors = _run(capsys, phantom_bids, tmp_path / "out", "participant", "--participant-label", "sub-42")
    assert code == 65 and "sub-42" in errors[0]
    (phantom_bids / "dataset_description.json").unlink()
    code, errors = _run(capsys, phantom_bids, tmp_path / "out", "participant")
    assert code == 65 and "dataset_description.json" in errors[0]


def test_no_subjects(capsys, tmp_path):
    bids = tmp_path / "empty"
    bids.mkdir()
    write_description(bids, "x")
    code, errors = _run(capsys, bids, tmp_path / "out", "group")
    assert code == 65 and "no subjects" in errors[0]


def test_participant_without_model(capsys, phantom_bids, tmp_path):
    code, errors = _run(capsys, phantom_bids, tmp_path / "out", "participant", "-w", tmp_path / "w")
    assert code == 65 and "no model package" in errors[0]


def test_synthesize_only_writes_samples_and_preview(capsys, caplog, phantom_bids, tmp_path):
    out = tmp_path / "out"
    code = main([str(phantom_bids), str(out), "group", "-w", str(tmp_path / "work"), "--synthesize-only",
                 "--synthetic-per-map", "2", "--device", "cpu"])
    assert code == 0
    preview = out / "reports" / "synthesis_preview.png"
    assert preview.read_bytes()[:4] == b"\x89PNG"
    samples = list((tmp_path / "work").rglob("imagesTr/syn_*_0000.nii.gz"))
    assert len(samples) == 2 * 2          # sub-01 is held out for testing: its map is not used
    assert not (out / "models").exists()
    digest = {p.name: p.read_bytes() for p in samples}
    # same parameters: samples are reused; other parameters: drawn again, never mixed
    assert main([str(phantom_bids), str(out), "group", "-w", str(tmp_path / "work"), "--synthesize-only",
                 "--synthetic-per-map", "2", "--device", "cpu"]) == 0
    assert {p.name: p.read_bytes() for p in samples} == digest
    with caplog.at_level("INFO", logger="bibsnet_trainer"):
        assert main([str(phantom_bids), str(out), "group", "-w", str(tmp_path / "work"), "--synthesize-only",
                     "--synthetic-per-map", "2", "--device", "cpu", "--intensity-classes", "synthseg"]) == 0
    again = {p.name: p.read_bytes() for p in (tmp_path / "work").rglob("imagesTr/syn_*_0000.nii.gz")}
    assert set(again) == set(digest) and all(again[k] != digest[k] for k in digest)
    # the options are recorded at the start of every run, and a re-run says what it changed
    options = json.loads((tmp_path / "work" / "group_config.json").read_text())
    assert options["synthesis"]["intensity_classes"] == "synthseg" and options["synthesize_only"] is True
    assert options["execution"]["device"] == "cpu" and options["execution"]["seed"] == 0   # set once
    assert "seed" not in options["synthesis"]
    assert any("settings changed since the last group run in this work dir: synthesis.intensity_classes"
               in r.getMessage() for r in caplog.records)


def test_write_failure_during_synthesis_is_one_line_and_resumable(capsys, caplog, phantom_bids, tmp_path, monkeypatch):
    """Synthetic pairs are written in threads while the next is drawn: a write that fails (here
    a full disk on the third case) still ends the run with one line naming the file, and the
    cases written before it are kept for the re-run."""
    import errno

    from bibsnet_trainer.nnunet.dataset import RawDatasetWriter

    original, calls = RawDatasetWriter.add_case, []

    def add_case(self, case_id, images, labels):
        if not case_id.startswith("syn_"):      # real cases are written in the main thread
            return original(self, case_id, images, labels)
        calls.append(case_id)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.label_path(case_id)))
        return original(self, case_id, images, labels)

    monkeypatch.setattr(RawDatasetWriter, "add_case", add_case)
    args = [str(phantom_bids), str(tmp_path / "out"), "group", "-w", str(tmp_path / "work"), "--synthesize-only",
            "--synthetic-per-map", "2", "--device", "cpu", "--nprocs", "2"]
    assert main(args) == 74
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors[-1].startswith("bibsnet-trainer: error: ") and calls[2] in errors[-1]
    assert "No space left on device" in errors[-1] and "Traceback" not in "\n".join(errors)
    written = {p.name for p in (tmp_path / "work").rglob("labelsTr/syn_*.nii.gz")}
    assert f"{calls[0]}.nii.gz" in written and f"{calls[2]}.nii.gz" not in written

    monkeypatch.setattr(RawDatasetWriter, "add_case", original)
    caplog.clear()
    caplog.set_level("INFO")
    assert main(args) == 0
    assert len(list((tmp_path / "work").rglob("labelsTr/syn_*.nii.gz"))) == 4
    resumed = re.search(r"synthesizing (\d+) images \((\d+) already done\)", caplog.text)
    assert resumed and int(resumed[1]) + int(resumed[2]) == 4 and int(resumed[2]) >= 2


def test_label_maps_from_a_derivatives_folder_given_by_name(capsys, phantom_bids, tmp_path):
    import shutil
    outside = tmp_path / "aseg_labels"
    shutil.move(str(phantom_bids / "derivatives" / "labels"), str(outside))
    common = ["group", "-w", str(tmp_path / "work"), "--synthesize-only", "--synthetic-per-map", "1",
              "--device", "cpu"]
    code, errors = _run(capsys, phantom_bids, tmp_path / "out", *common)
    assert code == 65 and "no label maps" in errors[0]
    code, _ = _run(capsys, phantom_bids, tmp_path / "out", *common, "-d", f"aseg={outside}")
    assert code == 0
    assert len(list((tmp_path / "work").rglob("imagesTr/syn_*_0000.nii.gz"))) >= 1


def test_single_label_map_with_one_synthetic_image_is_a_usage_error(capsys, tmp_path):
    from phantoms import write_bids
    bids = write_bids(tmp_path / "bids", {"01": "labels"})
    code, errors = _run(capsys, bids, tmp_path / "out", "group", "-w", str(tmp_path / "work"),
                        "--synthetic-per-map", "1", "--device", "cpu", "--preset", "cpu")
    assert code == 64 and "--synthetic-per-map" in errors[0]


@pytest.mark.parametrize("argv, words", [
    (["--folds", "2", "--only-fold", "2"], "--only-fold 2: with --folds 2 the folds are numbered 0..1"),
    (["--only-fold", "-1"], "--only-fold -1"),
    (["--folds", "2", "--train-on-all"], "--train-on-all trains one model on every subject; it cannot go with --folds 2"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--synthetic-per-map", "-1"], "--synthetic-per-map"),
    (["--test-fraction", "1.5"], "--test-fraction"),
    (["--synthetic-fraction", "0.5"], "--trainer onthefly only"),
    (["--trainer", "onthefly", "--synthetic-fraction", "2"], "--synthetic-fraction must be between"),
    (["--contrast-augmentation", "1.5"], "--contrast-augmentation must be between 0 and 1"),
])
def test_group_arguments_are_checked_before_any_work(capsys, phantom_bids, tmp_path, argv, words):
    work = tmp_path / "work"
    code, errors = _run(capsys, phantom_bids, tmp_path / "out", "group", "-w", work, *argv)
    assert code == 64 and words in errors[0]
    assert not work.exists() and not (tmp_path / "out").exists()     # nothing indexed, synthesized or written


def test_gpu_preset_on_the_cpu_is_warned_with_its_cost(caplog, phantom_bids, tmp_path, monkeypatch):
    import torch

    from bibsnet_trainer.group import pipeline as group
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(group, "run_group", lambda sessions, opts, bids_dir: group.GroupResult("p", "z", "r"))
    caplog.set_level("INFO", logger="bibsnet_trainer")
    assert main([str(phantom_bids), str(tmp_path / "out"), "group", "-w", str(tmp_path / "work")]) == 0
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "gpu preset" in r.getMessage()]
    assert warning.startswith("no usable GPU: --device auto fell back to the CPU")
    assert "1000 x 250 iterations" in warning and "days or more" in warning and "--preset cpu" in warning
    # the device found, and why no GPU is used, is said once at the start
    (device,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("device:")]
    assert device.startswith("device: cpu, no usable GPU (torch ") and "driver" in device and "CPU cores" in device
    caplog.clear()
    assert main([str(phantom_bids), str(tmp_path / "out2"), "group", "-w", str(tmp_path / "work2"),
                 "--preset", "cpu"]) == 0
    assert not [r for r in caplog.records if "gpu preset" in r.getMessage()]
    caplog.clear()
    assert main([str(phantom_bids), str(tmp_path / "out3"), "group", "-w", str(tmp_path / "work3"),
                 "--preset", "cpu", "--device", "cpu"]) == 0
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("device:")] == [
        f"device: cpu (--device cpu; {os.cpu_count()} CPU cores visible)"]


def test_unusable_cuda_is_refused_with_versions(capsys, phantom_bids, tmp_path, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, errors = _run(capsys, phantom_bids, tmp_path / "out", "participant", "--device", "cuda")
    assert code == 64
    assert f"torch {torch.__version__} built for" in errors[0] and "driver" in errors[0]


def test_unknown_filter_keys_are_refused_with_the_valid_ones(capsys, phantom_bids, tmp_path):
    filters = tmp_path / "filters.json"
    filters.write_text(json.dumps({"T1": {"run": 1}}))
    code, errors = _run(capsys, phantom_bids, tmp_path / "out", "participant", "--bids-filter-file", filters)
    assert code == 64 and str(filters) in errors[0] and "'T1'" in errors[0] and "valid keys: t1w, t2w" in errors[0]


def test_options_of_the_other_level_are_warned(caplog, phantom_bids, tmp_path):
    main([str(phantom_bids), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "w"), "--epochs", "5",
          "--preset", "cpu", "--model", str(tmp_path / "nowhere.zip")])
    (warning,) = [r.getMessage() for r in caplog.records if "ignored at the" in r.getMessage()]
    assert warning == "ignored at the participant level (options of the group level): --preset --epochs"


def test_output_dir_that_is_a_file_is_a_usage_error(capsys, phantom_bids, tmp_path):
    not_a_folder = tmp_path / "out.txt"
    not_a_folder.write_text("x")
    code, errors = _run(capsys, phantom_bids, not_a_folder, "participant")
    assert code == 64 and f"{not_a_folder}: output_dir exists and is not a folder" in errors[0]
    assert "resume" not in errors[0]


def test_default_work_dir_outlives_a_container(tmp_path, monkeypatch):
    from bibsnet_trainer.cli.environment import default_work_dir
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert default_work_dir(out, environ={}, root=tmp_path) == tmp_path / "work"
    assert default_work_dir(out, environ={"APPTAINER_CONTAINER": "/x.sif"}, root=tmp_path) == out / "work"
    (tmp_path / ".dockerenv").write_text("")
    assert default_work_dir(out, environ={}, root=tmp_path) == out / "work"


@pytest.mark.parametrize("flag, expected", [([], None), (["--train-on-all"], True), (["--no-train-on-all"], False)])
def test_train_on_all_is_the_presets_choice_unless_given(tmp_path, flag, expected):
    from bibsnet_trainer.cli.parser import build_parser
    from bibsnet_trainer.cli.run import group_config
    from bibsnet_trainer.config import Execution

    args = build_parser().parse_args(["bids", "out", "group", "--preset", "cpu", *flag])
    assert group_config(args, tmp_path, Execution(tmp_path)).train_on_all is expected


@pytest.mark.parametrize("flag, expected", [([], None), (["--contrast-augmentation", "0.3"], 0.3)])
def test_contrast_augmentation_reaches_the_trainers_settings(tmp_path, flag, expected):
    from bibsnet_trainer.cli.parser import build_parser
    from bibsnet_trainer.cli.run import group_config
    from bibsnet_trainer.config import Execution
    from bibsnet_trainer.nnunet.presets import training_settings

    args = build_parser().parse_args(["bids", "out", "group", "--preset", "cpu", *flag])
    preset = group_config(args, tmp_path, Execution(tmp_path)).preset
    assert training_settings(preset).get("contrast_augmentation") == expected


def test_label_maps_without_images_need_synthesis(capsys, caplog, tmp_path):
    """Real images only is the default: label maps without an image are named as unused, and
    with no real image left to train on the run stops before any work, naming the option."""
    from phantoms import write_bids
    bids = write_bids(tmp_path / "bids", {"01": "labels", "02": "labels", "03": "both"})
    code, errors = _run(capsys, bids, tmp_path / "out", "group", "-w", str(tmp_path / "work"),
                        "--test-subjects", "03", "--device", "cpu", "--preset", "cpu")
    assert code == 64 and "no real image to train on" in errors[0] and "--synthetic-per-map N" in errors[0]
    bids = write_bids(tmp_path / "bids2", {"01": "labels", "02": "both", "03": "both"})
    with caplog.at_level("WARNING"):
        code, _ = _run(capsys, bids, tmp_path / "out2", "group", "-w", str(tmp_path / "work2"), "--synthesize-only",
                       "--test-subjects", "03", "--device", "cpu", "--preset", "cpu")
    assert code == 0
    unused = [r.getMessage() for r in caplog.records if "trains only through synthesis" in r.getMessage()]
    assert len(unused) == 1 and "sub-01" in unused[0]
    assert not list((tmp_path / "work2").rglob("imagesTr/syn_*"))


def test_the_levels_run_without_an_argument_list(phantom_bids, tmp_path):
    """Tests and benchmarks call a level with a configuration, as the command line does after
    parsing: here the group level up to its synthetic samples, without sub-04 (an image only)."""
    from bibsnet_trainer.cli.levels import Selection, group_level
    from bibsnet_trainer.config import Execution, GroupConfig, SynthesisConfig
    from bibsnet_trainer.nnunet.presets import PRESETS

    config = GroupConfig(output_dir=tmp_path / "out", execution=Execution(work_dir=tmp_path / "work"),
                         preset=PRESETS["cpu"], synthesis=SynthesisConfig(samples_per_map=1),
                         test_subjects=["01"], synthesize_only=True)
    result = group_level(phantom_bids, config, Selection(participant_labels=["01", "02", "03"], validate=False))
    written = sorted(p.name[:-len("_0000.nii.gz")] for p in result.samples.glob("*_0000.nii.gz"))
    assert written == ["real_sub02", "syn_sub02_000", "syn_sub03_000"] and result.preview.is_file()


def _singular_t1w(path):
    """A T1w whose header maps voxels to the world through a singular matrix (a zero column in the
    sform, no qform), as a damaged conversion writes it."""
    data = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:, 1] = 0
    affine[3, 3] = 1
    img = nib.Nifti1Image(data, None)
    img.set_sform(affine, code=1)
    img.set_qform(None, code=0)
    nib.save(img, path)


def test_a_singular_header_is_one_line_naming_the_file(capsys, caplog, phantom_bids, tmp_path, monkeypatch):
    """The group level refuses the dataset (65); the participant level fails that session alone,
    in one line, and segments the others (1)."""
    from oracle import oracle_segmenter, write_fake_package

    bad = phantom_bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    good = phantom_bids / "sub-04" / "anat" / "sub-04_T1w.nii.gz"
    reference = tmp_path / "sub-04_reference.nii.gz"
    nib.save(nib.Nifti1Image((np.asarray(nib.load(good).dataobj) > 50).astype(np.int16) * 2, nib.load(good).affine),
             reference)
    _singular_t1w(bad)
    code, errors = _run(capsys, phantom_bids, tmp_path / "out", "group", "-w", str(tmp_path / "work"),
                        "--device", "cpu", "--synthesize-only", "--skip-bids-validation")
    assert code == 65 and len(errors) == 1 and str(bad) in errors[0] and "singular" in errors[0]
    package = write_fake_package(tmp_path / "model", [0, 2])
    monkeypatch.setattr("bibsnet_trainer.nnunet.predict.Segmenter", oracle_segmenter([(good, reference)]))
    code = main([str(phantom_bids), str(tmp_path / "seg"), "participant", "-w", str(tmp_path / "w"), "--model",
                 str(package), "--device", "cpu", "--nprocs", "1", "--skip-bids-validation",
                 "--participant-label", "01", "04"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert (tmp_path / "seg" / "sub-04" / "anat" / "sub-04_space-T1w_desc-aseg_dseg.nii.gz").is_file()
    failed = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and r.name.startswith("bibsnet_trainer")]   # nipype logs its own, to the log file
    assert len(failed) == 1 and str(bad) in failed[0] and "singular" in failed[0] and "sub-01" in failed[0]


def test_suspicious_geometry_is_warned_on_the_qc_page(caplog, phantom_bids, tmp_path, monkeypatch):
    """A T1w whose sform and qform disagree is segmented (the sform is used), and the warning
    naming the file is in the log and on the session's QC page."""
    from oracle import oracle_segmenter, write_fake_package

    image = phantom_bids / "sub-04" / "anat" / "sub-04_T1w.nii.gz"
    original = nib.load(image)
    data = np.asarray(original.dataobj, dtype=np.float32)
    img = nib.Nifti1Image(data, original.affine)
    shifted = original.affine.copy()
    shifted[0, 3] += 6.0
    img.set_qform(shifted, code=1)
    img.set_sform(original.affine, code=1)
    nib.save(img, image)
    reference = tmp_path / "sub-04_reference.nii.gz"
    nib.save(nib.Nifti1Image((data > 50).astype(np.int16) * 2, original.affine), reference)
    package = write_fake_package(tmp_path / "model", [0, 2])
    monkeypatch.setattr("bibsnet_trainer.nnunet.predict.Segmenter", oracle_segmenter([(image, reference)]))
    out = tmp_path / "seg"
    code = main([str(phantom_bids), str(out), "participant", "-w", str(tmp_path / "w"), "--model", str(package),
                 "--device", "cpu", "--nprocs", "1", "--skip-bids-validation", "--participant-label", "04"])
    assert code == 0
    words = "sub-04_T1w.nii.gz: sform and qform disagree by up to 6.0 mm"
    assert any(str(image) in r.getMessage() and "sform and qform disagree" in r.getMessage()
               for r in caplog.records if r.levelname == "WARNING")
    report = json.loads(next((out / "reports").glob("sub-04*qc*.json")).read_text())
    flag = {f["name"]: f for f in report["flags"]}["input_geometry"]
    assert flag["status"] == "warn" and flag["value"] == 1 and words in flag["detail"]
    assert words in next((out / "reports").glob("sub-04*qc*.html")).read_text()
