"""What a model is fed, as one type: the modalities, the label table, the neighbouring slices given
as channels and the air rule. Training writes it to the model's `dataset.json` and prediction reads
it back from there, here and nowhere else, so the two cannot drift apart (a prediction whose
channels differ from training's costs 0.017 cortex Dice on held-out real scans: benchmarks/README.md,
"The channels at prediction").

The array work stays in `context` (neighbouring slices) and `background` (the air rule); this
module says which of them a model uses and makes its input channels with them."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..labels import LabelTable
from . import background, context


@dataclass(frozen=True, eq=False)
class ModelInput:
    modalities: tuple[str, ...]
    table: LabelTable
    context_mm: tuple[float, ...] = (0.0,)   # slice offsets given as channels (0: the slice itself)
    zero_air: bool = False                    # the air around the head set to 0 (`background`)

    def __post_init__(self):
        object.__setattr__(self, "modalities", tuple(self.modalities))
        object.__setattr__(self, "context_mm", tuple(float(o) for o in self.context_mm))
        object.__setattr__(self, "zero_air", bool(self.zero_air))

    def __eq__(self, other) -> bool:
        return isinstance(other, ModelInput) and self.stamp() == other.stamp()

    def channels(self, canonical_images: list) -> list[np.ndarray]:
        """The input channels from images in canonical RAS voxel order, one per modality on one grid."""
        if len(canonical_images) != len(self.modalities):
            raise ValueError(f"{len(canonical_images)} images for the modalities {list(self.modalities)}")
        return context.input_channels(canonical_images, self.context_mm, self.zero_air)

    def channel_names(self) -> list[str]:
        return context.channel_names(list(self.modalities), self.context_mm)

    def stamp(self) -> dict:
        """What decides whether a written training case still fits (a raw dataset's stamp)."""
        fields = {"modalities": list(self.modalities), "codes": list(self.table.codes)}
        if self.context_mm != (0.0,):
            fields["context_mm"] = list(self.context_mm)
        if self.zero_air:
            fields[background.DATASET_KEY] = True
        return fields

    def to_dataset_json(self) -> dict:
        """The fields of nnU-Net's dataset.json this type owns."""
        return {"channel_names": {str(i): name for i, name in enumerate(self.channel_names())},
                "labels": {name: i for i, name in enumerate(self.table.names())},
                "freesurfer_labels": self.table.as_json(),
                **({context.DATASET_KEY: list(self.context_mm)} if self.context_mm != (0.0,) else {}),
                **({background.DATASET_KEY: True} if self.zero_air else {})}

    def manifest_fields(self) -> dict:
        """How a model package's manifest records it."""
        return {"modalities": list(self.modalities), context.DATASET_KEY: list(self.context_mm),
                background.DATASET_KEY: self.zero_air}

    @classmethod
    def from_dataset_json(cls, description: dict) -> ModelInput:
        """From a model's dataset.json; a key it lacks means the rule is off."""
        offsets = tuple(float(o) for o in description.get(context.DATASET_KEY, [0.0]))
        names = description["channel_names"]
        n_modalities = max(1, len(names) // len(offsets))
        return cls(tuple(names[str(i)] for i in range(n_modalities)),
                   LabelTable.from_json(description["freesurfer_labels"]), offsets,
                   bool(description.get(background.DATASET_KEY, False)))

    @classmethod
    def read(cls, model_folder: Path) -> ModelInput:
        return cls.from_dataset_json(json.loads((Path(model_folder) / "dataset.json").read_text()))
