"""Dice reports: JSON and TSV for machines, an HTML page with figures for people.

Marks follow the BIBSNet model-creation guide: pass >= 0.80, good >= 0.90, excellent >= 0.95.
Every report states what it was computed on; Dice on synthetic images is labelled as such.

Besides Dice, a report may carry per subject and label the 95th-percentile Hausdorff distance and the
volume difference (metrics.py), Dice per age bin, a paired comparison against a previous model
(compare.py) and label-outline overlays of the best and the worst subject (`write_overlay_png`)."""
from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..images import write_bytes_atomic, write_text_atomic
from ..labels import label_name
from .metrics import EXCELLENT, GOOD, PASS, grade
from .dice_figures import dice_boxplot_png
from .dice_page import metric_definitions, render_page
from .summary import (Reference, age_bin_summary, best_and_worst_cases, case_means, label_summary, mean_over_labels,


                      report_rows, rounded)


TSV_COLUMNS = ("case", "label", "name", "dice", "grade", "hd95_mm", "volume_diff_mm3", "volume_diff_pct")


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
               "mean_dice": rounded(overall, 4), "grade": grade(overall),
               "metrics": metric_definitions(bool(hd95), bool(volume_differences)),
               "labels": summary, "cases": rows,
               "case_means": [{"case": c, "mean_dice": rounded(m, 4), "grade": grade(m),
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
    write_text_atomic(paths["html"], render_page(content, png, title, [*overlay_figures, *figures]))
    return DiceReport(paths, content)


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
        chosen[role] = {"case": case, "mean_dice": rounded(means[case], 4), "png": target.name}
        figures.append((f"{role.capitalize()} case: {case} (mean Dice {means[case]:.3f})", target))
    content["overlays"] = chosen
    return figures


def _tsv(rows: list[dict]) -> str:
    def cell(value):
        return "n/a" if value is None else str(value)
    lines = ["\t".join(TSV_COLUMNS)] + ["\t".join(cell(r[c]) for c in TSV_COLUMNS) for r in rows]
    return "\n".join(lines) + "\n"
