"""Where the project's files are, and how results are written: atomically, as JSON, with provenance.

This module imports nothing of the package, so every layer may use it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import tempfile
import threading
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

RECORDED_PACKAGES = ("torch", "numpy", "matplotlib", "seaborn", "papermill", "transformers", "trl", "rlvr-dynamics")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename,
    so a reader (or an interrupted run) never sees a half-written file."""
    return write_files_atomic({path: data})[0]


def write_files_atomic(files: Mapping[str | os.PathLike, bytes]) -> list[Path]:
    """Write several files as one step: all go to temporary files, then all are renamed, with
    Ctrl-C (SIGINT), SIGHUP and ``rlvr-book``'s stop (SIGTERM) held back throughout — so a stopped run
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
    """Defer SIGINT, SIGTERM and SIGHUP until the block ends; a no-op off the main thread or off POSIX."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data: dataclasses, paths, NumPy and torch scalars converted; inf and NaN as strings."""
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf/nan; keep them visible as strings
    return value


class DamagedFileError(ValueError):
    """A file the tools read (a result, a record, a cache entry) cannot be parsed: the message is one
    line naming the file and where it breaks."""


def read_json(path: str | os.PathLike, expect: type = dict) -> Any:
    """Parse the JSON file ``path``; a file that is not UTF-8, not JSON or not of type ``expect`` raises
    :class:`DamagedFileError` naming it (``FileNotFoundError`` when it is missing)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise DamagedFileError(f"{path} is damaged: not UTF-8 (byte {error.start} of {len(data)})") from None
    except json.JSONDecodeError as error:
        problem = ("empty" if not data.strip()
                   else f"not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})")
        raise DamagedFileError(f"{path} is damaged: {problem}") from None
    if not isinstance(value, expect):
        raise DamagedFileError(f"{path} is damaged: holds a JSON {type(value).__name__}, expected {expect.__name__}")
    return value


def check_fields(record: Any, fields: Mapping[str, type], where: str) -> None:
    """A record read from JSON must hold every field of ``fields`` with its type (a float field takes an int: a
    whole number of seconds is still a number; a number field never takes a bool). A ``ValueError``
    "``where``: field 'name' is missing or not of type kind" names the first that does not."""
    for name, kind in fields.items():
        value = record.get(name) if isinstance(record, dict) else None
        allowed = (int, float) if kind is float else kind
        if not isinstance(value, allowed) or (isinstance(value, bool) and kind is not bool):
            raise ValueError(f"{where}: field '{name}' is missing or not of type {kind.__name__}")


def write_json_atomic(path: str | os.PathLike, payload: Any) -> Path:
    text = json.dumps(jsonable(payload), indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"))


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def project_root() -> Path:
    """The repository root: the nearest folder above the working directory (or this package)
    holding both ``_toc.yml`` and ``pyproject.toml``."""
    for start in (Path.cwd(), Path(__file__).resolve()):
        for folder in (start, *start.parents):
            if (folder / "_toc.yml").is_file() and (folder / "pyproject.toml").is_file():
                return folder
    raise FileNotFoundError(
        "no repository root (a folder with _toc.yml and pyproject.toml) above the working directory")


CACHE_ENV = "RLVR_BOOK_CACHE"
"""Environment variable naming the cache folder (default ``build/cache`` under the repository root)."""


def cache_folder() -> Path:
    """The folder of reusable intermediate results (e.g. the Figure-2 warm-up checkpoints)."""
    return Path(os.environ.get(CACHE_ENV) or project_root() / "build" / "cache")
