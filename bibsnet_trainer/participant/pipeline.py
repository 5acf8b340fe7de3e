"""Participant level: segment each subject/session with a model package, derive a brain mask and
write Nibabies-ready derivatives on the input's exact grid; Dice against a reference when one
exists. Then, from the files as written, region volumes, QC flags and a visual QC report per
session, and the group QC summary rebuilt from every session's QC JSON. A failure in one session is
reported and the others go on; a session segmented before but without its QC gets only the QC."""
from __future__ import annotations

import functools
import json
import logging
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import __version__
from ..bids.derivatives import (PIPELINE, QC_SUMMARY, REPORTS, bids_uri, dseg_sidecar, mask_sidecar, output_paths,
                          qc_paths, write_dataset_level, write_json, write_volumes)
from ..config import ParticipantConfig, record
from ..errors import BibsnetError, InputError, ModelError
from ..images import label_image, same_grid, save_atomic
from ..bids.inputs import LoadedSession, Session, validate_session
from ..labels import LabelTable
from .mask import brain_mask
from ..evaluation.evaluate import scoring_reference
from ..evaluation.metrics import dice_per_label
from .coregister import (image_t2w_to_t1w, labels_t1w_to_t2w, labels_t2w_to_t1w, register_t2w_to_t1w,
                         write_transforms)
from ..models.manifest import Manifest
from ..models.package import open_package
from ..progress import Progress
from ..reports.provenance import provenance
from .qc import session_flags, worst
from ..reports.index_page import write_index
from .qc_report import write_qc_report, write_qc_summary
from ..models.registry import choose_model, model_info, models_dirs, parse_age_range, scan_models
from ..evaluation.dice_report import write_dice_report
from ..evaluation.summary import Reference
from ..volumes import region_volumes, volumes_by_code, voxel_volume_mm3

LOG = logging.getLogger(__name__)


def choose_models(sessions: list[Session], config: ParticipantConfig
                  ) -> tuple[dict[Path, tuple[Path, Manifest, list[Session]]], list[tuple[Session, str]]]:
    """The model for each session (registry: modalities, then age; --model overrides), grouped
    by package so each is verified and loaded once. Sessions no model fits are returned apart."""
    folders = models_dirs(config.output_dir)
    override = None
    if config.model is not None:
        package, manifest = open_package(config.model, config.execution.work_dir / "models")
        override = model_info(package, manifest)
    installed = scan_models(folders)
    if override is None and not installed:
        raise ModelError("no model package found; run the group level first, give --model, or set "
                         "BIBSNET_MODELS_DIR", folders[0])
    chosen: dict[Path, tuple[Path, Manifest, list[Session]]] = {}
    unfit: list[tuple[Session, str]] = []
    for session in sessions:
        age = session.age_months
        try:
            info = choose_model(installed, set(session.images), age, override=override, searched=folders)
        except ModelError as exc:
            unfit.append((session, exc.message))
            continue
        if info.path not in chosen:
            package, manifest = (info.path, Manifest(info.manifest)) if info is override else \
                open_package(info.path, config.execution.work_dir / "models")
            chosen[info.path] = (package, manifest, [])
        chosen[info.path][2].append(session)
    return chosen, unfit


def _reference_kind(session: Session, manifest: Manifest) -> Reference:
    """Whether the subject's reference was seen in training: its Dice then flatters the model."""
    training = manifest.training_data
    seen = set(training.get("real_train_subjects", [])) | set(training.get("real_validation_subjects", [])) \
        | set(training.get("label_map_subjects", []))
    if session.subject in seen:
        return Reference.SEEN_IN_TRAINING
    return Reference.REAL


def _other_space(session: Session, space: str) -> str | None:
    other = {"T1w": "T2w", "T2w": "T1w"}[space]
    return other if other in session.images else None


def _t2w_to_t1w(t1w: nib.Nifti1Image, t2w: nib.Nifti1Image, key: str, omp_nthreads: int):
    """Rigid T2w->T1w transform (identity when both already share a grid)."""
    if same_grid(t1w, t2w):
        import SimpleITK as sitk
        return sitk.Euler3DTransform()
    LOG.info("%s: T1w and T2w are on different grids; registering T2w to T1w (rigid)", key)
    return register_t2w_to_t1w(t1w, t2w, threads=omp_nthreads)


