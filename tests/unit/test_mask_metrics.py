import numpy as np

from bibsnet_trainer.participant.mask import brain_mask
from bibsnet_trainer.evaluation.metrics import dice_per_label, grade


def test_mask_keeps_largest_component_and_fills_holes():
    seg = np.zeros((30, 30, 30), np.int32)
    seg[5:20, 5:20, 5:20] = 2
    seg[10:13, 10:13, 10:13] = 0          # hole (e.g. unlabelled ventricle)
    seg[25:28, 25:28, 25:28] = 3          # separate blob (e.g. eye)
    mask = brain_mask(seg)
    assert mask[11, 11, 11] == 1
    assert mask[26, 26, 26] == 0
    assert mask.sum() == 15 ** 3


def test_dice_and_grades():
    a = np.zeros((10, 10, 10), int)
    b = np.zeros_like(a)
    a[:5] = 2
    b[:4] = 2
    scores = dice_per_label(a, b, [0, 2, 41])
    assert abs(scores[2] - 2 * 400 / 900) < 1e-9
    assert np.isnan(scores[41]) and 0 not in scores
    assert [grade(x) for x in (0.96, 0.91, 0.81, 0.5)] == ["excellent", "good", "pass", "fail"]
