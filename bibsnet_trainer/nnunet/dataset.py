"""Write an nnU-Net v2 raw dataset: images in canonical RAS voxel order (with neighbouring slices
as extra channels when the preset asks for them: `context`), labels as consecutive indices,
`dataset.json` with the FreeSurfer map, `image_orientation` and the slice offsets, and a
subject-level split."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from ..images import CANONICAL, save_atomic, to_canonical, write_text_atomic
from ..labels import LabelTable
from . import background, context

FILE_ENDING = ".nii.gz"
READER = "NibabelIOWithReorient"


def dataset_name(dataset_id: int, name: str) -> str:
    return f"Dataset{dataset_id:03d}_{name}"


class RawDatasetWriter:
    """Adds cases one at a time (resumable: finished cases are detected on disk). Stored label
    files hold indices of one label table and images one channel per modality, so cases written
    under another table, other modalities, other slice offsets or another background rule
    (`.label_table.json`) are removed on opening."""

    STAMP = ".label_table.json"

    def __init__(self, folder: Path, modalities: list[str], table: LabelTable,
                 context_mm: tuple[float, ...] = (0.0,), zero_air: bool = False):
        self.folder = Path(folder)
        self.modalities = list(modalities)
        self.table = table
        self.context_mm = tuple(context_mm)
        self.zero_air = bool(zero_air)
        (self.folder / "imagesTr").mkdir(parents=True, exist_ok=True)
        (self.folder / "labelsTr").mkdir(parents=True, exist_ok=True)
        stamp = self.folder / self.STAMP
        stamp_fields = {"modalities": self.modalities, "codes": list(table.codes)}
        if self.context_mm != (0.0,):
            stamp_fields["context_mm"] = list(self.context_mm)
        if self.zero_air:
            stamp_fields[background.DATASET_KEY] = True
        current = json.dumps(stamp_fields)
        if not stamp.exists() or stamp.read_text() != current:
            self.removed_for_new_table = self.remove_cases("")
            write_text_atomic(stamp, current)
        else:
            self.removed_for_new_table = 0

    def label_path(self, case_id: str) -> Path:
        return self.folder / "labelsTr" / f"{case_id}{FILE_ENDING}"

    def has_case(self, case_id: str) -> bool:
        # the label is written last, so its presence means the case is complete
        return self.label_path(case_id).exists()

    def add_case(self, case_id: str, images: list[nib.Nifti1Image], label_codes: nib.Nifti1Image) -> None:
        if len(images) != len(self.modalities):
            raise ValueError(f"{case_id}: {len(images)} images for {len(self.modalities)} modalities")
        canonical = [to_canonical(image) for image in images]
        for channel, data in enumerate(context.input_channels(canonical, self.context_mm, self.zero_air)):
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
        names = self.table.names()
        names_of_channels = context.channel_names(self.modalities, self.context_mm)
        description = {
            "channel_names": {str(i): m for i, m in enumerate(names_of_channels)},
            "labels": {name: i for i, name in enumerate(names)},
            "numTraining": len(self.case_ids()),
            "file_ending": FILE_ENDING,
            "overwrite_image_reader_writer": READER,
            "image_orientation": "".join(CANONICAL),
            "freesurfer_labels": self.table.as_json(),
            **({context.DATASET_KEY: list(self.context_mm)} if self.context_mm != (0.0,) else {}),
            **({background.DATASET_KEY: True} if self.zero_air else {}),
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
