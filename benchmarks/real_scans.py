#!/usr/bin/env python3
"""Do the models this app trains segment real brains? The group level as users run it, on the 9
real adults of ../shared/data/dev_real/fs_adults (whole-head T1w with FreeSurfer 6 asegs, one
site), with subjects held out by subject, in arms of equal training time:

  real             the training subjects' real T1w images only
  real+synthetic   those, plus synthetic images drawn from the training subjects' label maps
                   (and, with --synthseg-maps N, from N of SynthSeg's 20 whole-head label maps)
  synthetic        synthetic images only, from the same label maps (no real image trains)

Each arm's model segments, through the participant level, the held-out fs_adults subjects,
the same subjects with a simulated scanner bias field, contrast change and noise (fs_adults images
are FreeSurfer's bias-corrected, intensity-normalised T1.mgz; raw scans are not: column "raw-like"),
and, cross-site, the MNE sample subject (another scanner, site and FreeSurfer version, 3 mm). Printed:
Dice per structure (left/right averaged), the mean over all labels the model has, the brain-mask
Dice, HD95, training minutes and iterations; the last line is
`real+synthetic held-out mean Dice X.XXX`. Each arm's model is also scored by
benchmarks/cross_site.py (other sites' scans, and skull-stripped, raw-like, contrast-inverted,
thick-slice and 3 mm copies of the held-out subjects; its table and last line printed with the arm's
name, its JSON in WORK/<arm>/cross_site.json); --no-cross-site skips that.

    python benchmarks/real_scans.py WORK [--shared ../shared/data] [--minutes M] [--voxel-mm 2]
        [--arms real real+synthetic synthetic] [--synthetic-per-map 4] [--synthseg-maps 0]
        [--preset cpu] [--device cpu] [--no-cross-site] [group-level options, e.g. --priors estimated]

Each arm's model package stays under WORK/<arm>/models/ (printed). Needs ../shared/data (not
redistributable). Every figure is on real scans."""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import real_data  # noqa: E402

ARMS = ("real", "real+synthetic", "synthetic")
TEST_SUBJECTS = ("07", "08", "09", "10")


def arm_dir(work: Path, arm: str) -> Path:
    return work / arm.replace("+", "_")


def build_arm_data(args, arm: str) -> Path:
    train = [s for s in real_data.FS_ADULTS if s not in args.test_subjects]
    root = args.work / "data" / arm.replace("+", "_")
    images = args.test_subjects if arm == "synthetic" else real_data.FS_ADULTS
    maps = args.synthseg_maps if arm != "real" else 0
    return real_data.build_fs_adults(args.shared, root, args.voxel_mm, images_of=tuple(images),
                                     labels_of=tuple(train) + tuple(args.test_subjects), synthseg_maps=maps)


def run_logged(command: list[str], log: Path) -> float:
    started = time.perf_counter()
    with open(log, "a") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise SystemExit(f"command failed (exit {code}), log {log}:\n{tail}")
    return time.perf_counter() - started


def train_arm(args, arm: str, data: Path) -> dict:
    out = arm_dir(args.work, arm)
    packages = sorted((out / "models").glob("model_seg_*")) if (out / "models").exists() else []
    log = out / "group.log"
    out.mkdir(parents=True, exist_ok=True)
    if not [p for p in packages if p.is_dir()]:
        per_map = 0 if arm == "real" else args.synthetic_per_map
        command = [sys.executable, str(ROOT / "run.py"), str(data), str(out), "group", "-w", str(out / "work"),
                   "--preset", args.preset, "--device", args.device, "--nprocs", str(args.nprocs),
                   "--synthetic-per-map", str(per_map), "--test-subjects", *args.test_subjects,
                   "--skip-bids-validation", "--seed", str(args.seed), *args.extra]
        if args.minutes:
            command += ["--train-minutes", str(args.minutes)]
        print(f"[{arm}] training: {' '.join(command)}", flush=True)
        run_logged(command, log)
    package = next(p for p in sorted((out / "models").glob("model_seg_*")) if p.is_dir())
    text = log.read_text()
    train_s = sum(float(s) for s in re.findall(r"nnU-Net training finished in (\d+) s", text))
    train_log = next((out / "work" / "nnunet" / "logs").glob("train_fold0.log"))
    epochs = len(re.findall(r"Epoch time:", train_log.read_text()))
    job = json.loads((out / "work" / "nnunet" / "jobs" / "train_fold0.json").read_text())   # the training job
    report = json.loads((out / "reports" / "group_desc-dice_report.json").read_text())
    return {"package": package, "train_minutes": train_s / 60, "epochs": epochs,
            "iterations": epochs * int(job["iterations"]), "report": report}


