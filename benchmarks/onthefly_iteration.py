#!/usr/bin/env python3
"""Seconds per training iteration: nnUNetTrainerBibsnet (stored images) against
nnUNetTrainerBibsnetOnTheFly (a new synthetic contrast per batch), same plans, same dataset, side
by side in one run.

    python benchmarks/onthefly_iteration.py [--device cpu|cuda] [--iterations 20] [--rounds 3]
        [--shape 40,48,40] [--voxel-mm 3] [--patch 32] [--features 8,16,32] [--batch 2]
    python benchmarks/onthefly_iteration.py --preprocessed DIR --dataset DatasetXXX_name
        --configuration 3d_fullres [--device cuda]

Without --preprocessed, a phantom dataset (tests/phantoms.py, 4 cases) is written, planned and
preprocessed in a temporary folder with a small configuration of the given patch and features.
An iteration is what nnU-Net's training loop does: next batch from the data loader (single
threaded, nnUNet_n_proc_DA=0, so its augmentation counts) plus `train_step`. The two trainers
take turns in rounds (to share any drift of a busy machine evenly); the on-the-fly trainer's
synthesis time alone is also reported. Prints one line per trainer and the ratio.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
TRAINERS = ("nnUNetTrainerBibsnet", "nnUNetTrainerBibsnetOnTheFly")


def phantom_dataset(work: Path, shape, voxel_mm: float, patch: int, features, batch: int) -> tuple[Path, str, str]:
    sys.path.insert(0, str(ROOT / "tests"))
    import nibabel as nib
    from phantoms import phantom_labels, phantom_t1w, ras_affine

    from bibsnet_trainer.labels import LabelTable, to_target
    from bibsnet_trainer.nnunet import training
    from bibsnet_trainer.nnunet.dataset import RawDatasetWriter, dataset_name
    from bibsnet_trainer.nnunet.model_input import ModelInput
    from bibsnet_trainer.nnunet.presets import TrainingPreset

    folders = training.NnunetFolders(work / "nnunet")
    name = dataset_name(872, "onthefly_bench")
    maps = [to_target(phantom_labels(shape, seed=i)) for i in range(4)]
    table = LabelTable.from_codes(np.unique(np.concatenate([np.unique(m) for m in maps])))
    writer = RawDatasetWriter(folders.raw / name, ModelInput(["T1w"], table))
    for i, labels in enumerate(maps):
        affine = ras_affine(voxel_mm, labels.shape)
        image = nib.Nifti1Image(phantom_t1w(phantom_labels(shape, seed=i), seed=i), affine)
        writer.add_case(f"case{i:03d}", [image], nib.Nifti1Image(labels.astype(np.int16), affine))
    writer.write_dataset_json({"name": "onthefly_bench"})
    preset = TrainingPreset("3d_small", epochs=1, iterations_per_epoch=1, val_iterations_per_epoch=1,
                            patch_size=(patch,) * 3, features_per_stage=tuple(features), batch_size=batch)
    print(f"planning a phantom dataset ({shape}, {voxel_mm} mm) in {work} ...", flush=True)
    training.plan_and_preprocess(folders, 872, preset, nprocs=min(os.cpu_count() or 1, 4), omp_nthreads=1)
    cases = writer.case_ids()
    (folders.preprocessed / name / "splits_final.json").write_text(
        json.dumps([{"train": cases[:3], "val": cases[3:]}]))
    return folders.preprocessed, name, preset.configuration


def make_trainer(name: str, dataset: str, configuration: str, device: torch.device):
    from nnunetv2.run.run_training import get_trainer_from_args

    with contextlib.redirect_stdout(io.StringIO()):
        trainer = get_trainer_from_args(dataset, configuration, 0, name, device=device)
        trainer.on_train_start()
        trainer.on_train_epoch_start()
    return trainer


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_iterations(trainer, n: int, device: torch.device) -> tuple[list[float], list[float]]:
    """Seconds per iteration (load + train_step) and, for the on-the-fly trainer, seconds of
    synthesis within each iteration."""
    totals, synthesis = [], []
    synthesize = getattr(trainer, "synthesize_batch", None)
    spent = [0.0]
    if synthesize is not None:
        def timed_synthesize(data, target, keys=None):
            sync(device)
            start = time.perf_counter()
            out = synthesize(data, target, keys)
            sync(device)
            spent[0] += time.perf_counter() - start
            return out
        trainer.synthesize_batch = timed_synthesize
    try:
        for _ in range(n):
            spent[0] = 0.0
            sync(device)
            start = time.perf_counter()
            trainer.train_step(next(trainer.dataloader_train))
            sync(device)
            totals.append(time.perf_counter() - start)
            synthesis.append(spent[0])
    finally:
        if synthesize is not None:
            del trainer.synthesize_batch
    return totals, synthesis


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations per trainer and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--preprocessed", type=Path, help="an existing nnUNet_preprocessed folder")
    parser.add_argument("--dataset", help="with --preprocessed: DatasetXXX_name")
    parser.add_argument("--configuration", default="3d_fullres", help="with --preprocessed")
    parser.add_argument("--shape", default="40,48,40", help="phantom volume (voxels)")
    parser.add_argument("--voxel-mm", type=float, default=3.0)
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--features", default="8,16,32")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (printed)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    work = Path(tempfile.mkdtemp(prefix="onthefly_bench_"))
    from bibsnet_trainer.nnunet.trainer_names import register_trainers
    os.environ.update(nnUNet_n_proc_DA="0", nnUNet_compile="false", NIPYPE_NO_ET="1",
                      nnUNet_results=str(work / "results"))
    os.environ.setdefault("nnUNet_def_n_proc", "2")
    register_trainers()
    if args.preprocessed:
        if not args.dataset:
            parser.error("--preprocessed needs --dataset")
        preprocessed, dataset, configuration = args.preprocessed, args.dataset, args.configuration
    else:
        shape = tuple(int(s) for s in args.shape.split(","))
        features = [int(f) for f in args.features.split(",")]
        preprocessed, dataset, configuration = phantom_dataset(work, shape, args.voxel_mm, args.patch,
                                                               features, args.batch)
    os.environ["nnUNet_preprocessed"] = str(preprocessed)
    try:
        return run(args, dataset, configuration, device)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(args, dataset: str, configuration: str, device: torch.device) -> int:
    torch.manual_seed(0)
    np.random.seed(0)
    trainers = {name: make_trainer(name, dataset, configuration, device) for name in TRAINERS}
    first = trainers[TRAINERS[0]]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"device {device} ({where}), {dataset} {configuration}: "
          f"patch {list(first.configuration_manager.patch_size)}, batch {first.batch_size}, "
          f"{len(first.dataset_json['channel_names'])} channel(s), {len(first.label_manager.all_labels)} labels",
          flush=True)
    for trainer in trainers.values():
        timed_iterations(trainer, args.warmup, device)
    times = {name: [] for name in TRAINERS}
    synth = []
    for _ in range(args.rounds):
        for name, trainer in trainers.items():
            totals, spent = timed_iterations(trainer, args.iterations, device)
            times[name] += totals
            if name == TRAINERS[1]:
                synth += spent
    peak = (f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
            if device.type == "cuda" else "")
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name:30s} {medians[name]:.3f} s/iteration (median of {len(t)}; "
              f"mean {statistics.mean(t):.3f}, min {min(t):.3f})")
    print(f"{'  of which synthesis':30s} {statistics.median(synth):.3f} s/iteration "
          f"({statistics.median(synth) / first.batch_size:.3f} s per sample)")
    print(f"ratio on-the-fly / stored images: {medians[TRAINERS[1]] / medians[TRAINERS[0]]:.2f}x{peak}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
