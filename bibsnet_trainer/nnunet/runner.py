"""Child-process entry for nnU-Net's planning, preprocessing and training.

nnU-Net reads its folders from environment variables and starts worker processes; running each
stage in a child with its own environment keeps that out of the caller. The parent
(`nnunet.training`) builds the command and streams this process's output into its log.

    python -m bibsnet_trainer.nnunet.runner plan DATASET_ID --processes 2
    python -m bibsnet_trainer.nnunet.runner train DATASET_NAME CONFIG FOLD --epochs 20 ...
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def plan(dataset_id: int, processes: int, preset_json: str, plans_from: str | None = None) -> None:
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints, plan_experiments, preprocess)
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    from .presets import TrainingPreset, add_small_configuration

    preset = TrainingPreset(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(preset_json).items()})
    extract_fingerprints([dataset_id], num_processes=processes, check_dataset_integrity=True,
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
        plans_file.write_text(json.dumps(plans, indent=2))
        base = plans["configurations"][preset.configuration].get("inherits_from", preset.configuration)
    else:
        spacing = preset.target_spacing_mm
        plan_experiments([dataset_id], overwrite_target_spacing=None if spacing is None else [spacing] * 3)
        plans = add_small_configuration(json.loads(plans_file.read_text()), preset)
        plans_file.write_text(json.dumps(plans, indent=2))
        base = preset.base_configuration if preset.patch_size is not None else preset.configuration
    preprocess([dataset_id], configurations=[base], num_processes=[processes], show_progress_bar=False)


def train(dataset: str, configuration: str, fold: int, *, epochs: int, iterations: int,
          val_iterations: int, device: str, resume: bool, num_gpus: int, seed: int | None = None,
          pretrained: str | None = None, trainer_name: str | None = None, minutes: float | None = None) -> None:
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint

    from .predict import TRAINER_NAME

    trainer_name = trainer_name or TRAINER_NAME
    if seed is not None:  # weights and patch sampling (nnU-Net draws from numpy's global generator)
        import random

        import numpy as np
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
    if num_gpus > 1:  # nnU-Net's own DDP path (one process per GPU)
        from nnunetv2.run.run_training import run_training
        run_training(dataset, configuration, fold, trainer_name, num_gpus=num_gpus, continue_training=resume,
                     device=torch.device("cuda"), pretrained_weights=None if resume else pretrained)
        return
    trainer = get_trainer_from_args(dataset, configuration, fold, trainer_name, continue_training=resume,
                                    device=torch.device(device))
    trainer.num_epochs = epochs
    trainer.num_iterations_per_epoch = iterations
    trainer.num_val_iterations_per_epoch = val_iterations
    trainer.save_every = max(1, min(50, epochs // 4 or 1))
    if minutes:   # the trainer fits its epochs (and learning-rate schedule) to the budget
        trainer.time_budget_s = minutes * 60
        trainer.save_every = 5
    maybe_load_checkpoint(trainer, resume, False, None if resume else pretrained)
    if pretrained and not resume:
        _load_output_layers(trainer, Path(pretrained))
    started, first_epoch = time.monotonic(), trainer.current_epoch
    original_epoch_end = trainer.on_epoch_end

    def on_epoch_end_with_eta():
        original_epoch_end()
        done = trainer.current_epoch - first_epoch
        left = (time.monotonic() - started) / max(done, 1) * (trainer.num_epochs - trainer.current_epoch)
        print(f"[bibsnet] training epoch {trainer.current_epoch}/{trainer.num_epochs}, "
              f"about {left / 60:.1f} min left", flush=True)

    trainer.on_epoch_end = on_epoch_end_with_eta
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
    trainer.run_training()


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
    t.add_argument("dataset")
    t.add_argument("configuration")
    t.add_argument("fold", type=int)
    t.add_argument("--epochs", type=int, required=True)
    t.add_argument("--iterations", type=int, required=True)
    t.add_argument("--val-iterations", type=int, required=True)
    t.add_argument("--device", default="cuda")
    t.add_argument("--resume", action="store_true")
    t.add_argument("--num-gpus", type=int, default=1)
    t.add_argument("--seed", type=int)
    t.add_argument("--trainer", help="nnU-Net trainer class (default nnUNetTrainerBibsnet)")
    t.add_argument("--synthetic-fraction", type=float,
                   help="on-the-fly trainer: share of samples given a synthetic contrast")
    t.add_argument("--minutes", type=float, help="training time budget: epochs fitted to it")
    t.add_argument("--pretrained", help="checkpoint whose weights initialise the network (fine-tuning)")
    args = parser.parse_args(argv)
    if args.stage == "plan":
        plan(args.dataset_id, args.processes, args.preset_json, args.plans_from)
    else:
        if args.synthetic_fraction is not None:   # read by the on-the-fly trainer (DDP children inherit it)
            os.environ["BIBSNET_ONTHEFLY_FRACTION"] = str(args.synthetic_fraction)
        train(args.dataset, args.configuration, args.fold, epochs=args.epochs, iterations=args.iterations,
              val_iterations=args.val_iterations, device=args.device, resume=args.resume,
              num_gpus=args.num_gpus, seed=args.seed, pretrained=args.pretrained,
              trainer_name=args.trainer, minutes=args.minutes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
