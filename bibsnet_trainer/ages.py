"""Age at scan, in months, read from a BIDS dataset as Nibabies reads it, and age bins.

Where: `sub-X[/ses-Y]/sub-X[_ses-Y]_scans.tsv` (row of the image), then `sub-X/sub-X_sessions.tsv`
(row of the session), then `participants.tsv` (row of the subject). Columns: `age_months`,
`age_weeks`, `age_years`, `age_days`, or `age` with its unit taken from the TSV's JSON sidecar
(`{"age": {"Units": "months"}}`); without a unit, months (Nibabies' assumption). `n/a` is no age.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from .errors import InputError

MONTHS_PER = {"months": 1.0, "month": 1.0, "mo": 1.0, "weeks": 12 / 52.1775, "week": 12 / 52.1775,
              "wk": 12 / 52.1775, "years": 12.0, "year": 12.0, "yr": 12.0, "y": 12.0,
              "days": 12 / 365.25, "day": 12 / 365.25, "d": 12 / 365.25}
UNIT_COLUMNS = {"age_months": "months", "age_weeks": "weeks", "age_years": "years", "age_days": "days"}
# Bins in months, as the infant templates and BIBSnet's models are cut (upper bound exclusive)
DEFAULT_BINS = ((0, 3), (3, 6), (6, 12), (12, 24), (24, 60), (60, 216), (216, 1200))


def _read_tsv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"unreadable TSV ({exc})", path) from None


def _sidecar_units(tsv: Path) -> str:
    sidecar = tsv.with_suffix(".json")
    if sidecar.is_file():
        try:
            units = json.loads(sidecar.read_text()).get("age", {}).get("Units")
        except (json.JSONDecodeError, AttributeError):
            units = None
        if units:
            return str(units).strip().lower()
    return "months"


def _age_from_row(row: dict[str, str], tsv: Path) -> float | None:
    for column, unit in [*UNIT_COLUMNS.items(), ("age", None)]:
        value = (row.get(column) or "").strip()
        if not value or value.lower() == "n/a":
            continue
        unit = unit or _sidecar_units(tsv)
        if unit not in MONTHS_PER:
            raise InputError(f"unknown age unit '{unit}' (use months, weeks, years or days)", tsv.with_suffix(".json"))
        try:
            return float(value) * MONTHS_PER[unit]
        except ValueError:
            raise InputError(f"age '{value}' in column {column} is not a number", tsv) from None
    return None


def _match(row: dict[str, str], column: str, value: str) -> bool:
    return (row.get(column) or "").strip() == value


def age_months(bids_dir: Path, subject: str, session: str | None = None,
               image: Path | None = None) -> float | None:
    """Age at scan in months, or None where the dataset does not say."""
    bids_dir = Path(bids_dir)
    sub = f"sub-{subject}"
    ses = f"ses-{session}" if session else None
    candidates: list[tuple[Path, str, str]] = []
    if image is not None:
        folder = bids_dir / sub / ses if ses else bids_dir / sub
        stem = f"{sub}_{ses}" if ses else sub
        rel = Path(image).resolve().relative_to(folder.resolve()).as_posix() if _inside(image, folder) else None
        if rel:
            candidates.append((folder / f"{stem}_scans.tsv", "filename", rel))
    if ses:
        candidates.append((bids_dir / sub / f"{sub}_sessions.tsv", "session_id", ses))
    candidates.append((bids_dir / "participants.tsv", "participant_id", sub))
    for tsv, column, value in candidates:
        if not tsv.is_file():
            continue
        for row in _read_tsv(tsv):
            if _match(row, column, value):
                age = _age_from_row(row, tsv)
                if age is not None:
                    return age
    return None


def _inside(path: Path, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def age_bin(age: float | None, bins=DEFAULT_BINS) -> str | None:
    """'3-6mo' style label of the bin holding `age` (months); None without an age."""
    if age is None:
        return None
    for low, high in bins:
        if low <= age < high:
            return f"{low}-{high}mo"
    return f"{bins[-1][1]}+mo" if age >= bins[-1][1] else f"<{bins[0][0]}mo"
