"""Group level: label maps (+ real images) -> synthetic images -> nnU-Net dataset -> plan,
preprocess, train -> Dice on held-out real subjects -> report and model package.

Every stage leaves its results in the work directory and is skipped when found complete, so the
same command resumes an interrupted run; training continues from nnU-Net's last checkpoint."""
from __future__ import annotations

import json
import logging
import math
import platform
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from . import __version__
from .errors import InputError, RefusedError
from .images import left_right_axis, load_volume, write_text_atomic
from .inputs import Session, validate_session
from .labels import LabelTable, target_code, to_target
from .metrics import dice_per_label
from .models import model_name, release_tag, write_package, zip_package
from .nnunet import training
from .nnunet.dataset import RawDatasetWriter, dataset_name, write_splits
from .nnunet.presets import TrainingPreset
from .progress import Progress
from .report import REAL, SYNTHETIC, write_dice_report
from .synthesis import LabelSynthesizer, SynthesisConfig
from .synthesis.background import split_background
from .synthesis.dataset_priors import PriorsByAge, estimate_from_sessions, session_age

LOG = logging.getLogger(__name__)


@dataclass
class GroupOptions:
    output_dir: Path
    work_dir: Path
    preset: TrainingPreset
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    modalities: list[str] | None = None
    test_fraction: float = 0.2
    dataset_id: int = 501
    fold: int = 0
    device: str = "cpu"
    nprocs: int = 2
    omp_nthreads: int = 2
    num_gpus: int = 1
    seed: int = 0
    synthesize_only: bool = False   # stop after synthesis and its preview (for tuning parameters)


@dataclass
class Split:
    train: list[Session]          # real, used for training
    val: list[Session]            # real, nnU-Net's validation
    test: list[Session]           # real, held out for the Dice report
    synth_sources: list[Session]  # label maps that synthetic images are drawn from


def choose_modalities(sessions: list[Session], requested: list[str] | None) -> list[str]:
    if requested:
        return list(requested)
    with_images = [s for s in sessions if s.label_map and s.images]
    if not with_images:
        return ["T1w"]
    common = set.intersection(*(set(s.images) for s in with_images))
    return [m for m in ("T1w", "T2w") if m in common] or ["T1w"]


def split_subjects(sessions: list[Session], modalities: list[str], test_fraction: float, seed: int) -> Split:
    """Split by subject: held-out test and validation subjects are real; synthesis draws only from
    label maps of subjects not held out for testing."""
    labelled = [s for s in sessions if s.label_map]
    real = [s for s in labelled if all(m in s.images for m in modalities)]
    subjects = sorted({s.subject for s in real})
    random.Random(seed).shuffle(subjects)
    n_test = min(len(subjects), max(1, math.ceil(test_fraction * len(subjects)))) if subjects else 0
    test_subjects = set(subjects[:n_test])
    rest = subjects[n_test:]
    val_subjects = set(rest[:1]) if len(rest) >= 2 else set()
    split = Split(train=[s for s in real if s.subject in set(rest) - val_subjects],
                  val=[s for s in real if s.subject in val_subjects],
                  test=[s for s in real if s.subject in test_subjects],
                  synth_sources=[s for s in labelled if s.subject not in test_subjects])
    if not split.synth_sources and not split.train:
        raise InputError("nothing left to train on once test subjects are held out; "
                         "add label maps or lower --test-fraction", sessions[0].label_map)
    return split


def _label_table(sessions: list[Session]) -> LabelTable:
    codes = set()
    for s in sessions:
        codes |= {target_code(c) for c in np.unique(np.asarray(load_volume(s.label_map, kind="label").dataobj))}
    return LabelTable.from_codes(codes)


def _real_case(s: Session) -> str:
    return f"real_{s.key.replace('-', '').replace('_', '')}"


def _add_real_cases(writer: RawDatasetWriter, sessions: list[Session], modalities: list[str]) -> list[str]:
    ids = []
    for s in sessions:
        case = _real_case(s)
        ids.append(case)
        if not writer.has_case(case):
            labels = load_volume(s.label_map, kind="label")
            target = nib.Nifti1Image(to_target(np.asarray(labels.dataobj)), labels.affine)
            writer.add_case(case, [load_volume(s.images[m]) for m in modalities], target)
    return ids


