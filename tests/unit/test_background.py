"""The air around the head set to 0 before nnU-Net (nnunet/background.py): a noisy background
becomes the exact zeros FreeSurfer's images have, dark tissue inside the head stays, and models
record whether they were trained so."""
import nibabel as nib
import numpy as np

from bibsnet_trainer.labels import LabelTable
from bibsnet_trainer.nnunet import background, context
from bibsnet_trainer.nnunet.dataset import RawDatasetWriter, dataset_name
from bibsnet_trainer.nnunet.model_input import ModelInput
from bibsnet_trainer.nnunet.presets import PRESETS


def head(noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 48³ 'head': scalp (bright) around a dark skull around CSF and brain; air around it.
    Returns the image, the mask of the air more than 2 voxels from the head (the smoothing that
    keeps noise from breaking up the air leaves a thin rim next to the scalp) and the dark skull."""
    grid = np.indices((48, 48, 48)).astype(np.float32) - 23.5
    r = np.sqrt((grid ** 2).sum(0))
    image = np.zeros(r.shape, np.float32)
    image[r < 20] = 70.0                       # scalp
    skull = (r < 18) & (r >= 16)
    image[skull] = 4.0                         # dark, but inside the head
    image[r < 16] = 25.0                       # CSF
    image[r < 14] = 110.0                      # brain
    rng = np.random.default_rng(seed)
    noisy = np.abs(image + rng.normal(0, noise * 110.0, image.shape)).astype(np.float32)   # magnitude: Rician-like
    return noisy, r >= 22, skull


def test_noise_in_the_air_becomes_zero_and_the_head_stays():
    image, air, skull = head(noise=0.03)
    zeroed = background.with_air_zeroed(image)
    inside = np.sqrt(((np.indices(image.shape) - 23.5) ** 2).sum(0)) < 20
    assert (zeroed[air] == 0).mean() > 0.99               # the air, noise and all
    assert np.array_equal(zeroed[inside], image[inside])  # the head untouched, its dark skull too
    assert skull.any() and (zeroed[skull] > 0).all()
    assert not np.shares_memory(zeroed, image) and (image[air] > 0).any()   # the input unchanged


def test_a_zero_background_image_is_left_as_it_is():
    image, _, _ = head(noise=0.0)
    assert np.array_equal(background.with_air_zeroed(image), image)
    assert not background.air_mask(np.zeros((8, 8, 8), np.float32)).any()


def test_the_dataset_and_the_model_say_whether_air_was_zeroed(tmp_path):
    table = LabelTable.from_codes([0, 2])
    folder = tmp_path / dataset_name(8, "X")
    image, air, _ = head(noise=0.03)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    labels = nib.Nifti1Image((~air).astype(np.int16) * 2, affine)
    writer = RawDatasetWriter(folder, ModelInput(["T1w"], table, zero_air=True))
    writer.add_case("case1", [nib.Nifti1Image(image, affine)], labels)
    written = np.asarray(nib.load(folder / "imagesTr" / "case1_0000.nii.gz").dataobj)
    assert (written[air] == 0).mean() > 0.99 and np.array_equal(written, background.with_air_zeroed(image))
    assert writer.write_dataset_json()[background.DATASET_KEY] is True
    # cases written under the other rule are written again
    assert RawDatasetWriter(folder, ModelInput(["T1w"], table)).removed_for_new_input == 1
    assert background.DATASET_KEY not in RawDatasetWriter(folder, ModelInput(["T1w"], table)).write_dataset_json()
    # the predictor makes its channels the same way
    channels = context.input_channels([nib.Nifti1Image(image, affine)], (0.0,), zero_air=True)
    assert np.array_equal(channels[0], written)
    assert PRESETS["cpu"].zero_air and not PRESETS["gpu"].zero_air
