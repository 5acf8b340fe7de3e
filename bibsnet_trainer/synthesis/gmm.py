"""A Gaussian-mixture contrast with texture, vectorised over classes.

cornucopia's GaussianMixtureFinalTransform draws and smooths one full-volume noise field per class
(K smoothing passes: the hot spot of synthesis). Here the per-class texture widths are rounded to
a few bins, one noise field is drawn and smoothed per bin, and every voxel gathers its class's
mean, standard deviation and bin: `n_bins` smoothing passes whatever the number of classes.
Voxels of one class only ever read one field, so classes keep independent textures; the price is
that class widths take `n_bins` values instead of a continuum.
"""
from __future__ import annotations

import torch
from cornucopia.base import FinalTransform

from .smoothing import smoothnd


def gmm_image(labels: torch.Tensor, means: torch.Tensor, stds: torch.Tensor, class_fwhm: torch.Tensor,
              *, n_bins: int = 3, background: int | None = 0) -> torch.Tensor:
    """labels: (*spatial) integer classes 0..K-1; means, stds: (K,) on the labels' device;
    class_fwhm: (K,), best on the CPU (the binning is small host work: no device round trips).
    Returns a float image."""
    dtype = means.dtype
    class_fwhm = class_fwhm.detach().cpu()
    top = float(class_fwhm.max()) if class_fwhm.numel() else 0.0
    edges = torch.linspace(0, top, n_bins + 1)[1:-1]
    class_bin = torch.bucketize(class_fwhm, edges)                       # (K,) in 0..n_bins-1
    widths = [float(class_fwhm[class_bin == b].mean()) if (class_bin == b).any() else 0.0
              for b in range(n_bins)]
    fields = []
    for width in widths:
        field = torch.randn(labels.shape, dtype=dtype, device=labels.device)
        fields.append(smoothnd(field, fwhm=[width] * labels.dim()) if width > 0 else field)
    noise = torch.stack(fields).gather(0, class_bin.to(labels.device)[labels][None])[0]
    image = means[labels] + stds[labels] * noise
    if background is not None:
        image = image.masked_fill(labels == background, 0)
    return image


class FastGaussianMixtureTransform(FinalTransform):
    """Drop-in for cornucopia's RandomGaussianMixtureTransform on integer label maps. Per
    generation label, means and stds come from `class_params` (drawn from intensity priors by the
    caller; labels of one class carry equal values) or else ~ U(0, mu) and U(0, sigma); texture
    widths ~ U(0, fwhm). Draws from torch's global generator."""

    def __init__(self, mu: float = 1.0, sigma: float = 0.05, fwhm: float = 2.0, n_bins: int = 3,
                 background: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.mu, self.sigma, self.fwhm, self.n_bins, self.background = mu, sigma, fwhm, n_bins, background
        self.class_params: tuple[torch.Tensor, torch.Tensor] | None = None

    def _xform(self, x: torch.Tensor) -> torch.Tensor:
        labels = x[0].long()
        k = int(labels.max()) + 1
        options = dict(dtype=torch.get_default_dtype(), device=x.device)
        if self.class_params is not None:
            means, stds = (p.to(**options) for p in self.class_params)
            if len(means) < k:
                raise ValueError(f"class_params cover {len(means)} labels, the map has {k}")
        else:
            means = torch.rand(k, **options) * self.mu
            stds = torch.rand(k, **options) * self.sigma
        # texture widths drawn on the host (CPU generator): binning them needs no device sync
        widths = torch.rand(len(means), dtype=options["dtype"]) * self.fwhm
        # labels sharing a mean and sd share a texture width too
        widths = widths[_first_index_of_equal(means, stds).cpu()]
        return gmm_image(labels, means, stds, widths, n_bins=self.n_bins, background=self.background)[None]


def _first_index_of_equal(means: torch.Tensor, stds: torch.Tensor) -> torch.Tensor:
    """For each entry, the index of the first entry with the same (mean, sd) pair."""
    pairs = torch.stack([means, stds], 1)
    same = (pairs[:, None, :] == pairs[None, :, :]).all(-1)
    return same.int().argmax(1)