def segment_session(segmenter, session: Session, manifest: Manifest, config: ParticipantConfig,
                    bids_dir: Path, files: LoadedSession) -> dict | None:
    """Segment a session from its files as `validate_session` read them, and write its outputs."""
    modalities = manifest.modalities
    missing = [m for m in modalities if m not in session.images]
    if missing:
        raise InputError(f"model {manifest.name} needs {', '.join(missing)}, not found for {session.key}",
                         bids_dir / f"sub-{session.subject}")
    space = modalities[0]
    other = _other_space(session, space)
    loaded = files.images
    xfm = None
    if other is not None:   # outputs in both spaces, and the transforms Nibabies reads
        xfm = _t2w_to_t1w(loaded["T1w"], loaded["T2w"], session.key, config.execution.omp_nthreads)
    images = [loaded[m] for m in modalities]
    if modalities == ["T1w", "T2w"] and not same_grid(images[0], images[1]):
        images[1] = nib.Nifti1Image(image_t2w_to_t1w(loaded["T2w"], loaded["T1w"], xfm),
                                    loaded["T1w"].affine)   # T2w on the T1w grid
    elif len(modalities) > 1 and not same_grid(images[0], images[1]):
        raise InputError(f"{modalities[1]} is not on the {space} grid", session.images[modalities[1]])
    codes = segmenter.segment(images)
    mask = brain_mask(codes)
    model = manifest.as_model()
    sources = [bids_uri(bids_dir, session.images[m]) for m in modalities]
    paths = output_paths(config.output_dir, session.subject, session.session, space)
    if other is not None:
        move = labels_t1w_to_t2w if space == "T1w" else labels_t2w_to_t1w
        source, target = loaded[space], loaded[other]
        other_paths = output_paths(config.output_dir, session.subject, session.session, other)
        _write_space(other_paths, move(codes, source, target, xfm), move(mask, source, target, xfm),
                     session.images[other], target, bids_dir, config.output_dir, sources, model)
        write_transforms(xfm, config.output_dir, session.subject, session.session)
    # the primary space last: its mask sidecar marks the session complete
    _write_space(paths, codes, mask, session.images[space], loaded[space], bids_dir, config.output_dir, sources,
                 model)
    return paths


def _write_space(paths: dict, codes: np.ndarray, mask: np.ndarray, image_path: Path, image: nib.Nifti1Image,
                 bids_dir: Path, output_dir: Path, sources: list[str], model: dict) -> None:
    """Segmentation and mask on the exact grid of `image` (loaded from `image_path`), with their sidecars."""
    save_atomic(label_image(codes, image), paths["dseg"])
    save_atomic(label_image(mask, image), paths["mask"])
    ref_uri = bids_uri(bids_dir, image_path)
    write_json(paths["dseg_json"], dseg_sidecar(ref_uri, sources, model))
    write_json(paths["mask_json"], mask_sidecar(ref_uri, f"bids::{paths['dseg'].relative_to(output_dir).as_posix()}"))


def _load_output(path: Path) -> tuple[nib.Nifti1Image, np.ndarray]:
    """A label image this run wrote, and its integer data (an empty one is allowed: QC flags it)."""
    try:
        img = nib.load(str(path))
        return img, np.asarray(img.dataobj).astype(np.int32).reshape(img.shape[:3])
    except Exception as exc:  # nibabel raises several types for truncated/corrupt files
        raise InputError(f"cannot read output image ({type(exc).__name__}: {exc})", path) from None


def _read_json(path: Path) -> dict:
    """A sidecar this run or an earlier one wrote ({} if missing or unreadable)."""
    try:
        content = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def _model_age_range(manifest: Manifest):
    try:
        return parse_age_range(manifest.get("age_range"))
    except ModelError as exc:
        LOG.warning("model %s: %s; its age range is not checked", manifest.title, exc)
        return None


def _dice_against_reference(session: Session, manifest: Manifest, table: LabelTable, dseg: nib.Nifti1Image,
                            labels: np.ndarray, config: ParticipantConfig,
                            reference: nib.Nifti1Image) -> dict[int, float] | None:
    """Dice of the written segmentation against the session's reference label map, with its Dice
    report; None when the reference is not on the segmentation's grid."""
    if not same_grid(reference, dseg):
        LOG.warning("%s: reference label map is not on the grid of the segmentation; no Dice report", session.key)
        return None
    target, infilled = scoring_reference(np.asarray(reference.dataobj), table.codes, reference.header.get_zooms()[:3])
    scores = dice_per_label(labels, target, table.codes)
    write_dice_report(config.output_dir / REPORTS, f"{session.key}_desc-dice_report", {session.key: scores},
                      evaluated_on=_reference_kind(session, manifest),
                      context={"model": manifest.name, "reference": str(session.label_map),
                               "provenance": provenance(config, model=manifest.as_model(),
                                                        training=manifest.training_data)},
                      infilled=infilled)
    return scores


