"""Participant level: segment each subject/session with a model package, derive a brain mask and
write Nibabies-ready derivatives on the input's exact grid; Dice against a reference when one
exists. Then, from the files as written, region volumes, QC flags and a visual QC report per
session, and the group QC summary rebuilt from every session's QC JSON. A failure in one session is
reported and the others go on; a session segmented before but without its QC gets only the QC."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from . import __version__
from .ages import age_months
from .derivatives import (PIPELINE, QC_SUMMARY, REPORTS, bids_uri, dseg_sidecar, mask_sidecar, output_paths,
                          qc_paths, write_dataset_level, write_json, write_volumes)
from .errors import BibsnetError, InputError, ModelError
from .images import label_image, load_volume, same_grid, save_atomic
from .inputs import Session, validate_session
from .labels import LabelTable, to_target
from .mask import brain_mask
from .metrics import dice_per_label
from .models import find_packages, open_package
from .progress import Progress
from .qc import session_flags, worst
from .qc_report import write_qc_report, write_qc_summary
from .registry import parse_age_range
from .report import REAL, write_dice_report
from .volumes import region_volumes, volumes_by_code, voxel_volume_mm3

LOG = logging.getLogger(__name__)


@dataclass
class ParticipantOptions:
    output_dir: Path
    work_dir: Path
    model: Path | None = None
    device: str = "cpu"


def resolve_model(opts: ParticipantOptions, available: set[str]) -> tuple[Path, dict]:
    """--model (folder or zip), else the package the group level wrote into output_dir/models."""
    if opts.model is not None:
        return open_package(opts.model, opts.work_dir / "models")
    packages = find_packages(opts.output_dir / "models")
    if not packages:
        raise ModelError("no model package found; run the group level first or give --model",
                         opts.output_dir / "models")
    opened = [open_package(p, opts.work_dir / "models") for p in packages]
    fitting = [(p, m) for p, m in opened if set(m["modalities"]) <= available]
    if not fitting:
        raise ModelError(f"no model package fits the available modalities {sorted(available)}",
                         opts.output_dir / "models")
    return max(fitting, key=lambda pm: len(pm[1]["modalities"]))


def _reference_kind(session: Session, manifest: dict) -> str:
    """Whether the subject's reference was seen in training: its Dice then flatters the model."""
    training = manifest.get("training_data") or {}
    seen = set(training.get("real_train_subjects", [])) | set(training.get("real_validation_subjects", [])) \
        | set(training.get("label_map_subjects", []))
    if session.subject in seen:
        return "reference label map of a subject used in training (not an independent test)"
    return REAL


def segment_session(segmenter, session: Session, manifest: dict, opts: ParticipantOptions,
                    bids_dir: Path) -> dict | None:
    modalities = manifest["modalities"]
    missing = [m for m in modalities if m not in session.images]
    if missing:
        raise InputError(f"model {manifest['name']} needs {', '.join(missing)}, not found for {session.key}",
                         bids_dir / f"sub-{session.subject}")
    images = [load_volume(session.images[m]) for m in modalities]
    reference_image = images[0]
    for m, img in zip(modalities[1:], images[1:]):
        if not same_grid(reference_image, img):
            raise InputError(f"{m} is not on the {modalities[0]} grid (coregistration is not supported yet)",
                             session.images[m])
    space = modalities[0]
    paths = output_paths(opts.output_dir, session.subject, session.session, space)
    codes = segmenter.segment(images)
    mask = brain_mask(codes)
    raw = nib.load(str(session.images[space]))
    save_atomic(label_image(codes, raw), paths["dseg"])
    save_atomic(label_image(mask, raw), paths["mask"])
    ref_uri = bids_uri(bids_dir, session.images[space])
    model_info = {"Name": manifest["name"], "Release": manifest["release"]}
    write_json(paths["dseg_json"], dseg_sidecar(ref_uri, [bids_uri(bids_dir, session.images[m]) for m in modalities],
                                                model_info))
    write_json(paths["mask_json"], mask_sidecar(ref_uri, f"bids::{paths['dseg'].relative_to(opts.output_dir).as_posix()}"))
    if session.label_map is not None:
        reference = load_volume(session.label_map, kind="label")
        if same_grid(reference, raw):
            scores = {session.key: dice_per_label(codes, to_target(np.asarray(reference.dataobj)),
                                                  segmenter.table.codes)}
            write_dice_report(opts.output_dir / "reports", f"{session.key}_desc-dice_report", scores,
                              evaluated_on=_reference_kind(session, manifest),
                              context={"model": manifest["name"], "reference": str(session.label_map)})
        else:
            LOG.warning("%s: reference label map is not on the %s grid; no Dice report", session.key, space)
    return paths


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


def _model_age_range(manifest: dict):
    try:
        return parse_age_range(manifest.get("age_range"))
    except ModelError as exc:
        LOG.warning("model %s: %s; its age range is not checked", manifest.get("name"), exc)
        return None


def _session_age(session: Session, image: Path, bids_dir: Path) -> float | None:
    try:
        return age_months(bids_dir, session.subject, session.session, image)
    except InputError as exc:
        LOG.warning("%s: age unknown (%s); brain volume checked against the range for any age", session.key, exc)
        return None


