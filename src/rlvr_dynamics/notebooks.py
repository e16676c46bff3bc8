"""The registry of the book's notebooks: name → file, config dataclass and presets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rlvr_dynamics import identity
from rlvr_dynamics.params import NotebookSpec, ParameterError

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
