"""The Nibabies contract: run the participant level (an oracle in place of the network, see oracle.py)
and look the outputs up with the queries Nibabies itself runs on a precomputed-derivatives folder.

The queries and what they come from: nibabies_queries.py.
And FreeSurfer codes survive the label table, 172 (Vermis) included."""
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bibsnet_trainer.cli.run import main
from bibsnet_trainer.bids.derivatives import write_dataset_level
from bibsnet_trainer.labels import LabelTable, freesurfer_names, mirror_lut, target_code, to_target
from nibabies_queries import NIBABIES_23_SPEC, NIBABIES_24_BASELINE, NII, resolve_bids_uri
from oracle import oracle_segmenter, write_fake_package
from phantoms import VERMIS, labels_with_vermis, write_contract_dataset

@pytest.fixture(scope="module", params=["T1w", "T2w"])
def participant_run(request, tmp_path_factory):
    modality = request.param
    root = tmp_path_factory.mktemp(f"contract_{modality}")
    bids, pairs = write_contract_dataset(root, modality)
    codes = sorted({int(target_code(c)) for c in np.unique(labels_with_vermis(0))} | {VERMIS})
    package = write_fake_package(root, codes, modalities=(modality,), age_range=[0.0, 4.0])
    out = root / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("bibsnet_trainer.nnunet.predict.Segmenter", oracle_segmenter(pairs))
        code = main([str(bids), str(out), "participant", "-w", str(root / "work"), "--model", str(package),
                     "--device", "cpu", "--nprocs", "1"])   # in process: the oracle is patched here
    return {"code": code, "out": out, "bids": bids, "pairs": pairs, "modality": modality, "work": root / "work"}


SESSIONS = [("01", None), ("02", "1mo"), ("02", "6mo")]


def _layout(out, config=("bids", "derivatives")):
    from bids import BIDSLayout
    return BIDSLayout(str(out), validate=False, config=list(config) if config else None)


def test_participant_level_succeeds(participant_run):
    assert participant_run["code"] == 0


def test_nibabies_24_queries_find_exactly_our_files(participant_run):
    out, modality = participant_run["out"], participant_run["modality"]
    layout = _layout(out)
    space = modality.lower()
    for subject, session in SESSIONS:
        base = {"subject": subject, **({"session": session} if session else {})}
        found = {key: layout.get(return_type="filename", **query, **base)
                 for key, query in NIBABIES_24_BASELINE.items()}
        assert [Path(f).name for f in found[f"{space}_aseg"]] == [
            f"sub-{subject}{f'_ses-{session}' if session else ''}_space-{modality}_desc-aseg_dseg.nii.gz"]
        assert len(found[f"{space}_mask"]) == 1 and found[f"{space}_mask"][0].endswith("_desc-brain_mask.nii.gz")
        others = {k: v for k, v in found.items() if k not in (f"{space}_aseg", f"{space}_mask")}
        assert not any(others.values()), others          # volumes, reports, sidecars match nothing else


def test_nibabies_23_populate_accepts_every_file(participant_run):
    """Exactly one match per query with session given, a single SpatialReference, and the derivative on
    the reference's grid (axis codes, shape, affine within 1e-5), as Derivatives.validate checks."""
    out, modality = participant_run["out"], participant_run["modality"]
    layout = _layout(out, config=None)                  # 23.x: pybids' defaults, which need DatasetType
    assert layout.is_derivative                          # "derivative" to know space and desc
    for subject, session in SESSIONS:
        for key, query in NIBABIES_23_SPEC.items():
            items = layout.get(subject=subject, session=session, extension=NII, **query)
            if query["space"] != modality:
                assert items == []
                continue
            assert len(items) == 1, (key, items)
            reference = items[0].get_metadata()["SpatialReference"]
            assert isinstance(reference, str) and reference.startswith("bids:raw:")
            reference = resolve_bids_uri(reference, out)
            assert reference.is_file() and reference.name.endswith(f"_{modality}.nii.gz")
            anat, img = nib.load(reference), nib.load(items[0].path)
            assert nib.aff2axcodes(img.affine) == nib.aff2axcodes(anat.affine)
            assert img.shape == anat.shape and np.allclose(img.affine, anat.affine, atol=1e-5)


