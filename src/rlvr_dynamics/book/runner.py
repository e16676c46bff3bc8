"""Execute the book's notebooks with papermill, cache the results, stage and build the book.

Layout under ``build/`` (never committed):

- ``build/executed/NAME.ipynb``  the notebook executed at the book's preset;
- ``build/outputs/NAME/``        its figures (PNG + SVG), ``metrics.json`` and ``provenance.json``: what
  produced them (notebook, parameters, code digest, the cache key: :func:`cache_key`) and a digest of
  every file of the result, the executed notebook included (:func:`result_files`);
- ``build/site/``                the staged book source (config, pages, executed notebooks, the
  reproducibility appendix generated from the ``metrics.json`` files, and the page *Where each
  result lives* generated from :mod:`rlvr_dynamics.book.result_index`);
- ``build/site/_build/html/``    the HTML book, and ``build/site/_build/source.key`` the digest of
  the staged source it was built from: an unchanged source is not rebuilt.

Everything is cached: a second ``rlvr-book build`` executes nothing and rebuilds nothing, and a
changed notebook re-executes only that notebook (its key covers its own source, its parameters,
the package versions and the package source). A result is served from the cache only when its
provenance record matches the key and every file it lists is present and unchanged
(:func:`stale_reason`); otherwise the notebook re-executes, with one line saying why — so a run
elsewhere (papermill, ``rlvr-book run``) that wrote into ``build/outputs/NAME``, a damaged or deleted
file, is never served.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from rlvr_dynamics.book import appendix, interrupt, landing, result_index
from rlvr_dynamics.book.determinism import result_fingerprint
from rlvr_dynamics.book.params import NotebookSpec
from rlvr_dynamics.book.registry import NOTEBOOKS
from rlvr_dynamics.book.robustness import ROBUSTNESS_DIR
from rlvr_dynamics.files import (
    DamagedFileError,
    package_versions,
    project_root,
    read_json,
    write_bytes_atomic,
    write_json_atomic,
)

OFFLINE_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
}
# The book's executions (and nbval's, see the Makefile) give each kernel one thread: two notebooks
# then share two cores without oversubscription, and every execution sums in the same order.
BOOK_THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# The order in which execute_all, robustness and nbval start notebooks: the longest first, so that two jobs end
# together (ci preset on 2 cores, two at a time: figure2 ≈ 350 s, two_stage ≈ 150 s, many_prompts ≈ 150 s,
# boundary ≈ 130 s, token_theory ≈ 55 s, figure1 ≈ 25 s, the rest ≤ 15 s). two_stage and boundary read the LM
# warm-up that many_prompts caches (figure2 warms up its own model, to another target), so they come after it:
# with figure2 on one job they start when many_prompts has ended. Names not listed run last.
EXECUTION_ORDER = ("figure2", "many_prompts", "two_stage", "boundary", "token_theory", "figure1",
                   "trajectory_theory", "gradient_gap", "performance")
BOOK_FILES = ("_config.yml", "_toc.yml", "book")
STATIC_DIR = "book/_static"
"""The book's own CSS and JavaScript (e.g. figures.js: click a figure to enlarge it). Staged as the site's
``_static/``, where Jupyter Book 1 adds every ``.css`` and ``.js`` file to every page."""
PACKAGE = "rlvr_dynamics"
# Cells the page never shows: the notebook's parameters cell and the one papermill injects (Chapter.start
# displays the values the run used as a table instead).
HIDDEN_CELL_TAGS = ("parameters", "injected-parameters")
PROVENANCE = "provenance.json"
"""The record, in each of the book's result folders, of the execution that produced it (:func:`record_result`)."""


def build_dir(root: Path | None = None) -> Path:
    return (root or project_root()) / "build"


def executed_notebooks(root: Path | None = None) -> list[Path]:
    """The executed notebooks under ``build/executed`` in :data:`EXECUTION_ORDER` (the others after, by name):
    the order nbval re-executes them in (``make nbval``), so that the longest start first."""
    rank = {name: i for i, name in enumerate(EXECUTION_ORDER)}
    found = sorted((build_dir(root) / "executed").glob("*.ipynb"))
    return sorted(found, key=lambda path: rank.get(path.stem, len(rank)))


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
    with interrupt.scratch_folder(prefix=f"rlvr-{spec.name}-") as scratch:
        source = notebook_as_ipynb(spec, scratch / f"{spec.name}.ipynb", root)
        partial = scratch / f"{spec.name}.executed.ipynb"
        papermill.execute_notebook(
            str(source), str(partial), parameters=dict(parameters), kernel_name="python3",
            cwd=str(root / "notebooks"), progress_bar=False, log_output=False, report_mode=False,
            kernel_manager_class=_kernel_manager_writing_to(scratch),
        )
        notebook = json.loads(partial.read_text(encoding="utf-8"))
        write_bytes_atomic(output_notebook, _notebook_bytes(scrub_paths(notebook, spec.source)))
    return output_notebook