def qc_session(session: Session, manifest: Manifest, config: ParticipantConfig, bids_dir: Path,
               files: LoadedSession | None = None) -> dict:
    """Region volumes, QC flags, the Dice report against a reference label map when the session
    has one, and the visual report of a segmented session, read back from the files written (what
    Nibabies will get). The session's own files are read here unless given (`files`, as
    `validate_session` read them before segmenting). Returns the QC JSON content."""
    space = manifest.modalities[0]
    paths = output_paths(config.output_dir, session.subject, session.session, space)
    report_paths = qc_paths(config.output_dir, session.key)
    table = manifest.labels
    files = files or validate_session(session)
    image = files.images[space]
    dseg, labels = _load_output(paths["dseg"])
    mask_img, mask = _load_output(paths["mask"])
    rows = region_volumes(labels, voxel_volume_mm3(dseg.affine), table.codes)
    write_volumes(paths["volumes"], paths["volumes_json"], rows)
    age = session.age_months
    scores = (_dice_against_reference(session, manifest, table, dseg, labels, config, files.labels)
              if files.labels is not None else None)
    reference = str(session.label_map) if scores is not None else None
    flags = session_flags(labels, mask, np.asanyarray(image.dataobj), dseg.affine, volumes_by_code(rows), age,
                          scores,
                          seen_in_training=scores is not None and not _reference_kind(session, manifest).independent,
                          model_age_range=_model_age_range(manifest), model_codes=table.codes,
                          dice_summary=manifest.dice_summary,
                          label_fraction_ranges=manifest.label_fraction_ranges, input_warnings=files.warnings)
    relative = {k: paths[k].relative_to(config.output_dir).as_posix() for k in ("dseg", "mask", "volumes")}
    model = _read_json(paths["dseg_json"]).get("Model") or manifest.as_model()
    content = {"key": session.key, "subject": session.subject, "session": session.session,
               "age_months": age, "status": worst(f.status for f in flags),
               "flags": [f.as_dict() for f in flags],
               "image": bids_uri(bids_dir, session.images[space]), "files": relative, "reference": reference,
               "model": model, "generated_by": {"Name": PIPELINE, "Version": __version__},
               "provenance": provenance(config, model=model, training=manifest.training_data)}
    write_qc_report(report_paths, content, image, dseg, mask_img, rows)
    level = logging.WARNING if content["status"] != "ok" else logging.INFO
    LOG.log(level, "%s: QC %s%s", session.key, content["status"],
            "".join(f"; {f.name} {f.status} ({f.value})" for f in flags if f.status != "ok"))
    return content


def _qc_or_log(session: Session, manifest: Manifest, config: ParticipantConfig, bids_dir: Path,
              files: LoadedSession | None = None) -> bool:
    """QC must not cost a session its segmentation: any failure is logged and the run goes on
    (the next run retries the QC, since its JSON is missing)."""
    try:
        qc_session(session, manifest, config, bids_dir, files)
        return True
    except BibsnetError as exc:
        LOG.error("%s: QC report not written: %s", session.key, exc)
    except Exception as exc:  # a QC bug must not fail outputs that are complete
        LOG.error("%s: QC report not written (%s: %s)", session.key, type(exc).__name__, exc,
                  exc_info=LOG.isEnabledFor(logging.DEBUG))
    return False


def _complete(session: Session, manifest: Manifest, config: ParticipantConfig) -> bool:
    space = manifest.modalities[0]
    return output_paths(config.output_dir, session.subject, session.session, space)["mask_json"].exists()


def _qc_done(session: Session, config: ParticipantConfig) -> bool:
    return qc_paths(config.output_dir, session.key)["json"].exists()


@functools.lru_cache(maxsize=4)
def _segmenter(model_folder: str, device: str):
    from ..nnunet.predict import Segmenter
    return Segmenter(Path(model_folder), device=device)


