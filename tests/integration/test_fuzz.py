"""Fuzz test of bad input: a seeded generator damages one valid tiny dataset in many ways (NIfTI
header fields, truncation at random offsets, corrupt gzip streams, zero-byte files, sidecars and
TSVs with a byte-order mark, another encoding, missing columns, wrong types, duplicate and ragged
rows, broken label maps), the command line runs on each damaged copy, and every case must end with
a documented exit code, no traceback, the damaged file named in the one error line when it is
refused, and the input tree byte-identical. A damage is tolerated (exit 0) only where the case
table says so, and then the inputs must read exactly as the undamaged dataset's.

The group level runs up to its training data (`--synthesize-only`); a handful of cases run
the participant level too, where a damaged image fails its session alone (exit 1) and the other
sessions are written. The kinds covered are listed in docs/usage.md ("What bad input gets")."""
from __future__ import annotations

import gzip
import hashlib
import importlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pytest

from bibsnet_trainer.cli.run import main
from conftest import ROOT, tree_digest
from phantoms import phantom_labels, phantom_t1w, ras_affine, write_description

SEED = 20240607
SHAPE = (16, 20, 16)          # tiny (3 mm voxels), every structure of the phantom still there
_EXIT_CODES = (ROOT / "docs" / "usage.md").read_text(encoding="utf-8").split("## Exit codes")[1].split("\n#")[0]
DOCUMENTED_EXIT_CODES = {int(code) for code in re.findall(r"`(\d+)`", _EXIT_CODES)}   # 0 1 64 65 73 74 130

# the files of the dataset (relative to its root)
T1W = "sub-01/anat/sub-01_T1w.nii.gz"
T1W_JSON = "sub-01/anat/sub-01_T1w.json"
SCANS = "sub-01/sub-01_scans.tsv"
T1W_SES = "sub-02/ses-1/anat/sub-02_ses-1_T1w.nii.gz"
SESSIONS = "sub-02/sub-02_sessions.tsv"
LABELS = "derivatives/labels/sub-01/anat/sub-01_space-T1w_desc-aseg_dseg.nii.gz"
LABELS_ONLY = "derivatives/labels/sub-03/anat/sub-03_space-T1w_desc-aseg_dseg.nii.gz"
DESCRIPTION = "dataset_description.json"
DERIVATIVE_DESCRIPTION = "derivatives/labels/dataset_description.json"
PARTICIPANTS = "participants.tsv"
PARTICIPANTS_JSON = "participants.json"

PARTICIPANTS_TEXT = "participant_id\tage\tsite\nsub-01\t2\tA\nsub-02\t7\tA\nsub-03\t14\tB\n"
SESSIONS_TEXT = "session_id\tage\nses-1\t5\n"
SCANS_TEXT = "filename\tage\nanat/sub-01_T1w.nii.gz\t3\n"


def _write_dataset(root: Path) -> Path:
    """sub-01: a T1w (with a JSON sidecar, its age in scans.tsv) and its label map; sub-02: one
    session, a T1w and its label map (age in sessions.tsv); sub-03: a label map only (age in
    participants.tsv, whose unit is in participants.json)."""
    bids = write_description(root, "fuzz")
    derivative = write_description(bids / "derivatives" / "labels", "labels", derivative_of="manual")
    for seed, (folder, stem, image) in enumerate([("sub-01", "sub-01", True), ("sub-02/ses-1", "sub-02_ses-1", True),
                                                   ("sub-03", "sub-03", False)]):
        labels = phantom_labels(SHAPE, seed=seed)
        affine = ras_affine(3.0, SHAPE)
        if image:
            (bids / folder / "anat").mkdir(parents=True)
            nib.save(nib.Nifti1Image(phantom_t1w(labels, seed=seed), affine), bids / folder / "anat" / f"{stem}_T1w.nii.gz")
        (derivative / folder / "anat").mkdir(parents=True)
        nib.save(nib.Nifti1Image(labels.astype(np.int16), affine),
                 derivative / folder / "anat" / f"{stem}_space-T1w_desc-aseg_dseg.nii.gz")
    (bids / T1W_JSON).write_text(json.dumps({"RepetitionTime": 2.4, "EchoTime": 0.003, "FlipAngle": 8}))
    (bids / PARTICIPANTS).write_text(PARTICIPANTS_TEXT)
    (bids / PARTICIPANTS_JSON).write_text(json.dumps({"age": {"Description": "age at scan", "Units": "months"}}))
    (bids / SESSIONS).write_text(SESSIONS_TEXT)
    (bids / SCANS).write_text(SCANS_TEXT)
    return bids


