"""Intensity priors estimated from the real images of a BIDS dataset, pooled and per age bin
(ages as Nibabies reads them), stored with the model package as `priors.json`."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..bids.ages import age_bin
from ..errors import InputError
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


def estimate_from_samples(samples: list[tuple[Session, dict[str, np.ndarray], np.ndarray]], modalities: list[str],
                          class_preset: str | None, distribution: str, where: Path) -> PriorsByAge:
    """Per-class priors from (session, {modality: image}, label map) samples of sessions with a
    label map and all `modalities` (held-out test subjects must not be passed in), pooled and by
    the sessions' age bins."""
    if not samples:
        raise InputError("--priors estimated needs real images with label maps outside the held-out "
                         "test subjects; none were found", where)
    pairs, bins = [], {}
    for s, images, labels in samples:
        pairs.append(({m: images[m] for m in modalities}, labels))
        bins.setdefault(age_bin(s.age_months), []).append(len(pairs) - 1)
    classes = class_table(class_preset) if class_preset else _own_classes(pairs)
    pooled = estimate_priors(pairs, classes, distribution, "estimated from the training subjects' real images")
    by_age = {name: estimate_priors([pairs[i] for i in idx], classes, distribution,
                                    f"estimated from real images aged {name}")
              for name, idx in bins.items() if name is not None}
    LOG.info("intensity priors estimated from %d real images (age bins: %s)", len(pairs),
             ", ".join(f"{k}: {len(v)}" for k, v in sorted(bins.items(), key=lambda kv: str(kv[0]))))
    return PriorsByAge(pooled, by_age)


def _own_classes(samples) -> dict[int, int]:
    codes = sorted(set().union(*(np.unique(labels).tolist() for _, labels in samples)))
    return {int(c): i for i, c in enumerate(codes)}
