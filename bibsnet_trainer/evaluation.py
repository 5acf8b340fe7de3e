"""Evaluate a model on cases with reference label maps: Dice, HD95 and volume difference per label,
and an overlay per case (written as it goes, so no volumes are kept in memory)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from .images import to_canonical
from .metrics import dice_per_label, hd95_per_label, volume_difference_per_label
from .progress import Progress

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


def _ras(data: np.ndarray, image: nib.Nifti1Image) -> np.ndarray:
    return np.asarray(to_canonical(nib.Nifti1Image(data, image.affine)).dataobj)


def evaluate(segmenter, cases: list[Case], overlay_dir: Path | None = None, *, what: str = "evaluation",
             full_metrics: bool = True) -> Evaluation:
    from .report import write_overlay_png

    result = Evaluation()
    codes = segmenter.table.codes
    progress = Progress(len(cases), what, LOG)
    for case in cases:
        prediction = segmenter.segment(case.images)
        result.scores[case.name] = dice_per_label(prediction, case.reference, codes)
        if full_metrics:
            spacing = tuple(float(z) for z in case.images[0].header.get_zooms()[:3])
            result.hd95[case.name] = hd95_per_label(prediction, case.reference, codes, spacing)
            result.volumes[case.name] = volume_difference_per_label(prediction, case.reference, codes,
                                                                    float(np.prod(spacing)))
        if overlay_dir is not None:
            image = case.images[0]
            canonical = to_canonical(image)
            result.overlays[case.name] = write_overlay_png(
                Path(overlay_dir) / f"{case.name}.png", np.asarray(canonical.dataobj, dtype=np.float32),
                _ras(case.reference, image), _ras(prediction, image), case.name,
                spacing=tuple(float(z) for z in canonical.header.get_zooms()[:3]))
        progress.step(case.name)
    return result
