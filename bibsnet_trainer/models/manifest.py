"""A model package's `manifest.json` as a type: what the participant level, the model registry,
QC and `bibsnet-models` read from it, each named once. It stays a read-only mapping of the JSON as
written (so a key this type does not name can still be read, and the manifest is written as it
is); `read` checks that the file is a JSON object and names the file when it is not."""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

from ..errors import ModelError
from ..labels import LabelTable

MANIFEST = "manifest.json"


class Manifest(Mapping):
    def __init__(self, data: Mapping, path: Path | None = None):
        self._data = dict(data)
        self.path = path

    @classmethod
    def read(cls, package: Path) -> Manifest:
        path = Path(package) / MANIFEST
        if not path.is_file():
            raise ModelError("not a model package (no manifest.json)", package)
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"manifest.json is not valid JSON ({exc})", path) from None
        if not isinstance(data, dict):
            raise ModelError("manifest.json must hold a JSON object", path)
        return cls(data, path)

    def __getitem__(self, key: str):
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def _required(self, key: str):
        if key not in self._data:
            raise ModelError(f"manifest.json has no '{key}'", self.path)
        return self._data[key]

    @property
    def name(self) -> str:
        return str(self._required("name"))

    @property
    def release(self) -> str:
        return str(self._data.get("release") or "")

    @property
    def title(self) -> str:
        """The model in a log line or a sidecar: name and release."""
        return f"{self.name} {self.release}".strip()

    @property
    def modalities(self) -> list[str]:
        return list(self._required("modalities"))

    @property
    def labels(self) -> LabelTable:
        return LabelTable.from_json(self._required("labels"))

    @property
    def nnunet_folder(self) -> str:
        return str(self._required("nnunet_folder"))

    @property
    def training_data(self) -> dict:
        return dict(self._data.get("training_data") or {})

    @property
    def dice_summary(self) -> dict | None:
        return self._data.get("dice_summary")

    @property
    def label_fraction_ranges(self) -> dict | None:
        """Each label's range of shares of the labelled volume in the training label maps (QC)."""
        return (self._data.get("label_volume_fractions") or {}).get("ranges")

    @property
    def files(self):
        return self._data.get("files") or {}

    def as_model(self) -> dict:
        """How sidecars and reports name the model (`Model` in the segmentation's JSON)."""
        return {"Name": self.name, "Release": self.release}
