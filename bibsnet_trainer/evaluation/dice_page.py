"""The Dice report's HTML page: what the figures are (one sentence), the tables per label, case and age
bin, the comparison with a previous model, the metric definitions, provenance."""
from __future__ import annotations

import html
import json
from pathlib import Path

from ..reports.figures import embed_png
from ..reports.page import html_page, section
from .metrics import EXCELLENT, GOOD, PASS
from .summary import UNKNOWN_AGE


METRIC_DEFINITIONS = {
    "dice": "2|P∩R| / (|P|+|R|) per label; absent from both maps: n/a",
    "hd95_mm": "95th-percentile symmetric Hausdorff distance in mm between label surfaces (larger of "
               "the two directed 95th percentiles); label in one map only: n/a; in neither: 0",
    "volume_diff_mm3": "predicted minus reference volume, mm³",
    "volume_diff_pct": "predicted minus reference volume, % of the reference volume",
}


def metric_definitions(with_hd95: bool, with_volumes: bool) -> dict[str, str]:
    wanted = {"dice", *(["hd95_mm"] if with_hd95 else []),
              *(["volume_diff_mm3", "volume_diff_pct"] if with_volumes else [])}
    return {k: v for k, v in METRIC_DEFINITIONS.items() if k in wanted}


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


def render_page(content: dict, png: bytes, title: str, figures=()) -> str:
    esc = html.escape
    extra = [section(caption, embed_png(png if isinstance(png, bytes) else Path(png).read_bytes(), caption))
             for caption, png in figures]
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
    summary = (f"{warning}<p>Evaluated on <b>{esc(content['evaluated_on'])}</b>. Marks: pass &ge; {PASS:.2f},\n"
               f"good &ge; {GOOD:.2f}, excellent &ge; {EXCELLENT:.2f} (BIBSNet model-creation guide).</p>\n"
               f"{setting}<p>Mean Dice over labels: <b>{content['mean_dice']}</b> ({content['grade']})</p>"
               f"{infill_note}{image}\n{_label_table(content)}")
    return html_page(title, heading, [summary, comparison, ages, _case_table(content), *extra,
                                      section("Metrics", f"<ul>{definitions}</ul>"),
                                      section("Context", f"<ul>{context}</ul>")],
                     provenance=content.get("provenance"))
