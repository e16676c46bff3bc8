"""tests/ mirrors src/: every module of the package has its test file at the same place
(``src/rlvr_dynamics/LAYER/NAME.py`` → ``tests/LAYER/test_NAME.py``), and every test file there tests a
module that exists. The few exceptions say where their module is tested instead."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "rlvr_dynamics"
TESTED_ELSEWHERE = {
    "__main__.py": "a one-line entry point: tests/book/test_cli.py runs the same main",
    "book/interrupt.py": "through the CLI: tests/book/test_cli.py (Ctrl-C at start-up, mid-run, in execute-all)",
}
NOT_A_MODULE = {
    "test_environment.py": "the pins of requirements*.txt and environment.yml",
    "test_architecture.py": "the import-linter contracts of pyproject.toml",
    "test_layout.py": "this file",
    "test_gpu_check.py": "the script .ci/gpu-check (make gpu-check)",
    "book/test_built_book.py": "the built HTML book, after make book",
    "book/test_figure_cells.py": "a contract of the notebooks' figure cells (notebooks/*.md), no module of its own",
    "lm/test_multi_gpu_configs.py": "the multi-GPU config files data/multi-gpu/*.yaml against TRL and accelerate",
}


def modules() -> set[str]:
    return {path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")
            if path.name != "__init__.py" and "__pycache__" not in path.parts}


def listed_test_files() -> set[str]:
    return {path.relative_to(ROOT / "tests").as_posix() for path in (ROOT / "tests").rglob("test_*.py")}


def mirror(module: str) -> str:
    folder, _, name = module.rpartition("/")
    return f"{folder + '/' if folder else ''}test_{name}"


def test_every_module_has_its_test_file():
    missing = sorted(m for m in modules() - set(TESTED_ELSEWHERE) if mirror(m) not in listed_test_files())
    assert not missing, f"modules without tests/<layer>/test_<name>.py: {missing}"


def test_every_test_file_mirrors_a_module():
    mirrored = {mirror(m) for m in modules()}
    orphans = sorted(t for t in listed_test_files() - set(NOT_A_MODULE) if t not in mirrored)
    assert not orphans, f"test files that mirror no module: {orphans}"


def test_the_exceptions_are_current():
    assert set(TESTED_ELSEWHERE) <= modules()
    assert set(NOT_A_MODULE) <= listed_test_files()
