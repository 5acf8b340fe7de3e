#!/usr/bin/env python3
"""Ablation of CPU training settings on real scans, at equal training time: each variant trains
nnU-Net for M minutes on the preprocessed data of an existing group-level work folder (its split:
training and validation subjects), then segments the held-out real subjects and prints the Dice
against their FreeSurfer asegs (mean over all labels the model has; white matter, cortex and
lateral ventricles, left/right averaged). Every run is appended to WORK/cpu_recipe_runs.jsonl.

    python benchmarks/cpu_recipe.py GROUP_WORK BIDS --test-subjects 07 08 09 10 --minutes 12 \\
        --variant NAME [key=value ...]     (keys: TrainingPreset fields, e.g. optimizer=adamw
                                            initial_lr=0.003 batch_size=8 patch_size=128,128)

GROUP_WORK is the -w folder of a group-level run on BIDS (e.g. from benchmarks/real_scans.py);
its nnU-Net dataset, plans and splits are reused, so variants differ only in what they set."""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bibsnet_trainer.config import Execution  # noqa: E402
from bibsnet_trainer.nnunet import training  # noqa: E402
from bibsnet_trainer.nnunet.presets import PRESETS, TrainingPreset, add_small_configuration  # noqa: E402

DATASET_SETTINGS = ("context_slices", "target_spacing_mm")   # fixed by the group-level run's dataset
KEY_STRUCTURES = {"cerebral white matter": (2, 41), "cerebral cortex": (3, 42), "lateral ventricle": (4, 43)}


def parse_value(field_type: str, text: str):
    if "tuple" in field_type:
        return tuple(int(v) for v in text.split(","))
    if "int" in field_type and "float" not in field_type:
        return int(text)
    if "float" in field_type:
        return float(text)
    return text


def variant_preset(base: TrainingPreset, name: str, settings: list[str], minutes: float) -> TrainingPreset:
    types = {f.name: str(f.type) for f in fields(TrainingPreset)}
    changes = {}
    for item in settings:
        key, _, value = item.partition("=")
        if key not in types:
            raise SystemExit(f"unknown setting {key!r}; one of {sorted(types)}")
        if key in DATASET_SETTINGS:
            raise SystemExit(f"{key} changes the dataset, not the training: measure it with real_scans.py")
        changes[key] = parse_value(types[key], value)
    return replace(base, configuration=f"{base.configuration}_{name}", minutes=minutes, **changes)


def ensure_preprocessed(folders, dataset: str, preset: TrainingPreset, nprocs: int) -> None:
    plans_file = folders.preprocessed / dataset / "nnUNetPlans.json"
    plans = json.loads(plans_file.read_text())
    plans = add_small_configuration(plans, preset)
    plans_file.write_text(json.dumps(plans, indent=2))
    identifier = plans["configurations"][preset.base_configuration]["data_identifier"]
    if not (folders.preprocessed / dataset / identifier).is_dir():
        import subprocess
        env = folders.environment(nprocs, nprocs, da_workers=nprocs)
        code = ("from nnunetv2.experiment_planning.plan_and_preprocess_api import preprocess;"
                f"preprocess([{int(dataset[7:10])}], configurations=['{preset.base_configuration}'], "
                f"num_processes=[{nprocs}])")
        subprocess.run([sys.executable, "-c", code], env=env, check=True)


def held_out_cases(bids: Path, subjects: list[str]):
    import nibabel as nib

    from bibsnet_trainer.evaluation.evaluate import Case
    from bibsnet_trainer.labels import to_target
    cases = []
    for subject in subjects:
        image = nib.load(bids / f"sub-{subject}" / "anat" / f"sub-{subject}_T1w.nii.gz")
        aseg = next((bids / "derivatives").glob(f"*/sub-{subject}/anat/*_dseg.nii.gz"))
        cases.append(Case(subject, [image], to_target(np.asarray(nib.load(aseg).dataobj).astype(np.int32))))
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("group_work", type=Path)
    parser.add_argument("bids", type=Path)
    parser.add_argument("--test-subjects", nargs="+", required=True)
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--variant", nargs="+", required=True, metavar="NAME [key=value ...]")
    parser.add_argument("--base-preset", default="cpu")
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    name, settings = args.variant[0], args.variant[1:]
    folders = training.NnunetFolders(args.group_work.resolve() / "nnunet")
    dataset = next(p.name for p in folders.preprocessed.iterdir() if p.name.startswith("Dataset"))
    preset = variant_preset(PRESETS[args.base_preset], name, settings, args.minutes)
    ensure_preprocessed(folders, dataset, preset, args.nprocs)
    model_folder = training.trained_model_folder(folders, dataset, preset)
    started = time.perf_counter()
    if not (model_folder / "fold_0" / "checkpoint_final.pth").exists():
        execution = Execution(folders.root.parent, device="cpu", nprocs=args.nprocs, omp_nthreads=args.nprocs,
                              seed=args.seed)
        training.train(folders, dataset, preset, 0, execution,
                       resume=(model_folder / "fold_0" / "checkpoint_latest.pth").exists())
    train_minutes = (time.perf_counter() - started) / 60
    log = max((model_folder / "fold_0").glob("training_log_*.txt")).read_text()
    epochs = log.count("Epoch time:")

    from bibsnet_trainer.evaluation.evaluate import evaluate
    from bibsnet_trainer.nnunet.predict import Segmenter
    started = time.perf_counter()
    result = evaluate(Segmenter(model_folder, device="cpu"), held_out_cases(args.bids, args.test_subjects),
                      full_metrics=False)
    predict_s = (time.perf_counter() - started) / len(args.test_subjects)
    per_label: dict[int, list[float]] = {}
    for scores in result.scores.values():
        for code, dice in scores.items():
            if dice == dice:
                per_label.setdefault(code, []).append(dice)
    means = {code: float(np.mean(v)) for code, v in per_label.items()}
    record = {"variant": name, "settings": settings, "minutes_budget": args.minutes,
              "train_minutes": round(train_minutes, 1), "epochs": epochs,
              "iterations": epochs * preset.iterations_per_epoch, "predict_s_per_subject": round(predict_s, 1),
              "mean_dice": round(float(np.mean(list(means.values()))), 4), "labels": len(means),
              **{k: round(float(np.mean([means.get(c, 0.0) for c in codes])), 4) for k, codes in KEY_STRUCTURES.items()},
              "per_label": {str(k): round(v, 3) for k, v in sorted(means.items())}}
    with open(args.group_work / "cpu_recipe_runs.jsonl", "a") as out:
        out.write(json.dumps(record) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "per_label"}))
    print(f"{name}: mean Dice {record['mean_dice']:.3f} over {len(means)} labels on real held-out subjects, "
          f"{record['train_minutes']} min, {record['iterations']} iterations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
