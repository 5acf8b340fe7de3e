"""Automatic quality-control flags for one segmented subject/session (pure functions).

Each flag is a name, a value, what was expected and a status: ok, warn or fail. The flags are meant
to catch failed segmentations at a glance (half a brain missing, skull labelled as brain, left and
right swapped, stray islands), not to judge anatomy: the ranges are wide on purpose.

Total brain volume by age (cm³; brain tissue, i.e. every label but CSF, ventricles and choroid
plexus), anchors of a piecewise-linear curve:
  birth    340  Holland et al. 2014, JAMA Neurology 71:1266, "Structural growth trajectories and rates
                of change in the first 3 months of infant brain development": whole-brain volume at
                birth 335 509 mm³ (girls) and 347 388 mm³ (boys).
  3 mo     560  same study: +64 % over the first 90 days (340 × 1.64).
  12 mo    900  Knickmeyer et al. 2008, J Neurosci 28:12176, "A structural MRI study of human brain
                development from birth to 2 years": total brain volume +101 % in the first year from
                the 2-4-week scan (about 450 cm³ by Holland's ~1 %/day early growth), so about 900.
  24 mo   1035  same study: +15 % in the second year.
  72 mo   1140  Giedd et al. 1999 (Nat Neurosci 2:861), as cited by Peper et al. 2009: total cerebral
                volume at 6 years about 95 % of the adult volume.
  18 y+   1200  adult anchor: Holland 2014 puts the newborn brain at about one third of a healthy
                elderly brain (3 × 340 ≈ 1050 cm³); young adults are larger (the FreeSurfer aseg of the
                MNE sample adult here: 1281 cm³), so 1200 with the wide band below covers both.
These anchors are rounded means of single cohorts, so the bands are wide: ok within 0.7-1.4 × the
anchor curve (between-subject SD of total brain volume is about 10 % in both studies, so roughly
±3 SD plus age error), warn within 0.5-2.0 ×, fail outside. Without an age, the envelope over all
ages is used (ok 238-1680 cm³).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from ..labels import hemisphere_codes, label_name
from ..evaluation.metrics import PASS, dice_per_label

OK, WARN, FAIL, NA = "ok", "warn", "fail", "n/a"
SEVERITY = {NA: -1, OK: 0, WARN: 1, FAIL: 2}     # n/a: could not be computed (the detail says why)

# (age in months, total brain volume in cm³): see the module docstring for the sources
BRAIN_VOLUME_ANCHORS = ((0.0, 340.0), (3.0, 560.0), (12.0, 900.0), (24.0, 1035.0), (72.0, 1140.0),
                        (216.0, 1200.0))
OK_BAND, WARN_BAND = (0.7, 1.4), (0.5, 2.0)
# CSF, lateral/inferior-lateral/3rd/4th/5th ventricles, choroid plexus (SynthSeg's splits too)
NON_TISSUE = frozenset({24, 4, 5, 14, 15, 43, 44, 72, 31, 63, 136, 137, 163, 164})
HEMISPHERE_RATIO_OK, HEMISPHERE_RATIO_WARN = (0.9, 1.1), (0.8, 1.25)
LARGEST_FRACTION_OK, LARGEST_FRACTION_WARN = 0.99, 0.95
KEPT_FRACTION_OK, KEPT_FRACTION_WARN = 0.99, 0.95
# structures every aseg has at any age: a segmentation without one of them has failed
MAJOR_STRUCTURES = frozenset({2, 3, 4, 7, 8, 10, 11, 12, 13, 16, 17, 18, 41, 42, 43, 46, 47, 49, 50, 51, 52, 53, 54})

DEFINITIONS = {
    "brain_volume_cm3": "brain tissue volume (all labels but CSF, ventricles and choroid plexus) against "
                        "the expected range for the age at scan (Holland 2014, Knickmeyer 2008, Giedd 1999 "
                        "anchors; ok 0.7-1.4x, warn 0.5-2x the anchor curve)",
    "hemisphere_ratio": "volume of all Left-* labels / volume of all Right-* labels (ok 0.9-1.1, warn 0.8-1.25)",
    "left_right_side_mm": "world x (RAS, mm) of the Right-* labels' centroid minus that of the Left-* labels; "
                          "must be > 0, else left and right are swapped",
    "mask_components": "26-connected components of the brain mask (ok: 1)",
    "mask_largest_fraction": "fraction of brain-mask voxels in its largest component (ok >= 0.99, warn >= 0.95)",
    "labels_in_mask_fraction": "fraction of labelled voxels inside the brain mask; the rest are islands the "
                               "mask dropped (ok >= 0.99, warn >= 0.95)",
    "mask_symmetry": "Dice of the brain mask with its own mirror image across the mid-sagittal plane through "
                     "the head's centre, found from the image intensities (a check that needs no label: a mask "
                     "missing part of one side is lopsided; the reference masks of 6 real adults scored "
                     "0.82-0.90, and 0.67-0.75 with a quarter of their width removed; ok >= 0.78, warn >= 0.65)",
    "major_labels_present": "structures every aseg has (cerebral white matter and cortex, lateral ventricles, "
                            "cerebellum, thalamus, caudate, putamen, pallidum, hippocampus, amygdala, brain "
                            "stem) that the model knows and that are non-empty (fail if any is missing)",
    "label_volumes": "each label's share of the labelled volume against the shares seen in the model's "
                     "training label maps (manifest label_volume_fractions): a label is out when its share "
                     "is under half the smallest or over twice the largest seen (warn if any label is out, "
                     "fail if a quarter of them or more are)",
    "model_evaluation": f"the model's own evaluation (manifest dice_summary): ok when it passed (mean Dice >= "
                        f"{PASS:.2f}) on held-out real subjects; warn when it failed, was scored on synthetic "
                        "images only, or was not evaluated",
    "dice_mean": f"mean Dice over labels against the reference label map (pass mark {PASS:.2f})",
    "age_in_model_range": "age at scan (months) within the ages the model was trained on (manifest age_range); "
                          "outside it the model extrapolates (warn)",
    "input_geometry": "what is suspicious but usable in the input files' headers (an oblique grid beyond 45 "
                      "degrees, voxels anisotropic beyond 4:1, sform and qform that disagree, T1w and T2w on "
                      "different grids): the number of such findings, each named in the detail (ok: none)",
}
ORDER = tuple(DEFINITIONS)


@dataclass(frozen=True)
class Flag:
    name: str
    value: float | int | None
    expected: str
    status: str
    detail: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def worst(statuses) -> str:
    statuses = list(statuses)
    return max(statuses, key=SEVERITY.__getitem__) if statuses else OK


def _banded(value: float, ok: tuple[float, float], warn: tuple[float, float]) -> str:
    if ok[0] <= value <= ok[1]:
        return OK
    return WARN if warn[0] <= value <= warn[1] else FAIL


def _at_least(value: float, ok: float, warn: float) -> str:
    return OK if value >= ok else WARN if value >= warn else FAIL


# ----------------------------------------------------------------------------- brain volume

def expected_brain_volume(age_months: float | None) -> dict:
    """Anchor volume (cm³) and the ok/warn ranges for an age in months; None: any age."""
    anchors = np.array(BRAIN_VOLUME_ANCHORS)
    if age_months is None or not math.isfinite(age_months):
        low, high = anchors[:, 1].min(), anchors[:, 1].max()
        return {"nominal_cm3": None, "ok": (OK_BAND[0] * low, OK_BAND[1] * high),
                "warn": (WARN_BAND[0] * low, WARN_BAND[1] * high)}
    nominal = float(np.interp(age_months, anchors[:, 0], anchors[:, 1]))
    return {"nominal_cm3": nominal, "ok": (OK_BAND[0] * nominal, OK_BAND[1] * nominal),
            "warn": (WARN_BAND[0] * nominal, WARN_BAND[1] * nominal)}


def brain_volume_cm3(volumes_mm3: dict[int, float]) -> float:
    return sum(v for code, v in volumes_mm3.items() if code != 0 and code not in NON_TISSUE) / 1000.0


def brain_volume_flag(volumes_mm3: dict[int, float], age_months: float | None) -> Flag:
    value = brain_volume_cm3(volumes_mm3)
    expected = expected_brain_volume(age_months)
    ok, warn = expected["ok"], expected["warn"]
    where = "any age (age unknown)" if expected["nominal_cm3"] is None else \
        f"age {age_months:.1f} months (anchor {expected['nominal_cm3']:.0f})"
    return Flag("brain_volume_cm3", round(value, 1), f"{ok[0]:.0f}-{ok[1]:.0f} cm³ for {where}",
                _banded(value, ok, warn), f"warn range {warn[0]:.0f}-{warn[1]:.0f} cm³")


# ----------------------------------------------------------------------------- left/right

def hemisphere_ratio_flag(volumes_mm3: dict[int, float]) -> Flag:
    left_codes, right_codes = hemisphere_codes()
    left = sum(v for c, v in volumes_mm3.items() if c in left_codes)
    right = sum(v for c, v in volumes_mm3.items() if c in right_codes)
    expected = f"{HEMISPHERE_RATIO_OK[0]}-{HEMISPHERE_RATIO_OK[1]}"
    if left == 0 or right == 0:
        return Flag("hemisphere_ratio", None, expected, FAIL,
                    f"Left-* {left / 1000:.1f} cm³, Right-* {right / 1000:.1f} cm³: one side has no labels")
    ratio = left / right
    return Flag("hemisphere_ratio", round(ratio, 4), expected,
                _banded(ratio, HEMISPHERE_RATIO_OK, HEMISPHERE_RATIO_WARN),
                f"Left-* {left / 1000:.1f} cm³, Right-* {right / 1000:.1f} cm³")


def left_right_side_flag(labels: np.ndarray, affine: np.ndarray) -> Flag:
    """Right-* labels must lie at larger world x (RAS+) than Left-* labels, whatever the voxel order."""
    labels = np.asarray(labels)
    left_codes, right_codes = hemisphere_codes()
    present = np.unique(labels)
    centroids = []
    for codes in (left_codes, right_codes):
        voxels = np.argwhere(np.isin(labels, [c for c in present if c in codes]))
        if not len(voxels):
            return Flag("left_right_side_mm", None, "> 0", FAIL, "no Left-* or no Right-* labels")
        centroids.append(float((np.asarray(affine)[0, :3] @ voxels.mean(axis=0)) + affine[0, 3]))
    difference = centroids[1] - centroids[0]
    return Flag("left_right_side_mm", round(difference, 2), "> 0", OK if difference > 0 else FAIL,
                f"centroid x: Left-* {centroids[0]:.1f} mm, Right-* {centroids[1]:.1f} mm"
                + ("" if difference > 0 else "; left and right look swapped"))


# ----------------------------------------------------------------------------- connectivity

def components(mask: np.ndarray) -> tuple[int, float]:
    """Number of 26-connected components of a binary mask and the fraction in the largest."""
    mask = np.asarray(mask) > 0
    if not mask.any():
        return 0, 0.0
    labelled, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(labelled.ravel())[1:]
    return int(count), float(sizes.max() / sizes.sum())


MASK_SYMMETRY_OK, MASK_SYMMETRY_WARN = 0.78, 0.65


def centre_along(mask: np.ndarray, axis: int) -> float:
    """Centroid index of a binary mask along one axis."""
    profile = np.asarray(mask).sum(axis=tuple(a for a in range(mask.ndim) if a != axis)).astype(float)
    return float((profile * np.arange(len(profile))).sum() / profile.sum())


def head_foreground(image: np.ndarray) -> np.ndarray:
    """Voxels brighter than a tenth of the 99th percentile: the head (or the brain of a
    skull-stripped image), from intensities alone."""
    image = np.asarray(image, dtype=np.float32)
    return image > 0.1 * float(np.percentile(image, 99))


def mirror_dice(mask: np.ndarray, lr_axis: int, centre: float) -> float:
    """Dice of a binary mask with its mirror image along `lr_axis` about index `centre`."""
    mask = np.asarray(mask) > 0
    n = mask.shape[lr_axis]
    shift = int(round(2 * centre - (n - 1)))        # mirror index i -> 2 * centre - i
    flipped = np.flip(mask, lr_axis)
    mirrored = np.zeros_like(mask)
    source, target = [slice(None)] * mask.ndim, [slice(None)] * mask.ndim
    source[lr_axis] = slice(0, max(n - shift, 0)) if shift >= 0 else slice(min(-shift, n), n)
    target[lr_axis] = slice(min(shift, n), n) if shift >= 0 else slice(0, max(n + shift, 0))
    mirrored[tuple(target)] = flipped[tuple(source)]
    dice = dice_per_label(mirrored, mask, [1])[1]
    return 0.0 if dice != dice else dice                # both empty: NaN -> 0


def mask_symmetry_flag(mask: np.ndarray, image: np.ndarray, affine: np.ndarray) -> Flag:
    """The mask against its mirror image about the head's mid-sagittal plane (found from the image
    intensities, not from the mask or the labels): a mask missing part of one side is lopsided."""
    from ..images import left_right_axis
    expected = f">= {MASK_SYMMETRY_OK}"
    if not np.asarray(mask).any():
        return Flag("mask_symmetry", None, expected, FAIL, "empty mask")
    head = head_foreground(image)
    if not head.any():
        return Flag("mask_symmetry", None, expected, NA, "the image has no foreground")
    axis = left_right_axis(affine)
    value = mirror_dice(mask, axis, centre_along(head, axis))
    detail = "" if value >= MASK_SYMMETRY_OK else "lopsided: part of one side may be missing from the mask"
    status = _at_least(value, MASK_SYMMETRY_OK, MASK_SYMMETRY_WARN)
    return Flag("mask_symmetry", round(value, 4), expected, status, detail)


def mask_flags(mask: np.ndarray, labels: np.ndarray) -> list[Flag]:
    count, largest = components(mask)
    mask = np.asarray(mask) > 0
    labelled = np.asarray(labels) > 0
    kept = float((labelled & mask).sum() / labelled.sum()) if labelled.any() else 0.0
    return [
        Flag("mask_components", count, "1", OK if count == 1 else FAIL if count == 0 else WARN,
             "empty mask" if count == 0 else ""),
        Flag("mask_largest_fraction", round(largest, 4), f">= {LARGEST_FRACTION_OK}",
             _at_least(largest, LARGEST_FRACTION_OK, LARGEST_FRACTION_WARN)),
        Flag("labels_in_mask_fraction", round(kept, 4), f">= {KEPT_FRACTION_OK}",
             _at_least(kept, KEPT_FRACTION_OK, KEPT_FRACTION_WARN),
             f"{int(labelled.sum() - (labelled & mask).sum())} labelled voxels outside the mask"),
    ]


# ----------------------------------------------------------------------------- Dice

def dice_flag(scores: dict[int, float], *, seen_in_training: bool = False) -> Flag:
    """Mean Dice over the labels scored (NaN: absent from both maps, left out)."""
    valid = {c: d for c, d in scores.items() if d == d}
    note = "reference used in training: not an independent test" if seen_in_training else ""
    if not valid:
        return Flag("dice_mean", None, f">= {PASS:.2f}", WARN, "no label in either map")
    mean = sum(valid.values()) / len(valid)
    code = min(valid, key=valid.get)
    detail = f"worst label {label_name(code)} ({code}) {valid[code]:.3f}" + (f"; {note}" if note else "")
    return Flag("dice_mean", round(mean, 4), f">= {PASS:.2f}", OK if mean >= PASS else FAIL, detail)


# ----------------------------------------------------------------------------- model and labels

def major_labels_flag(volumes_mm3: dict[int, float], model_codes) -> Flag:
    """The major structures the model knows must all be present in its segmentation."""
    expected = sorted(MAJOR_STRUCTURES & {int(c) for c in model_codes})
    if not expected:
        return Flag("major_labels_present", None, "all", NA, "the model knows none of the major structures")
    missing = [c for c in expected if volumes_mm3.get(c, 0.0) <= 0]
    detail = ("missing: " + ", ".join(f"{label_name(c)} ({c})" for c in missing)) if missing else ""
    return Flag("major_labels_present", f"{len(expected) - len(missing)}/{len(expected)}", "all",
                FAIL if missing else OK, detail)


LABEL_SHARE_LOW, LABEL_SHARE_HIGH, LABELS_OUT_FAIL = 0.5, 2.0, 0.25


def label_volumes_flag(volumes_mm3: dict[int, float], ranges: dict | None) -> Flag:
    """Labels predicted implausibly small or large for what the model was trained on, measured as
    shares of the labelled volume so that head size and age do not matter."""
    expected = f"shares within {LABEL_SHARE_LOW:g}x-{LABEL_SHARE_HIGH:g}x of those seen in training"
    if not ranges:
        return Flag("label_volumes", None, expected, NA,
                    "the model package carries no training volumes (label_volume_fractions)")
    total = sum(v for c, v in volumes_mm3.items() if c)
    out = []
    for code, (low, high) in sorted((int(c), r) for c, r in ranges.items()):
        share = volumes_mm3.get(code, 0.0) / total if total else 0.0
        if share < LABEL_SHARE_LOW * low or share > LABEL_SHARE_HIGH * high:
            out.append(f"{label_name(code)} ({code}) {100 * share:.2f} % vs {100 * low:.2f}-{100 * high:.2f} %")
    status = OK if not out else FAIL if len(out) >= LABELS_OUT_FAIL * len(ranges) else WARN
    more = f"; and {len(out) - 6} more" if len(out) > 6 else ""
    detail = ("out: " + "; ".join(out[:6]) + more) if out else ""
    return Flag("label_volumes", f"{len(ranges) - len(out)}/{len(ranges)}", expected, status, detail)


def model_evaluation_flag(dice_summary: dict | None) -> Flag:
    """How the model fared on its own held-out subjects, carried into every session's QC."""
    expected = f"passed on real subjects (mean Dice >= {PASS:.2f})"
    if not dice_summary or dice_summary.get("mean_dice") is None:
        return Flag("model_evaluation", None, expected, WARN, "the model's manifest holds no evaluation")
    mean = float(dice_summary["mean_dice"])
    synthetic = bool(dice_summary.get("synthetic"))
    where = "SYNTHETIC images only" if synthetic else "held-out real subjects"
    detail = f"mean Dice {mean:.3f} on {where}"
    if mean < PASS:
        return Flag("model_evaluation", round(mean, 4), expected, WARN, f"the model failed its own evaluation: {detail}")
    if synthetic:
        return Flag("model_evaluation", round(mean, 4), expected, WARN, f"{detail}: no real-data evidence")
    return Flag("model_evaluation", round(mean, 4), expected, OK, detail)


