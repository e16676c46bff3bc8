"""Tests of rlvr_dynamics.chapters.figure1: the summaries of the Figure-1 runs, and the chapter's engine
checks, margins, tables and figure data — each margin shown to fail on a constructed counter-example."""

from __future__ import annotations

import dataclasses
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from rlvr_dynamics.chapters import figure1
from rlvr_dynamics.engines import bandit
from rlvr_dynamics.engines.bandit import BanditSpec, EmptyBandWarning, make_bandits, simulate

from _helpers import F64, assert_close, measures_memory, peak_rss_bytes, t

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
    expected = torch.cat([t([0.0]), torch.cumsum(result.train_gap_norm[:, 0] * result.step[:, 0], 0)])
    assert_close(offset[:, 0, 0], expected, rtol=1e-10, atol=1e-13)
    nominal = result.cumulative_gap["nominal"] - result.relative_cumulative_gap["nominal"]
    expected = torch.cat([t([0.0]), torch.cumsum(result.train_gap_norm[:, 0] * 2.0, 0)])
    assert_close(nominal[:, 0, -1], expected, rtol=1e-10, atol=1e-13)


# ----------------------------------------------------------------------------------------------
# The chapter's engine checks and margins: each holds on a real run and fails on a counter-example
# ----------------------------------------------------------------------------------------------


def small_run(seeds=(0, 1), steps=40, step_size=2.0, spec=SMALL):
    """A real run of ``spec`` for each seed, every step recorded: (bandits, trajectories)."""
    bandits = make_bandits(spec, list(seeds), steps)
    return bandits, quiet_simulate(bandits, step_size, steps)


def replace_trajectories(trajectories, **changes):
    return bandit.BanditTrajectories(**{**trajectories.__dict__, **changes})


def test_engine_tolerance():
    assert figure1.engine_tolerance("float64") == 1e-9
    assert figure1.engine_tolerance("float32") == 1e-3


def test_band_summary_by_hand():
    fell_back = torch.tensor([[True, True], [True, True], [False, True], [True, True]])  # (K, B)
    pool_value = t([[[0.01, 0.02, 0.015], [0.03, 0.011, 0.012]], [[0.5, 0.6, 0.7], [0.2, 0.1, 0.9]]])  # (S, B, P)
    trajectories = SimpleNamespace(fell_back=fell_back, pool_value=pool_value)
    summary = figure1.band_summary(trajectories)
    assert summary == {"fallback_share": [0.75, 1.0], "first_in_band_step": [2, None],
                       "largest_initial_pool_value": 0.03}
    text = figure1.describe_band(summary, arms=100)
    assert "largest pool value at step 0: 0.0300 (1/N = 0.0100)" in text
    assert "per seed: [0.75 1.  ]" in text
    assert text.endswith("per seed: [2, None]")


def test_reference_errors_by_hand():
    # One run recorded at every step: J (S=3, B=1, E=2), M (S, B, E), training draws (K=2, B=1).
    trajectories = SimpleNamespace(value=t([[[0.1, 0.2]], [[0.3, 0.4]], [[0.9, 0.9]]]),
                                   cumulative_gap={"effective": t([[[0.0, 0.0]], [[1.0, 2.0]], [[5.0, 5.0]]])},
                                   train_index=torch.tensor([[3], [4]]))
    reference = {"value": np.array([[0.1, 0.2], [0.3, 0.45]]), "cumulative_gap": np.array([[0.0, 0.0], [1.25, 2.0]]),
                 "train_index": np.array([3])}
    errors = figure1.reference_errors(trajectories, reference, run=0, steps=1)  # steps 0 … 1 only
    assert errors["value"] == pytest.approx(0.05) and errors["gap"] == pytest.approx(0.25)
    assert errors["same_draws"] is True
    margins = figure1.reference_margins(errors, 0.1)
    assert margins == pytest.approx([0.05, -0.15, 0.0])
    errors = figure1.reference_errors(trajectories, {**reference, "train_index": np.array([2])}, run=0, steps=1)
    assert figure1.reference_margins(errors, 1.0)[2] == -1.0
    assert "identical training draws: False" in figure1.describe_reference(errors, 1)


def test_reference_margins_hold_on_a_real_run_and_fail_on_a_perturbed_reference():
    steps = 30
    bandits, result = small_run(seeds=(2,), steps=steps)
    reference = bandit.simulate_reference_numpy(bandits, 0, 2.0, steps)
    margins = figure1.reference_margins(figure1.reference_errors(result, reference, 0, steps), 1e-9)
    assert min(margins) >= 0
    shifted = {**reference, "value": reference["value"] + np.where(np.arange(steps + 1)[:, None] == 7, 1e-6, 0.0)}
    margins = figure1.reference_margins(figure1.reference_errors(result, shifted, 0, steps), 1e-9)
    assert margins[0] < 0 and margins[1] >= 0 and margins[2] == 0


