"""The command line's parser and its validators: every option, its default and the checks that need no data
(BIDS-App conventions; argparse's usage errors exit 64, not 2)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .. import __version__
from ..config import SynthesisConfig
from ..errors import EXIT_USAGE, UsageError


SYNTHESIS_DEFAULTS = SynthesisConfig()   # the group level's synthesis options default to the configuration's


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2; BIDS Apps document 64 for usage errors
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _derivative(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep:
        path, name = name, Path(name).name
    return name, Path(path)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="bibsnet-trainer",
                description="Train nnU-Net v2 brain-segmentation models from label maps (group) and "
                            "segment T1w/T2w images into Nibabies-ready derivatives (participant).",
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="Exit codes: 0 ok, 1 processing failure, 64 usage, 65 bad input data or model, "
                       "73 refused overwrite, 74 read/write failure, 130 interrupted.")
    p.add_argument("bids_dir", type=Path, help="BIDS dataset root (read only)")
    p.add_argument("output_dir", type=Path, help="where derivatives, models and reports go")
    p.add_argument("analysis_level", choices=["participant", "group"],
                   help="group: train a model; participant: segment subjects")
    p.add_argument("--version", action="version", version=f"bibsnet-trainer {__version__}")
    _add_selection_options(p)
    _add_performance_options(p)
    _add_training_options(p)
    _add_synthesis_options(p)
    part = p.add_argument_group("participant level (segmentation)")
    part.add_argument("--model", type=Path, help="model package folder or zip "
                                                 "(default: the one in output_dir/models)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more messages (-vv for debugging)")
    return p


def _add_selection_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("selecting data")
    g.add_argument("--participant-label", "--participant_label", nargs="+", metavar="LABEL",
                   help="subjects to process, with or without 'sub-' (default: all)")
    g.add_argument("--session-id", nargs="+", metavar="SES", help="sessions to process (default: all)")
    g.add_argument("--bids-filter-file", type=Path, metavar="FILE",
                   help='JSON with pybids filters per modality, e.g. {"t1w": {"run": 1}}')
    g.add_argument("-d", "--derivatives", nargs="+", type=_derivative, metavar="NAME=PATH", default=[],
                   help="derivative datasets holding *_desc-aseg_dseg label maps "
                        "(bids_dir/derivatives/* are searched too)")
    g.add_argument("--skip-bids-validation", action="store_true", help="do not validate with pybids")


def _add_performance_options(p: argparse.ArgumentParser) -> None:
    perf = p.add_argument_group("performance")
    perf.add_argument("-w", "--work-dir", type=Path, help="intermediate files (default: ./work; in a container "
                                                           "output_dir/work, which outlives the container)")
    perf.add_argument("--nprocs", type=int, default=min(os.cpu_count() or 1, 8),
                      help="processes: nnU-Net preprocessing and data augmentation (group), sessions "
                           "segmented in parallel through nipype (participant) (default: CPUs, at most 8)")
    perf.add_argument("--omp-nthreads", type=int, help="threads per process (default: --nprocs)")
    perf.add_argument("--nipype-plugin-file", type=Path, metavar="FILE",
                      help="participant level: YAML with `plugin:` (nipype plugin, e.g. SLURM) and `plugin_args:`, "
                           "passed to nipype unchanged; every session is one node (fMRIPrep's convention)")
    perf.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto",
                      help="where synthesis, training and prediction run (auto: cuda when available)")
    perf.add_argument("--num-gpus", type=int, default=1, help="GPUs for nnU-Net's distributed training")


def _add_training_options(p: argparse.ArgumentParser) -> None:
    grp = p.add_argument_group("group level (training)")
    grp.add_argument("--preset", choices=["gpu", "cpu"], default="gpu",
                     help="gpu: nnU-Net's defaults (1000 epochs); cpu: a 2D network trained for 55 minutes "
                          "(--train-minutes), which learns real brains on a 2-core CPU")
    grp.add_argument("--epochs", type=int, help="override the preset's number of epochs")
    grp.add_argument("--iterations-per-epoch", type=int, help="override the preset's iterations per epoch")
    grp.add_argument("--target-spacing", type=float, metavar="MM",
                     help="isotropic voxel size (mm) nnU-Net plans, preprocesses and trains at (default: the "
                          "data's median; the cpu preset takes 2 mm for finer data); the participant level "
                          "still writes on each input's own grid")
    grp.add_argument("--train-minutes", type=float, metavar="M",
                     help="training time budget per fold: the number of epochs (at most the preset's) and the "
                          "learning-rate schedule are fitted to the pace measured during training")
    grp.add_argument("--test-subjects", nargs="+", metavar="LABEL",
                     help="real subjects held out for the Dice report (default: drawn with --test-fraction)")
    grp.add_argument("--folds", type=int, default=1, metavar="K",
                     help="k-fold cross-validation over the real subjects (stratified by age bin); all K "
                          "folds train and the held-out subjects are evaluated on their ensemble (default 1)")
    grp.add_argument("--train-on-all", action=argparse.BooleanOptionalAction, default=None,
                     help="no real validation subject: every real subject not held out trains (nnU-Net's 'all' "
                          "fold); nnU-Net's validation pseudo-Dice is then measured on training images (a "
                          "progress signal only), and the held-out subjects still score the model (default: "
                          "on with the cpu preset and one fold; --no-train-on-all keeps one subject to validate)")
    grp.add_argument("--trainer", choices=["standard", "onthefly"], default="standard",
                     help="standard: train on the stored real and synthetic images; onthefly: every batch gets "
                          "a new synthetic contrast drawn on the training device from its label patch (SynthSeg-style)")
    grp.add_argument("--synthetic-fraction", type=float, metavar="P",
                     help="onthefly trainer: share of samples given a synthetic contrast (default 1.0)")
    grp.add_argument("--contrast-augmentation", type=float, metavar="P",
                     help="share of training samples whose real image gets random tissue contrasts: a Gaussian "
                          "mixture fitted to its intensities, each mode given a new mean and spread (Meyer et al. "
                          "2021), one draw for a slice and its neighbours (default 0)")
    grp.add_argument("--only-fold", type=int, metavar="K",
                     help="train fold K only and stop (one job of a cluster array); a final run without it "
                          "evaluates the ensemble and writes the package")
    grp.add_argument("--init-from", type=Path, metavar="PACKAGE",
                     help="fine-tune: start from a model package's weights and plans (nnU-Net pretrained "
                          "weights; the output layer is trained afresh when the labels differ)")
    grp.add_argument("--compare-to", type=Path, metavar="PACKAGE",
                     help="a previous model package (folder or zip): its Dice on the same held-out subjects "
                          "is compared with this model's (paired Wilcoxon signed-rank test per label)")
    grp.add_argument("--synthetic-per-map", type=int, default=SYNTHESIS_DEFAULTS.samples_per_map,
                     help="synthetic images per label map (default %(default)s: real images only; label maps "
                          "without an image train only through synthesis)")
    grp.add_argument("--modalities", nargs="+", choices=["T1w", "T2w"], help="model inputs (default: from data)")
    grp.add_argument("--test-fraction", type=float, default=0.2,
                     help="fraction of real labelled subjects held out for the Dice report")
    grp.add_argument("--seed", type=int, default=0, help="master seed (synthesis, splits)")
    grp.add_argument("--synthesize-only", action="store_true",
                     help="write synthetic samples and a preview PNG, then stop (to tune synthesis)")


def _add_synthesis_options(p: argparse.ArgumentParser) -> None:
    syn = p.add_argument_group("group level (synthesis)")
    syn.add_argument("--intensity-classes", choices=["synthseg", "synthseg-tissue", "infant", "none"],
                     default=SYNTHESIS_DEFAULTS.intensity_classes,
                     help="which labels share one Gaussian (default %(default)s: SynthSeg's tissue classes, one "
                          "intensity per tissue with left and right alike; synthseg: its 48 classes)")
    syn.add_argument("--priors", default="uniform", metavar="uniform|synthseg-t1|estimated|FILE",
                     help="intensity priors: SynthSeg's uniform defaults, SynthSeg's T1w priors, estimated "
                          "from this dataset's real images (per age bin when ages are known), or a priors.json")
    syn.add_argument("--prior-distribution", choices=["normal", "uniform"], default="normal",
                     help="form of estimated priors: normal (SynthSeg) or min/max ranges (DCAN)")
    syn.add_argument("--background-components", type=int, default=SYNTHESIS_DEFAULTS.background_components,
                     metavar="K",
                     help="fit K Gaussians to the unlabelled voxels of real images and synthesize them as "
                          "extra labels (skull, scalp, neck textures); 0: off")
    syn.add_argument("--thick-slice-probability", type=float, default=SYNTHESIS_DEFAULTS.thick_slice_probability,
                     help="share of samples with thick anisotropic slices (the rest: isotropic low resolution)")


def check_paths(args) -> None:
    bids_dir, output_dir = args.bids_dir.resolve(), args.output_dir.resolve()
    if not bids_dir.is_dir():
        raise UsageError("BIDS dataset folder does not exist", args.bids_dir)
    for name, folder in (("output_dir", args.output_dir), ("--work-dir", args.work_dir)):
        if folder is not None and folder.exists() and not folder.is_dir():
            raise UsageError(f"{name} exists and is not a folder", folder)
    if output_dir == bids_dir or bids_dir in output_dir.parents:
        raise UsageError("output_dir must not be the BIDS dataset or inside it (the input is read only)",
                         args.output_dir)
    if args.bids_filter_file and not args.bids_filter_file.is_file():
        raise UsageError("BIDS filter file does not exist", args.bids_filter_file)


def read_filters(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        filters = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"invalid JSON ({exc})", path) from None
    if not isinstance(filters, dict):
        raise UsageError("filter file must hold a JSON object", path)
    from ..bids.inputs import MODALITIES
    valid = [m.lower() for m in MODALITIES]
    unknown = sorted(k for k in filters if k.lower() not in valid)
    if unknown:
        raise UsageError(f"unknown filter key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(valid)} "
                         '(e.g. {"t1w": {"run": 1}})', path)
    for key, value in filters.items():
        if not isinstance(value, dict):
            raise UsageError(f"filter {key!r} must be a JSON object of BIDS entities, e.g. {{\"run\": 1}}", path)
    return {k.lower(): v for k, v in filters.items()}


def _check_priors(spec: str, class_preset: str) -> None:
    if spec in ("uniform", "synthseg-t1", "estimated"):
        return
    from ..synthesis.priors import load_priors
    try:
        load_priors(spec, None if class_preset == "none" else class_preset)
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise UsageError(f"--priors: not a preset (uniform, synthseg-t1, estimated) nor a valid priors "
                         f"JSON ({exc})", Path(spec)) from None


def read_plugin(path: Path | None):
    if path is None:
        return None
    from ..participant.workflow import read_plugin_file
    if not path.is_file():
        raise UsageError("nipype plugin file does not exist", path)
    try:
        return read_plugin_file(path)
    except ValueError as exc:
        raise UsageError(f"nipype plugin file {exc}", path) from None


def check_group_args(args) -> None:
    """Every group-level argument that can be checked without the data, before any work."""
    _check_priors(args.priors, args.intensity_classes)
    if args.folds < 1:
        raise UsageError(f"--folds must be at least 1, not {args.folds}")
    if args.only_fold is not None and not 0 <= args.only_fold < args.folds:
        raise UsageError(f"--only-fold {args.only_fold}: with --folds {args.folds} the folds are numbered "
                         f"0..{args.folds - 1}")
    if args.train_on_all and args.folds > 1:
        raise UsageError(f"--train-on-all trains one model on every subject; it cannot go with --folds {args.folds}")
    if args.target_spacing is not None and not 0.2 <= args.target_spacing <= 8:
        raise UsageError(f"--target-spacing must be between 0.2 and 8 mm, not {args.target_spacing}")
    if args.train_minutes is not None and args.train_minutes <= 0:
        raise UsageError(f"--train-minutes must be positive, not {args.train_minutes}")
    for flag, value in (("--epochs", args.epochs), ("--iterations-per-epoch", args.iterations_per_epoch)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, not {value}")
    if args.synthetic_per_map < 0:
        raise UsageError(f"--synthetic-per-map must not be negative, not {args.synthetic_per_map}")
    if not 0 < args.test_fraction < 1:
        raise UsageError(f"--test-fraction must be between 0 and 1, not {args.test_fraction}")
    if args.contrast_augmentation is not None and not 0 <= args.contrast_augmentation <= 1:
        raise UsageError(f"--contrast-augmentation must be between 0 and 1, not {args.contrast_augmentation}")
    if args.synthetic_fraction is not None:
        if args.trainer != "onthefly":
            raise UsageError("--synthetic-fraction applies to --trainer onthefly only")
        if not 0 <= args.synthetic_fraction <= 1:
            raise UsageError(f"--synthetic-fraction must be between 0 and 1, not {args.synthetic_fraction}")


OTHER_LEVEL_OPTIONS = {"participant": ("group level (training)", "group level (synthesis)"),
                       "group": ("participant level (segmentation)",)}


def ignored_options(parser: argparse.ArgumentParser, args) -> list[str]:
    """Options given on the command line that belong to the other analysis level."""
    titles = OTHER_LEVEL_OPTIONS[args.analysis_level]
    return [max(action.option_strings, key=len)
            for group in parser._action_groups if group.title in titles
            for action in group._group_actions if getattr(args, action.dest) != action.default]
