"""Parent side of nnU-Net's stages: folders, environment, child processes, log streaming."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ..config import Execution, TrainingPreset
from ..errors import ProcessingError
from ..images import write_text_atomic
from .trainer_names import TRAINER_NAME, register_trainers
from .presets import training_settings
from .runner import TrainJob

LOG = logging.getLogger(__name__)


def augmentation_workers(nprocs: int) -> int:
    """Background augmentation processes: none on 2 cores (they compete with the training step)."""
    return 0 if nprocs <= 2 else nprocs - 2


@dataclass(frozen=True)
class NnunetFolders:
    root: Path

    @property
    def raw(self) -> Path:
        return self.root / "nnUNet_raw"

    @property
    def preprocessed(self) -> Path:
        return self.root / "nnUNet_preprocessed"

    @property
    def results(self) -> Path:
        return self.root / "nnUNet_results"

    def environment(self, nprocs: int, omp_nthreads: int, da_workers: int | None = None) -> dict[str, str]:
        da_workers = augmentation_workers(nprocs) if da_workers is None else da_workers
        env = dict(os.environ)
        env.update(nnUNet_raw=str(self.raw), nnUNet_preprocessed=str(self.preprocessed),
                   nnUNet_results=str(self.results), nnUNet_n_proc_DA=str(da_workers),
                   nnUNet_def_n_proc=str(nprocs), OMP_NUM_THREADS=str(omp_nthreads),
                   NIPYPE_NO_ET="1", PYTHONUNBUFFERED="1")
        env.setdefault("nnUNet_compile", "false")
        # the child imports this very package (not another installed copy), whatever its cwd
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join([package_root, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                             if p and p != package_root]])
        return register_trainers(env)


def _run_child(args: list[str], env: dict[str, str], log_file: Path, what: str) -> None:
    """Run a runner stage, stream its output to our log and a file; fail with its last lines."""
    command = [sys.executable, "-m", "bibsnet_trainer.nnunet.runner", *args]
    LOG.info("%s: %s (log: %s)", what, " ".join(command[3:]), log_file)
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=15)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a") as log, subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as child:
        for line in child.stdout:
            log.write(line)
            log.flush()  # a killed run keeps its log up to the last line
            line = line.rstrip()
            tail.append(line)
            if line.startswith("[bibsnet]") or "Epoch " in line or "EMA pseudo Dice" in line:
                LOG.info("%s", line.replace("[bibsnet] ", ""))
            else:
                LOG.debug("%s", line)
    if child.returncode != 0:
        raise ProcessingError(f"{what} failed (exit {child.returncode}); last lines:\n" + "\n".join(tail),
                              log_file)
    LOG.info("%s finished in %.0f s", what, time.monotonic() - started)


def plan_and_preprocess(folders: NnunetFolders, dataset_id: int, preset: TrainingPreset, *,
                        nprocs: int, omp_nthreads: int, plans_from: Path | None = None) -> None:
    args = ["plan", str(dataset_id), "--processes", str(nprocs), "--preset-json", json.dumps(preset.as_dict())]
    if plans_from is not None:
        args += ["--plans-from", str(plans_from)]
    # the planner sizes its torch thread pool by nnUNet_n_proc_DA, which must be positive there
    _run_child(args, folders.environment(nprocs, omp_nthreads, da_workers=nprocs), folders.root / "logs" / "plan.log",
               "nnU-Net planning and preprocessing")


def train(folders: NnunetFolders, dataset: str, preset: TrainingPreset, fold: int, execution: Execution, *,
          resume: bool, pretrained: Path | None = None, trainer: str = TRAINER_NAME, synthesis: dict | None = None,
          synthetic_fraction: float | None = None) -> Path:
    """Train one fold in a child process (seeded with the run's seed plus the fold); everything it
    is given is written first to one job file (`runner.TrainJob`), which the trainer reads its
    settings from."""
    settings = training_settings(preset)
    if synthesis is not None:
        settings["synthesis"] = synthesis
    if synthetic_fraction is not None:
        settings["synthetic_fraction"] = synthetic_fraction
    job = TrainJob(dataset, preset.configuration, fold, epochs=preset.epochs, iterations=preset.iterations_per_epoch,
                   val_iterations=preset.val_iterations_per_epoch, device=execution.device, resume=resume,
                   seed=execution.fold_seed(fold),
                   pretrained=None if pretrained is None or resume else str(pretrained),
                   trainer_name=trainer, minutes=preset.minutes, settings=settings)
    job_file = folders.root / "jobs" / f"train_fold{fold}.json"
    job_file.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(job_file, job.to_json())
    _run_child(["train", "--job", str(job_file), "--num-gpus", str(execution.num_gpus)],
               folders.environment(execution.nprocs, execution.omp_nthreads),
               folders.root / "logs" / f"train_fold{fold}.log", "nnU-Net training")
    return trained_model_folder(folders, dataset, preset, trainer)


def trained_model_folder(folders: NnunetFolders, dataset: str, preset: TrainingPreset,
                         trainer: str = TRAINER_NAME) -> Path:
    """nnU-Net's folder of a trained model: `<trainer>__<plans>__<configuration>`."""
    return folders.results / dataset / f"{trainer}__nnUNetPlans__{preset.configuration}"


def configuration_of(model_folder: Path) -> str:
    """The nnU-Net configuration a trained-model folder holds (the last part of its name)."""
    return Path(model_folder).name.split("__")[-1]


def trained_spacing(model_folder: Path, configuration: str) -> list[float]:
    """The voxel size (mm, in nnU-Net's axis order) a model was trained at, through nnU-Net's own
    reading of its plans (a configuration inherits its base's spacing)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = PlansManager(str(Path(model_folder) / "plans.json"))
    return [float(v) for v in plans.get_configuration(configuration).spacing]


RESUME_GAP_S = 300   # a longer pause between two epochs of a fold is a resumed run, not training time


def training_record(model_folder: Path, iterations_per_epoch: int) -> dict | None:
    """How long the trained folds of `model_folder` trained, from their final checkpoints (nnU-Net's
    epoch timestamps, resumed runs included): {"minutes", "epochs", "iterations"} summed over folds,
    or None when no fold has a final checkpoint with its log."""
    import torch

    minutes = epochs = 0.0
    found = False
    for checkpoint in sorted(Path(model_folder).glob("fold_*/checkpoint_final.pth")):
        logged = torch.load(checkpoint, map_location="cpu", weights_only=False).get("logging") or {}
        starts, ends = logged.get("epoch_start_timestamps") or [], logged.get("epoch_end_timestamps") or []
        if not ends:
            continue
        found = True
        # each epoch, and the pause before the next one (checkpoint, log, plot) unless a resume lies between
        seconds = sum(e - s for s, e in zip(starts, ends))
        seconds += sum(gap for gap in (s - e for e, s in zip(ends, starts[1:])) if 0 <= gap < RESUME_GAP_S)
        minutes += seconds / 60
        epochs += len(ends)
    if not found:
        return None
    return {"minutes": round(minutes, 1), "epochs": int(epochs), "iterations": int(epochs) * int(iterations_per_epoch)}
