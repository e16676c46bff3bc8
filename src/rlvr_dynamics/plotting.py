"""One seaborn theme for every figure; figures saved as PNG and SVG, atomically."""

from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import seaborn as sns

from rlvr_dynamics.results import write_bytes_atomic

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
    """Save ``fig`` as ``name.png`` and ``name.svg`` in ``output_dir``; return the file names."""
    written = []
    for extension in ("png", "svg"):
        buffer = io.BytesIO()
        metadata = {"Date": None} if extension == "svg" else {"Software": None}
        fig.savefig(buffer, format=extension, metadata=metadata)
        write_bytes_atomic(Path(output_dir) / f"{name}.{extension}", buffer.getvalue())
        written.append(f"{name}.{extension}")
    return written
