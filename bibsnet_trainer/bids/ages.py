"""Age at scan, in months, read from a BIDS dataset (through its pybids layout) as Nibabies reads
it, and age bins.

Where: `sub-X[/ses-Y]/sub-X[_ses-Y]_scans.tsv` (row of the image), then `sub-X/sub-X_sessions.tsv`
(row of the session), then `participants.tsv` (row of the subject). Columns: `age_months`,
`age_weeks`, `age_years`, `age_days`, or `age` with its unit taken from the TSV's JSON sidecar
(`{"age": {"Units": "months"}}`); without a unit, months (Nibabies' assumption). `n/a` is no age.
"""
from __future__ import annotations

import math
from pathlib import Path

from ..errors import InputError

MONTHS_PER = {"months": 1.0, "month": 1.0, "mo": 1.0, "weeks": 12 / 52.1775, "week": 12 / 52.1775,
              "wk": 12 / 52.1775, "years": 12.0, "year": 12.0, "yr": 12.0, "y": 12.0,
              "days": 12 / 365.25, "day": 12 / 365.25, "d": 12 / 365.25}
UNIT_COLUMNS = {"age_months": "months", "age_weeks": "weeks", "age_years": "years", "age_days": "days"}
# Bins in months, as the infant templates and BIBSnet's models are cut (upper bound exclusive)
DEFAULT_BINS = ((0, 3), (3, 6), (6, 12), (12, 24), (24, 60), (60, 216), (216, 1200))


def _units(layout, tsv) -> str:
    """The age column's unit from the TSV's JSON sidecar (pybids' metadata), months without one."""
    try:
        units = (layout.get_metadata(tsv.path).get("age") or {}).get("Units")
    except (AttributeError, ValueError):
        units = None
    return str(units).strip().lower() if units else "months"


def _rows(tsv) -> list[dict]:
    try:
        return tsv.get_df().to_dict("records")
    except Exception as exc:  # pandas raises several types for a malformed TSV
        raise InputError(f"unreadable TSV ({exc})", tsv.path) from None


def _age_from_row(row: dict, column_units: dict[str, str], where: Path) -> float | None:
    for column, unit in column_units.items():
        value = row.get(column)
        if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() in ("", "n/a"):
            continue
        if unit not in MONTHS_PER:
            raise InputError(f"unknown age unit '{unit}' (use months, weeks, years or days)", where.with_suffix(".json"))
        try:
            return float(value) * MONTHS_PER[unit]
        except ValueError:
            raise InputError(f"age '{value}' in column {column} is not a number", where) from None
    return None


def age_months(layout, subject: str, session: str | None = None, image: Path | None = None) -> float | None:
    """Age at scan in months, read through the dataset's pybids layout; None where it does not say."""
    from bids.layout import Query

    lookups = []
    if image is not None:
        lookups.append(("scans", {"subject": subject, "session": session or Query.NONE}, "filename", Path(image)))
    if session:
        lookups.append(("sessions", {"subject": subject}, "session_id", f"ses-{session}"))
    lookups.append(("participants", {}, "participant_id", f"sub-{subject}"))
    for suffix, entities, column, value in lookups:
        for tsv in layout.get(scope="raw", suffix=suffix, extension=".tsv", **entities):
            where, wanted = Path(tsv.path), value
            if suffix == "scans":   # its rows name images relative to the session folder
                if not _inside(value, where.parent):
                    continue
                wanted = Path(value).resolve().relative_to(where.parent.resolve()).as_posix()
            column_units = {**UNIT_COLUMNS, "age": _units(layout, tsv)}
            for row in _rows(tsv):
                if str(row.get(column, "")).strip() == wanted:
                    age = _age_from_row(row, column_units, where)
                    if age is not None:
                        return age
    return None


def _inside(path: Path, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _bin_labels(bins=DEFAULT_BINS) -> list[str]:
    """Every label `age_bin` can give, youngest first."""
    return [f"<{bins[0][0]}mo", *(f"{low}-{high}mo" for low, high in bins), f"{bins[-1][1]}+mo"]


def age_bin(age: float | None, bins=DEFAULT_BINS) -> str | None:
    """'3-6mo' style label of the bin holding `age` (months); None without an age."""
    if age is None:
        return None
    labels = _bin_labels(bins)
    if age < bins[0][0]:
        return labels[0]
    for (low, high), label in zip(bins, labels[1:-1]):
        if low <= age < high:
            return label
    return labels[-1]


def bin_order(label: str, bins=DEFAULT_BINS) -> int:
    """Where a bin label falls in age order (labels of other bins last), without parsing it."""
    labels = _bin_labels(bins)
    return labels.index(label) if label in labels else len(labels)
