"""The chapter context: what every notebook sets up first and writes last.

A notebook's first code cell is ``chapter = Chapter.start("NAME", locals())``: it validates the
parameters (a ``ValueError`` naming any bad one), resolves the device, creates the output folder,
sets the plotting theme and keeps the run's claim log, headline numbers, figures and timings. The
notebook then checks claims — :meth:`Chapter.check` for facts (always enforced),
:meth:`Chapter.finding` for the empirical findings its prose states (enforced by the one rule of
:meth:`~rlvr_dynamics.book.params.NotebookSpec.enforces_findings`), :meth:`Chapter.record` for
observations that are never enforced — and its last cell is ``chapter.finish()``: it writes
``metrics.json``, shows the claims and fails the run if an enforced claim does not hold.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from rlvr_dynamics.book import rerun, tables
from rlvr_dynamics.book.params import NotebookSpec, RunSettings
from rlvr_dynamics.book.plotting import legibility, png_width, render_figure, require_legible, save_figure, set_theme
from rlvr_dynamics.book.registry import notebook_spec
from rlvr_dynamics.book.results import Claim, ClaimLog, write_metrics
from rlvr_dynamics.devices import resolve_device
from rlvr_dynamics.files import project_root

# tqdm.auto warns "IProgress not found" once, at whichever import first loads it — in a set-up cell that
# can be a chapter module imported before Chapter.start runs — as a TqdmWarning whose text names tqdm's
# file on the building machine: silenced from the import of this module on (the set-up cells import it
# first), so that reruns print the same outputs and no page shows a warning block with a path.
warnings.filterwarnings("ignore", message="IProgress not found")

QUIET_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",  # never reach for the network
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # no timing bars in the outputs nbval compares
    "TRANSFORMERS_VERBOSITY": "error",
}


@dataclass
class Chapter:
    """One execution of a chapter notebook.

    Attributes:
        spec: the notebook's registry entry.
        settings: the validated common parameters (preset, seed, device, output folder).
        config: the chapter's validated config.
        device: the torch device the run uses.
        claims: every claim checked so far.
        headline: the chapter's headline numbers (``metrics.json``: ``headline``).
        figures: the files of every figure saved so far.
        figure_legibility: per figure, its smallest text as displayed in the book's column and on a
            phone (``metrics.json``: ``figure_legibility``; :func:`~rlvr_dynamics.book.plotting.legibility`).
        timings: the notebook's own timings of its parts, in seconds (``metrics.json``: ``timings_s``).
    """

    spec: NotebookSpec
    settings: RunSettings
    config: Any
    device: torch.device
    claims: ClaimLog = field(default_factory=ClaimLog)
    headline: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    figure_legibility: dict[str, dict] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def start(cls, name: str, values: Mapping[str, Any]) -> Chapter:
        """Validate the notebook's parameters (its ``locals()``) and set the run up."""
        for variable, value in QUIET_ENVIRONMENT.items():
            os.environ.setdefault(variable, value)
        warnings.filterwarnings("ignore", message="IProgress not found")  # again: a test may reset the filters
        spec = notebook_spec(name)
        settings, config = spec.resolve(values)
        device = resolve_device(settings.device)
        settings.output_dir.mkdir(parents=True, exist_ok=True)
        set_theme()
        chapter = cls(spec, settings, config, device)
        from IPython.display import display

        display(chapter.rerun_box(), chapter.parameters_table())
        return chapter

    def config_values(self) -> dict[str, Any]:
        """The chapter parameters of this run (the config's fields), by name."""
        return {f.name: getattr(self.config, f.name) for f in dataclasses.fields(self.config)}

    def parameters_table(self) -> tables.Table:
        """The values this run used: preset, seed, device (as asked, and as resolved), then every
        chapter parameter and whether it is the preset's value; no output folder (a path of the machine
        that ran it)."""
        values = {"preset": self.settings.preset, "seed": self.settings.seed,
                  "device": self.settings.device if self.settings.device == self.device.type
                  else f"{self.settings.device} → {self.device.type}",
                  **self.config_values(),
                  "empirical findings enforced": self.findings_enforced}
        return tables.parameters_table(values, self.spec.presets[self.settings.preset],
                                       caption="Parameters of this run")

    def rerun_box(self) -> rerun.RerunBox:
        """The "Rerun this chapter" box (:mod:`rlvr_dynamics.book.rerun`): the command that repeats this
        run, the chapter's measured run time, two variations and the ``paper`` preset."""
        preset = self.spec.presets[self.settings.preset]
        changed = {name: value for name, value in self.config_values().items() if preset.get(name) != value}
        parameters = {"seed": self.settings.seed, "device": self.settings.device, **changed}
        root = project_root()
        return rerun.rerun_box(self.spec, rerun.load_record(root, self.spec.name), self.settings.preset, parameters,
                               rerun.paper_timings(root, self.spec.name))

    def table(self, frame, caption: str = "", **options) -> None:
        """Display a pandas DataFrame (or Series) as a table of the book (:func:`rlvr_dynamics.book.tables.
        frame_table`: an HTML table that fits the page, formatted numbers, no unlabelled row numbers; its
        ``text/plain`` the same cells as aligned text). ``options``: ``index``, ``digits``, ``formats``,
        ``float_format``."""
        from IPython.display import display

        display(tables.frame_table(frame, caption=caption, **options))

    @property
    def findings_enforced(self) -> bool:
        """Whether this run's empirical findings are enforced (the book's one rule)."""
        return self.spec.enforces_findings(self.config)

    def generator(self, offset: int | None = None, device: str | torch.device | None = None) -> torch.Generator:
        """An explicitly seeded stream (never the global RNG) on ``device`` (default: the run's):
        seeded with the run's seed, or with ``seed · 1000 + offset`` for one stream per experiment."""
        seed = self.settings.seed if offset is None else self.settings.seed * 1_000 + offset
        return torch.Generator(device=self.device if device is None else device).manual_seed(seed)

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Time the block into :attr:`timings` [``name``] (seconds; left out when runs are compared)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = time.perf_counter() - start

    def check(self, claim: str, margins, detail: str = "") -> Claim:
        """A fact (identity, theorem, implementation check): enforced under every parameter.
        ``margins`` has one entry per case, each ≥ 0 when the claim holds."""
        return self.claims.check(claim, margins, detail)

    def finding(self, claim: str, margins, detail: str = "") -> Claim:
        """An empirical finding the prose states: enforced where it was measured
        (:attr:`findings_enforced`), recorded elsewhere."""
        return self.claims.check(claim, margins, detail, enforced=self.findings_enforced)

    def record(self, claim: str, margins, detail: str = "") -> Claim:
        """An observation the prose reports but does not claim: recorded, never enforced."""
        return self.claims.check(claim, margins, detail, enforced=False)

    def glue(self, **values) -> None:
        """Make run-dependent numbers (or texts) available to the prose: ``{glue:text}`NAME:.3f``` in a
        markdown cell shows this run's value, so a rerun with another seed, preset or device reads its
        own numbers (myst-nb ``glue``; nothing is displayed in the cell)."""
        from myst_nb import glue

        for name, value in values.items():
            glue(name, value.item() if hasattr(value, "item") else value, display=False)

    def show(self, fig, name: str) -> None:
        """Measure ``fig``'s smallest text as the book displays it and refuse (``ValueError``) a figure
        whose text would be below 10 pt in the column; else save it as ``name``.png and .svg in the output
        folder, record it and its legibility, and display it."""
        import matplotlib.pyplot as plt

        rendered = render_figure(fig)
        measured = legibility(fig, png_width(rendered["png"]))
        require_legible(name, measured)
        self.figure_legibility[name] = measured.as_dict()
        self.figures += save_figure(fig, self.settings.output_dir, name, rendered)
        plt.show()

    def finish(self, device: str | None = None) -> None:
        """Write ``metrics.json``, show the claims, and fail the run if an enforced claim is broken.
        ``device`` is what ``metrics.json`` records as the device used (default: the run's; ``"n/a"``
        for a page that computes nothing)."""
        from IPython.display import display

        write_metrics(self.settings.output_dir, self.spec.name, self.settings, self.config,
                      str(self.device) if device is None else device,
                      self.headline, self.claims, self.figures, self.timings, self.figure_legibility)
        display(tables.claims_table(self.claims.claims))
        self.claims.assert_all()