# ----------------------------------------------------------------------------- damage: NIfTI

def _nii(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.name.endswith(".gz") else raw


def _write_nii(path: Path, raw: bytes) -> None:
    path.write_bytes(gzip.compress(raw, mtime=0) if path.name.endswith(".gz") else raw)


def header(**fields) -> Callable[[Path], None]:
    """Overwrite header fields in the file itself (`field=value`, or `field=(index, value)` for one
    element of an array field, `field=("times", k)` to scale it), as a damaged conversion leaves them: nibabel would rewrite them
    from the image on saving."""
    def damage(path: Path) -> None:
        raw = _nii(path)
        hdr = nib.Nifti1Header(raw[:348], check=False)
        for name, value in fields.items():
            if isinstance(value, tuple):
                array = hdr[name].copy()
                if value[0] == "times":
                    array = array * value[1]
                else:
                    array[value[0]] = value[1]
                value = array
            hdr[name] = value
        _write_nii(path, hdr.binaryblock + raw[348:])
    return damage


def raw_bytes(offset: int, data: bytes) -> Callable[[Path], None]:
    """Overwrite bytes of the decompressed file (fields nibabel's header object will not take)."""
    def damage(path: Path) -> None:
        raw = bytearray(_nii(path))
        raw[offset:offset + len(data)] = data
        _write_nii(path, bytes(raw))
    return damage


def truncate_gz(fraction: float) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        raw = path.read_bytes()
        path.write_bytes(raw[:int(len(raw) * fraction)])
    return damage


def truncate_nii(fraction: float) -> Callable[[Path], None]:
    """Truncate the decompressed NIfTI, then compress it again: a valid gzip stream of a short file."""
    def damage(path: Path) -> None:
        raw = _nii(path)
        _write_nii(path, raw[:int(len(raw) * fraction)])
    return damage


def flip_gz(fraction: float, xor: int) -> Callable[[Path], None]:
    """Flip bits of one byte inside the deflate stream (between the gzip header and its trailer)."""
    def damage(path: Path) -> None:
        raw = bytearray(path.read_bytes())
        at = 10 + int((len(raw) - 18) * fraction)
        raw[at] ^= xor
        path.write_bytes(bytes(raw))
    return damage


def gz_trailer(which: str) -> Callable[[Path], None]:
    """A wrong CRC-32 or ISIZE in the gzip trailer: the data decompress, the check fails."""
    def damage(path: Path) -> None:
        raw = bytearray(path.read_bytes())
        at = len(raw) - (8 if which == "crc" else 4)
        raw[at:at + 4] = (int.from_bytes(raw[at:at + 4], "little") ^ 0x5A5A5A5A).to_bytes(4, "little")
        path.write_bytes(bytes(raw))
    return damage


def gz_magic(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[0:2] = b"PK"
    path.write_bytes(bytes(raw))


def zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def resaved(change: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]) -> Callable[[Path], None]:
    """Save the file again with its data and affine changed (a broken label map as a tool writes it)."""
    def damage(path: Path) -> None:
        img = nib.load(path)
        data, affine = change(np.asarray(img.dataobj).copy(), img.affine.copy())
        nib.save(nib.Nifti1Image(data, affine), path)
    return damage


def _fractional(data, affine):
    data = data.astype(np.float32)
    data[data == 2] = 2.5
    return data, affine


def _negative(data, affine):
    data[data == 4] = -4
    return data, affine


def _shifted(mm):
    def change(data, affine):
        affine[:3, 3] += mm
        return data, affine
    return change


def _cropped(data, affine):
    return data[1:], affine


# ----------------------------------------------------------------------------- damage: text files

def text(content: str, encoding: str = "utf-8", bom: bool = False) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + content.encode(encoding))
    return damage


