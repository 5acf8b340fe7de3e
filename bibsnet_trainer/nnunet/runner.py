"""Child-process entry for nnU-Net's planning, preprocessing and training.

nnU-Net reads its folders from environment variables and starts worker processes; running each
stage in a child with its own environment keeps that out of the caller. The parent
(`nnunet.training`) builds the command and streams this process's output into its log.

    python -m bibsnet_trainer.nnunet.runner plan DATASET_ID --processes 2
    python -m bibsnet_trainer.nnunet.runner train --job JOB.json [--num-gpus N]

A training run gets everything from its job file (`TrainJob`: schedule, seed, device, trainer
and the trainer's settings), the one place our trainers read their settings from.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


# foreground voxels sampled per channel for nnU-Net's intensity statistics (its default: 10^8). The
# statistics serve CT normalisation only (MR channels are z-scored per case); sampling 10^8 voxels
# with replacement from tiny images, and their percentiles, took 35 of a small dataset's 40 s.
INTENSITY_SAMPLES = 10**6


def _fingerprint_extractor():
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor

    class SampledFingerprintExtractor(DatasetFingerprintExtractor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.num_foreground_voxels_for_intensitystats = INTENSITY_SAMPLES

    return SampledFingerprintExtractor


def plan(dataset_id: int, processes: int, preset_json: str, plans_from: str | None = None) -> None:
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprint_dataset, plan_experiments, preprocess)
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    from ..config import TrainingPreset
    from ..images import write_text_atomic
    from .presets import add_small_configuration

    preset = TrainingPreset(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(preset_json).items()})
    # no integrity check: the dataset writer made the folder from validated inputs (nnU-Net's check
    # re-reads every image in another process pool)
    extract_fingerprint_dataset(dataset_id, _fingerprint_extractor(), processes, check_dataset_integrity=False,
                                verbose=False, show_progress_bar=False)
    plans_file = Path(os.environ["nnUNet_preprocessed"]) / convert_id_to_dataset_name(dataset_id) / "nnUNetPlans.json"
    if plans_from:  # fine-tuning: the pretrained model's plans (architecture, patch, spacing), as
        # nnUNetv2_move_plans_between_datasets does
        import shutil
        shutil.copy(Path(os.environ["nnUNet_raw"]) / convert_id_to_dataset_name(dataset_id) / "dataset.json",
                    plans_file.parent / "dataset.json")   # what nnU-Net's planner would have copied
        plans = json.loads(Path(plans_from).read_text())
        plans["dataset_name"] = convert_id_to_dataset_name(dataset_id)
        plans["plans_name"] = "nnUNetPlans"
        write_text_atomic(plans_file, json.dumps(plans, indent=2))
        base = plans["configurations"][preset.configuration].get("inherits_from", preset.configuration)
    else:
        spacing = preset.target_spacing_mm
        plan_experiments([dataset_id], overwrite_target_spacing=None if spacing is None else [spacing] * 3)
        plans = add_small_configuration(json.loads(plans_file.read_text()), preset)
        base = preset.base_configuration if preset.patch_size is not None else preset.configuration
        plans = normalise_within_head(plans, base, preset)
        write_text_atomic(plans_file, json.dumps(plans, indent=2))
    preprocess([dataset_id], configurations=[base], num_processes=[processes], show_progress_bar=False)


def normalise_within_head(plans: dict, configuration: str, preset) -> dict:
    """With the air set to 0 (`preset.zero_air`), every case is z-scored over its head (nnU-Net's
    `use_mask_for_norm`), whatever the share of synthetic cases. nnU-Net decides it from the
    median size of the cases after cropping to non-zero: synthetic cases cropped to the head crop
    no further, so with two synthetic images per real one its rule switches it off, and the real
    images would be normalised over their whole box, air included, unlike in a real-only model."""
    if not preset.zero_air:
        return plans
    config = plans["configurations"][configuration]
    config["use_mask_for_norm"] = [True] * len(config["use_mask_for_norm"])
    return plans


@dataclass(frozen=True)
class TrainJob:
    """Everything one training run is given; a DDP run gives the same to every GPU's process."""
    dataset: str
    configuration: str
    fold: int
    epochs: int
    iterations: int
    val_iterations: int
    device: str = "cuda"
    resume: bool = False
    seed: int | None = None
    pretrained: str | None = None
    trainer_name: str | None = None
    minutes: float | None = None
    settings: dict = field(default_factory=dict)   # the trainer's: optimiser, precision, on-the-fly synthesis

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "TrainJob":
        return cls(**json.loads(text))


def train(job: TrainJob, num_gpus: int = 1) -> None:
    """Train one fold, on one device or, with `num_gpus` > 1, with nnU-Net's DDP (one process per
    GPU, each configured exactly as a single-device run)."""
    if num_gpus > 1:
        import torch.multiprocessing as mp
        mp.spawn(_ddp_worker, args=(num_gpus, job), nprocs=num_gpus, join=True)
        return
    _train_on(job, device=job.device)


