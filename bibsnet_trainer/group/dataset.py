"""Stage dataset: the nnU-Net raw dataset (real cases, synthetic cases drawn from label maps, the
folds), written resumably; each session's files are read once."""
from __future__ import annotations

import json
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np

from ..bids.derivatives import REPORTS, SYNTHESIS_PREVIEW
from ..config import GroupConfig, SynthesisConfig
from ..errors import UsageError
from ..images import left_right_axis, load_volume, padded_box, write_text_atomic
from ..bids.inputs import Session
from ..labels import to_target
from ..bids.ages import age_bin
from ..nnunet import training
from ..nnunet.background import air_mask
from ..nnunet.dataset import RawDatasetWriter, dataset_name
from .splits import Split
from ..progress import Progress
from ..synthesis import LabelSynthesizer
from ..synthesis.background_labels import split_background
from ..synthesis.dataset_priors import PriorsByAge
from .stages import RunPlan, TrainingData


LOG = logging.getLogger(__name__)


def _case_stem(s: Session) -> str:
    """The session key as nnU-Net case ids take it (letters and digits only)."""
    return s.key.replace('-', '').replace('_', '')


def _real_case(s: Session) -> str:
    return f"real_{_case_stem(s)}"


def _synthesis_label_map(s: Session, labels: nib.Nifti1Image, images: dict[str, nib.Nifti1Image],
                         synthesis: SynthesisConfig, modalities: list[str], seed: int) -> nib.Nifti1Image:
    """The label map synthesis draws from; with background components, the unlabelled voxels
    of the session's real image (when it has one) become extra generation labels."""
    space = s.label_space if s.label_space in s.images else next((m for m in modalities if m in s.images), None)
    if not synthesis.background_components or space is None:
        return labels
    image = images[space] if space in images else load_volume(s.images[space])
    data = np.asarray(image.dataobj, dtype=np.float32)
    # the synthetic air is the real image's air as the air rule finds it (zero_air sets it to 0)
    air = air_mask(data) if synthesis.zero_air else None
    codes = split_background(data, np.asarray(labels.dataobj).astype(np.int32), synthesis.background_components,
                             seed=seed, air=air)
    return nib.Nifti1Image(codes, labels.affine)


def _write_cases(writer: RawDatasetWriter, development: list[Session], sources: list[Session], opts: GroupConfig,
                 modalities: list[str], priors: PriorsByAge | None) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The real cases of the development sessions and the synthetic cases drawn from the sources'
    label maps (session key -> case id(s)), reading each session's files once, for both when a
    session is both. Cases already written by an earlier run are kept."""
    synthesis, seed = opts.synthesis, opts.execution.seed
    _forget_stale_synthesis(writer, synthesis, seed, modalities, priors)
    real_ids = {s.key: _real_case(s) for s in development}
    synthetic_of, todo = {}, {}
    for source_index, s in enumerate(sources):
        synthetic_of[s.key] = [f"{_synthetic_prefix(s)}{k:03d}" for k in range(synthesis.samples_per_map)]
        todo[s.key] = [(case, opts.execution.synthesis_seed(source_index, k))
                       for k, case in enumerate(synthetic_of[s.key]) if not writer.has_case(case)]
    n_todo = sum(len(cases) for cases in todo.values())
    if n_todo:
        LOG.info("synthesizing %d images (%d already done) on %s", n_todo,
                 len(synthetic_case_ids(synthetic_of)) - n_todo,
                 opts.execution.device)
    progress = Progress(max(n_todo, 1), "synthesis", LOG)
    with _SyntheticWriter(writer, opts, modalities, priors, progress) as synthetic:
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
                synthetic.draw_and_write(s, _synthesis_label_map(s, labels, images, synthesis, modalities, seed),
                                         todo[s.key])
    return real_ids, synthetic_of


class _SyntheticWriter:
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

    def draw_and_write(self, s: Session, labels: nib.Nifti1Image, cases: list[tuple[str, int]]) -> None:
        """Draw the (case id, seed) `cases` from the session's label map and queue their writes."""
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


def _forget_stale_synthesis(writer: RawDatasetWriter, synthesis: SynthesisConfig, seed: int, modalities: list[str],
                            priors: PriorsByAge | None) -> None:
    """Synthetic cases are reused on a re-run only if they were drawn with the same parameters."""
    stamp = writer.folder / ".synthesis.json"
    parameters = {k: v for k, v in synthesis.as_dict().items() if k != "samples_per_map"} | {"seed": seed}
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


def synthetic_case_ids(synthetic_of: dict[str, list[str]]) -> list[str]:
    """Every synthetic case id, source by source."""
    return [case for cases in synthetic_of.values() for case in cases]


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
    synthetic_ids = synthetic_case_ids(synthetic_of)
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
    preview = _write_preview(writer, synthetic_case_ids(synthetic_of), opts.output_dir / REPORTS / SYNTHESIS_PREVIEW)
    return TrainingData(folders, dataset, writer, sources, synthetic_of, real_ids, folds, onthefly, preview)
