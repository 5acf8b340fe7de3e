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


def _label_boxes(labels: np.ndarray) -> dict[int, tuple[slice, ...]]:
    """Label code -> bounding box (slices) of its voxels, for every non-zero code present."""
    from scipy import ndimage
    codes = np.asarray(labels)
    if not np.issubdtype(codes.dtype, np.integer):
        codes = np.rint(codes).astype(np.int64)
    if codes.size == 0 or int(codes.max(initial=0)) <= 0:
        return {}
    boxes = ndimage.find_objects(np.clip(codes, 0, None).astype(np.int64, copy=False))
    return {code: box for code, box in enumerate(boxes, start=1) if box is not None}


def _union_box(a: tuple[slice, ...], b: tuple[slice, ...], shape) -> tuple[slice, ...]:
    """The smallest box holding both boxes, one voxel wider each side (clipped to the array)."""
    return tuple(slice(max(0, min(x.start, y.start) - 1), min(n, max(x.stop, y.stop) + 1))
                 for x, y, n in zip(a, b, shape))


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """Voxels of a binary mask with a face neighbour outside it (voxels on the array edge count)."""
    from scipy import ndimage
    mask = np.asarray(mask, dtype=bool)
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def directed_surface_distances(from_surface: np.ndarray, to_surface: np.ndarray, spacing) -> np.ndarray:
    """Distance in mm from each voxel of one surface to the nearest voxel of the other."""
    from scipy import ndimage
    distance_to = ndimage.distance_transform_edt(~to_surface, sampling=spacing)
    return distance_to[from_surface]


def hd95_per_label(prediction: np.ndarray, reference: np.ndarray, codes, spacing) -> dict[int, float]:
    """95th-percentile symmetric Hausdorff distance in mm for each label code (0 skipped).

    Symmetric as in MedPy and MONAI: the larger of the two directed 95th percentiles (prediction
    surface -> reference surface and back). NaN where the label is in only one map, 0.0 where it is in
    neither. `spacing` is the voxel size in mm along each array axis."""
    prediction, reference = np.asarray(prediction), np.asarray(reference)
    if prediction.shape != reference.shape:
        raise ValueError(f"prediction {prediction.shape} and reference {reference.shape} differ in shape")
    spacing = tuple(float(s) for s in spacing)
    predicted_boxes, reference_boxes = _label_boxes(prediction), _label_boxes(reference)
    distances = {}
    for code in codes:
        code = int(code)
        if code == 0:
            continue
        in_prediction, in_reference = code in predicted_boxes, code in reference_boxes
        if not in_prediction and not in_reference:
            distances[code] = 0.0
            continue
        if not (in_prediction and in_reference):
            distances[code] = float("nan")
            continue
        # every surface voxel of both masks lies in this box, so distances inside it are exact
        box = _union_box(predicted_boxes[code], reference_boxes[code], prediction.shape)
        predicted_surface = surface_voxels(prediction[box] == code)
        reference_surface = surface_voxels(reference[box] == code)
        forward = directed_surface_distances(predicted_surface, reference_surface, spacing)
        backward = directed_surface_distances(reference_surface, predicted_surface, spacing)
        distances[code] = float(max(np.percentile(forward, 95), np.percentile(backward, 95)))
    return distances


def volume_difference_per_label(prediction: np.ndarray, reference: np.ndarray, codes,
                                voxel_volume_mm3: float) -> dict[int, dict[str, float]]:
    """Per label code (0 skipped): predicted and reference volume (mm³), predicted minus reference
    (`volume_diff_mm3`) and that difference as a percentage of the reference (`volume_diff_pct`;
    NaN where the reference has no such voxel)."""
    prediction, reference = np.asarray(prediction), np.asarray(reference)
    differences = {}
    for code in codes:
        code = int(code)
        if code == 0:
            continue
        predicted = int(np.count_nonzero(prediction == code)) * float(voxel_volume_mm3)
        expected = int(np.count_nonzero(reference == code)) * float(voxel_volume_mm3)
        difference = predicted - expected
        differences[code] = {"predicted_mm3": predicted, "reference_mm3": expected,
                             "volume_diff_mm3": difference,
                             "volume_diff_pct": 100.0 * difference / expected if expected else float("nan")}
    return differences
