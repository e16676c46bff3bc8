"""Every figure of the book is numbered, captioned, described and collapsible: the notebook cell that
shows it (``chapter.show``, or ``Image`` for a figure committed with a recorded run) carries myst-nb's
figure metadata (a ``fig-`` name that numbers it, a caption citing the paper), an alt text of its own and
the ``hide-input`` tag, and shows one figure."""

from __future__ import annotations

import re

import jupytext
import nbformat
import pytest

from rlvr_dynamics.book.registry import NOTEBOOKS
from rlvr_dynamics.files import project_root

MIN_CAPTION = 120
MIN_ALT = 80
PAPER_REFERENCE = re.compile(r"\(\d+[ab]?\)|eq\. \d+|Figure \d|Theorem \d|Lemma \d|Corollary \d|Section \d")


def figure_cell_problems(notebook: nbformat.NotebookNode) -> list[str]:
    """What a reader would miss about each figure of ``notebook``: per cell that calls ``chapter.show`` or
    displays a recorded ``Image``,
    a missing or duplicate ``fig-`` name, a caption shorter than 120 characters or citing no equation,
    figure, theorem, lemma or section, an alt text shorter than 80 characters or equal to the caption,
    no ``hide-input`` tag, or more than one figure in the cell."""
    problems, names = [], set()
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        shows = re.findall(r"chapter\.show\([^,]+,\s*\"([\w-]+)\"", cell.source)
        shows += [f"recorded image {image}" for image in re.findall(r"\bImage\(([^,)]+)", cell.source)]
        if not shows:
            continue
        figure = shows[0]
        if len(shows) > 1:
            problems.append(f"{figure}: {len(shows)} figures in one cell (one caption each)")
        meta = cell.metadata.get("mystnb", {})
        name = meta.get("figure", {}).get("name", "")
        caption = " ".join(str(meta.get("figure", {}).get("caption", "")).split())
        alt = " ".join(str(meta.get("image", {}).get("alt", "")).split())
        if not name.startswith("fig-"):
            problems.append(f"{figure}: no figure name 'fig-…' (the figure is not numbered)")
        elif name in names:
            problems.append(f"{figure}: figure name {name} used twice")
        names.add(name)
        if len(caption) < MIN_CAPTION:
            problems.append(f"{figure}: caption of {len(caption)} characters (< {MIN_CAPTION})")
        elif not PAPER_REFERENCE.search(caption):
            problems.append(f"{figure}: the caption cites no equation, figure, theorem, lemma or section")
        if len(alt) < MIN_ALT or alt == caption:
            problems.append(f"{figure}: alt text of {len(alt)} characters (< {MIN_ALT}) or equal to the caption")
        if "hide-input" not in cell.metadata.get("tags", []):
            problems.append(f"{figure}: plotting code not collapsed (tag hide-input)")
    return problems


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_every_figure_is_numbered_captioned_described_and_collapsed(name):
    notebook = jupytext.read(project_root() / NOTEBOOKS[name].source)
    assert figure_cell_problems(notebook) == []


def test_the_book_numbers_every_figure_once():
    names = []
    for spec in NOTEBOOKS.values():
        notebook = jupytext.read(project_root() / spec.source)
        names += [c.metadata["mystnb"]["figure"]["name"] for c in notebook.cells
                  if "chapter.show(" in c.source or "Image(" in c.source]
    assert len(names) == len(set(names)) == 31


def test_the_check_catches_a_figure_a_reader_cannot_use():
    caption = "Figure 1 of the paper: the value against the cumulative gap, every context, with the bound (15b) " * 2
    alt = "A scatter of the value against the cumulative gap, rising from 0.1 to 1 above the solid curve."
    good = {"tags": ["hide-input"], "mystnb": {"figure": {"name": "fig-a", "caption": caption}, "image": {"alt": alt}}}
    cell = nbformat.v4.new_code_cell('fig, ax = plt.subplots()\nchapter.show(fig, "a")', metadata=good)
    notebook = nbformat.v4.new_notebook(cells=[cell])
    assert figure_cell_problems(notebook) == []
    bare = nbformat.v4.new_code_cell('chapter.show(fig, "b")')
    notebook.cells.append(bare)
    assert figure_cell_problems(notebook) == [
        "b: no figure name 'fig-…' (the figure is not numbered)", "b: caption of 0 characters (< 120)",
        "b: alt text of 0 characters (< 80) or equal to the caption", "b: plotting code not collapsed (tag hide-input)"]
    same = {"figure": {"name": "fig-a", "caption": "x" * 130}, "image": {"alt": "x" * 130}}
    twice = nbformat.v4.new_code_cell('chapter.show(f, "c")\nchapter.show(g, "d")',
                                      metadata={"tags": ["hide-input"], "mystnb": same})
    notebook.cells = [cell, twice]
    assert figure_cell_problems(notebook) == [
        "c: 2 figures in one cell (one caption each)", "c: figure name fig-a used twice",
        "c: the caption cites no equation, figure, theorem, lemma or section",
        "c: alt text of 130 characters (< 80) or equal to the caption"]
    # a committed image shown without a caption is caught as well (the long run's figure once was)
    notebook.cells = [nbformat.v4.new_code_cell('display(Image(filename=path, width=720))')]
    assert figure_cell_problems(notebook)[0] == "recorded image filename=path: no figure name 'fig-…' (the figure " \
                                                "is not numbered)"
