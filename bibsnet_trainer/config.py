"""One typed configuration per run, built by the CLI and checked before any work.

`TrainingPreset` (how nnU-Net trains) and `SynthesisConfig` (the generative model) are the
settings of two stages. `Execution` holds what both levels share (work dir, device, processes, threads, GPUs, seed), set
once. `GroupConfig` and `ParticipantConfig` add what each level does. The configuration is written
to the work dir once it is complete, before any long work (`record`), so a re-run says what it changed; the model
manifest and every report carry it (`as_json`)."""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .images import write_text_atomic

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingPreset:
    """How nnU-Net trains: a configuration of its plans, the schedule, and for the small
    configurations the network and optimiser (the values: `nnunet.presets.PRESETS`)."""
    configuration: str
    epochs: int
    iterations_per_epoch: int
    val_iterations_per_epoch: int
    patch_size: tuple[int, ...] | None = None       # set for the small configurations only
    features_per_stage: tuple[int, ...] | None = None
    batch_size: int | None = None
    base_configuration: str = "3d_fullres"          # nnU-Net configuration whose preprocessed data it uses
    target_spacing_mm: float | None = None          # isotropic spacing nnU-Net plans and preprocesses at
    minutes: float | None = None                    # training time budget: the epochs are fitted to it
    optimizer: str = "sgd"                          # sgd (nnU-Net's) or adamw; small configurations only
    initial_lr: float | None = None                 # None: nnU-Net's 0.01
    oversample_foreground: float | None = None      # share of samples centred on a label (nnU-Net: 0.33)
    cpu_precision: str | None = None                # "bf16": mixed precision when training on a CPU that has it
    context_slices: int = 0                         # 2D: neighbouring slices each side given as extra channels
    train_on_all: bool = False                      # one fold: every real subject not held out trains (none validates)
    zero_air: bool = False                          # the air around the head set to 0 before nnU-Net (training and prediction)
    contrast_augmentation: float = 0.0              # share of training samples given random tissue contrasts (nnunet.contrast)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def dimensions(self) -> int:
        return 2 if self.base_configuration == "2d" else 3


@dataclass
class SynthesisConfig:
    """Parameters of the generative model (SynthSeg's bounds by default); recorded with every model.
    No synthetic image by default: at the `cpu` preset's budget, real images alone scored higher
    in-site and on every other site's scan than real + synthetic (benchmarks/README.md, "Current
    figures"). With synthesis on, the defaults draw images that reach the network as real ones
    do: one intensity per tissue (left and right alike), the real image's background as air (the
    air rule's, at 0), skull and scalp."""

    samples_per_map: int = 0                 # synthetic images per label map (0: real images only)
    skull_strip_probability: float = 0.25   # chance that extra-cerebral labels are erased
    rotation: float = 15.0                   # degrees (SynthSeg rotation_bounds)
    zooms: float = 0.2                       # SynthSeg scaling_bounds
    shears: float = 0.012                    # SynthSeg shearing_bounds
    elastic: float = 0.05                    # fraction of the field of view
    bias_strength: float = 0.5
    gamma: float = 0.6
    gmm_fwhm: float = 3.0                    # texture smoothing, voxels
    motion_fwhm: float = 2.0
    max_iso_mm: float = 4.0                  # coarsest isotropic resolution (SynthSeg max_res_iso)
    max_slice_mm: float = 8.0                # thickest slice (SynthSeg max_res_aniso)
    thick_slice_probability: float = 0.5     # thick slices along one axis vs isotropic low resolution
    snr: float = 10.0
    field_order: int = 1                     # spline order of deformation and bias fields (1: linear, as SynthSeg)
    texture_bins: int = 3                    # 0: cornucopia's own per-class Gaussian mixture
    flip_probability: float = 0.5            # left-right flip, with left and right labels swapped
    intensity_classes: str | None = "synthseg-tissue"   # synthseg | synthseg-tissue | infant | None (one each)
    priors: str = "uniform"                  # uniform | synthseg-t1 | estimated | path to a priors JSON
    prior_distribution: str = "normal"       # of estimated priors: normal (SynthSeg) | uniform (DCAN)
    background_components: int = 3           # Gaussian components fitted to a real image's unlabelled voxels (air, skull, scalp)
    zero_air: bool = True                    # the air (background connected to the border) set to 0, as in real scans

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Execution:
    """Where and how a run computes (both levels)."""
    work_dir: Path
    device: str = "cpu"
    nprocs: int = 2          # processes: nnU-Net's workers, writer threads, sessions in parallel
    omp_nthreads: int = 2    # threads of one process (torch, numpy)
    num_gpus: int = 1        # training on more than one GPU: nnU-Net's DDP
    seed: int = 0            # one seed for the split, synthesis and training

    def split_seed(self) -> int:
        """The seed of the subject split (held-out subjects, folds)."""
        return self.seed

    def synthesis_seed(self, source_index: int, sample: int) -> int:
        """The seed of one synthetic image: the run's seed, the label map's place, the sample."""
        return self.seed * 1_000_003 + source_index * 1000 + sample

    def fold_seed(self, fold: int) -> int:
        """The seed of one fold's training."""
        return self.seed + fold


