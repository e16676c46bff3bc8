"""Tests of rlvr_dynamics.book.results: claims from per-case margins, the assertion that fails the
build, and metrics.json."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest
import torch

from rlvr_dynamics.book.params import RunSettings
from rlvr_dynamics.book.results import TIMING_KEYS, ClaimLog, write_metrics


def test_a_claim_holds_iff_its_worst_margin_is_non_negative_and_finite():
    claims = ClaimLog()
    assert claims.check("tensor margins", torch.tensor([[0.5, 0.0], [2.0, 1.0]])).holds
    broken = claims.check("one case fails", [1.0, -1e-15])
    assert not broken.holds and broken.worst_margin == -1e-15 and broken.n_checked == 2
    assert not claims.check("a NaN case never holds", [1.0, math.nan]).holds
    with pytest.raises(ValueError, match="checked on no case"):
        claims.check("empty", [])


def test_assert_all_fails_on_broken_enforced_claims_only():
    claims = ClaimLog()
    claims.check("fine", [1.0])
    claims.check("a finding recorded elsewhere", [-1.0], enforced=False)
    claims.assert_all()
    claims.check("a broken fact", [-0.5, 3.0])
    with pytest.raises(AssertionError, match=r"a broken fact \(worst margin -0.5 over 2\)"):
        claims.assert_all()
    assert list(claims.table().columns) == ["claim", "holds", "worst_margin", "n_checked", "enforced"]


def test_write_metrics(tmp_path):
    @dataclass(frozen=True)
    class Config:
        steps: int = 3

    settings = RunSettings("ci", 5, "cpu", tmp_path)
    claims = ClaimLog()
    claims.check("c", [1.0], detail="d")
    path = write_metrics(tmp_path, "chapter", settings, Config(), "cpu", {"x": torch.tensor(2.5)}, claims,
                         ["f.png"], {"part_s": 1.0})
    metrics = json.loads(path.read_text())
    assert metrics["headline"] == {"x": 2.5} and metrics["figures"] == ["f.png"] and metrics["seed"] == 5
    assert metrics["parameters"] == {"preset": "ci", "seed": 5, "device": "cpu", "output_dir": str(tmp_path),
                                     "steps": 3}
    assert metrics["claims"] == [{"claim": "c", "holds": True, "worst_margin": 1.0, "n_checked": 1, "detail": "d",
                                  "enforced": True}]
    assert set(TIMING_KEYS) <= set(metrics) and metrics["timings_s"] == {"part_s": 1.0}
