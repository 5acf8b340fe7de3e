#!/usr/bin/env python3
"""How well does a trained model package segment scans unlike its training site's? Each set below
is a small BIDS dataset segmented by the participant level as users run it (`run.py DATA OUT
participant --model PACKAGE`), and its written segmentation and brain mask are scored here against
the set's own reference (not through the participant's Dice report: tissue references are not asegs).

Other sites:
  mne             the MNE sample subject (another scanner, site and FreeSurfer version; 3 mm, aseg)
  nii2mesh        a skull-stripped 1 mm T1w (FSL BET) with FSL FAST partial-volume maps: WM where
                  pve_2 >= 0.5, GM where pve_1 >= 0.5 (tissue reference, no CSF). Two artificial
                  spheres outside the left hemisphere stay in the image; they are not brain and
                  the reference leaves them out (everything but the image's largest component)
  icbm152         the MNI ICBM152 2009 template from the nilearn wheel (whole head, 1 mm): WM where
                  wm >= 0.5 and wm >= gm, GM where gm >= 0.5 otherwise (tissue reference, no CSF)
Held-out subjects of the training site (fs_adults, FreeSurfer 6 asegs), changed as other scanners
and pipelines would change them:
  whole_head      as they are, at --voxel-mm (the in-site reference point)
  skull_stripped  the T1w times FreeSurfer's brainmask.mgz > 0, then at --voxel-mm
  raw_like        a bias field, contrast change and noise (real_data.perturb_scan), at --voxel-mm
  inverted        contrast inverted inside the head (p99.5 - T1, clipped at 0; the air stays 0):
                  dark white matter, bright CSF, a T2w-like proxy, at --voxel-mm
  thick_slices    5 mm slices along axis k % 3 for the k-th subject (so every axis is covered), at
                  --voxel-mm (rounded to whole native voxels) in plane: a grid a user would have;
                  the reference takes the majority label of each block
  iso3mm          3 mm isotropic, whatever --voxel-mm

Scores per subject: the brain mask's Dice against the reference brain (`mask_reference` in the
JSON: for asegs, labels > 0 after the training merges, for tissue references GM u WM; both through
participant.mask.brain_mask: largest component, holes filled); tissue Dice for CSF, GM, WM and
GM+WM, FreeSurfer codes mapped to tissues by TISSUES for both prediction and aseg references; for
aseg references, the mean Dice over the reference's labels (after `labels.to_target`) that the
model's label table has, a structure the model misses scoring 0 (per structure in the JSON).
Against the FAST and template references the prediction's deep grey structures count as GM, while
FAST and the template put them partly in WM: GM and WM Dice there are lower bounds.

    python benchmarks/cross_site.py MODEL_PACKAGE WORK [--shared ../shared/data]
        [--test-subjects 07 08 09 10] [--voxel-mm 1] [--device cpu] [--json OUT.json]

Datasets are built once under WORK/data/<set> (rebuilt when their parameters change),
all sets are segmented by one participant run (outputs under WORK/runs/out, subjects relabelled
<set><subject>). Prints a table, one row per set, and as its last line
`cross-site GM+WM X.XXX, skull-stripped aseg X.XXX, inverted aseg X.XXX, MNE aseg X.XXX` (the
first figure: the mean GM+WM Dice over mne, nii2mesh and icbm152; n/a for a set not scored).
The JSON (default WORK/cross_site.json) has every set, subject and structure. Needs ../shared/data."""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import real_data  # noqa: E402
from real_scans import TEST_SUBJECTS, participant_command, run_logged  # noqa: E402
from bibsnet_trainer.reports.provenance import machine  # noqa: E402

