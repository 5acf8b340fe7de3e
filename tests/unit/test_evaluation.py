"""Scoring against reference label maps that hold labels a model never learnt (a FreeSurfer aseg's
corpus callosum, choroid plexus or WM hypointensities against a model trained on SynthSeg's label
maps): those voxels take their nearest known label, are listed in the report, and neither score
Dice 0 nor count as the model's errors."""
import json
from types import SimpleNamespace

import nibabel as nib
import numpy as np

from bibsnet_trainer.evaluation.evaluate import Case, evaluate, scoring_reference
from bibsnet_trainer.labels import LabelTable, infill_unknown_labels
from bibsnet_trainer.evaluation.dice_report import write_dice_report
from bibsnet_trainer.evaluation.summary import Reference

WM_L, WM_R, CC, VENTRICLE_L, CHOROID_L = 2, 41, 251, 4, 31


def _head() -> np.ndarray:
    """Left white matter (x < 10), a corpus callosum strip (x 10-11), right white matter (x >= 12),
    and a left ventricle holding choroid plexus."""
    labels = np.zeros((24, 16, 16), np.int32)
    labels[2:10, 3:13, 3:13] = WM_L
    labels[12:22, 3:13, 3:13] = WM_R
    labels[10:12, 3:13, 3:13] = CC
    labels[4:8, 6:10, 6:10] = VENTRICLE_L
    labels[5:7, 7:9, 7:9] = CHOROID_L
    return labels


def test_unknown_labels_take_their_nearest_known_label():
    reference = _head()
    known = (0, WM_L, WM_R, VENTRICLE_L)
    infilled_map, infilled = infill_unknown_labels(reference, known)
    assert infilled == {CHOROID_L: 8, CC: 200}
    assert set(np.unique(infilled_map)) == set(known)
    # inside the strip (its rim is as near to the background): each half joins its own hemisphere
    assert (infilled_map[10, 4:12, 4:12] == WM_L).all() and (infilled_map[11, 4:12, 4:12] == WM_R).all()
    assert (infilled_map[5:7, 7:9, 7:9] == VENTRICLE_L).all()        # choroid plexus -> its ventricle
    unchanged = reference != CC
    unchanged &= reference != CHOROID_L
    assert np.array_equal(infilled_map[unchanged], reference[unchanged])
    same, nothing = infill_unknown_labels(infilled_map, known)
    assert same is infilled_map and nothing == {}


def test_scoring_reference_applies_target_merges_then_infill():
    reference = _head()
    reference[3, 4, 4] = 25          # a lesion: SynthSeg's target merges it into left white matter
    target, infilled = scoring_reference(reference, (0, WM_L, WM_R, VENTRICLE_L))
    assert target[3, 4, 4] == WM_L and 25 not in infilled and set(infilled) == {CC, CHOROID_L}


def test_a_model_without_those_labels_is_not_blamed_for_them(tmp_path):
    reference = _head()
    truth, _ = infill_unknown_labels(reference, (0, WM_L, WM_R, VENTRICLE_L))
    model = SimpleNamespace(table=LabelTable.from_codes([0, WM_L, WM_R, VENTRICLE_L]),
                            segment=lambda images: truth.copy())   # the right answer in its own labels
    image = nib.Nifti1Image(np.zeros(reference.shape, np.float32), np.eye(4))
    result = evaluate(model, [Case("sub-01", [image], reference)], tmp_path / "overlays")
    assert result.scores["sub-01"] == {WM_L: 1.0, WM_R: 1.0, VENTRICLE_L: 1.0}
    assert result.infilled == {CC: 200, CHOROID_L: 8}

    paths = write_dice_report(tmp_path, "dice", result.scores, evaluated_on=Reference.REAL,
                              context={}, infilled=result.infilled)
    content = json.loads(paths["json"].read_text())
    assert [r["name"] for r in content["reference_labels_infilled"]] == ["Left-choroid-plexus", "CC_Posterior"]
    assert "Reference labels this model does not have" in paths["html"].read_text()
    assert content["mean_dice"] == 1.0
