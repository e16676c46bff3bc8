"""The registry of the book's notebooks: name → file, config dataclass and presets (book order)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rlvr_dynamics.book.params import NotebookSpec
from rlvr_dynamics.chapters import (
    figure1,
    figure2,
    gradient_gap,
    performance,
    token_theory,
    trajectory_theory,
    two_stage,
)
from rlvr_dynamics.config import ParameterError

# name, chapter title, config dataclass, presets, the presets at which the chapter's empirical findings
# were measured (default: ci); the source is notebooks/NAME.md and the chapter's module chapters/NAME.py.
# Book order.
_CHAPTERS = (
    ("gradient_gap", "Problem set-up and the Gradient Gap", gradient_gap.GradientGapConfig, gradient_gap.PRESETS),
    ("trajectory_theory", "Trajectory-level theory: Lemma 1, Theorems 1–2, Corollary 1",
     trajectory_theory.TrajectoryConfig, trajectory_theory.PRESETS),
    ("token_theory", "Token-level theory: response length, Theorems 3–4 and length normalization",
     token_theory.TokenConfig, token_theory.PRESETS),
    ("figure1", "Figure 1: REINFORCE on contextual bandits", figure1.Figure1Config, figure1.PRESETS, ("ci", "paper")),
    ("figure2", "Figure 2: GRPO on language models", figure2.Figure2Config, figure2.PRESETS),
    ("two_stage", "Two-stage dynamics and negative-only gradients (GRPO-N)", two_stage.TwoStageConfig,
     two_stage.PRESETS),
    ("performance", "Appendix: performance", performance.PerformanceConfig, performance.PRESETS),
)
NOTEBOOKS: dict[str, NotebookSpec] = {
    name: NotebookSpec(name, title, f"notebooks/{name}.md", config, presets, *measured_at)
    for name, title, config, presets, *measured_at in _CHAPTERS
}


def notebook_spec(name: str) -> NotebookSpec:
    """The spec of notebook ``name``; a :class:`ParameterError` lists the known ones."""
    try:
        return NOTEBOOKS[name]
    except KeyError:
        raise ParameterError(f"notebook '{name}' is unknown: allowed {', '.join(NOTEBOOKS)}") from None


def resolve_parameters(name: str, values: Mapping[str, Any]):
    """What a notebook's validation cell calls with its ``locals()``: ``(RunSettings, config)``."""
    return notebook_spec(name).resolve(values)
