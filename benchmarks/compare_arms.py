#!/usr/bin/env python3
"""One markdown table for arms trained by the group level and scored by cross_site.py: per arm,
the training minutes and iterations (its Dice report), the in-site mean Dice on the held-out
subjects with white matter, cortex and lateral ventricles (left/right averaged), and the
cross-site figures (brain mask and aseg means per set, GM+WM of the other sites).

    python benchmarks/compare_arms.py NAME=GROUP_OUTPUT_DIR:CROSS_SITE_JSON [NAME=...]

GROUP_OUTPUT_DIR is the group level's output_dir (its reports/group_desc-dice_report.json)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

PAIRS = {"WM": ("Left-Cerebral-White-Matter", "Right-Cerebral-White-Matter"),
         "cortex": ("Left-Cerebral-Cortex", "Right-Cerebral-Cortex"),
         "lat. ventricles": ("Left-Lateral-Ventricle", "Right-Lateral-Ventricle")}
OTHER_SITES = ("mne", "nii2mesh", "icbm152")


def in_site(report: dict) -> dict:
    by_name = {r["name"]: r["mean_dice"] for r in report["labels"]}
    out = {"mean": report["mean_dice"]}
    out.update({k: float(np.mean([by_name[n] for n in names])) for k, names in PAIRS.items()})
    trained = report["training"].get("trained", {})
    out.update(minutes=trained.get("minutes"), iterations=trained.get("iterations"))
    return out


def cross(result: dict) -> dict:
    sets = result["sets"]

    def figure(name, metric):
        s = sets.get(name, {})
        return s["mean"][metric] if s.get("status") == "scored" else None

    others = [figure(n, "gm_wm") for n in OTHER_SITES if figure(n, "gm_wm") is not None]
    return {"whole-head aseg": figure("whole_head", "aseg_mean"),
            "skull-stripped aseg": figure("skull_stripped", "aseg_mean"),
            "raw-like aseg": figure("raw_like", "aseg_mean"), "inverted aseg": figure("inverted", "aseg_mean"),
            "5 mm slices aseg": figure("thick_slices", "aseg_mean"), "3 mm aseg": figure("iso3mm", "aseg_mean"),
            "MNE aseg / mask": (figure("mne", "aseg_mean"), figure("mne", "mask")),
            "nii2mesh GM+WM": figure("nii2mesh", "gm_wm"), "ICBM152 GM+WM": figure("icbm152", "gm_wm"),
            "other sites GM+WM": float(np.mean(others)) if others else None}


def cell(value) -> str:
    if isinstance(value, tuple):
        return " / ".join(cell(v) for v in value)
    if value is None:
        return "—"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def main() -> int:
    rows = []
    for spec in sys.argv[1:]:
        name, paths = spec.split("=", 1)
        group, cross_json = paths.split(":", 1)
        report = json.loads((Path(group) / "reports" / "group_desc-dice_report.json").read_text())
        rows.append((name, in_site(report), cross(json.loads(Path(cross_json).read_text()))))
    if not rows:
        print(__doc__)
        return 2
    first = rows[0]
    header = ["arm", "training", "in-site mean (1 mm)", *PAIRS, *first[2]]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, site, other in rows:
        training = f"{site['minutes']:.1f} min, {site['iterations']:,} it.".replace(",", "\u202f")
        cells = [name, training, cell(site["mean"]), *(cell(site[k]) for k in PAIRS), *(cell(v) for v in other.values())]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