def segment_step(session: Session, package: Path, config: ParticipantConfig, bids_dir: Path,
                 log_file: Path | None = None) -> dict:
    """One session, as a node of the participant workflow runs it (in this process or a worker):
    read and check its files once, segment, write, QC. The package was verified by the parent.
    Returns whether the QC report was written (a QC failure never costs the segmentation). In a
    worker process its messages go to the console and to the run's log file, `log_file`."""
    import torch

    from ..runlog import worker_logging
    worker_logging(log_file)
    torch.set_num_threads(max(1, config.execution.omp_nthreads))
    manifest = Manifest.read(package)
    files = validate_session(session)
    segment_session(_segmenter(str(package / manifest.nnunet_folder), config.execution.device), session, manifest,
                    config, bids_dir, files)
    return {"qc_report": _qc_or_log(session, manifest, config, bids_dir, files)}


def _segment_all(package: Path, manifest: Manifest, todo: list[Session], config: ParticipantConfig, bids_dir: Path,
                 progress: Progress) -> tuple[list[str], list[str], list[str]]:
    """The participant workflow over the sessions to do; each failure is one line naming its crash file."""
    from ..runlog import current_log
    from .workflow import init_participant_wf, plugin_for, run_workflow
    plugin = plugin_for(config.execution.nprocs, config.nipype_plugin)
    threads = max(1, config.execution.omp_nthreads // max(1, config.execution.nprocs)) if plugin.name != "Linear" \
        else config.execution.omp_nthreads
    step_config = replace(config, execution=replace(config.execution, omp_nthreads=threads))
    work_dir = config.execution.work_dir / "participant_workflow"
    LOG.info("segmenting %d sessions with nipype's %s plugin%s (work dir %s)", len(todo), plugin.name,
             f", {config.execution.nprocs} at a time" if plugin.name == "MultiProc" else "", work_dir)
    workflow, names = init_participant_wf(
        todo, "bibsnet_trainer.participant.pipeline:segment_step",
        {"package": package.absolute(), "config": step_config, "bids_dir": bids_dir.absolute(),
         "log_file": current_log()}, work_dir,
        threads=threads, poll_seconds=0.5 if plugin.name == "MultiProc" else 2.0)
    outcome = run_workflow(workflow, names, plugin, on_end=progress.step)
    for key, error in outcome.failed.items():
        crash = outcome.crash_files.get(key)
        LOG.error("%s: %s (%s)", key, error, f"crash file {crash}" if crash else f"crash files in {outcome.crash_dir}")
    qc_missing = [k for k in outcome.done if not (outcome.results.get(k) or {}).get("qc_report", True)]
    return outcome.done, list(outcome.failed), qc_missing


def run_participant(sessions: list[Session], config: ParticipantConfig, bids_dir: Path) -> dict:
    record(config)
    label_only = [s.key for s in sessions if not s.images]
    if label_only:
        LOG.info("no T1w/T2w image, nothing to segment: %s", ", ".join(label_only))
    sessions = [s for s in sessions if s.images]
    chosen, unfit = choose_models(sessions, config)
    failed = []
    for session, reason in unfit:
        LOG.error("%s: %s", session.key, reason)
        failed.append(session.key)
    tables = [manifest.labels for _, manifest, _ in chosen.values()]
    if tables:
        write_dataset_level(config.output_dir, bids_dir,
                            LabelTable.from_codes(set().union(*(set(t.codes) for t in tables))))
    done, skipped, qc_missing = [], [], []
    progress = Progress(sum(len(group) for *_, group in chosen.values()), "segmented", LOG)
    for package, manifest, group in chosen.values():
        LOG.info("model %s (%s) for %d sessions", manifest.title, "+".join(manifest.modalities), len(group))
        todo = []
        for session in group:
            if not _complete(session, manifest, config):
                todo.append(session)
                continue
            skipped.append(session.key)
            if _qc_done(session, config):
                LOG.info("%s: outputs exist, skipping", session.key)
            else:
                LOG.info("%s: outputs exist; writing the missing QC report", session.key)
                if not _qc_or_log(session, manifest, config, bids_dir):
                    qc_missing.append(session.key)
            progress.step(session.key)
        if not todo:
            continue
        ok, bad, no_qc = _segment_all(package, manifest, todo, config, bids_dir, progress)
        done += ok
        failed += bad
        qc_missing += no_qc
    summary = write_qc_summary(config.output_dir / REPORTS, QC_SUMMARY)
    write_index(config.output_dir)
    LOG.info("participant level: %d segmented, %d skipped (done before), %d failed%s; outputs in %s; "
             "QC summary %s", len(done), len(skipped), len(failed),
             f", {len(qc_missing)} without QC report" if qc_missing else "", config.output_dir, summary)
    return {"done": done, "skipped": skipped, "failed": failed, "qc_missing": qc_missing,
            "qc_summary": summary, "models": [str(p) for p in chosen]}
