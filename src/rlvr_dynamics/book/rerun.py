"""The "Rerun this chapter" box at the top of every chapter, generated from the registry.

:func:`rerun_box` gathers, for one chapter: the exact command that repeats the run on the page
(:func:`run_command`), its measured run time (the median ``run_seconds`` over the seeds of the
chapter's committed record ``data/robustness/NAME.json``: :func:`median_run_seconds`), the two
variations of its :class:`~rlvr_dynamics.book.params.NotebookSpec` and its ``paper`` preset note.
``Chapter.start`` displays it: ``text/html`` is a ``<div class="rerun-box">`` (styled by
``book/_static/chapter.css``), ``text/plain`` the same content as a few stable lines (no timing of
the current run, so two executions print the same).
"""

from __future__ import annotations

import html
import shlex
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlvr_dynamics.book.params import NotebookSpec
from rlvr_dynamics.files import read_json

RERUN_CLASS = "rerun-box"
"""Class of the box's ``<div>`` (``book/_static/chapter.css``)."""
CLI = ".venv/bin/rlvr-book"
# = rlvr_dynamics.book.robustness.ROBUSTNESS_DIR (a test keeps them equal), not imported: a notebook executes this
# module, and the robustness runner is not part of what its cached execution depends on.
RECORDS_DIR = Path("data") / "robustness"
MEASURED_ON = "the 2-core CI machine kind, one thread per kernel"
"""Where the committed records' run times were measured (``rlvr-book robustness``)."""


def command_value(value: Any) -> str:
    """A parameter value as ``rlvr-book run -p KEY VALUE`` reads it back (``Parameter.coerce``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def run_command(name: str, preset: str = "ci", parameters: Mapping[str, Any] | None = None,
                output_dir: str | None = None) -> str:
    """The shell command that runs chapter ``name`` at ``preset`` with ``parameters``."""
    words = [CLI, "run", name]
    if preset != "ci":
        words += ["--preset", preset]
    for key, value in (parameters or {}).items():
        words += ["-p", key, command_value(value)]
    if output_dir:
        words += ["--output-dir", output_dir]
    return shlex.join(words)


def median_run_seconds(record: Mapping[str, Any] | None) -> float | None:
    """The median of a robustness record's ``run_seconds`` over its seeds (None without any)."""
    seconds = [float(v) for v in ((record or {}).get("run_seconds") or {}).values() if v is not None]
    return statistics.median(seconds) if seconds else None


def load_record(root: Path, name: str) -> dict[str, Any] | None:
    """The committed record ``data/robustness/NAME.json`` of a chapter (None if there is none)."""
    path = Path(root) / RECORDS_DIR / f"{name}.json"
    return read_json(path) if path.is_file() else None


PRESET_TIMINGS_DIR = Path("data") / "benchmarks" / "presets"
"""The committed ``rlvr-book bench-presets`` records (= runner.BENCHMARKS_DIR / "presets", tested)."""


def paper_timings(root: Path, name: str) -> tuple[str, ...]:
    """What the committed preset records measured for chapter ``name`` at the paper preset, one line per
    record: time, machine and claims held, or how far it got."""
    lines = []
    for path in sorted((Path(root) / PRESET_TIMINGS_DIR).glob("*.json")):
        record = read_json(path)
        result = record.get("chapters", {}).get(name)
        if record.get("preset") != "paper" or result is None:
            continue
        machine = record.get("machine", {})
        where = (f"{machine.get('cuda')}" if machine.get("cuda") and record.get("device") != "cpu"
                 else f"a {machine.get('cpu_count', '?')}-core CPU")
        shortened = record.get("shortened", {}).get(name)
        note = f", shortened ({', '.join(f'{k} = {v}' for k, v in shortened.items())})" if shortened else ""
        if result.get("status") == "finished":
            lines.append(f"{describe_seconds(result['seconds'])} on {where}{note}, {result['claims_held']} of "
                         f"{result['claims']} claims held ({record.get('measured_on', '?')}, {path.name})")
        else:
            lines.append(f"{result.get('status')} after {describe_seconds(result['seconds'])} on {where}{note}: "
                         f"{result.get('reason')} ({record.get('measured_on', '?')}, {path.name})")
    return tuple(lines)


