"""Command line: `run.py bids_dir output_dir {participant,group}` (BIDS-App conventions): logging,
the configuration from the checked arguments, the level run, exit codes (the constants of
`errors.py`; users read them in the parser's epilog and docs/usage.md)."""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

from ..config import Execution, GroupConfig, ParticipantConfig, SynthesisConfig
from ..errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_IO, EXIT_OK, BibsnetError, UsageError
from ..runlog import console_handler, held_messages
from .levels import Selection, group_level, participant_level
from .environment import default_work_dir, gpu_preset_on_cpu_warning, resolve_device
from .parser import build_parser, check_group_args, check_paths, ignored_options, read_filters, read_plugin


LOG = logging.getLogger("bibsnet_trainer")


def _setup_logging(verbosity: int) -> None:
    level = max(logging.WARNING - 10 * (verbosity + 1), logging.DEBUG)
    root = logging.getLogger()
    root.setLevel(level)
    if not root.handlers:        # as logging.basicConfig: a host that set up logging keeps its own
        root.addHandler(console_handler())
    for noisy in ("matplotlib", "PIL", "numexpr", "nipype", "bids"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def group_config(args, output_dir: Path, execution: Execution) -> GroupConfig:
    """The group level's configuration from the parsed (and checked) arguments."""
    from ..nnunet.presets import PRESETS

    preset = PRESETS[args.preset]
    overrides = {"epochs": args.epochs, "iterations_per_epoch": args.iterations_per_epoch,
                 "target_spacing_mm": args.target_spacing, "minutes": args.train_minutes,
                 "contrast_augmentation": args.contrast_augmentation}
    preset = replace(preset, **{k: v for k, v in overrides.items() if v})
    synthesis = SynthesisConfig(
        samples_per_map=args.synthetic_per_map,
        intensity_classes=None if args.intensity_classes == "none" else args.intensity_classes,
        priors=args.priors, prior_distribution=args.prior_distribution,
        background_components=args.background_components, thick_slice_probability=args.thick_slice_probability)
    return GroupConfig(output_dir=output_dir, execution=execution, preset=preset, synthesis=synthesis,
                       modalities=args.modalities, test_fraction=args.test_fraction, folds=args.folds,
                       train_on_all=args.train_on_all,
                       test_subjects=[t.removeprefix("sub-") for t in args.test_subjects or []] or None,
                       compare_to=args.compare_to, init_from=args.init_from, only_fold=args.only_fold,
                       trainer=args.trainer, synthetic_fraction=args.synthetic_fraction,
                       synthesize_only=args.synthesize_only)


def run(args) -> int:
    check_paths(args)
    bids_dir = args.bids_dir.resolve()
    output_dir = args.output_dir.resolve()
    work_dir = (args.work_dir or default_work_dir(output_dir)).resolve()
    if work_dir == bids_dir or bids_dir in work_dir.parents:
        raise UsageError("work directory must not be inside the BIDS dataset", work_dir)
    with held_messages():
        return _run_level(args, bids_dir, output_dir, work_dir)


def _run_level(args, bids_dir: Path, output_dir: Path, work_dir: Path) -> int:
    selection = Selection(derivatives=dict(args.derivatives), participant_labels=args.participant_label,
                          session_ids=args.session_id, filters=read_filters(args.bids_filter_file),
                          validate=not args.skip_bids_validation)
    plugin = read_plugin(args.nipype_plugin_file)
    if args.analysis_level == "group":
        check_group_args(args)
    device = resolve_device(args.device)
    execution = Execution(work_dir=work_dir, device=device, nprocs=args.nprocs,
                          omp_nthreads=args.omp_nthreads or args.nprocs, num_gpus=args.num_gpus, seed=args.seed)
    if args.analysis_level == "participant":
        config = ParticipantConfig(output_dir=output_dir, execution=execution, model=args.model, nipype_plugin=plugin)
        result = participant_level(bids_dir, config, selection)
        print(f"derivatives: {output_dir} ({len(result['done'])} segmented, {len(result['skipped'])} skipped, "
              f"{len(result['failed'])} failed)")
        return EXIT_FAILURE if result["failed"] else EXIT_OK
    config = group_config(args, output_dir, execution)
    if device == "cpu" and args.preset == "gpu" and not args.synthesize_only:
        LOG.warning(gpu_preset_on_cpu_warning(args.device == "auto", config.preset.epochs,
                                              config.preset.iterations_per_epoch, config.preset.minutes))
    result = group_level(bids_dir, config, selection)
    if args.synthesize_only:
        print(f"synthetic samples: {result.samples}\npreview: {result.preview}")
    elif args.only_fold is not None:
        print(f"fold {result.fold} trained: {result.model_folder}")
    else:
        print(f"model package: {result.package}\nmodel zip: {result.zip}\nDice report: {result.report}")
    return EXIT_OK


def _one_line(message) -> str:
    """A message on one line (some libraries' span several, e.g. pybids' with an example)."""
    return " ".join(line.strip() for line in str(message).splitlines() if line.strip())


def main(argv=None) -> int:
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    ignored = ignored_options(parser, args)
    if ignored:
        other = "group" if args.analysis_level == "participant" else "participant"
        LOG.warning("ignored at the %s level (options of the %s level): %s", args.analysis_level, other,
                    " ".join(ignored))
    try:
        return run(args)
    except BibsnetError as exc:   # one line, even where a library's message spans several
        print(f"bibsnet-trainer: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bibsnet-trainer: interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:   # a full disk, a read-only or vanished folder: one line, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"bibsnet-trainer: error: {where}{_one_line(exc.strerror or exc)}; outputs written so far are kept, "
              "run the same command again to resume", file=sys.stderr)
        return EXIT_IO


if __name__ == "__main__":
    sys.exit(main())
