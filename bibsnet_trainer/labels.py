"""Label tables: FreeSurfer aseg names, the FreeSurfer⇄consecutive-index map nnU-Net needs, and
which codes are brain (segmentation targets) versus extra-cerebral (synthesis only)."""
from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

# SynthSeg's whole-head maps carry extra-cerebral codes (skull, scalp, eyes, ...) from 500 up;
# vessels (30/62) and lesions (25/57) are generation labels too. They get their own intensities
# in synthetic images but are background (or merged) in the segmentation target.
EXTRA_CEREBRAL_MIN = 500
DEFAULT_MERGES = {25: 2, 57: 41, 136: 4, 137: 5, 163: 43, 164: 44}   # SynthSeg's output merges
DEFAULT_DROPS = (30, 62, 72, 85)                                     # vessels, 5th ventricle, chiasm


@functools.cache
def _freesurfer_table() -> tuple[dict, ...]:
    """The aseg codes shipped in package data with FreeSurfer's names and FreeSurferColorLUT colours."""
    text = resources.files("bibsnet_trainer.data").joinpath("freesurfer_labels.tsv").read_text()
    return tuple(csv.DictReader(text.splitlines(), delimiter="\t"))


@functools.cache
def freesurfer_names() -> dict[int, str]:
    """FreeSurfer aseg code -> structure name."""
    return {int(r["index"]): r["name"] for r in _freesurfer_table()}


@functools.cache
def freesurfer_colors() -> dict[int, str]:
    """FreeSurfer aseg code -> FreeSurferColorLUT colour (#rrggbb)."""
    return {int(r["index"]): r["color"] for r in _freesurfer_table()}


def label_color(code: int) -> str:
    """FreeSurferColorLUT's colour of a code as #rrggbb; codes outside the shipped table get a
    stable colour of their own (golden-angle hue), so no two unknown codes look alike."""
    colors = freesurfer_colors()
    if int(code) in colors:
        return colors[int(code)]
    import colorsys
    red, green, blue = colorsys.hsv_to_rgb((int(code) * 0.618034) % 1.0, 0.65, 0.95)
    return "#%02x%02x%02x" % (round(red * 255), round(green * 255), round(blue * 255))


def label_name(code: int, names: dict[int, str] | None = None) -> str:
    names = freesurfer_names() if names is None else names
    return names.get(int(code), f"Label-{int(code)}")


def target_code(code: int) -> int:
    """The segmentation-target code a generation code becomes (0 = background)."""
    code = int(code)
    if code >= EXTRA_CEREBRAL_MIN or code in DEFAULT_DROPS:
        return 0
    return DEFAULT_MERGES.get(code, code)


def to_target(codes: np.ndarray) -> np.ndarray:
    """A label map of generation codes -> its segmentation target (`target_code` per voxel)."""
    unique = np.unique(codes)
    lut = np.zeros(int(unique.max(initial=0)) + 1, dtype=np.int32)
    for code in unique:
        lut[code] = target_code(code)
    return lut[codes]


@dataclass(frozen=True)
class LabelTable:
    """Consecutive nnU-Net indices (0..K-1) for a sorted set of FreeSurfer codes (0 first)."""

    codes: tuple[int, ...]

    @classmethod
    def from_codes(cls, codes) -> "LabelTable":
        unique = sorted({int(c) for c in codes} | {0})
        return cls(tuple(unique))

    def __len__(self) -> int:
        return len(self.codes)

    def names(self) -> list[str]:
        table = freesurfer_names()
        return ["background" if c == 0 else label_name(c, table) for c in self.codes]

    def colors(self) -> list[str]:
        return [label_color(c) for c in self.codes]

    def to_index(self, fs_labels: np.ndarray) -> np.ndarray:
        """FreeSurfer codes -> consecutive indices; codes outside the table become 0."""
        lut = np.zeros(max(int(fs_labels.max(initial=0)), max(self.codes)) + 1, dtype=np.uint8)
        for index, code in enumerate(self.codes):
            lut[code] = index
        return lut[fs_labels.astype(np.int64)]

    def to_codes(self, indices: np.ndarray) -> np.ndarray:
        """Consecutive indices -> FreeSurfer codes."""
        return np.asarray(self.codes, dtype=np.int32)[indices.astype(np.int64)]

    def as_json(self) -> list[dict]:
        return [{"index": i, "freesurfer": c, "name": n}
                for i, (c, n) in enumerate(zip(self.codes, self.names()))]

    @classmethod
    def from_json(cls, rows: list[dict]) -> "LabelTable":
        ordered = sorted(rows, key=lambda r: r["index"])
        return cls(tuple(int(r["freesurfer"]) for r in ordered))


# SynthSeg's choroid-plexus splits have no names in the table: they pair up by code
EXTRA_PAIRS = ((136, 163), (137, 164))


@functools.cache
def left_right_pairs() -> dict[int, int]:
    """code -> its mirror code (Left-X <-> Right-X, both directions)."""
    by_name = {name: code for code, name in freesurfer_names().items()}
    pairs: dict[int, int] = {}
    for name, code in by_name.items():
        if name.startswith("Left-") and "Right-" + name[5:] in by_name:
            pairs[code] = by_name["Right-" + name[5:]]
    for left, right in EXTRA_PAIRS:
        pairs[left] = right
    pairs.update({right: left for left, right in list(pairs.items())})
    return pairs


def infill_unknown_labels(reference: np.ndarray, known_codes, spacing=None) -> tuple[np.ndarray, dict[int, int]]:
    """A reference label map restricted to the codes a model knows: each voxel of any other code
    takes the code of the nearest voxel with a known code (background included). A FreeSurfer
    aseg's corpus callosum (251-255) becomes the white matter around it, choroid plexus the
    ventricle it lies in, WM hypointensities white matter. Returns the map and {code: voxels}
    of what was infilled (empty when nothing was)."""
    from scipy import ndimage

    known = np.isin(reference, np.asarray(list(known_codes)))
    if known.all():
        return reference, {}
    codes, counts = np.unique(reference[~known], return_counts=True)
    infilled = {int(c): int(n) for c, n in zip(codes, counts)}
    if not known.any():
        return np.zeros_like(reference), infilled
    nearest = ndimage.distance_transform_edt(~known, sampling=spacing, return_distances=False, return_indices=True)
    return reference[tuple(nearest)], infilled


def mirror_lut(max_code: int) -> np.ndarray:
    """Lookup table code -> its left/right mirror code, for codes 0..max_code and every paired code."""
    pairs = left_right_pairs()
    lut = np.arange(max(max_code, max(pairs)) + 1, dtype=np.int32)
    lut[list(pairs)] = list(pairs.values())
    return lut


def hemisphere_codes() -> tuple[frozenset[int], frozenset[int]]:
    """FreeSurfer codes named Left-* and Right-* (plus SynthSeg's unnamed choroid-plexus splits)."""
    names = freesurfer_names()
    left = {c for c, n in names.items() if n.startswith("Left-")} | {136, 137}
    right = {c for c, n in names.items() if n.startswith("Right-")} | {163, 164}
    return frozenset(left), frozenset(right)
