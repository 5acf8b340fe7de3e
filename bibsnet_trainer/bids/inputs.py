"""Find and validate the inputs: T1w/T2w images in a BIDS dataset and aseg label maps in its
derivatives, through one pybids layout. Everything is checked before any work starts; each problem
is an InputError naming the file."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib

from .ages import age_months
from ..errors import InputError
from ..images import load_volume, same_grid
from ..geometry import world_offset_mm

LOG = logging.getLogger(__name__)
MODALITIES = ("T1w", "T2w")
NIFTI_EXTENSIONS = [".nii.gz", ".nii"]


@dataclass
class Session:
    """One subject/session: its anatomical images and (optionally) its aseg label map."""

    subject: str
    session: str | None
    images: dict[str, Path] = field(default_factory=dict)   # modality -> path
    label_map: Path | None = None
    label_space: str | None = None                            # T1w / T2w the label map lives in
    age_months: float | None = None                           # age at scan, read once from the dataset

    @property
    def key(self) -> str:
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")


def _read_description(path: Path) -> dict:
    if not path.is_file():
        raise InputError("missing dataset_description.json (required by BIDS)", path)
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"invalid JSON ({exc})", path) from None
    if not isinstance(description, dict) or "Name" not in description:
        raise InputError("dataset_description.json must be an object with a 'Name'", path)
    if not isinstance(description["Name"], str):
        raise InputError(f"'Name' must be a string, found {json.dumps(description['Name'])}", path)
    return description


def dataset_name(bids_dir: Path) -> str:
    """The dataset's Name (its dataset_description.json), which reports name the data by."""
    return str(_read_description(Path(bids_dir) / "dataset_description.json")["Name"])


def find_derivatives(bids_dir: Path, extra: dict[str, Path] | None = None) -> dict[str, Path]:
    """Derivative datasets: every folder of bids_dir/derivatives plus those given by name."""
    found: dict[str, Path] = {}
    deriv_root = bids_dir / "derivatives"
    if deriv_root.is_dir():
        for folder in sorted(p for p in deriv_root.iterdir() if p.is_dir()):
            if (folder / "dataset_description.json").exists():
                found[folder.name] = folder
    for name, path in (extra or {}).items():
        if not Path(path).is_dir():
            raise InputError("derivatives folder does not exist", path)
        found[name] = Path(path)
    for path in found.values():
        description = _read_description(path / "dataset_description.json")
        generated = description.get("GeneratedBy") or [description.get("PipelineDescription") or {}]
        if not (isinstance(generated, list) and generated and isinstance(generated[0], dict)
                and generated[0].get("Name")):
            raise InputError("derivative dataset_description.json needs GeneratedBy with a Name "
                             '(e.g. "GeneratedBy": [{"Name": "FreeSurfer"}])', path / "dataset_description.json")
    return found


def build_layout(bids_dir: Path, derivatives: dict[str, Path], validate: bool):
    from bids import BIDSLayout  # imported here: pybids is slow to import

    _read_description(bids_dir / "dataset_description.json")
    try:
        return BIDSLayout(str(bids_dir), validate=validate, derivatives=[str(p) for p in derivatives.values()])
    except Exception as exc:  # pybids raises several types for malformed datasets
        broken = _broken_json([bids_dir, *derivatives.values()])
        if broken:     # pybids does not always say which file (a sidecar that is a list)
            raise InputError(*broken) from None
        raise InputError(f"cannot index the BIDS dataset ({exc})", bids_dir) from None


def _broken_json(roots: list[Path]) -> tuple[str, Path] | None:
    """The first JSON file pybids reads that is not a JSON object, as (problem, path); None if none.
    Hidden folders and those pybids skips (code, sourcedata, ...) are not read."""
    for root in roots:
        for path in sorted(Path(root).rglob("*.json")):
            parts = path.relative_to(root).parts
            if parts[0] in ("code", "sourcedata", "stimuli", "models") or any(p.startswith(".") for p in parts):
                continue
            try:
                content = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                return f"invalid JSON ({exc})", path
            except OSError:
                continue
            if not isinstance(content, dict):
                return f"a JSON sidecar must be an object, found a {type(content).__name__}", path
    return None


