"""Stage evaluate: the model on the held-out subjects (real when there are any), the Dice report, and
the comparison with a previous model."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

from ..bids.derivatives import GROUP_DICE_REPORT, REPORTS
from ..config import GroupConfig
from ..errors import ProcessingError
from ..reports.figures import top_panel_png
from ..images import load_volume
from ..labels import to_target
from ..evaluation.evaluate import Case, evaluate
from ..nnunet import training
from .splits import Split
from ..reports.provenance import machine, provenance
from ..evaluation.dice_report import write_dice_report
from ..evaluation.summary import Reference
from .dataset import synthetic_case_ids
from .stages import EvaluationResult, RunPlan, TrainingData


LOG = logging.getLogger(__name__)


def _training_figures(preview: Path | None, model_folder: Path, n_folds: int) -> list[tuple[str, Path | bytes]]:
    figures = [("Synthetic training samples", preview)] if preview else []
    onthefly = model_folder / "fold_0" / "synthesis_preview.png"   # written by the on-the-fly trainer
    if onthefly.exists():
        figures.append(("On-the-fly synthetic training patches as the network saw them (fold 0, last preview)",
                        onthefly))
    for fold in range(n_folds):
        curve = model_folder / f"fold_{fold}" / "progress.png"
        if curve.exists():   # its first panel: losses and validation pseudo-Dice (the full plot stays in the package)
            figures.append((f"Training curves, fold {fold}: training and validation loss, validation pseudo-Dice",
                            top_panel_png(curve)))
    return figures


def _test_cases(split: Split, modalities: list[str]) -> list[Case]:
    cases = []
    for s in split.test:
        reference = load_volume(s.label_map, kind="label")
        cases.append(Case(s.key, [load_volume(s.images[m]) for m in modalities],
                          to_target(np.asarray(reference.dataobj))))
    return cases


def _evaluation_cases(split: Split, data: "TrainingData", modalities: list[str]) -> tuple[Reference, list[Case]]:
    """Held-out real subjects when there are any, else nnU-Net's validation cases (labelled) of
    fold 0: real when every one is a real case, else synthetic."""
    if split.test:
        return Reference.REAL, _test_cases(split, modalities)
    writer, val_ids = data.writer, data.folds[0][1]
    cases = []
    for case in val_ids:
        images = [nib.load(writer.folder / "imagesTr" / f"{case}_{c:04d}.nii.gz") for c in range(len(modalities))]
        label = nib.load(writer.label_path(case))
        cases.append(Case(case, images, writer.table.to_codes(np.asarray(label.dataobj))))
    real = set(val_ids) <= set(data.real_ids.values())
    return (Reference.REAL if real else Reference.SYNTHETIC), cases


def _compare_with_previous(previous_model: dict, cases: list[Case], scores: dict, opts: GroupConfig) -> dict:
    """Dice of a previous model (as `_open_model` returns it) on the same cases, paired against this model's."""
    from ..evaluation.compare import compare_models
    from ..nnunet.predict import Segmenter

    manifest = previous_model["manifest"]
    previous = evaluate(Segmenter(previous_model["folder"], device=opts.execution.device), cases,
                        what="previous model", full_metrics=False)
    return compare_models(scores, previous.scores, current_name="this model",
                          previous_name=manifest.title)


def evaluate_model(plan: RunPlan, data: TrainingData, model_folder: Path) -> EvaluationResult:
    """Segment the held-out subjects with the ensemble of folds; the Dice report."""
    opts, split = plan.opts, plan.split
    missing = [f for f in range(split.n_folds) if not (model_folder / f"fold_{f}" / "checkpoint_final.pth").exists()]
    if missing:
        raise ProcessingError(f"folds {missing} have no final checkpoint", model_folder)
    from ..nnunet.predict import Segmenter
    segmenter = Segmenter(model_folder, device=opts.execution.device, folds=tuple(range(split.n_folds)))
    evaluated_on, cases = _evaluation_cases(split, data, plan.modalities)
    overlay_dir = opts.execution.work_dir / "evaluation" / "overlays"
    shutil.rmtree(overlay_dir, ignore_errors=True)
    result = evaluate(segmenter, cases, overlay_dir,
                      what="evaluation" + (f" ({split.n_folds}-fold ensemble)" if split.n_folds > 1 else ""))
    comparison = None
    if plan.previous_model is not None:
        comparison = _compare_with_previous(plan.previous_model, cases, result.scores, opts)
    case_bins = {s.key: plan.age_bins.get(s.subject) for s in split.test} if any(plan.age_bins.values()) else None
    summary = _training_summary(plan, data, model_folder)
    context = {"setting": _evaluation_setting(plan, cases, summary, model_folder, evaluated_on),
               "model": plan.name, "release": plan.release, "modalities": plan.modalities, "training": summary,
               "provenance": provenance(opts, model={"Name": plan.name, "Release": plan.release}, training=summary)}
    report = write_dice_report(opts.output_dir / REPORTS, GROUP_DICE_REPORT, result.scores,
                               evaluated_on=evaluated_on, context=context,
                               figures=_training_figures(data.preview, model_folder, split.n_folds),
                               hd95=result.hd95, volume_differences=result.volumes,
                               age_bins={k: v or "unknown age" for k, v in case_bins.items()} if case_bins else None,
                               comparison=comparison, overlays=result.overlays, infilled=result.infilled)
    return EvaluationResult(evaluated_on, report, report.content, context)


def _evaluation_setting(plan: RunPlan, cases: list[Case], summary: dict, model_folder: Path,
                        evaluated_on: Reference) -> dict:
    """What the report's figures are: whose scans, at what voxel size, from how much training on what machine."""
    voxels = sorted(float(np.mean(c.images[0].header.get_zooms()[:3])) for c in cases)
    trained = summary.get("trained") or {}
    return {"dataset": None if evaluated_on.synthetic else plan.dataset_name, "cases": [c.name for c in cases],
            "voxel_mm": round(voxels[len(voxels) // 2], 2) if voxels else None,
            "training_spacing_mm": [round(v, 2) for v in training.trained_spacing(model_folder, plan.opts.preset.configuration)],
            "training_minutes": trained.get("minutes"), "iterations": trained.get("iterations"),
            "machine": trained.get("machine")}


def _training_summary(plan: RunPlan, data: TrainingData, model_folder: Path) -> dict:
    """Who trained the model and how long: the manifest's `training_data`."""
    split = plan.split
    trained = training.training_record(model_folder, plan.opts.preset.iterations_per_epoch)
    return {"real_train_subjects": sorted({s.subject for s in split.development} - set(split.val_folds[0])),
            "real_validation_subjects": sorted(set(split.val_folds[0])),
            "validation_folds": split.val_folds,
            "validation": ("the real training subjects (none kept out to validate)" if split.validate_on_training
                           else "real subjects kept out of training" if split.val_folds[0] else "synthetic images"),
            "held_out_subjects": sorted({s.subject for s in split.test}),
            "label_map_subjects": sorted({s.subject for s in data.sources}),
            "synthetic_images": len(synthetic_case_ids(data.synthetic_of)), "folds": split.n_folds,
            "evaluation": "ensemble of all folds" if split.n_folds > 1 else "fold 0",
            "preset": plan.opts.preset.as_dict(),
            "trained": {**trained, "machine": machine(plan.opts.execution.device)} if trained else None}
