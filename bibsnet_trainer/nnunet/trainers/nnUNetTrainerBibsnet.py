"""nnU-Net trainer for lateralised brain labels, found by nnU-Net through `nnUNet_extTrainer`.

nnU-Net's default augmentation mirrors along every axis while keeping label values, which teaches
the network that Left-* and Right-* structures are interchangeable. This trainer never mirrors
along the left-right axis (training or test-time augmentation). Rotations are bounded to
+/-MAX_ROTATION_DEG: nnU-Net rotates 2D patches that are nearly square (and 3D data it treats as
2D) by up to +/-180 degrees, and a half turn of an axial slice swaps the hemispheres under their
Left-*/Right-* labels (measured: 15 % of each hemisphere's white matter given the other side's
label on held-out real scans). With neighbouring slices as input channels (2.5D), nnU-Net's
intensity augmentation draws once per modality instead of once per channel (`nnunet.augmentation`),
so a slice and its neighbours keep one contrast, as they have at test time. With the job's
`contrast_augmentation` set, that share of training samples get random tissue contrasts right
after the spatial augmentation (`nnunet.contrast`). All else is nnU-Net's.
Images reach nnU-Net in RAS voxel order read by NibabelIO(WithReorient), which reverses the axes,
so the left-right axis is array axis 2 before nnU-Net's own `transpose_forward`; a 2D
configuration works on slices along the first axis, so its patch axes are array axes 1 and 2.

Settings come from one place: the runner's training job (`runner.TrainJob`, a JSON file the
parent writes), which `runner.configure_trainer` hands over through `apply_settings` before
nnU-Net initialises anything. Without it (nnU-Net's own `nnUNetv2_train`), nnU-Net's defaults
stand, plus the left-right and rotation rules above.

Time budget: with `time_budget_s` set (the job's `minutes`), the number of epochs is fitted
after every epoch to the time measured so far, and the polynomial learning-rate schedule follows,
so a run ends within its budget with its learning rate decayed to zero as nnU-Net's schedule
intends (`num_epochs` is then an upper bound).

Optimisation: the job's `settings` (from the preset) may set `optimizer` (`sgd`, nnU-Net's SGD with Nesterov momentum
0.99, or `adamw`), `initial_lr`, `weight_decay`, `oversample_foreground_percent` and `contrast_augmentation`; anything it
does not set stays nnU-Net's. `cpu_precision: "bf16"` trains under bfloat16 autocast when the
device is a CPU whose oneDNN has bfloat16 kernels (AVX512-BF16, AMX); nnU-Net itself uses
autocast on CUDA only, and elsewhere the setting is ignored with a log line.

Progress plot: nnU-Net redraws `progress.png` after every epoch (about 2 s on a 2-core CPU, where
a cpu-preset epoch takes about 50 s); this trainer redraws it at most once every
PROGRESS_PLOT_INTERVAL_S and at the end of training, so the figure is complete when training ends.

Checkpoints are written atomically (temporary file, then rename): a run killed while nnU-Net
writes `checkpoint_latest.pth` leaves the previous checkpoint intact, so the same command resumes.

This file is loaded by nnU-Net's trainer lookup as a top-level module: absolute imports only.
"""
import contextlib
import math
import os
import time

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from bibsnet_trainer.nnunet import augmentation, contrast
from bibsnet_trainer.nnunet.model_input import ModelInput

LEFT_RIGHT_AXIS = 2  # in the reader's array order (z, y, x) of a RAS image
MAX_ROTATION_DEG = 30.0   # nnU-Net's own bound for 3D data; SynthSeg draws within +/-15
PROGRESS_PLOT_INTERVAL_S = 120.0


def bounded_rotation(rotation) -> tuple[float, float]:
    """nnU-Net's rotation range (radians) limited to +/-MAX_ROTATION_DEG: never a half turn."""
    limit = math.radians(MAX_ROTATION_DEG)
    low, high = rotation
    return max(float(low), -limit), min(float(high), limit)


def fitted_epochs(elapsed_s: float, epochs_done: int, current_epoch: int, budget_s: float, max_epochs: int) -> int:
    """Total epochs that fit the budget at the pace measured so far (at least one more than done)."""
    per_epoch = elapsed_s / max(epochs_done, 1)
    fit = current_epoch + math.floor(max(budget_s - elapsed_s, 0.0) / per_epoch)
    return int(min(max_epochs, max(current_epoch, fit, 1)))


def cpu_autocast_dtype(precision: str | None, device_type: str, bf16_supported: bool):
    """The autocast dtype for a training step on `device_type`, or None for full precision."""
    if precision == "bf16" and device_type == "cpu" and bf16_supported:
        return torch.bfloat16
    return None


def cpu_bf16_supported() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def mirror_axes_keeping_sides(mirror_axes, transpose_forward, patch_dims: int):
    """nnU-Net's mirror axes (patch axes) without the left-right axis; None when none is left."""
    left_right = list(transpose_forward).index(LEFT_RIGHT_AXIS) - (3 - patch_dims)
    return tuple(a for a in (mirror_axes or ()) if a != left_right) or None


