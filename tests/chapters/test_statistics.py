"""Tests of rlvr_dynamics.chapters.statistics: slopes and intervals of exact and noisy data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rlvr_dynamics.chapters import statistics
from rlvr_dynamics.chapters import token_theory as tt


def test_lengths_grid_and_slope_interval_of_exact_power_laws():
    assert tt.lengths_grid(256) == [4, 8, 16, 32, 64, 128, 256]
    assert tt.lengths_grid(300) == [4, 8, 16, 32, 64, 128, 256]
    assert tt.lengths_grid(3) == []
    assert tt.lengths_grid(16, shortest=2) == [2, 4, 8, 16]
    lengths = np.array(tt.lengths_grid(256), dtype=float)
    values = np.array([3.0, 0.5, 7.0])[:, None] * lengths**-1.0
    out = statistics.slope_interval(lengths, values)
    for key in ("slope", "low", "high", "per_seed_min", "per_seed_max", "pooled_slope"):
        assert out[key] == pytest.approx(-1.0, abs=1e-9), key
    assert out["seeds"] == 3
    assert out["pooled_r2"] < 1.0  # different prefactors scatter the pooled fit
    same = statistics.slope_interval(lengths, np.tile(2.0 * lengths**0.5, (4, 1)))
    assert same["slope"] == pytest.approx(0.5, abs=1e-9) and same["pooled_r2"] == pytest.approx(1.0, abs=1e-12)
    single = statistics.slope_interval(lengths, values[:1])
    assert math.isnan(single["low"]) and math.isnan(single["high"])


def test_slope_interval_covers_the_slope_of_noisy_data():
    rng = np.random.default_rng(0)
    lengths = np.array(tt.lengths_grid(1024), dtype=float)
    values = lengths**-0.5 * np.exp(0.2 * rng.standard_normal((16, len(lengths))))
    out = statistics.slope_interval(lengths, values)
    assert out["low"] < -0.5 < out["high"]
    assert 0 < out["high"] - out["low"] < 0.1
    assert out["per_seed_min"] <= out["slope"] <= out["per_seed_max"]


def test_intervals():
    median, low, high = statistics.median_interval(np.arange(1.0, 101.0))
    assert median == 50.5 and 40 <= low < 50.5 < high <= 61
    assert statistics.median_interval(np.array([1.0, np.nan, np.nan]))[0] == np.inf  # censored runs count as ∞
    mean, low, high = statistics.mean_interval(np.array([1.0, 2.0, 3.0]))
    assert mean == 2.0 and math.isclose(high - mean, 4.302652729911275 / math.sqrt(3), rel_tol=1e-9)
    rate, low, high = statistics.wilson_interval(0, 64)
    assert rate == 0 and low == pytest.approx(0, abs=1e-15) and 0.05 < high < 0.06
    with pytest.raises(ValueError):
        statistics.wilson_interval(0, 0)


def _record(seeds=(0, 1, 2)):
    return {"seeds": list(seeds), "claims": [
        {"claim": "gain ≥ 0.1", "enforced": False, "held": 2, "of": 3, "worst_margin": -0.06},
        {"claim": "rises", "enforced": True, "held": 3, "of": 3, "worst_margin": 0.04},
        {"claim": "fact", "enforced": True, "held": 2, "of": 3, "worst_margin": None}]}


def test_seed_glue_by_hand(tmp_path):
    record = _record()
    assert statistics.seed_glue(record, "gain", "gain ≥ 0.1", 0.1) == {
        "gain_held": "held at 2 of its 3 seeds (0–2)", "gain_worst": "0.040"}  # −0.06 + 0.1: the smallest gain
    assert statistics.seed_glue(record, "x", "rises") == {"x_held": "held at 3 of its 3 seeds (0–2)",
                                                           "x_worst": "0.040"}
    assert statistics.seed_glue(record, "f", "fact")["f_worst"] == "not known (a seed's run stopped)"
    missing = {"y_held": "is not recorded yet", "y_worst": "not recorded yet"}
    assert statistics.seed_glue(record, "y", "not a claim") == missing
    assert statistics.seed_glue(None, "y", "rises") == missing
    assert statistics.seed_glue(_record((0, 3, 4)), "x", "rises")["x_held"] == "held at 3 of its 3 seeds (0, 3, 4)"
    assert statistics.seed_range([2, 0, 1]) == "0–2" and statistics.seed_range([5]) == "5"
    path = tmp_path / "x.json"
    assert statistics.load_seed_record(path) is None
    path.write_text(json.dumps(record), encoding="utf-8")
    assert statistics.load_seed_record(path) == record
