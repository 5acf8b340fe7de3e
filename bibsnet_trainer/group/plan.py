"""Stage plan: what this run trains (modalities, split, model input, the preset resolved for the
data), checked before any work; every input file is validated once here."""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..bids.derivatives import MODELS
from ..config import GroupConfig, TrainingPreset, record
from ..errors import InputError, RefusedError, UsageError
from ..images import write_text_atomic
from ..bids.inputs import Session, dataset_name as bids_dataset_name, validate_session
from ..labels import LabelTable, to_target
from ..volumes import fraction_ranges, label_fractions
from ..bids.ages import age_bin
from ..models.package import model_name, open_package, release_tag
from ..nnunet import training
from ..nnunet.model_input import ModelInput
from .splits import Split, split_subjects
from ..synthesis.dataset_priors import estimate_from_samples
from .stages import RunPlan, SessionFacts


LOG = logging.getLogger(__name__)


def choose_modalities(sessions: list[Session], requested: list[str] | None) -> list[str]:
    if requested:
        return list(requested)
    with_images = [s for s in sessions if s.label_map and s.images]
    if not with_images:
        return ["T1w"]
    common = set.intersection(*(set(s.images) for s in with_images))
    return [m for m in ("T1w", "T2w") if m in common] or ["T1w"]


def _open_model(package: Path, unpack_root: Path, modalities: list[str], option: str) -> dict:
    """A verified model package that takes the same inputs as the model being trained."""
    folder, manifest = open_package(package, unpack_root)
    if manifest.modalities != list(modalities):
        raise InputError(f"{option}: the package takes {manifest.modalities}, this model {modalities}",
                         package)
    model_folder = folder / manifest.nnunet_folder
    return {"folder": model_folder, "manifest": manifest,
            "dataset": json.loads((model_folder / "dataset.json").read_text())}


def _subject_age_bins(sessions: list[Session]) -> dict[str, str | None]:
    """Subject -> age bin of its youngest session with a known age."""
    ages: dict[str, float] = {}
    for s in sessions:
        age = s.age_months
        if age is not None:
            ages[s.subject] = min(age, ages.get(s.subject, age))
    return {s.subject: age_bin(ages.get(s.subject)) for s in sessions}


def _with_spacing(preset: TrainingPreset, voxels: list[float]) -> TrainingPreset:
    """The preset with its training spacing settled: the user's, or the cpu preset's own choice
    for data finer than it (logged), or None (nnU-Net's median spacing)."""
    from ..nnunet.presets import choose_spacing

    spacing, why = choose_spacing(preset, voxels)
    if why:
        LOG.info("%s", why)
    return replace(preset, target_spacing_mm=spacing)


def _train_on_all(opts: GroupConfig) -> bool | None:
    """--train-on-all or --no-train-on-all as given; otherwise the preset's choice for one fold
    (None: all real subjects not held out train if there are any; `split_subjects`)."""
    if opts.train_on_all is not None:
        return opts.train_on_all
    return None if opts.preset.train_on_all and opts.folds == 1 else False


def _model_input(opts: GroupConfig, modalities: list[str], table: LabelTable, voxels: list[float],
                 base_model: dict | None) -> ModelInput:
    """What the network is fed: a fine-tuned model keeps its base model's slice offsets and air
    rule; otherwise the preset's."""
    if base_model is not None:
        base = ModelInput.from_dataset_json(base_model["dataset"])
        return ModelInput(modalities, table, base.context_mm, base.zero_air)
    return ModelInput(modalities, table, _slice_context(opts, voxels), opts.preset.zero_air)


