"""Intensity priors of the Gaussian mixture: per intensity class and per channel, how the class
mean and standard deviation of a synthetic image are drawn (SynthSeg's `prior_means`/`prior_stds`).

Values are on SynthSeg's 0-255 scale. A channel's priors are two (2, K) arrays over the K intensity
classes: for `uniform`, rows are (low, high); for `normal`, rows are (mean, sd) of the draw. A class
without priors (NaN, or a code the class table does not know) falls back to SynthSeg's generation
defaults: mean ~ U(0, 250), sd ~ U(0, 35).

Estimation from real images follows SynthSeg's `estimate_priors`: each image is rescaled to 0-255
between its 0.5th and 99.5th percentiles; per class, the median and the robust sd (1.4826 * MAD)
of its voxels are taken; across images, a normal prior is the mean and sd of those, a uniform
prior their min and max (the DCAN infant variant's per-age ranges), widened by a margin.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch

SCALE = 255.0
DEFAULT_MEANS = (0.0, 250.0)
DEFAULT_STDS = (0.0, 35.0)
MIN_SPREAD = {"means": 5.0, "stds": 2.5}   # floor of a normal prior's sd / half-width of a uniform one
DISTRIBUTIONS = ("uniform", "normal")


@dataclass
class ChannelPriors:
    distribution: str            # "uniform" | "normal"
    means: np.ndarray            # (2, K)
    stds: np.ndarray             # (2, K)

    def __post_init__(self):
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"prior distribution must be one of {DISTRIBUTIONS}, not {self.distribution!r}")
        self.means = np.asarray(self.means, dtype=float).reshape(2, -1)
        self.stds = np.asarray(self.stds, dtype=float).reshape(2, -1)
        if self.means.shape != self.stds.shape:
            raise ValueError("prior means and stds must cover the same classes")

    def as_json(self) -> dict:
        clean = lambda a: [[None if np.isnan(v) else round(float(v), 4) for v in row] for row in a]  # noqa: E731
        return {"distribution": self.distribution, "means": clean(self.means), "stds": clean(self.stds)}

    @classmethod
    def from_json(cls, data: dict) -> "ChannelPriors":
        arr = lambda rows: np.array([[np.nan if v is None else v for v in row] for row in rows], float)  # noqa: E731
        return cls(data["distribution"], arr(data["means"]), arr(data["stds"]))


@dataclass
class IntensityPriors:
    """Class table (FreeSurfer code -> class column) and per-channel priors over those classes."""

    classes: dict[int, int]
    channels: dict[str, ChannelPriors] = field(default_factory=dict)   # missing channel: defaults
    source: str = "SynthSeg generation defaults (uniform)"

    @property
    def n_classes(self) -> int:
        return max(self.classes.values(), default=-1) + 1

    def columns(self, codes: np.ndarray) -> np.ndarray:
        """Class column per code; unknown codes get fresh columns (their own Gaussian, defaults)."""
        fresh = self.n_classes
        out = []
        for code in np.asarray(codes).tolist():
            if int(code) in self.classes:
                out.append(self.classes[int(code)])
            else:
                out.append(fresh)
                fresh += 1
        return np.asarray(out, dtype=np.int64)

    def draw(self, channel: str | None, codes: np.ndarray, *, device="cpu",
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and sd (0-1 scale) for every generation label (`codes` in generation order);
        labels of one class share one draw."""
        columns = self.columns(codes)
        used, inverse = np.unique(columns, return_inverse=True)
        means = _draw(self.channels.get(channel), "means", used, generator)
        stds = _draw(self.channels.get(channel), "stds", used, generator)
        to = dict(dtype=torch.get_default_dtype(), device=device)
        index = torch.as_tensor(inverse.reshape(-1), device=device)
        return torch.as_tensor(means, **to)[index] / SCALE, torch.as_tensor(stds, **to)[index] / SCALE

    def as_json(self) -> dict:
        return {"source": self.source, "scale": "0-255 (0.5-99.5 percentile range of each image)",
                "classes": {str(k): v for k, v in sorted(self.classes.items())},
                "channels": {name: p.as_json() for name, p in self.channels.items()}}

    @classmethod
    def from_json(cls, data: dict) -> "IntensityPriors":
        return cls({int(k): int(v) for k, v in data["classes"].items()},
                   {name: ChannelPriors.from_json(p) for name, p in data.get("channels", {}).items()},
                   data.get("source", ""))


def _draw(priors: ChannelPriors | None, which: str, columns: np.ndarray,
          generator: torch.Generator | None) -> np.ndarray:
    n = len(columns)
    uniform = torch.rand(n, generator=generator, dtype=torch.float64).numpy()
    normal = torch.randn(n, generator=generator, dtype=torch.float64).numpy()
    low, high = DEFAULT_MEANS if which == "means" else DEFAULT_STDS
    values = low + uniform * (high - low)
    if priors is not None:
        table = getattr(priors, which)
        known = columns < table.shape[1]
        params = np.full((2, n), np.nan)
        params[:, known] = table[:, columns[known]]
        ok = ~np.isnan(params).any(axis=0)
        if priors.distribution == "uniform":
            values[ok] = params[0, ok] + uniform[ok] * (params[1, ok] - params[0, ok])
        else:
            values[ok] = params[0, ok] + normal[ok] * params[1, ok]
    return np.clip(values, 0.0, None)