# FreeSurfer codes -> tissue class, for predictions and aseg references alike; 701-703 are
# FreeSurferColorLUT's FSL FAST classes, the codes the tissue references here are written with.
TISSUES = {
    "CSF": (4, 5, 43, 44, 14, 15, 24, 31, 63, 701),
    "GM": (3, 42, 8, 47, 10, 49, 11, 50, 12, 51, 13, 52, 17, 53, 18, 54, 26, 58, 702),
    "WM": (2, 41, 7, 46, 16, 28, 60, 251, 252, 253, 254, 255, 77, 85, 703),
}
FAST_GM, FAST_WM = 702, 703
OTHER_SITES = ("mne", "nii2mesh", "icbm152")
HELD_OUT = ("whole_head", "skull_stripped", "raw_like", "inverted", "thick_slices", "iso3mm")
SETS = OTHER_SITES + HELD_OUT
TISSUE_REFERENCE = ("nii2mesh", "icbm152")
THICK_SLICE_MM = 5.0
ISO_MM = 3.0
MASK_REFERENCE = {
    "aseg": "aseg labels > 0 after labels.to_target, largest component, holes filled (participant.mask.brain_mask)",
    "tissue": "GM u WM of the tissue reference, largest component, holes filled (participant.mask.brain_mask)",
}
ICBM = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"


# ---- pure functions: arrays in, arrays out --------------------------------------------------------

