"""Stages preprocess and train: nnU-Net's planning and preprocessing, then every fold trained (resumed
from its last checkpoint when a run was interrupted)."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from ..config import GroupConfig
from ..images import write_text_atomic
from ..nnunet import training
from ..nnunet.dataset import write_splits
from ..nnunet.trainer_names import ONTHEFLY_TRAINER_NAME, TRAINER_NAME
from .stages import RunPlan, TrainingData


LOG = logging.getLogger(__name__)


def _base_checkpoint(base_model: dict | None, fold: int) -> Path | None:
    """The base model's weights for this fold (its fold 0 when it has fewer folds)."""
    if base_model is None:
        return None
    own = base_model["folder"] / f"fold_{fold}" / "checkpoint_final.pth"
    return own if own.exists() else base_model["folder"] / "fold_0" / "checkpoint_final.pth"


def _trainer_class(opts: GroupConfig) -> str:
    return ONTHEFLY_TRAINER_NAME if opts.trainer == "onthefly" else TRAINER_NAME


def preprocess(plan: RunPlan, data: TrainingData) -> Path:
    """nnU-Net's planning and preprocessing, redone only when the data, split or network changed."""
    opts, base_model = plan.opts, plan.base_model
    preprocessed = data.folders.preprocessed / data.dataset
    model_folder = training.trained_model_folder(data.folders, data.dataset, opts.preset, _trainer_class(opts))
    marker = preprocessed / ".bibsnet_complete"
    network = {k: v for k, v in opts.preset.as_dict().items() if "epoch" not in k and k != "minutes"}
    fingerprint = json.dumps({"cases": data.writer.case_ids(), "labels": plan.facts.table.codes, "network": network,
                              "folds": data.folds, "onthefly": data.onthefly,
                              "init_from": base_model["manifest"].files if base_model else None})
    if not marker.exists() or marker.read_text() != fingerprint:
        if marker.exists():  # the work dir holds another run's data: start training afresh
            LOG.info("inputs, split or preset changed since the last run in this work dir; preprocessing again")
            shutil.rmtree(model_folder, ignore_errors=True)
        training.plan_and_preprocess(data.folders, opts.dataset_id, opts.preset, nprocs=opts.execution.nprocs,
                                     omp_nthreads=opts.execution.omp_nthreads,
                                     plans_from=base_model["folder"] / "plans.json" if base_model else None)
        write_text_atomic(marker, fingerprint)
    write_splits(preprocessed, data.folds, validation_trains=plan.split.validate_on_training)
    return model_folder


def train_folds(plan: RunPlan, data: TrainingData, model_folder: Path) -> None:
    """Train every fold (or --only-fold) that has no final checkpoint; resume from the latest."""
    opts = plan.opts
    for fold in range(plan.split.n_folds) if opts.only_fold is None else [opts.only_fold]:
        fold_dir = model_folder / f"fold_{fold}"
        if (fold_dir / "checkpoint_final.pth").exists():
            continue
        resume = (fold_dir / "checkpoint_latest.pth").exists()
        if resume:
            LOG.info("resuming training from %s", fold_dir / "checkpoint_latest.pth")
        LOG.info("training fold %d of %d", fold + 1, plan.split.n_folds)
        training.train(data.folders, data.dataset, opts.preset, fold, opts.execution, resume=resume,
                       pretrained=_base_checkpoint(plan.base_model, fold),
                       trainer=_trainer_class(opts), synthesis=data.onthefly,
                       synthetic_fraction=opts.synthetic_fraction)
