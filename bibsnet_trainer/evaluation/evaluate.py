"""Evaluate a model on cases with reference label maps: Dice, HD95 and volume difference per label,
and an overlay per case (written as it goes, so no volumes are kept in memory)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from ..images import to_canonical
from ..labels import infill_unknown_labels, to_target
from .metrics import dice_per_label, hd95_per_label, volume_difference_per_label
from ..progress import Progress

LOG = logging.getLogger(__name__)


@dataclass
class Case:
    name: str
    images: list[nib.Nifti1Image]      # model inputs, one per modality, on one grid
    reference: np.ndarray              # target FreeSurfer codes on that grid


@dataclass
class Evaluation:
    scores: dict[str, dict[int, float]] = field(default_factory=dict)
    hd95: dict[str, dict[int, float]] = field(default_factory=dict)
    volumes: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)
    overlays: dict[str, Path] = field(default_factory=dict)
    infilled: dict[int, int] = field(default_factory=dict)   # reference code the model lacks -> voxels


def scoring_reference(reference_codes: np.ndarray, model_codes, spacing=None) -> tuple[np.ndarray, dict[int, int]]:
    """A reference label map (FreeSurfer codes) as a model is scored against it: SynthSeg's target
    merges and drops (`labels.to_target`), then the codes the model does not have infilled from
    their neighbours (`labels.infill_unknown_labels`), so that labels a model was never trained on
    (e.g. FreeSurfer's corpus callosum in a SynthSeg-label model) neither score 0 nor count as
    the model's false positives."""
    return infill_unknown_labels(to_target(reference_codes), model_codes, spacing)


def _ras(data: np.ndarray, image: nib.Nifti1Image) -> np.ndarray:
    return np.asarray(to_canonical(nib.Nifti1Image(data, image.affine)).dataobj)


def evaluate(segmenter, cases: list[Case], overlay_dir: Path | None = None, *, what: str = "evaluation",
             full_metrics: bool = True) -> Evaluation:
    from .dice_figures import write_overlay_png

    result = Evaluation()
    codes = segmenter.table.codes
    progress = Progress(len(cases), what, LOG)
    for case in cases:
        prediction = segmenter.segment(case.images)
        spacing = tuple(float(z) for z in case.images[0].header.get_zooms()[:3])
        reference, infilled = infill_unknown_labels(case.reference, codes, spacing)
        for code, voxels in infilled.items():
            result.infilled[code] = result.infilled.get(code, 0) + voxels
        result.scores[case.name] = dice_per_label(prediction, reference, codes)
        if full_metrics:
            result.hd95[case.name] = hd95_per_label(prediction, reference, codes, spacing)
            result.volumes[case.name] = volume_difference_per_label(prediction, reference, codes,
                                                                    float(np.prod(spacing)))
        if overlay_dir is not None:
            image = case.images[0]
            canonical = to_canonical(image)
            result.overlays[case.name] = write_overlay_png(
                Path(overlay_dir) / f"{case.name}.png", np.asarray(canonical.dataobj, dtype=np.float32),
                _ras(reference, image), _ras(prediction, image), case.name,
                spacing=tuple(float(z) for z in canonical.header.get_zooms()[:3]), affine=canonical.affine)
        progress.step(case.name)
    return result
