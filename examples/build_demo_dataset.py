#!/usr/bin/env python3
"""Build the demo BIDS dataset from the redistributable files in examples/data.

    python examples/build_demo_dataset.py OUTPUT_FOLDER

sub-01..sub-05: SynthSeg whole-head label maps only (a derivative, `derivatives/synthseg`), from
which the group level synthesises training images. sub-06: a real skull-stripped adult T1w
(nii2mesh) with no label map, segmented at the participant level. No real subject has both an
image and a label map, so the group Dice report is on synthetic images and says so.
"""
import json
import shutil
import sys
from pathlib import Path

DATA = Path(__file__).parent / "data"


def build(root: Path) -> Path:
    root = Path(root)
    if root.exists():
        raise SystemExit(f"{root}: exists already; remove it first")
    (root / "derivatives" / "synthseg").mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({
        "Name": "bibsnet-trainer demo", "BIDSVersion": "1.9.0", "DatasetType": "raw",
        "License": "Apache-2.0 (label maps, SynthSeg) and BSD-2-Clause (T1w, nii2mesh)",
        "Acknowledgements": "Label maps: Billot et al., SynthSeg (github.com/BBillot/SynthSeg). "
                            "T1w: neurolabusc/nii2mesh example data."}, indent=2))
    (root / "README").write_text("Demo dataset for bibsnet-trainer, built by examples/build_demo_dataset.py.\n")
    (root / "participants.tsv").write_text("participant_id\tage\n" + "".join(
        f"sub-{k:02d}\tn/a\n" for k in range(1, 7)))
    deriv = root / "derivatives" / "synthseg"
    (deriv / "dataset_description.json").write_text(json.dumps({
        "Name": "SynthSeg training label maps (3 mm)", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "SynthSeg", "CodeURL": "https://github.com/BBillot/SynthSeg"}],
        "License": "Apache-2.0"}, indent=2))
    for k in range(1, 6):
        anat = deriv / f"sub-{k:02d}" / "anat"
        anat.mkdir(parents=True)
        shutil.copy(DATA / f"synthseg_{k:02d}_3mm_labels.nii.gz", anat / f"sub-{k:02d}_desc-aseg_dseg.nii.gz")
    anat = root / "sub-06" / "anat"
    anat.mkdir(parents=True)
    shutil.copy(DATA / "nii2mesh_bet_2mm_T1w.nii.gz", anat / "sub-06_T1w.nii.gz")
    (anat / "sub-06_T1w.json").write_text(json.dumps({"SkullStripped": True}))
    return root


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