def _kernel_manager_writing_to(scratch: Path) -> type:
    """jupyter_client's kernel manager with its connection file in ``scratch`` instead of a ``tmp*.json`` of
    its own in the temporary folder: a run stopped by a signal removes ``scratch`` (:mod:`interrupt`), and
    with it the file, which the kernel manager never gets to remove then."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class ScratchKernelManager(AsyncKernelManager):
        @default("connection_file")
        def _connection_file_in_scratch(self) -> str:
            return str(scratch / "kernel-connection.json")

    return ScratchKernelManager


def scrub_paths(notebook: dict[str, Any], source: str) -> dict[str, Any]:
    """Papermill's record of an execution without the paths of the machine that ran it: its
    ``input_path`` and ``output_path`` (a scratch folder) become the notebook's source in the
    repository (``notebooks/NAME.md``) and ``None``. Returns ``notebook``, changed in place."""
    record = notebook.get("metadata", {}).get("papermill")
    if record is not None:
        record["input_path"] = source
        record["output_path"] = None
    return notebook


def hide_parameter_cells(notebook: dict[str, Any]) -> dict[str, Any]:
    """Tag the parameters cell and papermill's injected cell ``remove-cell``: the page shows neither
    (``Chapter.start`` displays the run's values as a table). Returns ``notebook``, changed in place."""
    for cell in notebook.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if any(tag in tags for tag in HIDDEN_CELL_TAGS) and "remove-cell" not in tags:
            tags.append("remove-cell")
    return notebook


def _notebook_bytes(notebook: dict[str, Any]) -> bytes:
    return (json.dumps(notebook, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def _imported_modules(tree: ast.AST) -> set[str]:
    """Names ``rlvr_dynamics...`` imported anywhere in ``tree`` (``from P import X`` gives both
    ``P`` and ``P.X``: X may be a submodule; names that are not modules are dropped later)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == PACKAGE:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@functools.lru_cache(maxsize=512)
def _module_imports(path: str, mtime_ns: int) -> frozenset[str]:
    """The package imports of one source file (cached per file version: every notebook shares them)."""
    return frozenset(_imported_modules(ast.parse(Path(path).read_text(encoding="utf-8"))))


def _module_file(name: str, root: Path) -> Path | None:
    base = root / "src" / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def code_dependencies(spec: NotebookSpec, root: Path) -> list[Path]:
    """The package's source files a notebook executes: the modules its code cells import, and
    theirs, transitively (with each package's ``__init__``). Editing any other module — the
    runner, the CLI, the browser test — does not invalidate its cached execution."""
    import jupytext

    notebook = jupytext.read(root / spec.source)
    pending = set().union(*(_imported_modules(ast.parse(cell.source)) for cell in notebook.cells
                            if cell.cell_type == "code"))
    seen: dict[str, Path] = {}
    while pending:
        name = pending.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            module = ".".join(parts[:depth])
            path = _module_file(module, root)
            if module not in seen and path is not None:
                seen[module] = path
                pending |= _module_imports(str(path), path.stat().st_mtime_ns)
    return sorted(set(seen.values()))


def source_digest(spec: NotebookSpec, root: Path) -> str:
    """Hash of the package source that an execution of ``spec`` depends on."""
    digest = hashlib.sha256()
    for path in code_dependencies(spec, root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


BENCHMARKS_DIR = Path("data") / "benchmarks"
"""The committed benchmark records: the performance page tabulates them all, and every chapter's rerun box
quotes its preset timings (``presets/``)."""


def data_dependencies(spec: NotebookSpec, root: Path) -> list[Path]:
    """The committed data files an execution of ``spec`` reads besides its source: its record over seeds
    (``data/robustness/NAME.json``), the preset timings (every rerun box quotes them) and, for the
    performance page, every benchmark record."""
    records = root / BENCHMARKS_DIR
    read = records.rglob("*.json") if spec.name == "performance" else (records / "presets").glob("*.json")
    return sorted({root / ROBUSTNESS_DIR / f"{spec.name}.json", *read})


def cache_key(spec: NotebookSpec, parameters: Mapping[str, Any], root: Path) -> str:
    """What an execution depends on: the notebook, its parameters, the package versions, the source
    it executes (:func:`source_digest`) and the committed data it reads (:func:`data_dependencies`),
    which its prose may quote."""
    payload = {
        "threads": BOOK_THREADS,
        "notebook": (root / spec.source).read_text(encoding="utf-8"),
        "parameters": dict(parameters),
        "versions": package_versions(),
        "code": source_digest(spec, root),
        "data": {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
                 for path in data_dependencies(spec, root) if path.is_file()},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def book_parameters(spec: NotebookSpec, preset: str, root: Path) -> dict[str, Any]:
    """The parameters the book executes a notebook with: the preset, seed 0, CPU, build/outputs/NAME.

    The output folder is given relative to the repository root (where the notebook resolves it): no path
    of the building machine is injected into the executed notebook, and a build folder copied to another
    checkout stays valid (the cache key holds no absolute path)."""
    output_dir = (build_dir(root) / "outputs" / spec.name).relative_to(root)
    return {"preset": preset, "seed": 0, "device": "cpu", "output_dir": output_dir.as_posix()}


def result_files(executed: Path, output_dir: Path, root: Path) -> dict[str, str]:
    """Repository-relative path → SHA-256 of every file of one result: the executed notebook, and the
    output folder's ``metrics.json`` (timings aside: a re-execution by nbval rewrites them) and figures
    (:func:`rlvr_dynamics.book.determinism.result_fingerprint`). Raises :class:`DamagedFileError` for
    a metrics.json that does not parse."""
    files = {executed.relative_to(root).as_posix(): hashlib.sha256(executed.read_bytes()).hexdigest()}
    for name, digest in result_fingerprint(output_dir).items():
        files[(output_dir / name).relative_to(root).as_posix()] = digest
    return files


def record_result(spec: NotebookSpec, parameters: Mapping[str, Any], key: str, executed: Path, root: Path) -> Path:
    """Write ``provenance.json`` into the result folder: what produced it and the digest of each of its files."""
    output_dir = root / parameters["output_dir"]
    record = {"notebook": spec.name, "source": spec.source, "parameters": dict(parameters),
              "code": source_digest(spec, root), "versions": package_versions(), "key": key,
              "files": result_files(executed, output_dir, root)}
    return write_json_atomic(output_dir / PROVENANCE, record)


def stale_reason(spec: NotebookSpec, parameters: Mapping[str, Any], key: str, executed: Path,
                 root: Path) -> str | None:
    """Why the cached result of ``spec`` cannot be served (None: it can): no record, a damaged record,
    another key (source, parameters or packages changed), or a listed file missing, unreadable or
    changed — e.g. rewritten by a run elsewhere that chose the book's output folder."""
    output_dir = root / parameters["output_dir"]
    record_path = output_dir / PROVENANCE
    if not record_path.is_file():
        return "not executed yet" if not executed.is_file() else f"no record of the execution ({record_path})"
    try:
        record = read_json(record_path)
    except (DamagedFileError, OSError) as error:
        return str(error)
    if record.get("key") != key:
        return "its notebook, parameters, package source, versions or the data it reads changed"
    listed = record.get("files")
    if not isinstance(listed, dict) or not listed:
        return f"{record_path} lists no files"
    for relative in listed:
        if not (root / relative).is_file():
            return f"{relative} is missing"
    try:
        now = result_files(executed, output_dir, root)
    except (DamagedFileError, OSError) as error:
        return str(error)
    for relative, digest in listed.items():
        if now.get(relative) != digest:
            return f"{relative} changed since the book executed it (a run elsewhere wrote there, or it was damaged)"
    extra = sorted(set(now) - set(listed))
    if extra:
        return f"{extra[0]} was added since the book executed it (a run elsewhere wrote there)"
    return None


def execute_all(preset: str = "ci", force: bool = False, names: list[str] | None = None, log=print,
                jobs: int = 1) -> list[Path]:
    """Execute every notebook (or ``names``) for the book, serving from the cache those whose result is
    whole and bound to the current key (:func:`stale_reason`); ``jobs`` notebooks at a time in
    :data:`EXECUTION_ORDER`, each kernel on one thread."""
    root = project_root()
    pending, targets = [], []
    for name in names or list(NOTEBOOKS):
        spec = NOTEBOOKS[name]
        parameters = book_parameters(spec, preset, root)
        spec.resolve(parameters, strict=True)
        target = build_dir(root) / "executed" / f"{name}.ipynb"
        key = cache_key(spec, parameters, root)
        reason = "--force" if force else stale_reason(spec, parameters, key, target, root)
        if reason is None:
            log(f"[cached]   {name}: {target}")
        else:
            (root / parameters["output_dir"] / PROVENANCE).unlink(missing_ok=True)
            pending.append((spec, parameters, target, key, reason))
        targets.append(target)

    def run(spec, parameters, target, key, reason):
        if interrupt.requested():
            raise KeyboardInterrupt  # Ctrl-C: start no further kernel
        log(f"[execute]  {spec.name} (preset {preset}): {reason} ...")
        started = time.perf_counter()
        execute_notebook(spec, parameters, target, root)
        record_result(spec, parameters, key, target, root)
        log(f"[done]     {spec.name} in {time.perf_counter() - started:.0f} s: {target}")  # CI logs show the time

    rank = {name: i for i, name in enumerate(EXECUTION_ORDER)}
    pending.sort(key=lambda job: rank.get(job[0].name, len(rank)))
    with _environment(BOOK_THREADS):
        pool = ThreadPoolExecutor(max_workers=max(1, jobs))
        try:
            for future in [pool.submit(run, *job) for job in pending]:  # each job waits on its own kernel
                future.result()
        except BaseException:
            # After Ctrl-C (whose handler has stopped the kernels) start nothing more and leave at once;
            # after a failing notebook, let the others finish: their results are cached for the next run.
            pool.shutdown(wait=not interrupt.requested(), cancel_futures=interrupt.requested())
            raise
        pool.shutdown()
    return targets


@contextmanager
def _environment(variables: Mapping[str, str]):
    """Set environment variables (inherited by the kernels started meanwhile), then restore them."""
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def is_cached(target: Path, key_file: Path, key: str) -> bool:
    return target.is_file() and key_file.is_file() and key_file.read_text(errors="replace").strip() == key


def stage_site(root: Path | None = None) -> Path:
    """Copy the book's config and pages and the executed notebooks into ``build/site``; generate the
    reproducibility appendix and the landing page's *Results at a glance* from
    ``build/outputs/*/metrics.json``, and the page *Where each result lives*.

    The staged notebooks are the executed ones with their parameter cells tagged ``remove-cell``
    (:func:`hide_parameter_cells`) and no path of the building machine (:func:`scrub_paths`); the
    style sheets and scripts of ``book/_static`` go to ``build/site/_static`` (:func:`stage_static`)."""
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
        notebook = read_json(executed)
        staged = hide_parameter_cells(scrub_paths(notebook, NOTEBOOKS[name].source))
        write_bytes_atomic(notebooks / f"{name}.ipynb", _notebook_bytes(staged))
    appendix.write_appendix(site, build_dir(root) / "outputs", root)
    landing.write_glance(site, build_dir(root) / "outputs", root)
    result_index.write_page(site, root)
    stage_static(site, root)
    return site


def stage_static(site: Path, root: Path) -> Path:
    """Copy ``book/_static/`` (the book's own CSS and scripts) to ``site/_static/``: Jupyter Book adds a
    ``_static`` folder at the book's root to ``html_static_path`` and links every ``.css`` and ``.js`` file
    in it into every page. A file removed from ``book/_static`` is removed from the staged copy too."""
    target = Path(site) / "_static"
    if target.exists():
        shutil.rmtree(target)
    source = Path(root) / STATIC_DIR
    if source.is_dir():
        shutil.copytree(source, target)
    return target


def site_digest(site: Path) -> str:
    """Digest of the staged book source (everything but ``_build``) and the builder's version."""
    digest = hashlib.sha256(" ".join(metadata.version(p) for p in ("jupyter-book", "sphinx")).encode())
    for path in sorted(site.rglob("*")):
        relative = path.relative_to(site)
        if path.is_file() and relative.parts[0] != "_build":
            digest.update(relative.as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def build_book(preset: str = "ci", force: bool = False, log=print, jobs: int = 1) -> Path:
    """Execute (cached), stage and build the HTML book strictly; return the index page."""
    root = project_root()
    execute_all(preset, force=force, log=log, jobs=jobs)
    site = stage_site(root)
    index = site / "_build" / "html" / "index.html"
    key_file = site / "_build" / "source.key"
    key = site_digest(site)
    if not force and is_cached(index, key_file, key):
        log(f"[cached]   book: {index}")
        return index
    key_file.unlink(missing_ok=True)
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    # --all: an incremental strict build can pass with a page it did not re-read.
    command = [str(jupyter_book), "build", "--all", "-W", "-n", "--keep-going", str(site)]
    log("[book]     " + " ".join(command))
    subprocess.run(command, check=True, env={**os.environ, **OFFLINE_ENVIRONMENT})
    if not index.is_file():
        raise FileNotFoundError(f"the build produced no {index}")
    write_bytes_atomic(key_file, (key + "\n").encode())
    return index
