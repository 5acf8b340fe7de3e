"""Rigid coregistration of a T2w image to the T1w of the same session (SimpleITK: Mattes mutual
information, three resolution levels, centre-of-geometry initialisation, Euler3DTransform), the
transforms written as Nibabies reads precomputed ones, and label maps moved between the two grids.

Conventions (ITK/ANTs): registration with fixed = T1w, moving = T2w gives a transform that maps
T1w *physical points* (LPS mm) to T2w points. Resampling the T2w onto the T1w grid uses it as is;
ANTs/NiPreps call it `from-T2w_to-T1w` (the image moves from T2w to T1w). Its inverse is
`from-T1w_to-T2w`. Both are written as ITK text transforms
(`#Insight Transform File V1.0`, `AffineTransform_double_3_3`, 12 parameters, centre baked into
the offset so FixedParameters are 0 0 0), which antsApplyTransforms, SimpleITK and nitransforms read.
Nibabies queries `sub-X[_ses-Y]_from-T2w_to-T1w_mode-image_xfm.{h5,txt}` and the reverse
`..._from-T1w_to-T2w_...` (nibabies/data/io_spec_anat.json, "coreg") and uses them only when both
exist *and* precomputed T1w and T2w `desc-preproc` images are given too
(nibabies/workflows/anatomical/fit.py); both transforms are written.
"""
from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from ..errors import ProcessingError
from ..images import write_text_atomic

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


# ---------------------------------------------------------------- nibabel <-> SimpleITK (no file I/O)

def to_sitk(img: nib.spatialimages.SpatialImage, data: np.ndarray | None = None,
            pixel_type=sitk.sitkFloat32) -> sitk.Image:
    """A SimpleITK image on `img`'s grid (nibabel's affine, RAS, converted to ITK's LPS)."""
    array = np.asanyarray(img.dataobj) if data is None else np.asarray(data)
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    lps = LPS @ img.affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    out = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
    out = sitk.Cast(out, pixel_type)
    out.SetSpacing([float(s) for s in spacing])
    out.SetOrigin([float(o) for o in lps[:3, 3]])
    out.SetDirection([float(d) for d in direction.ravel()])
    return out


def from_sitk(image: sitk.Image) -> np.ndarray:
    """The voxel array of a SimpleITK image in nibabel's (i, j, k) order."""
    return np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))


# ---------------------------------------------------------------- registration

def _initial_transform(fixed: sitk.Image, moving: sitk.Image, init: str) -> sitk.Transform:
    modes = {"geometry": sitk.CenteredTransformInitializerFilter.GEOMETRY,
             "moments": sitk.CenteredTransformInitializerFilter.MOMENTS}
    if init not in modes:
        raise ValueError(f"init must be one of {sorted(modes)}")
    return sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(), modes[init])


def sampling_per_level(fixed: sitk.Image, shrink_factors, sampling: float, max_samples: int) -> list[float]:
    """Share of the fixed voxels sampled at each level: `sampling`, capped at `max_samples` points
    so that a 1 mm 256^3 image costs about what a small one does."""
    voxels = float(np.prod(fixed.GetSize()))
    return [float(min(sampling, max_samples / max(voxels / f ** 3, 1.0))) for f in shrink_factors]


def register_rigid(fixed: sitk.Image, moving: sitk.Image, *, fixed_mask: sitk.Image | None = None,
                   shrink_factors=(4, 2, 1), smoothing_sigmas_mm=(4.0, 2.0, 0.0), bins: int = 32,
                   sampling: float = 0.25, max_samples: int = 100_000, iterations: int = 200,
                   init: str = "geometry", seed: int = 0, threads: int | None = None) -> sitk.Euler3DTransform:
    """Rigid transform mapping fixed (T1w) points to moving (T2w) points.

    Mattes mutual information (`bins`; random sampling of `sampling` of the voxels, at most
    `max_samples` per level, seeded), regular-step gradient descent with scales from physical
    shifts, a pyramid of `shrink_factors`/`smoothing_sigmas_mm`, initialised by matching the image
    centres ("geometry") or the intensity centres of mass ("moments"). `fixed_mask` restricts the
    metric (e.g. a dilated brain mask). Raises ProcessingError when the optimiser fails."""
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    method = sitk.ImageRegistrationMethod()
    if threads:
        method.SetNumberOfThreads(int(threads))
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentagePerLevel(sampling_per_level(fixed, shrink_factors, sampling, max_samples),
                                               int(seed) + 1)    # SimpleITK: seed 0 = wall clock
    if fixed_mask is not None:
        method.SetMetricFixedMask(sitk.Cast(fixed_mask > 0, sitk.sitkUInt8))
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-4,
                                                    numberOfIterations=iterations,
                                                    relaxationFactor=0.5,
                                                    gradientMagnitudeTolerance=1e-6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(smoothing_sigmas_mm))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(_initial_transform(fixed, moving, init), inPlace=False)
    try:
        result = method.Execute(fixed, moving)
    except RuntimeError as exc:
        raise ProcessingError(f"T2w-to-T1w registration failed ({exc})") from None
    transform = result.GetNthTransform(0) if isinstance(result, sitk.CompositeTransform) else result
    return sitk.Euler3DTransform(transform)


def register_t2w_to_t1w(t1w: nib.spatialimages.SpatialImage, t2w: nib.spatialimages.SpatialImage,
                        t1w_mask: np.ndarray | None = None, **options) -> sitk.Euler3DTransform:
    """register_rigid on nibabel images (fixed T1w, moving T2w); t1w_mask on the T1w grid."""
    mask = None if t1w_mask is None else to_sitk(t1w, np.asarray(t1w_mask) > 0, sitk.sitkUInt8)
    return register_rigid(to_sitk(t1w), to_sitk(t2w), fixed_mask=mask, **options)


