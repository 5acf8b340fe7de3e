"""In-process prediction with a trained nnU-Net model folder, loaded once for many images.

Images are brought to canonical RAS voxel order (as training data were), predicted, mapped from
consecutive indices back to FreeSurfer codes, and returned in the input's own voxel order, so
the result lies on the exact grid of the input image. A model trained with neighbouring slices as
channels (`context`) gets them made from each image the same way."""
from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import ModelError
from ..images import from_canonical, to_canonical
from ..labels import LabelTable
from .model_input import ModelInput
from .trainer_names import register_trainers

LOG = logging.getLogger(__name__)


def default_mirroring(device_type: str, patch_dims: int) -> bool:
    """Test-time mirroring (along the axes the trainer allows: never left-right) by default on a
    GPU, and on a CPU for 2D networks, where it costs little (measured: +0.005 mean Dice on
    held-out real scans, 2.0 -> 3.2 s per 2 mm subject; benchmarks/README.md)."""
    return device_type == "cuda" or patch_dims == 2


class Segmenter:
    """Wraps nnUNetPredictor for one trained-model folder (`<trainer>__<plans>__<configuration>`)."""

    def __init__(self, model_folder: str | os.PathLike, *, device: str = "cpu", folds=None,
                 mirroring: bool | None = None, predictor=None):
        """predictor: anything with nnUNetPredictor's `predict_single_npy_array` (tests inject a
        stand-in); by default nnU-Net's, loaded from the folder."""
        model_folder = Path(model_folder)
        self.model_input = ModelInput.read(model_folder)
        if predictor is not None:
            self.predictor = predictor
            return
        self.predictor = _load_predictor(model_folder, device, folds, mirroring)

    @property
    def table(self) -> LabelTable:
        return self.model_input.table

    def segment(self, images: list[nib.Nifti1Image]) -> np.ndarray:
        """FreeSurfer-coded segmentation on the grid of images[0] (all images share that grid)."""
        canonical = [to_canonical(img) for img in images]
        indices = self.predictor.predict_single_npy_array(*self.network_input(canonical), None, None, False)
        codes = self.table.to_codes(np.asarray(indices).transpose(2, 1, 0))
        return from_canonical(codes, images[0])

    def network_input(self, canonical: list[nib.Nifti1Image]) -> tuple[np.ndarray, dict]:
        """(channels in nnU-Net's axis order (superior, anterior, right), their properties) for images
        in canonical RAS order: the channels training wrote (`ModelInput.channels`: the air set to
        0, the neighbouring slices shifted), which nnU-Net then preprocesses as it did in training.
        Channels shifted after nnU-Net's preprocessing would differ from training's at the head's
        edge, where the crop and normalisation masks differ (held-out cortex Dice 0.906 -> 0.889),
        and are not faster (benchmarks/README.md, "The channels at prediction")."""
        channels = self.model_input.channels(canonical)
        spacing = [float(z) for z in canonical[0].header.get_zooms()[:3]][::-1]
        return np.stack([c.transpose(2, 1, 0) for c in channels]), {"spacing": spacing}


def _load_predictor(model_folder: Path, device: str, folds, mirroring: bool | None):
    """nnU-Net's predictor for a trained-model folder, with test-time mirroring by default where
    it pays (`default_mirroring`)."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    register_trainers()
    torch_device = torch.device(device)
    chatter = io.StringIO()  # nnU-Net prints its device notes and trainer lookup: to the log, not the console
    try:
        with contextlib.redirect_stdout(chatter):
            predictor = nnUNetPredictor(
                tile_step_size=0.5, use_gaussian=True,
                use_mirroring=bool(mirroring),
                perform_everything_on_device=torch_device.type == "cuda", device=torch_device,
                verbose=False, verbose_preprocessing=False, allow_tqdm=False)
            predictor.initialize_from_trained_model_folder(str(model_folder), use_folds=folds,
                                                           checkpoint_name="checkpoint_final.pth")
    except Exception as exc:
        raise ModelError(f"cannot load the nnU-Net model ({type(exc).__name__}: {exc})", model_folder) from None
    finally:   # nnU-Net's own words, under its name: the run's log file has them, the console not
        if chatter.getvalue().strip():
            logging.getLogger("nnunetv2").info("%s", chatter.getvalue().strip())
    if mirroring is None:
        patch_dims = len(predictor.configuration_manager.patch_size)
        predictor.use_mirroring = default_mirroring(torch_device.type, patch_dims)
    return predictor