def describe_seconds(seconds: float | None) -> str:
    """``"about 5 s"``, ``"about 2.5 min"``; ``"not measured"`` for None."""
    if seconds is None:
        return "not measured"
    if seconds < 90:
        return f"about {seconds:.0f} s" if seconds >= 10 else f"about {seconds:.1f} s"
    return f"about {seconds / 60:.1f} min"


@dataclass(frozen=True)
class RerunBox:
    """What the box shows; ``_repr_html_`` and ``repr`` render it."""

    name: str
    title: str
    command: str
    run_time: str
    seeds_measured: int
    variations: tuple[tuple[str, str], ...]  # (command, why)
    paper_command: str
    paper_note: str
    paper_timings: tuple[str, ...] = ()

    def html(self) -> str:
        e = html.escape
        timing = (f"{e(self.run_time)} at the <code>ci</code> preset (median over the {self.seeds_measured} seeds "
                  f"of <code>data/robustness/{e(self.name)}.json</code>, measured on {e(MEASURED_ON)})"
                  if self.seeds_measured else "not measured yet (no committed record)")
        out = [f'<div class="{RERUN_CLASS}" id="rerun-{e(self.name.replace("_", "-"))}">',
               '<p class="rerun-title">Rerun this chapter</p>',
               "<p>The run on this page, exactly:</p>",
               f'<pre class="rerun-command"><code>{e(self.command)}</code></pre>',
               f"<p>Run time: {timing}.</p>",
               "<p>Two variations worth trying:</p>", '<ul class="rerun-variations">']
        for command, why in self.variations:
            out.append(f'<li><pre class="rerun-command"><code>{e(command)}</code></pre>{e(why)}</li>')
        out += ["</ul>", "<p>At the paper's settings:</p>",
                f'<pre class="rerun-command"><code>{e(self.paper_command)}</code></pre>',
                f'<p class="rerun-paper">{e(self.paper_note)} Measured (<code>make bench-presets</code>, '
                f'<code>make gpu-check</code>): {e("; ".join(self.paper_timings) or "not yet")}.</p>',
                "<p>Every parameter, its range and both presets: <code>.venv/bin/rlvr-book list</code>. "
                f"A run writes the executed notebook, its figures and <code>metrics.json</code> to "
                f"<code>runs/{e(self.name)}-PRESET</code> unless <code>--output-dir</code> says otherwise.</p>",
                "</div>"]
        return "\n".join(out)

    def text(self) -> str:
        lines = [f"Rerun this chapter: {self.command}",
                 f"  run time at the ci preset: {self.run_time} (median over {self.seeds_measured} seeds, "
                 f"{MEASURED_ON})"]
        lines += [f"  try: {command}  # {why}" for command, why in self.variations]
        lines += [f"  paper preset: {self.paper_command}  # {self.paper_note}"]
        lines += [f"  paper preset measured: {timing}" for timing in self.paper_timings or ("not yet",)]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        return self.text()


def rerun_box(spec: NotebookSpec, record: Mapping[str, Any] | None, preset: str = "ci",
              parameters: Mapping[str, Any] | None = None, timings: tuple[str, ...] = ()) -> RerunBox:
    """The box of chapter ``spec`` with the run times of its committed robustness ``record`` and its paper
    preset's measured ``timings`` (:func:`paper_timings`): its command repeats the run at ``preset`` with
    ``parameters`` (the page's run: seed, device and every chapter parameter that differs from the preset)."""
    variations = []
    for variation in spec.variations:
        command = run_command(spec.name, parameters=variation.parameters)
        if variation.before:
            command = f"{variation.before} && {command}"
        variations.append((command, variation.why))
    seeds = len((record or {}).get("run_seconds") or {})
    return RerunBox(spec.name, spec.title, run_command(spec.name, preset, parameters),
                    describe_seconds(median_run_seconds(record)), seeds, tuple(variations),
                    run_command(spec.name, "paper"), spec.paper_note, tuple(timings))
