"""BIDS-Derivatives names and metadata for participant outputs, as Nibabies queries them:
`sub-X[_ses-Y]_space-<T1w|T2w>_desc-aseg_dseg.nii.gz`, `..._desc-brain_mask.nii.gz`, sidecars with
`SpatialReference`/`Sources`, a top-level `desc-aseg_dseg.tsv` and `dataset_description.json`.

Beside them: region volumes `..._desc-aseg_volumes.tsv` (+ JSON; see volumes.py for the name) and,
outside the BIDS tree (listed in `.bidsignore`), QC reports `reports/sub-X[_ses-Y]_desc-qc_report.{json,html}`
and the group summary `reports/participants_qc.tsv` (+ JSON)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .. import __version__
from ..images import write_text_atomic
from ..labels import LabelTable

PIPELINE = "bibsnet-trainer"


def output_paths(output_dir: Path, subject: str, session: str | None, space: str) -> dict[str, Path]:
    stem = f"sub-{subject}" + (f"_ses-{session}" if session else "")
    folder = Path(output_dir) / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"
    base = folder / f"{stem}_space-{space}"
    return {
        "dseg": base.with_name(base.name + "_desc-aseg_dseg.nii.gz"),
        "dseg_json": base.with_name(base.name + "_desc-aseg_dseg.json"),
        "mask": base.with_name(base.name + "_desc-brain_mask.nii.gz"),
        "mask_json": base.with_name(base.name + "_desc-brain_mask.json"),
        "volumes": base.with_name(base.name + "_desc-aseg_volumes.tsv"),
        "volumes_json": base.with_name(base.name + "_desc-aseg_volumes.json"),
    }


# the output folder's layout, named once
REPORTS = "reports"
MODELS = "models"
QC_SUMMARY = "participants_qc.tsv"
GROUP_DICE_REPORT = "group_desc-dice_report"
QC_REPORT = "desc-qc_report"           # a session's QC report: reports/<session key>_desc-qc_report.{json,html}
SYNTHESIS_PREVIEW = "synthesis_preview.png"
# patterns as bids-validator matches them (a trailing slash is not honoured): our reports and
# model packages, and the region-volume tables BIDS has no suffix for
BIDSIGNORE = (REPORTS, MODELS, "work", "index.html", "*_desc-aseg_volumes.tsv", "*_desc-aseg_volumes.json")


def qc_paths(output_dir: Path, session_key: str) -> dict[str, Path]:
    """The QC report of the session `session_key` (`Session.key`); the JSON is written last: its
    presence marks the QC step complete."""
    stem = Path(output_dir) / REPORTS / f"{session_key}_{QC_REPORT}"
    return {"json": stem.with_suffix(".json"), "html": stem.with_suffix(".html")}


def bids_uri(bids_dir: Path, path: Path, dataset: str = "raw") -> str:
    """`bids:<dataset>:<path within the dataset>`. A file may be a link out of the dataset (DataLad
    and git-annex datasets hold links into their annex): its place in the dataset is its path as
    found, not the file the link points to; a dataset reached through a link resolves both."""
    found, root = Path(os.path.abspath(path)), Path(os.path.abspath(bids_dir))
    if not found.is_relative_to(root):   # links among the folders: resolve them, not the file's own
        found, root = found.parent.resolve() / found.name, root.resolve()
    return f"bids:{dataset}:{found.relative_to(root).as_posix()}"


def dseg_sidecar(reference_uri: str, sources: list[str], model: dict) -> dict:
    return {"SpatialReference": reference_uri, "Sources": sources, "Manual": False,
            "Description": "FreeSurfer aseg labels predicted by nnU-Net",
            "Model": model}


def mask_sidecar(reference_uri: str, dseg_uri: str) -> dict:
    return {"SpatialReference": reference_uri, "Sources": [dseg_uri], "Type": "Brain",
            "Description": "Brain mask: all labels, holes filled, largest connected component"}


def write_json(path: Path, content: dict) -> Path:
    return write_text_atomic(path, json.dumps(content, indent=2) + "\n")


def write_volumes(tsv: Path, sidecar: Path, rows: list[dict]) -> Path:
    """The region-volume table and its column descriptions (sidecar first: the TSV marks completion)."""
    from ..volumes import SIDECAR, volumes_tsv
    write_json(sidecar, SIDECAR)
    return write_text_atomic(tsv, volumes_tsv(rows))


def source_links(bids_dir: Path, output_dir: Path) -> dict:
    """SourceDatasets and DatasetLinks that survive moving both datasets together: `raw` is the
    input dataset's path relative to this one (BIDS allows relative DatasetLinks; the sidecars'
    `bids:raw:` URIs resolve through it), and the source is named by that BIDS URI and, when the
    input dataset has one, its DOI (the reference that survives any move)."""
    bids_dir, output_dir = Path(bids_dir).resolve(), Path(output_dir).resolve()
    source: dict = {"URL": "bids:raw:"}
    try:
        doi = json.loads((bids_dir / "dataset_description.json").read_text()).get("DatasetDOI")
    except (OSError, ValueError):
        doi = None
    if doi:
        source["DOI"] = str(doi)
    return {"SourceDatasets": [source],
            "DatasetLinks": {"raw": Path(os.path.relpath(bids_dir, output_dir)).as_posix()}}


def write_dataset_level(output_dir: Path, bids_dir: Path, table: LabelTable) -> None:
    """dataset_description.json and desc-aseg_dseg.tsv (rewritten identically on re-runs)."""
    output_dir = Path(output_dir)
    write_json(output_dir / "dataset_description.json", {
        "Name": "bibsnet-trainer segmentations",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": PIPELINE, "Version": __version__,
                         "CodeURL": "https://github.com/bibsnet-trainer/bibsnet-trainer"}],
        **source_links(bids_dir, output_dir),
    })
    rows = ["index\tname\tcolor"] + [f"{code}\t{name}\t{color}"
                                     for code, name, color in zip(table.codes, table.names(), table.colors())]
    write_text_atomic(output_dir / "desc-aseg_dseg.tsv", "\n".join(rows) + "\n")
    write_text_atomic(output_dir / ".bidsignore", "\n".join(BIDSIGNORE) + "\n")
