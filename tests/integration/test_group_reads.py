"""The group level reads each input file once per stage: the plan stage validates every file and
takes from it what the run needs (label table and shares, priors, voxel sizes); the dataset stage
writes a session's real case and draws its synthetic cases from one read; a re-run whose cases
are all written reads nothing in that stage."""
from collections import Counter

from bibsnet_trainer.bids import inputs
from bibsnet_trainer.cli.run import main
from bibsnet_trainer.group import dataset


def _count_reads(monkeypatch):
    reads = {"plan": Counter(), "dataset": Counter()}
    for module, stage in ((inputs, "plan"), (dataset, "dataset")):
        original = module.load_volume

        def counted(path, *args, _original=original, _stage=stage, **kwargs):
            reads[_stage][str(path)] += 1
            return _original(path, *args, **kwargs)
        monkeypatch.setattr(module, "load_volume", counted)
    return reads


def test_each_file_is_read_once_per_stage(phantom_bids, tmp_path, monkeypatch, capsys):
    reads = _count_reads(monkeypatch)
    args = [str(phantom_bids), str(tmp_path / "out"), "group", "-w", str(tmp_path / "work"), "--synthesize-only",
            "--synthetic-per-map", "2", "--device", "cpu", "--test-fraction", "0.01", "--priors", "estimated",
            "--background-components", "2"]
    assert main(args) == 0, capsys.readouterr().err
    files = {str(p) for p in phantom_bids.rglob("*.nii.gz")}
    assert set(reads["plan"]) == files and set(reads["plan"].values()) == {1}   # every file validated, once
    # sub-01 and sub-02: a real case and synthetic cases (from their labels and, for the
    # background components, their image); sub-03: synthetic cases only
    assert reads["dataset"] and set(reads["dataset"].values()) == {1}, reads["dataset"]
    assert any("sub-03" in p for p in reads["dataset"]) and not any("sub-04" in p for p in reads["dataset"])

    reads["plan"].clear()
    reads["dataset"].clear()
    assert main(args) == 0
    assert set(reads["plan"].values()) == {1} and not reads["dataset"]          # everything reused
