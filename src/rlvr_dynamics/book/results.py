"""Run outputs: claim records and ``metrics.json`` (written atomically by :mod:`rlvr_dynamics.files`).

A claim the book says holds is recorded with its worst margin (≥ 0 means it holds, in the
claim's own units) and the number of cases checked; :meth:`ClaimLog.assert_all` makes the
notebook — and so the book build — fail when one breaks.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rlvr_dynamics.files import jsonable, package_versions, write_json_atomic

# Keys of metrics.json that measure time, not results: left out when two runs are compared.
TIMING_KEYS = ("run_seconds", "timings_s")


@dataclass
class Claim:
    """One checked claim: ``holds`` iff ``worst_margin ≥ 0``.

    ``enforced``: whether a broken claim fails the notebook. Facts (identities, theorems,
    implementation checks) always are; an empirical finding that the prose states for the
    paper's settings is enforced there and only recorded under other parameters.
    """

    claim: str
    holds: bool
    worst_margin: float
    n_checked: int
    detail: str = ""
    enforced: bool = True


class ClaimLog:
    """Collects the claims a notebook checks."""

    def __init__(self) -> None:
        self.claims: list[Claim] = []

    def check(self, claim: str, margins, detail: str = "", enforced: bool = True) -> Claim:
        """Record a claim from its per-case margins (array-like; each ≥ 0 when the claim holds)."""
        values = [float(m) for m in (margins.flatten().tolist() if hasattr(margins, "flatten") else margins)]
        if not values:
            raise ValueError(f"claim {claim!r} was checked on no case")
        worst = min(values)
        record = Claim(claim, bool(worst >= 0 and all(math.isfinite(v) for v in values)), worst, len(values), detail,
                       enforced)
        self.claims.append(record)
        return record

    def assert_all(self) -> None:
        broken = [c for c in self.claims if not c.holds and c.enforced]
        if broken:
            lines = "; ".join(f"{c.claim} (worst margin {c.worst_margin:.3g} over {c.n_checked})" for c in broken)
            raise AssertionError(f"claims that do not hold: {lines}")

    def table(self):
        """The claims as a pandas DataFrame (for display in the notebook)."""
        import pandas as pd

        return pd.DataFrame([asdict(c) for c in self.claims]).drop(columns="detail")


def write_metrics(
    output_dir: str | os.PathLike,
    notebook: str,
    settings: Any,
    config: Any,
    device: str,
    headline: dict[str, Any],
    claims: ClaimLog,
    figures: list[str],
    timings: dict[str, float] | None = None,
    figure_legibility: dict[str, dict] | None = None,
) -> Path:
    """Write ``metrics.json``: headline numbers, one entry per claim, parameters and provenance.

    ``run_seconds`` is the wall time from parameter validation (``settings.started_at``) to now
    and ``timings_s`` the notebook's own timings of its parts: the entries that differ between
    two executions with the same parameters (:data:`TIMING_KEYS`). ``figure_legibility``: per figure,
    its smallest text as displayed (:class:`~rlvr_dynamics.book.plotting.Legibility`)."""
    parameters = {key: value for key, value in jsonable(settings).items() if key != "started_at"}
    payload = {
        "notebook": notebook,
        "headline": headline,
        "claims": [asdict(c) for c in claims.claims],
        "figures": figures,
        "figure_legibility": figure_legibility or {},
        "parameters": {**parameters, **jsonable(config)},
        "seed": settings.seed,
        "device": device,
        "run_seconds": round(time.perf_counter() - settings.started_at, 1),
        "timings_s": timings or {},
        "versions": package_versions(),
    }
    return write_json_atomic(Path(output_dir) / "metrics.json", payload)
