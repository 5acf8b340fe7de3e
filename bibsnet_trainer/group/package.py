"""Stage package: the model package (manifest with digests), its zip and the index page."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from ..config import GroupConfig, as_json
from ..reports.index_page import write_index
from ..models.package import write_package, zip_package
from ..nnunet import training
from ..reports.provenance import library_versions
from ..synthesis.generator import configured_priors
from .stages import EvaluationResult, GroupResult, RunPlan, TrainingData


LOG = logging.getLogger(__name__)


def configuration_json(opts: GroupConfig) -> dict:
    """The run's configuration as the manifest carries it (without this machine's folders)."""
    configuration = as_json(opts)
    configuration.pop("output_dir")
    configuration["execution"].pop("work_dir")
    return configuration


def package_model(plan: RunPlan, data: TrainingData, model_folder: Path, evaluation: EvaluationResult,
                  bids_dir: Path) -> GroupResult:
    """The model package (manifest with digests), its zip, the index page, the options used."""
    opts, split, dice = plan.opts, plan.split, evaluation.dice
    known_ages = [s.age_months for s in split.development + split.synth_sources]
    known_ages = [a for a in known_ages if a is not None]
    manifest = {
        "name": plan.name, "release": plan.release, "architecture": "nnU-Net v2",
        **plan.model_input.manifest_fields(), "image_orientation": "RAS", "labels": plan.facts.table.as_json(),
        "label_volume_fractions": {"maps": len(plan.split.synth_sources),
                                   "ranges": {str(c): r for c, r in plan.facts.label_fraction_ranges.items()}},
        "training_spacing_mm": training.trained_spacing(model_folder, opts.preset.configuration),
        "age_range": [min(known_ages), max(known_ages)] if known_ages else None,
        "training_data": evaluation.context["training"],
        "synthesis": opts.synthesis.as_dict(), "seed": opts.execution.seed, "versions": library_versions(),
        "configuration": configuration_json(opts),
        "dice_summary": {"evaluated_on": evaluation.evaluated_on.value, "synthetic": dice["synthetic"],
                         "mean_dice": dice["mean_dice"], "grade": dice["grade"]},
        "source_dataset": str(Path(bids_dir).resolve()),
        "fine_tuned_from": ({"name": plan.base_model["manifest"].name, "release": plan.base_model["manifest"].release}
                            if plan.base_model else None),
    }
    priors = plan.facts.priors
    used_priors = priors.as_json() if priors else {"pooled": configured_priors(opts.synthesis).as_json()}
    write_package(model_folder, plan.package_dir, manifest,
                  extra_files={"priors.json": json.dumps(used_priors, indent=1) + "\n"})
    zipped = zip_package(plan.package_dir, plan.package_dir.with_name(f"{plan.name}_{plan.release}.zip"))
    write_index(opts.output_dir)
    LOG.info("model package: %s (zip: %s)", plan.package_dir, zipped)
    LOG.info("Dice report (%s): %s", evaluation.evaluated_on.value, evaluation.report["html"])
    return GroupResult(package=plan.package_dir, zip=zipped, report=evaluation.report["html"],
                       mean_dice=dice["mean_dice"])
