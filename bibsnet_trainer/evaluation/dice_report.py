"""Dice reports: JSON and TSV for machines, an HTML page with figures for people.

Marks follow the BIBSNet model-creation guide: pass >= 0.80, good >= 0.90, excellent >= 0.95.
Every report states what it was computed on; Dice on synthetic images is labelled as such.

Besides Dice, a report may carry per subject and label the 95th-percentile Hausdorff distance and the
volume difference (metrics.py), Dice per age bin, a paired comparison against a previous model
(compare.py) and label-outline overlays of the best and the worst subject (`write_overlay_png`)."""
from __future__ import annotations

import enum

import html
import json
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..bids.ages import bin_order
from ..images import padded_box, write_bytes_atomic, write_text_atomic
from ..reports.figures import embed_png, intensity_window, png_bytes, pyplot
from ..labels import label_name
from ..reports.provenance import provenance_html
from .metrics import EXCELLENT, GOOD, PASS, grade

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
TSV_COLUMNS = ("case", "label", "name", "dice", "grade", "hd95_mm", "volume_diff_mm3", "volume_diff_pct")
GRADE_COLOURS = {"excellent": "#1a9850", "good": "#91cf60", "pass": "#fee08b", "fail": "#d73027",
                 "absent": "#bbbbbb"}
REFERENCE_COLOUR, PREDICTION_COLOUR = (0.0, 0.85, 1.0), (1.0, 0.1, 0.55)
METRIC_DEFINITIONS = {
    "dice": "2|P∩R| / (|P|+|R|) per label; absent from both maps: n/a",
    "hd95_mm": "95th-percentile symmetric Hausdorff distance in mm between label surfaces (larger of "
               "the two directed 95th percentiles); label in one map only: n/a; in neither: 0",
    "volume_diff_mm3": "predicted minus reference volume, mm³",
    "volume_diff_pct": "predicted minus reference volume, % of the reference volume",
}


# ---------------------------------------------------------------------------------- tables

def _number(value, digits: int):
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
                         "dice": _number(dice, 4), "grade": grade(dice),
                         "hd95_mm": _number(hd95.get(case, {}).get(code), 3),
                         "volume_diff_mm3": _number(volume.get("volume_diff_mm3"), 2),
                         "volume_diff_pct": _number(volume.get("volume_diff_pct"), 3)})
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
                        "mean_hd95_mm": _number(_mean(hd95), 3),
                        "max_hd95_mm": _number(max((v for v in hd95 if v is not None), default=None), 3),
                        "mean_volume_diff_pct": _number(_mean(percent), 3),
                        "mean_abs_volume_diff_pct": _number(_mean(abs(v) for v in percent if v is not None), 3)})
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
                      "mean_dice": _number(mean, 4), "grade": grade(mean),
                      "labels": [{k: s[k] for k in ("label", "name", "mean_dice", "n", "grade")} for s in summary]})
    return table


# ---------------------------------------------------------------------------------- figures

