"""Checks of an image's header and geometry before any work, as fMRIPrep's `ValidateImage` and
nibabel do them: what makes a file unusable is refused in one line naming it (`InputError`), what
is suspicious but usable is a warning. Pure functions of a loaded header and its data.

Refused: a voxel-to-world matrix that is singular or not finite; voxel sizes that are zero,
negative or not finite (nibabel itself turns zero and negative ones positive on reading); an
infinite `scl_slope`, or a usable one with an intercept that is not finite (the NIfTI rule reads a
slope of 0 or NaN as "no scaling", which is what nibabel writes for float data: those pass); data
that are not real scalars (complex, RGB); grids no scan has (an axis of one voxel, voxels over
`MAX_VOXEL_MM`, more than `MAX_AXIS_VOXELS` along an axis); an image whose voxels all hold one
value. Warned: sform and qform that disagree (nibabel, and this app, use the sform), an oblique
grid beyond `MAX_OBLIQUE_DEG`, voxels more anisotropic than `MAX_ANISOTROPY`, a slope of 0 with
an intercept that is then ignored."""
from __future__ import annotations

import numpy as np

MAX_VOXEL_MM = 10.0
MAX_AXIS_VOXELS = 1024
MAX_OBLIQUE_DEG = 45.0
MAX_ANISOTROPY = 4.0
SFORM_QFORM_TOLERANCE_MM = 1.0     # largest disagreement of the two matrices over the grid's corners


def header_problem(img) -> str | None:
    """Why an image's header makes it unusable, or None."""
    affine = np.asarray(img.affine, dtype=float)
    if not np.all(np.isfinite(affine)):
        return "the header's voxel-to-world matrix has NaN or Inf entries"
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        return "the header's voxel-to-world matrix is singular (a zero or repeated column): no geometry"
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    if not all(np.isfinite(z) and z > 0 for z in zooms):
        return f"voxel sizes must be positive, found {zooms}"
    dtype = img.get_data_dtype()
    if dtype.fields is not None or np.issubdtype(dtype, np.complexfloating):
        return f"data must be real scalars, found {dtype} (complex or RGB)"
    shape = tuple(int(s) for s in img.shape[:3])
    if max(shape) > MAX_AXIS_VOXELS:
        return f"grid {shape}: more than {MAX_AXIS_VOXELS} voxels along an axis"
    if max(zooms) > MAX_VOXEL_MM:
        return f"voxels of {max(zooms):g} mm (over {MAX_VOXEL_MM:g} mm): not a scan to segment"
    return None


def _scaling(header) -> tuple[float, float] | None:
    """The raw scl_slope and scl_inter of a NIfTI header (None for formats without them)."""
    try:
        return float(header["scl_slope"]), float(header["scl_inter"])
    except (KeyError, ValueError, TypeError):
        return None


def scaling_problem(header) -> str | None:
    """Why a header's scaling (as stored in the file: nibabel resets it on loading) makes the
    values unknown, or None."""
    scaling = _scaling(header)
    if scaling is None:
        return None
    slope, inter = scaling
    if np.isinf(slope):
        return f"scl_slope is {slope:g}: the scale of the stored values is unknown"
    if slope != 0 and np.isfinite(slope) and not np.isfinite(inter):
        return f"scl_inter is {inter:g} (with scl_slope {slope:g}): the offset of the stored values is unknown"
    return None


def scaling_warnings(header) -> list[str]:
    """What is odd but usable in a header's scaling, as stored in the file."""
    scaling = _scaling(header)
    if scaling is not None and scaling[0] == 0 and np.isfinite(scaling[1]) and scaling[1] != 0:
        return [f"scl_slope is 0 (no scaling, the NIfTI rule), so scl_inter {scaling[1]:g} is ignored"]
    return []


def data_problem(data: np.ndarray) -> str | None:
    """Why an image's values make it unusable (not for label maps), or None."""
    finite = data[np.isfinite(data)]
    if finite.size and float(finite.min()) == float(finite.max()):
        return f"every voxel holds the same value ({float(finite.min()):g}): no anatomy"
    return None


def header_warnings(img) -> list[str]:
    """What is suspicious but usable in an image's geometry."""
    warnings = []
    header = img.header
    if hasattr(header, "get_sform"):
        sform, s_code = header.get_sform(coded=True)
        qform, q_code = header.get_qform(coded=True)
        if s_code and q_code and sform is not None and qform is not None:
            gap = _corner_gap(sform, qform, img.shape[:3])
            if gap > SFORM_QFORM_TOLERANCE_MM:
                warnings.append(f"sform and qform disagree by up to {gap:.1f} mm over the grid; the sform is used")
    axes = np.asarray(img.affine, dtype=float)[:3, :3]
    cosines = np.abs(axes) / np.linalg.norm(axes, axis=0)
    oblique = float(np.degrees(np.arccos(np.clip(cosines.max(axis=0).min(), -1, 1))))
    if oblique > MAX_OBLIQUE_DEG:
        warnings.append(f"the grid is oblique by {oblique:.0f} degrees to the scanner axes")
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    if max(zooms) / min(zooms) > MAX_ANISOTROPY:
        warnings.append(f"voxels of {' x '.join(f'{z:g}' for z in zooms)} mm are anisotropic beyond "
                        f"{MAX_ANISOTROPY:g}:1; thin structures may be missed")
    return warnings


def world_offset_mm(a, b) -> float:
    """How far apart two grids of one shape put their voxels (mm, the largest over the corners)."""
    return _corner_gap(np.asarray(a.affine, dtype=float), np.asarray(b.affine, dtype=float), a.shape[:3])


def _corner_gap(first: np.ndarray, second: np.ndarray, shape) -> float:
    corners = np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                        for k in (0, shape[2] - 1)]).T
    return float(np.max(np.linalg.norm((first @ corners - second @ corners)[:3], axis=0)))
