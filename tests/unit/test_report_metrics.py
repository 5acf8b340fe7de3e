"""HD95, volume difference, the paired model comparison and the extended Dice report, on constructed
arrays whose answers are known."""
import io
import json
import math
import struct

import numpy as np
import pytest
from scipy import ndimage

from bibsnet_trainer.evaluation.compare import NO_DIFFERENCE, PREVIOUS_MODEL, THIS_MODEL, TOO_FEW, compare_models
from bibsnet_trainer.evaluation.metrics import dice_per_label, hd95_per_label, volume_difference_per_label
from bibsnet_trainer.evaluation.dice_figures import write_overlay_png
from bibsnet_trainer.evaluation.dice_page import setting_sentence
from bibsnet_trainer.evaluation.dice_report import TSV_COLUMNS, write_dice_report
from bibsnet_trainer.evaluation.summary import Reference, age_bin_summary, best_and_worst_cases, report_rows
from phantoms import phantom_labels, phantom_t1w


def cube(shape=(30, 30, 30), start=(5, 5, 5), size=10, code=2):
    labels = np.zeros(shape, np.int32)
    labels[tuple(slice(s, s + size) for s in start)] = code
    return labels


def png_size(path):
    """(width, height) from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ------------------------------------------------------------------------------- HD95 and volumes

@pytest.mark.parametrize("axis, spacing, expected", [(0, (2.0, 1.0, 1.0), 6.0),
                                                     (2, (1.0, 1.0, 2.5), 7.5),
                                                     (1, (0.5, 0.8, 3.0), 2.4)])
def test_hd95_of_cubes_offset_by_three_voxels(axis, spacing, expected):
    # Two 10-voxel cubes, one 3 voxels further along `axis`: no surface point is farther than
    # 3 voxels along that axis from the other surface, and the whole leading face (100 of 488
    # surface voxels, > 5 %) is exactly that far, so the 95th percentile is 3 * spacing[axis].
    start = [5, 5, 5]
    reference = cube(start=start)
    start[axis] += 3
    prediction = cube(start=start)
    distances = hd95_per_label(prediction, reference, [0, 2], spacing)
    assert list(distances) == [2]
    assert distances[2] == pytest.approx(expected, abs=1e-9)
    assert hd95_per_label(reference, prediction, [2], spacing)[2] == pytest.approx(expected, abs=1e-9)


def test_hd95_is_a_percentile_not_the_maximum():
    reference = cube()
    prediction = reference.copy()
    prediction[27, 27, 27] = 2          # one stray voxel, far away: 1 of 489 surface voxels
    assert hd95_per_label(prediction, reference, [2], (1, 1, 1))[2] == 0.0


def test_hd95_absent_labels_and_identical_maps():
    reference = cube()
    prediction = reference.copy()
    prediction[0:2, 0:2, 0:2] = 17      # only predicted
    distances = hd95_per_label(prediction, reference, [2, 17, 41], (1, 1, 1))
    assert distances[2] == 0.0 and math.isnan(distances[17]) and distances[41] == 0.0


def _hd95_without_cropping(prediction, reference, spacing):
    a, b = prediction.astype(bool), reference.astype(bool)
    a_surface, b_surface = a & ~ndimage.binary_erosion(a), b & ~ndimage.binary_erosion(b)
    forward = ndimage.distance_transform_edt(~b_surface, sampling=spacing)[a_surface]
    backward = ndimage.distance_transform_edt(~a_surface, sampling=spacing)[b_surface]
    return max(np.percentile(forward, 95), np.percentile(backward, 95))


def test_hd95_cropping_matches_whole_volume_computation():
    # irregular blobs, one touching the array edge, compared with a plain whole-array computation
    rng = np.random.default_rng(3)
    reference = np.zeros((24, 28, 20), np.int32)
    prediction = np.zeros_like(reference)
    reference[ndimage.gaussian_filter(rng.random(reference.shape), 2) > 0.52] = 4
    prediction[ndimage.gaussian_filter(rng.random(reference.shape), 2) > 0.52] = 4
    reference[:6, :, :5] = 5
    prediction[:7, 2:, :4] = 5
    spacing = (1.2, 0.9, 2.0)
    distances = hd95_per_label(prediction, reference, [4, 5], spacing)
    for code in (4, 5):
        expected = _hd95_without_cropping(prediction == code, reference == code, spacing)
        assert distances[code] == pytest.approx(expected, abs=1e-9)


def test_volume_difference_is_exact():
    reference = np.zeros((10, 10, 10), np.int32)
    prediction = np.zeros_like(reference)
    reference[:4] = 2                   # 400 voxels
    prediction[:5] = 2                  # 500 voxels
    prediction[9, 9, 9] = 41            # in the prediction only
    differences = volume_difference_per_label(prediction, reference, [0, 2, 41, 17], voxel_volume_mm3=1.5)
    assert set(differences) == {2, 41, 17}
    assert differences[2] == {"predicted_mm3": 750.0, "reference_mm3": 600.0,
                              "volume_diff_mm3": 150.0, "volume_diff_pct": 25.0}
    assert differences[41]["volume_diff_mm3"] == 1.5 and math.isnan(differences[41]["volume_diff_pct"])
    assert differences[17]["volume_diff_mm3"] == 0.0 and math.isnan(differences[17]["volume_diff_pct"])


# ------------------------------------------------------------------------------- paired comparison

def _paired(current_by_label, previous_by_label):
    subjects = [f"sub-{i}" for i in range(len(next(iter(current_by_label.values()))))]
    current = {s: {code: values[i] for code, values in current_by_label.items()} for i, s in enumerate(subjects)}
    previous = {s: {code: values[i] for code, values in previous_by_label.items()} for i, s in enumerate(subjects)}
    return current, previous


def test_wilcoxon_picks_the_better_model_per_label():
    base = [0.80, 0.82, 0.85, 0.87, 0.90, 0.91]
    current, previous = _paired(
        {2: [b + 0.02 for b in base], 41: [b - 0.01 * (i + 1) for i, b in enumerate(base)],
         17: [b + d for b, d in zip(base, (0.01, -0.01, 0.02, -0.02, 0.03, -0.03))]},
        {2: base, 41: base, 17: base})
    result = compare_models(current, previous)
    rows = {row["label"]: row for row in result["labels"]}
    # six positive differences: the exact two-sided p-value is 2 / 2**6
    assert rows[2]["n"] == 6 and rows[2]["statistic"] == 0.0
    assert rows[2]["p_value"] == pytest.approx(2 / 64) and rows[2]["median_difference"] == pytest.approx(0.02)
    assert rows[2]["better"] == THIS_MODEL and rows[2]["name"] == "Left-Cerebral-White-Matter"
    assert rows[41]["better"] == PREVIOUS_MODEL and rows[41]["median_difference"] == pytest.approx(-0.035)
    assert rows[17]["better"] == NO_DIFFERENCE and rows[17]["p_value"] > 0.5
    assert result["overall"]["n"] == 6 and result["paired_subjects"] == [f"sub-{i}" for i in range(6)]
    json.dumps(result, allow_nan=False)                 # JSON-ready, no NaN


def test_comparison_never_crashes_on_thin_data():
    nan = float("nan")
    current, previous = _paired({2: [0.9] * 4 + [nan] * 2, 41: [0.9] * 6},       # label 2: 4 usable pairs
                                {2: [0.8] * 5 + [nan], 41: [0.9] * 6})          # label 41: all equal
    current["sub-0"][17], previous["sub-0"][17] = nan, 0.5                        # no usable pair
    current["only-here"] = {2: 0.99}
    result = compare_models(current, previous)
    rows = {row["label"]: row for row in result["labels"]}
    assert rows[2] == {**rows[2], "n": 4, "better": TOO_FEW, "p_value": None, "statistic": None}
    assert rows[41]["n"] == 6 and rows[41]["n_nonzero"] == 0 and rows[41]["better"] == TOO_FEW
    assert rows[17]["n"] == 0 and rows[17]["median_difference"] is None and rows[17]["better"] == TOO_FEW
    assert result["unpaired_subjects"] == ["only-here"]
    assert compare_models({}, {})["labels"] == [] and compare_models({}, {})["overall"]["better"] == TOO_FEW


def test_comparison_reads_label_keys_left_as_strings_by_json():
    previous = {f"sub-{i}": {2: 0.9 + 0.01 * i, 41: 0.8} for i in range(5)}
    as_strings = json.loads(json.dumps(previous))
    assert as_strings["sub-0"].keys() == {"2", "41"}
    current = {case: {2: v[2] + 0.05, 41: v[41]} for case, v in previous.items()}
    rows = {r["label"]: r for r in compare_models(current, as_strings)["labels"]}
    # five subjects all better is the smallest possible exact p-value, 2 / 2**5 > 0.05: not significant
    assert rows[2]["n"] == 5 and rows[2]["p_value"] == pytest.approx(2 / 32)
    assert rows[2]["better"] == NO_DIFFERENCE and rows[2]["median_difference"] == pytest.approx(0.05)
    assert rows[41]["better"] == TOO_FEW


# ------------------------------------------------------------------------------- the report

def _report_inputs():
    """Six phantom subjects (five can never reach p < 0.05 in an exact two-sided Wilcoxon test);
    each prediction is the reference with a growing share of its label boundary voxels given to the
    neighbour's label."""
    scores, hd95, volumes, previous, arrays = {}, {}, {}, {}, {}
    codes = [2, 3, 4, 16, 41, 42, 43]
    for i in range(6):
        case = f"sub-{i:02d}"
        reference = phantom_labels(seed=i)
        reference[reference > 100] = 0
        reference[reference == 24] = 0
        shifted = np.roll(reference, 1, axis=i % 3)
        rng = np.random.default_rng(i)
        prediction = np.where((rng.random(reference.shape) < 0.1 + 0.12 * i) & (shifted != reference),
                              shifted, reference)
        scores[case] = dice_per_label(prediction, reference, codes)
        hd95[case] = hd95_per_label(prediction, reference, codes, (3.0, 3.0, 3.0))
        volumes[case] = volume_difference_per_label(prediction, reference, codes, 27.0)
        previous[case] = {code: dice - 0.03 for code, dice in scores[case].items()}
        arrays[case] = (phantom_t1w(phantom_labels(seed=i), seed=i), reference, prediction)
    return scores, hd95, volumes, previous, arrays