def dice_boxplot_png(rows: list[dict], summary: list[dict], title: str, synthetic: bool = False) -> bytes:
    """Box plot of Dice per label over cases (box colour: grade of the label's mean), each case a dot,
    the mean a black diamond, the pass/good/excellent marks as grey lines."""
    plt = pyplot()
    by_label = {s["label"]: [r["dice"] for r in rows if r["label"] == s["label"] and r["dice"] is not None]
                for s in summary}
    values = [by_label[s["label"]] for s in summary]
    fig, ax = plt.subplots(figsize=(max(6.5, 0.36 * len(summary) + 2), 4.8))
    positions = np.arange(len(summary))
    boxes = ax.boxplot(values, positions=positions, widths=0.6, patch_artist=True, showfliers=False,
                       medianprops={"color": "black", "linewidth": 1.2})
    for patch, s in zip(boxes["boxes"], summary):
        patch.set_facecolor(GRADE_COLOURS[s["grade"]])
        patch.set_alpha(0.85)
    jitter = np.random.default_rng(0)
    for x, v in zip(positions, values):
        ax.scatter(x + jitter.uniform(-0.15, 0.15, len(v)), v, s=9, color="#333333", alpha=0.6, zorder=3,
                   linewidths=0)
    ax.scatter(positions, [s["mean_dice"] for s in summary], marker="D", s=20, facecolor="white",
               edgecolor="black", linewidths=0.9, zorder=4, label="mean", clip_on=False)
    for mark, style, name in ((PASS, ":", "pass"), (GOOD, "--", "good"), (EXCELLENT, "-", "excellent")):
        ax.axhline(mark, color="grey", linestyle=style, linewidth=0.8, label=f"{name} {mark:.2f}")
    lowest = min((min(v) for v in values if v), default=0.0)
    ax.set_ylim(max(0.0, min(0.7, math.floor((lowest - 0.05) * 10) / 10)), 1.005)
    ax.set_xticks(positions, [s["name"] for s in summary], rotation=75, ha="right", fontsize=7)
    ax.set_xlim(-0.7, len(summary) - 0.3)
    ax.set_ylabel("Dice")
    cases = len({r["case"] for r in rows})
    ax.set_title(f"{title}\n{cases} case{'s' if cases != 1 else ''}; box: quartiles, line: median, "
                 "dots: cases", fontsize=9, color="#b2182b" if synthetic else "black",
                 fontweight="bold" if synthetic else "normal")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return png_bytes(fig)


def _labelled_box(reference: np.ndarray, prediction: np.ndarray, margin: float = 0.08) -> tuple[slice, ...]:
    """The box holding every labelled voxel of either map, a little wider (the whole array if none)."""
    box = padded_box((reference != 0) | (prediction != 0), margin)
    return box if box is not None else tuple(slice(0, n) for n in reference.shape)


