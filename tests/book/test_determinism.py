"""Determinism: the same seed on CPU gives identical metrics.json (timings aside) and identical
figure files. The marker ``determinism`` compares the papermill execution of every notebook,
fingerprinted before nbval runs (``make nbval``), with nbval's re-execution into the same
folders; the other tests check the fingerprint itself."""

import json
import os
from pathlib import Path

import pytest

from rlvr_dynamics.book.determinism import differences, fingerprint
from rlvr_dynamics.book.registry import NOTEBOOKS
from rlvr_dynamics.files import project_root

ROOT = project_root()
FIRST_RUN = ROOT / "build" / "determinism" / "first-run.json"


@pytest.mark.determinism
def test_every_notebook_gives_identical_results_when_executed_twice():
    assert FIRST_RUN.is_file(), f"no fingerprint of the first execution at {FIRST_RUN}: run `make nbval`"
    first = json.loads(FIRST_RUN.read_text())
    second = fingerprint(ROOT / "build" / "outputs")
    assert set(first) >= set(NOTEBOOKS), f"notebooks not fingerprinted: {sorted(set(NOTEBOOKS) - set(first))}"
    assert all(any(name.endswith(".png") for name in first[n]) for n in NOTEBOOKS if n != "performance")
    assert FIRST_RUN.stat().st_mtime < min((ROOT / "build" / "outputs" / n / "metrics.json").stat().st_mtime
                                           for n in NOTEBOOKS), "the second execution did not happen after the first"
    assert differences(first, second) == []


def write_run(folder: Path, run_seconds: float, value: float, png: bytes = b"\x89PNG data"):
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {"notebook": folder.name, "headline": {"value": value}, "claims": [], "run_seconds": run_seconds,
               "timings_s": {"part": run_seconds / 2}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "plot.png").write_bytes(png)
    (folder / ".plot.png.abc.tmp").write_bytes(b"left by a hard kill")


def test_timings_are_ignored_but_results_are_not(tmp_path):
    write_run(tmp_path / "a" / "chapter", run_seconds=1.0, value=0.5)
    write_run(tmp_path / "b" / "chapter", run_seconds=9.0, value=0.5)
    assert differences(fingerprint(tmp_path / "a"), fingerprint(tmp_path / "b")) == []
    write_run(tmp_path / "b" / "chapter", run_seconds=9.0, value=0.5000001)
    assert differences(fingerprint(tmp_path / "a"), fingerprint(tmp_path / "b")) == ["chapter/metrics.json: differs"]
    write_run(tmp_path / "b" / "chapter", run_seconds=9.0, value=0.5, png=b"\x89PNG other pixels")
    assert differences(fingerprint(tmp_path / "a"), fingerprint(tmp_path / "b")) == ["chapter/plot.png: differs"]
    os.remove(tmp_path / "b" / "chapter" / "plot.png")
    assert differences(fingerprint(tmp_path / "a"), fingerprint(tmp_path / "b")) == [
        "chapter/plot.png: missing in one run"]
    write_run(tmp_path / "b" / "extra", run_seconds=1.0, value=0.5)
    assert "extra: only in the second run" in differences(fingerprint(tmp_path / "a"), fingerprint(tmp_path / "b"))