def test_full_report(tmp_path):
    scores, hd95, volumes, previous, arrays = _report_inputs()
    overlays = {case: write_overlay_png(tmp_path / "overlays" / f"{case}.png", *arrays[case], f"{case}",
                                        spacing=(3.0, 3.0, 3.0)) for case in scores}
    ages = {"sub-00": "0-3mo", "sub-01": "12-24mo", "sub-02": "3-6mo", "sub-03": "0-3mo"}   # sub-04, 05: unknown
    paths = write_dice_report(tmp_path, "group", scores, evaluated_on=Reference.REAL, context={"model": "m"},
                              hd95=hd95, volume_differences=volumes, age_bins=ages,
                              comparison=compare_models(scores, previous), overlays=overlays)
    means = {case: np.nanmean(list(per_label.values())) for case, per_label in scores.items()}
    best, worst = max(means, key=means.get), min(means, key=means.get)
    assert best_and_worst_cases(scores) == (best, worst) and best != worst
    assert set(paths) == {"json", "tsv", "png", "html", "overlay_best", "overlay_worst"}

    content = json.loads(paths["json"].read_text())
    assert content["synthetic"] is False and content["model"] == "m"
    assert set(content["metrics"]) == {"dice", "hd95_mm", "volume_diff_mm3", "volume_diff_pct"}
    row = next(r for r in content["cases"] if r["case"] == "sub-02" and r["label"] == 4)
    assert row["dice"] == round(scores["sub-02"][4], 4)
    assert row["hd95_mm"] == round(hd95["sub-02"][4], 3)
    assert row["volume_diff_mm3"] == round(volumes["sub-02"][4]["volume_diff_mm3"], 2)
    label_2 = next(s for s in content["labels"] if s["label"] == 2)
    assert label_2["mean_hd95_mm"] == pytest.approx(np.mean([hd95[c][2] for c in scores]), abs=1e-3)
    assert [b["bin"] for b in content["age_bins"]] == ["0-3mo", "3-6mo", "12-24mo", "unknown age"]
    assert content["age_bins"][0]["cases"] == ["sub-00", "sub-03"]
    infants = np.mean([np.mean([scores[c][k] for c in ("sub-00", "sub-03")]) for k in scores["sub-00"]])
    assert content["age_bins"][0]["mean_dice"] == pytest.approx(infants, abs=1e-4)
    comparison = {r["label"]: r for r in content["comparison"]["labels"]}
    assert comparison[2]["better"] == THIS_MODEL and comparison[2]["n"] == 6
    assert content["overlays"]["best"] == {"case": best, "mean_dice": round(means[best], 4),
                                           "png": "group_overlay-best.png"}
    assert content["overlays"]["worst"]["case"] == worst

    lines = paths["tsv"].read_text().splitlines()
    assert tuple(lines[0].split("\t")) == TSV_COLUMNS == (
        "case", "label", "name", "dice", "grade", "hd95_mm", "volume_diff_mm3", "volume_diff_pct")
    assert len(lines) == 1 + 6 * 7
    cells = dict(zip(TSV_COLUMNS, next(l for l in lines if l.startswith("sub-02\t4\t")).split("\t")))
    assert float(cells["hd95_mm"]) == row["hd95_mm"] and float(cells["volume_diff_pct"]) == row["volume_diff_pct"]

    page = paths["html"].read_text()
    assert "<table id='comparison'>" in page and "Comparison with the previous model" in page
    assert "<table id='age-bins'>" in page and "<th>12-24mo<br>(1 case)</th>" in page
    assert f"Best case: {best}" in page and f"Worst case: {worst}" in page
    assert "mean HD95 (mm)" in page and "Synthetic only" not in page
    assert page.count("data:image/png;base64,") == 3

    for key in ("png", "overlay_best", "overlay_worst"):
        width, height = png_size(paths[key])
        assert width > 500 and height > 300 and paths[key].stat().st_size > 20_000


