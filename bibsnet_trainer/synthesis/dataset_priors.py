"""Intensity priors estimated from the real images of a BIDS dataset, pooled and per age bin
(ages as Nibabies reads them), stored with the model package as `priors.json`."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..bids.ages import age_bin
from ..errors import InputError
from ..images import load_volume
from ..bids.inputs import Session
from .priors import IntensityPriors, class_table, estimate_priors

LOG = logging.getLogger(__name__)


@dataclass
class PriorsByAge:
    pooled: IntensityPriors
    by_age: dict[str, IntensityPriors] = field(default_factory=dict)

    def for_age(self, months: float | None) -> IntensityPriors:
        return self.by_age.get(age_bin(months), self.pooled)

    def as_json(self) -> dict:
        return {"pooled": self.pooled.as_json(), "by_age": {k: v.as_json() for k, v in self.by_age.items()}}

    @classmethod
    def from_json(cls, data: dict) -> "PriorsByAge":
        return cls(IntensityPriors.from_json(data["pooled"]),
                   {k: IntensityPriors.from_json(v) for k, v in data.get("by_age", {}).items()})


def estimate_from_sessions(sessions: list[Session], bids_dir: Path, modalities: list[str],
                           class_preset: str | None, distribution: str) -> PriorsByAge:
    """Per-class priors from every session with a label map and all `modalities` (held-out test
    subjects must not be passed in)."""
    usable = [s for s in sessions if s.label_map and all(m in s.images for m in modalities)]
    if not usable:
        raise InputError("--priors estimated needs real images with label maps outside the held-out "
                         "test subjects; none were found", bids_dir)
    samples, bins = [], {}
    for s in usable:
        labels = np.asarray(load_volume(s.label_map, kind="label").dataobj).astype(np.int64)
        images = {m: np.asarray(load_volume(s.images[m]).dataobj, dtype=np.float32) for m in modalities}
        samples.append((images, labels))
        bins.setdefault(age_bin(s.age_months), []).append(len(samples) - 1)
    classes = class_table(class_preset) if class_preset else _own_classes(samples)
    pooled = estimate_priors(samples, classes, distribution, "estimated from the training subjects' real images")
    by_age = {name: estimate_priors([samples[i] for i in idx], classes, distribution,
                                    f"estimated from real images aged {name}")
              for name, idx in bins.items() if name is not None}
    LOG.info("intensity priors estimated from %d real images (age bins: %s)", len(samples),
             ", ".join(f"{k}: {len(v)}" for k, v in sorted(bins.items(), key=lambda kv: str(kv[0]))))
    return PriorsByAge(pooled, by_age)


def _own_classes(samples) -> dict[int, int]:
    codes = sorted(set().union(*(np.unique(labels).tolist() for _, labels in samples)))
    return {int(c): i for i, c in enumerate(codes)}
