"""What every figure of the app shares (group report, QC report, synthesis preview): matplotlib
without a display, PNG bytes, one intensity window, one label-outline rule, PNGs embedded in HTML."""
from __future__ import annotations

import base64
import html
import io

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
                 thick: bool = False) -> np.ndarray:
    """RGBA image (upsampled by `factor`, nearest) with each label's outline in its colour (two
    pixels wide with `thick`) and, with fill > 0, its inside tinted at that opacity."""
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
    edge = outline(big)
    if thick:   # grow the outline inwards by one pixel (a 1-voxel line can vanish when shrunk for display)
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
