"""Region volumes of a segmentation: one row per label (index, name, volume_mm3, voxels).

Written per subject/session as `sub-X[_ses-Y]_space-<T1w|T2w>_desc-aseg_volumes.tsv` with a JSON
sidecar describing the columns. BIDS has no suffix for region volumes yet. This name is BIBSnet's
own (DCAN-Labs/BIBSnet writes `..._space-<T1w|T2w>_desc-aseg_volumes.tsv/.json` next to the same
dseg and mask, and the HBCD release tabulates it as `img_bibsnet_space-<T1w|T2w>_desc-aseg_volumes`),
so lab scripts written for BIBSnet outputs keep working; it is a valid derivative file name
(entities, then a suffix, pybids parses it), `desc-aseg` ties it to the `desc-aseg_dseg` image it was
computed from, and a suffix other than `dseg`/`mask` keeps Nibabies' queries from ever matching it.
(NiPreps' PETPrep and XCP-D use `_morph.tsv` for such tables; not chosen, for BIBSnet compatibility.)"""
from __future__ import annotations

import numpy as np

from .labels import freesurfer_names, label_name

COLUMNS = ("index", "name", "volume_mm3", "voxels")
SIDECAR = {
    "index": {"LongName": "Label code",
              "Description": "FreeSurfer aseg label code, as in the segmentation image and desc-aseg_dseg.tsv"},
    "name": {"LongName": "Structure name", "Description": "FreeSurfer structure name of the label"},
    "volume_mm3": {"LongName": "Volume",
                   "Description": "Volume of the label: voxel count times the voxel volume of the image grid",
                   "Units": "mm^3"},
    "voxels": {"LongName": "Voxel count", "Description": "Number of voxels carrying the label"},
}


def voxel_volume_mm3(affine: np.ndarray) -> float:
    """Volume of one voxel in mm³ (|det| of the affine's 3x3 part: shears and rotations included)."""
    return float(abs(np.linalg.det(np.asarray(affine, dtype=float)[:3, :3])))


def region_volumes(labels: np.ndarray, voxel_mm3: float, codes=None) -> list[dict]:
    """Rows (index, name, volume_mm3, voxels) sorted by code, background (0) left out.

    codes: the label table to report (absent labels get 0, so every subject's table has the same
    rows); codes present in `labels` but not in `codes` are added, never dropped."""
    labels = np.asarray(labels)
    if labels.size and labels.min() < 0:
        raise ValueError("label map has negative labels")
    counts = np.bincount(labels.ravel().astype(np.int64)) if labels.size else np.zeros(1, np.int64)
    present = {int(c) for c in np.flatnonzero(counts)}
    wanted = sorted((({int(c) for c in codes} if codes is not None else set()) | present) - {0})
    names = freesurfer_names()
    rows = []
    for code in wanted:
        voxels = int(counts[code]) if code < len(counts) else 0
        rows.append({"index": code, "name": label_name(code, names),
                     "volume_mm3": round(voxels * float(voxel_mm3), 3), "voxels": voxels})
    return rows


def volumes_by_code(rows: list[dict]) -> dict[int, float]:
    return {int(r["index"]): float(r["volume_mm3"]) for r in rows}


def volumes_tsv(rows: list[dict]) -> str:
    lines = ["\t".join(COLUMNS)] + ["\t".join(str(r[c]) for c in COLUMNS) for r in rows]
    return "\n".join(lines) + "\n"


def label_fractions(target: np.ndarray) -> dict[int, float]:
    """Each non-background label's share of all labelled voxels (a head-size-free measure: a
    newborn's and an adult's thalamus take similar shares of their brains)."""
    counts = np.bincount(np.asarray(target).ravel().astype(np.int64))
    total = counts[1:].sum()
    return {int(c): float(counts[c] / total) for c in np.flatnonzero(counts) if c and total}


def fraction_ranges(per_map: list[dict[int, float]], codes) -> dict[int, list[float]]:
    """[smallest, largest] share of each code over the training label maps (0 where a map lacks it)."""
    return {int(c): [round(min(m.get(int(c), 0.0) for m in per_map), 6),
                     round(max(m.get(int(c), 0.0) for m in per_map), 6)]
            for c in codes if int(c) and per_map}