class nnUNetTrainerBibsnet(nnUNetTrainer):
    time_budget_s: float | None = None
    contrast_augmentation: float = 0.0   # share of samples given random tissue contrasts (nnunet.contrast)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.optimizer_name = "sgd"
        self.autocast_dtype = None

    def apply_settings(self, settings: dict) -> None:
        """The run's trainer settings (`TrainJob.settings`); anything unset stays nnU-Net's."""
        self.optimizer_name = settings.get("optimizer", "sgd")
        self.contrast_augmentation = float(settings.get("contrast_augmentation") or 0.0)
        self.initial_lr = float(settings.get("initial_lr", self.initial_lr))
        self.weight_decay = float(settings.get("weight_decay", self.weight_decay))
        self.oversample_foreground_percent = float(settings.get("oversample_foreground_percent",
                                                                self.oversample_foreground_percent))
        precision = settings.get("cpu_precision")
        self.autocast_dtype = cpu_autocast_dtype(precision, self.device.type, cpu_bf16_supported())
        if precision and self.device.type == "cpu":
            self.print_to_log_file(f"cpu_precision {precision}: " + (
                "training under bfloat16 autocast" if self.autocast_dtype else
                "this CPU has no bfloat16 kernels, training in float32"))

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def train_step(self, batch: dict) -> dict:
        with self._autocast():
            return super().train_step(batch)

    def validation_step(self, batch: dict) -> dict:
        with self._autocast():
            return super().validation_step(batch)

    def configure_optimizers(self):
        if self.optimizer_name != "adamw":
            return super().configure_optimizers()
        from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
        optimizer = torch.optim.AdamW(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay)
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size

        rotation, dummy_2d, initial_patch_size, mirror_axes = \
            super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        if bounded_rotation(rotation) != tuple(rotation):
            rotation = bounded_rotation(rotation)
            patch_size = self.configuration_manager.patch_size
            initial_patch_size = get_patch_size(patch_size, rotation, rotation, rotation, (0.85, 1.25))
            if dummy_2d:
                initial_patch_size[0] = patch_size[0]
            self.print_to_log_file(f"rotation bounded to +/-{MAX_ROTATION_DEG:g} degrees (hemispheres keep their side)")
        mirror_axes = mirror_axes_keeping_sides(mirror_axes, self.plans_manager.transpose_forward,
                                                len(self.configuration_manager.patch_size))
        self.inference_allowed_mirroring_axes = mirror_axes
        return rotation, dummy_2d, initial_patch_size, mirror_axes

    def get_training_transforms(self, *args, **kwargs):
        transforms = super().get_training_transforms(*args, **kwargs)
        model_input = ModelInput.from_dataset_json(self.dataset_json)
        groups = augmentation.channel_groups(len(model_input.channel_names()), model_input.context_mm)
        transforms = augmentation.by_modality(transforms, groups)
        return contrast.with_random_contrast(transforms, groups, self.contrast_augmentation)

    def save_checkpoint(self, filename: str) -> None:
        partial = f"{filename}.partial"
        super().save_checkpoint(partial)
        if os.path.exists(partial):
            os.replace(partial, filename)

    def on_train_start(self):
        super().on_train_start()
        if self.contrast_augmentation > 0:
            self.print_to_log_file(f"contrast augmentation: {self.contrast_augmentation:g} of the training samples "
                                   "get random tissue contrasts (nnunet.contrast)")
        self._budget_start = (time.monotonic(), self.current_epoch)
        self._max_epochs = self.num_epochs
        self._draw_progress = self.logger.plot_progress_png
        self.logger.plot_progress_png = self._throttled_progress_plot
        self._last_plot = -math.inf

    def _throttled_progress_plot(self, output_folder: str) -> None:
        now = time.monotonic()
        if now - self._last_plot >= PROGRESS_PLOT_INTERVAL_S:
            self._last_plot = now
            self._draw_progress(output_folder)

    def on_train_end(self):
        if self.local_rank == 0:
            self._draw_progress(self.output_folder)
        super().on_train_end()

    def on_epoch_end(self):
        super().on_epoch_end()
        if self.time_budget_s:
            started, first = self._budget_start
            total = fitted_epochs(time.monotonic() - started, self.current_epoch - first, self.current_epoch,
                                  self.time_budget_s - self._spent_before(first), self._max_epochs)
            if total != self.num_epochs:
                self.num_epochs = total
                self.lr_scheduler.max_steps = total

    def _spent_before(self, first_epoch: int) -> float:
        """Training seconds of earlier runs of this fold (a resumed run keeps its budget)."""
        starts = (self.logger.get_value("epoch_start_timestamps", None) or [])[:first_epoch]
        ends = (self.logger.get_value("epoch_end_timestamps", None) or [])[:first_epoch]
        return float(sum(e - s for s, e in zip(starts, ends)))

    def run_training(self):
        """nnU-Net's loop, but re-reading `num_epochs` every epoch (the time budget may change it)."""
        self.on_train_start()
        while self.current_epoch < self.num_epochs:
            self.on_epoch_start()
            self.on_train_epoch_start()
            train_outputs = [self.train_step(next(self.dataloader_train)) for _ in range(self.num_iterations_per_epoch)]
            self.on_train_epoch_end(train_outputs)
            with torch.no_grad():
                self.on_validation_epoch_start()
                val_outputs = [self.validation_step(next(self.dataloader_val))
                               for _ in range(self.num_val_iterations_per_epoch)]
                self.on_validation_epoch_end(val_outputs)
            self.on_epoch_end()
        self.on_train_end()
