"""The one slice renderer of every figure (reports/figures.py `orthogonal_slices`): whatever order
the voxels are stored in, a structure on the subject's left-anterior-superior side is drawn on the
sides of each panel that its letters name L, A and S, and so is a label overlay."""
import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import axcodes2ornt, ornt_transform

from bibsnet_trainer.reports.figures import CONVENTION, PLANES, Overlay, orthogonal_slices, pyplot, to_ras

SHAPE = (40, 48, 36)                                   # RAS voxel order: x left->right, y back->front, z up
AFFINE = np.diag([2.0, 2.0, 2.5, 1.0])
AFFINE[:3, 3] = -np.array(SHAPE) * np.diag(AFFINE)[:3] / 2
# the left-anterior-superior block, crossing the three middle slices (x 20, y 24, z 18) off centre
BLOCK = (slice(0, 22), slice(22, 48), slice(16, 36))
SIDE = {0: "L", 1: "A", 2: "S"}                        # the block's side along each RAS axis
STORED = [("R", "A", "S"), ("L", "P", "S"), ("S", "L", "P"), ("P", "I", "R")]


def _stored(data, codes):
    """A NIfTI image of RAS-ordered `data`, its voxels stored in the order `codes`."""
    img = nib.Nifti1Image(data, AFFINE).as_reoriented(ornt_transform(axcodes2ornt("RAS"), axcodes2ornt(codes)))
    assert nib.aff2axcodes(img.affine) == codes
    return img


def _draw(fig):
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3] / 255.0, fig.canvas.get_renderer()


def _panel(fig, name):
    return next(ax for ax in fig.axes if ax.get_title().startswith(name))


def _centres(ax, rgb, renderer, selected):
    """Display (x, y) centre of the panel's image, of its pixels where `selected` holds, and of each letter."""
    box = ax.images[0].get_window_extent(renderer)
    height = rgb.shape[0]
    x0, x1, y0, y1 = int(np.ceil(box.xmin)), int(box.xmax), int(np.ceil(box.ymin)), int(box.ymax)
    rows, cols = np.nonzero(selected(rgb[height - y1:height - y0, x0:x1]))
    assert rows.size > 30, "nothing selected in the panel"
    letters = {}
    for text in ax.texts:
        b = text.get_window_extent(renderer)
        letters[text.get_text()] = ((b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2)
    return ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2), (x0 + cols.mean(), y1 - rows.mean()), letters


def _assert_on_the_lettered_sides(fig, rgb, renderer, selected, planes=PLANES):
    for plane in planes:
        centre, found, letters = _centres(_panel(fig, plane.name), rgb, renderer, selected)
        assert set(plane.letters) <= set(letters)
        for axis, screen in ((plane.across, 0), (plane.up, 1)):
            letter = letters[SIDE[axis]]                         # e.g. where the panel says "L"
            width = abs(letter[screen] - centre[screen])
            assert width > 10, (plane.name, SIDE[axis])
            # the structure lies towards that letter, clearly off the panel's middle
            assert (found[screen] - centre[screen]) * (letter[screen] - centre[screen]) > 0.15 * width ** 2, (
                plane.name, SIDE[axis], found, centre, letter)


def _white(rgb):
    return (rgb > 0.9).all(axis=-1)


def _warm(rgb):                                           # Left-Cerebral-White-Matter's red, not the yellow letters
    return (rgb[..., 0] > 0.5) & (rgb[..., 1] < 0.3) & (rgb[..., 2] < 0.3)


def _cool(rgb):                                           # Right-Cerebral-White-Matter's blue
    return (rgb[..., 2] > 0.5) & (rgb[..., 0] < 0.3)


