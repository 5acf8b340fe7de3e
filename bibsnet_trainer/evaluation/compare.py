"""Paired comparison of this model against a previous model on the same subjects.

As SynthSeg's evaluate.py does: for each label, a Wilcoxon signed-rank test on the per-subject Dice
pairs (this model minus the previous one). Pure functions on `{subject: {label: dice}}` dicts; label
keys may be ints or the strings a JSON round trip leaves. Nothing here raises on thin data: a label
with fewer than `min_subjects` usable pairs, or whose pairs are all equal, is marked "too few subjects".
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from ..labels import label_name

THIS_MODEL, PREVIOUS_MODEL = "this model", "previous model"
NO_DIFFERENCE, TOO_FEW = "no significant difference", "too few subjects"
ALL_LABELS = "all"   # the row comparing each subject's mean Dice over labels
MIN_SUBJECTS = 5
ALPHA = 0.05


def _finite(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _by_int_label(per_label: dict) -> dict[int, float]:
    return {int(code): float(dice) for code, dice in per_label.items() if _finite(dice)}


def paired_wilcoxon(differences, *, min_subjects: int = MIN_SUBJECTS, alpha: float = ALPHA) -> dict:
    """Wilcoxon signed-rank test on paired differences (this model minus the previous one)."""
    differences = np.asarray([d for d in differences if _finite(d)], dtype=float)
    n = int(differences.size)
    result = {"n": n, "n_nonzero": int(np.count_nonzero(differences)),
              "median_difference": round(float(np.median(differences)), 6) if n else None,
              "mean_difference": round(float(np.mean(differences)), 6) if n else None,
              "statistic": None, "p_value": None, "better": TOO_FEW}
    if n < min_subjects or result["n_nonzero"] == 0:
        return result
    from scipy.stats import wilcoxon
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # small-sample and tie notices; the result is still defined
        try:
            test = wilcoxon(differences, zero_method="wilcox", alternative="two-sided")
        except ValueError:
            return result
    statistic, p_value = float(test.statistic), float(test.pvalue)
    if math.isnan(p_value):
        return result
    result.update(statistic=statistic, p_value=p_value)
    direction = result["median_difference"] or result["mean_difference"]
    if p_value < alpha and direction:
        result["better"] = THIS_MODEL if direction > 0 else PREVIOUS_MODEL
    else:
        result["better"] = NO_DIFFERENCE
    return result


def _mean_dice(per_label: dict[int, float]) -> float:
    return sum(per_label.values()) / len(per_label) if per_label else float("nan")


def compare_models(current: dict[str, dict], previous: dict[str, dict], *, labels=None,
                   min_subjects: int = MIN_SUBJECTS, alpha: float = ALPHA,
                   current_name: str = THIS_MODEL, previous_name: str = PREVIOUS_MODEL) -> dict:
    """Per label, Wilcoxon signed-rank test of this model's Dice against the previous model's.

    current, previous: {subject: {label: dice}}; only subjects in both are paired, and a subject
    counts for a label only where both Dice are numbers. labels: the codes to compare (default: every
    code either model scored). Returns a JSON-ready dict: "labels" holds one row per label (label,
    name, n, n_nonzero, median_difference, mean_difference, statistic, p_value, better), "overall" the
    same test on each subject's mean Dice over the labels both models scored."""
    current = {str(s): _by_int_label(v) for s, v in current.items()}
    previous = {str(s): _by_int_label(v) for s, v in previous.items()}
    paired = sorted(set(current) & set(previous))
    if labels is None:
        labels = {code for s in paired for code in (*current[s], *previous[s])}
    rows = []
    for code in sorted(int(c) for c in labels if int(c) != 0):
        differences = [current[s][code] - previous[s][code] for s in paired
                       if code in current[s] and code in previous[s]]
        rows.append({"label": code, "name": label_name(code),
                     **paired_wilcoxon(differences, min_subjects=min_subjects, alpha=alpha)})
    codes = {row["label"] for row in rows}
    overall_differences = []
    for s in paired:
        shared = codes & set(current[s]) & set(previous[s])
        if shared:
            overall_differences.append(_mean_dice({c: current[s][c] for c in shared})
                                       - _mean_dice({c: previous[s][c] for c in shared}))
    overall = {"label": ALL_LABELS, "name": "mean over labels",
               **paired_wilcoxon(overall_differences, min_subjects=min_subjects, alpha=alpha)}
    return {"test": "Wilcoxon signed-rank, two-sided, per label, on paired per-subject Dice "
                    "(this model minus previous); p-values not corrected for multiple comparisons",
            "current_model": current_name, "previous_model": previous_name,
            "alpha": alpha, "min_subjects": min_subjects,
            "paired_subjects": paired,
            "unpaired_subjects": sorted(set(current) ^ set(previous)),
            "labels": rows, "overall": overall}
