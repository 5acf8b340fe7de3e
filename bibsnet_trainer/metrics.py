"""Overlap metrics between a prediction and a reference label map (FreeSurfer codes)."""
from __future__ import annotations

import numpy as np

PASS, GOOD, EXCELLENT = 0.80, 0.90, 0.95   # BIBSNet model-creation guide marks


def dice_per_label(prediction: np.ndarray, reference: np.ndarray, labels) -> dict[int, float]:
    """Dice for each label code; NaN where the label is absent from both maps."""
    scores = {}
    for code in labels:
        code = int(code)
        if code == 0:
            continue
        pred, ref = prediction == code, reference == code
        total = int(pred.sum()) + int(ref.sum())
        scores[code] = float("nan") if total == 0 else 2.0 * int((pred & ref).sum()) / total
    return scores


def grade(dice: float) -> str:
    if dice != dice:  # NaN
        return "absent"
    if dice >= EXCELLENT:
        return "excellent"
    if dice >= GOOD:
        return "good"
    if dice >= PASS:
        return "pass"
    return "fail"