def _synthesis_label_map(s: Session, config: SynthesisConfig, modalities: list[str]) -> nib.Nifti1Image:
    """The label map synthesis draws from; with background components, the unlabelled voxels
    of the session's real image (when it has one) become extra generation labels."""
    labels = load_volume(s.label_map, kind="label")
    image_path = s.images.get(s.label_space or "") or next((s.images[m] for m in modalities if m in s.images), None)
    if not config.background_components or image_path is None:
        return labels
    codes = split_background(np.asarray(load_volume(image_path).dataobj, dtype=np.float32),
                             np.asarray(labels.dataobj).astype(np.int32), config.background_components,
                             seed=config.seed)
    return nib.Nifti1Image(codes, labels.affine)


def _synthesize(writer: RawDatasetWriter, sources: list[Session], opts: GroupOptions,
                modalities: list[str], priors: PriorsByAge | None, bids_dir: Path) -> list[str]:
    config = opts.synthesis
    _forget_stale_synthesis(writer, config, modalities, priors)
    ids, todo = [], []
    for source_index, s in enumerate(sources):
        for k in range(config.samples_per_map):
            case = f"syn_{s.key.replace('-', '').replace('_', '')}_{k:03d}"
            ids.append(case)
            if not writer.has_case(case):
                todo.append((case, s, config.seed * 1_000_003 + source_index * 1000 + k))
    if not todo:
        return ids
    LOG.info("synthesizing %d images (%d already done) on %s", len(todo), len(ids) - len(todo), opts.device)
    progress = Progress(len(todo), "synthesis", LOG)
    synthesizers: dict[float, LabelSynthesizer] = {}
    label_maps: dict[Path, nib.Nifti1Image] = {}
    for case, s, seed in todo:
        if s.label_map not in label_maps:
            label_maps = {s.label_map: _synthesis_label_map(s, config, modalities)}   # keep one in memory
        labels = label_maps[s.label_map]
        voxel = float(np.mean(labels.header.get_zooms()[:3]))
        if voxel not in synthesizers:
            synthesizers[voxel] = LabelSynthesizer(config, channels=modalities, voxel_mm=voxel, device=opts.device)
        sample_priors = priors.for_age(session_age(bids_dir, s)) if priors else None
        images, target = synthesizers[voxel].sample(np.asarray(labels.dataobj), seed,
                                                    lr_axis=left_right_axis(labels.affine), priors=sample_priors)
        writer.add_case(case, [nib.Nifti1Image(c, labels.affine) for c in images],
                        nib.Nifti1Image(target, labels.affine))
        progress.step(case)
    return ids


def _forget_stale_synthesis(writer: RawDatasetWriter, config: SynthesisConfig, modalities: list[str],
                            priors: PriorsByAge | None) -> None:
    """Synthetic cases are reused on a re-run only if they were drawn with the same parameters."""
    stamp = writer.folder / ".synthesis.json"
    parameters = {k: v for k, v in config.as_dict().items() if k != "samples_per_map"}
    current = json.dumps({"synthesis": parameters, "modalities": modalities,
                          "priors": priors.as_json() if priors else None}, sort_keys=True)
    if stamp.exists() and stamp.read_text() != current:
        removed = writer.remove_cases("syn_")
        LOG.info("synthesis parameters changed since the last run in this work dir: %d synthetic images "
                 "will be drawn again", removed)
    write_text_atomic(stamp, current)


