"""What every figure of the app shares (group report, QC report, synthesis preview): matplotlib
without a display, PNG bytes, one intensity window, one label-outline rule, PNGs embedded in HTML,
and one renderer of orthogonal slices (`orthogonal_slices`) with one orientation convention."""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass

import numpy as np

WINDOW_PERCENTILES = (0.5, 99.5)


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def png_bytes(fig, dpi: int = 110, **savefig) -> bytes:
    """A matplotlib figure as PNG bytes; closes the figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, **savefig)
    pyplot().close(fig)
    return buffer.getvalue()


def intensity_window(image: np.ndarray, where: np.ndarray | None = None) -> tuple[float, float]:
    """Display range: the 0.5-99.5th percentiles of the image where `where` is true (default and
    fallback: its non-zero finite voxels), so a bright skull or an empty background never sets it."""
    image = np.asarray(image)
    finite = np.isfinite(image)
    values = image[finite & where] if where is not None and (finite & where).any() else image[finite & (image != 0)]
    if values.size == 0:
        values = image[finite]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, WINDOW_PERCENTILES)
    return float(low), float(high if high > low else low + 1)


def outline(labels2d: np.ndarray) -> np.ndarray:
    """Pixels of a 2-D label slice on a boundary: a different label among the 4 neighbours."""
    edge = np.zeros(labels2d.shape, bool)
    edge[1:, :] |= labels2d[1:, :] != labels2d[:-1, :]
    edge[:-1, :] |= labels2d[:-1, :] != labels2d[1:, :]
    edge[:, 1:] |= labels2d[:, 1:] != labels2d[:, :-1]
    edge[:, :-1] |= labels2d[:, :-1] != labels2d[:, 1:]
    return edge & (labels2d != 0)


def _upsample(plane: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(plane, factor, axis=0), factor, axis=1) if factor > 1 else plane


def overlay_rgba(labels2d: np.ndarray, colours: dict[int, tuple], factor: int, *, fill: float = 0.0,
                 width: int = 1) -> np.ndarray:
    """RGBA image (upsampled by `factor`, nearest) with each label's outline in its colour, `width`
    pixels wide (grown inwards; 0: no outline), and, with fill > 0, its inside tinted at that opacity."""
    big = _upsample(labels2d, factor)
    rgba = np.zeros(big.shape + (4,), np.float32)
    lut = np.zeros((int(big.max(initial=0)) + 1, 3), np.float32)
    for code in np.unique(big):
        if code:
            lut[code] = colours.get(int(code), (1.0, 1.0, 1.0))
    if fill > 0:
        inside = big != 0
        rgba[inside, :3] = lut[big[inside]]
        rgba[inside, 3] = fill
    if width < 1:
        return rgba
    edge = outline(big)
    for _ in range(width - 1):   # grow inwards one pixel at a time (a 1-voxel line can vanish when shrunk)
        inner = np.zeros_like(edge)
        inner[1:, :] |= edge[:-1, :]
        inner[:-1, :] |= edge[1:, :]
        inner[:, 1:] |= edge[:, :-1]
        inner[:, :-1] |= edge[:, 1:]
        edge |= inner & (big != 0)
    rgba[edge, :3] = lut[big[edge]]
    rgba[edge, 3] = 1.0
    return rgba


def top_panel_png(path, panels: int = 3, width: int = 1500) -> bytes:
    """The first of `panels` equal stacked panels of a PNG, scaled to `width` pixels: nnU-Net's
    progress.png stacks losses and validation pseudo-Dice over epoch durations and the learning
    rate; the report keeps the curve people read."""
    from PIL import Image
    with Image.open(path) as image:
        # a little past the third: nnU-Net's tight layout puts the first panel's axis label just below it
        top = image.crop((0, 0, image.width, min(image.height, round(image.height * (1 / panels + 0.006)))))
        if top.width > width:
            top = top.resize((width, round(top.height * width / top.width)), Image.LANCZOS)
        out = io.BytesIO()
        top.save(out, format="PNG", optimize=True)
    return out.getvalue()


def embed_png(png: bytes, alt: str) -> str:
    """An <img> holding the PNG itself, so the HTML page is one self-contained file."""
    return (f"<img style='max-width:100%' alt='{html.escape(alt)}' "
            f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>")


# label outline colours: Left-* warm, the matching Right-* the same shade of cool, others violet/white
WARM = ("#ff3b30", "#ff9500", "#ffd60a", "#ff2d95", "#ff7f50", "#e4002b", "#ffb703", "#fb5607",
        "#ff8fab", "#f4a261", "#d00000", "#ffea00")
COOL = ("#00b4ff", "#34c759", "#64dfdf", "#4361ee", "#2ec4b6", "#00f5d4", "#4cc9f0", "#80ed99",
        "#3a86ff", "#06d6a0", "#48cae4", "#b5e48c")
MIDLINE = ("#d500f9", "#ffffff", "#b388ff", "#ea80fc", "#c0c0c0", "#7c4dff")


def hex_rgb(hex_colour: str) -> tuple[float, float, float]:
    return tuple(int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5))


# background of a QC status (ok, warn, fail, n/a) in tables
STATUS_COLOURS = {"n/a": "#eeeeee", "ok": "#d9f0d3", "warn": "#fff3c4", "fail": "#fbd0cb"}


def label_colours() -> dict[int, tuple[float, float, float]]:
    """FreeSurfer code -> RGB: Left-* warm, its Right-* mirror the matching cool shade, others violet/white."""
    from ..labels import freesurfer_names, hemisphere_codes, left_right_pairs
    left, _ = hemisphere_codes()
    pairs = left_right_pairs()
    colours: dict[int, tuple[float, float, float]] = {}
    for i, code in enumerate(sorted(left)):
        colours[code] = hex_rgb(WARM[i % len(WARM)])
        if code in pairs:
            colours[pairs[code]] = hex_rgb(COOL[i % len(COOL)])
    others = sorted(c for c in freesurfer_names() if c not in colours and c != 0)
    for i, code in enumerate(others):
        colours[code] = hex_rgb(MIDLINE[i % len(MIDLINE)])
    return colours


# ----------------------------------------------------------------------------- orthogonal slices
# The one display convention of every slice figure (Dice overlays, QC mosaics, synthesis preview).
# Voxels are put in the closest RAS order (a permutation/flip, no resampling: nibabel's closest
# canonical); NEUROLOGICAL puts the subject's left on the left of coronal and axial views (False:
# radiological, left on the right). Always: superior up (sagittal, coronal), anterior up (axial),
# anterior to the right (sagittal). Each panel carries the letters of its four edges.
NEUROLOGICAL = True
CONVENTION = (("Neurological" if NEUROLOGICAL else "Radiological") + " convention: subject's left on the "
              + ("left" if NEUROLOGICAL else "right") + " (axial, coronal); anterior up (axial), "
              "superior up (coronal, sagittal), anterior right (sagittal)")
_TOWARDS, _FROM = "RAS", "LPI"     # letter of each RAS axis's positive and negative end


@dataclass(frozen=True)
class Plane:
    """A view of a RAS volume: the axis held fixed, the axis running across (left to right on
    screen) and the axis running up."""
    name: str
    fixed: int
    across: int
    up: int

    @property
    def mirrored(self) -> bool:
        """Whether the across axis runs right-to-left on screen (left-right axis, radiological)."""
        return self.across == 0 and not NEUROLOGICAL

    @property
    def letters(self) -> tuple[str, str, str, str]:
        """The anatomical letters of the panel's left, right, bottom and top edges."""
        left, right = _FROM[self.across], _TOWARDS[self.across]
        if self.mirrored:
            left, right = right, left
        return left, right, _FROM[self.up], _TOWARDS[self.up]


