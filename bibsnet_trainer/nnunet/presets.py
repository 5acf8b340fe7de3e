"""Training presets. `gpu` is nnU-Net's own defaults; `cpu` adds a small 3D configuration to the
plans (smaller patch and network) and shortens epochs so that a model trains on 2 cores in minutes."""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TrainingPreset:
    configuration: str
    epochs: int
    iterations_per_epoch: int
    val_iterations_per_epoch: int
    patch_size: tuple[int, ...] | None = None       # set for the small configuration only
    features_per_stage: tuple[int, ...] | None = None
    batch_size: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "gpu": TrainingPreset("3d_fullres", epochs=1000, iterations_per_epoch=250, val_iterations_per_epoch=50),
    # measured on 2 cores (batch 2): 32^3 with 16..128 features ~0.3 s per iteration and learns
    # far faster than 48^3 with 8..64 features (~0.45 s); 64^3 with 16..128 features takes ~3 s
    "cpu": TrainingPreset("3d_small", epochs=40, iterations_per_epoch=25, val_iterations_per_epoch=4,
                          patch_size=(32, 32, 32), features_per_stage=(16, 32, 64, 128), batch_size=2),
}


def add_small_configuration(plans: dict, preset: TrainingPreset) -> dict:
    """Return plans with `preset.configuration` inheriting 3d_fullres but with a small U-Net.

    The preprocessed data of 3d_fullres is reused (same data identifier and spacing)."""
    if preset.patch_size is None:
        return plans
    plans = copy.deepcopy(plans)
    base = plans["configurations"]["3d_fullres"]
    architecture = copy.deepcopy(base["architecture"])
    kwargs = architecture["arch_kwargs"]
    n_stages = len(preset.features_per_stage)
    kwargs.update(
        n_stages=n_stages,
        features_per_stage=list(preset.features_per_stage),
        kernel_sizes=[[3, 3, 3]] * n_stages,
        strides=[[1, 1, 1]] + [[2, 2, 2]] * (n_stages - 1),
        n_conv_per_stage=[2] * n_stages,
        n_conv_per_stage_decoder=[2] * (n_stages - 1),
    )
    plans["configurations"][preset.configuration] = {
        "inherits_from": "3d_fullres",
        "patch_size": list(preset.patch_size),
        "batch_size": preset.batch_size,
        "architecture": architecture,
    }
    return plans
