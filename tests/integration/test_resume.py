"""Kill a group-level run during training and run the same command again: finished stages are
reused (synthetic images are not rewritten) and training continues from nnU-Net's checkpoint."""
import os
import signal
import subprocess
import sys
import time

import pytest

from phantoms import write_bids


@pytest.mark.slow
def test_kill_during_training_then_resume(tmp_path):
    bids = write_bids(tmp_path / "bids", {"01": "both", "02": "both", "03": "labels"})
    work, out = tmp_path / "work", tmp_path / "out"
    command = [sys.executable, "-m", "bibsnet_trainer.cli.run", str(bids), str(out), "group", "-w", str(work),
               "--preset", "cpu", "--epochs", "8", "--iterations-per-epoch", "5", "--nprocs", "2",
               "--device", "cpu", "--synthetic-per-map", "1"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    deadline = time.monotonic() + 300
    checkpoints = []
    while time.monotonic() < deadline and not checkpoints and first.poll() is None:
        time.sleep(1)
        checkpoints = list(work.rglob("fold_0/checkpoint_latest.pth"))
    assert checkpoints, "training never wrote a checkpoint"
    os.killpg(first.pid, signal.SIGKILL)            # as a scheduler would: the whole process group
    first.wait()
    assert not list(work.rglob("fold_0/checkpoint_final.pth")) and not (out / "models").exists()
    synthetic = sorted(work.rglob("imagesTr/syn_*_0000.nii.gz"))
    stamps = {p: p.stat().st_mtime_ns for p in synthetic}

    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resuming training from" in second.stderr
    assert "synthesizing" not in second.stderr                       # nothing left to synthesise
    assert {p: p.stat().st_mtime_ns for p in synthetic} == stamps
    assert list((out / "models").glob("*/*/fold_0/checkpoint_final.pth"))
    assert ": Epoch 0\n" not in second.stderr and ": Epoch 7\n" in second.stderr   # continued, not restarted
    log = next(work.rglob("logs/train_fold0.log")).read_text()
    assert log.count(": Epoch 0\n") == 1                                              # both runs, one log
