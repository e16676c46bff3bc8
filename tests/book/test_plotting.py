"""Tests of rlvr_dynamics.book.plotting: figures saved as PNG and SVG together, byte-stable; a strip
plot whose jitter comes from the seed; the smallest text of a figure measured as the book displays it,
and a wide figure with small text refused."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from rlvr_dynamics.book.plotting import (  # noqa: E402
    COLUMN_PX,
    displayed_points,
    legibility,
    png_width,
    render_figure,
    require_legible,
    save_figure,
    set_theme,
    strip_plot,
    visible_texts,
)


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


def test_displayed_points_by_hand():
    # 11 pt at 150 dpi = 11/72 in · 150 px/in = 22.92 px; a PNG 1500 px wide in the 768 px column is
    # scaled by 768/1500: 11.73 px = 8.80 pt (72 pt per 96 px)
    assert displayed_points(11, 1500, 150) == pytest.approx(11 * 150 / 96 * 768 / 1500)
    assert displayed_points(11, 1500, 150) == pytest.approx(8.80, abs=0.01)
    # a figure narrower than the column is shown at its natural size: 10 pt at 96 dpi stays 10 pt
    assert displayed_points(10, 500, 96) == pytest.approx(10.0)
    assert displayed_points(10, 744, 96, column_px=372) == pytest.approx(5.0)  # a phone halves it
    with pytest.raises(ValueError, match="width_px=0"):
        displayed_points(10, 0, 96)


def test_png_width_reads_the_header():
    set_theme()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1])
    ax.set_xlabel("x")
    rendered = render_figure(fig)
    plt.close(fig)
    # savefig.bbox = tight: about 4 in · 150 dpi, give or take the margins
    assert 500 < png_width(rendered["png"]) < 650
    with pytest.raises(ValueError, match="not a PNG"):
        png_width(rendered["svg"])


def test_visible_texts_skip_hidden_empty_and_out_of_range_tick_labels():
    fig, (ax, hidden) = plt.subplots(1, 2)
    ax.plot([0, 1], [10, 20])
    ax.set_xlim(0.25, 0.75)
    ax.set_title("shown")
    ax.text(0.5, 0.5, "gone", visible=False)
    ax.set_xlabel("")
    hidden.set_title("tiny", fontsize=2)
    hidden.set_visible(False)
    texts = {t.get_text() for t in visible_texts(fig)}
    plt.close(fig)
    assert "shown" in texts and "gone" not in texts and "tiny" not in texts and "" not in texts
    labels = {t.get_text() for t in ax.get_xticklabels()}
    assert "0.2" in labels and "0.8" in labels  # matplotlib keeps labels for ticks outside the limits
    assert "0.2" not in texts and "0.8" not in texts and "0.4" in texts  # which are not drawn


def test_legibility_passes_a_column_sized_figure_and_refuses_a_wide_one_with_small_text():
    set_theme()  # ticks 11 pt, labels 12 pt, savefig.dpi 150
    fig, ax = plt.subplots(figsize=(7.5, 3.5))
    ax.plot([0, 1], [0, 1], label="a curve")
    ax.set(xlabel="step $k$", ylabel="$J_x(k)$")
    ax.legend()
    measured = legibility(fig, png_width(render_figure(fig)["png"]))
    plt.close(fig)
    assert measured.smallest_pt == 11 and measured.column_pt >= 10
    assert measured.phone_pt < measured.column_pt
    require_legible("narrow", measured)  # no error

    fig, axes = plt.subplots(1, 4, figsize=(18, 4))  # a 1 × 4 row, legend at size 7
    for ax in axes:
        ax.plot([0, 1], [0, 1], label="run")
        ax.legend(fontsize=7)
    width = png_width(render_figure(fig)["png"])
    wide = legibility(fig, width)
    plt.close(fig)
    assert width > 2 * COLUMN_PX and wide.smallest_pt == 7 and wide.smallest_text == "run"
    assert wide.column_pt == pytest.approx(7 * 150 / 96 * COLUMN_PX / width)
    assert wide.column_pt < 4
    with pytest.raises(ValueError, match=r"figure 'wide': its smallest text 'run' \(7 pt\) is 3\.\d pt"):
        require_legible("wide", wide)
