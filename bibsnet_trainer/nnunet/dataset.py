"""Write an nnU-Net v2 raw dataset: images in canonical RAS voxel order as the model's input
channels (`model_input`: neighbouring slices, the air rule), labels as consecutive indices,
`dataset.json` with the model input, `image_orientation`, and a subject-level split."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from ..images import CANONICAL, save_atomic, to_canonical, write_text_atomic
from ..labels import LabelTable
from .model_input import ModelInput

FILE_ENDING = ".nii.gz"
READER = "NibabelIOWithReorient"


def dataset_name(dataset_id: int, name: str) -> str:
    return f"Dataset{dataset_id:03d}_{name}"


class RawDatasetWriter:
    """Adds cases one at a time (resumable: finished cases are detected on disk). Stored label
    files hold indices of one label table and images the model's input channels, so cases
    written for another model input (other labels, modalities, slice offsets or air rule: the
    stamp `.model_input.json`) are removed on opening."""

    STAMP = ".model_input.json"

    def __init__(self, folder: Path, model_input: ModelInput):
        self.folder = Path(folder)
        self.model_input = model_input
        (self.folder / "imagesTr").mkdir(parents=True, exist_ok=True)
        (self.folder / "labelsTr").mkdir(parents=True, exist_ok=True)
        stamp = self.folder / self.STAMP
        current = json.dumps(model_input.stamp())
        if not stamp.exists() or stamp.read_text() != current:
            self.removed_for_new_input = self.remove_cases("")
            write_text_atomic(stamp, current)
        else:
            self.removed_for_new_input = 0

    @property
    def modalities(self) -> list[str]:
        return list(self.model_input.modalities)

    @property
    def table(self) -> LabelTable:
        return self.model_input.table

    def label_path(self, case_id: str) -> Path:
        return self.folder / "labelsTr" / f"{case_id}{FILE_ENDING}"

    def has_case(self, case_id: str) -> bool:
        # the label is written last, so its presence means the case is complete
        return self.label_path(case_id).exists()

    def add_case(self, case_id: str, images: list[nib.Nifti1Image], label_codes: nib.Nifti1Image) -> None:
        if len(images) != len(self.modalities):
            raise ValueError(f"{case_id}: {len(images)} images for {len(self.modalities)} modalities")
        canonical = [to_canonical(image) for image in images]
        for channel, data in enumerate(self.model_input.channels(canonical)):
            save_atomic(nib.Nifti1Image(data, canonical[channel % len(canonical)].affine),
                        self.folder / "imagesTr" / f"{case_id}_{channel:04d}{FILE_ENDING}")
        canon = to_canonical(label_codes)
        index = self.table.to_index(np.asarray(canon.dataobj))
        out = nib.Nifti1Image(index.astype(np.uint8), canon.affine)
        out.set_data_dtype(np.uint8)
        save_atomic(out, self.label_path(case_id))

    def remove_cases(self, prefix: str) -> int:
        """Delete every case whose id starts with `prefix` (label first: a half-removed case is
        seen as missing and written again)."""
        removed = 0
        for label in (self.folder / "labelsTr").glob(f"{prefix}*{FILE_ENDING}"):
            case = label.name[: -len(FILE_ENDING)]
            label.unlink()
            for image in (self.folder / "imagesTr").glob(f"{case}_[0-9][0-9][0-9][0-9]{FILE_ENDING}"):
                image.unlink()
            removed += 1
        return removed

    def case_ids(self) -> list[str]:
        return sorted(p.name[: -len(FILE_ENDING)] for p in (self.folder / "labelsTr").glob(f"*{FILE_ENDING}"))

    def write_dataset_json(self, extra: dict | None = None) -> dict:
        description = {
            **self.model_input.to_dataset_json(),
            "numTraining": len(self.case_ids()),
            "file_ending": FILE_ENDING,
            "overwrite_image_reader_writer": READER,
            "image_orientation": "".join(CANONICAL),
            **(extra or {}),
        }
        write_text_atomic(self.folder / "dataset.json", json.dumps(description, indent=2))
        return description


def write_splits(preprocessed_folder: Path, folds: list[tuple[list[str], list[str]]],
                 validation_trains: bool = False) -> Path:
    """nnU-Net's splits_final.json, one (train, val) entry per fold; synthetic cases only in train.
    `validation_trains`: every validation case also trains (nnU-Net's "all" fold)."""
    for train, val in folds:
        overlap = set(train) & set(val)
        if validation_trains:
            if not set(val) <= set(train):
                raise ValueError(f"validation cases that do not train: {sorted(set(val) - set(train))}")
        elif overlap:
            raise ValueError(f"cases on both sides of the split: {sorted(overlap)}")
    return write_text_atomic(Path(preprocessed_folder) / "splits_final.json",
                             json.dumps([{"train": sorted(t), "val": sorted(v)} for t, v in folds], indent=2))