def edited(edit: Callable[[str], str], encoding: str = "utf-8", bom: bool = False) -> Callable[[Path], None]:
    """The file's text changed by `edit`, written back in `encoding` (with a UTF-8 BOM)."""
    def damage(path: Path) -> None:
        text(edit(path.read_text(encoding="utf-8")), encoding, bom)(path)
    return damage


def json_edit(edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        content = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps(edit(content)))
    return damage


def truncate_text(fraction: float) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        raw = path.read_bytes()
        path.write_bytes(raw[:max(1, int(len(raw) * fraction))])
    return damage


def _with(key, value):
    return lambda d: {**d, key: value}


def _without(key):
    return lambda d: {k: v for k, v in d.items() if k != key}


# ----------------------------------------------------------------------------- the cases

@dataclass(frozen=True)
class Case:
    id: str
    target: str                          # the damaged file, relative to the dataset's root
    damage: Callable[[Path], None]
    code: int = 65                       # the expected exit code; 0: the damage is tolerated (harmless)
    words: str = ""                      # in the error line (refused) or a warning (tolerated)
    named: str = "path"                  # how the error line names the file: its path, or its name


def make_cases(rng: np.random.Generator) -> list[Case]:
    """Every damage, its random parameters (axes, values, offsets, bytes) drawn from `rng`: one seed,
    the same cases every run. `code=0` marks the damages expected to be tolerated, with why."""
    def axis():
        return int(rng.integers(1, 4))

    def fraction(low=0.05, high=0.95):
        return round(float(rng.uniform(low, high)), 3)

    cases = []

    def add(*args, **kwargs):
        cases.append(Case(*args, **kwargs))

    # NIfTI header fields: dim, pixdim, datatype/bitpix, vox_offset, sform/qform, scaling, magic
    a, b, n = axis(), axis(), int(rng.integers(1100, 30000))
    add("t1w-dim0-zero", T1W, header(dim=(0, 0)))
    add(f"t1w-dim{a}-negative", T1W, header(dim=(a, -int(rng.integers(2, 40)))))
    add(f"t1w-dim{b}-{n}", T1W, header(dim=(b, n)))
    a, b, c = axis(), axis(), axis()
    add(f"t1w-pixdim{a}-zero", T1W, header(pixdim=(a, 0.0)), code=0)      # nibabel reads 1; the sform holds
    add(f"t1w-pixdim{b}-negative", T1W, header(pixdim=(b, -3.0)), code=0)  # nibabel reads 3; the sform holds
    add(f"t1w-pixdim{c}-nan", T1W, header(pixdim=(c, np.nan)), words="voxel sizes")
    add("t1w-datatype-int16-bitpix-32", T1W, header(datatype=4), words="bitpix")
    add("t1w-bitpix-8-datatype-float32", T1W, header(bitpix=8), words="bitpix")
    add("t1w-datatype-complex64", T1W, header(datatype=32, bitpix=64), words="real scalars")
    add("t1w-vox_offset-beyond-file", T1W, header(vox_offset=float(rng.integers(10**5, 10**7))))
    # without a usable sform the grid leaves its label map's: refused naming both, the label map's path
    add("t1w-sform-and-qform-codes-zero", T1W, header(sform_code=0, qform_code=0), named="name")
    row = "xyz"[axis() - 1]
    add(f"t1w-srow_{row}-nan", T1W, header(**{f"srow_{row}": (int(rng.integers(0, 4)), np.nan)}), words="NaN or Inf")
    row = "xyz"[axis() - 1]
    add(f"t1w-srow_{row}-zero", T1W, header(**{f"srow_{row}": np.zeros(4)}), words="singular")
    row, scale = "xyz"[axis() - 1], round(float(rng.uniform(1.3, 2.0)), 2)
    add(f"t1w-srow_{row}-scaled-{scale}", T1W, header(**{f"srow_{row}": ("times", scale)}), named="name")
    add("t1w-qform-disagrees", T1W, header(qform_code=1, quatern_b=0.0, quatern_c=0.0, quatern_d=0.0,
                                            qoffset_x=float(rng.uniform(20, 60))),
        code=0, words="sform and qform disagree")                            # the sform is used: a warning
    add("t1w-scl_slope-zero", T1W, header(scl_slope=0.0, scl_inter=0.0), code=0)   # the NIfTI rule: no scaling
    add("t1w-scl_inter-inf", T1W, header(scl_slope=1.0, scl_inter=np.inf), words="inter")
    add("t1w-scl_inter-nan", T1W, header(scl_slope=float(rng.uniform(0.5, 2)), scl_inter=np.nan), words="inter")
    add("t1w-magic-garbage", T1W, raw_bytes(344, bytes(rng.integers(97, 123, 3, dtype=np.uint8)) + b"\0"))
    add("t1w-sizeof_hdr-wrong", T1W, raw_bytes(0, int(rng.integers(400, 10000)).to_bytes(4, "little")),
        code=0)                                                               # nibabel reads the header all the same
    add("labels-scl_slope-half", LABELS, header(scl_slope=0.5, scl_inter=0.0), words="non-integer")
    # truncation at random offsets, of the .nii.gz and of the NIfTI inside a valid gzip stream
    f = fraction()
    add(f"t1w-gz-truncated-at-{f:.0%}", T1W, truncate_gz(f))
    n = int(rng.integers(40, 348))
    add(f"t1w-nii-truncated-in-header-at-{n}-bytes", T1W, lambda p, n=n: _write_nii(p, _nii(p)[:n]))
    f = fraction(0.2, 0.98)
    add(f"t1w-nii-truncated-at-{f:.0%}", T1W, truncate_nii(f))
    # a corrupt gzip stream: flipped bits inside it, a wrong CRC or length in its trailer
    f, x = fraction(0.3, 0.7), int(rng.integers(1, 256))
    add(f"t1w-gz-byte-flipped-at-{f:.0%}", T1W, flip_gz(f, x))
    f, x = fraction(0.3, 0.7), int(rng.integers(1, 256))
    add(f"labels-only-gz-byte-flipped-at-{f:.0%}", LABELS_ONLY, flip_gz(f, x))
    add("t1w-gz-bad-crc", T1W, gz_trailer("crc"), words="CRC")
    add("t1w-gz-bad-isize", T1W, gz_trailer("isize"), words="length")
    # zero-byte files
    for target in (T1W, LABELS, DESCRIPTION, PARTICIPANTS, T1W_JSON):
        add(f"zero-bytes-{Path(target).name}", target, zero_bytes)
    # label maps: float non-integers, negative, off-grid, another grid
    add("labels-float-non-integer", LABELS, resaved(_fractional), words="non-integer")
    add("labels-only-negative", LABELS_ONLY, resaved(_negative), words="negative")
    mm = round(float(rng.uniform(2, 30)), 1)
    add(f"labels-off-grid-by-{mm}mm", LABELS, resaved(_shifted(mm)), words="elsewhere in the world")
    add("labels-other-shape", LABELS, resaved(_cropped), words="does not match")
    # dataset_description.json: BOM, other encodings, invalid JSON, wrong types, missing fields
    add("description-bom", DESCRIPTION, edited(lambda s: s, bom=True), words="BOM")
    add("description-latin1", DESCRIPTION, text(json.dumps({"Name": "Études bébé", "BIDSVersion": "1.9.0"},
                                                           ensure_ascii=False), "latin-1"))
    add("description-utf16", DESCRIPTION, text(json.dumps({"Name": "fuzz", "BIDSVersion": "1.9.0"}), "utf-16"))
    f = fraction(0.2, 0.9)
    add(f"description-truncated-at-{f:.0%}", DESCRIPTION, truncate_text(f))
    add("description-name-a-list", DESCRIPTION, json_edit(_with("Name", ["fuzz", "data"])), words="string")
    add("description-bidsversion-missing", DESCRIPTION, json_edit(_without("BIDSVersion")), words="BIDSVersion")
    add("description-an-array", DESCRIPTION, json_edit(lambda d: [d]))
    add("derivative-description-generatedby-a-string", DERIVATIVE_DESCRIPTION,
        json_edit(_with("GeneratedBy", "manual")), words="GeneratedBy")
    # participants.tsv, sessions.tsv, scans.tsv: BOM, another encoding, missing columns, wrong
    # types, duplicate and ragged rows; the age column's description in participants.json
    add("participants-bom", PARTICIPANTS, edited(lambda s: s, bom=True), code=0)   # read as without it
    add("participants-latin1", PARTICIPANTS, edited(lambda s: s.replace("\tB\n", "\tMontréal\n"), "latin-1"),
        words="UTF-8")
    add("participants-no-participant_id-column", PARTICIPANTS, edited(lambda s: s.replace("participant_id", "subject")),
        words="no participant_id column")
    add("participants-age-not-a-number", PARTICIPANTS, edited(lambda s: s.replace("sub-03\t14", "sub-03\tfourteen")),
        words="not a number")
    add("participants-duplicate-row", PARTICIPANTS, edited(lambda s: s + "sub-03\t14\tB\n"), code=0)  # same facts
    add("participants-duplicate-subject-other-age", PARTICIPANTS, edited(lambda s: s + "sub-03\t30\tB\n"),
        words="several rows")
    add("participants-ragged-row-long", PARTICIPANTS, edited(lambda s: s.replace("sub-02\t7\tA", "sub-02\t7\tA\tx")),
        words="fields")
    add("participants-trailing-tabs", PARTICIPANTS, edited(lambda s: s.replace("\n", "\t\n")), code=0)  # spreadsheets
    add("participants-ragged-row-short", PARTICIPANTS, edited(lambda s: s.replace("sub-03\t14\tB", "sub-03\t14")),
        words="fields")
    add("participants-json-age-not-an-object", PARTICIPANTS_JSON, json_edit(_with("age", "months")),
        words="must be an object")
    add("sessions-no-session_id-column", SESSIONS, edited(lambda s: s.replace("session_id", "session")),
        words="no session_id column")
    add("sessions-age-not-a-number", SESSIONS, edited(lambda s: s.replace("\t5\n", "\t5 months\n")),
        words="not a number")
    add("sessions-duplicate-session-other-age", SESSIONS, edited(lambda s: s + "ses-1\t9\n"), words="several rows")
    add("scans-no-filename-column", SCANS, edited(lambda s: s.replace("filename", "file")),
        words="no filename column")
    # JSON sidecars: BOM, invalid JSON, wrong types
    add("t1w-sidecar-bom", T1W_JSON, edited(lambda s: s, bom=True))
    add("t1w-sidecar-invalid", T1W_JSON, truncate_text(fraction(0.2, 0.9)))
    add("t1w-sidecar-wrong-types", T1W_JSON, json_edit(lambda d: {**d, "RepetitionTime": "long", "FlipAngle": [8]}),
        code=0)                                                               # the app reads no image metadata
    add("t1w-sidecar-an-array", T1W_JSON, json_edit(lambda d: [d]), words="must be an object")
    return cases