def tissue_map(codes: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean mask per tissue class (TISSUES) of a FreeSurfer-coded label map."""
    return {name: np.isin(codes, members) for name, members in TISSUES.items()}


def dice(a: np.ndarray, b: np.ndarray) -> float | None:
    """Dice of two boolean masks; None when both are empty."""
    total = int(a.sum()) + int(b.sum())
    return 2.0 * float((a & b).sum()) / total if total else None


def tissue_dice(prediction: np.ndarray, reference: np.ndarray) -> dict[str, float | None]:
    """CSF, GM, WM and GM+WM Dice of two FreeSurfer-coded label maps (a class absent from both: None)."""
    p, r = tissue_map(prediction), tissue_map(reference)
    scores = {name.lower(): dice(p[name], r[name]) for name in TISSUES}
    scores["gm_wm"] = dice(p["GM"] | p["WM"], r["GM"] | r["WM"])
    return scores


def reference_brain(reference: np.ndarray, kind: str) -> np.ndarray:
    """The reference's brain (MASK_REFERENCE[kind]) as a boolean mask."""
    from bibsnet_trainer.labels import to_target
    from bibsnet_trainer.participant.mask import brain_mask

    if kind == "tissue":
        t = tissue_map(reference)
        return brain_mask((t["GM"] | t["WM"]).astype(np.uint8)) > 0
    return brain_mask(to_target(reference.astype(np.int32))) > 0


def aseg_dice(prediction: np.ndarray, reference: np.ndarray, model_codes) -> dict[int, float]:
    """Dice per label present in the reference (after `labels.to_target`) that the model has;
    a label the model does not predict scores 0."""
    from bibsnet_trainer.labels import to_target

    target = to_target(reference.astype(np.int32))
    codes = sorted((set(np.unique(target).tolist()) & {int(c) for c in model_codes}) - {0})
    return {c: dice(prediction == c, target == c) or 0.0 for c in codes}


def score_subject(prediction: np.ndarray, mask: np.ndarray, reference: np.ndarray, kind: str,
                  model_codes) -> dict:
    """Every figure of one subject: mask, tissue and (aseg references) per-structure Dice."""
    if prediction.shape != reference.shape or mask.shape != reference.shape:
        raise ValueError(f"output grid {prediction.shape} is not the reference's {reference.shape}")
    scores = {"mask": dice(mask > 0, reference_brain(reference, kind)), **tissue_dice(prediction, reference)}
    if kind == "tissue":
        scores["csf"] = None   # the FAST and template references have no CSF class
    if kind == "aseg":
        per_label = aseg_dice(prediction, reference, model_codes)
        scores["aseg_mean"] = float(np.mean(list(per_label.values()))) if per_label else None
        scores["structures"] = per_label
    return scores


def tissue_labels(gm: np.ndarray, wm: np.ndarray) -> np.ndarray:
    """A tissue reference from GM and WM probability maps (0..1): FAST_WM where wm >= 0.5 and
    wm >= gm, FAST_GM where gm >= 0.5 otherwise, 0 elsewhere."""
    white = (wm >= 0.5) & (wm >= gm)
    grey = (gm >= 0.5) & ~white
    return np.where(white, FAST_WM, np.where(grey, FAST_GM, 0)).astype(np.int16)


def probability(values: np.ndarray) -> np.ndarray:
    """A probability map stored as 0..1 or as 0..255 bytes, as 0..1 float32."""
    values = np.asarray(values, dtype=np.float32)
    return values / 255.0 if values.max(initial=0) > 1.0 else values


def largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    regions, count = ndimage.label(mask)
    if count <= 1:
        return mask.astype(bool)
    sizes = np.bincount(regions.ravel())
    sizes[0] = 0
    return regions == sizes.argmax()


def skull_strip(image: np.ndarray, brainmask: np.ndarray) -> np.ndarray:
    return np.where(brainmask > 0, image, 0).astype(np.float32)


def invert_contrast(image: np.ndarray) -> np.ndarray:
    """p99.5 (inside the head) minus the image, clipped at 0, inside the head; the air
    (`background.air_mask`) stays 0."""
    from bibsnet_trainer.nnunet.background import air_mask

    image = np.asarray(image, dtype=np.float32)
    head = ~air_mask(image)
    ceiling = float(np.percentile(image[head], 99.5)) if head.any() else 0.0
    return np.where(head, np.clip(ceiling - image, 0, None), 0).astype(np.float32)


def thick_slice_factors(native_mm: float, voxel_mm: float, axis: int, slice_mm: float = THICK_SLICE_MM):
    """Block factors: slice_mm along `axis`, voxel_mm in plane, both in whole native voxels."""
    factors = [max(1, round(voxel_mm / native_mm))] * 3
    factors[axis] = max(1, round(slice_mm / native_mm))
    return tuple(factors)


# ---- building the sets ------------------------------------------------------------------------------

def _pair(image: np.ndarray, labels: np.ndarray, affine: np.ndarray):
    return nib.Nifti1Image(np.asarray(image, np.float32), affine), nib.Nifti1Image(np.asarray(labels, np.int16), affine)


def _is_built(root: Path, name: str) -> bool:
    description = root / "dataset_description.json"
    return description.exists() and json.loads(description.read_text()).get("Name") == name


def _begin(root: Path, name: str, generated_by: str) -> Path:
    """An empty set beside `root`, renamed to it by `_finish` once complete."""
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    real_data._describe(partial, name, generated_by)
    return partial


def _finish(partial: Path, root: Path) -> Path:
    shutil.rmtree(root, ignore_errors=True)   # a set built with other parameters
    partial.rename(root)
    return root


def _build_once(root: Path, name: str, generated_by: str, subjects) -> Path:
    """Write the set `root` (dataset name `name`) from (subject, T1w, reference) items, unless a set
    of that name is there already; one of another name (other parameters) is replaced."""
    if _is_built(root, name):
        return root
    partial = _begin(root, name, generated_by)
    for subject, image, labels in subjects:
        real_data._add_subject(partial, subject, image, labels)
    return _finish(partial, root)


def nilearn_data() -> Path | None:
    try:
        import nilearn
    except ImportError:
        return None
    folder = Path(nilearn.__file__).parent / "datasets" / "data"
    return folder if all((folder / ICBM.format(k)).is_file() for k in ("t1", "gm", "wm")) else None


def build_nii2mesh(shared: Path, root: Path) -> Path | None:
    folder = shared / "dev_real" / "nii2mesh"
    if not all((folder / f"{k}.nii.gz").is_file() for k in ("bet", "pve_1", "pve_2")):
        return None

    def items():
        t1 = nib.load(folder / "bet.nii.gz")
        image = np.asarray(t1.dataobj, dtype=np.float32)
        gm, wm = (probability(nib.load(folder / f"{k}.nii.gz").dataobj) for k in ("pve_1", "pve_2"))
        labels = np.where(largest_component(image > 0), tissue_labels(gm, wm), 0)   # not the spheres
        yield ("nii2mesh", *_pair(image, labels, t1.affine))

    return _build_once(root, "nii2mesh: skull-stripped T1w, FSL FAST tissue reference",
                       "FSL BET and FAST (neurolabusc/nii2mesh, BSD-2)", items())


def build_icbm152(root: Path) -> Path | None:
    folder = nilearn_data()
    if folder is None:
        return None

    def items():
        t1 = nib.load(folder / ICBM.format("t1"))
        gm, wm = (probability(nib.load(folder / ICBM.format(k)).dataobj) for k in ("gm", "wm"))
        yield ("icbm152", *_pair(np.asarray(t1.dataobj, np.float32), tissue_labels(gm, wm), t1.affine))

    return _build_once(root, "MNI ICBM152 2009c template, tissue reference from its GM/WM maps",
                       "MNI ICBM152 2009 (nilearn wheel)", items())


def held_out_variant(name: str, k: int, t1: nib.Nifti1Image, aseg: nib.Nifti1Image, brainmask: np.ndarray,
                     voxel_mm: float) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """Set `name`'s copy of the k-th held-out subject, from its native (1 mm) T1w, aseg and brain mask."""
    image, labels = np.asarray(t1.dataobj, np.float32), np.asarray(aseg.dataobj).astype(np.int16)
    if name == "skull_stripped":
        return real_data.resample_pair(nib.Nifti1Image(skull_strip(image, brainmask), t1.affine), aseg, voxel_mm)
    if name == "iso3mm":
        return real_data.resample_pair(t1, aseg, ISO_MM)
    if name == "thick_slices":
        factors = thick_slice_factors(float(np.mean(t1.header.get_zooms()[:3])), voxel_mm, k % 3)
        affine = real_data.block_affine(t1.affine, factors)
        return _pair(real_data.block_mean(image, factors), real_data.block_mode(labels, factors), affine)
    img, lab = real_data.resample_pair(t1, aseg, voxel_mm)
    data = np.asarray(img.dataobj, np.float32)
    if name == "raw_like":
        data = real_data.perturb_scan(data, k)   # as real_data.build_perturbed(seed=0)
    elif name == "inverted":
        data = invert_contrast(data)
    return _pair(data, np.asarray(lab.dataobj), img.affine)


def held_out_name(name: str, subjects, voxel_mm: float) -> str:
    grid = {"iso3mm": f"{ISO_MM:g} mm", "thick_slices": f"{THICK_SLICE_MM:g} mm slices, {voxel_mm:g} mm in plane"}
    return f"fs_adults held out ({' '.join(subjects)}), {name}, {grid.get(name, f'{voxel_mm:g} mm')}"


def build_held_out(shared: Path, data_root: Path, subjects, voxel_mm: float) -> dict[str, Path]:
    """Every HELD_OUT set, reading each subject's native images once for the sets not yet built."""
    roots = {name: data_root / name for name in HELD_OUT}
    names = {name: held_out_name(name, subjects, voxel_mm) for name in HELD_OUT}
    todo = [name for name in HELD_OUT if not _is_built(roots[name], names[name])]
    if not todo:
        return roots
    partials = {name: _begin(roots[name], names[name], "FreeSurfer 6 (hebbianloop/FreeSurfer-Training-Data)")
                for name in todo}
    for k, (subject, t1, aseg) in enumerate(real_data.fs_adults_pairs(shared, 1.0, subjects)):
        folder = shared / "dev_real" / "fs_adults" / f"sub-{subject}"
        brainmask = np.asarray(nib.load(folder / "brainmask.mgz").dataobj)
        for name in todo:
            real_data._add_subject(partials[name], subject, *held_out_variant(name, k, t1, aseg, brainmask, voxel_mm))
    for name in todo:
        _finish(partials[name], roots[name])
    return roots


def build_sets(shared: Path, data_root: Path, subjects, voxel_mm: float) -> dict[str, Path | None]:
    """Every set's BIDS root, None for a set whose data are not at hand."""
    mne = shared / "dev_real" / "mne_sample"
    roots = {"mne": real_data.build_mne(shared, data_root / "mne") if (mne / "aseg.mgz").is_file() else None,
             "nii2mesh": build_nii2mesh(shared, data_root / "nii2mesh"),
             "icbm152": build_icbm152(data_root / "icbm152")}
    roots.update(build_held_out(shared, data_root, subjects, voxel_mm))
    return roots


# ---- running the participant level and reading what it wrote ----------------------------------------

def model_codes(package: Path) -> tuple[int, ...]:
    """FreeSurfer codes of the model's label table (its dataset.json's `freesurfer_labels`)."""
    rows = json.loads(next(Path(package).rglob("dataset.json")).read_text())["freesurfer_labels"]
    return tuple(int(r["freesurfer"]) for r in rows)


def package_id(package: Path) -> str:
    return hashlib.sha256((Path(package) / "manifest.json").read_bytes()).hexdigest()[:16]


def run_participant(data: Path, runs: Path, package: Path, device: str, nprocs: int) -> tuple[Path, str | None]:
    """The participant level on `data`; outputs of another model are removed first (the participant
    level skips subjects whose outputs exist). Returns the output folder and an error or None."""
    out, marker = runs / "out", runs / "model.txt"
    if out.exists() and (not marker.exists() or marker.read_text() != package_id(package)):
        shutil.rmtree(out)
    runs.mkdir(parents=True, exist_ok=True)
    marker.write_text(package_id(package))
    command = participant_command(data, out, runs / "work", package, device)
    command[command.index("--nprocs") + 1] = str(nprocs)
    try:
        run_logged(command, runs / "participant.log")
    except SystemExit as exc:
        return out, str(exc)
    return out, None


def subjects_of(data: Path) -> list[str]:
    return sorted(p.name[4:] for p in data.glob("sub-*") if p.is_dir())


def load_codes(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj).astype(np.int32)


def merged_label(name: str, subject: str) -> str:
    """The subject label of a set's subject in the one dataset all sets are segmented from."""
    return f"{name.replace('_', '')}{subject}"


def merge_sets(roots: dict[str, Path | None], root: Path) -> Path:
    """One BIDS dataset holding every set's subjects (links to their files, relabelled with
    `merged_label`), so that one participant run segments them all (its start-up paid once, its
    sessions in parallel)."""
    shutil.rmtree(root, ignore_errors=True)
    real_data._describe(root, "cross-site sets", "benchmarks/cross_site.py")
    for name, data in roots.items():
        for subject in subjects_of(data) if data is not None else []:
            label = merged_label(name, subject)
            for folder in (Path("."), Path("derivatives") / "aseg"):
                source, target = data / folder / f"sub-{subject}" / "anat", root / folder / f"sub-{label}" / "anat"
                target.mkdir(parents=True, exist_ok=True)
                for file in source.glob(f"sub-{subject}_*"):
                    (target / file.name.replace(f"sub-{subject}_", f"sub-{label}_")).symlink_to(file.resolve())
    return root


def score_outputs(out: Path, data: Path, kind: str, codes, name: str) -> dict[str, dict]:
    """Per subject: its scores, or {'error': why} when the participant level wrote nothing usable for it."""
    scores = {}
    for subject in subjects_of(data):
        anat = out / f"sub-{merged_label(name, subject)}" / "anat"
        dseg, mask = sorted(anat.glob("*desc-aseg_dseg.nii.gz")), sorted(anat.glob("*desc-brain_mask.nii.gz"))
        if not dseg or not mask:
            scores[subject] = {"error": "no segmentation written"}
            continue
        reference = load_codes(next((data / "derivatives" / "aseg" / f"sub-{subject}" / "anat").glob("*_dseg.nii.gz")))
        try:
            result = score_subject(load_codes(dseg[0]), load_codes(mask[0]), reference, kind, codes)
        except ValueError as exc:   # outputs not on the input's grid
            scores[subject] = {"error": str(exc)}
            continue
        result["voxel_mm"] = [round(float(z), 3) for z in nib.load(dseg[0]).header.get_zooms()[:3]]
        scores[subject] = result
    return scores


# ---- summaries ----------------------------------------------------------------------------------------

METRICS = ("mask", "csf", "gm", "wm", "gm_wm", "aseg_mean")


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def set_means(subjects: dict[str, dict]) -> dict:
    """Mean of each metric over the scored subjects, and per structure (by name)."""
    from bibsnet_trainer.labels import label_name

    scored = [s for s in subjects.values() if "error" not in s]
    means = {m: _mean([s.get(m) for s in scored]) for m in METRICS}
    codes = sorted({c for s in scored for c in s.get("structures", {})})
    means["structures"] = {label_name(c): _mean([s["structures"].get(c) for s in scored if "structures" in s])
                           for c in codes}
    return means


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n")[0]


def _cell(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


def table(sets: dict[str, dict]) -> list[str]:
    rows = [f"{'set':16s} {'n':>2s} {'mask':>6s} {'CSF':>6s} {'GM':>6s} {'WM':>6s} {'GM+WM':>6s} {'aseg':>6s}"]
    for name, result in sets.items():
        if result["status"] != "scored":
            rows.append(f"{name:16s} {result['status']}: {_first_line(result['reason'])}")
            continue
        m = result["mean"]
        rows.append(f"{name:16s} {result['n']:2d} " + " ".join(f"{_cell(m[k]):>6s}" for k in METRICS))
    return rows


def summary_line(sets: dict[str, dict]) -> str:
    def figure(name: str, metric: str) -> float | None:
        result = sets.get(name, {})
        return result["mean"][metric] if result.get("status") == "scored" else None

    def text(value: float | None) -> str:
        return f"{value:.3f}" if value is not None else "n/a"

    cross = _mean([figure(name, "gm_wm") for name in OTHER_SITES])
    return (f"cross-site GM+WM {text(cross)}, skull-stripped aseg {text(figure('skull_stripped', 'aseg_mean'))}, "
            f"inverted aseg {text(figure('inverted', 'aseg_mean'))}, MNE aseg {text(figure('mne', 'aseg_mean'))}")


# ---- the whole run --------------------------------------------------------------------------------------

def score_set(name: str, data: Path, out: Path, error: str | None, seconds: float, codes) -> dict:
    """A set's scores from the one participant run over every set (`merge_sets`)."""
    kind = "tissue" if name in TISSUE_REFERENCE else "aseg"
    result = {"site": "other" if name in OTHER_SITES else "training (held-out subjects)",
              "data": str(data), "reference": kind, "mask_reference": MASK_REFERENCE[kind]}
    subjects = score_outputs(out, data, kind, codes, name)
    scored = [s for s in subjects.values() if "error" not in s]
    if not scored and not error:
        error = "; ".join(sorted({s["error"] for s in subjects.values()})) or "no subject"
    result.update(status="scored" if scored else "failed", reason=None if scored else error, n=len(scored),
                  subjects=subjects, mean=set_means(subjects), seconds=round(seconds, 1), output=str(out))
    if error and scored:
        result["participant_error"] = error
    return result


def cross_site(package: Path, work: Path, *, shared: Path, test_subjects=TEST_SUBJECTS, voxel_mm: float = 1.0,
               device: str = "cpu", data_root: Path | None = None, prefix: str = "", nprocs: int = 2) -> dict:
    """Build (or reuse) every set, segment each with the participant level, score it; the result
    as it goes into the JSON (its `summary_line` is the script's last line)."""
    package, work = Path(package).resolve(), Path(work).resolve()
    data_root = Path(data_root) if data_root else work / "data"
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    roots = build_sets(shared, data_root, tuple(test_subjects), voxel_mm)
    print(f"{prefix}cross-site sets built or found under {data_root}: {time.perf_counter() - started:.0f} s",
          flush=True)
    codes, sets = model_codes(package), {}
    merged = merge_sets({name: roots.get(name) for name in SETS}, work / "merged")
    started = time.perf_counter()
    out, error = run_participant(merged, work / "runs", package, device, nprocs)
    seconds = time.perf_counter() - started
    n_scans = sum(len(subjects_of(r)) for r in roots.values() if r is not None)
    print(f"{prefix}participant level on {n_scans} scans of {len(SETS)} sets: {seconds:.0f} s", flush=True)
    for name in SETS:
        if roots.get(name) is None:
            why = ("nilearn (and its ICBM152 template) not installed" if name == "icbm152"
                   else "its data are not at hand")
            sets[name] = {"status": "skipped", "reason": why}
            print(f"{prefix}{name}: skipped ({why})", flush=True)
            continue
        sets[name] = r = score_set(name, roots[name], out, error, seconds, codes)
        note = f"; participant level failed: {_first_line(r['reason'])}" if r["reason"] else ""
        print(f"{prefix}{name}: {r['n']} subjects scored, GM+WM {_cell(r['mean']['gm_wm'])}{note}", flush=True)
    return {"model_package": str(package), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": machine(device), "code": _code_version(),
            "device": device, "shared": str(shared), "voxel_mm": voxel_mm, "test_subjects": list(test_subjects),
            "tissues": {k: list(v) for k, v in TISSUES.items()}, "sets": sets, "summary_line": summary_line(sets)}


def _code_version() -> str:
    """This checkout's commit (with "+changes" when the tree differs from it), or the package version."""
    import subprocess

    from bibsnet_trainer import __version__
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return __version__
    return commit + ("+changes" if dirty else "")


def write_json(result: dict, path: Path) -> None:
    def keys(value):
        if isinstance(value, dict):
            return {str(k): keys(v) for k, v in value.items()}
        return [keys(v) for v in value] if isinstance(value, list) else value

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(keys(result), indent=1))


def fs_adults_missing(shared: Path) -> bool:
    return not (Path(shared) / "dev_real" / "fs_adults" / "sub-01" / "T1.mgz").is_file()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path, help="a model package folder (.../models/model_seg_*)")
    parser.add_argument("work", type=Path)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--test-subjects", nargs="+", default=list(TEST_SUBJECTS))
    parser.add_argument("--voxel-mm", type=float, default=1.0, help="voxel size of the held-out fs_adults copies")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="default WORK/cross_site.json")
    parser.add_argument("--nprocs", type=int, default=2, help="scans segmented in parallel")
    args = parser.parse_args()
    if fs_adults_missing(args.shared):
        print(f"{args.shared}: fs_adults is not there; nothing to measure", file=sys.stderr)
        return 2
    if not (args.package / "manifest.json").is_file():
        print(f"{args.package}: not a model package (no manifest.json)", file=sys.stderr)
        return 2
    result = cross_site(args.package, args.work, shared=args.shared, test_subjects=args.test_subjects,
                        voxel_mm=args.voxel_mm, device=args.device, nprocs=args.nprocs)
    write_json(result, args.json or args.work.resolve() / "cross_site.json")
    print(f"\ncross-site scores of {result['model_package']} ({result['date']}, {result['machine']}, "
          f"code {result['code']}); held-out fs_adults at {args.voxel_mm:g} mm")
    for row in table(result["sets"]):
        print(row)
    print(result["summary_line"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
