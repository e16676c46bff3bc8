"""Run outputs: atomic writes, claim records and ``metrics.json``.

A claim the book says holds is recorded with its worst margin (≥ 0 means it holds, in the
claim's own units) and the number of cases checked; :meth:`ClaimLog.assert_all` makes the
notebook — and so the book build — fail when one breaks.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import tempfile
import threading
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

# Keys of metrics.json that measure time, not results: left out when two runs are compared.
TIMING_KEYS = ("run_seconds", "timings_s")
RECORDED_PACKAGES = ("torch", "numpy", "matplotlib", "seaborn", "papermill", "transformers", "trl", "rlvr-dynamics")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename,
    so a reader (or an interrupted run) never sees a half-written file."""
    return write_files_atomic({path: data})[0]


def write_files_atomic(files: Mapping[str | os.PathLike, bytes]) -> list[Path]:
    """Write several files as one step: all go to temporary files, then all are renamed, with
    Ctrl-C (SIGINT) and ``rlvr-book``'s stop (SIGTERM) held back throughout — so a stopped run
    leaves each file and the set whole (a figure's PNG never without its SVG) and no temporary
    file. (A hidden ``.NAME.*.tmp`` can survive only SIGKILL mid-write.)"""
    staged: list[tuple[str, Path]] = []
    with _stop_signals_held():
        try:
            for path, data in files.items():
                path = Path(path)
                path.parent.mkdir(parents=True, exist_ok=True)
                handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
                staged.append((temporary, path))
                with os.fdopen(handle, "wb") as stream:
                    stream.write(data)
                    stream.flush()
                    os.fsync(stream.fileno())
                os.chmod(temporary, 0o644)  # mkstemp makes it private (0600); results are for everyone to read
            for temporary, path in staged:
                os.replace(temporary, path)
        except BaseException:
            for temporary, _ in staged:
                Path(temporary).unlink(missing_ok=True)
            raise
    return [path for _, path in staged]


@contextmanager
def _stop_signals_held():
    """Defer SIGINT and SIGTERM until the block ends; a no-op off the main thread or off POSIX."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf/nan; keep them visible as strings
    return value


def write_json_atomic(path: str | os.PathLike, payload: Any) -> Path:
    text = json.dumps(_jsonable(payload), indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"))


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


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


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
) -> Path:
    """Write ``metrics.json``: headline numbers, one entry per claim, parameters and provenance.

    ``run_seconds`` is the wall time from parameter validation (``settings.started_at``) to now
    and ``timings_s`` the notebook's own timings of its parts: the entries that differ between
    two executions with the same parameters (:data:`TIMING_KEYS`)."""
    parameters = {key: value for key, value in _jsonable(settings).items() if key != "started_at"}
    payload = {
        "notebook": notebook,
        "headline": headline,
        "claims": [asdict(c) for c in claims.claims],
        "figures": figures,
        "parameters": {**parameters, **_jsonable(config)},
        "seed": settings.seed,
        "device": device,
        "run_seconds": round(time.perf_counter() - settings.started_at, 1),
        "timings_s": timings or {},
        "versions": package_versions(),
    }
    return write_json_atomic(Path(output_dir) / "metrics.json", payload)
