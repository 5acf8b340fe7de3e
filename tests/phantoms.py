"""Tiny brain-like phantoms with FreeSurfer codes for tests: two hemispheres (white matter,
cortex, ventricle each side), CSF and a skull-like extra-cerebral shell, plus a T1w-like image."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

T1_INTENSITY = {0: 0.0, 2: 110.0, 41: 110.0, 3: 70.0, 42: 70.0, 4: 25.0, 43: 25.0, 24: 30.0, 16: 90.0, 507: 140.0}
# T2w-like: white matter dark, CSF and ventricles bright
T2_INTENSITY = {0: 0.0, 2: 60.0, 41: 60.0, 3: 95.0, 42: 95.0, 4: 160.0, 43: 160.0, 24: 150.0, 16: 75.0, 507: 30.0}


def phantom_labels(shape=(40, 48, 40), seed=0) -> np.ndarray:
    """A RAS-ordered label map; axis 0 runs left->right. Slightly different per seed."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    scale = 1 + rng.uniform(-0.08, 0.08, size=3)
    x, y, z = (grid * scale[:, None, None, None])
    shift = rng.uniform(-0.05, 0.05, size=3)
    x, y, z = x - shift[0], y - shift[1], z - shift[2]
    r = np.sqrt((x / 0.85) ** 2 + (y / 0.9) ** 2 + (z / 0.8) ** 2)
    labels = np.zeros(shape, np.int32)
    labels[(r < 1.0) & (r >= 0.88)] = 507          # skull-like shell
    labels[(r < 0.88) & (r >= 0.8)] = 24            # CSF
    left = x < 0
    labels[(r < 0.8) & left] = 3
    labels[(r < 0.8) & ~left] = 42
    labels[(r < 0.6) & left] = 2
    labels[(r < 0.6) & ~left] = 41
    vent = ((np.abs(x) - 0.25) ** 2 / 0.14 ** 2 + y ** 2 / 0.38 ** 2 + z ** 2 / 0.2 ** 2) < 1
    labels[vent & left & (r < 0.6)] = 4
    labels[vent & ~left & (r < 0.6)] = 43
    stem = (x ** 2 + (y + 0.1) ** 2) < 0.17 ** 2
    labels[stem & (z < -0.2) & (r < 0.8)] = 16
    return labels


def phantom_t1w(labels: np.ndarray, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed + 1000)
    image = np.zeros(labels.shape, np.float32)
    for code, value in T1_INTENSITY.items():
        image[labels == code] = value
    return image + rng.normal(0, 4, labels.shape).astype(np.float32)


def ras_affine(voxel_mm=3.0, shape=(40, 48, 40)) -> np.ndarray:
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = -np.array(shape) * voxel_mm / 2
    return affine


def write_description(folder: Path, name: str, derivative_of: str | None = None) -> Path:
    """A BIDS dataset's (or, with `derivative_of`, a derivative's) dataset_description.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    content = {"Name": name, "BIDSVersion": "1.9.0"}
    if derivative_of is not None:
        content.update(DatasetType="derivative", GeneratedBy=[{"Name": derivative_of}])
    (folder / "dataset_description.json").write_text(json.dumps(content))
    return folder


def write_bids(root: Path, subjects: dict[str, str], voxel_mm=3.0, shape=(40, 48, 40)) -> Path:
    """subjects: label -> 'both' (T1w + aseg), 'labels' (aseg only), 'image' (T1w only)."""
    root = write_description(root, "phantoms")
    deriv = write_description(root / "derivatives" / "labels", "labels", derivative_of="phantoms")
    for i, (sub, kind) in enumerate(sorted(subjects.items())):
        labels = phantom_labels(shape, seed=i)
        affine = ras_affine(voxel_mm, labels.shape)
        if kind in ("both", "image"):
            anat = root / f"sub-{sub}" / "anat"
            anat.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(phantom_t1w(labels, seed=i), affine), anat / f"sub-{sub}_T1w.nii.gz")
        if kind in ("both", "labels"):
            anat = deriv / f"sub-{sub}" / "anat"
            anat.mkdir(parents=True, exist_ok=True)
            img = nib.Nifti1Image(labels.astype(np.int16), affine)
            nib.save(img, anat / f"sub-{sub}_space-T1w_desc-aseg_dseg.nii.gz")
    return root


def rigid(angles_deg, translation_mm, center_mm=(0.0, 0.0, 0.0)) -> np.ndarray:
    """4x4 RAS rigid transform rotating about `center_mm` (x, y, z Euler angles) then translating."""
    from scipy.spatial.transform import Rotation

    rot = Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix()
    center = np.asarray(center_mm, dtype=float)
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = center - rot @ center + np.asarray(translation_mm, dtype=float)
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks."""
    return float(2 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))


VERMIS = 172


def labels_with_vermis(seed):
    labels = phantom_labels(seed=seed)
    stem = np.argwhere(labels == 16)
    back = stem[:, 1] < np.median(stem[:, 1])                 # posterior half of the brain stem
    labels[tuple(stem[back].T)] = VERMIS
    return labels


def write_contract_dataset(root: Path, modality: str) -> tuple[Path, list[tuple[Path, Path]]]:
    """sub-01 (no session, label map in derivatives, 172 present), sub-02 with two sessions (ages in
    sessions.tsv, one stored LPS), no label maps; the oracle's references for sub-02 live outside."""
    bids = root / "bids"
    write_description(bids, "contract")
    write_description(bids / "derivatives" / "labels", "labels", derivative_of="manual")
    (bids / "participants.tsv").write_text("participant_id\tage\nsub-01\t3\nsub-02\tn/a\n")
    (bids / "sub-02").mkdir()
    (bids / "sub-02" / "sub-02_sessions.tsv").write_text("session_id\tage_months\nses-1mo\t1\nses-6mo\t6\n")
    pairs = []
    for seed, (subject, session, ornt) in enumerate([("01", None, [[0, 1], [1, 1], [2, 1]]),
                                                     ("02", "1mo", [[0, 1], [1, 1], [2, 1]]),
                                                     ("02", "6mo", [[0, -1], [1, -1], [2, 1]])]):
        labels = labels_with_vermis(seed)
        stem = f"sub-{subject}" + (f"_ses-{session}" if session else "")
        anat = bids / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"
        anat.mkdir(parents=True)
        ornt = np.array(ornt)
        image = nib.Nifti1Image(phantom_t1w(labels, seed), ras_affine()).as_reoriented(ornt)
        label_img = nib.Nifti1Image(labels.astype(np.int16), ras_affine()).as_reoriented(ornt)
        image_path = anat / f"{stem}_{modality}.nii.gz"
        nib.save(image, image_path)
        if session is None:
            label_path = bids / "derivatives" / "labels" / f"sub-{subject}" / "anat" / \
                f"{stem}_space-{modality}_desc-aseg_dseg.nii.gz"
            label_path.parent.mkdir(parents=True)
        else:
            label_path = root / "references" / f"{stem}_dseg.nii.gz"
            label_path.parent.mkdir(exist_ok=True)
        nib.save(label_img, label_path)
        pairs.append((image_path, label_path))
    return bids, pairs