def _strip(label: str, prefix: str = "sub-") -> str:
    return label.removeprefix(prefix)


def _pick_one(files: list, what: str):
    files = sorted(files, key=lambda f: f.path)
    if len(files) > 1:
        LOG.warning("%d %s files found; using %s (select another with --bids-filter-file)",
                    len(files), what, Path(files[0].path).name)
    return Path(files[0].path) if files else None


def collect_sessions(layout, *, participant_labels=None, session_ids=None, bids_filters=None,
                     need_labels: bool = False, need_images: bool = False, strict_ages: bool = True) -> list[Session]:
    """Query images, label maps and ages per subject/session. Raises InputError for unknown labels,
    and for an unreadable age unless `strict_ages` is False (then the age is unknown, with a warning)."""
    bids_filters = bids_filters or {}
    subjects = sorted(layout.get_subjects())
    if not subjects:
        raise InputError("no subjects found (no sub-* folders with data)", layout.root)
    if participant_labels:
        wanted = [_strip(p) for p in participant_labels]
        missing = [p for p in wanted if p not in subjects]
        if missing:
            raise InputError(f"participant label(s) not found: {', '.join('sub-' + m for m in missing)}",
                             layout.root)
        subjects = wanted
    if session_ids:
        wanted_sessions = [_strip(s, "ses-") for s in session_ids]
        found = {s for subject in subjects for s in layout.get_sessions(subject=subject)}
        if not found & set(wanted_sessions):
            raise InputError(f"--session-id {' '.join(wanted_sessions)} matches no session of the selected "
                             f"participants (sessions found: {', '.join(sorted(found)) or 'none'})", layout.root)
        session_ids = wanted_sessions
    _check_age_tables(layout, subjects, strict_ages)
    sessions: list[Session] = []
    for subject in subjects:
        all_ses = layout.get_sessions(subject=subject) or [None]
        if session_ids:
            all_ses = [s for s in all_ses if s in session_ids]
        for ses in all_ses:
            query = {"subject": subject, "extension": NIFTI_EXTENSIONS}
            if ses is not None:
                query["session"] = ses
            record = Session(subject, ses)
            for modality in MODALITIES:
                filters = {"datatype": "anat", **bids_filters.get(modality.lower(), {})}
                image = _pick_one(layout.get(scope="raw", suffix=modality, **query, **filters),
                                  f"{record.key} {modality}")
                if image is not None:
                    record.images[modality] = image
            # invalid_filters: a dataset without derivatives does not know the 'desc' entity
            labels = layout.get(scope="derivatives", suffix="dseg", desc="aseg", invalid_filters="allow", **query)
            record.label_map = _pick_one(labels, f"{record.key} aseg")
            if record.label_map is not None:
                record.label_space = layout.parse_file_entities(str(record.label_map)).get("space")
            if record.images or record.label_map:
                record.age_months = _session_age(layout, record, strict_ages)
                sessions.append(record)
    if need_labels and not any(s.label_map for s in sessions):
        if participant_labels or session_ids:
            everywhere = layout.get(scope="derivatives", suffix="dseg", desc="aseg", invalid_filters="allow",
                                    extension=NIFTI_EXTENSIONS)
            having = sorted({layout.parse_file_entities(str(f)).get("subject") for f in everywhere} - {None})
            if having:
                raise InputError("the selected participants/sessions have no label map (*_desc-aseg_dseg); "
                                 f"label maps exist for {', '.join('sub-' + s for s in having)}", layout.root)
        raise InputError("no label maps (*_desc-aseg_dseg.nii.gz) found in derivatives; "
                         "give their folder with --derivatives NAME=PATH", layout.root)
    if need_images and not any(s.images for s in sessions):
        if bids_filters:
            raise InputError(f"no T1w or T2w image matches the --bids-filter-file filters {json.dumps(bids_filters)} "
                             "for the selected participants", layout.root)
        raise InputError("no T1w or T2w images found for the selected participants", layout.root)
    return sessions


def _session_age(layout, record: Session, strict: bool) -> float | None:
    try:
        return age_months(layout, record.subject, record.session, next(iter(record.images.values()), None))
    except InputError as exc:
        if strict:
            raise
        LOG.warning("%s: age unknown (%s); brain volume checked against the range for any age", record.key, exc)
        return None


