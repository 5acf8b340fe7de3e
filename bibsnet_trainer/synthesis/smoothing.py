"""Gaussian smoothing as cornucopia's `smoothnd` does it (its kernels: a Gaussian with a linear
basis; its default DCT-II boundary, i.e. half-sample symmetric), in a few device operators per
axis. cornucopia builds the kernel and computes its boundary indices on the tensor's device,
about 480 small operators for one 3D field: on a GPU each is a kernel launch, and together they
were more than half of the operators of a synthetic volume. Here the kernels are built on the host
and the boundary is two flips and a concatenation; results match cornucopia's (tests).

`lean_cornucopia_smoothing()` swaps this in for the cornucopia modules that smooth during
synthesis (psf: blur and low resolution; labels) while a sample is drawn.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from cornucopia.utils import conv as _cornucopia_conv
from cornucopia.utils.kernels import smoothing_kernel
from cornucopia.utils.py import make_vector

_cornucopia_smoothnd = _cornucopia_conv.smoothnd
_PATCHED_MODULES = ("cornucopia.psf", "cornucopia.labels")


def _symmetric_pad(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Half-sample symmetric padding (x[-1] = x[0]), cornucopia's `dct2` bound."""
    if radius == 0:
        return x
    low = x.narrow(dim, 0, radius).flip(dim)
    high = x.narrow(dim, x.shape[dim] - radius, radius).flip(dim)
    return torch.cat([low, x, high], dim)


def smoothnd(input: torch.Tensor, type: str = "gauss", fwhm=1, basis: int = 1, bound: str = "dct2",
             padding="same", stride=1, kernel=None) -> torch.Tensor:
    """cornucopia.utils.conv.smoothnd for its defaults (Gaussian, linear basis, dct2 bound, same
    size, stride 1): smooths the last len(fwhm) axes. Anything else goes to cornucopia's own."""
    fwhm = make_vector(fwhm).tolist()
    ndim = len(fwhm)
    usual = (type == "gauss" and basis == 1 and bound == "dct2" and padding == "same" and stride == 1
             and not kernel and input.is_floating_point() and 1 <= ndim <= 3 and input.dim() >= ndim)
    if usual:
        kernels = smoothing_kernel(type, make_vector(fwhm), basis, dtype=input.dtype, device="cpu")
        radii = [k.shape[2 + d] // 2 for d, k in enumerate(kernels)]
        usual = all(r < size for r, size in zip(radii, input.shape[-ndim:]))
    if not usual:
        return _cornucopia_smoothnd(input, type=type, fwhm=fwhm, basis=basis, bound=bound,
                                    padding=padding, stride=stride, kernel=kernel)
    convolve = (F.conv1d, F.conv2d, F.conv3d)[ndim - 1]
    x = input.reshape(-1, 1, *input.shape[-ndim:])
    for d, (k, radius) in enumerate(zip(kernels, radii)):
        x = convolve(_symmetric_pad(x, radius, 2 + d), k.to(input.device, non_blocking=True))
    return x.reshape(input.shape)


@contextlib.contextmanager
def lean_cornucopia_smoothing():
    """While inside, cornucopia's synthesis modules smooth with `smoothnd` above."""
    import importlib

    modules = [importlib.import_module(name) for name in _PATCHED_MODULES]
    saved = [m.smoothnd for m in modules]
    for m in modules:
        m.smoothnd = smoothnd
    try:
        yield
    finally:
        for m, original in zip(modules, saved):
            m.smoothnd = original
