#!/usr/bin/env python3
"""A synthetic training case beside the real case of the same subject, exactly as the network
gets them: the group level's own dataset writer (air rule, neighbouring-slice channels), then
nnU-Net's fingerprint, plan and preprocessing (crop to non-zero, normalisation, resampling to the
training spacing). Printed and written to WORK/synthetic_vs_real.json, per case:

  - the channel layout (channels, and whether channel k is channel 0 shifted by its offset: all
    channels of a synthetic case come from one synthetic volume),
  - the voxel order (left/right: the x of Left- and Right-Cerebral-White-Matter),
  - the label indices present, the crop box, the share of voxels outside nnU-Net's non-zero mask,
  - the normalised intensity of white matter, cortex, CSF, the rest of the brain and what
    surrounds the brain inside the crop (median and 5th-95th percentiles),
  - the plans' normalisation rule (`use_mask_for_norm`) for the whole dataset.

and a figure WORK/synthetic_vs_real.png (three planes of channel 0 of each case, and the
intensity histograms per class).

    python benchmarks/synthetic_vs_real.py WORK [--shared ../shared/data] [--voxel-mm 1] [--subject 01]
        [group-level options, e.g. --synthetic-per-map 2 --background-components 3]

Needs ../shared/data (fs_adults: real whole-head T1w with FreeSurfer asegs). `compare(bids, work,
options)` does the same on any BIDS dataset (the suite runs it on phantoms)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

CLASSES = {"white matter": (2, 41), "cortex": (3, 42), "CSF": (4, 43, 14, 15, 24),
           "rest of the brain": None}   # None: every other brain label


def prepare(bids: Path, out: Path, work: Path, options: list[str]):
    """The group level up to nnU-Net's preprocessing (no training), in this process; returns
    (plan, training data, preprocessed folder)."""
    from bibsnet_trainer.cli.levels import Selection, sessions_of
    from bibsnet_trainer.cli.parser import build_parser
    from bibsnet_trainer.cli.run import group_config
    from bibsnet_trainer.config import Execution
    from bibsnet_trainer.group.dataset import write_training_data
    from bibsnet_trainer.group.plan import plan_run
    from bibsnet_trainer.group.train import preprocess

    args = build_parser().parse_args([str(bids), str(out), "group", "-w", str(work), "--skip-bids-validation",
                                      *options])
    execution = Execution(work_dir=work.resolve(), device="cpu", nprocs=args.nprocs,
                          omp_nthreads=args.omp_nthreads or args.nprocs, seed=args.seed)
    config = group_config(args, out.resolve(), execution)
    sessions = sessions_of(bids, Selection(derivatives=dict(args.derivatives), validate=False), "group")
    plan = plan_run(sessions, config, bids)
    data = write_training_data(plan)
    model_folder = preprocess(plan, data)
    return plan, data, model_folder


def load_preprocessed(folder: Path, case: str) -> tuple[np.ndarray, np.ndarray, dict]:
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    dataset = infer_dataset_class(str(folder))(str(folder), [case])
    data, seg, _, properties = dataset.load_case(case)
    return np.asarray(data[:]), np.asarray(seg[:])[0], properties


def class_masks(seg: np.ndarray, codes: list[int]) -> dict[str, np.ndarray]:
    """Voxel masks of the CLASSES (seg: label indices of the table `codes`), plus 'around the brain'
    (label 0 inside nnU-Net's non-zero mask) and 'outside' (nnU-Net's -1)."""
    code_of = np.asarray(list(codes) + [0])   # index -1 (outside) reads the appended 0
    fs = code_of[seg.astype(np.int64)]
    masks, named = {}, np.zeros(seg.shape, bool)
    for name, members in CLASSES.items():
        if members is None:
            continue
        masks[name] = np.isin(fs, members) & (seg > 0)
        named |= masks[name]
    masks["rest of the brain"] = (seg > 0) & ~named
    masks["around the brain"] = seg == 0
    masks["outside the non-zero mask"] = seg < 0
    return masks


def intensity_stats(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"voxels": 0}
    p5, p50, p95 = np.percentile(values, [5, 50, 95])
    return {"voxels": int(values.size), "median": round(float(p50), 3), "p5": round(float(p5), 3),
            "p95": round(float(p95), 3)}


def shift_agreement(data: np.ndarray, seg: np.ndarray, offsets_mm: list[float], spacing_mm: float,
                    axis: int) -> list[float]:
    """For channel k: the correlation of channel k with channel 0 shifted by its offset, over the
    brain (labelled at both heights; nnU-Net's normalisation differs at the head's edge), 1.0 when
    channel k is channel 0 seen at that offset."""
    out = []
    n = data.shape[axis + 1]
    for k, offset in enumerate(offsets_mm):
        step = int(round(offset / spacing_mm))
        here, there = np.arange(max(0, -step), min(n, n - step)), np.arange(max(0, step), min(n, n + step))
        brain = (np.take(seg, here, axis=axis) > 0) & (np.take(seg, there, axis=axis) > 0)
        a, b = np.take(data[k], here, axis=axis)[brain], np.take(data[0], there, axis=axis)[brain]
        out.append(round(float(np.corrcoef(a, b)[0, 1]), 4) if a.size > 1 and a.std() > 0 and b.std() > 0
                   else float("nan"))
    return out


def lr_order(seg: np.ndarray, codes: list[int], axis: int) -> float | None:
    """x(Right-Cerebral-White-Matter) - x(Left-...) in voxels along the left-right `axis`: its sign
    is the voxel order left to right."""
    index = {c: i + 1 for i, c in enumerate(codes[1:])}
    if 2 not in index or 41 not in index:
        return None
    xs = [np.argwhere(seg == index[c])[:, axis].mean() if (seg == index[c]).any() else np.nan for c in (2, 41)]
    return round(float(xs[1] - xs[0]), 1)


def describe_case(folder: Path, case: str, codes: list[int], offsets_mm: list[float], spacing: list[float],
                  transpose: list[int]) -> dict:
    data, seg, properties = load_preprocessed(folder, case)
    masks = class_masks(seg, codes)
    # nnU-Net's reader (NibabelIOWithReorient) reverses the canonical RAS axes, then transpose_forward
    # applies: canonical axis a is preprocessed axis transpose.index(2 - a)
    superior, left_right = transpose.index(0), transpose.index(2)
    slice_mm = spacing[superior] if len(spacing) == 3 else float(properties["spacing"][0])   # 2D: not resampled
    return {
        "case": case,
        "channels": int(data.shape[0]),
        "shape": list(data.shape[1:]),
        "crop_box": [list(map(int, b)) for b in properties["bbox_used_for_cropping"]],
        "shape_before_cropping": list(map(int, properties["shape_before_cropping"])),
        "labels_present": sorted(int(v) for v in np.unique(seg) if v > 0),
        "right_minus_left_wm_x": lr_order(seg, codes, left_right),
        "slice_mm": slice_mm,
        "channel_k_is_channel_0_shifted": shift_agreement(data, seg, offsets_mm, slice_mm, superior),
        "share_outside_nonzero_mask": round(float((seg < 0).mean()), 3),
        "intensity": {name: intensity_stats(data[0][m]) for name, m in masks.items()},
    }


def compare(bids: Path, work: Path, options: list[str], subject: str) -> dict:
    plan, data, model_folder = prepare(bids, work / "out", work / "work", options)
    plans = json.loads((data.folders.preprocessed / data.dataset / "nnUNetPlans.json").read_text())
    base = plan.opts.preset.base_configuration if plan.opts.preset.patch_size is not None else plan.opts.preset.configuration
    configuration = plans["configurations"][base]
    folder = data.folders.preprocessed / data.dataset / configuration["data_identifier"]
    codes = list(plan.facts.table.codes)
    key = next(k for k in data.real_ids if k.startswith(f"sub-{subject}"))
    cases = {"real": data.real_ids[key], "synthetic": data.synthetic_of[key][0]}
    offsets = [float(o) for o in plan.model_input.context_mm]
    described = {kind: describe_case(folder, case, codes, offsets, configuration["spacing"],
                                     plans["transpose_forward"]) for kind, case in cases.items()}
    return {"subject": subject, "options": options, "spacing_mm": configuration["spacing"],
            "slice_mm": described["real"]["slice_mm"],
            "use_mask_for_norm": configuration["use_mask_for_norm"],
            "normalization": configuration["normalization_schemes"], "slice_offsets_mm": offsets,
            "air_zeroed": plan.model_input.zero_air, "cases": described, "folder": str(folder), "codes": codes}


def figure(result: dict, path: Path) -> Path:
    from bibsnet_trainer.images import write_bytes_atomic
    from bibsnet_trainer.reports.figures import png_bytes, pyplot

    plt = pyplot()
    folder = Path(result["folder"])
    fig, axes = plt.subplots(2, 4, figsize=(12, 6))
    for row, (kind, case) in enumerate(result["cases"].items()):
        data, seg, _ = load_preprocessed(folder, case["case"])
        image = data[0]   # nnU-Net's axis order: superior, anterior, right (RAS reversed; transpose_forward identity)
        s, a, r = (n // 2 for n in image.shape)
        slice_mm, inplane_mm = result["slice_mm"], result["spacing_mm"][-1]
        views = {"axial": (image[s][::-1], 1.0), "coronal": (image[::-1, a], slice_mm / inplane_mm),
                 "sagittal": (image[::-1, :, r], slice_mm / inplane_mm)}
        for col, (name, (view, aspect)) in enumerate(views.items()):
            axes[row][col].imshow(view, cmap="gray", vmin=-2.5, vmax=2.5, aspect=aspect)
            axes[row][col].set_axis_off()
            axes[row][col].set_title(f"{kind}: {name}", fontsize=8)
        masks = class_masks(seg, result["codes"])
        ax = axes[row][3]
        for name, m in masks.items():
            if m.any() and name != "outside the non-zero mask":
                ax.hist(image[m], bins=80, range=(-4, 4), histtype="step", density=True, label=name)
        ax.set_title(f"{kind}: normalised channel 0 per class", fontsize=8)
        ax.legend(fontsize=6)
    fig.suptitle("Network input after nnU-Net's preprocessing, real and synthetic case of one subject "
                 f"(sub-{result['subject']}; use_mask_for_norm {result['use_mask_for_norm']})", fontsize=9)
    fig.tight_layout()
    return write_bytes_atomic(path, png_bytes(fig, dpi=90))


def print_result(result: dict) -> None:
    print(f"plans: spacing {result['spacing_mm']} mm, normalisation {result['normalization']}, "
          f"use_mask_for_norm {result['use_mask_for_norm']}, slice offsets {result['slice_offsets_mm']} mm, "
          f"air zeroed {result['air_zeroed']}")
    for kind, case in result["cases"].items():
        print(f"\n{kind} case {case['case']}: {case['channels']} channels, shape {case['shape']} "
              f"(before cropping {case['shape_before_cropping']}), right-left WM x {case['right_minus_left_wm_x']}, "
              f"{len(case['labels_present'])} labels, outside non-zero mask {case['share_outside_nonzero_mask']:.1%}")
        print(f"  channel k vs channel 0 shifted: {case['channel_k_is_channel_0_shifted']}")
        for name, s in case["intensity"].items():
            if s["voxels"]:
                print(f"  {name:28s} median {s['median']:+.2f}  5-95% [{s['p5']:+.2f}, {s['p95']:+.2f}]  "
                      f"({s['voxels']} voxels)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--voxel-mm", type=float, default=1.0)
    parser.add_argument("--subject", default="01")
    args, options = parser.parse_known_args()
    import real_data

    if not (args.shared / "dev_real" / "fs_adults" / "sub-01" / "T1.mgz").is_file():
        print(f"{args.shared}: fs_adults is not there; nothing to compare", file=sys.stderr)
        return 2
    work = args.work.resolve()
    bids = real_data.build_fs_adults(args.shared, work / "bids", args.voxel_mm, images_of=(args.subject, "07"),
                                     labels_of=(args.subject, "07"))
    result = compare(bids, work, ["--preset", "cpu", "--test-subjects", "07", "--synthetic-per-map", "1", *options], args.subject)
    (work / "synthetic_vs_real.json").write_text(json.dumps(result, indent=1))
    print_result(result)
    print(f"\nfigure: {figure(result, work / 'synthetic_vs_real.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