AGE_TABLES = {"participants": "participant_id", "sessions": "session_id", "scans": "filename"}


def _check_age_tables(layout, subjects: list[str], strict: bool) -> None:
    """The participants, sessions and scans tables ages are read from, checked before any is read
    (a lookup takes the first row with its key, and skips a table without the key column):
    refused when `strict`, otherwise a warning."""
    for tsv in layout.get(scope="raw", suffix=list(AGE_TABLES), extension=".tsv"):
        if tsv.entities.get("subject") not in (None, *subjects):
            continue
        problem = _table_problem(Path(tsv.path), AGE_TABLES[tsv.entities["suffix"]])
        if problem and strict:
            raise InputError(*problem)
        if problem:
            LOG.warning("%s: %s; ages read from it may be wrong", problem[1], problem[0])


def _table_problem(path: Path, key: str) -> tuple[str, Path] | None:
    """Why a table cannot say whose row is whose, as (problem, path of the file at fault): not
    UTF-8 text, no key column, a row of another length than the header, one key on rows that
    disagree, a column description in its JSON sidecar that is not an object; None if none."""
    try:
        lines = [(n, line.split("\t")) for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1)
                 if line.strip()]
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text ({exc})", path
    if not lines:
        return "empty table (a header row is needed)", path
    header = [column.strip() for column in lines[0][1]]
    if key not in header:
        return f"no {key} column (columns: {', '.join(header)})", path
    rows: dict[str, list[str]] = {}
    for number, row in lines[1:]:
        if len(row) > len(header) and not "".join(row[len(header):]).strip():
            row = row[:len(header)]   # trailing tabs, as spreadsheets write them: harmless
        if len(row) != len(header):
            return f"line {number} has {len(row)} fields, the header {len(header)}", path
        if rows.setdefault(row[header.index(key)].strip(), row) != row:
            return f"{key} {row[header.index(key)].strip()} is on several rows that disagree", path
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            described = json.loads(sidecar.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return f"invalid JSON ({exc})", sidecar
        for column in header:
            if isinstance(described, dict) and column in described and not isinstance(described[column], dict):
                return (f"the description of column {column} must be an object (e.g. {{\"Units\": \"months\"}}), "
                        f"found {json.dumps(described[column])}"), sidecar
    return None


@dataclass
class LoadedSession:
    """A session's files as read (and checked) once: images by modality, the label map."""
    images: dict[str, nib.Nifti1Image]
    labels: nib.Nifti1Image | None
    warnings: list[str] = field(default_factory=list)   # suspicious but usable ("file: what"), for QC


def validate_session(record: Session) -> LoadedSession:
    """Load every file once: 3D, readable, finite; label map integer, non-empty, on its image's
    grid. Returns what it loaded, so the caller need not read the files again."""
    warnings: list[str] = []
    images = {m: load_volume(p, kind="image", warnings=warnings) for m, p in record.images.items()}
    if len(images) == 2 and not same_grid(images["T1w"], images["T2w"]):
        warnings.append("T1w and T2w are on different grids")
    if record.label_map is None:
        return LoadedSession(images, None, warnings)
    labels = load_volume(record.label_map, kind="label", warnings=warnings)
    space = record.label_space or ("T1w" if "T1w" in images else "T2w")
    reference = images.get(space)
    if reference is not None and not same_grid(reference, labels):
        if tuple(reference.shape[:3]) == tuple(labels.shape[:3]):
            raise InputError(f"label map has the shape of its {space} image {record.images[space].name} but lies "
                             f"elsewhere in the world (up to {world_offset_mm(reference, labels):.1f} mm apart)",
                             record.label_map)
        raise InputError(
            f"label map grid (shape {labels.shape}) does not match its {space} image "
            f"{record.images[space].name} (shape {reference.shape})", record.label_map)
    if len(images) == 2 and not same_grid(images["T1w"], images["T2w"]):
        LOG.warning("%s: T1w and T2w are on different grids; only the label map's space is used", record.key)
    return LoadedSession(images, labels, warnings)
