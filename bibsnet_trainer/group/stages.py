"""What the group level's stages hand each other: typed records, one per stage."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import GroupConfig
from ..bids.inputs import Session
from ..labels import LabelTable
from ..nnunet import training
from ..nnunet.dataset import RawDatasetWriter
from ..nnunet.model_input import ModelInput
from .splits import Split
from ..evaluation.summary import Reference
from ..synthesis.dataset_priors import PriorsByAge


@dataclass
class SessionFacts:
    """What the plan stage reads from the sessions' files, each file read once: the labels of the
    training label maps and each label's range of shares of their labelled volume (the package
    carries it for the participant QC), the estimated intensity priors, the voxel sizes."""
    table: LabelTable
    label_fraction_ranges: dict[int, list[float]]
    priors: PriorsByAge | None
    voxel_mm: list[float]


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
class EvaluationResult:
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