def test_recomputation_drift_is_zero_on_a_real_run_and_detects_a_wrong_theta():
    bandits, result = small_run()
    assert figure1.recomputation_drift(bandits, result) < 1e-12
    theta = result.final_theta.clone()
    theta[1] += 0.3 * torch.randn(theta[1].shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert figure1.recomputation_drift(bandits, replace_trajectories(result, final_theta=theta)) > 1e-3


def test_same_arm_alignment_is_positive_and_fails_when_contexts_have_negative_inner_products():
    bandits, result = small_run()
    margins, different_negative = figure1.same_arm_alignment(bandits, result)
    assert len(margins) == 4 and min(margins) > 0  # θ₀ and θ_K of each of the 2 runs
    assert len(different_negative) == 2 and all(0 <= share <= 1 for share in different_negative)
    # The proposition needs x_k · x ≥ 0: with the evaluation contexts negated (x_k · x < 0 for every
    # pair) the same-arm pairs are hurt by every update.
    contexts = bandits.contexts.clone()
    contexts[:, bandits.evaluation] *= -1
    negated = dataclasses.replace(bandits, contexts=contexts)
    margins, _ = figure1.same_arm_alignment(negated, result)
    assert max(margins) < 0


def test_relative_offset_margin_by_hand():
    # Offsets M − relative: main (1, 1) and seeds (2, 2) at K = 1 (spread 0); the scale is max |M| of the seeds = 5.
    main = SimpleNamespace(cumulative_gap={"effective": t([[[0.0, 0.0]], [[1.0, 2.0]]])},
                           relative_cumulative_gap={"effective": t([[[0.0, 0.0]], [[0.0, 1.0]]])})
    seeds = SimpleNamespace(cumulative_gap={"effective": t([[[0.0, 0.0]], [[3.0, 5.0]]])},
                            relative_cumulative_gap={"effective": t([[[0.0, 0.0]], [[1.0, 3.0]]])})
    assert figure1.relative_offset_margin(main, seeds, "effective", 0.1) == pytest.approx([0.6])
    # A context-dependent offset (2, 3): spread 1 > 0.6.
    seeds.relative_cumulative_gap["effective"] = t([[[0.0, 0.0]], [[1.0, 2.0]]])
    assert figure1.relative_offset_margin(main, seeds, "effective", 0.1) == pytest.approx([-0.4])


def test_relative_offset_margin_of_real_runs():
    _, main = small_run(seeds=(0,))
    _, seeds = small_run(seeds=(0, 1))
    assert figure1.relative_offset_margin(main, seeds, "effective", 1e-9)[0] > 0


def test_lemma1_margins_by_hand():
    # One run, two evaluation contexts of norms 1 and 2: L_o + 8G_o² = ‖x‖²/2 + 16‖x‖² = 16.5 and 66.
    bandits = SimpleNamespace(n_runs=1, evaluation=slice(1, None), contexts=t([[[1.0, 1.0], [1.0, 0.0], [0.0, 2.0]]]))
    signed = t([[[0.0, 0.0]], [[0.3, -0.2]], [[0.5, 0.1]]])  # (S, B, E), Σ Δμ η
    trajectories = SimpleNamespace(step=t([[0.1], [0.2]]), recorded_steps=torch.tensor([0, 1, 2]),
                                   signed_cumulative_alignment=signed, log_odds=signed - 4.0)
    # Zero residual: the smallest margin is the tolerance (at K = 0, Σ η² = 0).
    assert figure1.lemma1_margins(bandits, trajectories, 1e-3) == pytest.approx([1e-3])
    # A residual of 0.5 at K = 1 for the first context: 16.5 · 0.01 − 0.5 + tolerance.
    log_odds = trajectories.log_odds.clone()
    log_odds[1, 0, 0] += 0.5
    trajectories.log_odds = log_odds
    assert figure1.lemma1_margins(bandits, trajectories, 1e-3) == pytest.approx([0.165 - 0.5 + 1e-3])


def test_lemma1_margins_hold_on_a_real_run_and_fail_on_a_tampered_alignment():
    bandits, result = small_run(step_size=0.3)
    assert min(figure1.lemma1_margins(bandits, result, 1e-9)) >= 0
    signed = result.signed_cumulative_alignment.clone()
    signed[-1, 1, 3] += 1e4  # far beyond (L_o + 8G_o²) Σ η² for 40 steps
    margins = figure1.lemma1_margins(bandits, replace_trajectories(result, signed_cumulative_alignment=signed), 1e-9)
    assert margins[0] >= 0 and margins[1] < 0


def test_theorem1b_margins_hold_on_a_real_run_and_fail_where_the_hypothesis_is_faked():
    bandits = make_bandits(PAPER, [0], 60)
    result = quiet_simulate(bandits, 0.1, 60)
    theorem = figure1.theorem1b_margins(result, bandits, 0)
    assert theorem["held"] >= PAPER.eval_size  # at K = 0 the hypothesis holds vacuously
    assert theorem["held"] + theorem["not_held"] == 61 * PAPER.eval_size
    assert theorem["margins"].min() >= -1e-12
    # Pretend (15a) held everywhere and halve every J after step 0: J(K) < J₀ ≤ (15b).
    value = result.value.clone()
    value[1:] = value[0] * 0.5
    faked = replace_trajectories(result, value=value,
                                 smallest_alignment_ratio=torch.full_like(result.smallest_alignment_ratio, torch.inf))
    theorem = figure1.theorem1b_margins(faked, bandits, 0)
    assert theorem["not_held"] == 0
    assert (theorem["margins"].reshape(61, PAPER.eval_size)[1:] < 0).all()  # every (K ≥ 1, x) pair


def test_theorem1b_headline_and_description_by_hand():
    theorem = {"margins": np.array([0.1]), "held": 3, "not_held": 7, "latest_step": 5,
               "below_curve_without_hypothesis": 2}
    assert figure1.theorem1b_headline(theorem) == {"theorem1b_hypothesis_pairs": 3, "theorem1b_pairs": 10,
                                                   "below_curve_pairs": 2}
    text = figure1.describe_theorem1b(theorem)
    assert "held up to K at 3 of 10 (K, x) pairs; the largest such K: 5" in text
    assert text.endswith(": 2 (20.0%)")


def test_theorem1b_and_first_order_curves_by_hand():
    grid = np.array([0.0, 2.0])
    # J₀ given as a Python float enters as a float32 tensor (as in the book's figures): 1e-6 relative.
    np.testing.assert_allclose(figure1.theorem1b_curve(0.2, grid), [0.2, 0.2 / (0.2 + 0.8 * np.exp(-1.0))], rtol=1e-6)
    np.testing.assert_allclose(figure1.first_order_curve(0.2, grid), [0.2, 0.2 / (0.2 + 0.8 * np.exp(-2.0))],
                               rtol=1e-6)
    assert figure1.theorem1b_curve(0.2, grid)[1] < figure1.first_order_curve(0.2, grid)[1]  # (15b) lies below (16)


# ----------------------------------------------------------------------------------------------
# Observations: fits, per-seed table and findings
# ----------------------------------------------------------------------------------------------


def line_trajectories():
    """A run whose change in log-odds is exactly 2 M (effective), 0.5 M (nominal) and 1 · signed; the
    first two of its four contexts end converged."""
    generator = torch.Generator().manual_seed(3)
    gap = torch.cat([torch.zeros(1, 1, 4, dtype=F64), torch.rand(5, 1, 4, generator=generator, dtype=F64)])  # (S, B, E)
    start = torch.randn(1, 1, 4, generator=generator, dtype=F64)
    value = torch.full((6, 1, 4), 0.5, dtype=F64)
    value[-1, 0, :2] = 0.95
    return SimpleNamespace(log_odds=start + 2 * gap, cumulative_gap={"effective": gap, "nominal": 4 * gap},
                           signed_cumulative_alignment=2 * gap, value=value)


def test_main_fits_table_summary_and_headline():
    fits = figure1.main_fits(line_trajectories(), 0)
    assert list(fits) == ["effective", "nominal", "signed (Σ Δμ η, no positive part)",
                          "effective, converged contexts only"]
    assert [fits[k]["slope"] for k in fits] == pytest.approx([2.0, 0.5, 1.0, 2.0])
    assert [fit["points"] for fit in fits.values()] == [24, 24, 24, 12]
    assert all(fit["r2"] == pytest.approx(1.0) for fit in fits.values())
    single = line_trajectories()
    single.value[-1, 0, 1] = 0.5  # one converged context: no converged-only fit
    assert "effective, converged contexts only" not in figure1.main_fits(single, 0)
    table = figure1.fit_table(fits)
    assert list(table.columns) == ["slope", "intercept", "r2", "points"] and list(table.index) == list(fits)
    regime, speed = {"converged": 0.25, "learned_arms": 1}, {"rho_relative_vs_steps_to_0.9": np.float64(-0.5)}
    text = figure1.main_summary(fits, regime, speed)
    assert text.count("\n\n") == 2 and ["converged", "0.25"] in [line.split() for line in text.split("\n")]
    headline = figure1.main_headline(fits, regime, speed)
    assert headline["log_odds_fit"]["nominal"]["slope"] == pytest.approx(0.5)
    assert headline["regimes_main"] is regime
    assert type(headline["speed_correlations_main"]["rho_relative_vs_steps_to_0.9"]) is float


def test_per_seed_table_repeats_the_summaries_of_each_run():
    bandits, result = small_run(seeds=(4, 7), steps=60, step_size=3.0)
    table = figure1.per_seed_table(result, [4, 7], "effective", bandits)
    assert list(table.index) == [4, 7]
    conflict = figure1.stuck_conflict(bandits, result)
    for r, seed in enumerate([4, 7]):
        row = table.loc[seed]
        assert row["converged"] == figure1.regimes(result, r)["converged"]
        assert row["contexts_reaching_0.9"] == figure1.speed_correlations(result, r)["contexts_reaching_0.9"]
        nominal = figure1.log_odds_fit(result.log_odds[:, r], result.cumulative_gap["nominal"][:, r])
        assert row["r2_nominal"] == nominal["r2"]
        assert row["slope_signed"] == figure1.first_order_fits(result, r)["slope_signed"]
        assert row["overshoot_share"] == figure1.overshoot_share(result, r)
        np.testing.assert_equal(row["stuck_largest_alignment"], conflict["largest_alignment"][r])
    assert "stuck_largest_alignment" not in figure1.per_seed_table(result, [4, 7], "effective").columns
    lines = figure1.describe_per_seed(table).split("\n")
    assert lines[0].split() == ["seed", "4", "7"]  # one column per seed, one line per quantity
    assert "learned_arm" not in [line.split()[0] for line in lines]


def good_per_seed():
    """Per-seed columns on which every finding holds (two seeds)."""
    return pd.DataFrame({"r2_effective": [0.9, 0.7], "r2_nominal": [0.3, 0.5], "in_between": [0.01, 0.0],
                         "learned_arm_predicts_convergence": [0.99, 1.0], "learned_arms": [1, 1],
                         "learned_arm_is_dominant": [1.0, 1.0], "rho_relative_vs_steps_to_0.9": [-0.99, -0.85],
                         "r2_signed": [0.9999, 0.995], "slope_signed": [1.002, 0.97],
                         "r2_converged": [0.9999, 0.999], "slope_converged": [0.99, 1.04],
                         "stuck_largest_alignment": [-0.2, -0.01], "overshoot_share": [1e-7, 0.0]},
                        index=pd.Index([0, 1], name="seed"))


def test_first_order_margins_by_hand():
    margins = figure1.first_order_margins(pd.Series([0.999, 0.995, 0.98, 0.999]), pd.Series([1.01, 0.94, 1.0, 1.06]))
    np.testing.assert_allclose(margins, [0.009, -0.01, -0.01, -0.01], atol=1e-12)
    assert np.isnan(figure1.first_order_margins(pd.Series([np.nan]), pd.Series([1.0]))[0])


def test_finding_margins_hold_and_each_fails_on_its_counter_example():
    good = good_per_seed()
    findings = figure1.finding_margins(good, main_overshoot=0.0)
    assert len(findings) == 9 and next(iter(findings)).startswith("Observation 1")
    assert all(np.min(margins) >= 0 for margins in findings.values())
    np.testing.assert_allclose(findings["Observation 1: effective-η reading fits the logistic relation "
                                        "(R² ≥ 0.6, every seed)"], [0.3, 0.1])
    overshoot = [m for claim, m in findings.items() if claim.startswith("No overshooting")][0]
    np.testing.assert_allclose(overshoot, [0.01, 0.01 - 1e-7, 0.01])  # the main run first, then per seed
    broken = {"r2_effective": 0.55, "in_between": 0.06, "learned_arm_predicts_convergence": 0.9, "learned_arms": 2,
              "learned_arm_is_dominant": 0.0, "r2_signed": 0.95, "slope_signed": 1.08, "r2_converged": 0.9,
              "slope_converged": 0.5, "stuck_largest_alignment": 0.01, "overshoot_share": 0.2}
    for column, value in broken.items():
        bad = good.copy()
        bad.loc[1, column] = value
        failing = [claim for claim, margins in figure1.finding_margins(bad, 0.0).items() if np.min(margins) < 0]
        assert len(failing) == 1, column
    # The main run's overshooting share is a case of its own.
    assert np.min(overshoot) >= 0 > np.min([m for c, m in figure1.finding_margins(good, 0.5).items()
                                            if c.startswith("No overshooting")][0])
    # Observation 3 and the nominal reading are not findings: they can change without failing one.
    bad = good.copy()
    bad.loc[1, ["rho_relative_vs_steps_to_0.9", "r2_nominal"]] = [0.5, 0.99]
    assert all(np.min(margins) >= 0 for margins in figure1.finding_margins(bad, 0.0).values())
    bad = good.copy()
    bad.loc[0, "learned_arms"] = 0  # no arm learned is as wrong as two
    assert figure1.finding_margins(bad, 0.0)["Exactly one arm is learned at α = 0.1 (every seed)"].loc[0] == -1
    bad = good.copy()
    bad.loc[0, "stuck_largest_alignment"] = np.nan  # no stuck context: not evidence of the conflict
    conflict = [m for c, m in figure1.finding_margins(bad, 0.0).items() if c.startswith("Stuck contexts")][0]
    assert np.isnan(conflict.loc[0])


def test_record_margins_report_observation3():
    records = figure1.record_margins(good_per_seed())
    assert list(records) == ["Observation 3: Spearman(relative gap, steps to 0.9) ≤ −0.8 among converged contexts "
                             "(every seed)"]
    np.testing.assert_allclose(next(iter(records.values())), [0.19, 0.05])
    bad = good_per_seed()
    bad.loc[1, "rho_relative_vs_steps_to_0.9"] = -0.7
    assert next(iter(figure1.record_margins(bad).values())).loc[1] < 0


def test_speed_correlations_by_hand():
    # Three contexts reach 0.9 (at steps 10, 20, 30), one never does; log-odds rank them the opposite way.
    value = t([[[0.01, 0.01, 0.01, 0.01]], [[0.95, 0.5, 0.2, 0.02]], [[0.97, 0.92, 0.5, 0.03]],
               [[0.99, 0.95, 0.91, 0.04]]])  # (S, B, E)
    log_odds = torch.log(value / (1 - value))
    relative = {"effective": t([[[0.0] * 4]] * 3 + [[[3.0, 2.0, 1.0, 0.5]]])}
    trajectories = SimpleNamespace(value=value, log_odds=log_odds, relative_cumulative_gap=relative,
                                   recorded_steps=torch.tensor([0, 10, 20, 30]))
    speed = figure1.speed_correlations(trajectories, 0)
    assert speed["rho_relative_vs_steps_to_0.9"] == pytest.approx(-1.0)
    assert speed["rho_final_log_odds_vs_steps_to_0.9"] == pytest.approx(-1.0)
    assert speed["contexts_reaching_0.9"] == 3 and speed["median_steps_to_0.9"] == 20.0
    assert speed["rho_relative_vs_log_odds_gain"] == pytest.approx(1.0)
    # The relative gap and the final log-odds can disagree: reversing the gap reverses only its ρ.
    trajectories.relative_cumulative_gap = {"effective": relative["effective"].flip(-1)}
    speed = figure1.speed_correlations(trajectories, 0)
    assert speed["rho_relative_vs_steps_to_0.9"] == pytest.approx(1.0)
    assert speed["rho_final_log_odds_vs_steps_to_0.9"] == pytest.approx(-1.0)
    trajectories.value = torch.full_like(value, 0.5)  # nobody reaches 0.9
    speed = figure1.speed_correlations(trajectories, 0)
    assert np.isnan(speed["rho_relative_vs_steps_to_0.9"]) and np.isnan(speed["median_steps_to_0.9"])


def test_first_order_fits_by_hand():
    # Two contexts: Δ logit = signed exactly; the first converges with M = signed + N, N = 0.1 M at K.
    signed = t([[[0.0, 0.0]], [[1.0, -0.5]], [[2.7, -1.0]]])  # (S, B, E)
    gap = t([[[0.0, 0.0]], [[1.0, 0.2]], [[3.0, 0.2]]])
    value = t([[[0.1, 0.1]], [[0.5, 0.05]], [[0.95, 0.03]]])
    trajectories = SimpleNamespace(log_odds=signed - 2.0, signed_cumulative_alignment=signed,
                                   cumulative_gap={"effective": gap}, value=value)
    fits = figure1.first_order_fits(trajectories, 0)
    assert fits["slope_signed"] == pytest.approx(1.0) and fits["r2_signed"] == pytest.approx(1.0)
    assert np.isnan(fits["slope_converged"])  # one converged context is no regression
    value[-1, 0, 1] = 0.93  # both converged: the fit on M over both contexts
    fits = figure1.first_order_fits(trajectories, 0)
    expected = figure1.log_odds_fit(trajectories.log_odds[:, 0], gap[:, 0])
    assert fits["slope_converged"] == pytest.approx(expected["slope"])
    assert fits["negative_part_share_converged"] == pytest.approx((0.2 + 1.0) / 0.2)  # the second context's N/M
    # Log-odds that do not follow the signed sum fail the first-order fit.
    trajectories.log_odds = trajectories.log_odds + t([[[0.0, 0.0]], [[2.0, -3.0]], [[-1.0, 0.5]]])
    assert figure1.first_order_fits(trajectories, 0)["r2_signed"] < 0.9


def test_overshoot_share_by_hand_and_on_a_real_run():
    # Context 0 loses 0.3 at a step with Δμη = +0.1 (overshooting), context 1 loses 0.6 at one with −0.5.
    signed = t([[[0.0, 0.0]], [[0.1, -0.5]], [[0.3, -0.4]]])  # (S, B, E)
    log_odds = t([[[0.0, 0.0]], [[-0.3, -0.6]], [[0.0, -0.5]]])
    trajectories = SimpleNamespace(log_odds=log_odds, signed_cumulative_alignment=signed)
    assert figure1.overshoot_share(trajectories, 0) == pytest.approx(0.3 / 0.9)
    trajectories.log_odds = t([[[0.0, 0.0]], [[0.1, -0.6]], [[0.3, -0.5]]])  # no overshooting step
    assert figure1.overshoot_share(trajectories, 0) == 0.0
    trajectories.log_odds = t([[[0.0, 0.0]], [[0.1, 0.5]], [[0.3, 0.6]]])  # nothing is lost
    assert figure1.overshoot_share(trajectories, 0) == 0.0
    # A real run at the paper's α, every step recorded: a favourable step never lowers J.
    _, result = small_run(seeds=(1,), steps=60, step_size=0.1, spec=PAPER)
    assert figure1.overshoot_share(result, 0) < 1e-6


def conflict_case(stuck_arm):
    """Two arms, d = 1, θ_K = 0 (uniform policy): one pool context of arm 0, two evaluation contexts —
    one converged of arm 0 (so arm 0 is the learned arm) and one stuck of arm ``stuck_arm``."""
    bandits = SimpleNamespace(n_runs=1, pool=slice(0, 1), evaluation=slice(1, None),
                              contexts=t([[[1.0], [1.0], [1.0]]]))
    trajectories = SimpleNamespace(final_theta=torch.zeros(1, 1, 2, dtype=F64),
                                   value=t([[[0.5, 0.5]], [[0.95, 0.05]]]),
                                   best_arm=torch.tensor([[0, stuck_arm]]), pool_best_arm=torch.tensor([[0]]))
    return bandits, trajectories


def test_stuck_conflict_by_hand():
    # Uniform π: v_train = e₀ − e₁, v_stuck = e₁ − e₀, so Δμ = (x̂ · x)(v̂_train · v_stuck) = −√2; ‖v‖/√2 = 1.
    conflict = figure1.stuck_conflict(*conflict_case(stuck_arm=1))
    assert conflict["largest_alignment"] == pytest.approx([-2**0.5])
    assert conflict["smallest_gap_ratio"] == pytest.approx([1.0]) and conflict["stuck_contexts"] == [1]
    # A stuck context of the learned arm itself is helped (+√2): the conflict claim fails.
    assert figure1.stuck_conflict(*conflict_case(stuck_arm=0))["largest_alignment"] == pytest.approx([2**0.5])
    bandits, trajectories = conflict_case(stuck_arm=1)
    trajectories.value = t([[[0.5, 0.5]], [[0.95, 0.5]]])  # no stuck context: NaN, not evidence
    conflict = figure1.stuck_conflict(bandits, trajectories)
    assert np.isnan(conflict["largest_alignment"][0]) and conflict["stuck_contexts"] == [0]


def test_stuck_conflict_of_a_real_run_matches_the_alignment_matrix():
    bandits, result = small_run(seeds=(0, 1), steps=80, step_size=3.0)
    conflict = figure1.stuck_conflict(bandits, result)
    for r in range(2):
        stuck = result.value[-1, r] <= figure1.STUCK_LEVEL
        learned = figure1.regimes(result, r)["learned_arm"]
        full = bandit.alignment_matrix(result.final_theta[r], bandits.contexts[r, bandits.pool],
                                       result.pool_best_arm[r], bandits.contexts[r, bandits.evaluation],
                                       result.best_arm[r])  # (P, E)
        of_learned = result.pool_best_arm[r] == learned
        if stuck.any() and of_learned.any():
            assert conflict["largest_alignment"][r] == pytest.approx(full[of_learned][:, stuck].max().item(), rel=1e-12)
            assert 0 < conflict["smallest_gap_ratio"][r] <= 1 + 1e-12


def test_band_main_and_seed_numbers_by_hand():
    assert figure1.band_numbers({"fallback_share": [0.9, 0.95, 0.8], "largest_initial_pool_value": 0.011}) == {
        "band_initial_value": 0.011, "band_fallback_min": 0.8, "band_fallback_max": 0.95}
    fits = {"effective": {"slope": 1.2, "r2": 0.85}, "nominal": {"slope": 0.07, "r2": 0.3},
            "signed (Σ Δμ η, no positive part)": {"slope": 1.001, "r2": 0.99999}}
    regime = {"converged": 0.4, "stuck": 0.55, "in_between": 0.05, "decreased": 0.5,
              "learned_arm_predicts_convergence": 0.95}
    speed = {"rho_relative_vs_steps_to_0.9": -0.99, "rho_final_log_odds_vs_steps_to_0.9": -0.98}
    theorem = {"held": 3, "not_held": 7, "latest_step": 5, "below_curve_without_hypothesis": 2}
    conflict = {"largest_alignment": [-0.2], "smallest_gap_ratio": [0.75]}
    numbers = figure1.main_numbers(line_trajectories_with_steps(), 0, fits, regime, speed, theorem, conflict, 1e-9)
    assert numbers["main_unexplained_signed"] == pytest.approx(1e-5)
    assert numbers["main_pairs"] == 10 and numbers["main_below_share"] == 0.2 and numbers["main_hypothesis_latest"] == 5
    assert numbers["main_max_step"] == 0.3 and numbers["main_stuck_alignment"] == -0.2
    assert numbers["main_slope_converged"] == pytest.approx(2.0) and numbers["main_overshoot"] == 1e-9
    seeds = good_per_seed().assign(stuck=[0.5, 0.6], converged=[0.45, 0.4], learned_arm_share=[0.46, 0.4],
                                   negative_part_share_converged=[0.01, 0.02], stuck_smallest_gap_ratio=[0.8, 0.7])
    seeds["rho_final_log_odds_vs_steps_to_0.9"] = [-0.98, -0.85]
    seeds["median_steps_to_0.9"] = [900.0, 1100.0]
    numbers = figure1.seed_numbers(seeds, [0.6, 0.4])
    assert numbers["seeds_unexplained_converged_max"] == pytest.approx(0.001)
    assert numbers["seeds_r2_effective_min"] == 0.7 and numbers["seeds_stuck_largest_alignment_max"] == -0.01
    assert numbers["seeds_rho_difference_max"] == pytest.approx(0.01)
    assert numbers["seeds_converged_vs_learned_share"] == pytest.approx(0.01)
    assert numbers["seeds_unexplained_signed_max"] == pytest.approx(0.005)
    assert numbers["seeds_different_negative_min"] == 0.4 and numbers["seeds_count"] == 2
    assert numbers["seeds_median_steps_to_0.9_max"] == 1100


def line_trajectories_with_steps():
    trajectories = line_trajectories()
    trajectories.step = t([[0.1], [0.3], [0.2]])  # (K, B)
    return trajectories


# ----------------------------------------------------------------------------------------------
# Figures: data and panels
# ----------------------------------------------------------------------------------------------


def test_regime_labels_by_hand():
    labels = figure1.regime_labels(np.array([0.95, 0.9, 0.5, 0.1, 0.02]))
    converged, stuck = r"converged ($J_K \geq 0.9$)", r"stuck ($J_K \leq 0.1$)"  # typeset by mathtext
    assert list(labels) == [converged, converged, "in between", stuck, stuck]


def tiny_view_trajectories():
    """A run recorded at steps 0, 10, 20 with two contexts: the first converges at step 20, the second is stuck."""
    value = t([[[0.01, 0.01]], [[0.5, 0.02]], [[0.95, 0.05]]])  # (S, B, E)
    gap = t([[[0.0, 0.0]], [[1.0, 0.5]], [[3.0, 0.6]]])
    return SimpleNamespace(recorded_steps=torch.tensor([0, 10, 20]), value=value,
                           cumulative_gap={"effective": gap, "nominal": 2 * gap},
                           relative_cumulative_gap={"effective": gap - 1.0, "nominal": 2 * gap - 1.0})


def test_run_view_and_the_data_of_its_panels_by_hand():
    view = figure1.RunView.of(tiny_view_trajectories(), 0, "nominal")
    np.testing.assert_array_equal(view.gap[-1], [6.0, 1.2])
    np.testing.assert_allclose(view.relative[-1], [5.0, 0.2], rtol=1e-14)
    np.testing.assert_array_equal(view.hit, [20.0, np.nan])
    assert view.initial_value == pytest.approx(0.01) and view.reading == "nominal"
    points = figure1.value_gap_points(view, every=2)  # steps 0 and 20, step-major
    assert list(points["step"]) == [0, 0, 20, 20]
    np.testing.assert_array_equal(points["M"], [0.0, 0.0, 6.0, 1.2])
    np.testing.assert_array_equal(points["J"], [0.01, 0.01, 0.95, 0.05])
    curves = figure1.gap_curves(view, np.array([1, 0]), every=1)  # context-major
    assert list(curves["context"]) == [1, 1, 1, 0, 0, 0] and list(curves["step"]) == [0, 10, 20] * 2
    np.testing.assert_array_equal(curves["M"], [0.0, 1.0, 1.2, 0.0, 2.0, 6.0])
    assert list(curves["regime"][::3]) == [r"stuck ($J_K \leq 0.1$)", r"converged ($J_K \geq 0.9$)"]


def test_figure1_panels_draw_what_they_say():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, result = small_run(seeds=(0,), steps=60, step_size=3.0)
    view = figure1.RunView.of(result, 0, "effective")
    fig, axes = plt.subplots(1, 3)
    figure1.draw_value_vs_gap(axes[0], view)
    figure1.draw_gap_over_steps(axes[1], view, np.random.default_rng(0), contexts=7)
    figure1.draw_speed(axes[2], view)
    assert len(fig.axes) == 4  # the colorbar of panel 1
    assert [line.get_linestyle() for line in axes[0].get_lines()] == ["-", "--"]
    np.testing.assert_allclose(axes[0].get_lines()[0].get_ydata()[0], view.initial_value)
    assert "(7 contexts)" in axes[1].get_title()
    reached = int((~np.isnan(view.hit)).sum())
    assert [len(c.get_offsets()) for c in axes[2].collections] == [reached, SMALL.eval_size - reached]
    plt.close(fig)


def test_seed_band_frames_by_hand():
    value = t([[[0.01, 0.01], [0.01, 0.01]], [[0.95, 0.05], [0.5, 0.6]]])  # (S=2, B=2, E=2)
    gap = t([[[0.0, 0.0], [0.0, 0.0]], [[4.0, 1.0], [2.0, 3.0]]])
    trajectories = SimpleNamespace(recorded_steps=torch.tensor([0, 10]), value=value,
                                   cumulative_gap={"effective": gap}, relative_cumulative_gap={"effective": gap - 4})
    centres, binned, medians, speeds = figure1.seed_band_frames(trajectories, [7, 8], "effective", bins=2)
    np.testing.assert_array_equal(centres, [1.0, 3.0])  # edges 0, 2, 4
    # Seed 7: bin [0, 2) holds J = 0.01, 0.01, 0.05; [2, 4) holds nothing (4.0 is the last edge) → dropped.
    assert list(binned["seed"]) == [7, 8, 8]
    np.testing.assert_allclose(binned["J"], [0.07 / 3, 0.01, 0.55])
    assert list(medians["regime"]) == ["converged"] * 2 + ["not converged"] * 4
    np.testing.assert_array_equal(medians["median M"], [0.0, 4.0, 0.0, 1.0, 0.0, 2.5])
    assert list(speeds["seed"]) == ["7"] and list(speeds["steps to 0.9"]) == [10.0]
    np.testing.assert_array_equal(speeds["relative gap"], [0.0])


def sensitivity_by_hand():
    return pd.DataFrame({"seed": [0, 0, 1, 1], "step_size": [0.1, 1.0, 0.1, 1.0],
                         "final_J": [0.2, 0.5, 0.4, 0.5], "converged": [0.1, 0.5, 0.3, 0.5],
                         "in_between": [0.0, 0.0, 0.2, 0.0], "learned_arms": [1, 1, 1, 3],
                         "learned_arm_share": [0.5, 0.5, 0.4, 0.4], "fell_back": [0.9, 1.0, 0.8, 1.0],
                         "r2_effective": [0.8, 0.9, 0.7, 0.9], "r2_nominal": [0.3, 0.1, 0.5, 0.1],
                         "max_effective_step": [0.05, 0.5, 0.06, 0.4], "stuck": [0.9, 0.5, 0.5, 0.5],
                         "slope_signed": [1.0, 1.1, 1.0, 0.9], "overshoot_share": [0.0, 0.002, 1e-7, 0.3],
                         "learned_arm_predicts_convergence": [0.99, 0.97, 1.0, 0.96],
                         "learned_arm_is_dominant": [1.0, 1.0, 1.0, 0.0]})


def test_sensitivity_summary_frames_and_panel_by_hand():
    table = sensitivity_by_hand()
    summary = figure1.sensitivity_summary(table)
    assert list(summary.index) == [0.1, 1.0]
    np.testing.assert_allclose(summary["final_J"], [0.3, 0.5])
    np.testing.assert_allclose(summary["learned_arms"], [1.0, 2.0])
    assert "max_effective_step" in figure1.describe_sensitivity(summary)
    long, fits_long = figure1.sensitivity_frames(table)
    assert len(long) == 12 and sorted(set(long["quantity"])) == ["learned arm's share", "mean final J",
                                                                 "share converged"]
    np.testing.assert_array_equal(long.loc[long["quantity"] == "share converged", "value"], [0.1, 0.5, 0.3, 0.5])
    assert len(fits_long) == 8 and list(fits_long.columns) == ["seed", "step_size", "reading", "R²"]
    assert set(fits_long["reading"]) == set(figure1.R2_READINGS.values())  # no raw column names in the legend

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    figure1.draw_band_and_arms(ax, table)
    assert len(fig.axes) == 2 and fig.axes[1].get_ylim() == pytest.approx((-0.05, 3.05))
    assert [tick for tick in fig.axes[1].get_yticks() if -0.05 <= tick <= 3.05] == [0, 1, 2, 3]  # whole arms
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["share of steps with an empty band",
                                                                          "arms learned (right axis)"]
    plt.close(fig)


def test_sweep_runs_every_seed_at_every_step_size():
    config = figure1.Figure1Config(dim=3, arms=4, pool_size=5, eval_size=6, init_scale=0.5, steps=10, step_size=0.1,
                                   band_low=0.2, band_high=0.8, fallback="pool", eta_reading="effective", seeds=2,
                                   sensitivity_points=3, reference_steps=0, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyBandWarning)
        grid, result = figure1.sweep(config, [3, 5])
    np.testing.assert_allclose(grid, [0.01, np.sqrt(0.1), 10.0])
    assert result.seed.tolist() == [3, 3, 3, 5, 5, 5]
    np.testing.assert_allclose(result.step_size, np.tile(grid, 2))
    assert result.value.shape == (11, 6, 6)  # steps // 100 < 1: every step recorded


def test_sweep_margins_by_hand_and_their_counter_examples():
    table = sensitivity_by_hand()
    assert list(figure1.at_least(table, 0.1)["step_size"]) == [0.1, 1.0, 0.1, 1.0]
    assert list(figure1.at_least(table, 1.0)["step_size"]) == [1.0, 1.0]
    assert list(figure1.at_least(table, 1.0 + 1e-12)["step_size"]) == [1.0, 1.0]  # rounding of the grid
    overshoot, arm_rule = figure1.sweep_record_margins(table, 0.1).items()
    assert arm_rule[0].startswith("At every α ≥ 0.1 of the sweep")
    np.testing.assert_allclose(arm_rule[1], [0.02, 0.01])  # per seed: the smallest accuracy − 0.95
    assert list(figure1.sweep_record_margins(table, 1.0).values())[1].tolist() == pytest.approx([0.02, 0.01])
    bad = table.assign(learned_arm_predicts_convergence=[0.99, 0.97, 1.0, 0.9])
    assert list(figure1.sweep_record_margins(bad, 0.1).values())[1].loc[1] < 0
    below = table.assign(learned_arm_predicts_convergence=[0.5, 0.97, 1.0, 0.96])  # only α < 1 fails
    assert list(figure1.sweep_record_margins(below, 1.0).values())[1].min() >= 0
    assert overshoot[0].startswith("No step size of the sweep overshoots")
    np.testing.assert_allclose(overshoot[1], [0.01, 0.008, 0.01 - 1e-7, -0.29])


def test_overshoot_text_and_sensitivity_numbers_by_hand():
    table = sensitivity_by_hand()
    assert figure1.overshoot_text(table) == ("1 of the 4 runs exceed 1%, all at α ≥ 1; the largest share is 0.3 "
                                             "(α = 1, seed 1)")
    calm = table.assign(overshoot_share=[0.0, 0.002, 1e-7, 0.0])
    assert figure1.overshoot_text(calm) == "no run of the sweep exceeds 1%; the largest share is 0.002 (α = 1, seed 0)"
    numbers = figure1.sensitivity_numbers(table, 0.1)
    assert numbers["sweep_first_final_J_max"] == 0.4 and numbers["sweep_second_alpha"] == 1.0
    assert numbers["sweep_second_took_off"] == 2 and numbers["sweep_seeds"] == 2 and numbers["sweep_runs_above"] == 4
    assert numbers["sweep_max_learned_arms"] == 3 and numbers["sweep_not_dominant"] == 1
    assert numbers["sweep_accuracy_min"] == 0.96 and numbers["sweep_fell_back_min"] == 0.8
    assert numbers["sweep_rule_below"] == 0 and numbers["sweep_two_arm_runs"] == 1  # the run that learned 3 arms
    two_arms = table.assign(learned_arm_predicts_convergence=[1.0, 0.9, 1.0, 0.7])
    assert figure1.sensitivity_numbers(two_arms, 0.1)["sweep_rule_below"] == 2
    # Seed 0 learned its dominant arm at both α (converged 0.1 and 0.5); seed 1 only at α = 0.1.
    assert numbers["sweep_dominant_spread_max"] == pytest.approx(0.4)
    assert numbers["sweep_slope_signed_largest_min"] == 0.9 and numbers["sweep_slope_signed_largest_max"] == 1.1
    assert numbers["sweep_r2_nominal_max"] == 0.5 and numbers["sweep_overshoot_text"] == figure1.overshoot_text(table)


def test_sensitivity_table_of_a_real_sweep_has_the_signed_fit_and_overshooting():
    bandits = make_bandits(SMALL, [2], 40).repeat(2)
    result = quiet_simulate(bandits, [0.1, 3.0], 40, record_every=4)
    table = figure1.sensitivity_table(result, np.array([0.1, 3.0]))
    for index in range(2):
        fit = figure1.log_odds_fit(result.log_odds[:, index], result.signed_cumulative_alignment[:, index])
        assert table.loc[index, "slope_signed"] == fit["slope"] and table.loc[index, "r2_signed"] == fit["r2"]
        assert table.loc[index, "overshoot_share"] == figure1.overshoot_share(result, index)
        assert table.loc[index, "stuck"] == figure1.regimes(result, index)["stuck"]


def test_setup_numbers_are_the_module_constants():
    numbers = figure1.SETUP_NUMBERS
    assert numbers["0.9"] == bandit.CONVERGED_LEVEL and numbers["0.1"] == figure1.STUCK_LEVEL
    assert numbers["0.01"] == figure1.SENSITIVITY_RANGE[0]
    assert numbers["1%"] == figure1.OVERSHOOT_SHARE and numbers["5%"] == figure1.IN_BETWEEN_SHARE
    assert figure1.PRESETS["ci"]["step_size"] == figure1.SETUP_NUMBERS["0.1"]  # the paper's α, typed as 0.1 too


# ----------------------------------------------------------------------------------------------
# The memory estimate of the book's pre-flight check
# ----------------------------------------------------------------------------------------------


def _config(**changes) -> figure1.Figure1Config:
    return figure1.Figure1Config(**{**figure1.PRESETS["ci"], **changes})


MAIN_RUN_BOUND = dict(steps=2000, eval_size=1000, seeds=1, sensitivity_points=2, reference_steps=0)
"""A configuration whose memory is the main run's record (every step, (K + 1, 8, 1, E) float64) and the
Theorem 1(b) check's (K + 1, E) copies: ≈ 0.2 GB."""


def test_estimated_peak_bytes_grows_with_the_dominant_sizes():
    main = _config(**MAIN_RUN_BOUND).estimated_peak_bytes()
    # Twice the steps, about twice the records (the sweep's ~100 recorded steps do not grow).
    assert 1.9 < _config(**dict(MAIN_RUN_BOUND, steps=4000)).estimated_peak_bytes() / main < 2
    # float32 halves the records; the checks stay float64.
    assert 0.5 < _config(**dict(MAIN_RUN_BOUND, dtype="float32")).estimated_peak_bytes() / main < 0.75
    # Large problems: the per-step state (B, C, N) of 64 runs at once and the per-run records, ≈ 30 TB.
    assert _config(arms=10_000, dim=1_000, pool_size=100_000, eval_size=100_000).estimated_peak_bytes() > 1e13


@pytest.mark.parametrize("preset", ["ci", "paper"])
def test_presets_estimate_well_under_the_ci_machine(preset):
    assert _config(**figure1.PRESETS[preset]).estimated_peak_bytes() < 4 * 2**30


MEMORY_SETUP = """
import warnings
from rlvr_dynamics.chapters import figure1
warnings.simplefilter("ignore")
def core(**changes):
    config = figure1.Figure1Config(**{**figure1.PRESETS["ci"], **changes})
    problems, runs, _ = figure1.run(config, [0])
    figure1.theorem1b_margins(runs, problems, 0)
core(steps=20)
"""


@measures_memory
def test_estimated_peak_bytes_is_within_three_times_a_measured_run():
    # The main run, every step recorded, and its Theorem 1(b) check: the estimate's largest terms.
    measured = peak_rss_bytes(MEMORY_SETUP, f"core(**{MAIN_RUN_BOUND!r})")
    assert 1 / 3 < measured / _config(**MAIN_RUN_BOUND).estimated_peak_bytes() < 3
