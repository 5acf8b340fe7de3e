"""Group level: label maps (+ real images) -> synthetic images -> nnU-Net dataset -> plan,
preprocess, train -> Dice on held-out real subjects -> report and model package.

Every stage leaves its results in the work directory and is skipped when found complete, so the
same command resumes an interrupted run; training continues from nnU-Net's last checkpoint."""
from __future__ import annotations

import json
import logging
import shutil
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import __version__
from ..config import GroupConfig, SynthesisConfig, as_json, record
from ..errors import InputError, ProcessingError, RefusedError, UsageError
from ..reports.figures import top_panel_png
from ..reports.index_page import write_index
from ..images import left_right_axis, load_volume, padded_box, write_text_atomic
from ..bids.inputs import Session, dataset_name as bids_dataset_name, validate_session
from ..labels import LabelTable, to_target
from ..volumes import fraction_ranges, label_fractions
from ..bids.ages import age_bin
from ..evaluation.evaluate import Case, evaluate
from ..models.package import model_name, open_package, release_tag, write_package, zip_package
from ..nnunet import training
from ..nnunet.background import air_mask
from ..nnunet.dataset import RawDatasetWriter, dataset_name, write_splits
from ..nnunet.model_input import ModelInput
from ..nnunet.trainer_names import ONTHEFLY_TRAINER_NAME, TRAINER_NAME
from .splits import Split, split_subjects
from ..nnunet.presets import TrainingPreset
from ..progress import Progress
from ..reports.provenance import library_versions, machine, provenance
from ..evaluation.dice_report import Reference, write_dice_report
from ..synthesis import LabelSynthesizer
from ..synthesis.background import split_background
from ..synthesis.generator import configured_priors
from ..synthesis.dataset_priors import PriorsByAge, estimate_from_samples

LOG = logging.getLogger(__name__)


def choose_modalities(sessions: list[Session], requested: list[str] | None) -> list[str]:
    if requested:
        return list(requested)
    with_images = [s for s in sessions if s.label_map and s.images]
    if not with_images:
        return ["T1w"]
    common = set.intersection(*(set(s.images) for s in with_images))
    return [m for m in ("T1w", "T2w") if m in common] or ["T1w"]


def _case_stem(s: Session) -> str:
    """The session key as nnU-Net case ids take it (letters and digits only)."""
    return s.key.replace('-', '').replace('_', '')


def _real_case(s: Session) -> str:
    return f"real_{_case_stem(s)}"


def _synthesis_label_map(s: Session, labels: nib.Nifti1Image, images: dict[str, nib.Nifti1Image],
                         config: SynthesisConfig, modalities: list[str], seed: int) -> nib.Nifti1Image:
    """The label map synthesis draws from; with background components, the unlabelled voxels
    of the session's real image (when it has one) become extra generation labels."""
    space = s.label_space if s.label_space in s.images else next((m for m in modalities if m in s.images), None)
    if not config.background_components or space is None:
        return labels
    image = images[space] if space in images else load_volume(s.images[space])
    data = np.asarray(image.dataobj, dtype=np.float32)
    # the synthetic air is the real image's air as the air rule finds it (zero_air sets it to 0)
    air = air_mask(data) if config.zero_air else None
    codes = split_background(data, np.asarray(labels.dataobj).astype(np.int32), config.background_components,
                             seed=seed, air=air)
    return nib.Nifti1Image(codes, labels.affine)


