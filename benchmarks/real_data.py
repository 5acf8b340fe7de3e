"""Real BIDS datasets for the benchmarks, built from ../shared/data (not redistributable, so
never copied into the project): the 9 `fs_adults` (whole-head T1w with FreeSurfer 6 asegs, one
site) at a chosen voxel size, and the MNE sample subject (another scanner, site and FreeSurfer
version) as a second dataset for cross-site scoring.

Downsampling by an integer factor averages blocks of the T1w (a box filter, as a scanner's
larger voxels would) and takes the majority label of each block of the aseg, so image and
labels stay consistent; other voxel sizes resample linearly / by nearest neighbour."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

FS_ADULTS = ("01", "02", "03", "04", "06", "07", "08", "09", "10")


def _factors(f) -> tuple[int, int, int]:
    return (int(f),) * 3 if np.isscalar(f) else tuple(int(k) for k in f)


def _block_view(data: np.ndarray, f) -> np.ndarray:
    """(n0, n1, n2, f0*f1*f2) blocks of data (f: one factor or one per axis), remainders cropped."""
    f = _factors(f)
    n = [s // k for s, k in zip(data.shape, f)]
    d = data[tuple(slice(0, m * k) for m, k in zip(n, f))]
    return d.reshape(n[0], f[0], n[1], f[1], n[2], f[2]).transpose(0, 2, 4, 1, 3, 5).reshape(*n, -1)


def block_mean(data: np.ndarray, f) -> np.ndarray:
    return _block_view(np.asarray(data, dtype=np.float32), f).mean(-1)


def block_mode(labels: np.ndarray, f) -> np.ndarray:
    """Majority label of each block (ties: the smallest code), one code at a time (little memory)."""
    blocks = _block_view(np.asarray(labels, dtype=np.int32), f)
    best, count = np.zeros(blocks.shape[:3], np.int16), np.full(blocks.shape[:3], -1)
    for code in np.unique(blocks):
        n = (blocks == code).sum(-1)
        better = n > count
        best[better], count[better] = code, n[better]
    return best


def block_affine(affine: np.ndarray, f) -> np.ndarray:
    """The affine of a block-reduced grid: voxel axes scaled by the factors, centres moved to the blocks'."""
    f = np.asarray(_factors(f), dtype=float)
    out = np.array(affine, dtype=float)
    out[:3, :3] = affine[:3, :3] * f
    out[:3, 3] = affine[:3, :3] @ ((f - 1) / 2) + affine[:3, 3]
    return out


def resample_pair(t1: nib.spatialimages.SpatialImage, aseg: nib.spatialimages.SpatialImage,
                  voxel_mm: float) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    native = float(np.mean(t1.header.get_zooms()[:3]))
    factor = voxel_mm / native
    image = np.asarray(t1.dataobj, dtype=np.float32)
    labels = np.asarray(aseg.dataobj).astype(np.int16)
    if abs(factor - round(factor)) < 1e-6 and round(factor) >= 1:
        f = int(round(factor))
        if f == 1:
            return nib.Nifti1Image(image, t1.affine), nib.Nifti1Image(labels, aseg.affine)
        affine = block_affine(t1.affine, f)
        return nib.Nifti1Image(block_mean(image, f), affine), nib.Nifti1Image(block_mode(labels, f), affine)
    from nibabel.processing import resample_to_output
    img = resample_to_output(nib.Nifti1Image(image, t1.affine), voxel_mm, order=1)
    lab = resample_to_output(nib.Nifti1Image(labels, aseg.affine), voxel_mm, order=0)
    return img, nib.Nifti1Image(np.asarray(lab.dataobj).astype(np.int16), lab.affine)


def _save(img: nib.Nifti1Image, path: Path, dtype) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = nib.Nifti1Image(np.asarray(img.dataobj).astype(dtype), img.affine)
    out.set_data_dtype(dtype)
    nib.save(out, path)