def qc_session(session: Session, manifest: dict, opts: ParticipantOptions, bids_dir: Path) -> dict:
    """Region volumes, QC flags and the visual report of a segmented session, read back from the
    files written (what Nibabies will get). Returns the QC JSON content."""
    space = manifest["modalities"][0]
    paths = output_paths(opts.output_dir, session.subject, session.session, space)
    report_paths = qc_paths(opts.output_dir, session.subject, session.session)
    table = LabelTable.from_json(manifest["labels"])
    image = load_volume(session.images[space])
    dseg, labels = _load_output(paths["dseg"])
    mask_img, mask = _load_output(paths["mask"])
    rows = region_volumes(labels, voxel_volume_mm3(dseg.affine), table.codes)
    write_volumes(paths["volumes"], paths["volumes_json"], rows)
    age = _session_age(session, session.images[space], bids_dir)
    scores, reference = None, None
    if session.label_map is not None:
        ref_img = load_volume(session.label_map, kind="label")
        if same_grid(ref_img, dseg):
            scores = dice_per_label(labels, to_target(np.asarray(ref_img.dataobj)), table.codes)
            reference = str(session.label_map)
    flags = session_flags(labels, mask, dseg.affine, volumes_by_code(rows), age, scores,
                          seen_in_training=scores is not None and _reference_kind(session, manifest) != REAL,
                          model_age_range=_model_age_range(manifest))
    relative = {k: paths[k].relative_to(opts.output_dir).as_posix() for k in ("dseg", "mask", "volumes")}
    model = _read_json(paths["dseg_json"]).get("Model") or {"Name": manifest["name"], "Release": manifest["release"]}
    content = {"key": session.key, "subject": session.subject, "session": session.session,
               "age_months": age, "status": worst(f.status for f in flags),
               "flags": [f.as_dict() for f in flags],
               "image": bids_uri(bids_dir, session.images[space]), "files": relative, "reference": reference,
               "model": model, "generated_by": {"Name": PIPELINE, "Version": __version__}}
    write_qc_report(report_paths, content, image, dseg, mask_img, rows)
    level = logging.WARNING if content["status"] != "ok" else logging.INFO
    LOG.log(level, "%s: QC %s%s", session.key, content["status"],
            "".join(f"; {f.name} {f.status} ({f.value})" for f in flags if f.status != "ok"))
    return content


def _qc_or_log(session: Session, manifest: dict, opts: ParticipantOptions, bids_dir: Path) -> bool:
    """QC must not cost a session its segmentation: any failure is logged and the run goes on
    (the next run retries the QC, since its JSON is missing)."""
    try:
        qc_session(session, manifest, opts, bids_dir)
        return True
    except BibsnetError as exc:
        LOG.error("%s: QC report not written: %s", session.key, exc)
    except Exception as exc:  # a QC bug must not fail outputs that are complete
        LOG.error("%s: QC report not written (%s: %s)", session.key, type(exc).__name__, exc,
                  exc_info=LOG.isEnabledFor(logging.DEBUG))
    return False


def run_participant(sessions: list[Session], opts: ParticipantOptions, bids_dir: Path) -> dict:
    label_only = [s.key for s in sessions if not s.images]
    if label_only:
        LOG.info("no T1w/T2w image, nothing to segment: %s", ", ".join(label_only))
    sessions = [s for s in sessions if s.images]
    available = set().union(*(set(s.images) for s in sessions)) if sessions else set()
    package, manifest = resolve_model(opts, available)
    from .nnunet.predict import Segmenter

    segmenter = Segmenter(package / manifest["nnunet_folder"], device=opts.device)
    LOG.info("model %s %s (%s) loaded once for %d sessions", manifest["name"], manifest["release"],
             "+".join(manifest["modalities"]), len(sessions))
    write_dataset_level(opts.output_dir, bids_dir, LabelTable.from_json(manifest["labels"]))
    progress = Progress(len(sessions), "segmented", LOG)
    done, skipped, failed, qc_missing = [], [], [], []
    for session in sessions:
        space = manifest["modalities"][0]
        paths = output_paths(opts.output_dir, session.subject, session.session, space)
        qc_done = qc_paths(opts.output_dir, session.subject, session.session)["json"].exists()
        if paths["mask_json"].exists():  # written last: the segmentation is complete
            skipped.append(session.key)
            if qc_done:
                LOG.info("%s: outputs exist, skipping", session.key)
            else:
                LOG.info("%s: outputs exist; writing the missing QC report", session.key)
                if not _qc_or_log(session, manifest, opts, bids_dir):
                    qc_missing.append(session.key)
            continue
        try:
            validate_session(session)
            segment_session(segmenter, session, manifest, opts, bids_dir)
            done.append(session.key)
        except BibsnetError as exc:
            LOG.error("%s: %s", session.key, exc)
            failed.append(session.key)
            progress.step(session.key)
            continue
        if not _qc_or_log(session, manifest, opts, bids_dir):
            qc_missing.append(session.key)
        progress.step(session.key)
    summary = write_qc_summary(opts.output_dir / REPORTS, QC_SUMMARY)
    LOG.info("participant level: %d segmented, %d skipped (done before), %d failed%s; outputs in %s; "
             "QC summary %s", len(done), len(skipped), len(failed),
             f", {len(qc_missing)} without QC report" if qc_missing else "", opts.output_dir, summary)
    return {"done": done, "skipped": skipped, "failed": failed, "qc_missing": qc_missing,
            "qc_summary": summary, "model": package}
