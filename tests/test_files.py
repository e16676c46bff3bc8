"""Tests of rlvr_dynamics.files: atomic writes, JSON-ready values, provenance, where things are."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from rlvr_dynamics import files


def test_atomic_writes_leave_whole_files_and_no_temporaries(tmp_path):
    written = files.write_files_atomic({tmp_path / "a" / "x.png": b"png", tmp_path / "a" / "x.svg": b"svg"})
    assert [p.name for p in written] == ["x.png", "x.svg"]
    assert (tmp_path / "a" / "x.png").read_bytes() == b"png" and (tmp_path / "a" / "x.svg").read_bytes() == b"svg"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["x.png", "x.svg"]  # no .tmp left
    files.write_bytes_atomic(tmp_path / "a" / "x.png", b"new")
    assert (tmp_path / "a" / "x.png").read_bytes() == b"new"


def test_a_failed_set_writes_nothing(tmp_path):
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(OSError):
        files.write_files_atomic({tmp_path / "ok.txt": b"1", tmp_path / "file" / "below.txt": b"2"})
    assert not (tmp_path / "ok.txt").exists() and not list(tmp_path.glob(".*tmp"))


def test_jsonable_converts_what_results_hold(tmp_path):
    @dataclass
    class Record:
        path: Path
        value: float

    converted = files.jsonable({"r": Record(tmp_path, 1.0), 3: (np.float64(0.5), torch.tensor(2)),
                                "bad": [math.inf, math.nan]})
    assert converted == {"r": {"path": str(tmp_path), "value": 1.0}, "3": [0.5, 2], "bad": ["inf", "nan"]}
    path = files.write_json_atomic(tmp_path / "m.json", {"x": np.int64(4)})
    assert json.loads(path.read_text()) == {"x": 4}


def test_provenance_and_places(monkeypatch, tmp_path):
    versions = files.package_versions()
    assert set(files.RECORDED_PACKAGES) < set(versions) and versions["torch"].startswith("2.")
    root = files.project_root()
    assert (root / "_toc.yml").is_file() and (root / "pyproject.toml").is_file()
    monkeypatch.setenv(files.CACHE_ENV, str(tmp_path / "cache"))
    assert files.cache_folder() == tmp_path / "cache"
    monkeypatch.delenv(files.CACHE_ENV)
    assert files.cache_folder() == root / "build" / "cache"


def test_check_fields_names_the_first_missing_or_mistyped_field():
    fields = {"device": str, "seconds": float, "seed": int, "done": bool}
    files.check_fields({"device": "cpu", "seconds": 12, "seed": 0, "done": False}, fields, "r.json")  # int seconds
    for record, field, kind in (({"seconds": 1.0, "seed": 0, "done": True}, "device", "str"),
                                ({"device": "cpu", "seconds": "1", "seed": 0, "done": True}, "seconds", "float"),
                                ({"device": "cpu", "seconds": True, "seed": 0, "done": True}, "seconds", "float"),
                                ({"device": "cpu", "seconds": 1.0, "seed": False, "done": True}, "seed", "int"),
                                ({"device": "cpu", "seconds": 1.0, "seed": 0, "done": 1}, "done", "bool")):
        with pytest.raises(ValueError, match=f"^r.json: field '{field}' is missing or not of type {kind}$"):
            files.check_fields(record, fields, "r.json")
    with pytest.raises(ValueError, match="field 'device' is missing"):
        files.check_fields(["not", "an", "object"], fields, "r.json")