# ----------------------------------------------------------------------------- model's ages

def model_age_flag(age_months: float | None, age_range) -> Flag | None:
    """Whether the model learnt from subjects of this age; None where either is unknown."""
    if age_months is None or age_range is None:
        return None
    low, high = age_range
    if low is None and high is None:
        return None
    inside = (low is None or age_months >= low) and (high is None or age_months <= high)
    expected = (f"{low:g}-{high:g} months" if low is not None and high is not None
                else f">= {low:g} months" if low is not None else f"<= {high:g} months")
    return Flag("age_in_model_range", round(float(age_months), 2), expected, OK if inside else WARN,
                "" if inside else "the model was not trained on this age: check the figures closely")


# ----------------------------------------------------------------------------- all of them

def session_flags(labels: np.ndarray, mask: np.ndarray, image: np.ndarray, affine: np.ndarray,
                  volumes_mm3: dict[int, float],
                  age_months: float | None, dice_scores: dict[int, float] | None = None,
                  seen_in_training: bool = False, model_age_range=None, model_codes=(),
                  dice_summary: dict | None = None, label_fraction_ranges: dict | None = None,
                  input_warnings: list[str] = ()) -> list[Flag]:
    """Every flag for one subject/session, in ORDER; a flag that cannot be computed (no reference,
    age or model range unknown) is listed as n/a with the reason."""
    flags = [brain_volume_flag(volumes_mm3, age_months), hemisphere_ratio_flag(volumes_mm3),
             left_right_side_flag(labels, affine), *mask_flags(mask, labels), mask_symmetry_flag(mask, image, affine),
             major_labels_flag(volumes_mm3, model_codes), label_volumes_flag(volumes_mm3, label_fraction_ranges),
             model_evaluation_flag(dice_summary)]
    if dice_scores is not None:
        flags.append(dice_flag(dice_scores, seen_in_training=seen_in_training))
    else:
        flags.append(Flag("dice_mean", None, f">= {PASS:.2f}", NA, "no reference label map for this session"))
    age_flag = model_age_flag(age_months, model_age_range)
    if age_flag is None:
        why = "age at scan unknown" if age_months is None else "the model's manifest gives no age range"
        age_flag = Flag("age_in_model_range", None if age_months is None else round(float(age_months), 2),
                        "within the model's ages", NA, why)
    flags.append(age_flag)
    flags.append(input_geometry_flag(input_warnings))
    return flags


def input_geometry_flag(warnings: list[str]) -> Flag:
    """The header warnings of the session's files, as validation found them."""
    return Flag("input_geometry", len(warnings), "no finding", WARN if warnings else OK, "; ".join(warnings))
