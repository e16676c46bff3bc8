"""One seaborn theme for every figure; figures saved as PNG and SVG, atomically."""

from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from rlvr_dynamics.files import write_files_atomic

PALETTE = "colorblind"


def set_theme() -> None:
    """The book's plotting style (call once per notebook)."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
    matplotlib.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "savefig.bbox": "tight",
            "svg.hashsalt": "rlvr-dynamics",  # stable SVG ids: same data, same file
            "axes.titleweight": "bold",
        }
    )


def save_figure(fig: plt.Figure, output_dir: str | os.PathLike, name: str) -> list[str]:
    """Save ``fig`` as ``name.png`` and ``name.svg`` in ``output_dir`` (both rendered first, then
    written together atomically); return the file names."""
    rendered = {}
    for extension in ("png", "svg"):
        buffer = io.BytesIO()
        metadata = {"Date": None} if extension == "svg" else {"Software": None}
        fig.savefig(buffer, format=extension, metadata=metadata)
        rendered[Path(output_dir) / f"{name}.{extension}"] = buffer.getvalue()
    return [path.name for path in write_files_atomic(rendered)]


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

