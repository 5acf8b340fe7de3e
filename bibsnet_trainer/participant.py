"""Participant level: segment each subject/session with a model package, derive a brain mask and
write Nibabies-ready derivatives on the input's exact grid; Dice against a reference when one
exists. A failure in one session is reported and the others go on."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from .derivatives import (bids_uri, dseg_sidecar, mask_sidecar, output_paths, write_dataset_level,
                          write_json)
from .errors import BibsnetError, InputError, ModelError
from .images import label_image, load_volume, same_grid, save_atomic
from .inputs import Session, validate_session
from .labels import LabelTable, to_target
from .mask import brain_mask
from .metrics import dice_per_label
from .models import find_packages, open_package
from .progress import Progress
from .report import REAL, write_dice_report

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
    done, skipped, failed = [], [], []
    for session in sessions:
        space = manifest["modalities"][0]
        paths = output_paths(opts.output_dir, session.subject, session.session, space)
        if paths["mask_json"].exists():  # written last: the session is complete
            LOG.info("%s: outputs exist, skipping", session.key)
            skipped.append(session.key)
            continue
        try:
            validate_session(session)
            segment_session(segmenter, session, manifest, opts, bids_dir)
            done.append(session.key)
        except BibsnetError as exc:
            LOG.error("%s: %s", session.key, exc)
            failed.append(session.key)
        progress.step(session.key)
    LOG.info("participant level: %d segmented, %d skipped (done before), %d failed; outputs in %s",
             len(done), len(skipped), len(failed), opts.output_dir)
    return {"done": done, "skipped": skipped, "failed": failed, "model": package}
