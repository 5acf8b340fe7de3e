#!/usr/bin/env python3
"""Does a model trained on synthetic images only segment a real scan? The group level, as a user
runs it, on SynthSeg's 20 whole-head label maps (label maps only: every training image is
synthetic) with one real scan held out for the evaluation: the MNE sample subject (T1w and its
FreeSurfer aseg, 3 mm, stored LIA). Prints the held-out real scan's Dice per label and the mean,
with the time each stage took.

    python benchmarks/real_scan_generalisation.py WORK_FOLDER [--shared ../shared/data]
        [--voxel-mm 3] [--synthetic-per-map 10] [--epochs 200] [--preset cpu] [--device cpu]
        [-- extra group-level options]

WORK_FOLDER receives the BIDS dataset (`bids/`), the outputs (`derivatives/`: model package,
Dice report with overlays) and the work folder. Needs ../shared/data (not redistributable: the
MNE sample scan). The label maps are resampled to --voxel-mm (nearest neighbour) and cropped to
the head, as examples/make_example_data.py does for the demo.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def crop(img: nib.Nifti1Image, margin: int = 2) -> nib.Nifti1Image:
    data = np.asanyarray(img.dataobj)
    nonzero = np.argwhere(data > 0)
    lo = np.maximum(nonzero.min(0) - margin, 0)
    hi = np.minimum(nonzero.max(0) + margin + 1, data.shape)
    return img.slicer[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]


def build_bids(shared: Path, bids: Path, voxel_mm: float) -> None:
    from nibabel.processing import resample_to_output

    if bids.exists():
        return
    labels_root = bids / "derivatives" / "labels"
    labels_root.mkdir(parents=True)
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "synthetic-only generalisation",
                                                               "BIDSVersion": "1.9.0"}))
    (labels_root / "dataset_description.json").write_text(json.dumps(
        {"Name": "aseg", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
         "GeneratedBy": [{"Name": "SynthSeg training label maps; FreeSurfer (MNE sample)"}]}))
    maps = sorted((shared / "synthseg" / "training_label_maps").glob("training_seg_*.nii.gz"))
    for k, path in enumerate(maps, start=1):
        src = nib.load(path)
        labels = nib.Nifti1Image(np.asanyarray(src.dataobj).astype(np.int16), src.affine)
        small = crop(resample_to_output(labels, voxel_mm, order=0))
        out = labels_root / f"sub-{k:02d}" / "anat"
        out.mkdir(parents=True)
        img = nib.Nifti1Image(np.asanyarray(small.dataobj).astype(np.int16), small.affine)
        img.set_data_dtype(np.int16)
        nib.save(img, out / f"sub-{k:02d}_desc-aseg_dseg.nii.gz")
    real = f"sub-{len(maps) + 1:02d}"
    mne = shared / "dev_real" / "mne_sample"
    t1, aseg = nib.load(mne / "T1.mgz"), nib.load(mne / "aseg.mgz")
    (bids / real / "anat").mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.asarray(t1.dataobj).astype(np.float32), t1.affine),
             bids / real / "anat" / f"{real}_T1w.nii.gz")
    (labels_root / real / "anat").mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.asarray(aseg.dataobj).astype(np.int16), aseg.affine),
             labels_root / real / "anat" / f"{real}_space-T1w_desc-aseg_dseg.nii.gz")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--voxel-mm", type=float, default=3.0)
    parser.add_argument("--synthetic-per-map", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("extra", nargs="*", help="further group-level options (after --)")
    args = parser.parse_args()
    if not (args.shared / "dev_real" / "mne_sample" / "T1.mgz").is_file():
        print(f"{args.shared}: the MNE sample scan is not there; nothing to measure", file=sys.stderr)
        return 2
    bids, out, work = args.work / "bids", args.work / "derivatives", args.work / "work"
    build_bids(args.shared, bids, args.voxel_mm)
    command = [sys.executable, str(ROOT / "run.py"), str(bids), str(out), "group", "-w", str(work),
               "--preset", args.preset, "--epochs", str(args.epochs), "--device", args.device,
               "--nprocs", str(args.nprocs), "--synthetic-per-map", str(args.synthetic_per_map), *args.extra]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    minutes = (time.perf_counter() - start) / 60
    report = json.loads((out / "reports" / "group_desc-dice_report.json").read_text())
    print(f"\ngroup level: {minutes:.1f} min ({args.preset} preset, {args.epochs} epochs, "
          f"{args.synthetic_per_map} synthetic images per label map, device {args.device})")
    print(f"evaluated on: {report['evaluated_on']} (synthetic: {report['synthetic']}); "
          f"training images: synthetic only, from {len(report['training']['label_map_subjects'])} label maps")
    for label in sorted(report["labels"], key=lambda r: -(r["mean_dice"] or 0)):
        print(f"  {label['name']:32s} Dice {label['mean_dice']:.3f}")
    print(f"mean Dice on the real scan: {report['mean_dice']:.3f} ({report['grade']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