# ---------------------------------------------------------------- transforms as matrices and files

def as_affine(transform: sitk.Transform) -> sitk.AffineTransform:
    """An AffineTransform with centre 0 mapping points exactly as the (linear) transform does."""
    if isinstance(transform, sitk.CompositeTransform):
        if transform.GetNumberOfTransforms() != 1:
            raise ValueError("only a single linear transform can be written")
        transform = transform.GetNthTransform(0)
    matrix = np.array(transform.GetMatrix()).reshape(3, 3)
    center = np.array(transform.GetCenter())
    translation = np.array(transform.GetTranslation())
    offset = translation + center - matrix @ center
    out = sitk.AffineTransform(3)
    out.SetMatrix([float(v) for v in matrix.ravel()])
    out.SetTranslation([float(v) for v in offset])
    out.SetCenter((0.0, 0.0, 0.0))
    return out


def ras_matrix(transform: sitk.Transform) -> np.ndarray:
    """4x4 RAS matrix mapping the same points as the ITK (LPS) transform."""
    affine = as_affine(transform)
    lps = np.eye(4)
    lps[:3, :3] = np.array(affine.GetMatrix()).reshape(3, 3)
    lps[:3, 3] = affine.GetTranslation()
    return LPS @ lps @ LPS


def inverse(transform: sitk.Transform) -> sitk.AffineTransform:
    return as_affine(as_affine(transform).GetInverse())


def itk_text(transform: sitk.Transform) -> str:
    """The ITK text-transform file content (AffineTransform_double_3_3, FixedParameters 0 0 0)."""
    affine = as_affine(transform)
    params = list(affine.GetMatrix()) + list(affine.GetTranslation())
    return ("#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\n"
            f"Parameters: {' '.join(repr(float(p)) for p in params)}\n"
            "FixedParameters: 0 0 0\n")


def xfm_paths(output_dir: Path, subject: str, session: str | None = None) -> dict[str, Path]:
    """`t2w_to_t1w` / `t1w_to_t2w`: where the transforms go, next to the dseg files (anat/)."""
    stem = f"sub-{subject}" + (f"_ses-{session}" if session else "")
    folder = Path(output_dir) / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"
    return {"t2w_to_t1w": folder / f"{stem}_from-T2w_to-T1w_mode-image_xfm.txt",
            "t1w_to_t2w": folder / f"{stem}_from-T1w_to-T2w_mode-image_xfm.txt"}


def write_transforms(transform: sitk.Transform, output_dir: Path, subject: str,
                     session: str | None = None) -> dict[str, Path]:
    """Write the registration result (T1w points -> T2w points, i.e. from-T2w_to-T1w) and its inverse."""
    paths = xfm_paths(output_dir, subject, session)
    write_text_atomic(paths["t2w_to_t1w"], itk_text(transform))
    write_text_atomic(paths["t1w_to_t2w"], itk_text(inverse(transform)))
    return paths


def read_transform(path: str | os.PathLike) -> sitk.Transform:
    try:
        return sitk.ReadTransform(str(path))
    except RuntimeError as exc:
        raise ProcessingError(f"cannot read transform ({exc})", path) from None


# ---------------------------------------------------------------- label maps between the grids

def resample_labels(labels: np.ndarray, source: nib.spatialimages.SpatialImage,
                    target: nib.spatialimages.SpatialImage, transform: sitk.Transform) -> np.ndarray:
    """Labels on `source`'s grid brought onto `target`'s grid by nearest neighbour; `transform` maps
    target points to source points (ITK resampling convention). Outside the source: 0."""
    labels = np.asarray(labels)
    moving = to_sitk(source, labels.astype(np.int32), sitk.sitkInt32)
    reference = to_sitk(target, np.zeros(target.shape[:3], np.uint8), sitk.sitkUInt8)
    out = sitk.Resample(moving, reference, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkInt32)
    return from_sitk(out).astype(labels.dtype, copy=False)


def labels_t1w_to_t2w(labels: np.ndarray, t1w: nib.spatialimages.SpatialImage,
                      t2w: nib.spatialimages.SpatialImage, transform: sitk.Transform) -> np.ndarray:
    """A T1w-grid label map on the T2w grid; `transform` is register_t2w_to_t1w's result."""
    return resample_labels(labels, t1w, t2w, inverse(transform))


def labels_t2w_to_t1w(labels: np.ndarray, t2w: nib.spatialimages.SpatialImage,
                      t1w: nib.spatialimages.SpatialImage, transform: sitk.Transform) -> np.ndarray:
    """A T2w-grid label map on the T1w grid; `transform` is register_t2w_to_t1w's result."""
    return resample_labels(labels, t2w, t1w, transform)


def image_t2w_to_t1w(t2w: nib.spatialimages.SpatialImage, t1w: nib.spatialimages.SpatialImage,
                     transform: sitk.Transform) -> np.ndarray:
    """The T2w intensities on the T1w grid (linear), e.g. to feed a two-channel model."""
    out = sitk.Resample(to_sitk(t2w), to_sitk(t1w, np.zeros(t1w.shape[:3], np.uint8), sitk.sitkUInt8),
                        transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return from_sitk(out)


__all__ = ["to_sitk", "from_sitk", "register_rigid", "register_t2w_to_t1w", "as_affine", "ras_matrix",
           "inverse", "itk_text", "sampling_per_level", "xfm_paths", "write_transforms", "read_transform", "resample_labels",
           "labels_t1w_to_t2w", "labels_t2w_to_t1w", "image_t2w_to_t1w"]
