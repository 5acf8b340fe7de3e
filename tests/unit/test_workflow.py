"""The participant workflow on MultiProc: good sessions succeed, a failing one is reported, a re-run
reuses finished nodes. The node function is imported by path (stubs.py)."""
import os
import time
from pathlib import Path

import pytest

from bibsnet_trainer.participant.workflow import SessionJob, import_callable, node_name, run_sessions
from stubs import FUNCTION, calls

FAST = {"poll_seconds": 0.05}


@pytest.fixture
def jobs(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    image = tmp_path / "sub-01_T1w.nii.gz"
    image.write_text("image")
    return out, image, [
        SessionJob("sub-01", {"subject": "01"}, input_files=[image]),
        SessionJob("sub-02_ses-A", {"subject": "02"}),
        SessionJob("sub-03", {"subject": "03", "fail": True}),
    ]


def test_failures_reported_and_reruns_cached(jobs, tmp_path):
    out, image, session_jobs = jobs
    work = tmp_path / "work"
    start = time.perf_counter()
    first = run_sessions(session_jobs, FUNCTION, work, n_procs=2, common_kwargs={"out_dir": str(out)}, **FAST)
    first_s = time.perf_counter() - start
    assert sorted(first.done) == ["sub-01", "sub-02_ses-A"] and first.cached == []
    assert first.failed == {"sub-03": "ValueError: sub-03: T1w is unreadable"}
    assert first.results["sub-01"] == {"dseg": str(out / "sub-01_dseg.txt")}
    assert (out / "sub-02_dseg.txt").read_text() == "02"
    assert [calls(out, s) for s in ("01", "02", "03")] == [1, 1, 1]
    pids = {Path(out / f"calls-{s}.txt").read_text().strip() for s in ("01", "02", "03")}
    assert str(os.getpid()) not in pids                                  # ran in MultiProc workers
    crash_files = list((work / "crash").glob("crash-*"))
    assert crash_files and all("sub_03" in p.name for p in crash_files)  # crash files inside the work dir
    assert not list(Path.cwd().glob("crash-*.txt"))

    start = time.perf_counter()
    second = run_sessions(session_jobs, FUNCTION, work, n_procs=2, common_kwargs={"out_dir": str(out)}, **FAST)
    second_s = time.perf_counter() - start
    assert sorted(second.cached) == ["sub-01", "sub-02_ses-A"] and second.done == []
    assert second.results["sub-02_ses-A"] == {"dseg": str(out / "sub-02_dseg.txt")}
    assert list(second.failed) == ["sub-03"]
    assert [calls(out, s) for s in ("01", "02", "03")] == [1, 1, 2]      # only the failed one ran again
    print(f"first run {first_s:.1f} s, second run {second_s:.1f} s")

    # a changed input file, or a new cache key, invalidates the cache of the nodes concerned
    image.write_text("new image, new size")
    third = run_sessions(session_jobs[:2], FUNCTION, work, n_procs=2, common_kwargs={"out_dir": str(out)}, **FAST)
    assert third.done == ["sub-01"] and third.cached == ["sub-02_ses-A"] and not third.failed
    fourth = run_sessions(session_jobs[:2], FUNCTION, work, n_procs=2, common_kwargs={"out_dir": str(out)},
                          cache_key="model r20260301", **FAST)
    assert sorted(fourth.done) == ["sub-01", "sub-02_ses-A"]


def test_nothing_to_do_and_helpers(tmp_path):
    outcome = run_sessions([], FUNCTION, tmp_path)
    assert outcome.succeeded == [] and outcome.failed == {}
    assert import_callable("os.path:join") is os.path.join
    assert import_callable("os.path.join") is os.path.join
    with pytest.raises(ValueError):
        import_callable("join")
    taken = set()
    assert node_name("sub-01_ses-A", taken) == "sub_01_ses_A"
    assert node_name("sub-01.ses-A", taken) == "sub_01_ses_A_2"
    assert node_name("01", taken) == "s_01"


def test_unimportable_function_is_a_reported_failure(tmp_path):
    outcome = run_sessions([SessionJob("sub-01", {})], "no_such_module:segment", tmp_path / "work", n_procs=1,
                           **FAST)
    assert list(outcome.failed) == ["sub-01"]
    assert "ModuleNotFoundError" in outcome.failed["sub-01"]