@dataclass(frozen=True)
class GroupConfig:
    """The group level: synthesis, training, evaluation, packaging."""
    output_dir: Path
    execution: Execution
    preset: TrainingPreset
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    modalities: list[str] | None = None
    test_fraction: float = 0.2
    test_subjects: list[str] | None = None   # held out for the Dice report (default: drawn by test_fraction)
    dataset_id: int = 501
    folds: int = 1                  # k-fold cross-validation over real subjects; evaluation ensembles them
    train_on_all: bool | None = None   # every real development subject trains (nnU-Net's "all" fold); None: the preset's
    compare_to: Path | None = None  # previous model package: paired Wilcoxon on the same test subjects
    init_from: Path | None = None   # model package whose weights and plans start the training (fine-tuning)
    only_fold: int | None = None    # train this fold and stop (one job of a cluster array)
    trainer: str = "standard"       # standard: stored images | onthefly: a new synthetic contrast every batch
    synthetic_fraction: float | None = None   # onthefly: share of samples given a synthetic contrast
    synthesize_only: bool = False   # stop after synthesis and its preview (for tuning parameters)

    level = "group"


@dataclass(frozen=True)
class NipypePlugin:
    """fMRIPrep's --nipype-plugin-file: `plugin:` (a nipype plugin name) and `plugin_args:`."""
    name: str
    args: Mapping[str, Any]


@dataclass(frozen=True)
class ParticipantConfig:
    """The participant level: segmentation, derivatives, QC."""
    output_dir: Path
    execution: Execution
    model: Path | None = None
    nipype_plugin: NipypePlugin | None = None   # --nipype-plugin-file: every session a node of that plugin

    level = "participant"


RunConfig = GroupConfig | ParticipantConfig


def as_json(config: RunConfig) -> dict:
    """The configuration as plain JSON types (paths as strings)."""
    return json.loads(json.dumps(asdict(config), default=str))


def config_file(config: RunConfig) -> Path:
    return config.execution.work_dir / f"{config.level}_config.json"


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def record(config: RunConfig) -> dict:
    """Write the configuration to the work dir (atomically) once it is complete, before any long
    work (the group level: at the end of its plan stage); a re-run in the same work dir logs the
    settings it changed. Returns the JSON written."""
    path = config_file(config)
    current = as_json(config)
    if path.is_file():
        try:
            before = _flatten(json.loads(path.read_text()))
        except ValueError:
            before = {}
        now = _flatten(current)
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if changed:
            LOG.info("settings changed since the last %s run in this work dir: %s", config.level, ", ".join(changed))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(current, indent=2) + "\n")
    return current