def _slice_centre(reference: np.ndarray, prediction: np.ndarray) -> tuple[int, ...]:
    """Centre of the reference's labelled box (else the prediction's, else the array's)."""
    for labels in (reference, prediction):
        found = np.nonzero(labels)
        if found[0].size:
            return tuple(int((axis.min() + axis.max()) // 2) for axis in found)
    return tuple(n // 2 for n in reference.shape)


def _slice_position(fixed: int, centre: tuple[int, ...], affine) -> str:
    """'x = +12 mm' for the slice through `centre` along axis `fixed` of a RAS array (its world
    coordinate on that axis), or 'slice 40' without an affine."""
    if affine is None:
        return f"slice {centre[fixed]}"
    world = float(np.asarray(affine)[fixed, :3] @ np.asarray(centre, float) + np.asarray(affine)[fixed, 3])
    return f"{'xyz'[fixed]} = {world:+.0f} mm"


def _draw_outlines(ax, labels: np.ndarray, colour, linewidth: float) -> None:
    """One contour line around each non-zero label of a 2-D slice (drawn transposed, as shown)."""
    for code in np.unique(labels):
        if code != 0:
            ax.contour((labels == code).T.astype(np.float32), levels=[0.5], colors=[colour],
                       linewidths=linewidth, antialiased=True)


def write_overlay_png(path, image: np.ndarray, reference: np.ndarray, prediction: np.ndarray, title: str,
                      *, spacing=None, affine=None) -> Path:
    """Three orthogonal mid-slices (through the centre of the reference labels, cropped to the labelled
    region) of a 3-D image, with the reference label outlines in cyan (wide) and the predicted ones in
    magenta (thin, on top): where they agree the magenta line runs inside the cyan one. Arrays are
    read as RAS (first axis left->right); spacing (mm per axis) sets the aspect; with the arrays'
    affine, each panel is titled with its slice's world coordinate in mm (else its index)."""
    image = np.squeeze(np.asarray(image, dtype=np.float32))
    reference, prediction = np.asarray(reference), np.asarray(prediction)
    if image.ndim != 3 or image.shape != reference.shape or image.shape != prediction.shape:
        raise ValueError(f"image {image.shape}, reference {reference.shape} and prediction "
                         f"{prediction.shape} must be 3-D arrays of one shape")
    spacing = tuple(float(s) for s in (spacing or (1.0, 1.0, 1.0)))
    centre = _slice_centre(reference, prediction)
    box = _labelled_box(reference, prediction)
    low, high = intensity_window(image[box])
    plt = pyplot()
    from matplotlib.lines import Line2D
    # name, fixed axis, (axis across, axis up), letters (left, right, bottom, top) of a RAS array
    views = (("sagittal", 0, (1, 2), "PAIS"), ("coronal", 1, (0, 2), "LRIS"), ("axial", 2, (0, 1), "LRPA"))
    fig, axes = plt.subplots(1, 3, figsize=(13, 5.0))
    for ax, (name, fixed, (across, up), letters) in zip(axes, views):
        index = list(box)
        index[fixed] = centre[fixed]
        index = tuple(index)
        aspect = spacing[up] / spacing[across]
        ax.imshow(image[index].T, cmap="gray", vmin=low, vmax=high, origin="lower", aspect=aspect,
                  interpolation="nearest")
        _draw_outlines(ax, reference[index], REFERENCE_COLOUR, 2.0)
        _draw_outlines(ax, prediction[index], PREDICTION_COLOUR, 0.8)
        ax.set_title(f"{name}, {_slice_position(fixed, centre, affine)}", fontsize=9)
        for letter, (x, y) in zip(letters, ((0.02, 0.5), (0.98, 0.5), (0.5, 0.02), (0.5, 0.98))):
            ax.text(x, y, letter, transform=ax.transAxes, color="yellow", fontsize=10, fontweight="bold",
                    ha="center", va="center")
        ax.set_axis_off()
    fig.legend(handles=[Line2D([], [], color=REFERENCE_COLOUR, linewidth=2.5, label="reference"),
                        Line2D([], [], color=PREDICTION_COLOUR, linewidth=1.2, label="prediction")],
               loc="lower center", ncol=2, fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return write_bytes_atomic(path, png_bytes(fig, dpi=110))


# ---------------------------------------------------------------------------------- the report

@dataclass(frozen=True)
class DiceReport(Mapping):
    """The files a Dice report was written to (a mapping: json, tsv, png, html, overlays) and its
    content, so that nothing written has to be read back."""
    paths: dict
    content: dict

    def __getitem__(self, key: str) -> Path:
        return self.paths[key]

    def __iter__(self):
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


def write_dice_report(folder: Path, stem: str, scores: dict[str, dict[int, float]], *,
                      evaluated_on: Reference, context: dict, figures: list[tuple[str, Path | bytes]] = (),
                      hd95: dict[str, dict[int, float]] | None = None,
                      volume_differences: dict[str, dict[int, dict[str, float]]] | None = None,
                      age_bins: dict[str, str] | None = None, comparison: dict | None = None,
                      overlays: dict[str, Path] | None = None,
                      infilled: dict[int, int] | None = None) -> DiceReport:
    """Write <stem>.json, <stem>.tsv, <stem>.png (Dice box plot) and <stem>.html into folder.

    scores: case -> {code: dice}. Optional, each keyed by the same cases: hd95 (case -> {code: mm},
    as hd95_per_label returns), volume_differences (case -> volume_difference_per_label's dict),
    age_bins (case -> bin label such as '3-6mo'), comparison (compare.compare_models' dict) and
    overlays (case -> PNG from write_overlay_png; the best and the worst case by mean Dice are embedded
    and copied to <stem>_overlay-best.png / <stem>_overlay-worst.png). figures: extra (caption, PNG path or bytes).
    infilled: reference codes the model does not have -> voxels given their nearest known label
    before scoring (evaluation.scoring_reference), listed in the report.
    Returns the paths written, keyed json, tsv, png, html (and overlay_best, overlay_worst), with
    the report's content (what the JSON holds)."""
    folder = Path(folder)
    rows = report_rows(scores, hd95, volume_differences)
    summary = label_summary(rows)
    overall = mean_over_labels(summary)
    means = case_means(scores)
    content = {"evaluated_on": evaluated_on.value, "synthetic": evaluated_on.synthetic,
               "marks": {"pass": PASS, "good": GOOD, "excellent": EXCELLENT},
               "mean_dice": _number(overall, 4), "grade": grade(overall),
               "metrics": _metric_definitions(bool(hd95), bool(volume_differences)),
               "labels": summary, "cases": rows,
               "case_means": [{"case": c, "mean_dice": _number(m, 4), "grade": grade(m),
                               "age_bin": (age_bins or {}).get(c)} for c, m in sorted(means.items())],
               **context}
    if age_bins is not None:
        content["age_bins"] = age_bin_summary(rows, age_bins)
    if comparison is not None:
        content["comparison"] = comparison
    if infilled:
        content["reference_labels_infilled"] = [{"label": code, "name": label_name(code), "voxels": voxels}
                                                 for code, voxels in sorted(infilled.items())]
    paths = {"json": folder / f"{stem}.json", "tsv": folder / f"{stem}.tsv",
             "png": folder / f"{stem}.png", "html": folder / f"{stem}.html"}
    overlay_figures = _pick_overlays(overlays, scores, means, folder, stem, paths, content)
    write_text_atomic(paths["json"], json.dumps(content, indent=2) + "\n")
    write_text_atomic(paths["tsv"], _tsv(rows))
    title = f"Dice per label on {evaluated_on.value}"
    png = dice_boxplot_png(rows, summary, title, content["synthetic"]) if summary else b""
    write_bytes_atomic(paths["png"], png)
    write_text_atomic(paths["html"], _html(content, png, title, [*overlay_figures, *figures]))
    return DiceReport(paths, content)


def _metric_definitions(with_hd95: bool, with_volumes: bool) -> dict[str, str]:
    wanted = {"dice", *(["hd95_mm"] if with_hd95 else []),
              *(["volume_diff_mm3", "volume_diff_pct"] if with_volumes else [])}
    return {k: v for k, v in METRIC_DEFINITIONS.items() if k in wanted}


def _pick_overlays(overlays, scores, means, folder: Path, stem: str, paths: dict, content: dict) -> list:
    """Copy the best and the worst case's overlay next to the report; (caption, path) to embed."""
    drawn = {c: Path(p) for c, p in (overlays or {}).items() if c in scores and Path(p).is_file()}
    picked = best_and_worst_cases({c: scores[c] for c in drawn})
    if not picked:
        return []
    figures, chosen = [], {}
    for role, case in zip(("best", "worst"), picked):
        if role == "worst" and case == picked[0]:
            break
        target = folder / f"{stem}_overlay-{role}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if drawn[case].resolve() != target.resolve():
            shutil.copyfile(drawn[case], target)
        paths[f"overlay_{role}"] = target
        chosen[role] = {"case": case, "mean_dice": _number(means[case], 4), "png": target.name}
        figures.append((f"{role.capitalize()} case: {case} (mean Dice {means[case]:.3f})", target))
    content["overlays"] = chosen
    return figures


def _tsv(rows: list[dict]) -> str:
    def cell(value):
        return "n/a" if value is None else str(value)
    lines = ["\t".join(TSV_COLUMNS)] + ["\t".join(cell(r[c]) for c in TSV_COLUMNS) for r in rows]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- HTML

def _fmt(value, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _fmt_p(p_value) -> str:
    return "n/a" if p_value is None else f"{p_value:.3g}"


def _label_table(content: dict) -> str:
    esc = html.escape
    labels = content["labels"]
    has_hd95 = any(s["mean_hd95_mm"] is not None for s in labels)
    has_volume = any(s["mean_volume_diff_pct"] is not None for s in labels)
    head = ("<tr><th>code</th><th>structure</th><th>mean Dice</th><th>median Dice</th><th>min Dice</th>"
            "<th>cases</th><th>grade</th>" + ("<th>mean HD95 (mm)</th><th>max HD95 (mm)</th>" if has_hd95 else "")
            + ("<th>mean volume diff (%)</th><th>mean |volume diff| (%)</th>" if has_volume else "") + "</tr>")
    body = "".join(
        f"<tr class='{s['grade']}'><td>{s['label']}</td><td>{esc(s['name'])}</td><td>{s['mean_dice']:.3f}</td>"
        f"<td>{s['median_dice']:.3f}</td><td>{s['min_dice']:.3f}</td><td>{s['n']}</td><td>{s['grade']}</td>"
        + (f"<td>{_fmt(s['mean_hd95_mm'], 2)}</td><td>{_fmt(s['max_hd95_mm'], 2)}</td>" if has_hd95 else "")
        + (f"<td>{_fmt(s['mean_volume_diff_pct'], 1, True)}</td><td>{_fmt(s['mean_abs_volume_diff_pct'], 1)}</td>"
           if has_volume else "") + "</tr>" for s in labels)
    return f"<table id='labels'>{head}{body}</table>"


def _case_table(content: dict) -> str:
    esc = html.escape
    with_age = "age_bins" in content
    head = "<tr><th>case</th>" + ("<th>age bin</th>" if with_age else "") + "<th>mean Dice</th><th>grade</th></tr>"
    body = "".join(f"<tr class='{c['grade']}'><td>{esc(c['case'])}</td>"
                   + (f"<td>{esc(c['age_bin'] or UNKNOWN_AGE)}</td>" if with_age else "")
                   + f"<td>{_fmt(c['mean_dice'])}</td><td>{c['grade']}</td></tr>" for c in content["case_means"])
    return f"<h2>Cases</h2><table id='cases'>{head}{body}</table>"


def _age_bin_table(bins: list[dict]) -> str:
    esc = html.escape
    head = "<tr><th>code</th><th>structure</th>" + "".join(
        f"<th>{esc(b['bin'])}<br>({b['n_cases']} case{'s' if b['n_cases'] != 1 else ''})</th>" for b in bins) + "</tr>"
    overall = "<tr><td></td><td><b>mean over labels</b></td>" + "".join(
        f"<td class='{b['grade']}'><b>{_fmt(b['mean_dice'])}</b></td>" for b in bins) + "</tr>"
    cells: dict[int, dict[str, dict]] = {}
    names: dict[int, str] = {}
    for b in bins:
        for s in b["labels"]:
            cells.setdefault(s["label"], {})[b["bin"]] = s
            names[s["label"]] = s["name"]
    body = "".join(
        f"<tr><td>{code}</td><td>{esc(names[code])}</td>" + "".join(
            f"<td class='{cells[code][b['bin']]['grade']}'>{cells[code][b['bin']]['mean_dice']:.3f}</td>"
            if b["bin"] in cells[code] else "<td>n/a</td>" for b in bins) + "</tr>"
        for code in sorted(cells))
    return (f"<h2>Dice per age bin</h2><p>Mean Dice per label over the cases in each age bin (months).</p>"
            f"<table id='age-bins'>{head}{overall}{body}</table>")


def _comparison_table(comparison: dict) -> str:
    esc = html.escape
    marks = {"this model": "good", "previous model": "fail"}

    def row(r, bold=False):
        name = f"<b>{esc(r['name'])}</b>" if bold else esc(r["name"])
        return (f"<tr class='{marks.get(r['better'], '')}'><td>{r['label']}</td><td>{name}</td><td>{r['n']}</td>"
                f"<td>{_fmt(r['median_difference'], 4, True)}</td><td>{_fmt(r['statistic'], 1)}</td>"
                f"<td>{_fmt_p(r['p_value'])}</td>"
                f"<td>{esc(r['better'])}</td></tr>")
    rows = "".join(row(r) for r in comparison.get("labels", []))
    if comparison.get("overall"):
        rows = row(comparison["overall"], bold=True) + rows
    unpaired = comparison.get("unpaired_subjects") or []
    return (f"<h2>Comparison with the previous model</h2><p>{esc(str(comparison.get('current_model', 'this model')))}"
            f" against {esc(str(comparison.get('previous_model', 'previous model')))} on "
            f"{len(comparison.get('paired_subjects', []))} paired subjects"
            + (f" ({len(unpaired)} without a pair left out)" if unpaired else "")
            + f". {esc(str(comparison.get('test', '')))}; significance at p &lt; {comparison.get('alpha', 0.05)}; "
            f"fewer than {comparison.get('min_subjects', 5)} usable pairs: too few subjects. "
            f"Difference: this model minus the previous one.</p>"
            "<table id='comparison'><tr><th>code</th><th>structure</th><th>n</th><th>median Dice difference</th>"
            f"<th>W</th><th>p</th><th>better</th></tr>{rows}</table>")


def setting_sentence(setting: dict | None) -> str:
    """The report's figures in words: whose scans, their voxel size, how long the model trained, on what."""
    if not setting:
        return ""
    cases = setting.get("cases") or []
    scans = f"{len(cases)} case{'s' if len(cases) != 1 else ''}"
    scans += f" of {setting['dataset']}" if setting.get("dataset") else ""
    scans += f" ({', '.join(cases)})" if cases else ""
    scans += f", {setting['voxel_mm']:g} mm voxels" if setting.get("voxel_mm") else ""
    how = "Model trained"
    if setting.get("training_minutes") is not None:
        how += f" for {setting['training_minutes']:g} min"
    if setting.get("iterations"):
        how += f" ({setting['iterations']:,} iterations)".replace(",", " ")
    if setting.get("training_spacing_mm"):
        how += f" at {'×'.join(f'{v:g}' for v in setting['training_spacing_mm'])} mm"
    if setting.get("machine"):
        how += f" on {setting['machine']}"
    return f"Scored on {scans}. {how}."


def _html(content: dict, png: bytes, title: str, figures=()) -> str:
    esc = html.escape
    extra = "".join(f"<h2>{esc(caption)}</h2>"
                    f"{embed_png(png if isinstance(png, bytes) else Path(png).read_bytes(), caption)}"
                    for caption, png in figures)
    warning = ("<p class='warn'><b>Synthetic only.</b> No real subject with a label map was held out; "
               "these figures are on synthetic images and say little about real scans. Do not ship a "
               "model on this report alone.</p>"
               if content["synthetic"] else "")
    skipped = ("setting", "labels", "cases", "marks", "synthetic", "metrics", "case_means", "age_bins", "comparison", "overlays",
               "reference_labels_infilled", "provenance")
    infilled = content.get("reference_labels_infilled")
    infill_note = ("<p><b>Reference labels this model does not have</b> (never in its training label maps) were "
                   "given the label of their nearest voxel with a label the model has before scoring: "
                   + esc(", ".join(f"{r['name']} ({r['label']}, {r['voxels']} voxels)" for r in infilled))
                   + ".</p>") if infilled else ""
    context = "".join(f"<li><b>{esc(str(k))}</b>: {esc(json.dumps(v) if isinstance(v, (dict, list)) else str(v))}</li>"
                      for k, v in content.items() if k not in skipped)
    definitions = "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in content["metrics"].items())
    image = embed_png(png, "Dice per label") if png else ""
    ages = _age_bin_table(content["age_bins"]) if content.get("age_bins") else ""
    comparison = _comparison_table(content["comparison"]) if content.get("comparison") else ""
    heading = "Dice report" + (" — SYNTHETIC images" if content["synthetic"] else "")
    setting = f"<p>{esc(setting_sentence(content.get('setting')))}</p>" if content.get("setting") else ""
    return f"""<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 8px}} .excellent{{background:#d9f0d3}} .good{{background:#eef7e0}}
.pass{{background:#fff7d6}} .fail{{background:#fbe0dc}} .absent{{background:#eeeeee}}
.warn{{background:#fbe0dc;border:2px solid #d73027;padding:8px;font-size:1.15em}}</style></head>
<body><p><a href='../index.html'>&larr; all outputs</a></p><h1>{esc(heading)}</h1>{warning}<p>Evaluated on <b>{esc(content['evaluated_on'])}</b>. Marks: pass &ge; {PASS:.2f},
good &ge; {GOOD:.2f}, excellent &ge; {EXCELLENT:.2f} (BIBSNet model-creation guide).</p>
{setting}<p>Mean Dice over labels: <b>{content['mean_dice']}</b> ({content['grade']})</p>{infill_note}{image}
{_label_table(content)}{comparison}{ages}{_case_table(content)}
{extra}<h2>Metrics</h2><ul>{definitions}</ul><h2>Context</h2><ul>{context}</ul>{provenance_html(content.get("provenance"))}
</body></html>
"""