def _describe(root: Path, name: str, generated_by: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": name, "BIDSVersion": "1.9.0"}))
    labels = root / "derivatives" / "aseg"
    labels.mkdir(parents=True, exist_ok=True)
    (labels / "dataset_description.json").write_text(json.dumps(
        {"Name": "FreeSurfer aseg", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
         "GeneratedBy": [{"Name": generated_by}]}))


def _add_subject(root: Path, subject: str, image: nib.Nifti1Image | None, labels: nib.Nifti1Image | None) -> None:
    if image is not None:
        _save(image, root / f"sub-{subject}" / "anat" / f"sub-{subject}_T1w.nii.gz", np.float32)
    if labels is not None:
        _save(labels, root / "derivatives" / "aseg" / f"sub-{subject}" / "anat"
              / f"sub-{subject}_space-T1w_desc-aseg_dseg.nii.gz", np.int16)


def fs_adults_pairs(shared: Path, voxel_mm: float, subjects=FS_ADULTS):
    """(subject, T1w, aseg) at voxel_mm for each fs_adults subject."""
    for subject in subjects:
        folder = shared / "dev_real" / "fs_adults" / f"sub-{subject}"
        yield (subject, *resample_pair(nib.load(folder / "T1.mgz"), nib.load(folder / "aseg.mgz"), voxel_mm))


def build_fs_adults(shared: Path, root: Path, voxel_mm: float, *, images_of=FS_ADULTS, labels_of=FS_ADULTS,
                    synthseg_maps: int = 0) -> Path:
    """A BIDS dataset of fs_adults at voxel_mm: T1w for `images_of`, asegs for `labels_of`;
    optionally SynthSeg's whole-head training label maps as label-map-only subjects `synthNN`."""
    if (root / "dataset_description.json").exists():
        return root
    _describe(root, f"fs_adults at {voxel_mm:g} mm", "FreeSurfer 6 (hebbianloop/FreeSurfer-Training-Data)")
    for subject, image, labels in fs_adults_pairs(shared, voxel_mm, sorted(set(images_of) | set(labels_of))):
        _add_subject(root, subject, image if subject in images_of else None, labels if subject in labels_of else None)
    maps = sorted((shared / "synthseg" / "training_label_maps").glob("training_seg_*.nii.gz"))[:synthseg_maps]
    for k, path in enumerate(maps, start=1):
        src = nib.load(path)
        codes = np.asarray(src.dataobj).astype(np.int16)
        _, labels = resample_pair(nib.Nifti1Image(codes.astype(np.float32), src.affine),
                                  nib.Nifti1Image(codes, src.affine), voxel_mm)
        _add_subject(root, f"synth{k:02d}", None, labels)
    return root


def bias_field(shape, seed: int, strength: float = 0.35) -> np.ndarray:
    """A smooth multiplicative field (exp of a random quadratic in normalised coordinates), as a
    receive coil's uneven sensitivity: about 1 -/+ `strength` across the field of view."""
    rng = np.random.default_rng(seed)
    axes = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij")
    terms = [*axes, *(a * b for i, a in enumerate(axes) for b in axes[i:])]
    log_field = sum(c * t for c, t in zip(rng.normal(0, 1, len(terms)), terms))
    log_field -= log_field.mean()
    return np.exp(strength * log_field / (np.abs(log_field).max() + 1e-6)).astype(np.float32)


def perturb_scan(image: np.ndarray, seed: int, gamma: float = 0.8, noise: float = 0.02) -> np.ndarray:
    """FreeSurfer's T1.mgz is bias-corrected and intensity-normalised (WM = 110); raw scans are
    not. A simulated raw-like scan: a smooth bias field, a contrast (gamma) change, other units
    and noise."""
    rng = np.random.default_rng(seed + 1)
    scaled = np.clip(np.asarray(image, dtype=np.float32), 0, None) / max(float(np.percentile(image, 99.5)), 1e-6)
    out = (scaled ** gamma) * bias_field(scaled.shape, seed) * 800.0
    return (out + rng.normal(0, noise * 800.0, out.shape)).clip(0).astype(np.float32)


def build_perturbed(source: Path, root: Path, subjects, seed: int = 0) -> Path:
    """The held-out `subjects` of a dataset built above, each T1w perturbed by `perturb_scan`,
    with their asegs unchanged."""
    if (root / "dataset_description.json").exists():
        return root
    _describe(root, "fs_adults held out, simulated bias field and contrast change",
              "FreeSurfer 6 (hebbianloop/FreeSurfer-Training-Data)")
    for k, subject in enumerate(subjects):
        image = nib.load(source / f"sub-{subject}" / "anat" / f"sub-{subject}_T1w.nii.gz")
        labels = nib.load(source / "derivatives" / "aseg" / f"sub-{subject}" / "anat"
                          / f"sub-{subject}_space-T1w_desc-aseg_dseg.nii.gz")
        perturbed = perturb_scan(np.asarray(image.dataobj), seed * 100 + k)
        _add_subject(root, subject, nib.Nifti1Image(perturbed, image.affine),
                     nib.Nifti1Image(np.asarray(labels.dataobj).astype(np.int16), labels.affine))
    return root


def build_mne(shared: Path, root: Path) -> Path:
    """The MNE sample subject (T1w and FreeSurfer aseg, 3 mm, stored LIA) as `sub-mne`."""
    if (root / "dataset_description.json").exists():
        return root
    _describe(root, "MNE sample subject", "FreeSurfer (MNE testing data)")
    mne = shared / "dev_real" / "mne_sample"
    t1, aseg = nib.load(mne / "T1.mgz"), nib.load(mne / "aseg.mgz")
    _add_subject(root, "mne", nib.Nifti1Image(np.asarray(t1.dataobj, dtype=np.float32), t1.affine),
                 nib.Nifti1Image(np.asarray(aseg.dataobj).astype(np.int16), aseg.affine))
    return root