PLANES = (Plane("sagittal", 0, 1, 2), Plane("coronal", 1, 0, 2), Plane("axial", 2, 0, 1))


@dataclass(frozen=True)
class Overlay:
    """A label map drawn over the image: each label's outline, `width` display pixels wide (0: none),
    in its colour and, with `fill` > 0, its inside tinted at that opacity. labels: an array on the
    image's grid or a nibabel image; colours: code -> RGB (default: the label table's, `label_colours`)
    or one RGB for every label."""
    labels: object
    colours: dict | tuple | None = None
    fill: float = 0.0
    width: int = 1


def _data_and_affine(image, affine=None) -> tuple[np.ndarray, np.ndarray | None]:
    if hasattr(image, "dataobj") and hasattr(image, "affine"):
        data, affine = np.asanyarray(image.dataobj), np.asarray(image.affine, float)
    else:
        data = np.asanyarray(image)
    if data.ndim > 3 and int(np.prod(data.shape[3:])) == 1:
        data = data.reshape(data.shape[:3])
    return data, (None if affine is None else np.asarray(affine, float))


def to_ras(image, affine=None, spacing=None) -> tuple[np.ndarray, tuple[float, ...], np.ndarray | None]:
    """(data, voxel sizes, affine) in closest-RAS voxel order: a nibabel image, or an array with its
    affine. An array without an affine is taken as RAS-ordered with `spacing` (default 1 mm) and
    the affine returned is None (no world coordinates known)."""
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation
    data, affine = _data_and_affine(image, affine)
    if affine is None or data.ndim != 3:
        zooms = tuple(float(s) for s in (spacing or (1.0,) * data.ndim))
        return data, zooms, affine
    ornt = io_orientation(affine)
    if not np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]):
        affine = affine @ inv_ornt_aff(ornt, data.shape)
        data = apply_orientation(data, ornt)
    return data, tuple(float(z) for z in np.sqrt((affine[:3, :3] ** 2).sum(axis=0))), affine


