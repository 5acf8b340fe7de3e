import torch

import pytest

from bibsnet_trainer.synthesis.gmm import FastGaussianMixtureTransform, gmm_image


def test_each_class_gets_its_mean_and_spread():
    torch.manual_seed(0)
    labels = torch.zeros(40, 40, 40, dtype=torch.long)
    labels[:20] = 1
    labels[20:, :20] = 2
    labels[20:, 20:] = 3
    means = torch.tensor([5.0, 0.2, 0.5, 0.9])
    stds = torch.tensor([1.0, 0.01, 0.05, 0.02])
    image = gmm_image(labels, means, stds, torch.tensor([0.0, 0.0, 3.0, 6.0]), n_bins=3)
    assert torch.all(image[labels == 0] == 0)                      # background stays empty
    for k in (1, 2, 3):
        values = image[labels == k]
        assert abs(values.mean() - means[k]) < 0.02
        assert values.std() <= stds[k] * 1.05                      # smoothing only lowers the spread
    assert abs(image[labels == 1].std() - 0.01) < 0.002            # unsmoothed class keeps its std


def test_transform_is_seeded_and_follows_input_device():
    labels = torch.randint(0, 5, (1, 16, 16, 16))
    transform = FastGaussianMixtureTransform(fwhm=3)
    torch.manual_seed(3)
    a = transform(labels)
    torch.manual_seed(3)
    b = transform(labels)
    assert a.shape == labels.shape and a.dtype == torch.get_default_dtype()
    assert torch.equal(a, b)


@pytest.mark.parametrize("shape,fwhm", [((1, 30, 34, 28), [2.5, 2.5, 2.5]), ((2, 30, 34, 28), [0.0, 4.0, 1.2]),
                                        ((40, 36), [3.0, 3.0]), ((3, 50), [1.5]), ((6, 6, 6), [9.0, 9.0, 9.0])])
def test_lean_smoothnd_equals_cornucopias(shape, fwhm):
    """Same kernels, same DCT-II boundary: the same result everywhere, edges included (the last
    case, a kernel wider than the volume, is handed to cornucopia's own)."""
    from cornucopia.utils.conv import smoothnd as cornucopia_smoothnd

    from bibsnet_trainer.synthesis.smoothing import smoothnd

    torch.manual_seed(0)
    field = torch.randn(shape)
    ours, theirs = smoothnd(field, fwhm=fwhm), cornucopia_smoothnd(field, fwhm=fwhm)
    assert ours.shape == theirs.shape == field.shape
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_lean_smoothing_is_swapped_in_only_inside_the_context():
    import cornucopia.psf

    from bibsnet_trainer.synthesis import smoothing

    original = cornucopia.psf.smoothnd
    with smoothing.lean_cornucopia_smoothing():
        assert cornucopia.psf.smoothnd is smoothing.smoothnd
    assert cornucopia.psf.smoothnd is original
