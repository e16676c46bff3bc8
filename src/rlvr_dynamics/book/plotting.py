"""One seaborn theme for every figure; figures saved as PNG and SVG, atomically; the smallest text of a
figure measured as a reader sees it in the book's column (:func:`legibility`)."""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.text import Text

from rlvr_dynamics.files import write_files_atomic

PALETTE = "colorblind"

COLUMN_PX = 768
"""Width of a figure in the book's text column in CSS px on a 1400 px wide screen (sphinx-book-theme,
measured in Chromium): an image wider than this is scaled down to it, a narrower one is shown at its
natural size."""
PHONE_COLUMN_PX = 372
"""The same on a 420 px wide phone screen."""
MIN_DISPLAYED_PT = 10.0
"""The smallest text a figure may show in the column, in points as displayed (1 pt = 96/72 CSS px)."""
CSS_PX_PER_INCH = 96.0


def set_theme() -> None:
    """The book's plotting style (call once per notebook)."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
    matplotlib.rcParams.update(
        {
            # The book shows the notebook's inline PNG (rendered at figure.dpi): at the saved files' dpi it
            # is the same image as NAME.png, so legibility() measures what the reader sees, and a click
            # enlarges it to 1.5 × its print size.
            "figure.dpi": 150,
            "savefig.dpi": 150,
            "savefig.bbox": "tight",
            "svg.hashsalt": "rlvr-dynamics",  # stable SVG ids: same data, same file
            "axes.titleweight": "bold",
        }
    )


def render_figure(fig: plt.Figure) -> dict[str, bytes]:
    """``fig`` rendered as PNG and SVG (byte-stable: no date, no software tag)."""
    rendered = {}
    for extension in ("png", "svg"):
        buffer = io.BytesIO()
        metadata = {"Date": None} if extension == "svg" else {"Software": None}
        fig.savefig(buffer, format=extension, metadata=metadata)
        rendered[extension] = buffer.getvalue()
    return rendered


def save_figure(fig: plt.Figure, output_dir: str | os.PathLike, name: str,
                rendered: dict[str, bytes] | None = None) -> list[str]:
    """Save ``fig`` (or its ``rendered`` files, :func:`render_figure`) as ``name.png`` and ``name.svg`` in
    ``output_dir`` (both rendered first, then written together atomically); return the file names."""
    rendered = render_figure(fig) if rendered is None else rendered
    files = {Path(output_dir) / f"{name}.{extension}": data for extension, data in rendered.items()}
    return [path.name for path in write_files_atomic(files)]


@dataclass(frozen=True)
class Legibility:
    """How large a figure's smallest text is when the book shows it.

    Attributes:
        width_px: the saved PNG's width (its natural width in CSS px).
        smallest_pt: the smallest font size of any visible, non-empty text of the figure, in points as
            drawn (matplotlib's size).
        smallest_text: that text (to say which one is too small).
        column_pt: ``smallest_pt`` as displayed in the column (:data:`COLUMN_PX`), in points.
        phone_pt: the same on a phone (:data:`PHONE_COLUMN_PX`).
    """

    width_px: int
    smallest_pt: float
    smallest_text: str
    column_pt: float
    phone_pt: float

    def as_dict(self) -> dict:
        return {"width_px": self.width_px, "smallest_pt": round(self.smallest_pt, 2),
                "smallest_text": self.smallest_text, "column_pt": round(self.column_pt, 2),
                "phone_pt": round(self.phone_pt, 2)}


def displayed_points(size_pt: float, width_px: int, dpi: float, column_px: float = COLUMN_PX) -> float:
    """A font of ``size_pt`` points in a figure saved at ``dpi`` to a PNG ``width_px`` wide, as displayed
    in a column ``column_px`` CSS px wide (the image is shown at min(natural, column) width; one image
    pixel is one CSS px at natural size), in points (72 per CSS inch of 96 px).

    Example: 11 pt saved at 150 dpi is 22.9 px tall; an image 1500 px wide shown in 768 px is scaled by
    0.512, so the text is 11.7 px = 8.8 pt.
    """
    if size_pt <= 0 or width_px <= 0 or dpi <= 0 or column_px <= 0:
        raise ValueError(f"sizes must be positive: size_pt={size_pt}, width_px={width_px}, dpi={dpi}, "
                         f"column_px={column_px}")
    scale = min(1.0, column_px / width_px)
    return size_pt * dpi / CSS_PX_PER_INCH * scale


def png_width(png: bytes) -> int:
    """The width in pixels of a PNG (from its IHDR chunk)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    return struct.unpack(">I", png[16:20])[0]


def visible_texts(fig: plt.Figure) -> list[Text]:
    """Every text the figure draws: visible, non-empty, inside visible axes (titles, labels, tick labels
    within the axis limits, legends, annotations, colorbar labels)."""
    fig.canvas.draw()  # resolves tick labels and legends
    texts = []
    for text in fig.findobj(Text):
        if not text.get_visible() or not text.get_text().strip():
            continue
        parent = text.axes
        if parent is not None and not parent.get_visible():
            continue
        texts.append(text)
    ticks = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                inside = low - 1e-9 * (abs(low) + abs(high)) <= tick.get_loc() <= high + 1e-9 * (abs(low) + abs(high))
                if not inside or not tick.get_visible():
                    ticks.update({id(tick.label1), id(tick.label2)})
    return [text for text in texts if id(text) not in ticks]


def legibility(fig: plt.Figure, width_px: int, dpi: float | None = None) -> Legibility:
    """The smallest text of ``fig`` as a reader sees it: in the book's column and on a phone, for the
    figure saved at ``dpi`` (default ``savefig.dpi``) to a PNG ``width_px`` wide."""
    dpi = float(matplotlib.rcParams["savefig.dpi"] if dpi is None else dpi)
    texts = visible_texts(fig)
    if not texts:
        raise ValueError("the figure draws no text: a figure needs at least axis labels or a title")
    smallest = min(texts, key=lambda text: text.get_fontsize())
    size = float(smallest.get_fontsize())
    return Legibility(width_px, size, smallest.get_text().strip()[:60],
                      displayed_points(size, width_px, dpi, COLUMN_PX),
                      displayed_points(size, width_px, dpi, PHONE_COLUMN_PX))


def require_legible(name: str, measured: Legibility, minimum: float = MIN_DISPLAYED_PT) -> None:
    """Raise ``ValueError`` when the figure's smallest text is below ``minimum`` points in the column."""
    if measured.column_pt < minimum:
        raise ValueError(
            f"figure {name!r}: its smallest text {measured.smallest_text!r} ({measured.smallest_pt:g} pt) is "
            f"{measured.column_pt:.1f} pt in the book's {COLUMN_PX} px column (the PNG is {measured.width_px} px "
            f"wide), below {minimum:g} pt: make the figure narrower (stack panels) or the text larger")


def strip_plot(data: pd.DataFrame, x: str, y: str, ax: plt.Axes, seed: int, jitter: float = 0.25,
               size: float = 4.0) -> plt.Axes:
    """A categorical strip plot (one jittered column of points per value of ``x``) whose jitter is
    drawn from ``seed``. seaborn's ``stripplot`` draws it from NumPy's global generator, so the
    same data gave a different figure file on every run."""
    categories = list(dict.fromkeys(data[x]))
    offsets = np.random.default_rng(seed).uniform(-jitter, jitter, len(data))
    frame = data.assign(_position=data[x].map({c: i for i, c in enumerate(categories)}).to_numpy(float) + offsets)
    sns.scatterplot(data=frame, x="_position", y=y, hue=x, hue_order=categories, legend=False, s=size**2,
                    linewidth=0, ax=ax)
    ax.set_xticks(range(len(categories)), categories)
    ax.set_xlim(-0.5, len(categories) - 0.5)
    ax.set_xlabel(x)
    return ax