CASES = make_cases(np.random.default_rng(SEED))


def test_the_generator_is_seeded_and_covers_fifty_ways():
    again = make_cases(np.random.default_rng(SEED))
    assert [c.id for c in again] == [c.id for c in CASES]
    assert len(CASES) >= 50 and len({c.id for c in CASES}) == len(CASES)
    assert DOCUMENTED_EXIT_CODES >= {0, 1, 64, 65} and {c.code for c in CASES} <= DOCUMENTED_EXIT_CODES


# ----------------------------------------------------------------------------- running them

# The group level up to its training data (indexing, ages, validation of every file, the split, the
# real images written for nnU-Net) without synthesis, so that a case takes about half a second: a
# tolerated damage is shown harmless by what validation read (the spy below), and the later stages
# read the files through the same `load_volume`. (sub-03's label map, without an image, is then
# unused: a warning.)
GROUP = ["group", "--synthesize-only", "--synthetic-per-map", "0", "--preset", "cpu", "--device", "cpu",
         "--nprocs", "1"]


def _spy_on_validation(monkeypatch, bids: Path) -> dict:
    """What the group level reads, as it reads it: per session its files, age, and the voxels and
    geometry of every volume as loaded and checked (filled in while the level runs)."""
    from bibsnet_trainer.group import plan

    seen = {}
    validate = plan.validate_session

    def spy(session):
        loaded = validate(session)
        volumes = [loaded.images[m] for m in sorted(loaded.images)] + [loaded.labels]
        seen[session.key] = (sorted(p.relative_to(bids).as_posix() for p in session.images.values()),
                             session.label_map.relative_to(bids).as_posix(), session.age_months,
                             [hashlib.sha256(np.asarray(v.dataobj).tobytes() + v.affine.tobytes()).hexdigest()
                              for v in volumes if v is not None])
        return loaded

    monkeypatch.setattr(plan, "validate_session", spy)
    return seen


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """The valid dataset, written once; every case damages its own copy."""
    return _write_dataset(tmp_path_factory.mktemp("fuzz") / "bids")