def participant_command(data: Path, out: Path, work: Path, package: Path, device: str,
                        labels: list[str] | None = None) -> list[str]:
    """The participant level as users run it, with one model package."""
    command = [sys.executable, str(ROOT / "run.py"), str(data), str(out), "participant", "-w", str(work),
               "--model", str(package), "--device", device, "--nprocs", "1", "--skip-bids-validation"]
    return command + (["--participant-label", *labels] if labels else [])


def segment(args, arm: str, package: Path, sets: dict[str, Path]) -> Path:
    """Every scan of `sets` (held-out, MNE, raw-like) in one participant run, as cross_site.py
    does: one dataset of them all (`cross_site.merge_sets`), its start-up paid once, sessions in
    parallel. Subjects are relabelled `cross_site.merged_label(set, subject)`."""
    import cross_site

    merged = args.work / "data" / "merged"
    if not (merged / "dataset_description.json").exists():
        cross_site.merge_sets(sets, merged)
    out = arm_dir(args.work, arm) / "participant"
    command = participant_command(merged, out, arm_dir(args.work, arm) / "work" / "participant", package, args.device)
    command[command.index("--nprocs") + 1] = str(args.nprocs)
    seconds = run_logged(command, arm_dir(args.work, arm) / "participant.log")
    print(f"[{arm}] participant level on {', '.join(sets)}: {seconds:.0f} s", flush=True)
    return out


def cross_site_scores(args, arm: str, package: Path) -> None:
    """benchmarks/cross_site.py on the arm's model: its table, its JSON in the arm's folder
    (cross_site.json) and its last line prefixed with the arm; the sets are built once for all arms."""
    import cross_site

    result = cross_site.cross_site(package, arm_dir(args.work, arm) / "cross_site", shared=args.shared,
                                   test_subjects=args.test_subjects, voxel_mm=args.voxel_mm, device=args.device,
                                   data_root=args.work / "data" / "cross_site", prefix=f"[{arm}] ",
                                   nprocs=args.nprocs)
    cross_site.write_json(result, arm_dir(args.work, arm) / "cross_site.json")
    for row in cross_site.table(result["sets"]):
        print(f"[{arm}] {row}")
    print(f"[{arm}] {result['summary_line']}", flush=True)


def mask_dice(out: Path, data: Path, set_name: str, subject: str) -> float:
    """Dice of the written brain mask of `subject` of a set (`segment`) against its reference
    aseg's brain (labels > 0, holes filled)."""
    from cross_site import merged_label

    from bibsnet_trainer.labels import to_target
    from bibsnet_trainer.participant.mask import brain_mask

    label = merged_label(set_name, subject)
    mask = np.asarray(nib.load(next((out / f"sub-{label}" / "anat").glob("*desc-brain_mask.nii.gz"))).dataobj) > 0
    aseg = next((data / "derivatives" / "aseg" / f"sub-{subject}" / "anat").glob("*_dseg.nii.gz"))
    reference = brain_mask(to_target(np.asarray(nib.load(aseg).dataobj).astype(np.int32))) > 0
    return 2 * float((mask & reference).sum()) / float(mask.sum() + reference.sum())


def participant_scores(out: Path, set_name: str, subject: str) -> dict[int, float]:
    from cross_site import merged_label

    label = merged_label(set_name, subject)
    report = json.loads((out / "reports" / f"sub-{label}_desc-dice_report.json").read_text())
    return {int(r["label"]): r["mean_dice"] for r in report["labels"] if r["mean_dice"] is not None}


def per_label_mean(per_subject: list[dict[int, float]]) -> dict[int, float]:
    codes = sorted({c for scores in per_subject for c in scores})
    return {c: float(np.nanmean([s[c] for s in per_subject if c in s])) for c in codes}


def structure_of(name: str) -> str:
    return re.sub(r"^(Left|Right)-", "", name)


def table_rows(per_arm: dict, names: dict[int, str]) -> list[str]:
    """Structure, then per arm 'held-out fs_adults | MNE' Dice, left/right averaged."""
    structures: dict[str, list[int]] = {}
    for code, name in sorted(names.items()):
        structures.setdefault(structure_of(name), []).append(code)
    header = f"{'structure':28s}" + "".join(f"{arm + ' fs|MNE':>26s}" for arm in per_arm)
    rows = [header]
    for structure, codes in structures.items():
        cells = []
        for result in per_arm.values():
            held = [result["held_out_label_dice"].get(c) for c in codes]
            mne = [result["mne_label_dice"].get(c) for c in codes]
            cells.append(f"{_mean(held):>13s} | {_mean(mne):<10s}")
        rows.append(f"{structure:28s}" + "".join(f"{c:>26s}" for c in cells))
    return rows


def _mean_number(values) -> float | None:
    values = [v for v in values if isinstance(v, (int, float)) and v == v]
    return float(np.mean(values)) if values else None