def test_sources_still_resolve_after_both_datasets_move(participant_run, tmp_path):
    """Input and derivatives copied elsewhere together: every sidecar's bids:raw: source is found."""
    import shutil
    old_root = participant_run["out"].parent
    moved = tmp_path / "elsewhere"
    for name in ("out", participant_run["bids"].relative_to(old_root).parts[0]):
        shutil.copytree(old_root / name, moved / name)
    sidecars = sorted((moved / "out").rglob("*_dseg.json")) + sorted((moved / "out").rglob("*_mask.json"))
    assert sidecars
    for sidecar in sidecars:
        for uri in json.loads(sidecar.read_text())["Sources"]:
            if uri.startswith("bids:raw:"):
                resolved = resolve_bids_uri(uri, moved / "out").resolve()
                assert resolved.is_file() and moved in resolved.parents, (sidecar, uri)


def test_dataset_level_files(participant_run):
    out = participant_run["out"]
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "bibsnet-trainer"
    # relative, so a dataset moved together with its input still resolves every bids:raw: URI
    assert not Path(description["DatasetLinks"]["raw"]).is_absolute()
    assert (out / description["DatasetLinks"]["raw"]).resolve() == participant_run["bids"].resolve()
    assert description["SourceDatasets"] == [{"URL": "bids:raw:"}]
    assert {"reports", "models"} <= set((out / ".bidsignore").read_text().split())
    assert f"{VERMIS}\tVermis\t#7764b0" in (out / "desc-aseg_dseg.tsv").read_text().splitlines()


def test_outputs_match_the_reference_and_keep_172(participant_run):
    """The oracle's answer comes back on each input's own grid and voxel order: the written dseg equals
    the reference label map voxel for voxel (LPS-stored session included), 172 included, and the
    volumes table counts it."""
    out, modality = participant_run["out"], participant_run["modality"]
    for (image, reference), (subject, session) in zip(participant_run["pairs"], SESSIONS):
        key = f"sub-{subject}" + (f"_ses-{session}" if session else "")
        folder = out / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"
        dseg = nib.load(folder / f"{key}_space-{modality}_desc-aseg_dseg.nii.gz")
        source = nib.load(image)
        assert dseg.shape == source.shape and np.allclose(dseg.affine, source.affine)
        expected = to_target(np.asarray(nib.load(reference).dataobj).astype(np.int32))
        written = np.asarray(dseg.dataobj)
        assert np.array_equal(written, expected)
        assert (written == VERMIS).sum() > 0
        rows = {int(r.split("\t")[0]): r.split("\t")
                for r in (folder / f"{key}_space-{modality}_desc-aseg_volumes.tsv").read_text().splitlines()[1:]}
        assert rows[VERMIS][1] == "Vermis" and int(rows[VERMIS][3]) == int((written == VERMIS).sum())
        sidecar = json.loads((folder / f"{key}_space-{modality}_desc-aseg_volumes.json").read_text())
        assert sidecar["volume_mm3"]["Units"] == "mm^3"


def test_qc_reports_and_summary(participant_run):
    out = participant_run["out"]
    summary = [line.split("\t") for line in (out / "reports" / "participants_qc.tsv").read_text().splitlines()]
    header, rows = summary[0], summary[1:]
    assert [r[:3] for r in rows] == [["sub-01", "n/a", "3.0"], ["sub-02", "ses-1mo", "1.0"],
                                     ["sub-02", "ses-6mo", "6.0"]]
    column = dict(zip(header, zip(*rows)))
    assert column["left_right_side_mm_status"] == ("ok", "ok", "ok")
    assert column["hemisphere_ratio_status"] == ("ok", "ok", "ok")
    assert column["dice_mean"] == ("1.0", "n/a", "n/a")          # a reference only for sub-01
    assert column["age_in_model_range_status"] == ("ok", "ok", "warn")   # the model learnt 0-4 months
    for key in ("sub-01", "sub-02_ses-1mo", "sub-02_ses-6mo"):
        report = json.loads((out / "reports" / f"{key}_desc-qc_report.json").read_text())
        assert {f["status"] for f in report["flags"]} <= {"ok", "warn", "fail", "n/a"}
        html = (out / "reports" / f"{key}_desc-qc_report.html").read_text()
        assert html.count("<img") == 2 and f"QC status: <b>{report['status']}</b>" in html


