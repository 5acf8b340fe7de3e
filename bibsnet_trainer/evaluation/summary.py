"""What a Dice report says, as numbers (pure functions): what the scores were measured on (`Reference`), rows
per case and label, the summary per label, means per case and per age bin, the best and worst cases."""
from __future__ import annotations

import enum
import math

import numpy as np

from ..bids.ages import bin_order
from ..labels import label_name
from .metrics import grade


class Reference(enum.Enum):
    """What a Dice report's reference label maps are; the value is the report's wording."""
    REAL = "real held-out subjects"
    SYNTHETIC = "SYNTHETIC validation images (no real subject with a label map was available to hold out)"
    SEEN_IN_TRAINING = "reference label map of a subject used in training (not an independent test)"

    @property
    def synthetic(self) -> bool:
        return self is Reference.SYNTHETIC

    @property
    def independent(self) -> bool:
        """A test the model has not seen: its Dice does not flatter the model."""
        return self is Reference.REAL


UNKNOWN_AGE = "unknown age"


def rounded(value, digits: int):
    """A JSON-safe rounded float, or None for a missing or NaN value."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else round(value, digits)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def report_rows(scores: dict[str, dict[int, float]], hd95: dict[str, dict[int, float]] | None = None,
                volume_differences: dict[str, dict[int, dict[str, float]]] | None = None) -> list[dict]:
    """scores: case -> {code: dice} -> flat rows (one per case and label), with the optional
    hd95 (case -> {code: mm}) and volume differences (case -> {code: volume_difference_per_label row})."""
    hd95, volume_differences = hd95 or {}, volume_differences or {}
    rows = []
    for case, per_label in sorted(scores.items()):
        for code, dice in sorted(per_label.items()):
            volume = volume_differences.get(case, {}).get(code, {})
            rows.append({"case": case, "label": code, "name": label_name(code),
                         "dice": rounded(dice, 4), "grade": grade(dice),
                         "hd95_mm": rounded(hd95.get(case, {}).get(code), 3),
                         "volume_diff_mm3": rounded(volume.get("volume_diff_mm3"), 2),
                         "volume_diff_pct": rounded(volume.get("volume_diff_pct"), 3)})
    return rows


def label_summary(rows: list[dict]) -> list[dict]:
    """Per label over cases: mean/median/min Dice, grade of the mean, and the means of the extra
    metrics where the rows carry them (None otherwise)."""
    by_label: dict[int, list[dict]] = {}
    for row in rows:
        if row["dice"] is not None:
            by_label.setdefault(row["label"], []).append(row)
    summary = []
    for code, label_rows in sorted(by_label.items()):
        values = [r["dice"] for r in label_rows]
        mean = sum(values) / len(values)
        hd95 = [r.get("hd95_mm") for r in label_rows]
        percent = [r.get("volume_diff_pct") for r in label_rows]
        summary.append({"label": code, "name": label_name(code), "mean_dice": round(mean, 4),
                        "median_dice": round(float(np.median(values)), 4),
                        "min_dice": round(min(values), 4), "n": len(values), "grade": grade(mean),
                        "mean_hd95_mm": rounded(_mean(hd95), 3),
                        "max_hd95_mm": rounded(max((v for v in hd95 if v is not None), default=None), 3),
                        "mean_volume_diff_pct": rounded(_mean(percent), 3),
                        "mean_abs_volume_diff_pct": rounded(_mean(abs(v) for v in percent if v is not None), 3)})
    return summary


def mean_over_labels(summary: list[dict]) -> float:
    return sum(s["mean_dice"] for s in summary) / len(summary) if summary else float("nan")


def case_means(scores: dict[str, dict[int, float]]) -> dict[str, float]:
    """case -> mean Dice over the labels scored in that case (NaN labels left out)."""
    means = {}
    for case, per_label in scores.items():
        values = [d for d in per_label.values() if d is not None and not math.isnan(d)]
        if values:
            means[case] = sum(values) / len(values)
    return means


def best_and_worst_cases(scores: dict[str, dict[int, float]]) -> tuple[str, str] | None:
    """The cases with the highest and the lowest mean Dice over labels (None without any)."""
    means = case_means(scores)
    if not means:
        return None
    ordered = sorted(means, key=lambda case: (means[case], case))
    return ordered[-1], ordered[0]


def age_bin_summary(rows: list[dict], age_bins: dict[str, str]) -> list[dict]:
    """Dice per age bin: for each bin (in age order; cases without a bin under "unknown age") its
    cases, the mean over labels of the per-label mean Dice, and the per-label summary."""
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(age_bins.get(row["case"]) or UNKNOWN_AGE, []).append(row)
    table = []
    for label in sorted(grouped, key=lambda label: (label == UNKNOWN_AGE, bin_order(label), label)):
        summary = label_summary(grouped[label])
        mean = mean_over_labels(summary)
        table.append({"bin": label, "cases": sorted({r["case"] for r in grouped[label]}),
                      "n_cases": len({r["case"] for r in grouped[label]}),
                      "mean_dice": rounded(mean, 4), "grade": grade(mean),
                      "labels": [{k: s[k] for k in ("label", "name", "mean_dice", "n", "grade")} for s in summary]})
    return table
