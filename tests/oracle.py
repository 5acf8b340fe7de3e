"""A model package and a segmenter that need no training, for tests of the participant level.

`write_fake_package` writes a verified model package (manifest, dataset.json with the label table, a
placeholder checkpoint). `oracle_segmenter` returns a stand-in for `nnunet.predict.Segmenter` whose
predictor answers with the subject's reference label map: the real `Segmenter.segment` still does
the work around it (closest-RAS reordering, nnU-Net's z,y,x axis order, consecutive indices back to
FreeSurfer codes through the package's label table, back to the input's own voxel order), so the
outputs are what a perfect model would give through the production write path."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from bibsnet_trainer.labels import LabelTable, to_target
from bibsnet_trainer.models.package import model_name, write_package
from bibsnet_trainer.nnunet.model_input import ModelInput
from bibsnet_trainer.nnunet.predict import Segmenter

FOLDER = "nnUNetTrainerBibsnet__nnUNetPlans__3d_fullres"


def write_fake_package(root: Path, codes, modalities=("T1w",), age_range=None) -> Path:
    table = LabelTable.from_codes(codes)
    trained = Path(root) / "trained" / FOLDER
    (trained / "fold_0").mkdir(parents=True)
    (trained / "fold_0" / "checkpoint_final.pth").write_bytes(b"not a real checkpoint")
    (trained / "dataset.json").write_text(json.dumps({**ModelInput(modalities, table).to_dataset_json(),
                                                      "file_ending": ".nii.gz"}))
    manifest = {"name": model_name(list(modalities)), "release": "r20000101", "modalities": list(modalities),
                "labels": table.as_json(), "training_data": {}, "age_range": age_range,
                # a model that passed its own evaluation on real subjects (QC may then say ok)
                "dice_summary": {"evaluated_on": "held-out real subjects", "synthetic": False,
                                 "mean_dice": 0.9, "grade": "good"}}
    return write_package(trained, Path(root) / "package", manifest)


class _Predictor:
    """Answers predict_single_npy_array with the reference, as nnU-Net would: indices, z,y,x order."""

    def __init__(self, reference: nib.Nifti1Image, table: LabelTable):
        canonical = nib.as_closest_canonical(reference)
        codes = to_target(np.asarray(canonical.dataobj).astype(np.int32))
        self.indices = table.to_index(codes).transpose(2, 1, 0)

    def predict_single_npy_array(self, stacked, properties, *args):
        assert stacked.shape[1:] == self.indices.shape, (stacked.shape, self.indices.shape)
        assert len(properties["spacing"]) == 3
        return self.indices


class _Unset:
    """The predictor until segment() knows which reference answers."""


def oracle_segmenter(pairs: list[tuple[Path, Path]]):
    """A Segmenter class for monkeypatching: (image, reference label map) pairs; each image given to
    segment() is matched to its pair by content."""
    known = [(np.asarray(nib.load(str(image)).dataobj, dtype=np.float32), nib.load(str(labels)))
             for image, labels in pairs]

    class OracleSegmenter(Segmenter):
        def __init__(self, model_folder, *, device="cpu", **_):
            super().__init__(model_folder, device=device, predictor=_Unset())

        def segment(self, images):
            data = np.asarray(images[0].dataobj, dtype=np.float32)
            matches = [ref for img, ref in known if img.shape == data.shape and np.array_equal(img, data)]
            assert len(matches) == 1, "the oracle knows no reference for this image"
            self.predictor = _Predictor(matches[0], self.table)
            return super().segment(images)

    return OracleSegmenter