def _synthetic_validation(synthetic_ids: list[str], sources: list[Session]) -> list[str]:
    """Synthetic cases drawn from the last label map (none of its samples train), or, with a
    single label map, the last fifth of its samples."""
    if len(sources) >= 2:
        prefix = f"syn_{sources[-1].key.replace('-', '').replace('_', '')}_"
        return [c for c in synthetic_ids if c.startswith(prefix)]
    return synthetic_ids[-max(1, len(synthetic_ids) // 5):]


def _write_preview(writer: RawDatasetWriter, synthetic_ids: list[str], path: Path, count: int = 6) -> Path | None:
    from .synthesis.preview import write_preview
    if not synthetic_ids:
        return None
    picks = synthetic_ids[:: max(1, len(synthetic_ids) // count)][:count]
    samples = [(case, np.asarray(nib.load(writer.folder / "imagesTr" / f"{case}_0000.nii.gz").dataobj),
                np.asarray(nib.load(writer.label_path(case)).dataobj)) for case in picks]
    return write_preview(path, samples)


def _evaluate(segmenter, cases: list[tuple[str, list[nib.Nifti1Image], np.ndarray]]) -> dict[str, dict[int, float]]:
    scores = {}
    progress = Progress(len(cases), "evaluation", LOG)
    for name, images, reference in cases:
        prediction = segmenter.segment(images)
        scores[name] = dice_per_label(prediction, reference, segmenter.table.codes)
        progress.step(name)
    return scores


def _evaluation_cases(split: Split, writer: RawDatasetWriter, val_ids: list[str], modalities: list[str]):
    """Held-out real subjects when there are any, else nnU-Net's validation cases (labelled)."""
    if split.test:
        cases = []
        for s in split.test:
            reference = load_volume(s.label_map, kind="label")
            cases.append((s.key, [load_volume(s.images[m]) for m in modalities],
                          to_target(np.asarray(reference.dataobj))))
        return REAL, cases
    cases = []
    for case in val_ids:
        images = [nib.load(writer.folder / "imagesTr" / f"{case}_{c:04d}.nii.gz") for c in range(len(modalities))]
        label = nib.load(writer.label_path(case))
        cases.append((case, images, writer.table.to_codes(np.asarray(label.dataobj))))
    evaluated = REAL if all(c.startswith("real_") for c in val_ids) else SYNTHETIC
    return evaluated, cases


def _configured_priors(config: SynthesisConfig):
    from .synthesis.priors import load_priors
    return load_priors(config.priors, config.intensity_classes)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    found = {"python": platform.python_version(), "bibsnet-trainer": __version__}
    for package in ("torch", "nnunetv2", "cornucopia", "nibabel", "numpy", "pybids"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def run_group(sessions: list[Session], opts: GroupOptions, bids_dir: Path) -> dict:
    """Train a model from the sessions; returns paths of the package and the report."""
    LOG.info("validating %d sessions", len(sessions))
    for s in sessions:
        validate_session(s)
    modalities = choose_modalities(sessions, opts.modalities)
    name = model_name(modalities)
    package_dir = opts.output_dir / "models" / name
    if package_dir.exists():
        raise RefusedError("a model package with this name exists already; remove it to train again",
                           package_dir)
    split = split_subjects(sessions, modalities, opts.test_fraction, opts.seed)
    LOG.info("modalities %s; real subjects: %d train, %d validation, %d held out; %d label maps for synthesis",
             modalities, len({s.subject for s in split.train}), len({s.subject for s in split.val}),
             len({s.subject for s in split.test}), len(split.synth_sources))

    folders = training.NnunetFolders(opts.work_dir / "nnunet")
    dataset = dataset_name(opts.dataset_id, "Bibsnet" + "".join(modalities))
    table = _label_table([s for s in sessions if s.label_map])
    writer = RawDatasetWriter(folders.raw / dataset, modalities, table)
    priors = None
    if opts.synthesis.priors == "estimated":
        priors = estimate_from_sessions(split.train + split.val, bids_dir, modalities,
                                        opts.synthesis.intensity_classes, opts.synthesis.prior_distribution)
        write_text_atomic(opts.work_dir / "priors.json", json.dumps(priors.as_json(), indent=1))
    synthetic_ids = _synthesize(writer, split.synth_sources, opts, modalities, priors, bids_dir)
    train_ids = _add_real_cases(writer, split.train, modalities) + synthetic_ids
    val_ids = _add_real_cases(writer, split.val, modalities)
    if not val_ids:  # no real validation subject: validate on synthetic images of unseen label maps
        val_ids = _synthetic_validation(synthetic_ids, split.synth_sources)
        train_ids = [c for c in train_ids if c not in val_ids] or train_ids
    writer.write_dataset_json({"name": name, "release": release_tag()})
    preview = _write_preview(writer, synthetic_ids, opts.output_dir / "reports" / "synthesis_preview.png")
    if opts.synthesize_only:
        LOG.info("synthetic samples: %s; preview: %s", writer.folder / "imagesTr", preview)
        return {"samples": writer.folder / "imagesTr", "preview": preview}

    preprocessed = folders.preprocessed / dataset
    model_folder = training.trained_model_folder(folders, dataset, opts.preset)
    marker = preprocessed / ".bibsnet_complete"
    network = {k: v for k, v in opts.preset.as_dict().items() if "epoch" not in k}
    fingerprint = json.dumps({"cases": writer.case_ids(), "labels": table.codes, "network": network})
    if not marker.exists() or marker.read_text() != fingerprint:
        if marker.exists():  # the work dir holds another run's data: start training afresh
            LOG.info("inputs or preset changed since the last run in this work dir; preprocessing again")
            shutil.rmtree(model_folder, ignore_errors=True)
        training.plan_and_preprocess(folders, opts.dataset_id, opts.preset, nprocs=opts.nprocs,
                                     omp_nthreads=opts.omp_nthreads)
        marker.write_text(fingerprint)
    write_splits(preprocessed, train_ids, val_ids)

    fold_dir = model_folder / f"fold_{opts.fold}"
    if not (fold_dir / "checkpoint_final.pth").exists():
        resume = (fold_dir / "checkpoint_latest.pth").exists()
        if resume:
            LOG.info("resuming training from %s", fold_dir / "checkpoint_latest.pth")
        training.train(folders, dataset, opts.preset, opts.fold, device=opts.device, nprocs=opts.nprocs,
                       omp_nthreads=opts.omp_nthreads, resume=resume, num_gpus=opts.num_gpus,
                       seed=opts.seed)

    from .nnunet.predict import Segmenter
    segmenter = Segmenter(model_folder, device=opts.device, folds=(opts.fold,))
    evaluated_on, cases = _evaluation_cases(split, writer, val_ids, modalities)
    scores = _evaluate(segmenter, cases)
    summary_context = {"model": name, "release": release_tag(), "modalities": modalities,
                       "training": {"real_train_subjects": sorted({s.subject for s in split.train}),
                                    "real_validation_subjects": sorted({s.subject for s in split.val}),
                                    "held_out_subjects": sorted({s.subject for s in split.test}),
                                    "label_map_subjects": sorted({s.subject for s in split.synth_sources}),
                                    "synthetic_images": len(synthetic_ids), "preset": opts.preset.as_dict()}}
    report = write_dice_report(opts.output_dir / "reports", "group_desc-dice_report", scores,
                               evaluated_on=evaluated_on, context=summary_context,
                               figures=[("Synthetic training samples", preview)] if preview else [])
    dice_json = json.loads(report["json"].read_text())
    manifest = {
        "name": name, "release": release_tag(), "architecture": "nnU-Net v2",
        "modalities": modalities, "image_orientation": "RAS", "labels": table.as_json(),
        "age_range": None, "training_data": summary_context["training"],
        "synthesis": opts.synthesis.as_dict(), "seed": opts.seed, "versions": _versions(),
        "dice_summary": {"evaluated_on": evaluated_on, "synthetic": dice_json["synthetic"],
                         "mean_dice": dice_json["mean_dice"], "grade": dice_json["grade"]},
        "source_dataset": str(Path(bids_dir).resolve()),
    }
    used_priors = priors.as_json() if priors else {"pooled": _configured_priors(opts.synthesis).as_json()}
    write_package(model_folder, package_dir, manifest,
                  extra_files={"priors.json": json.dumps(used_priors, indent=1) + "\n"})
    zipped = zip_package(package_dir, package_dir.with_name(f"{name}_{release_tag()}.zip"))
    (opts.work_dir / "group_options.json").write_text(json.dumps(asdict(opts), indent=2, default=str))
    LOG.info("model package: %s (zip: %s)", package_dir, zipped)
    LOG.info("Dice report (%s): %s", evaluated_on, report["html"])
    return {"package": package_dir, "zip": zipped, "report": report["html"], "mean_dice": dice_json["mean_dice"]}
