"""Tests of rlvr_dynamics.chapters.figure1: the summaries of the Figure-1 runs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from rlvr_dynamics.chapters import figure1
from rlvr_dynamics.engines import bandit
from rlvr_dynamics.engines.bandit import BanditSpec, EmptyBandWarning, make_bandits, simulate

from _helpers import F64, assert_close, t

TINY = BanditSpec(dim=4, arms=6, pool_size=5, eval_size=7, init_scale=1.0)


PAPER = BanditSpec()  # d = 10, N = 100, P = 100, E = 500, init_scale = 0.01
SMALL = BanditSpec(dim=5, arms=12, pool_size=20, eval_size=30, init_scale=0.5)


def quiet_simulate(*args, **kwargs):
    """simulate with the EmptyBandWarning silenced (the paper's band is empty at the start)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyBandWarning)
        return simulate(*args, **kwargs)


def test_log_odds_fit_recovers_an_exact_line():
    generator = torch.Generator().manual_seed(0)
    s, e, slope, intercept = 6, 9, 0.37, -1.25
    cumulative = 5.0 * torch.rand(s, e, generator=generator, dtype=F64)
    cumulative[0] = -intercept / slope  # logit J(0) − logit J(0) = 0 lies on the line
    start = torch.randn(e, generator=generator, dtype=F64)
    log_odds = start + slope * cumulative + intercept
    fit = figure1.log_odds_fit(log_odds, cumulative)
    assert fit["points"] == s * e
    assert fit["slope"] == pytest.approx(slope, rel=1e-12)
    assert fit["intercept"] == pytest.approx(intercept, rel=1e-12)
    assert fit["r2"] == pytest.approx(1.0, abs=1e-12)
    noisy = figure1.log_odds_fit(log_odds + 0.3 * torch.randn(s, e, generator=generator, dtype=F64), cumulative)
    assert noisy["r2"] < 0.999


def test_hitting_steps():
    steps = torch.tensor([0, 10, 20, 25])
    values = t([[0.10, 0.95, 0.50, 0.20],
                [0.50, 0.95, 0.89, 0.20],
                [0.92, 0.10, 0.90, 0.30],
                [0.99, 0.99, 0.50, 0.40]])  # (S, E)
    hit = figure1.hitting_steps(values, steps, 0.9)
    np.testing.assert_array_equal(hit, [20.0, 0.0, 20.0, np.nan])
    np.testing.assert_array_equal(figure1.hitting_steps(values, steps, 0.3), [10.0, 0.0, 0.0, 20.0])
    # Leading dimensions beyond the step axis broadcast: (S, B, E) → (B, E).
    stacked = figure1.hitting_steps(torch.stack([values, values], 1), steps, 0.9)
    assert stacked.shape == (2, 4)
    np.testing.assert_array_equal(stacked[1], [20.0, 0.0, 20.0, np.nan])


def test_binned_mean_by_hand():
    x = np.array([0.1, 0.2, 0.6, 0.9, 1.5, -0.1, 2.5])
    y = np.array([1.0, 3.0, 10.0, 20.0, 99.0, 99.0, 7.0])
    edges = np.array([0.0, 0.5, 1.0, 2.0, 3.0])
    # Bins [0, 0.5): 1, 3 → 2; [0.5, 1): 10, 20 → 15; [1, 2): 99; [2, 3): 7; −0.1 is outside.
    np.testing.assert_allclose(figure1.binned_mean(x, y, edges), [2.0, 15.0, 99.0, 7.0])
    # Bins are closed on the left, open on the right: an edge belongs to the bin it starts.
    np.testing.assert_allclose(figure1.binned_mean(np.array([0.0, 0.5, 1.0, 0.99]), np.array([1.0, 2.0, 4.0, 6.0]),
                                                   np.array([0.0, 0.5, 1.0, 2.0])), [1.0, 4.0, 4.0])
    # An empty bin is NaN; points beyond the last edge are dropped.
    out = figure1.binned_mean(np.array([0.1, 0.3, 5.0]), np.array([2.0, 4.0, 100.0]), np.array([0.0, 0.5, 1.0]))
    np.testing.assert_array_equal(out, [3.0, np.nan])


def test_relative_offset_spread_of_a_real_run_is_zero():
    steps = 200
    bandits = make_bandits(PAPER, [0, 1], steps).repeat(2)
    result = quiet_simulate(bandits, [0.1, 3.0, 0.1, 3.0], steps, record_every=20)
    for reading in bandit.ETA_READINGS:
        assert figure1.relative_offset_spread(result, reading) < 1e-9
        offset = result.cumulative_gap[reading] - result.relative_cumulative_gap[reading]  # (S, B, E)
        assert offset[-1].abs().max() > 1e-3  # a real offset, the same for every context
    # Tampering with one context's relative gap is detected.
    tampered = result.relative_cumulative_gap["effective"].clone()
    tampered[-1, 0, 0] += 1e-6
    broken = bandit.BanditTrajectories(**{**result.__dict__, "relative_cumulative_gap":
                                          {**result.relative_cumulative_gap, "effective": tampered}})
    assert figure1.relative_offset_spread(broken) > 5e-7


def test_relative_offset_is_the_sum_of_the_training_contexts_own_alignments():
    # M_x(K) − relative_x(K) = Σ_k ‖gap_{x_k}‖ η_k (effective) and Σ_k ‖gap_{x_k}‖ α (nominal).
    steps = 40
    bandits = make_bandits(SMALL, [3], steps)
    result = quiet_simulate(bandits, 2.0, steps)
    offset = result.cumulative_gap["effective"] - result.relative_cumulative_gap["effective"]  # (S, 1, E)
    expected = torch.cat([t([0.0]), torch.cumsum(result.train_gap_norm[:, 0] * result.effective_step[:, 0], 0)])
    assert_close(offset[:, 0, 0], expected, rtol=1e-10, atol=1e-13)
    nominal = result.cumulative_gap["nominal"] - result.relative_cumulative_gap["nominal"]
    expected = torch.cat([t([0.0]), torch.cumsum(result.train_gap_norm[:, 0] * 2.0, 0)])
    assert_close(nominal[:, 0, -1], expected, rtol=1e-10, atol=1e-13)
