"""Tests of rlvr_dynamics.book.plotting: figures saved as PNG and SVG together, byte-stable; a strip
plot whose jitter comes from the seed."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from rlvr_dynamics.book.plotting import save_figure, set_theme, strip_plot  # noqa: E402


def test_save_figure_writes_png_and_svg_that_are_identical_for_the_same_figure(tmp_path):
    set_theme()
    contents = []
    for run in range(2):
        fig, ax = plt.subplots()
        ax.plot([0, 1, 2], [1, 0, 1])
        assert save_figure(fig, tmp_path / str(run), "curve") == ["curve.png", "curve.svg"]
        plt.close(fig)
        contents.append([(tmp_path / str(run) / f"curve.{e}").read_bytes() for e in ("png", "svg")])
    assert contents[0] == contents[1]  # no date, no random ids: the same data gives the same files
    assert contents[0][0].startswith(b"\x89PNG") and b"<svg" in contents[0][1]


def test_strip_plot_jitter_comes_from_the_seed(tmp_path):
    """seaborn's stripplot jitters with NumPy's global generator (a different figure file on every
    run: the determinism check caught it); plotting.strip_plot takes a seed."""
    set_theme()
    data = pd.DataFrame({"check": ["a"] * 20 + ["b"] * 20, "error": [10.0 ** -k for k in range(40)]})
    files = []
    for run, seed in enumerate((0, 0, 1)):
        fig, ax = plt.subplots()
        strip_plot(data, x="check", y="error", ax=ax, seed=seed)
        assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
        save_figure(fig, tmp_path, f"strip{run}")
        plt.close(fig)
        files.append((tmp_path / f"strip{run}.svg").read_bytes())
    assert files[0] == files[1] and files[0] != files[2]
