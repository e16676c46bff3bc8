"""The reproducibility appendix, generated from the runs' ``metrics.json`` files.

For every chapter: the one command that regenerates its figures, the parameters that differ from
the preset, seed, device, run time and package versions; then one table of every claim checked
in the book with its worst margin, linked to the chapter that states it. Nothing in the page is
written by hand: :func:`render_appendix` is called when the book is staged
(:func:`rlvr_dynamics.book.runner.stage_site`), and a page whose metrics are missing is an error.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rlvr_dynamics.book.params import COMMON_PARAMETERS, NotebookSpec
from rlvr_dynamics.book.registry import NOTEBOOKS
from rlvr_dynamics.book.rerun import command_value
from rlvr_dynamics.files import read_json, write_bytes_atomic

APPENDIX_PAGE = "book/reproducibility.md"
COMMON_NAMES = tuple(p.name for p in COMMON_PARAMETERS)
_MARKDOWN_SPECIALS = "\\`*_{}[]<>|$~"


def escape_markdown(text: str) -> str:
    """Backslash-escape every character MyST could read as markup (CommonMark allows escaping
    any ASCII punctuation), so a claim's ``|``, ``$`` or ``*`` shows as typed."""
    return "".join("\\" + c if c in _MARKDOWN_SPECIALS else c for c in str(text))


