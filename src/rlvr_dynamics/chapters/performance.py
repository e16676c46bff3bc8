"""The appendix *Performance*: it reads the committed benchmark records (``data/benchmarks``) and
has only the common parameters."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PerformanceConfig:
    """A page with only the common parameters (it reads committed data)."""


PRESETS = {"ci": {}, "paper": {}}
