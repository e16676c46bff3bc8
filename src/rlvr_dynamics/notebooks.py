"""The registry of the book's notebooks: name → file, config dataclass and presets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rlvr_dynamics import figure1, identity
from rlvr_dynamics.params import NotebookSpec, ParameterError

@dataclass(frozen=True)
class NoParameters:
    """A page with only the common parameters (it reads committed data)."""


NOTEBOOKS: dict[str, NotebookSpec] = {
    spec.name: spec
    for spec in (
        NotebookSpec(
            name="gradient_gap",
            title="Problem set-up and the Gradient Gap",
            source="notebooks/gradient_gap.md",
            config=identity.GradientGapConfig,
            presets=identity.PRESETS,
        ),
        NotebookSpec(
            name="figure1",
            title="Figure 1: REINFORCE on contextual bandits",
            source="notebooks/figure1.md",
            config=figure1.Figure1Config,
            presets=figure1.PRESETS,
        ),
        NotebookSpec(
            name="performance",
            title="Appendix: performance",
            source="notebooks/performance.md",
            config=NoParameters,
            presets={"ci": {}, "paper": {}},
        ),
    )
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