@pytest.fixture(scope="module")
def pristine_reads(pristine, tmp_path_factory) -> dict:
    """What the group level reads from the undamaged dataset (which it accepts)."""
    where = tmp_path_factory.mktemp("pristine")
    with pytest.MonkeyPatch.context() as monkeypatch:
        seen = _spy_on_validation(monkeypatch, pristine)
        assert main([str(pristine), str(where / "out"), *GROUP, "-w", str(where / "work")]) == 0
    assert len(seen) == 3 and all(age is not None for _, _, age, _ in seen.values())
    return seen


def _damaged_copy(pristine: Path, case: Case, tmp_path: Path) -> tuple[Path, Path]:
    bids = tmp_path / "bids"
    shutil.copytree(pristine, bids)
    target = bids / case.target
    case.damage(target)
    assert target.read_bytes() != (pristine / case.target).read_bytes(), "the damage changed nothing"
    return bids, target


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "error" in line.lower()]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_group_level_on_damaged_input(case, pristine, pristine_reads, tmp_path, capsys, caplog, monkeypatch):
    bids, target = _damaged_copy(pristine, case, tmp_path)
    before = tree_digest(bids)
    seen = _spy_on_validation(monkeypatch, bids)
    with caplog.at_level("WARNING"):
        code = main([str(bids), str(tmp_path / "out"), *GROUP, "-w", str(tmp_path / "work")])
    err = capsys.readouterr().err
    assert code in DOCUMENTED_EXIT_CODES
    assert "Traceback" not in err
    assert tree_digest(bids) == before, "the input tree was written to"
    errors = _error_lines(err)
    assert code == case.code, f"exit {code}, expected {case.code}: {errors}"
    if case.code:      # refused: one line, the last, naming the damaged file
        assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err
        assert (str(target) if case.named == "path" else target.name) in errors[0], errors[0]
        assert case.words in errors[0]
        assert not (tmp_path / "out" / "models").exists()
    else:              # tolerated, as harmless: the inputs read exactly as the undamaged ones
        assert not errors, errors
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert not case.words or any(case.words in w and str(target) in w for w in warnings), warnings
        assert seen == pristine_reads