def _mean(values) -> str:
    values = [v for v in values if v is not None and v == v]
    return f"{np.mean(values):.3f}" if values else "-"


def print_tables(args, per_arm: dict, names: dict[int, str]) -> None:
    print(f"\nreal scans: fs_adults (one site, FreeSurfer 6 asegs), {args.voxel_mm:g} mm; held out "
          f"sub-{', sub-'.join(args.test_subjects)}; cross-site: MNE sample subject (3 mm, FreeSurfer); "
          f"{args.preset} preset on {args.device}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    for row in table_rows(per_arm, names):
        print(row)
    print()
    print(f"{'arm':16s} {'train min':>9s} {'iters':>6s} {'mean Dice':>9s} {'mask Dice':>9s} {'HD95 mm':>8s}"
          f" {'raw-like':>8s} {'MNE mean':>8s} {'MNE mask':>8s}")
    for arm, r in per_arm.items():
        mne_mean = _mean(list(r["mne_label_dice"].values()))
        raw_like = _mean(list(r["perturbed_label_dice"].values()))
        hd95 = f"{r['hd95']:.2f}" if isinstance(r["hd95"], (int, float)) else "-"
        print(f"{arm:16s} {r['train_minutes']:9.1f} {r['iterations'] or 0:6d} {r['mean_dice']:9.3f} "
              f"{r['mask_dice']:9.3f} {hd95:>8s} {raw_like:>8s} {mne_mean:>8s} {r['mne_mask_dice']:8.3f}")
    for arm, r in per_arm.items():
        print(f"{arm} model package: {r['package']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--minutes", type=float, help="training minutes per arm (default: the preset's epochs)")
    parser.add_argument("--voxel-mm", type=float, default=2.0)
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--synthetic-per-map", type=int, default=4)
    parser.add_argument("--synthseg-maps", type=int, default=0, help="SynthSeg label maps added to synthesis")
    parser.add_argument("--test-subjects", nargs="+", default=list(TEST_SUBJECTS))
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-cross-site", action="store_true",
                        help="skip benchmarks/cross_site.py (other sites, skull-stripped, inverted, thick-slice scans)")
    args, extra = parser.parse_known_args()   # anything else: group-level options, passed on unchanged
    args.extra = [a for a in extra if a != "--"]
    args.work = args.work.resolve()
    if not (args.shared / "dev_real" / "fs_adults" / "sub-01" / "T1.mgz").is_file():
        print(f"{args.shared}: fs_adults is not there; nothing to measure", file=sys.stderr)
        return 2
    mne = real_data.build_mne(args.shared, args.work / "data" / "mne")
    held_out = real_data.build_fs_adults(args.shared, args.work / "data" / "held_out", args.voxel_mm,
                                         images_of=tuple(args.test_subjects), labels_of=tuple(args.test_subjects))
    perturbed = real_data.build_perturbed(held_out, args.work / "data" / "raw_like", args.test_subjects,
                                          seed=args.seed)
    sets = {"held_out": held_out, "mne": mne, "raw_like": perturbed}
    per_arm, names = {}, {}
    for arm in args.arms:
        data = build_arm_data(args, arm)
        trained = train_arm(args, arm, data)
        out = segment(args, arm, trained["package"], sets)
        report = trained["report"]
        names.update({int(r["label"]): r["name"] for r in report["labels"]})
        per_arm[arm] = {
            "package": trained["package"], "train_minutes": trained["train_minutes"], "epochs": trained["epochs"],
            "iterations": trained["iterations"], "mean_dice": report["mean_dice"],
            "held_out_label_dice": {int(r["label"]): r["mean_dice"] for r in report["labels"]},
            "hd95": _mean_number([r.get("mean_hd95_mm") for r in report["labels"]]),
            "mask_dice": float(np.mean([mask_dice(out, sets["held_out"], "held_out", s) for s in args.test_subjects])),
            "mne_label_dice": participant_scores(out, "mne", "mne"), "mne_mask_dice": mask_dice(out, mne, "mne", "mne"),
            "perturbed_label_dice": per_label_mean([participant_scores(out, "raw_like", s) for s in args.test_subjects]),
        }
        print(f"[{arm}] model package: {trained['package']}", flush=True)
        if not args.no_cross_site:
            cross_site_scores(args, arm, trained["package"])
        if arm != args.arms[-1]:
            print_tables(args, per_arm, names)   # what is finished, in case a later arm is cut short
    print_tables(args, per_arm, names)
    if "real+synthetic" in per_arm:
        print(f"real+synthetic held-out mean Dice {per_arm['real+synthetic']['mean_dice']:.3f}")
    else:
        first = next(iter(per_arm))
        print(f"{first} held-out mean Dice {per_arm[first]['mean_dice']:.3f} (no real+synthetic arm run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