def _ddp_worker(rank: int, world_size: int, job: TrainJob) -> None:
    """One GPU's process of a DDP run (what nnU-Net's `run_ddp` does, with our settings)."""
    import torch
    from nnunetv2.run.run_training import cleanup_ddp, setup_ddp

    setup_ddp(rank, world_size)
    torch.cuda.set_device(torch.device("cuda", rank))
    try:
        _train_on(job, device="cuda", rank=rank)
    finally:
        cleanup_ddp()


def _train_on(job: TrainJob, device: str, rank: int = 0) -> None:
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint

    from .trainer_names import TRAINER_NAME

    if job.seed is not None:  # weights (broadcast from rank 0 under DDP) and patch sampling
        import random         # (nnU-Net draws from numpy's global generator: one stream per rank)

        import numpy as np
        random.seed(job.seed + rank)
        np.random.seed(job.seed + rank)
        torch.manual_seed(job.seed)
    trainer = get_trainer_from_args(job.dataset, job.configuration, job.fold, job.trainer_name or TRAINER_NAME,
                                    continue_training=job.resume, device=torch.device(device))
    configure_trainer(trainer, job)
    maybe_load_checkpoint(trainer, job.resume, False, None if job.resume else job.pretrained)
    if job.pretrained and not job.resume:
        _load_output_layers(trainer, Path(job.pretrained))
    _report_progress(trainer)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
    trainer.run_training()


def configure_trainer(trainer, job: TrainJob) -> None:
    """The job on an nnU-Net trainer, before it initialises: epochs, iterations, checkpoint
    interval, time budget, and our trainers' settings."""
    if hasattr(trainer, "apply_settings"):
        trainer.apply_settings(job.settings)
    trainer.num_epochs = job.epochs
    trainer.num_iterations_per_epoch = job.iterations
    trainer.num_val_iterations_per_epoch = job.val_iterations
    trainer.save_every = max(1, min(50, job.epochs // 4 or 1))
    if job.minutes:   # the trainer fits its epochs (and learning-rate schedule) to the budget
        trainer.time_budget_s = job.minutes * 60
        trainer.save_every = 5


def _report_progress(trainer) -> None:
    """Print the epoch and the time left after every epoch (the parent logs it)."""
    started, first_epoch = time.monotonic(), trainer.current_epoch
    original_epoch_end = trainer.on_epoch_end

    def on_epoch_end_with_eta():
        original_epoch_end()
        done = trainer.current_epoch - first_epoch
        left = (time.monotonic() - started) / max(done, 1) * (trainer.num_epochs - trainer.current_epoch)
        print(f"[bibsnet] training epoch {trainer.current_epoch}/{trainer.num_epochs}, "
              f"about {left / 60:.1f} min left", flush=True)

    trainer.on_epoch_end = on_epoch_end_with_eta


def _load_output_layers(trainer, checkpoint: Path) -> None:
    """nnU-Net's load_pretrained_weights never transfers the segmentation (output) layers. When the
    base model predicts the same labels in the same order, they are transferred too, so
    fine-tuning starts from a working model instead of a random output layer."""
    import torch

    base = json.loads((checkpoint.parent.parent / "dataset.json").read_text())
    if base.get("freesurfer_labels") != trainer.dataset_json.get("freesurfer_labels"):
        print("[bibsnet] fine-tuning: labels differ from the base model; output layers start afresh", flush=True)
        return
    network = trainer.network.module if hasattr(trainer.network, "module") else trainer.network
    network = getattr(network, "_orig_mod", network)
    weights = torch.load(checkpoint, map_location="cpu", weights_only=False)["network_weights"]
    state = network.state_dict()
    output = {k: v for k, v in weights.items() if ".seg_layers." in k and k in state and state[k].shape == v.shape}
    state.update(output)
    network.load_state_dict(state)
    print(f"[bibsnet] fine-tuning: same labels as the base model; {len(output)} output-layer tensors "
          "transferred too", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bibsnet_trainer.nnunet.runner")
    sub = parser.add_subparsers(dest="stage", required=True)
    p = sub.add_parser("plan")
    p.add_argument("dataset_id", type=int)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--preset-json", required=True, help="the TrainingPreset as JSON")
    p.add_argument("--plans-from", help="plans.json of a model to fine-tune")
    t = sub.add_parser("train")
    t.add_argument("--job", required=True, type=Path, help="the TrainJob as JSON")
    t.add_argument("--num-gpus", type=int, default=1)
    args = parser.parse_args(argv)
    if args.stage == "plan":
        plan(args.dataset_id, args.processes, args.preset_json, args.plans_from)
    else:
        train(TrainJob.from_json(args.job.read_text()), num_gpus=args.num_gpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
