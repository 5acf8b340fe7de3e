"""Training presets. `gpu` is nnU-Net's own defaults; `cpu` adds a small configuration to the
plans (a smaller network on nnU-Net's preprocessed data) and trains for 55 minutes by default (the
measurements behind it: benchmarks/README.md). The network goes into the plans; the optimiser and
precision go into the training job (`training_settings`); the neighbouring slices the 2D network
sees (`context_slices`) go into the dataset (`nnunet.context`)."""
from __future__ import annotations

import copy
import math

from ..config import TrainingPreset

PRESETS = {
    "gpu": TrainingPreset("3d_fullres", epochs=1000, iterations_per_epoch=250, val_iterations_per_epoch=50),
    # a CPU affords a few thousand iterations: a small 2D network on axial slices (96x96: the brain
    # at 2 mm) with AdamW (nnU-Net's SGD learns only white matter and cortex in that budget), two
    # neighbouring slices each side as channels (2.5D), every real subject training, the air set
    # to 0 (nnunet/background.py), bfloat16 where the CPU has the kernels, 55 minutes; each choice
    # measured on held-out real scans: docs/design.md and benchmarks/README.md
    "cpu": TrainingPreset("2d_small", epochs=1000, iterations_per_epoch=50, val_iterations_per_epoch=4,
                          patch_size=(96, 96), features_per_stage=(16, 32, 64, 128, 256, 256), batch_size=16,
                          base_configuration="2d", optimizer="adamw", initial_lr=1e-2, cpu_precision="bf16",
                          context_slices=2, train_on_all=True, zero_air=True, minutes=55.0),
}

# the spacing the cpu preset trains at when the user gives none and the data are finer
CPU_DEFAULT_SPACING_MM = 2.0


def fitted_patch(preset_patch, planned_patch, max_stages: int) -> tuple[list[int], int]:
    """The preset's patch, no larger than nnU-Net's own plan for the data (small images get a small
    patch), with as many stages as leave at least 4 voxels at the bottom, and every side a
    multiple of the total downsampling."""
    patch = [min(int(a), int(b)) for a, b in zip(preset_patch, planned_patch)]
    n_stages = max(1, min(max_stages, int(math.log2(max(min(patch) // 4, 1))) + 1))
    step = 2 ** (n_stages - 1)
    return [int(math.ceil(p / step) * step) for p in patch], n_stages


def add_small_configuration(plans: dict, preset: TrainingPreset) -> dict:
    """Return plans with `preset.configuration` inheriting its base configuration (3d_fullres or
    2d) but with a small U-Net; the preprocessed data of the base configuration are reused."""
    if preset.patch_size is None:
        return plans
    plans = copy.deepcopy(plans)
    base = plans["configurations"][preset.base_configuration]
    architecture = copy.deepcopy(base["architecture"])
    kwargs = architecture["arch_kwargs"]
    patch, n_stages = fitted_patch(preset.patch_size, base["patch_size"], len(preset.features_per_stage))
    dim = preset.dimensions
    kwargs.update(
        n_stages=n_stages,
        features_per_stage=list(preset.features_per_stage[:n_stages]),
        kernel_sizes=[[3] * dim] * n_stages,
        strides=[[1] * dim] + [[2] * dim] * (n_stages - 1),
        n_conv_per_stage=[2] * n_stages,
        n_conv_per_stage_decoder=[2] * (n_stages - 1),
    )
    plans["configurations"][preset.configuration] = {
        "inherits_from": preset.base_configuration,
        "patch_size": patch,
        "batch_size": preset.batch_size,
        "architecture": architecture,
    }
    return plans


def training_settings(preset: TrainingPreset) -> dict:
    """The trainer's settings a preset sets (the rest stays nnU-Net's); part of the training job."""
    settings = {"optimizer": preset.optimizer, "initial_lr": preset.initial_lr,
                "oversample_foreground_percent": preset.oversample_foreground, "cpu_precision": preset.cpu_precision,
                "contrast_augmentation": preset.contrast_augmentation or None}
    return {k: v for k, v in settings.items() if v is not None}



def choose_spacing(preset: TrainingPreset, voxel_sizes_mm: list[float]) -> tuple[float | None, str]:
    """(training spacing, what to log). A spacing the user set is kept; the cpu preset's small
    network trains at `CPU_DEFAULT_SPACING_MM` when the data's median voxel is finer."""
    if preset.target_spacing_mm is not None:
        return preset.target_spacing_mm, f"training at {preset.target_spacing_mm:g} mm (--target-spacing)"
    if preset.configuration != PRESETS["cpu"].configuration or not voxel_sizes_mm:
        return None, ""
    median = sorted(voxel_sizes_mm)[len(voxel_sizes_mm) // 2]
    if median < CPU_DEFAULT_SPACING_MM - 1e-3:
        return CPU_DEFAULT_SPACING_MM, (f"cpu preset: training at {CPU_DEFAULT_SPACING_MM:g} mm (the data's median voxel "
                                        f"is {median:.2g} mm; set --target-spacing to change it); segmentations are "
                                        "still written on each input's own grid")
    return None, ""