def slice_indices(extent: slice, count: int) -> list[int]:
    """`count` slices evenly inside [start, stop), away from the edges."""
    start, stop = extent.start, extent.stop
    positions = [start + (stop - start) * (i + 1) / (count + 1) for i in range(count)]
    return sorted({min(stop - 1, max(start, int(round(p)))) for p in positions})


def slice_position(fixed: int, voxel, affine) -> str:
    """'x = +12 mm' for the slice through `voxel` along axis `fixed` of a RAS array (its world
    coordinate on that axis), or 'slice 40' without an affine."""
    if affine is None:
        return f"slice {int(voxel[fixed])}"
    world = float(np.asarray(affine)[fixed, :3] @ np.asarray(voxel, float) + np.asarray(affine)[fixed, 3])
    return f"{'xyz'[fixed]} = {world:+.0f} mm"


def _layers(overlay, shape, affine) -> list[tuple[np.ndarray, Overlay]]:
    """Each overlay's labels in RAS order on the image's grid, with how to draw them."""
    specs = () if overlay is None else overlay if isinstance(overlay, (list, tuple)) else (overlay,)
    layers = []
    for spec in specs:
        spec = spec if isinstance(spec, Overlay) else Overlay(spec)
        labels = to_ras(spec.labels, None if hasattr(spec.labels, "affine") else affine)[0]
        if labels.shape != shape:
            raise ValueError(f"image {shape} and overlay {labels.shape} are not on one grid")
        labels = np.asarray(labels).astype(np.int32)
        colours = spec.colours
        if colours is None:
            colours = label_colours()
        elif not isinstance(colours, dict):
            colours = {int(code): tuple(colours) for code in np.unique(labels) if code}
        layers.append((labels, Overlay(None, colours, spec.fill, spec.width)))
    return layers


def _padded_box(mask: np.ndarray, margin: float = 0.08) -> tuple[slice, ...] | None:
    from ..images import padded_box
    return padded_box(mask, margin)


def _framing(shape, layers, n_slices: int, crop: bool):
    """The box each panel shows (the labelled region, padded, with `crop`; else everything) and the
    slices of each plane: `n_slices` evenly through the first non-empty label map's padded box."""
    whole = tuple(slice(0, n) for n in shape)
    if not crop or not layers:
        return whole, {p.fixed: slice_indices(whole[p.fixed], n_slices) for p in PLANES}
    union = np.zeros(shape, bool)
    for labels, _ in layers:
        union |= labels != 0
    box = _padded_box(union) or whole
    first = next((b for b in (_padded_box(labels) for labels, _ in layers) if b is not None), box)
    return box, {p.fixed: slice_indices(first[p.fixed], n_slices) for p in PLANES}


def _letters(ax, letters, fontsize: float) -> None:
    from matplotlib import patheffects
    halo = [patheffects.withStroke(linewidth=2, foreground="black")]
    for text, x, y, ha, va in ((letters[0], 0.01, 0.5, "left", "center"), (letters[1], 0.99, 0.5, "right", "center"),
                               (letters[2], 0.5, 0.01, "center", "bottom"), (letters[3], 0.5, 0.99, "center", "top")):
        ax.text(x, y, text, color="#ffff66", fontsize=fontsize, fontweight="bold", transform=ax.transAxes,
                ha=ha, va=va, path_effects=halo, gid=f"letter-{text}")


def _panel(ax, image2d, labels2d, specs, extent, window, dpi: float) -> None:
    """One panel: a 2-D slice (rows: up, columns: across; row 0 at the bottom) and its label maps."""
    ax.set_facecolor("black")
    ax.set_axis_off()
    ax.set_xticks([])   # no tick objects: matplotlib would still make and measure them for the title
    ax.set_yticks([])
    ax.imshow(image2d, cmap="gray", vmin=window[0], vmax=window[1], origin="lower", extent=extent,
              interpolation="bilinear")
    # about one overlay pixel per screen pixel
    box = ax.get_position()
    inches = max(box.width * ax.figure.get_figwidth(), box.height * ax.figure.get_figheight())
    factor = max(1, min(16, int(round(inches * dpi / max(image2d.shape)))))
    for plane_labels, spec in zip(labels2d, specs):
        ax.imshow(overlay_rgba(plane_labels, spec.colours, factor, fill=spec.fill, width=spec.width),
                  origin="lower", extent=extent, interpolation="nearest")
    ax.set_aspect("equal")


