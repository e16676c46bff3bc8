"""The registry of the book's notebooks: name → file, chapter module, config dataclass and presets
(book order).

A notebook's spec is built on first use from its chapter module ``rlvr_dynamics.chapters.NAME``
(the config class named here and the module's ``PRESETS``), so a notebook that asks for its own spec
imports its own chapter and no other: what a notebook executes — and so the cache key of its
execution (:func:`rlvr_dynamics.book.runner.code_dependencies`) — is its own chapter's code.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from rlvr_dynamics.book.params import NotebookSpec
from rlvr_dynamics.config import ParameterError

CHAPTERS_PACKAGE = "rlvr_dynamics.chapters"
# name: (chapter title, its config class in chapters/NAME.py, the presets at which the chapter's
# empirical findings were measured). The source is notebooks/NAME.md. Book order.
_CHAPTERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "gradient_gap": ("Problem set-up and the Gradient Gap", "GradientGapConfig", ("ci",)),
    "trajectory_theory": ("Trajectory-level theory: Lemma 1, Theorems 1–2, Corollary 1", "TrajectoryConfig", ("ci",)),
    "token_theory": ("Token-level theory: response length, Theorems 3–4 and length normalization", "TokenConfig",
                     ("ci",)),
    "figure1": ("REINFORCE on contextual bandits", "Figure1Config", ("ci", "paper")),
    "figure2": ("GRPO on language models: the cumulative gap and accuracy", "Figure2Config", ("ci",)),
    "two_stage": ("Two-stage dynamics and negative-only gradients (GRPO-N)", "TwoStageConfig", ("ci",)),
    "performance": ("Appendix: performance", "PerformanceConfig", ("ci",)),
}


class _Registry(Mapping[str, NotebookSpec]):
    """The notebooks in book order; a spec is built (its chapter module imported) on first access."""

    def __init__(self, chapters: Mapping[str, tuple[str, str, tuple[str, ...]]]) -> None:
        self._chapters = dict(chapters)
        self._specs: dict[str, NotebookSpec] = {}

    def __getitem__(self, name: str) -> NotebookSpec:
        if name not in self._specs:
            title, config, findings_measured_at = self._chapters[name]
            module = importlib.import_module(f"{CHAPTERS_PACKAGE}.{name}")
            self._specs[name] = NotebookSpec(name, title, f"notebooks/{name}.md", getattr(module, config),
                                             module.PRESETS, findings_measured_at)
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._chapters)

    def __len__(self) -> int:
        return len(self._chapters)


NOTEBOOKS: Mapping[str, NotebookSpec] = _Registry(_CHAPTERS)


def notebook_spec(name: str) -> NotebookSpec:
    """The spec of notebook ``name``; a :class:`ParameterError` lists the known ones."""
    if name not in _CHAPTERS:
        raise ParameterError(f"notebook '{name}' is unknown: allowed {', '.join(NOTEBOOKS)}")
    return NOTEBOOKS[name]


def resolve_parameters(name: str, values: Mapping[str, Any]):
    """Validate a notebook's parameters (its ``locals()``): ``(RunSettings, config)``."""
    return notebook_spec(name).resolve(values)
