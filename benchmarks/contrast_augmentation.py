#!/usr/bin/env python3
"""Random tissue contrasts (`--contrast-augmentation`) on a real training slice as the 2D network
gets it: what they look like, how often tissues swap brightness, whether a slice and its
neighbours keep one contrast, and what one patch costs. Side by side in one run:

  - seconds per 96 x 96 patch of all its channels (median of `--repeats`, one thread), the
    patch with the transform and without;
  - over `--draws` draws: the share of patches with white matter darker than CSF (a T2w-like
    order), with white matter brighter than cortex (the T1w order kept), and the largest
    difference between a tissue's mean in the centre slice and in a neighbouring slice
    (0 would be one mapping for all; the stored images' own difference is printed beside it);
  - a figure WORK/contrast_augmentation.png: the stored slice and `--panels` - 1 draws.

    python benchmarks/contrast_augmentation.py WORK [--shared ../shared/data] [--subject 01]
        [--preprocessed FOLDER --case real_sub01]

The slice comes from nnU-Net's preprocessing of the `cpu` preset (the group level's own dataset
writer, air rule and neighbouring-slice channels, then nnU-Net's crop, normalisation and 2 mm
resampling: `synthetic_vs_real.prepare`) of one fs_adults subject, or from a preprocessed folder
of an earlier group run (`--preprocessed WORK/nnunet/nnUNet_preprocessed/<dataset>/nnUNetPlans_2d`).
`measure(data, seg, codes)` does the measuring on any case (the suite runs it on a phantom)."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

PATCH = 96


def centre_patch(data: np.ndarray, seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 2D network's input at the middle slice that holds most brain (axis 1 of nnU-Net's
    (channels, slices, y, x) order), cropped to PATCH x PATCH around the brain's centre."""
    brain_per_slice = (seg > 0).reshape(seg.shape[0], -1).sum(1)
    s = int(np.argmax(brain_per_slice))
    image, labels = data[:, s], seg[s]
    ys, xs = np.nonzero(labels > 0)
    cy, cx = (int(ys.mean()), int(xs.mean())) if ys.size else (labels.shape[0] // 2, labels.shape[1] // 2)
    y0 = min(max(cy - PATCH // 2, 0), max(labels.shape[0] - PATCH, 0))
    x0 = min(max(cx - PATCH // 2, 0), max(labels.shape[1] - PATCH, 0))
    window = (slice(y0, y0 + PATCH), slice(x0, x0 + PATCH))
    return np.ascontiguousarray(image[(slice(None), *window)]), np.ascontiguousarray(labels[window])


def tissue_means(image, masks: dict) -> dict[str, float]:
    return {name: float(image[m].mean()) for name, m in masks.items() if m.sum() > 20}


def measure(data: np.ndarray, seg: np.ndarray, codes: list[int], draws: int = 200, repeats: int = 50,
            seed: int = 0) -> dict:
    """The figures of the module's docstring for one preprocessed case (`data`: channels, slices,
    y, x; `seg`: slices, y, x of label indices of the table `codes`)."""
    import torch
    from synthetic_vs_real import class_masks

    from bibsnet_trainer.nnunet.contrast import remap_channels

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    image, labels = centre_patch(data, seg)
    tissues = {k: v for k, v in class_masks(labels, codes).items() if k in ("white matter", "cortex", "CSF")}
    patch = torch.from_numpy(image)
    remap_channels(patch)   # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        remap_channels(patch)
        seconds.append(time.perf_counter() - start)

    def neighbour_gap(img) -> float:   # the same tissue's mean, centre slice against each neighbour
        centre = tissue_means(img[0], tissues)
        return max(abs(tissue_means(img[c], tissues).get(k, v) - v) for c in range(1, img.shape[0])
                   for k, v in centre.items()) if img.shape[0] > 1 else 0.0

    inverted = t1_kept = 0
    gaps = []
    for _ in range(draws):
        out = remap_channels(patch).numpy()
        means = tissue_means(out[0], tissues)
        inverted += means.get("white matter", 0) < means.get("CSF", 0)
        t1_kept += means.get("white matter", 0) > means.get("cortex", 0)
        gaps.append(neighbour_gap(out))
    stored = tissue_means(image[0], tissues)
    return {"patch": list(image.shape), "channels": int(image.shape[0]),
            "seconds_per_patch": round(statistics.median(seconds), 4),
            "draws": draws, "white_matter_darker_than_csf": round(inverted / draws, 3),
            "white_matter_brighter_than_cortex": round(t1_kept / draws, 3),
            "neighbour_gap_median": round(float(np.median(gaps)), 3),
            "neighbour_gap_stored": round(neighbour_gap(image), 3),
            "stored_tissue_means": {k: round(v, 3) for k, v in stored.items()}}


def figure(data: np.ndarray, seg: np.ndarray, path: Path, panels: int = 12, seed: int = 1) -> Path:
    import torch

    from bibsnet_trainer.images import write_bytes_atomic
    from bibsnet_trainer.nnunet.contrast import remap_channels
    from bibsnet_trainer.reports.figures import png_bytes, pyplot

    torch.manual_seed(seed)
    image, _ = centre_patch(data, seg)
    plt = pyplot()
    cols = 6
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows))
    for i, ax in enumerate(np.ravel(axes)):
        ax.set_axis_off()
        if i >= panels:
            continue
        shown = image[0] if i == 0 else remap_channels(torch.from_numpy(image)).numpy()[0]
        # nnU-Net's order of a RAS image: (anterior, right) in plane; shown with anterior up, right on the right
        ax.imshow(shown[::-1], cmap="gray", vmin=-2.5, vmax=2.5)
        ax.set_title("stored (real T1w)" if i == 0 else f"random contrast {i}", fontsize=8)
    fig.suptitle("One axial training slice of a real scan as the 2D network gets it (z-scored, 2 mm, centre channel; "
                 "air at 0), and random tissue contrasts drawn from it", fontsize=9)
    fig.tight_layout()
    return write_bytes_atomic(path, png_bytes(fig, dpi=80))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--subject", default="01")
    parser.add_argument("--preprocessed", type=Path, help="an nnU-Net preprocessed folder of a group run")
    parser.add_argument("--case", help="the case in --preprocessed (default: the first real_ case)")
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--panels", type=int, default=12)
    args = parser.parse_args()
    from synthetic_vs_real import load_preprocessed, prepare

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.preprocessed:
        folder = args.preprocessed
        case = args.case or sorted(p.name.split(".")[0] for p in folder.glob("real_*.pkl"))[0]
        dataset_json = json.loads((folder.parents[0] / "dataset.json").read_text())
        from bibsnet_trainer.labels import LabelTable
        codes = list(LabelTable.from_json(dataset_json["freesurfer_labels"]).codes)
    else:
        import real_data

        if not (args.shared / "dev_real" / "fs_adults" / f"sub-{args.subject}" / "T1.mgz").is_file():
            print(f"{args.shared}: fs_adults is not there; nothing to measure", file=sys.stderr)
            return 2
        bids = real_data.build_fs_adults(args.shared, work / "bids", 1.0, images_of=(args.subject, "07"),
                                         labels_of=(args.subject, "07"))
        plan, data, _ = prepare(bids, work / "out", work / "work", ["--preset", "cpu", "--test-subjects", "07"])
        plans = json.loads((data.folders.preprocessed / data.dataset / "nnUNetPlans.json").read_text())
        folder = data.folders.preprocessed / data.dataset / plans["configurations"]["2d"]["data_identifier"]
        case = next(v for k, v in data.real_ids.items() if k.startswith(f"sub-{args.subject}"))
        codes = list(plan.facts.table.codes)
    volume, seg, _ = load_preprocessed(folder, case)
    result = {"case": case, "folder": str(folder), **measure(volume, seg, codes, args.draws, args.repeats)}
    (work / "contrast_augmentation.json").write_text(json.dumps(result, indent=1))
    print(f"case {case}: patch {result['patch']} (channels, y, x)")
    print(f"seconds per patch, all {result['channels']} channels, one thread: {result['seconds_per_patch']:.4f}")
    print(f"white matter darker than CSF: {result['white_matter_darker_than_csf']:.0%} of {args.draws} draws; "
          f"white matter brighter than cortex: {result['white_matter_brighter_than_cortex']:.0%}")
    print(f"largest tissue-mean gap centre vs neighbour slice: {result['neighbour_gap_median']:.3f} "
          f"(median of draws) against {result['neighbour_gap_stored']:.3f} in the stored slices")
    print(f"figure: {figure(volume, seg, work / 'contrast_augmentation.png', args.panels)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