def _grid(axes, rows: int, cols: int, size, dark: bool):
    plt = pyplot()
    if axes is None:
        fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False, facecolor="black" if dark else "white")
    axes = np.asarray(axes, dtype=object).reshape(-1, np.shape(axes)[-1] if np.ndim(axes) else 1)
    if axes.shape[0] < rows or axes.shape[1] < cols:
        raise ValueError(f"{rows}x{cols} panels do not fit in axes {axes.shape}")
    return axes[0, 0].figure, axes


def orthogonal_slices(image, overlay=None, *, affine=None, spacing=None, n_slices: int = 1, crop: bool = True,
                      anatomical: bool = True, axes=None, row_label: str | None = None, dark: bool = False,
                      size=(13, 5.0), dpi: float = 110):
    """Sagittal, coronal and axial slices of a 3-D image in closest-RAS order, shown in the one
    convention of every figure (`CONVENTION`), each panel lettered at its edges (L/R, P/A, I/S) and
    titled with its slice's world coordinate (its index without an affine).

    image: a nibabel image, or an array (with `affine`; without one it is taken as RAS-ordered with
    voxel sizes `spacing`). overlay: None, a label map, an `Overlay` or a sequence of them (drawn in
    order), on the image's grid. With `crop`, panels show the labelled region (padded) and slices go
    through the first non-empty label map; else the whole array and its middle. One slice per plane:
    one row of three panels titled "<plane>, <position>"; `n_slices` > 1: a mosaic, one row per plane
    named at its left, `n_slices` columns. `anatomical=False`: the array order is unknown (e.g. a
    network's patch): panels are named by array axis, without letters. A 2-D array is one panel in
    its own order (axis 0 across, axis 1 up). Draws into `axes` (rows x columns) or a new figure of
    `size` inches; `dpi` is the PNG's, for the outline resolution. Returns the figure."""
    data, zooms, affine = to_ras(image, affine, spacing)
    data = np.asarray(data, np.float32)
    layers = _layers(overlay, data.shape, affine)
    specs = [spec for _, spec in layers]
    labelled = np.any([labels != 0 for labels, _ in layers], axis=0) if layers else None
    window = intensity_window(data, labelled)
    mosaic = n_slices > 1 and data.ndim == 3
    rows, cols = (len(PLANES), n_slices) if mosaic else (1, len(PLANES))
    fig, axes = _grid(axes, rows, cols, size, dark)
    text = "#bbbbbb" if dark else "black"
    fontsize = 7 if fig.get_figwidth() / cols < 2.6 else 9
    for ax in axes[:rows, :cols].flat:
        ax.set_axis_off()
    if data.ndim == 2:
        extent = (0.0, data.shape[0] * zooms[0], 0.0, data.shape[1] * zooms[1])
        _panel(axes[0, 0], data.T, [labels.T for labels, _ in layers], specs, extent, window, dpi)
        _row_label(axes[0, 0], row_label, fontsize, dark)
        return fig
    if data.ndim != 3:
        raise ValueError(f"a 3-D (or 2-D) image is needed, not {data.shape}")
    box, indices = _framing(data.shape, layers, n_slices, crop)
    for p, plane in enumerate(PLANES):
        name = plane.name if anatomical else f"array axis {plane.fixed}"
        for s, index in enumerate(indices[plane.fixed]):
            ax = axes[p, s] if mosaic else axes[0, p]
            cut = list(box)
            cut[plane.fixed] = index
            left, right = box[plane.across].start * zooms[plane.across], box[plane.across].stop * zooms[plane.across]
            extent = (left, right, box[plane.up].start * zooms[plane.up], box[plane.up].stop * zooms[plane.up])
            _panel(ax, data[tuple(cut)].T, [labels[tuple(cut)].T for labels, _ in layers], specs, extent, window, dpi)
            if plane.mirrored:
                ax.invert_xaxis()
            voxel = [(b.start + b.stop - 1) / 2 for b in box]
            voxel[plane.fixed] = index
            where = slice_position(plane.fixed, voxel, affine if anatomical else None)
            ax.set_title(where if mosaic else f"{name}, {where}", color=text, fontsize=fontsize, pad=2)
            if anatomical:
                _letters(ax, plane.letters, fontsize)
        if mosaic:
            _row_label(axes[p, 0], name, fontsize, dark)
    if not mosaic:
        _row_label(axes[0, 0], row_label, fontsize, dark)
    return fig


def _row_label(ax, label: str | None, fontsize: float, dark: bool) -> None:
    if label:
        ax.text(-0.04, 0.5, label, color="white" if dark else "black", fontsize=fontsize, rotation=90,
                transform=ax.transAxes, ha="right", va="center")
