"""The package's architecture is checked, not hoped for: `lint-imports` keeps the contracts of
pyproject.toml on the real tree and fails on a copy given one violating import of each kind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(source_root: Path) -> subprocess.CompletedProcess:
    """Run lint-imports with the project's contracts on the package found under ``source_root``."""
    environment = {**os.environ, "PYTHONPATH": str(source_root), "COLUMNS": "400"}  # one line per contract
    return subprocess.run([str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          capture_output=True, text=True, env=environment, cwd=source_root)


def test_the_package_keeps_its_contracts():
    result = lint_imports(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("theory/gaps.py", "from rlvr_dynamics.engines import bandit", "Layers"),
    ("engines/bandit.py", "from rlvr_dynamics.lm import task", "Layers"),  # siblings of one layer
    ("chapters/figure1.py", "from rlvr_dynamics.book import params", "Layers"),
    ("chapters/two_stage.py", "from rlvr_dynamics.chapters import figure2", "Chapter modules"),
    ("files.py", "from rlvr_dynamics.theory import gaps", "support modules"),
    ("theory/bounds.py", "import numpy", "torch only"),
])
def test_a_violating_import_breaks_its_contract(tmp_path, module, line, contract):
    shutil.copytree(ROOT / "src" / "rlvr_dynamics", tmp_path / "rlvr_dynamics",
                    ignore=shutil.ignore_patterns("__pycache__"))
    path = tmp_path / "rlvr_dynamics" / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}  # noqa\n", encoding="utf-8")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    broken = [text for text in result.stdout.split("\n") if text.endswith("BROKEN")]
    assert any(contract in text for text in broken), result.stdout