# ----------------------------------------------------------------------------- the participant level

@dataclass(frozen=True)
class ParticipantCase:
    id: str
    target: str
    damage: Callable[[Path], None]
    code: int               # 1: the damaged session fails alone; 65: the dataset is refused; 0: a warning
    words: str = ""
    subjects: tuple[str, ...] = ("01", "02")     # --participant-label (fewer sessions: faster)


def make_participant_cases(rng: np.random.Generator) -> list[ParticipantCase]:
    cut = round(float(rng.uniform(0.05, 0.95)), 3)
    return [
        ParticipantCase(f"t1w-gz-truncated-at-{cut:.0%}", T1W, truncate_gz(cut), 1),
        ParticipantCase("session-t1w-gz-bad-crc", T1W_SES, gz_trailer("crc"), 1, "CRC"),
        ParticipantCase("description-invalid-json", DESCRIPTION, truncate_text(0.5), 65),
        ParticipantCase("participants-no-participant_id-column", PARTICIPANTS,
                        edited(lambda s: s.replace("participant_id", "subject")), 0, "no participant_id column",
                        ("01",)),
    ]


PARTICIPANT_CASES = make_participant_cases(np.random.default_rng(SEED + 1))


@pytest.fixture(scope="module")
def oracle(pristine, tmp_path_factory):
    """A model package and a segmenter answering each undamaged image with a reference (no training)."""
    from oracle import oracle_segmenter, write_fake_package

    importlib.import_module("bibsnet_trainer.participant.workflow")   # nipype binds its log handlers to
    # the stderr of its import: here pytest's, which outlives every test (not one test's capsys)
    where = tmp_path_factory.mktemp("oracle")
    pairs = []
    for image in (T1W, T1W_SES):
        img = nib.load(pristine / image)
        reference = where / Path(image).name.replace("_T1w", "_reference")
        nib.save(nib.Nifti1Image((np.asarray(img.dataobj) > 50).astype(np.int16) * 2, img.affine), reference)
        pairs.append((pristine / image, reference))
    return write_fake_package(where / "model", [0, 2]), oracle_segmenter(pairs)