def test_old_callers_get_the_new_columns_as_na(tmp_path):
    paths = write_dice_report(tmp_path, "r", {"c1": {2: 0.97, 41: float("nan")}}, evaluated_on=Reference.SYNTHETIC,
                              context={})
    assert set(paths) == {"json", "tsv", "png", "html"}
    assert paths["tsv"].read_text().splitlines()[2] == "c1\t41\tRight-Cerebral-White-Matter\tn/a\tabsent\tn/a\tn/a\tn/a"
    content = json.loads(paths["json"].read_text())
    assert "age_bins" not in content and "comparison" not in content and set(content["metrics"]) == {"dice"}
    page = paths["html"].read_text()
    assert "Synthetic only" in page and "Dice report — SYNTHETIC images" in page
    assert "id='comparison'" not in page and "id='age-bins'" not in page


def test_overlay_png(tmp_path):
    labels = phantom_labels(shape=(32, 40, 24))
    prediction = np.roll(labels, 2, axis=0)
    path = write_overlay_png(tmp_path / "o.png", phantom_t1w(labels), labels, prediction, "phantom",
                             spacing=(1.0, 1.0, 2.0))
    width, height = png_size(path)
    assert width > 1000 and height > 400 and path.stat().st_size > 20_000
    with pytest.raises(ValueError):
        write_overlay_png(tmp_path / "bad.png", np.zeros((4, 4, 4)), labels, labels, "bad")