@pytest.mark.parametrize("codes", STORED, ids=["".join(c) for c in STORED])
def test_a_left_anterior_superior_block_is_drawn_where_the_letters_say(codes):
    data = np.full(SHAPE, 40.0, np.float32)
    data[BLOCK] = 200.0
    fig = orthogonal_slices(_stored(data, codes), size=(12, 4.5))
    rgb, renderer = _draw(fig)
    _assert_on_the_lettered_sides(fig, rgb, renderer, _white)
    # one convention, stated once: neurological, the subject's left on the left of coronal and axial views
    assert CONVENTION.startswith("Neurological")
    for name in ("coronal", "axial"):
        _, _, letters = _centres(_panel(fig, name), rgb, renderer, _white)
        assert letters["L"][0] < letters["R"][0]
    assert [p.letters for p in PLANES] == [("P", "A", "I", "S"), ("L", "R", "I", "S"), ("L", "R", "P", "A")]
    # the same picture however the voxels are stored
    reference, _ = _draw(orthogonal_slices(nib.Nifti1Image(data, AFFINE), size=(12, 4.5)))
    assert np.array_equal(rgb, reference)
    pyplot().close("all")


@pytest.mark.parametrize("codes", STORED[1:3], ids=["".join(c) for c in STORED[1:3]])
def test_a_label_overlay_is_drawn_on_its_own_side(codes):
    labels = np.zeros(SHAPE, np.int16)
    labels[BLOCK] = 2                                     # Left-Cerebral-White-Matter: warm
    fig = orthogonal_slices(_stored(np.zeros(SHAPE, np.float32), codes),
                            Overlay(_stored(labels, codes), fill=0.8), crop=False, size=(12, 4.5))
    rgb, renderer = _draw(fig)
    _assert_on_the_lettered_sides(fig, rgb, renderer, _warm)
    pyplot().close("all")


def test_a_cropped_overlay_keeps_left_and_right_apart():
    """Cropped to the labels (the Dice overlays, the QC mosaics): warm Left-* on the L side, cool Right-* on the R side."""
    labels = np.zeros(SHAPE, np.int16)
    labels[4:18, 10:38, 8:28], labels[22:36, 10:38, 8:28] = 2, 41
    image = np.where(labels > 0, 100.0, 0.0).astype(np.float32)
    fig = orthogonal_slices(_stored(image, ("L", "P", "S")), Overlay(_stored(labels, ("L", "P", "S")), fill=0.8),
                            size=(12, 4.5))
    rgb, renderer = _draw(fig)
    for name in ("coronal", "axial"):
        ax = _panel(fig, name)
        centre, warm, letters = _centres(ax, rgb, renderer, _warm)
        _, cool, _ = _centres(ax, rgb, renderer, _cool)
        assert (warm[0] - centre[0]) * (letters["L"][0] - centre[0]) > 0
        assert (cool[0] - centre[0]) * (letters["R"][0] - centre[0]) > 0
    pyplot().close("all")


def test_mosaic_rows_are_the_planes_and_unknown_orders_get_no_letters():
    data = np.zeros(SHAPE, np.float32)
    data[BLOCK] = 1.0
    fig = orthogonal_slices(data, n_slices=4, size=(8, 6))     # an array: RAS order, no world coordinates
    assert len(fig.axes) == 12 and fig.axes[0].get_title() == "slice 8"
    assert [t.get_text() for t in fig.axes[0].texts if len(t.get_text()) > 1] == ["sagittal"]
    fig = orthogonal_slices(data, anatomical=False)
    assert not [t.get_text() for ax in fig.axes for t in ax.texts if len(t.get_text()) == 1]   # no letters
    assert fig.axes[0].get_title() == "array axis 0, slice 20"
    with pytest.raises(ValueError, match="not on one grid"):
        orthogonal_slices(data, np.zeros((4, 4, 4), np.int16))
    pyplot().close("all")


def test_to_ras_reorders_without_resampling():
    data = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    ras, zooms, affine = to_ras(_stored(data, ("S", "L", "P")))
    assert np.array_equal(ras, data) and np.allclose(affine, AFFINE) and zooms == (2.0, 2.0, 2.5)