def changed_parameters(spec: NotebookSpec, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The chapter parameters of a run whose value differs from its preset's."""
    preset = spec.presets[metrics["parameters"]["preset"]]
    return {name: value for name, value in metrics["parameters"].items()
            if name not in COMMON_NAMES and preset.get(name) != value}


def regenerate_command(metrics: Mapping[str, Any], output_dir: str | None = None) -> str:
    """The ``rlvr-book run`` command that repeats the run recorded in ``metrics``: its preset,
    seed and device, and every chapter parameter that differs from the preset."""
    name = metrics["notebook"]
    spec = NOTEBOOKS[name]
    parameters = metrics["parameters"]
    words = [".venv/bin/rlvr-book", "run", name, "--preset", parameters["preset"],
             "-p", "seed", str(parameters["seed"]), "-p", "device", str(parameters["device"])]
    for key, value in changed_parameters(spec, metrics).items():
        words += ["-p", key, command_value(value)]
    words += ["--output-dir", output_dir or f"runs/{name}-{parameters['preset']}"]
    return shlex.join(words)


def load_metrics(outputs_dir: Path, names: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """``metrics.json`` of every notebook (book order) from ``outputs_dir/NAME/``."""
    loaded = {}
    for name in names or list(NOTEBOOKS):
        path = Path(outputs_dir) / name / "metrics.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: execute the notebook first (rlvr-book execute-all)")
        loaded[name] = read_json(path)
    return loaded


def _margin(value: Any) -> str:
    if isinstance(value, str):  # inf / nan are stored as strings (JSON has neither)
        return value
    if value == 0 or (1e-3 <= abs(value) < 1e4):
        return f"{value:.4g}"
    return f"{value:.2e}"


def _seconds(value: Any) -> str:
    if value is None:
        return "not recorded"
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


def _figure_stems(figures: Sequence[str]) -> dict[str, list[str]]:
    stems: dict[str, list[str]] = {}
    for figure in figures:
        stem, _, extension = figure.rpartition(".")
        stems.setdefault(stem, []).append(extension.upper())
    return stems


def claims_label(name: str) -> str:
    """The MyST label of chapter ``name``'s section "Claims checked in this chapter": the notebook puts
    ``(claims-NAME)=`` (underscores as hyphens) right above that heading, the appendix links to it, and the
    HTML id of the section is the same text."""
    return "claims-" + name.replace("_", "-")


def _chapter_link(name: str, breakable: bool = False) -> str:
    """A link to the chapter's claims section (its table of claims). ``breakable``: a zero-width space after
    each underscore, so that a narrow column may break "trajectory_theory" there (the claims table of eight
    columns was 41 px wider than the 1400 px page's column otherwise)."""
    text = name.replace("_", "_\u200b") if breakable else name
    return f"{{ref}}`{text} <{claims_label(name)}>`"


def _across_seeds(table: Mapping[str, Any] | None, claim: str) -> tuple[str, str]:
    """("k of n", worst margin over the seeds) of ``claim`` in a robustness table; "—" where the
    table has no such claim (the committed table is stale: its test fails)."""
    row = next((c for c in (table or {}).get("claims", []) if c["claim"] == claim), None)
    if row is None:
        return "—", "—"
    held = f"{row['held']} of {row['of']}" if row["held"] == row["of"] else f"**{row['held']} of {row['of']}**"
    return held, "—" if row["worst_margin"] is None else _margin(row["worst_margin"])


def render_appendix(metrics_by_notebook: Mapping[str, Mapping[str, Any]],
                    robustness: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The MyST page of the appendix for the given runs (book order), with each claim's record over
    seeds from the chapters' robustness tables (:mod:`rlvr_dynamics.book.robustness`)."""
    robustness = robustness or {}
    claims = [(name, claim) for name, metrics in metrics_by_notebook.items() for claim in metrics["claims"]]
    figures = {name: _figure_stems(m["figures"]) for name, m in metrics_by_notebook.items()}
    n_figures = sum(len(stems) for stems in figures.values())
    held = sum(claim["holds"] for _, claim in claims)
    lines = [
        "# Appendix: reproducibility",
        "",
        "This page is generated when the book is built, from the `metrics.json` that every chapter writes "
        "(`rlvr_dynamics.book.appendix`); nothing in it is typed by hand. It lists, for each chapter, the one "
        "command that regenerates its figures with the parameters, seed and device of the run shown in the "
        "book, the run's wall time (from parameter validation to `metrics.json`, measured in the notebook on "
        "the machine that built the book, under that build's load) and the package versions, and then every "
        "claim the book checks with its worst margin.",
        "",
        f"**{len(metrics_by_notebook)} chapters, {n_figures} figures, {len(claims)} checked claims, "
        f"{held} of which hold.** A claim's *worst margin* is the smallest of its per-case margins, in the "
        "claim's own units; it is ≥ 0 exactly when the claim holds in every case checked. An *enforced* claim "
        "fails the notebook, and so the build, when it breaks; the others are findings the prose reports "
        "without enforcing them (it says which). A claim must hold for any seed, not only the book's: *held "
        "at seeds* and *worst over seeds* come from running each chapter at the `ci` preset at seeds 0–9 "
        "(`rlvr-book robustness`; the tables are committed in `data/robustness/`, and a test fails when an "
        "enforced claim fails at any of them).",
        "",
        "Each command writes the executed notebook, the figures (PNG and SVG) and `metrics.json` into its "
        "`--output-dir`. Every parameter of a chapter is listed by `rlvr-book list`; the ones below that are "
        "not on the command line take the preset's value.",
        "",
        "## Figures and runs",
        "",
    ]
    for name, metrics in metrics_by_notebook.items():
        spec = NOTEBOOKS[name]
        parameters = metrics["parameters"]
        changed = changed_parameters(spec, metrics)
        versions = ", ".join(f"{package} {version}" for package, version in metrics["versions"].items())
        lines += [
            f"### {escape_markdown(spec.title)}",
            "",
            f"Chapter: {{doc}}`../notebooks/{name}`. Preset `{parameters['preset']}`, seed {metrics['seed']}, "
            f"device `{metrics['device']}`, run time {_seconds(metrics.get('run_seconds'))}, "
            f"{len(metrics['claims'])} claims checked: {{ref}}`the chapter's table of claims <{claims_label(name)}>`.",
            "",
            "```bash",
            regenerate_command(metrics),
            "```",
            "",
        ]
        if figures[name]:
            lines += ["| figure | files |", "| --- | --- |"]
            lines += [f"| `{stem}` | {' · '.join(extensions)} |" for stem, extensions in figures[name].items()]
        else:
            lines += ["This chapter draws no figure file (its tables come from committed benchmark records)."]
        every = ", ".join(f"`{k} = {v!r}`" for k, v in parameters.items()
                          if k not in ("preset", "seed", "device", "output_dir"))
        lines += ["", "Parameters that differ from the preset: "
                  + (", ".join(f"`{k} = {v!r}`" for k, v in changed.items()) if changed else "none") + ".", "",
                  f"All parameters of the run: {every or 'none besides preset, seed and device'}.", "",
                  f"Package versions: {escape_markdown(versions)}.", ""]
    lines += [
        "## Every claim checked in the book",
        "",
        ":::{list-table}",
        ":header-rows: 1",
        ":widths: 11 45 6 9 6 7 8 8",
        "",
        *_list_table_row(("chapter", "claim", "holds", "worst margin", "cases", "enforced", "held at seeds",
                          "worst over seeds")),
    ]
    for name, claim in claims:
        held, worst = _across_seeds(robustness.get(name), claim["claim"])
        lines += _list_table_row((_chapter_link(name, breakable=True), escape_markdown(claim["claim"]),
                                  "yes" if claim["holds"] else "**no**", _margin(claim["worst_margin"]),
                                  _count(claim["n_checked"]), "yes" if claim["enforced"] else "no", held, worst))
    lines += [":::", ""]
    return "\n".join(lines)


def _count(cases: int) -> str:
    """A case count that fits the narrow column: exact below 10⁵, else in k or M with a space to break at
    (1 860 000 → "1.86 M"; a seven-digit number overflowed the column of a 1400 px page)."""
    if cases < 100_000:
        return str(cases)
    return f"{cases / 1e6:.2f} M" if cases >= 1_000_000 else f"{cases / 1e3:.0f} k"


def _list_table_row(cells: Sequence[str]) -> list[str]:
    """One row of a MyST ``list-table`` (a wide claim column, unlike a pipe table's)."""
    return [f"* - {cells[0]}", *(f"  - {cell}" for cell in cells[1:])]


def write_appendix(site: Path, outputs_dir: Path, root: Path) -> Path:
    """Render the appendix from ``outputs_dir/*/metrics.json`` and the committed robustness tables
    (``root/data/robustness``) into the staged book ``site``."""
    from rlvr_dynamics.book.robustness import load_tables

    metrics = load_metrics(outputs_dir)
    page = Path(site) / APPENDIX_PAGE
    return write_bytes_atomic(page, render_appendix(metrics, load_tables(root, list(metrics))).encode("utf-8"))

