"""Image I/O at the edges: load and validate volumes, move between an image's own voxel order and
the canonical RAS order nnU-Net is trained in, and write NIfTI files atomically."""
from __future__ import annotations

import gzip
import logging
import os
import tempfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

from . import geometry
from .errors import InputError

LOG = logging.getLogger(__name__)

CANONICAL = ("R", "A", "S")


def load_volume(path: str | os.PathLike, *, kind: str = "image", warnings: list[str] | None = None) -> nib.Nifti1Image:
    """Load a 3D image (NIfTI or MGH) and check it; every problem is an InputError naming the file.

    kind: "image" (float data, finite values) or "label" (integer-valued, not empty).
    warnings: a list to which what is suspicious but usable in the header is added ("name: what"),
    besides the log.
    """
    path = Path(path)
    problem, stored = _read_file(path)
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for truncated/corrupt files
        raise InputError(problem or f"cannot read image ({_reason(exc)})", path) from None
    problem = problem or geometry.header_problem(img)
    if problem:
        raise InputError(problem, path)
    scaling = geometry.scaling_warnings(stored) if stored is not None else []
    for warning in geometry.header_warnings(img) + scaling:
        LOG.warning("%s: %s", path, warning)
        if warnings is not None:
            warnings.append(f"{path.name}: {warning}")
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:
        raise InputError(f"cannot read image ({_reason(exc)})", path) from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"expected a 3D volume, found {data.ndim}D with shape {tuple(data.shape)}", path)
    if min(data.shape) < 2:
        raise InputError(f"expected a 3D volume, found shape {tuple(data.shape)}", path)
    if kind == "label":
        if np.issubdtype(data.dtype, np.floating):
            if not np.all(np.isfinite(data)) or not np.all(data == np.round(data)):
                raise InputError("label map has non-integer values", path)
        if data.min() < 0:
            raise InputError("label map has negative labels", path)
        data = data.astype(np.int32)
        if not data.any():
            raise InputError("label map is empty (all background)", path)
    else:
        data = np.asarray(data, dtype=np.float32)
        if not np.all(np.isfinite(data)):
            raise InputError("image contains NaN or Inf values", path)
        problem = geometry.data_problem(data)
        if problem:
            raise InputError(problem, path)
    return nib.Nifti1Image(data, img.affine)


def _reason(exc: BaseException) -> str:
    """An exception as part of one message line (nibabel's and zlib's may span several)."""
    return f"{type(exc).__name__}: " + " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _read_file(path: Path) -> tuple[str | None, nib.Nifti1Header | None]:
    """What nibabel does not check, and the NIfTI-1 header as the file stores it (nibabel resets
    the scaling on loading), read once: a gzip stream that ends early or whose CRC or length is
    wrong (nibabel reads only the bytes the header asks for, so a damaged stream can decompress
    into wrong voxels unnoticed), a header whose datatype and bitpix disagree (nibabel trusts the
    datatype and mends bitpix, so the voxels would be read as another type), and scaling that
    makes the values unknown. Returns (problem or None, stored header or None)."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as stream:
                head = stream.read(348)
                while stream.read(1 << 24):   # to its end, where the trailer is checked
                    pass
        else:
            with open(path, "rb") as stream:
                head = stream.read(348)
    except (OSError, EOFError, zlib.error) as exc:
        return f"cannot read image (corrupt or truncated file: {_reason(exc)})", None
    if len(head) != 348 or head[344:348] not in (b"n+1\0", b"ni1\0"):
        return None, None
    header = nib.Nifti1Header(head, check=False)
    try:
        dtype = header.get_data_dtype()
    except Exception:   # an unknown datatype, which nibabel refuses when reading the data
        return None, None
    if int(header["bitpix"]) != dtype.itemsize * 8:
        return (f"the header's datatype ({dtype}, {dtype.itemsize * 8} bits) and bitpix ({int(header['bitpix'])}) "
                "disagree: the voxels cannot be read reliably"), header
    return geometry.scaling_problem(header), header


def same_grid(a: nib.spatialimages.SpatialImage, b: nib.spatialimages.SpatialImage, atol: float = 1e-3) -> bool:
    return tuple(a.shape[:3]) == tuple(b.shape[:3]) and np.allclose(a.affine, b.affine, atol=atol)


def to_canonical(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """Reorder voxels to the closest RAS orientation (a permutation/flip: no resampling)."""
    return nib.as_closest_canonical(img)


def from_canonical(data: np.ndarray, reference: nib.spatialimages.SpatialImage) -> np.ndarray:
    """Bring an array in the closest-canonical voxel order of `reference` back to its own order."""
    ornt = io_orientation(reference.affine)
    back = ornt_transform(axcodes2ornt(CANONICAL), ornt)
    return apply_orientation(data, back)


def padded_box(mask: np.ndarray, margin: float = 0.08) -> tuple[slice, ...] | None:
    """Bounding box of the non-zero voxels, widened on each side by `margin` of its extent (at
    least 2 voxels) and clipped to the array; None for an empty mask."""
    found = np.nonzero(mask)
    if not found[0].size:
        return None
    box = []
    for axis, n in zip(found, mask.shape):
        low, high = int(axis.min()), int(axis.max()) + 1
        pad = max(2, int(round(margin * (high - low))))
        box.append(slice(max(0, low - pad), min(n, high + pad)))
    return tuple(box)


def left_right_axis(affine: np.ndarray) -> int:
    """The array axis closest to the world left-right (x) axis."""
    return int(np.flatnonzero(io_orientation(affine)[:, 0] == 0)[0])


def _umask_mode() -> int:
    """Permissions a plainly created file gets (mkstemp makes files owner-only)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _write_atomic(path: str | os.PathLike, write, suffix: str = "") -> Path:
    """Call write(temporary path) beside `path`, then rename it into place: readers never see a
    partial file, and a failed write leaves the previous one intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_atomic(img: nib.Nifti1Image, path: str | os.PathLike) -> Path:
    """Write a NIfTI so that readers never see a partial file (temp file + rename)."""
    return _write_atomic(path, lambda tmp: nib.save(img, tmp), suffix="".join(Path(path).suffixes))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write a file so that readers never see a partial one (temp file + rename)."""
    return _write_atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode())


def label_image(data: np.ndarray, reference: nib.spatialimages.SpatialImage) -> nib.Nifti1Image:
    """A label map on `reference`'s grid with an integer on-disk type."""
    dtype = np.uint8 if data.max(initial=0) < 256 else np.int16
    img = nib.Nifti1Image(data.astype(dtype), reference.affine)
    img.set_data_dtype(dtype)
    img.header.set_xyzt_units("mm")
    return img



__all__ = ["load_volume", "same_grid", "to_canonical", "from_canonical", "save_atomic",
           "write_text_atomic", "label_image"]
