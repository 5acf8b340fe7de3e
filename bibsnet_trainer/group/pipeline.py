"""Group level: label maps (+ real images) -> synthetic images -> nnU-Net dataset -> plan,
preprocess, train -> Dice on held-out real subjects -> report and model package.

Every stage leaves its results in the work directory and is skipped when found complete, so the
same command resumes an interrupted run; training continues from nnU-Net's last checkpoint."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from ..config import GroupConfig
from ..bids.inputs import Session
from .dataset import write_training_data
from .evaluate import evaluate_model
from .package import package_model
from .plan import plan_run
from .stages import GroupResult
from .train import preprocess, train_folds


LOG = logging.getLogger(__name__)


def _staged(name: str, function, *args):
    """Run one stage, logged and timed."""
    started = time.monotonic()
    LOG.info("stage %s", name)
    result = function(*args)
    LOG.info("stage %s done in %.0f s", name, time.monotonic() - started)
    return result


def run_group(sessions: list[Session], opts: GroupConfig, bids_dir: Path) -> GroupResult:
    """Train a model from the sessions, in stages: plan, dataset, preprocess, train, evaluate,
    package. Each stage reuses what an earlier run of the same work dir finished."""
    plan = _staged("plan", plan_run, sessions, opts, bids_dir)
    data = _staged("dataset", write_training_data, plan)
    if plan.opts.synthesize_only:
        LOG.info("synthetic samples: %s; preview: %s", data.writer.folder / "imagesTr", data.preview)
        return GroupResult(samples=data.writer.folder / "imagesTr", preview=data.preview)
    model_folder = _staged("preprocess", preprocess, plan, data)
    _staged("train", train_folds, plan, data, model_folder)
    if plan.opts.only_fold is not None:
        LOG.info("fold %d trained; run the command without --only-fold once every fold is done", plan.opts.only_fold)
        return GroupResult(fold=plan.opts.only_fold, model_folder=model_folder)
    evaluation = _staged("evaluate", evaluate_model, plan, data, model_folder)
    return _staged("package", package_model, plan, data, model_folder, evaluation, bids_dir)