def _slice_context(opts: GroupConfig, voxels: list[float]) -> tuple[float, ...]:
    """The slice offsets (mm) of the model's input channels: the preset's slices each side, one
    training spacing apart (the data's median voxel when nnU-Net chooses). The on-the-fly
    trainer synthesises single slices: none there."""
    from ..nnunet import context

    slices = opts.preset.context_slices
    if not slices:
        return (0.0,)
    if opts.trainer == "onthefly":
        LOG.info("the on-the-fly trainer synthesises one slice at a time: training without neighbouring slices")
        return (0.0,)
    spacing = opts.preset.target_spacing_mm or sorted(voxels)[len(voxels) // 2]
    offsets = context.offsets(slices, spacing)
    LOG.info("the network sees %d slices each side as extra channels (%s mm)", slices,
             ", ".join(f"{o:+g}" for o in offsets[1:]))
    return offsets


def read_sessions(sessions: list[Session], split: Split, opts: GroupConfig, modalities: list[str],
                  bids_dir: Path) -> SessionFacts:
    """Validate every session (reading each file once) and take from the files what the run needs."""
    LOG.info("validating %d sessions", len(sessions))
    sources, development = {s.key for s in split.synth_sources}, {s.key for s in split.development}
    estimated = opts.synthesis.priors == "estimated"
    fractions, samples, voxels = [], [], {}
    for s in sessions:
        loaded = validate_session(s)
        if loaded.labels is None or s.key not in sources | development:
            continue
        voxels[s.key] = float(np.mean(loaded.labels.header.get_zooms()[:3]))
        codes = np.asarray(loaded.labels.dataobj)
        if s.key in sources:   # the labels the model learns: those of its training label maps
            fractions.append(label_fractions(to_target(codes)))
        if estimated and s.key in development and all(m in loaded.images for m in modalities):
            samples.append((s, {m: np.asarray(loaded.images[m].dataobj, dtype=np.float32) for m in modalities},
                            codes.astype(np.int64)))
    table = LabelTable.from_codes(set().union(*(set(f) for f in fractions)) if fractions else ())
    priors = None
    if estimated:
        priors = estimate_from_samples(samples, modalities, opts.synthesis.intensity_classes,
                                       opts.synthesis.prior_distribution, bids_dir)
        write_text_atomic(opts.execution.work_dir / "priors.json", json.dumps(priors.as_json(), indent=1))
    return SessionFacts(table, fraction_ranges(fractions, table.codes), priors, list(voxels.values()))


def plan_run(sessions: list[Session], opts: GroupConfig, bids_dir: Path) -> RunPlan:
    release = release_tag()     # once per run: a run crossing midnight keeps one tag everywhere
    modalities = choose_modalities(sessions, opts.modalities)
    name = model_name(modalities)
    package_dir = opts.output_dir / MODELS / name
    if package_dir.exists():
        raise RefusedError("a model package with this name exists already; remove it to train again",
                           package_dir)
    previous_model = None
    if opts.compare_to is not None:   # fail before hours of training, not after
        previous_model = _open_model(opts.compare_to, opts.execution.work_dir / "previous_model", modalities, "--compare-to")
    base_model = None
    if opts.init_from is not None:
        base_model = _open_model(opts.init_from, opts.execution.work_dir / "base_model", modalities, "--init-from")
        configuration = training.configuration_of(base_model["folder"])
        if configuration != opts.preset.configuration:
            LOG.info("fine-tuning keeps the base model's configuration %s (preset: %s)",
                     configuration, opts.preset.configuration)
        opts = replace(opts, preset=replace(opts.preset, configuration=configuration))
    age_bins = _subject_age_bins(sessions)
    split = split_subjects(sessions, modalities, opts.test_fraction, opts.execution.split_seed(), folds=opts.folds, age_bins=age_bins,
                           test_subjects=opts.test_subjects, train_on_all=_train_on_all(opts))
    if opts.only_fold is not None and not 0 <= opts.only_fold < split.n_folds:   # before any work
        raise UsageError(f"--only-fold {opts.only_fold}: folds are numbered 0..{split.n_folds - 1}")
    _check_label_maps_used(split, opts.synthesis.samples_per_map)
    facts = read_sessions(sessions, split, opts, modalities, bids_dir)
    opts = replace(opts, preset=_with_spacing(opts.preset, facts.voxel_mm))
    model_input = _model_input(opts, modalities, facts.table, facts.voxel_mm, base_model)
    record(opts)
    why_all = "--train-on-all" if opts.train_on_all else "the preset's default; --no-train-on-all keeps one to validate"
    LOG.info("modalities %s; real subjects: %d for training%s, %d held out; "
             "%d label maps for synthesis, %d synthetic images each", modalities, len({s.subject for s in split.development}),
             f" (all of them: {why_all})" if split.validate_on_training else f"/validation in {split.n_folds} fold(s)",
             len({s.subject for s in split.test}), len(split.synth_sources), opts.synthesis.samples_per_map)
    return RunPlan(opts, release, modalities, name, package_dir, split, age_bins, previous_model, base_model, facts,
                   model_input, bids_dataset_name(bids_dir))


def _check_label_maps_used(split: Split, samples_per_map: int) -> None:
    """Without synthesis (the default), a label map with no image of its own trains nothing: say
    so, and refuse when no real image is left to train on."""
    if samples_per_map:
        return
    with_image = {s.key for s in split.development}
    unused = [s for s in split.synth_sources if s.key not in with_image]
    if not split.development:
        raise UsageError(f"no real image to train on outside the held-out subjects ({len(unused)} label maps "
                         "without images): synthesize training images from them with --synthetic-per-map N")
    for s in unused:
        LOG.warning("%s: a label map without an image trains only through synthesis (--synthetic-per-map N); "
                    "not used", s.label_map)