def _write_cases(writer: RawDatasetWriter, development: list[Session], sources: list[Session], opts: GroupConfig,
                 modalities: list[str], priors: PriorsByAge | None) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The real cases of the development sessions and the synthetic cases drawn from the sources'
    label maps (session key -> case id(s)), reading each session's files once, for both when a
    session is both. Cases already written by an earlier run are kept."""
    config, seed = opts.synthesis, opts.execution.seed
    _forget_stale_synthesis(writer, config, seed, modalities, priors)
    real_ids = {s.key: _real_case(s) for s in development}
    synthetic_of, todo = {}, {}
    for source_index, s in enumerate(sources):
        synthetic_of[s.key] = [f"{_synthetic_prefix(s)}{k:03d}" for k in range(config.samples_per_map)]
        todo[s.key] = [(case, seed * 1_000_003 + source_index * 1000 + k)
                       for k, case in enumerate(synthetic_of[s.key]) if not writer.has_case(case)]
    n_todo = sum(len(cases) for cases in todo.values())
    if n_todo:
        LOG.info("synthesizing %d images (%d already done) on %s", n_todo, len(_flat(synthetic_of)) - n_todo,
                 opts.execution.device)
    draw = _Synthesis(writer, opts, modalities, priors, Progress(max(n_todo, 1), "synthesis", LOG))
    with draw:
        for s in {s.key: s for s in development + sources}.values():
            real = real_ids.get(s.key)
            write_real = real is not None and not writer.has_case(real)
            if not write_real and not todo.get(s.key):
                continue
            labels = load_volume(s.label_map, kind="label")
            images: dict[str, nib.Nifti1Image] = {}
            if write_real:
                images = {m: load_volume(s.images[m]) for m in modalities}
                target = nib.Nifti1Image(to_target(np.asarray(labels.dataobj)), labels.affine)
                writer.add_case(real, [images[m] for m in modalities], target)
            if todo.get(s.key):
                draw.session(s, _synthesis_label_map(s, labels, images, config, modalities, seed), todo[s.key])
    return real_ids, synthetic_of


class _Synthesis:
    """Draws synthetic cases and writes them in threads (compressing and writing a pair takes
    longer than drawing it on a GPU; zlib releases the GIL), with a bounded queue."""

    def __init__(self, writer: RawDatasetWriter, opts: GroupConfig, modalities: list[str],
                 priors: PriorsByAge | None, progress: Progress):
        self.writer, self.opts, self.modalities, self.priors, self.progress = writer, opts, modalities, priors, progress
        self.synthesizers: dict[float, LabelSynthesizer] = {}
        self.writers = max(1, opts.execution.nprocs)
        self.pending: deque = deque()

    def __enter__(self):
        self.pool = ThreadPoolExecutor(self.writers)
        return self

    def __exit__(self, *exc):
        try:
            if exc[0] is None:
                _collect_written(self.pending, self.progress, keep=0)
        finally:
            self.pool.shutdown(wait=True)

    def session(self, s: Session, labels: nib.Nifti1Image, cases: list[tuple[str, int]]) -> None:
        voxel = float(np.mean(labels.header.get_zooms()[:3]))
        if voxel not in self.synthesizers:
            self.synthesizers[voxel] = LabelSynthesizer(self.opts.synthesis, channels=self.modalities, voxel_mm=voxel,
                                                        device=self.opts.execution.device)
        sample_priors = self.priors.for_age(s.age_months) if self.priors else None
        codes, lr_axis = np.asarray(labels.dataobj), left_right_axis(labels.affine)
        for case, seed in cases:
            images, target = self.synthesizers[voxel].sample(codes, seed, lr_axis=lr_axis, priors=sample_priors)
            channels, target_image = cropped_to_head(images, target, labels.affine)
            self.pending.append((case, self.pool.submit(self.writer.add_case, case, channels, target_image)))
            _collect_written(self.pending, self.progress, keep=self.writers)


# margin around the brain kept in a synthetic case, as a share of the brain's extent on each axis
# (about 25 mm in an adult: skull and scalp, where the label map draws them)
SYNTHETIC_CROP_MARGIN = 0.15


def cropped_to_head(images: list[np.ndarray], target: np.ndarray, affine: np.ndarray,
                    margin: float = SYNTHETIC_CROP_MARGIN) -> tuple[list[nib.Nifti1Image], nib.Nifti1Image]:
    """A synthetic case cropped to its labelled brain plus a margin. Its synthetic background
    has no zero voxels, so nnU-Net's own crop to non-zero would keep the whole label-map grid:
    larger cases than the real ones, a larger plan, slower iterations."""
    channels = [nib.Nifti1Image(c, affine) for c in images]
    target_image = nib.Nifti1Image(target, affine)
    box = padded_box(np.asarray(target) != 0, margin)
    if box is None:
        return channels, target_image
    return [c.slicer[box] for c in channels], target_image.slicer[box]


def _collect_written(pending: deque, progress: Progress, keep: int) -> None:
    """Wait for the oldest writes until at most `keep` are pending (raising a write's error);
    count every finished one."""
    while len(pending) > keep or (pending and pending[0][1].done()):
        case, written = pending.popleft()
        written.result()
        progress.step(case)


def _forget_stale_synthesis(writer: RawDatasetWriter, config: SynthesisConfig, seed: int, modalities: list[str],
                            priors: PriorsByAge | None) -> None:
    """Synthetic cases are reused on a re-run only if they were drawn with the same parameters."""
    stamp = writer.folder / ".synthesis.json"
    parameters = {k: v for k, v in config.as_dict().items() if k != "samples_per_map"} | {"seed": seed}
    current = json.dumps({"synthesis": parameters, "modalities": modalities,
                          "priors": priors.as_json() if priors else None}, sort_keys=True)
    if stamp.exists() and stamp.read_text() != current:
        removed = writer.remove_cases(SYNTHETIC_PREFIX)
        LOG.info("synthesis parameters changed since the last run in this work dir: %d synthetic images "
                 "will be drawn again", removed)
    write_text_atomic(stamp, current)


SYNTHETIC_PREFIX = "syn_"   # names synthetic cases; they are removed by it when drawn again


def _synthetic_prefix(s: Session) -> str:
    return f"{SYNTHETIC_PREFIX}{_case_stem(s)}_"


def _flat(synthetic_of: dict[str, list[str]]) -> list[str]:
    return [case for cases in synthetic_of.values() for case in cases]


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


def fold_cases(split: Split, real_ids: dict[str, str], synthetic_of: dict[str, list[str]],
               sources: list[Session]) -> list[tuple[list[str], list[str]]]:
    """(train, validation) case ids per fold. Real cases follow the split; a session's synthetic
    cases train every fold its subject does not validate; without a real validation subject,
    nnU-Net validates on synthetic images of an unseen label map, or with --train-on-all on the
    real training cases."""
    folds = []
    for fold in range(split.n_folds):
        real_train = [real_ids[s.key] for s in split.train(fold)]
        train_ids = real_train + [c for s in split.synth_for(fold) for c in synthetic_of.get(s.key, [])]
        val_ids = [real_ids[s.key] for s in split.val(fold)]
        if split.validate_on_training:
            val_ids = list(real_train)
        elif not val_ids:
            val_ids = _synthetic_validation(synthetic_of, sources)
            train_ids = [c for c in train_ids if c not in val_ids]
            if not train_ids:
                raise UsageError("nothing left to train on: with no real validation subject, nnU-Net validates on "
                                 "synthetic images of one label map; add label maps or raise --synthetic-per-map "
                                 "to at least 2")
        folds.append((sorted(set(train_ids)), sorted(val_ids)))
    return folds


def _case_age_bins(real_ids: dict[str, str], synthetic_of: dict[str, list[str]],
                   sessions: list[Session]) -> dict[str, str]:
    """nnU-Net case id -> age bin of the session it comes from (cases of unknown age left out)."""
    bins = {}
    for s in {s.key: s for s in sessions}.values():
        age = age_bin(s.age_months)
        if age is None:
            continue
        cases = [real_ids[s.key]] if s.key in real_ids else []
        cases += synthetic_of.get(s.key, [])
        bins.update({c: age for c in cases})
    return bins


def _synthetic_validation(synthetic_of: dict[str, list[str]], sources: list[Session]) -> list[str]:
    """Synthetic cases drawn from the last label map (none of its samples train), or, with a
    single label map, the last fifth of its samples."""
    if len(sources) >= 2:
        return list(synthetic_of.get(sources[-1].key, []))
    synthetic_ids = _flat(synthetic_of)
    return synthetic_ids[-max(1, len(synthetic_ids) // 5):]


def _write_preview(writer: RawDatasetWriter, synthetic_ids: list[str], path: Path, count: int = 6) -> Path | None:
    from ..synthesis.preview import write_preview
    if not synthetic_ids:
        return None
    picks = synthetic_ids[:: max(1, len(synthetic_ids) // count)][:count]
    # labelsTr holds nnU-Net's consecutive indices; the preview colours FreeSurfer codes
    samples = [(case, np.asarray(nib.load(writer.folder / "imagesTr" / f"{case}_0000.nii.gz").dataobj),
                writer.table.to_codes(np.asarray(nib.load(writer.label_path(case)).dataobj))) for case in picks]
    return write_preview(path, samples)


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


def _open_model(package: Path, unpack_root: Path, modalities: list[str], option: str) -> dict:
    """A verified model package that takes the same inputs as the model being trained."""
    folder, manifest = open_package(package, unpack_root)
    if manifest.modalities != list(modalities):
        raise InputError(f"{option}: the package takes {manifest.modalities}, this model {modalities}",
                         package)
    model_folder = folder / manifest.nnunet_folder
    return {"folder": model_folder, "manifest": manifest,
            "dataset": json.loads((model_folder / "dataset.json").read_text())}


def _base_checkpoint(base_model: dict | None, fold: int) -> Path | None:
    """The base model's weights for this fold (its fold 0 when it has fewer folds)."""
    if base_model is None:
        return None
    own = base_model["folder"] / f"fold_{fold}" / "checkpoint_final.pth"
    return own if own.exists() else base_model["folder"] / "fold_0" / "checkpoint_final.pth"


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


def _training_spacing(model_folder: Path, preset: TrainingPreset) -> list[float]:
    """The voxel size (mm, in nnU-Net's axis order) the model was trained at, from its plans."""
    configurations = json.loads((model_folder / "plans.json").read_text())["configurations"]
    config = configurations[preset.configuration]
    while "spacing" not in config and "inherits_from" in config:
        config = configurations[config["inherits_from"]]
    return [float(v) for v in config["spacing"]]


def configuration_json(opts: GroupConfig) -> dict:
    """The run's configuration as the manifest carries it (without this machine's folders)."""
    configuration = as_json(opts)
    configuration.pop("output_dir")
    configuration["execution"].pop("work_dir")
    return configuration


def _versions() -> dict[str, str]:
    return {"bibsnet-trainer": __version__, **library_versions(
        ("torch", "torchvision", "nnunetv2", "dynamic-network-architectures", "batchgeneratorsv2", "cornucopia",
         "torch-interpol", "nibabel", "numpy", "scipy", "scikit-learn", "SimpleITK", "pybids", "nipype",
         "matplotlib"))}


@dataclass
class SessionFacts:
    """What the plan stage reads from the sessions' files, each file read once: the labels of the
    training label maps and each label's range of shares of their labelled volume (the package
    carries it for the participant QC), the estimated intensity priors, the voxel sizes."""
    table: LabelTable
    label_fraction_ranges: dict[int, list[float]]
    priors: PriorsByAge | None
    voxel_mm: list[float]


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


@dataclass
class RunPlan:
    """Stage 1 (plan): what this run trains, checked before any work."""
    opts: GroupConfig
    release: str
    modalities: list[str]
    name: str
    package_dir: Path
    split: Split
    age_bins: dict[str, str | None]
    previous_model: dict | None
    base_model: dict | None
    facts: SessionFacts
    model_input: ModelInput                   # what the network is fed (slice offsets, air rule)
    dataset_name: str = ""                    # the BIDS dataset's Name, which the Dice report names


@dataclass
class TrainingData:
    """Stage 2 (dataset): nnU-Net's raw dataset of real and synthetic cases, and its folds."""
    folders: training.NnunetFolders
    dataset: str
    writer: RawDatasetWriter
    sources: list[Session]
    synthetic_of: dict[str, list[str]]     # source session key -> its synthetic case ids
    real_ids: dict[str, str]
    folds: list[tuple[list[str], list[str]]]
    onthefly: dict | None
    preview: Path | None


@dataclass
class Evaluation:
    """Stage 5 (evaluate): the held-out Dice report."""
    evaluated_on: Reference
    report: dict
    dice: dict
    context: dict


@dataclass
class GroupResult:
    package: Path | None = None
    zip: Path | None = None
    report: Path | None = None
    mean_dice: float | None = None
    model_folder: Path | None = None      # --only-fold
    fold: int | None = None
    samples: Path | None = None           # --synthesize-only
    preview: Path | None = None


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


def plan_run(sessions: list[Session], opts: GroupConfig, bids_dir: Path) -> RunPlan:
    release = release_tag()     # once per run: a run crossing midnight keeps one tag everywhere
    modalities = choose_modalities(sessions, opts.modalities)
    name = model_name(modalities)
    package_dir = opts.output_dir / "models" / name
    if package_dir.exists():
        raise RefusedError("a model package with this name exists already; remove it to train again",
                           package_dir)
    previous_model = None
    if opts.compare_to is not None:   # fail before hours of training, not after
        previous_model = _open_model(opts.compare_to, opts.execution.work_dir / "previous_model", modalities, "--compare-to")
    base_model = None
    if opts.init_from is not None:
        base_model = _open_model(opts.init_from, opts.execution.work_dir / "base_model", modalities, "--init-from")
        configuration = base_model["folder"].name.split("__")[-1]
        if configuration != opts.preset.configuration:
            LOG.info("fine-tuning keeps the base model's configuration %s (preset: %s)",
                     configuration, opts.preset.configuration)
        opts = replace(opts, preset=replace(opts.preset, configuration=configuration))
    age_bins = _subject_age_bins(sessions)
    split = split_subjects(sessions, modalities, opts.test_fraction, opts.execution.seed, folds=opts.folds, age_bins=age_bins,
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


def write_training_data(plan: RunPlan) -> TrainingData:
    opts, split, modalities = plan.opts, plan.split, plan.modalities
    folders = training.NnunetFolders(opts.execution.work_dir / "nnunet")
    dataset = dataset_name(opts.dataset_id, "Bibsnet" + "".join(modalities))
    priors = plan.facts.priors
    writer = RawDatasetWriter(folders.raw / dataset, plan.model_input)
    if writer.removed_for_new_input:
        LOG.info("the model input (labels, modalities, slice offsets, air rule) changed since the last run in this work dir: "
                 "%d stored cases will be written again", writer.removed_for_new_input)
    sources = [s for s in split.synth_sources if any(s in split.synth_for(f) for f in range(split.n_folds))]
    real_ids, synthetic_of = _write_cases(writer, split.development, sources, opts, modalities, priors)
    folds = fold_cases(split, real_ids, synthetic_of, sources)
    onthefly = None
    if opts.trainer == "onthefly":   # the on-the-fly trainer's synthesis settings (part of its training job)
        onthefly = {"config": opts.synthesis.as_dict(), "priors": priors.as_json() if priors else None,
                    "case_age_bins": _case_age_bins(real_ids, synthetic_of, split.development + sources) if priors and priors.by_age else {}}
    writer.write_dataset_json({"name": plan.name, "release": plan.release})
    preview = _write_preview(writer, _flat(synthetic_of), opts.output_dir / "reports" / "synthesis_preview.png")
    return TrainingData(folders, dataset, writer, sources, synthetic_of, real_ids, folds, onthefly, preview)


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


def evaluate_model(plan: RunPlan, data: TrainingData, model_folder: Path) -> Evaluation:
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
    report = write_dice_report(opts.output_dir / "reports", "group_desc-dice_report", result.scores,
                               evaluated_on=evaluated_on, context=context,
                               figures=_training_figures(data.preview, model_folder, split.n_folds),
                               hd95=result.hd95, volume_differences=result.volumes,
                               age_bins={k: v or "unknown age" for k, v in case_bins.items()} if case_bins else None,
                               comparison=comparison, overlays=result.overlays, infilled=result.infilled)
    return Evaluation(evaluated_on, report, json.loads(report["json"].read_text()), context)


def _evaluation_setting(plan: RunPlan, cases: list[Case], summary: dict, model_folder: Path,
                        evaluated_on: Reference) -> dict:
    """What the report's figures are: whose scans, at what voxel size, from how much training on what machine."""
    voxels = sorted(float(np.mean(c.images[0].header.get_zooms()[:3])) for c in cases)
    trained = summary.get("trained") or {}
    return {"dataset": None if evaluated_on.synthetic else plan.dataset_name, "cases": [c.name for c in cases],
            "voxel_mm": round(voxels[len(voxels) // 2], 2) if voxels else None,
            "training_spacing_mm": [round(v, 2) for v in _training_spacing(model_folder, plan.opts.preset)],
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
            "synthetic_images": len(_flat(data.synthetic_of)), "folds": split.n_folds,
            "evaluation": "ensemble of all folds" if split.n_folds > 1 else "fold 0",
            "preset": plan.opts.preset.as_dict(),
            "trained": {**trained, "machine": machine(plan.opts.execution.device)} if trained else None}


def package_model(plan: RunPlan, data: TrainingData, model_folder: Path, evaluation: Evaluation,
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
        "training_spacing_mm": _training_spacing(model_folder, opts.preset),
        "age_range": [min(known_ages), max(known_ages)] if known_ages else None,
        "training_data": evaluation.context["training"],
        "synthesis": opts.synthesis.as_dict(), "seed": opts.execution.seed, "versions": _versions(),
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
