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
from cornucopia.utils.conv import smoothnd


def gmm_image(labels: torch.Tensor, means: torch.Tensor, stds: torch.Tensor, class_fwhm: torch.Tensor,
              *, n_bins: int = 3, background: int | None = 0) -> torch.Tensor:
    """labels: (*spatial) integer classes 0..K-1; means, stds, class_fwhm: (K,). Returns float image."""
    ndim = labels.dim()
    dtype = means.dtype
    top = float(class_fwhm.max()) if class_fwhm.numel() else 0.0
    edges = torch.linspace(0, top, n_bins + 1, device=labels.device)[1:-1]
    class_bin = torch.bucketize(class_fwhm, edges)                       # (K,) in 0..n_bins-1
    widths = [float(class_fwhm[class_bin == b].mean()) if (class_bin == b).any() else 0.0
              for b in range(n_bins)]
    fields = []
    for width in widths:
        field = torch.randn(labels.shape, dtype=dtype, device=labels.device)
        fields.append(smoothnd(field, fwhm=[width] * ndim) if width > 0 else field)
    noise = torch.stack(fields).gather(0, class_bin[labels][None])[0]
    image = means[labels] + stds[labels] * noise
    if background is not None:
        image = image.masked_fill(labels == background, 0)
    return image


class FastGaussianMixtureTransform(FinalTransform):
    """Drop-in for cornucopia's RandomGaussianMixtureTransform on integer label maps: means
    ~ U(0, mu), stds ~ U(0, sigma), texture widths ~ U(0, fwhm), drawn from torch's generator."""

    def __init__(self, mu: float = 1.0, sigma: float = 0.05, fwhm: float = 2.0, n_bins: int = 3,
                 background: int | None = 0, classes: torch.Tensor | None = None, **kwargs):
        super().__init__(**kwargs)
        self.mu, self.sigma, self.fwhm, self.n_bins, self.background = mu, sigma, fwhm, n_bins, background
        self.classes = classes   # generation label -> intensity class (labels sharing a class share a Gaussian)

    def _xform(self, x: torch.Tensor) -> torch.Tensor:
        labels = x[0].long()
        if self.classes is not None:
            labels = self.classes.to(labels.device)[labels]
        k = int(labels.max()) + 1
        options = dict(dtype=torch.get_default_dtype(), device=x.device)
        means = torch.rand(k, **options) * self.mu
        stds = torch.rand(k, **options) * self.sigma
        widths = torch.rand(k, **options) * self.fwhm
        return gmm_image(labels, means, stds, widths, n_bins=self.n_bins, background=self.background)[None]
