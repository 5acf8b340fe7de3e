"""nnU-Net trainer for lateralised brain labels, found by nnU-Net through `nnUNet_extTrainer`.

nnU-Net's default augmentation mirrors along every axis while keeping label values, which teaches
the network that Left-* and Right-* structures are interchangeable. This trainer never mirrors
along the left-right axis (training or test-time augmentation); all else is nnU-Net's.
Images reach nnU-Net in RAS voxel order read by NibabelIO(WithReorient), which reverses the axes,
so the left-right axis is array axis 2 before nnU-Net's own `transpose_forward`.

Checkpoints are written atomically (temporary file, then rename): a run killed while nnU-Net
writes `checkpoint_latest.pth` leaves the previous checkpoint intact, so the same command resumes.

This file is loaded by nnU-Net's trainer lookup as a top-level module: absolute imports only.
"""
import os

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

LEFT_RIGHT_AXIS = 2  # in the reader's array order (z, y, x) of a RAS image


class nnUNetTrainerBibsnet(nnUNetTrainer):
    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, mirror_axes = \
            super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        left_right = list(self.plans_manager.transpose_forward).index(LEFT_RIGHT_AXIS)
        mirror_axes = tuple(a for a in (mirror_axes or ()) if a != left_right) or None
        self.inference_allowed_mirroring_axes = mirror_axes
        return rotation, dummy_2d, initial_patch_size, mirror_axes

    def save_checkpoint(self, filename: str) -> None:
        partial = f"{filename}.partial"
        super().save_checkpoint(partial)
        if os.path.exists(partial):
            os.replace(partial, filename)