def test_overlay_panels_are_titled_with_world_coordinates():
    from bibsnet_trainer.reports.figures import slice_position
    affine = np.array([[2.0, 0, 0, -60], [0, 2.0, 0, -80], [0, 0, 3.0, -30], [0, 0, 0, 1]])
    assert slice_position(0, (36, 10, 10), affine) == "x = +12 mm"
    assert slice_position(2, (36, 10, 4), affine) == "z = -18 mm"
    assert slice_position(1, (36, 10, 4), None) == "slice 10"


def test_age_bins_and_rows_without_extras():
    rows = report_rows({"a": {2: 0.9}, "b": {2: 0.7}, "c": {2: 0.8}})
    assert rows[0]["hd95_mm"] is None and rows[0]["volume_diff_pct"] is None
    table = age_bin_summary(rows, {"a": "216-1200mo", "b": "<0mo", "c": "6-12mo"})
    assert [(b["bin"], b["mean_dice"], b["grade"]) for b in table] == [
        ("<0mo", 0.7, "fail"), ("6-12mo", 0.8, "pass"), ("216-1200mo", 0.9, "good")]
    assert best_and_worst_cases({}) is None


def test_training_curve_keeps_the_first_of_nnunets_three_panels(tmp_path):
    from PIL import Image

    from bibsnet_trainer.reports.figures import png_bytes, pyplot, top_panel_png
    plt = pyplot()
    fig, axes = plt.subplots(3, 1, figsize=(20, 30))            # nnU-Net's layout: three stacked panels
    for ax, colour in zip(axes, ("red", "green", "blue")):
        ax.set_facecolor(colour)
    (tmp_path / "progress.png").write_bytes(png_bytes(fig, dpi=50))
    with Image.open(tmp_path / "progress.png") as full:
        assert full.size == (1000, 1500)
    top = Image.open(io.BytesIO(top_panel_png(tmp_path / "progress.png", width=500))).convert("RGB")
    assert top.size == (500, 254)                                # a third (and a little), scaled to 500
    colours = {top.getpixel((250, y)) for y in range(40, 220, 20)}
    assert (255, 0, 0) in colours and not {(0, 128, 0), (0, 0, 255)} & colours


