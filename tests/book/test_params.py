"""Tests of rlvr_dynamics.book.params: a notebook's spec, its presets, the one rule for findings,
and the output folder check."""

from __future__ import annotations

import dataclasses
import os

import pytest

from rlvr_dynamics.book.params import NotebookSpec, check_output_dir
from rlvr_dynamics.config import ParameterError, parameter
from rlvr_dynamics.files import project_root


@dataclasses.dataclass(frozen=True)
class Config:
    steps: int = parameter("steps", "int", low=1, high=100)
    rule: str = parameter("rule", "str", choices=("a", "b"))


PRESETS = {"ci": dict(steps=10, rule="a"), "paper": dict(steps=100, rule="a")}


def test_a_spec_needs_every_field_in_every_preset_and_known_presets_for_its_findings():
    with pytest.raises(TypeError, match="must set exactly"):
        NotebookSpec("x", "X", "notebooks/x.md", Config, {"ci": dict(steps=1), "paper": PRESETS["paper"]})
    with pytest.raises(TypeError, match="unknown presets"):
        NotebookSpec("x", "X", "notebooks/x.md", Config, PRESETS, ("gpu",))


def test_the_findings_rule():
    ci_only = NotebookSpec("x", "X", "notebooks/x.md", Config, PRESETS)
    both = NotebookSpec("x", "X", "notebooks/x.md", Config, PRESETS, ("ci", "paper"))
    assert ci_only.enforces_findings(Config(10, "a")) and not ci_only.enforces_findings(Config(100, "a"))
    assert both.enforces_findings(Config(100, "a"))
    assert not both.enforces_findings(Config(11, "a")) and not both.enforces_findings(Config(10, "b"))


def test_resolve_takes_preset_values_and_overrides(tmp_path):
    spec = NotebookSpec("x", "X", "notebooks/x.md", Config, PRESETS)
    settings, config = spec.resolve({"preset": "paper", "rule": "b", "output_dir": str(tmp_path)})
    assert config == Config(100, "b") and settings.output_dir == tmp_path and settings.seed == 0
    with pytest.raises(ParameterError, match="parameter 'preset' = 'gpu' is out of range"):
        spec.resolve({"preset": "gpu"})
    with pytest.raises(ParameterError, match="parameter 'colour' is unknown for notebook 'x'"):
        spec.resolve({"colour": 1}, strict=True)


def test_output_folders(tmp_path):
    assert check_output_dir("build/x") == project_root() / "build" / "x"
    assert check_output_dir("x", relative_to=tmp_path) == tmp_path / "x"
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ParameterError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(ParameterError, match="lies below .*, a file"):
        check_output_dir(tmp_path / "file" / "below")
    if os.geteuid() != 0:  # root can write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ParameterError, match="is not writable"):
            check_output_dir(locked / "out")


@dataclasses.dataclass(frozen=True)
class SizedConfig:
    """A config whose peak memory grows with its size: 1 GiB per step."""

    steps: int = parameter("steps", "int", low=1, high=10**9)

    def estimated_peak_bytes(self) -> int:
        return self.steps * 2**30


def test_jointly_oversized_runs_are_refused_before_they_start_with_both_numbers(tmp_path):
    import psutil

    spec = NotebookSpec("x", "X", "notebooks/x.md", SizedConfig, {"ci": dict(steps=1), "paper": dict(steps=2)})
    spec.resolve({"output_dir": str(tmp_path), "device": "cpu"})  # 1 GiB fits
    available = psutil.virtual_memory().available
    too_many = available // 2**30 + 2
    with pytest.raises(ParameterError, match=rf"need an estimated {too_many}\.0 GiB of memory, more than the "
                                             r"[0-9.]+ GiB available on this machine"):
        spec.resolve({"output_dir": str(tmp_path), "device": "cpu", "steps": too_many})