def test_rerun_skips_and_backfills_a_missing_qc_report(participant_run, tmp_path):
    out = participant_run["out"]
    report = out / "reports" / "sub-02_ses-1mo_desc-qc_report.json"
    dseg = next((out / "sub-02" / "ses-1mo" / "anat").glob("*_desc-aseg_dseg.nii.gz"))
    stamp = dseg.stat().st_mtime_ns
    report.unlink()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("bibsnet_trainer.nnunet.predict.Segmenter", oracle_segmenter([]))   # must not segment
        code = main([str(participant_run["bids"]), str(out), "participant", "-w", str(tmp_path / "w"),
                     "--model", str(next(out.parent.glob("package"))), "--device", "cpu", "--nprocs", "1"])
    assert code == 0 and report.is_file() and dseg.stat().st_mtime_ns == stamp
    assert len((out / "reports" / "participants_qc.tsv").read_text().splitlines()) == 4


# ----------------------------------------------------------------------------- label table, no model

def test_freesurfer_codes_survive_the_label_table():
    codes = [0, 2, 3, 4, 16, 41, 42, 43, VERMIS, 173, 174, 175, 251, 255]
    table = LabelTable.from_codes(codes)
    assert VERMIS in table.codes and table.names()[table.codes.index(VERMIS)] == "Vermis"
    label_map = np.array(codes * 3, dtype=np.int32).reshape(3, len(codes), 1)
    indices = table.to_index(label_map)
    assert indices.max() == len(table) - 1                      # consecutive for nnU-Net
    assert np.array_equal(table.to_codes(indices), label_map)  # and back, 172 included
    assert LabelTable.from_json(json.loads(json.dumps(table.as_json()))) == table
    assert target_code(VERMIS) == VERMIS and np.array_equal(to_target(label_map), label_map)
    assert mirror_lut(VERMIS)[VERMIS] == VERMIS       # midline: left-right flips keep it
    assert freesurfer_names()[VERMIS] == "Vermis"


def test_dataset_table_lists_172(tmp_path):
    write_dataset_level(tmp_path, tmp_path / "bids", LabelTable.from_codes([0, 2, VERMIS, 255]))
    assert (tmp_path / "desc-aseg_dseg.tsv").read_text() == \
        ("index\tname\tcolor\n0\tbackground\t#000000\n2\tLeft-Cerebral-White-Matter\t#f5f5f5\n"
         "172\tVermis\t#7764b0\n255\tCC_Anterior\t#0000ff\n")    # FreeSurferColorLUT colours


def test_bids_validator_finds_no_error(participant_run):
    """bids-validator (pip: bids-validator-deno, runs offline) on the participant outputs."""
    import json as _json
    import shutil as _shutil
    import subprocess
    import sys
    beside = Path(sys.executable).parent / "bids-validator-deno"       # the venv's, when not on PATH
    validator = str(beside) if beside.is_file() else _shutil.which("bids-validator-deno")
    if validator is None:
        pytest.skip("bids-validator-deno is not installed")
    run = subprocess.run([validator, "--json", str(participant_run["out"])], capture_output=True, text=True,
                         timeout=300)
    issues = _json.loads(run.stdout)["issues"]["issues"]
    errors = [(i["code"], i.get("location")) for i in issues if i.get("severity") == "error"]
    assert errors == []
    assert not list(participant_run["out"].rglob("*.lock"))          # no stray lock files


def test_dseg_sidecar_has_no_mask_fields(participant_run):
    for sidecar in participant_run["out"].rglob("*_desc-aseg_dseg.json"):
        assert "Type" not in json.loads(sidecar.read_text())          # `Type` belongs to masks


def test_index_page_links_every_qc_report(participant_run):
    page = (participant_run["out"] / "index.html").read_text()
    for report in (participant_run["out"] / "reports").glob("*_desc-qc_report.html"):
        assert f"href='reports/{report.name}'" in page
        assert "href='../index.html'" in report.read_text()          # and back


def test_reports_state_what_produced_them(participant_run):
    for page in (participant_run["out"] / "reports").glob("*_report.html"):
        text = page.read_text()
        assert "<h2>Provenance</h2>" in text and "bibsnet-trainer 0." in text and "nnunetv2" in text
        assert "Isensee F" in text and "Billot B" in text                   # methods with citations
        assert "<summary><b>configuration</b>" in text and "omp_nthreads" in text   # the run's configuration
    recorded = json.loads((participant_run["work"] / "participant_config.json").read_text())
    qc_jsons = list((participant_run["out"] / "reports").glob("*_desc-qc_report.json"))
    for qc_json in qc_jsons:   # (another test of this module re-runs with another work dir)
        configuration = json.loads(qc_json.read_text())["provenance"]["configuration"]
        configuration["execution"].pop("work_dir")
        assert configuration == dict(recorded, execution={k: v for k, v in recorded["execution"].items()
                                                          if k != "work_dir"})
    assert qc_jsons