def _segmentation(out: Path, image: str) -> Path:
    return out / Path(image).parent / Path(image).name.replace("_T1w.nii.gz", "_space-T1w_desc-aseg_dseg.nii.gz")


@pytest.mark.parametrize("case", PARTICIPANT_CASES, ids=[c.id for c in PARTICIPANT_CASES])
def test_participant_level_on_damaged_input(case, pristine, oracle, tmp_path, capsys, caplog, monkeypatch):
    package, segmenter = oracle
    monkeypatch.setattr("bibsnet_trainer.nnunet.predict.Segmenter", segmenter)
    bids, target = _damaged_copy(pristine, case, tmp_path)
    before = tree_digest(bids)
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        code = main([str(bids), str(out), "participant", "-w", str(tmp_path / "work"), "--model", str(package),
                     "--device", "cpu", "--nprocs", "1", "--participant-label", *case.subjects])
    err = capsys.readouterr().err
    assert code in DOCUMENTED_EXIT_CODES and code == case.code, (code, err)
    assert "Traceback" not in err
    assert tree_digest(bids) == before, "the input tree was written to"
    # the app's own ERROR lines (nipype, when it runs the sessions, says in its own words that a node failed)
    failed = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and r.name.startswith("bibsnet_trainer")]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if code == 65:     # the dataset is refused before any session
        errors = _error_lines(err)
        assert len(errors) == 1 and err.rstrip().endswith(errors[0]) and str(target) in errors[0], err
        assert not failed and not any(out.rglob("*_dseg.nii.gz"))
        return
    selected = {image for image in (T1W, T1W_SES) if image[4:6] in case.subjects}
    written = {image for image in (T1W, T1W_SES) if _segmentation(out, image).is_file()}
    if code == 1:      # the damaged session fails alone, in one line naming the file; the other is written
        assert len(failed) == 1 and str(target) in failed[0] and case.words in failed[0], failed
        assert "\n" not in failed[0]
        assert written == selected - {case.target}
    else:              # an unreadable age: a warning naming the table, every session written
        assert not failed and any(str(target) in w and case.words in w for w in warnings), warnings
        assert written == selected
