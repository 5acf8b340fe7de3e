"""The participant workflow: one session workflow per session, given the session and the run's
arguments as objects; a failing session is reported with its message and crash file and never
stops the others, with the Linear plugin (one process) and with MultiProc (workers). The step
function is imported by path (stubs.py)."""
import os
from pathlib import Path

import pytest

from bibsnet_trainer.participant.workflow import (NipypePlugin, import_callable, init_participant_wf, node_name,
                                                  plugin_for, run_workflow)
from stubs import FUNCTION, StubSession, calls

SESSIONS = [StubSession("01"), StubSession("02", "A"), StubSession("03")]


def _run(tmp_path, plugin, sessions=SESSIONS, function=FUNCTION):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    ended = []
    workflow, names = init_participant_wf(sessions, function, {"out_dir": out, "fail": ("03",)}, tmp_path / "work",
                                          poll_seconds=0.05)
    return out, run_workflow(workflow, names, plugin, on_end=ended.append), ended


@pytest.mark.parametrize("plugin", [plugin_for(1), plugin_for(2)], ids=["Linear", "MultiProc"])
def test_one_failing_session_among_three(tmp_path, plugin):
    out, outcome, ended = _run(tmp_path, plugin)
    assert sorted(outcome.done) == ["sub-01", "sub-02_ses-A"] and sorted(ended) == ["sub-01", "sub-02_ses-A", "sub-03"]
    assert outcome.failed == {"sub-03": "ValueError: sub-03: T1w is unreadable"}
    assert outcome.results["sub-01"] == {"dseg": str(out / "sub-01_dseg.txt")}
    assert (out / "sub-02_dseg.txt").read_text() == "02"
    crash = outcome.crash_files["sub-03"]
    assert crash.parent == tmp_path / "work" / "crash" and "sub_03" in crash.name
    assert "T1w is unreadable" in crash.read_text()
    assert not list(Path.cwd().glob("crash-*.txt"))
    pids = {(out / f"calls-{s}.txt").read_text().strip() for s in ("01", "02", "03")}
    assert (str(os.getpid()) in pids) == (plugin.name == "Linear")      # Linear: this process; MultiProc: workers


def test_a_rerun_runs_every_step_again(tmp_path):
    """Resuming is the caller's (it schedules only sessions without outputs): a step that runs
    again is not answered from nipype's cache."""
    _run(tmp_path, plugin_for(1))
    out, outcome, _ = _run(tmp_path, plugin_for(1))
    assert [calls(out, s) for s in ("01", "02", "03")] == [2, 2, 2] and sorted(outcome.done) == ["sub-01", "sub-02_ses-A"]


def test_plugins_and_helpers(tmp_path):
    assert plugin_for(1) == NipypePlugin("Linear", {})
    assert plugin_for(3).name == "MultiProc" and plugin_for(3).args["n_procs"] == 3
    assert plugin_for(3, NipypePlugin("SLURM", {"max_jobs": 2})) == NipypePlugin("SLURM", {"max_jobs": 2})
    workflow, names = init_participant_wf([], FUNCTION, {}, tmp_path)
    outcome = run_workflow(workflow, names, plugin_for(1))
    assert outcome.done == [] and outcome.failed == {}
    with pytest.raises(ValueError, match="unique"):
        init_participant_wf([StubSession("01"), StubSession("01")], FUNCTION, {}, tmp_path)
    assert import_callable("os.path:join") is os.path.join
    assert import_callable("os.path.join") is os.path.join
    with pytest.raises(ValueError):
        import_callable("join")
    taken = set()
    assert node_name("sub-01_ses-A", taken) == "sub_01_ses_A"
    assert node_name("sub-01.ses-A", taken) == "sub_01_ses_A_2"
    assert node_name("01", taken) == "s_01"


def test_unimportable_function_is_a_reported_failure(tmp_path):
    _, outcome, _ = _run(tmp_path, plugin_for(1), [StubSession("01")], "no_such_module:segment")
    assert list(outcome.failed) == ["sub-01"] and "ModuleNotFoundError" in outcome.failed["sub-01"]