def test_the_report_says_whose_scans_and_how_much_training(tmp_path):
    setting = {"dataset": "fs_adults", "cases": ["sub-07", "sub-08"], "voxel_mm": 2.0, "training_spacing_mm": [2.0, 2.0],
               "training_minutes": 52.2, "iterations": 10450, "machine": "2 CPU cores (Some CPU), x86_64"}
    sentence = setting_sentence(setting)
    assert sentence == ("Scored on 2 cases of fs_adults (sub-07, sub-08), 2 mm voxels. Model trained for 52.2 min "
                        "(10 450 iterations) at 2×2 mm on 2 CPU cores (Some CPU), x86_64.")
    # what is unknown is left out, not printed as None
    assert setting_sentence({"cases": ["a"], "training_minutes": None}) == "Scored on 1 case (a). Model trained."
    paths = write_dice_report(tmp_path, "r", {"sub-07": {2: 0.9}}, evaluated_on=Reference.REAL,
                              context={"setting": setting})
    page = paths["html"].read_text()
    assert sentence in page and "<b>setting</b>" not in page        # a sentence, not a raw context entry
    assert json.loads(paths["json"].read_text())["setting"] == setting


def test_training_record_reads_nnunets_epoch_timestamps(tmp_path):
    import torch
    from bibsnet_trainer.nnunet.training import training_record

    assert training_record(tmp_path, 50) is None                    # no fold trained
    # fold 0: 3 epochs of 60 s, 2 s apart; fold 1: 2 epochs of 30 s, resumed an hour later
    for fold, starts, seconds in [(0, [1000.0, 1062.0, 1124.0], 60.0), (1, [1000.0, 4600.0], 30.0)]:
        (tmp_path / f"fold_{fold}").mkdir()
        torch.save({"logging": {"epoch_start_timestamps": starts,
                                "epoch_end_timestamps": [s + seconds for s in starts]}},
                   tmp_path / f"fold_{fold}" / "checkpoint_final.pth")
    assert training_record(tmp_path, 50) == {"minutes": round((3 * 60 + 2 * 2 + 2 * 30) / 60, 1), "epochs": 5,
                                             "iterations": 250}


def test_methods_say_what_the_model_was_trained_on():
    from bibsnet_trainer.reports.provenance import machine, methods_text, provenance

    real_only = provenance(model={"Name": "m"}, training={"real_train_subjects": ["01", "02"], "synthetic_images": 0})
    text = methods_text(real_only)
    assert "trained on the real images of 2 subjects," in text and "synthetic" not in text
    mixed = methods_text(provenance(training={"real_train_subjects": ["01"], "synthetic_images": 8}))
    assert "the real images of 1 subject and 8 SynthSeg-style synthetic images" in mixed
    synthetic = methods_text(provenance(training={"real_train_subjects": [], "synthetic_images": 20}))
    assert "trained on 20 SynthSeg-style synthetic images" in synthetic and "real images" not in synthetic
    assert "trained on labelled images" in methods_text(provenance())      # a model without a training summary
    assert "CPU cores" in machine("cpu") and real_only["machine"] == machine("cpu")
    five_folds = {"real_train_subjects": ["01", "02", "03", "04"], "real_validation_subjects": ["05"], "folds": 5}
    assert "the real images of 5 subjects" in methods_text(provenance(training=five_folds))
