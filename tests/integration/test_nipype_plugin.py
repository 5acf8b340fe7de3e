"""--nipype-plugin-file (fMRIPrep's convention): the YAML's plugin and plugin_args reach nipype
unchanged. Run here with the Linear and MultiProc plugins; for SLURM, what nipype is handed."""
import logging

import numpy as np
import pytest

from bibsnet_trainer.cli.run import main
from bibsnet_trainer.labels import target_code
from bibsnet_trainer.participant.workflow import NipypePlugin, init_participant_wf, read_plugin_file, run_workflow
from phantoms import VERMIS, labels_with_vermis, write_contract_dataset
from oracle import oracle_segmenter, write_fake_package
from stubs import FUNCTION, StubSession, calls

SESSIONS = [StubSession("01"), StubSession("03")]


def _workflow(tmp_path, out):
    return init_participant_wf(SESSIONS, FUNCTION, {"out_dir": out, "fail": ("03",)}, tmp_path / "work",
                               poll_seconds=0.05)


def test_plugin_file_is_read_as_written(tmp_path):
    good = tmp_path / "slurm.yml"
    good.write_text("plugin: SLURM\nplugin_args:\n  sbatch_args: --mem=8G --time=1:00:00\n  max_jobs: 10\n")
    assert read_plugin_file(good) == NipypePlugin("SLURM", {"sbatch_args": "--mem=8G --time=1:00:00", "max_jobs": 10})
    for text, words in (("- MultiProc\n", "YAML mapping"), ("plugin_args: {n_procs: 2}\n", "`plugin:`"),
                        ("plugin: Linear\nplugin_args: [1]\n", "must be a mapping"),
                        ("plugin: Linear\nplugins: x\n", "unknown keys"), ("plugin: [\n", "not valid YAML")):
        bad = tmp_path / "bad.yml"
        bad.write_text(text)
        with pytest.raises(ValueError, match=words):
            read_plugin_file(bad)


@pytest.mark.parametrize("plugin", [NipypePlugin("Linear", {}), NipypePlugin("MultiProc", {"n_procs": 2})])
def test_sessions_run_with_the_plugin_of_the_file(tmp_path, plugin, caplog):
    out = tmp_path / "out"
    out.mkdir()
    with caplog.at_level(logging.ERROR, logger="bibsnet_trainer"):
        outcome = run_workflow(*_workflow(tmp_path, out), plugin)
    assert outcome.done == ["sub-01"] and outcome.failed == {"sub-03": "ValueError: sub-03: T1w is unreadable"}
    assert (out / "sub-01_dseg.txt").read_text() == "01" and calls(out, "03") == 1
    assert not [r for r in caplog.records if r.name.startswith("bibsnet_trainer.participant.workflow")]   # the caller logs


def test_slurm_configuration_is_handed_to_nipype_unchanged(tmp_path, monkeypatch):
    from nipype.pipeline import engine as pe
    handed = {}
    monkeypatch.setattr(pe.Workflow, "run", lambda self, plugin, plugin_args: handed.update(
        plugin=plugin, plugin_args=dict(plugin_args)))
    args = {"sbatch_args": "--mem=8G --time=1:00:00", "max_jobs": 10, "template": "#!/bin/bash\n"}
    run_workflow(*_workflow(tmp_path, tmp_path), NipypePlugin("SLURM", args))
    assert handed["plugin"] == "SLURM"
    callback = handed["plugin_args"].pop("status_callback")
    assert callable(callback) and handed["plugin_args"] == args


def test_participant_level_with_a_linear_plugin_file(tmp_path, caplog):
    bids, pairs = write_contract_dataset(tmp_path, "T1w")
    codes = sorted({int(target_code(c)) for c in np.unique(labels_with_vermis(0))} | {VERMIS})
    package = write_fake_package(tmp_path, codes, modalities=("T1w",), age_range=[0.0, 4.0])
    plugin_file = tmp_path / "linear.yml"
    plugin_file.write_text("plugin: Linear\n")
    with pytest.MonkeyPatch.context() as patch, caplog.at_level(logging.INFO, logger="bibsnet_trainer"):
        patch.setattr("bibsnet_trainer.nnunet.predict.Segmenter", oracle_segmenter(pairs))
        code = main([str(bids), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "work"), "--model",
                     str(package), "--device", "cpu", "--nprocs", "1", "--nipype-plugin-file", str(plugin_file)])
    assert code == 0
    assert any("nipype's Linear plugin" in r.getMessage() for r in caplog.records)
    assert len(list((tmp_path / "out").rglob("*_desc-aseg_dseg.nii.gz"))) == 3
    assert (tmp_path / "work" / "participant_workflow").is_dir()


def test_bad_plugin_file_is_one_line_naming_it(tmp_path, capsys, phantom_bids):
    plugin_file = tmp_path / "plugin.yml"
    plugin_file.write_text("plugin_args: {n_procs: 2}\n")
    code = main([str(phantom_bids), str(tmp_path / "out"), "participant", "--nipype-plugin-file", str(plugin_file)])
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 64 and str(plugin_file) in err[0] and "`plugin:`" in err[0]