# ---------------------------------------------------------------------------------------------
# Presets

def class_table(preset: str | None) -> dict[int, int]:
    """FreeSurfer code -> intensity class from a package-data preset (None: every code its own)."""
    if preset is None:
        return {}
    try:
        text = resources.files("bibsnet_trainer.data").joinpath(f"{preset}_generation_classes.json").read_text()
    except FileNotFoundError:
        raise ValueError(f"unknown intensity-class preset '{preset}' "
                         "(synthseg, synthseg-tissue, infant)") from None
    return {int(code): int(cls) for code, cls in json.loads(text)["classes"].items()}


def default_priors(class_preset: str | None) -> IntensityPriors:
    """SynthSeg's generation defaults (uniform) over the classes of a preset."""
    return IntensityPriors(class_table(class_preset))


def synthseg_t1_priors() -> IntensityPriors:
    """SynthSeg's normal priors for T1-weighted contrast (prior_means_t1/prior_stds_t1 over its
    contrast-specific tissue classes); other channels keep the defaults."""
    data = json.loads(resources.files("bibsnet_trainer.data").joinpath("synthseg_t1_priors.json").read_text())
    return IntensityPriors.from_json(data)


def load_priors(spec: str | Path, class_preset: str | None) -> IntensityPriors:
    """'uniform' (defaults), 'synthseg-t1', or a priors JSON file written by this tool."""
    if spec in (None, "uniform", "default"):
        return default_priors(class_preset)
    if spec == "synthseg-t1":
        return synthseg_t1_priors()
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"priors '{spec}': neither a preset (uniform, synthseg-t1) nor a JSON file")
    data = json.loads(path.read_text())
    return IntensityPriors.from_json(data.get("pooled", data))


# ---------------------------------------------------------------------------------------------
# Estimation from real images

def rescale_robust(image: np.ndarray, low_pct=0.5, high_pct=99.5) -> np.ndarray:
    low, high = np.percentile(image, [low_pct, high_pct])
    return np.clip((image - low) / max(high - low, 1e-6), 0, 1) * SCALE


def class_statistics(image: np.ndarray, labels: np.ndarray, classes: dict[int, int],
                     min_voxels: int = 10) -> dict[int, tuple[float, float]]:
    """Per class present in `labels`: (median, robust sd) of the rescaled image."""
    scaled = rescale_robust(np.asarray(image, dtype=np.float64))
    column = np.full(int(labels.max()) + 1 if labels.size else 1, -1, dtype=np.int64)
    for code, cls in classes.items():
        if 0 <= code < len(column):
            column[code] = cls
    per_voxel = column[np.clip(labels, 0, len(column) - 1)]
    stats = {}
    for cls in np.unique(per_voxel[per_voxel >= 0]):
        values = scaled[per_voxel == cls]
        if values.size < min_voxels:
            continue
        median = float(np.median(values))
        stats[int(cls)] = (median, float(1.4826 * np.median(np.abs(values - median))))
    return stats


def estimate_priors(samples: list[tuple[dict[str, np.ndarray], np.ndarray]], classes: dict[int, int],
                    distribution: str = "normal", source: str = "estimated from real images",
                    margin: float = 10.0) -> IntensityPriors:
    """samples: ({channel: image}, label map) pairs on one grid each. Classes never observed keep
    the defaults (NaN columns)."""
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"prior distribution must be one of {DISTRIBUTIONS}")
    n_classes = max(classes.values(), default=-1) + 1
    per_channel: dict[str, list[dict[int, tuple[float, float]]]] = {}
    for images, labels in samples:
        for channel, image in images.items():
            per_channel.setdefault(channel, []).append(class_statistics(image, labels, classes))
    channels = {}
    for channel, stats in per_channel.items():
        means = np.full((2, n_classes), np.nan)
        stds = np.full((2, n_classes), np.nan)
        for cls in range(n_classes):
            seen = np.array([s[cls] for s in stats if cls in s])
            if not len(seen):
                continue
            for table, values, key in ((means, seen[:, 0], "means"), (stds, seen[:, 1], "stds")):
                if distribution == "normal":
                    table[:, cls] = values.mean(), max(values.std(), MIN_SPREAD[key])
                else:
                    pad = max(margin if key == "means" else margin / 2, MIN_SPREAD[key])
                    table[:, cls] = max(values.min() - pad, 0.0), values.max() + pad
        channels[channel] = ChannelPriors(distribution, means, stds)
    return IntensityPriors(dict(classes), channels, f"{source} ({len(samples)} images, {distribution})")
