"""Execute the book's notebooks with papermill, cache the results, stage and build the book.

Layout under ``build/`` (never committed):

- ``build/executed/NAME.ipynb``  the notebook executed at the book's preset, and ``NAME.key``
  the cache key it was executed under (notebook source, parameters, package versions, the
  source of :mod:`rlvr_dynamics`);
- ``build/outputs/NAME/``        its figures (PNG + SVG) and ``metrics.json``;
- ``build/site/``                the staged book source (config, pages, executed notebooks);
- ``build/site/_build/html/``    the HTML book.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rlvr_dynamics.notebooks import NOTEBOOKS
from rlvr_dynamics.params import NotebookSpec, project_root
from rlvr_dynamics.results import package_versions, write_bytes_atomic

OFFLINE_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
}
BOOK_FILES = ("_config.yml", "_toc.yml", "book")


def build_dir(root: Path | None = None) -> Path:
    return (root or project_root()) / "build"


def notebook_as_ipynb(spec: NotebookSpec, destination: Path, root: Path | None = None) -> Path:
    """Convert the jupytext MyST source of ``spec`` to an ``.ipynb`` (papermill cannot read .md)."""
    import jupytext

    notebook = jupytext.read((root or project_root()) / spec.source)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    destination.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(notebook, destination, fmt="ipynb")
    return destination


def execute_notebook(
    spec: NotebookSpec, parameters: Mapping[str, Any], output_notebook: Path, root: Path | None = None
) -> Path:
    """Execute ``spec`` with papermill, injecting ``parameters``; the executed notebook appears at
    ``output_notebook`` only once execution succeeded (written beside it, then renamed)."""
    import papermill

    root = root or project_root()
    os.environ.update(OFFLINE_ENVIRONMENT)
    output_notebook.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"rlvr-{spec.name}-") as scratch:
        source = notebook_as_ipynb(spec, Path(scratch) / f"{spec.name}.ipynb", root)
        partial = Path(scratch) / f"{spec.name}.executed.ipynb"
        papermill.execute_notebook(
            str(source), str(partial), parameters=dict(parameters), kernel_name="python3",
            cwd=str(root / "notebooks"), progress_bar=False, log_output=False, report_mode=False,
        )
        write_bytes_atomic(output_notebook, partial.read_bytes())
    return output_notebook


def source_digest(root: Path) -> str:
    """Hash of everything an execution depends on besides its parameters."""
    digest = hashlib.sha256()
    for path in sorted((root / "src" / "rlvr_dynamics").rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_key(spec: NotebookSpec, parameters: Mapping[str, Any], root: Path) -> str:
    payload = {
        "notebook": (root / spec.source).read_text(encoding="utf-8"),
        "parameters": dict(parameters),
        "versions": package_versions(),
        "code": source_digest(root),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def book_parameters(spec: NotebookSpec, preset: str, root: Path) -> dict[str, Any]:
    """The parameters the book executes a notebook with: the preset, seed 0, CPU, build/outputs."""
    return {"preset": preset, "seed": 0, "device": "cpu", "output_dir": str(build_dir(root) / "outputs" / spec.name)}


def execute_all(preset: str = "ci", force: bool = False, names: list[str] | None = None, log=print) -> list[Path]:
    """Execute every notebook (or ``names``) for the book, skipping those whose cache key matches."""
    root = project_root()
    executed = []
    for name in names or list(NOTEBOOKS):
        spec = NOTEBOOKS[name]
        parameters = book_parameters(spec, preset, root)
        spec.resolve(parameters, strict=True)
        target = build_dir(root) / "executed" / f"{name}.ipynb"
        key_file = target.with_suffix(".key")
        key = cache_key(spec, parameters, root)
        if not force and target.is_file() and key_file.is_file() and key_file.read_text().strip() == key:
            log(f"[cached]   {name}: {target}")
        else:
            key_file.unlink(missing_ok=True)
            log(f"[execute]  {name} (preset {preset}) ...")
            execute_notebook(spec, parameters, target, root)
            write_bytes_atomic(key_file, (key + "\n").encode())
            log(f"[done]     {name}: {target}")
        executed.append(target)
    return executed


def stage_site(root: Path | None = None) -> Path:
    """Copy the book's config and pages and the executed notebooks into ``build/site``."""
    root = root or project_root()
    site = build_dir(root) / "site"
    site.mkdir(parents=True, exist_ok=True)
    for name in BOOK_FILES:
        source, target = root / name, site / name
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
    notebooks = site / "notebooks"
    if notebooks.exists():
        shutil.rmtree(notebooks)
    notebooks.mkdir()
    for name in NOTEBOOKS:
        executed = build_dir(root) / "executed" / f"{name}.ipynb"
        if not executed.is_file():
            raise FileNotFoundError(f"{executed} is missing: run `rlvr-book execute-all` first")
        shutil.copy2(executed, notebooks / f"{name}.ipynb")
    return site


def build_book(preset: str = "ci", force: bool = False, log=print) -> Path:
    """Execute (cached), stage and build the HTML book strictly; return the index page."""
    root = project_root()
    execute_all(preset, force=force, log=log)
    site = stage_site(root)
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    command = [str(jupyter_book), "build", "--all", "-W", "-n", "--keep-going", str(site)]
    log("[book]     " + " ".join(command))
    subprocess.run(command, check=True, env={**os.environ, **OFFLINE_ENVIRONMENT})
    index = site / "_build" / "html" / "index.html"
    if not index.is_file():
        raise FileNotFoundError(f"the build produced no {index}")
    return index
