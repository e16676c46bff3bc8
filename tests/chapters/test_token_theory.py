"""Tests of rlvr_dynamics.chapters.token_theory: the measured constants of Assumption 2, and the chapter's
studies, margins, tables and figure data — each margin shown to fail on a constructed counter-example."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from rlvr_dynamics.chapters import token_theory as tt
from rlvr_dynamics.engines import token_chain
from rlvr_dynamics.theory import bounds, markov

from _helpers import assert_close, bigram, measures_memory, peak_rss_bytes, random_theta, t

# A small chapter: V = 4, lengths 4 and 8 (training: 4, 8, 16 at rates 1 … 8), two instances, three steps.
SMALL = dataclasses.replace(tt.TokenConfig(**tt.PRESETS["ci"]), vocab_size=4, longest_length=8,
                            majority_longest_length=8, instances=2, steps=3, value_points=3, group_size=4,
                            training_longest_length=16, training_steps=10, training_seeds=2,
                            training_rate_doublings=4)


def test_measured_constants_approach_the_suprema_from_below():
    assert math.sqrt(2.0) == bounds.SCORE_BOUND and bounds.SMOOTHNESS == 0.5
    score, smooth = tt.measured_constants(6, 2000, torch.Generator().manual_seed(0))
    assert 0.95 * math.sqrt(2.0) <= score <= math.sqrt(2.0) + 1e-12
    assert 0.95 * 0.5 <= smooth <= 0.5 + 1e-12
    again = tt.measured_constants(6, 2000, torch.Generator().manual_seed(0))
    assert again == (score, smooth)


def test_grids_and_seeds_by_hand():
    assert tt.lengths_grid(256) == [4, 8, 16, 32, 64, 128, 256]
    assert tt.lengths_grid(100) == [4, 8, 16, 32, 64]
    assert tt.lengths_grid(3) == []
    assert tt.instance_seeds(2, 3) == [2000, 2001, 2002]
    assert tt.instance_seeds(2, 2, tt.TRAINING_SEED_OFFSET) == [2500, 2501]


# ----------------------------------------------------------------------------------------------
# Exactness, Assumptions 2 and 3
# ----------------------------------------------------------------------------------------------


def test_forward_algorithm_matches_enumeration_and_a_larger_error_fails():
    responses, errors = tt.forward_algorithm_errors(4, torch.Generator().manual_seed(0))
    assert responses == 1 + 3 + 9 + 27 + 81 + 243  # Σ_{ℓ ≤ 6} (V − 1)^(ℓ − 1) with V = 4
    assert len(errors) == 3 * (2 + 3)  # per verifier: f, ∇f and the three population updates
    assert min(tt.exactness_margins(errors)) > 0
    assert tt.exactness_margins([0.0, 3e-12]) == [1e-12, 1e-12 - 3e-12]
    assert min(tt.exactness_margins([3e-12])) < 0


def test_assumption2_margins_by_hand():
    root2 = math.sqrt(2.0)
    assert_close(t(tt.assumption2_margins(root2, 0.5)), [1e-12, 0.01 * root2, 1e-12, 0.025])
    assert min(tt.assumption2_margins(1.0001 * root2, 0.5)) < 0  # above the supremum G_p
    assert min(tt.assumption2_margins(0.98 * root2, 0.5)) < 0  # does not reach 0.99 G_p
    assert min(tt.assumption2_margins(root2, 0.46)) < 0  # does not reach 0.95 L_p


def test_assumption3_table_holds_and_is_seeded():
    seeds = tt.instance_seeds(0, 2)
    table = tt.assumption3_table(SMALL, seeds, torch.Generator().manual_seed(0), "cpu", samples=400, resamples=40)
    again = tt.assumption3_table(SMALL, seeds, torch.Generator().manual_seed(0), "cpu", samples=400, resamples=40)
    pd.testing.assert_frame_equal(table, again)
    assert table["T"].tolist() == [4, 8]
    assert_close(t(table.bound.tolist()), [4 / math.log(2), 8 / math.log(2)])
    assert min(tt.assumption3_margins(table)) > 0 and len(tt.assumption3_margins(table)) == 4
    assert bool((table.ci_low <= table.psi1_samples).all() and (table.psi1_samples <= table.ci_high).all())


def test_assumption3_and_bootstrap_margins_by_hand_and_on_counter_examples():
    table = pd.DataFrame([dict(T=4, mean_length=2.0, psi1_exact=3.0, psi1_samples=3.1, ci_low=2.8, ci_high=3.3,
                               bound=4 / math.log(2))])
    assert_close(t(tt.assumption3_margins(table)), [1.0, 4 / math.log(2) - 3.0])
    assert_close(t(tt.bootstrap_margins(table)), [0.2 / 3 + 0.02])  # nearer end 2.8: 0.2 below the norm
    # a ψ₁ norm below the mean length (Jensen broken) and above T/log 2
    assert tt.assumption3_margins(table.assign(psi1_exact=1.5))[0] < 0
    assert tt.assumption3_margins(table.assign(psi1_exact=6.0))[1] < 0
    # an exact norm 10% outside the interval is not rescued by the 2% slack
    assert tt.bootstrap_margins(table.assign(ci_low=3.3, ci_high=3.6))[0] == pytest.approx(-0.3 / 3 + 0.02)


def test_assumption3_numbers_by_hand():
    table = pd.DataFrame([dict(T=4, mean_length=2.0, psi1_exact=3.0), dict(T=8, mean_length=4.0, psi1_exact=8.0)])
    assert tt.assumption3_numbers(table) == dict(psi1_over_mean_min=1.5, psi1_over_mean_max=2.0,
                                                 mean_length_over_t=0.5, mean_length_longest_t=8)


def test_setup_numbers_are_the_chapter_constants():
    assert tt.SETUP_NUMBERS == {"95%": 0.95, "100%": 1.0}
    assert tt.t_interval([0.0, 2.0])["high"] == pytest.approx(1 + stats.t.ppf(0.975, 1))


# ----------------------------------------------------------------------------------------------
# (22), Theorem 3 and Theorem 4
# ----------------------------------------------------------------------------------------------


def test_theorem3_study_holds_on_a_small_chapter():
    study = tt.theorem3_study(SMALL, tt.instance_seeds(0, 2), "cpu")
    # T = 4 only (≤ longest_length 8), three direction rules, runs of 2 instances × 3 step sizes, 3 steps
    runs = 2 * len(tt.CONSTANT_STEPS)
    assert study.margins22.numel() == 3 * len(tt.token_chain.STEP_RULES) * SMALL.steps * runs
    assert study.margins3.numel() == 3 * SMALL.steps * runs
    assert bool((study.ineq22_margins() > 0).all()) and bool((study.theorem3_margins() > 0).all())
    assert min(study.tightness) >= 1.0  # the gain is at least M(K)/2
    assert study.final_values().shape == (3, len(tt.token_chain.STEP_RULES))
    assert study.headline()["ineq22_steps"] == study.margins22.numel()


def test_theorem3_margins_by_hand_and_on_a_violation():
    runs = pd.DataFrame([dict(T=4, rule="gap", step_rule="constant", final_J=0.5, worst_margin_22=0.1)])
    study = tt.Theorem3Study(t([0.5, 0.0]), t([0.25]), [2.5, 1.5], runs)
    assert_close(study.ineq22_margins(), [0.5 + 1e-12, 1e-12])
    assert study.headline() == dict(ineq22_worst_margin=0.0, ineq22_steps=2, theorem3_worst_margin=0.25,
                                    theorem3_gain_over_bound_min=1.5)
    assert "(22): 2 steps" in study.summary() and "≥ 1.50" in study.summary()
    assert study.numbers() == dict(theorem3_gain_over_bound=1.5, ineq22_steps=2)
    # a step where the log-odds change falls 1e-9 short of (22), a K where J_K is below (18b)
    broken = dataclasses.replace(study, margins22=t([0.5, -1e-9]), margins3=t([-1e-6]))
    assert bool((broken.ineq22_margins() < 0).any()) and bool((broken.theorem3_margins() < 0).all())


@pytest.mark.parametrize("length", [2, 3, 6])
def test_final_token_path_equals_the_forward_algorithm(length):
    policy, check = bigram(length), markov.Verifier("final_token", 4)
    theta = random_theta(policy, length, batch=(2, 3), scale=2.0)
    result, gap = markov.log_odds_and_gradient_gap(policy, theta, check)
    log_odds, grad = tt.final_token_log_odds(theta.numpy(), 4, length)
    assert log_odds.shape == (2, 3) and grad.shape == (2, 3, policy.n_params)
    assert_close(torch.as_tensor(log_odds), result.log_odds)
    assert_close(torch.as_tensor(grad), gap, rtol=1e-10, atol=1e-12)
    assert max(tt.fast_path_errors(theta[0].numpy(), 4, length)) < 1e-12
    # another answer token is another function: the path reads the verifier it is given
    other, _ = tt.final_token_log_odds(theta.numpy(), 4, length, answer_token=2)
    assert np.abs(other - log_odds).max() > 1e-3


def test_final_token_hessian_matches_autograd():
    policy, check = bigram(5), markov.Verifier("final_token", 4)
    theta = random_theta(policy, 1, batch=(2,))
    hessian = tt.final_token_hessian(theta.numpy(), 4, 5)
    assert_close(torch.as_tensor(hessian), markov.log_odds_hessian(policy, theta, check), rtol=0, atol=1e-6)
    assert np.array_equal(hessian, np.swapaxes(hessian, -1, -2))


def test_collapse_run_is_aligned_and_lowers_j_and_stops_at_the_floor():
    _, _, theta = tt.token_chain.make_instances(4, 4, "final_token", 0.5, [0, 1])
    run = tt.collapse_run(theta, 4, 4, 0.002, max_steps=20, refresh=5)
    low, high = bounds.theorem4_window(0.002, 4)
    assert (run.low, run.step) == (low, high)
    assert run.log_odds.shape == (21, 2) and run.alignment.shape == run.gap_norm.shape == (20, 2)
    assert np.abs(run.alignment - 0.002).max() < 1e-12 and run.gap_norm.min() > 0.002
    assert bool((np.diff(run.log_odds, axis=0) < 0).all())  # J falls at every step, from J₀ = ½
    assert_close(torch.as_tensor(run.value[0]), [0.5, 0.5], rtol=1e-9)
    assert run.collapse_steps().tolist() == [-1, -1]  # 20 steps are far from 10⁻³
    final, _ = tt.final_token_log_odds(run.final_theta, 4, 4)
    assert_close(torch.as_tensor(final), run.log_odds[-1])
    # started below the floor, a run stops after one step
    _, _, low_start = tt.token_chain.make_instances(4, 4, "final_token", 5e-4, [0])
    assert tt.collapse_run(low_start, 4, 4, 0.002).log_odds.shape == (2, 1)


def _collapse(log_odds=((0.0, 0.0), (-1.0, -2.0), (-8.0, -9.0)), alignment=0.002, gap_norm=1.0, errors=(0.0,)):
    """A hand-made run at T = 4 with two instances: log-odds per step, alignment and gap norm at every step."""
    log_odds = np.array(log_odds)
    steps = len(log_odds) - 1
    low, high = bounds.theorem4_window(0.002, 4)
    run = tt.CollapseRun(4, high, low, log_odds, np.full((steps, 2), alignment), np.full((steps, 2), gap_norm),
                         np.zeros((2, 20)), list(errors))
    return tt.Theorem4Collapse(0.002, [run])


def test_theorem4_collapse_margins_by_hand():
    collapse = _collapse()
    run = collapse.runs[0]
    assert run.collapse_steps().tolist() == [2, 2]  # f = −8: J ≈ 3.4e-4 < 10⁻³; f = −2: J ≈ 0.12
    assert_close(torch.as_tensor(collapse.decrease_margins()), [1.0, 2.0, 7.0, 7.0])
    assert collapse.collapse_margins() == [1 - 2 / tt.THEOREM4_MAX_STEPS] * 2
    assert collapse.alignment_margins() == [1e-12, 1.0 - 0.002]
    assert collapse.exactness_margins() == [tt.FAST_PATH_TOLERANCE]
    low, high = bounds.theorem4_window(0.002, 4)
    assert collapse.hypothesis_margins() == [bounds.theorem4_largest_alignment(4) - 0.002, high - low]
    table = collapse.table()
    assert table.to_dict("records") == [dict(T=4, window_low=low, step=high, steps_min=2, steps_max=2,
                                             fall_per_step=8.5 / 2)]
    assert collapse.numbers() == dict(theorem4_steps="2–2 at T = 4", theorem4_steps_max=2, theorem4_fall_short=4.25,
                                      theorem4_fall_long=4.25, theorem4_short=4, theorem4_long=4)
    assert collapse.headline()["theorem4_collapse_steps"] == {4: [2, 2]}
    frame = collapse.curve_frame(points=3)
    assert len(frame) == 6 and frame.J.iloc[0] == 0.5


def test_theorem4_collapse_margins_fail_on_counter_examples():
    assert min(_collapse(log_odds=((0.0, 0.0), (0.1, -2.0), (-8.0, -9.0))).decrease_margins()) < 0  # J rose once
    assert _collapse(log_odds=((0.0, 0.0), (-1.0, -2.0), (-3.0, -9.0))).collapse_margins()[0] == -1.0  # J ≈ 0.05
    assert min(_collapse(alignment=0.002 + 1e-9).alignment_margins()) < 0  # not exactly aligned
    assert min(_collapse(gap_norm=0.001).alignment_margins()) < 0  # ‖∇f‖ < Δμ: cos φ would exceed 1
    assert min(_collapse(errors=(1e-6,)).exactness_margins()) < 0  # the fast path drifted from the exact one
    too_aligned = dataclasses.replace(_collapse(), alignment=0.05)  # above √((L_p + G_p²)T)/240
    assert too_aligned.hypothesis_margins()[0] < 0
    empty = _collapse()
    empty = dataclasses.replace(empty, runs=[dataclasses.replace(empty.runs[0], low=1.0)])  # window empty
    assert empty.hypothesis_margins()[1] < 0


def test_theorem4_collapse_on_a_small_chapter(monkeypatch):
    monkeypatch.setattr(tt, "THEOREM4_LENGTHS", (3, 4))
    monkeypatch.setattr(tt, "THEOREM4_MAX_STEPS", 15)
    collapse = tt.theorem4_collapse(dataclasses.replace(SMALL, vocab_size=3), tt.instance_seeds(0, 4))
    assert [run.length for run in collapse.runs] == [3, 4]
    assert [run.log_odds.shape for run in collapse.runs] == [(16, 4), (16, 4)]
    assert min(collapse.hypothesis_margins()) > 0 and min(collapse.alignment_margins()) > 0
    assert min(collapse.decrease_margins()) > 0 and min(collapse.exactness_margins()) > 0
    assert min(collapse.collapse_margins()) == -1.0  # 15 steps do not reach 10⁻³


# ----------------------------------------------------------------------------------------------
# The length law
# ----------------------------------------------------------------------------------------------


def _fit(slope, low, high):
    return {"slope": slope, "low": low, "high": high, "per_seed_min": low, "per_seed_max": high,
            "pooled_slope": slope, "pooled_r2": 0.9, "seeds": 4}


def _law(final_token=(-0.1, -0.2, 0.0), contains=(-0.1, -0.2, 0.0), majority=(-0.5, -0.6, -0.4),
         majority_tail=(-0.5, -0.55, -0.45)):
    rows = [dict(verifier=kind, T=length, instance=0, eta_star=eta, gap_norm=1.0)
            for kind, etas in (("final_token", (2.0, 1.5)), ("contains", (1.0, 0.8)), ("majority", (1.0, 0.5)))
            for length, eta in zip((4, 16), etas, strict=True)]
    fits = {"final_token": _fit(*final_token), "contains": _fit(*contains), "majority": _fit(*majority)}
    flat = _fit(-0.05, -0.1, 0.0)
    tails = {"final_token": flat, "contains": flat, "majority": _fit(*majority_tail)}
    return tt.LengthLaw(pd.DataFrame(rows), fits, tails)


def test_length_law_margins_by_hand():
    law = _law()
    assert_close(t(law.paper_slope_margins()), [0.8, 0.8, 0.4])
    assert_close(t(law.flattening_margins()), [0.3])
    assert_close(t(law.majority_margins()), [0.1, 0.1])  # the tail interval [−0.55, −0.45] inside [−0.65, −0.35]
    assert law.exists_margins().tolist() == [0.5] * 6
    assert list(law.headline()["length_law"]) == ["final_token", "contains", "majority"]
    assert law.headline()["length_law_tail"]["majority"]["slope"] == -0.5


def test_length_law_margins_fail_on_counter_examples():
    paper = _law(majority=(-1.0, -1.1, -0.9))  # the paper's 1/T, attained by one verifier
    assert paper.paper_slope_margins()[2] < 0 and min(paper.paper_slope_margins()[:2]) > 0
    naive = _law(final_token=(-2.0, -2.2, -1.8))  # the naive 1/T²: steeper than the paper, no flattening
    assert naive.paper_slope_margins()[0] < 0 and naive.flattening_margins()[0] < 0
    assert _law(final_token=(-1.0, -1.1, -0.9)).flattening_margins()[0] < 0  # the paper's 1/T: not flat
    assert min(_law(majority_tail=(-0.9, -1.0, -0.8)).majority_margins()) < 0  # steeper than −½
    assert min(_law(majority_tail=(-0.2, -0.3, -0.1)).majority_margins()) < 0  # flatter than −½
    missing = _law()
    missing.table.loc[3, "eta_star"] = np.nan
    assert missing.exists_margins()[3] == -0.5


def test_length_law_window_table_and_numbers_by_hand():
    # final_token at T = 4 and 16: η* = 2 and 1.5; window (19) at Δμ = 0.1 starts at 48·0.1/T = 1.2 and 0.3
    law = _law()
    window = law.window_table(0.1)
    assert window["T"].tolist() == [4, 16] and window.above.tolist() == [0, 0]
    assert_close(t(window.window_low.tolist()), [bounds.theorem4_window(0.1, 4)[0], bounds.theorem4_window(0.1, 16)[0]])
    assert law.window_margins(0.1) == [-0.5, 0.5]  # not above at the shortest: fails; not above at the longest
    above = law.window_table(0.5)  # lower ends 6 and 1.5: above η* = 2 at T = 4, not above 1.5 at T = 16
    assert above.above.tolist() == [1, 0] and law.window_margins(0.5) == [0.5, 0.5]
    everywhere = law.window_table(2.0)  # lower ends 24 and 6: above both
    assert everywhere.above.tolist() == [1, 1] and law.window_margins(2.0)[1] == -0.5
    numbers = law.numbers(0.5)
    assert numbers["slope_majority"] == -0.5 and numbers["tail_high_majority"] == -0.45
    assert numbers["window_above"] == "1 of 1 at T = 4, 0 of 1 at T = 16"


def test_length_law_figure_data_by_hand():
    law = _law()
    grid_t, paper, naive = law.reference_lines()
    assert grid_t.tolist() == [4, 16]
    assert_close(torch.as_tensor(paper), [2.0, 0.5])  # anchored at the largest mean η* at T = 4 (final_token: 2)
    assert_close(torch.as_tensor(naive), [2.0, 0.125])
    assert law.legend_labels(["final_token"])[0].startswith("final token: slope ")  # no raw parameter value
    assert law.legend_labels(["majority", "paper: slope −1 (∝ 1/T)"]) == [
        "majority: slope -0.50 [-0.60, -0.40]", "paper: slope −1 (∝ 1/T)"]


def test_length_law_finds_a_critical_step_at_every_length():
    law = tt.length_law(SMALL, tt.instance_seeds(0, 2), "cpu")
    assert len(law.table) == 3 * 2 * 2  # verifiers × lengths 4, 8 × instances
    assert min(law.exists_margins()) > 0
    assert bool((law.table.eta_star > 0).all())
    assert set(law.fit_table().index) == {"final_token", "contains", "majority"}
    assert math.isnan(law.tail_fits["majority"]["slope"])  # no length ≥ 16 here: no tail fit


# ----------------------------------------------------------------------------------------------
# Effective steps against the safe step
# ----------------------------------------------------------------------------------------------


def _ratios(dr_power=1.0, grpo_power=0.0, grpo_growth=10.0):
    """η_eff/η_safe = J-factor · T^power on J ∈ {0.2, 0.8}, T ∈ {4, 8, 16}."""
    values, lengths = np.array([0.2, 0.8]), [4, 8, 16]
    length_axis = np.array(lengths, dtype=float)
    dr_grpo = np.outer([1.0, 1.0], length_axis**dr_power)
    grpo = np.outer([1.0, grpo_growth], length_axis**grpo_power)
    return tt.ratio_study(values, lengths, {"grpo": grpo, "dr_grpo": dr_grpo, "reinforce": 0.875 * dr_grpo})


def test_ratio_study_slopes_and_margins_by_hand():
    ratios = _ratios()
    for variant, slope in (("dr_grpo", 1.0), ("reinforce", 1.0), ("grpo", 0.0)):
        assert_close(torch.as_tensor(ratios.t_slopes[variant]), [slope, slope])
    # GRPO grows ×10 from J = 0.2 to 0.8, where √(J/(1 − J)) grows ×4: slope log 10 / log 4 at every T
    assert_close(torch.as_tensor(ratios.j_slopes), [math.log(10) / math.log(4)] * 3)
    assert_close(torch.as_tensor(ratios.linear_growth_margins()), [0.2] * 4)
    assert_close(torch.as_tensor(ratios.normalization_margins()), [0.6] * 2)
    assert_close(torch.as_tensor(ratios.value_growth_margins()), [5.0] * 3)
    assert ratios.headline()["step_ratio_values"] == [0.2, 0.8]
    numbers = ratios.numbers()
    assert numbers["t_slope_grpo_max"] == pytest.approx(0.0, abs=1e-12)
    assert numbers["t_slope_dr_grpo_min"] == pytest.approx(1.0)
    assert numbers["j_slope_min"] == pytest.approx(math.log(10) / math.log(4))


def test_ratio_margins_fail_on_counter_examples():
    assert min(_ratios(dr_power=2.0).linear_growth_margins()) < 0  # 1/T² growth, as the naive analysis
    assert min(_ratios(dr_power=0.5).linear_growth_margins()) < 0
    assert min(_ratios(grpo_power=0.8).normalization_margins()) < 0  # length normalization without effect
    assert min(_ratios(grpo_growth=2.0).value_growth_margins()) < 0  # no overshoot as J → 1


def test_ratio_figure_data_by_hand():
    ratios = _ratios()
    frames = ratios.log_frames()
    assert list(frames) == list(tt.HEATMAP_VARIANTS)
    assert frames["grpo"].index.tolist() == [0.2, 0.8] and frames["grpo"].columns.tolist() == [4, 8, 16]
    assert_close(t(frames["grpo"].to_numpy().tolist()), [[0.0] * 3, [1.0] * 3])
    shared = ratios.color_range()
    assert shared["vmin"] == pytest.approx(0.0) and shared["vmax"] == pytest.approx(math.log10(16))


def test_step_ratios_on_a_small_chapter():
    ratios = tt.step_ratios(SMALL, 0, "cpu")
    assert ratios.values.tolist() == [0.05, 0.5, 0.95] and ratios.lengths == [4, 8]
    assert ratios.ratio["grpo"].shape == (3, 2) and ratios.t_slopes["grpo"].shape == (3,)
    assert bool((ratios.ratio["grpo"] > 0).all())


def _near_one(peak_at=None, simplified_power=-0.5):
    """A ratio with the shape (18a) predicts at T ∈ {4, 16}: ∝ 1/√(1 − J) above 1 − J = ψ₁/(8T²), ∝ √(1 − J)
    below (or peaking at ``peak_at``); the (21) ratio ∝ (1 − J)^simplified_power."""
    gaps, lengths, psi1 = np.array(tt.NEAR_ONE_GAPS), [4, 16], np.array([4.0, 12.0])
    peaks = psi1 / (8 * np.array(lengths, dtype=float) ** 2) if peak_at is None else np.array([peak_at] * 2)
    ratio = np.where(gaps[:, None] > peaks, np.sqrt(peaks / gaps[:, None]), np.sqrt(gaps[:, None] / peaks))
    simplified = np.repeat(gaps[:, None] ** simplified_power, 2, axis=1)
    return tt.NearOneRatios(gaps, lengths, ratio, simplified, psi1)


def test_near_one_peaks_and_margins_by_hand():
    near = _near_one()
    assert_close(t(near.predicted_peaks().tolist()), [4 / 128, 12 / 2048])
    peaks = near.peaks()
    assert peaks["T"].tolist() == [4, 16]
    # the grid point nearest each predicted peak, a quarter decade apart: within 10^(1/8) of it
    assert bool((np.abs(np.log10(peaks.peak_gap / peaks.predicted_gap)) <= 1 / 8 + 1e-12).all())
    assert peaks.end_simplified.tolist() == [1e-7**-0.5] * 2
    margins = near.peak_margins()
    assert len(margins) == 6 and min(margins) > 0
    end_fall = math.log10(peaks.peak_ratio[0] / peaks.end_ratio[0]) - math.log10(2)
    assert margins[1] == pytest.approx(end_fall)
    numbers = near.numbers()
    assert numbers["near_first_T"] == 4 and numbers["near_last_T"] == 16 and numbers["near_smallest_gap"] == 1e-7
    frame = near.frame()
    assert len(frame) == 2 * len(tt.NEAR_ONE_GAPS) * 2 and set(frame.bound) == {"(18a)", "(21)"}
    assert near.headline()["grpo_ratio_near_one"][0]["T"] == 4


def test_near_one_margins_fail_on_counter_examples():
    # the paper's reading: the (18a) ratio keeps growing as J → 1 (peak at the smallest 1 − J)
    unbounded = _near_one(peak_at=1e-9)
    assert unbounded.peak_margins()[0] < 0 and unbounded.peak_margins()[1] < 0
    # a peak a decade away from T_ψ₁/(8T²)
    assert _near_one(peak_at=1e-4).peak_margins()[0] < 0
    # a (21) ratio that does not grow as J → 1
    assert _near_one(simplified_power=0.5).peak_margins()[2] < 0


def test_grpo_ratio_near_one_on_a_small_chapter():
    near = tt.grpo_ratio_near_one(SMALL, 0, "cpu")
    assert near.lengths == [4] and near.ratio.shape == (len(tt.NEAR_ONE_GAPS), 1)
    assert min(near.peak_margins()) > 0  # at T = 4 the peak sits where the cap of (18a) predicts


# ----------------------------------------------------------------------------------------------
# Sampled training
# ----------------------------------------------------------------------------------------------


def test_t_interval_by_hand():
    interval = tt.t_interval([1.0, 2.0, 3.0])  # mean 2, sample std 1
    half = stats.t.ppf(0.975, 2) / math.sqrt(3)
    assert interval["mean"] == 2.0
    assert interval["low"] == pytest.approx(2 - half) and interval["high"] == pytest.approx(2 + half)


def test_learning_rate_grids_by_hand():
    assert tt.learning_rates(5) == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert tt.figure_rates(tt.learning_rates(9)) == [1.0, 16.0, 256.0]
    assert len(tt.learning_rates(tt.PRESETS["ci"]["training_rate_doublings"])) == 18


def test_sampled_training_is_seeded_and_lays_out_every_run():
    training = tt.sampled_training(SMALL, 0, "cpu")
    again = tt.sampled_training(SMALL, 0, "cpu")
    pd.testing.assert_frame_equal(training.finals, again.finals)
    assert training.lengths == [4, 8, 16] and training.rates == [1.0, 2.0, 4.0, 8.0]
    runs = len(tt.estimators.VARIANTS) * len(training.rates) * SMALL.training_seeds
    assert len(training.finals) == 3 * runs
    assert training.finals.works.tolist() == (training.finals.final_J >= SMALL.training_initial_value + 0.5).tolist()
    assert set(training.curves.learning_rate) == {1.0}  # the figure draws every fourth rate: 1 only here
    assert training.curve_frame()["learning rate"].iloc[0] == "1"
    assert set(training.curve_frame()["update"]) == {"GRPO", "Dr. GRPO", "REINFORCE"}
    assert "learning rate" not in training.curves  # the figure's column is added to a copy


def test_largest_working_by_hand():
    rates = [1.0, 2.0, 4.0, 8.0]
    assert tt.largest_working(pd.Series({1.0: True, 2.0: True, 4.0: False, 8.0: True}), rates) == 2.0
    assert tt.largest_working(pd.Series(dict.fromkeys(rates, True)), rates) == 8.0
    assert math.isnan(tt.largest_working(pd.Series({1.0: False, 2.0: True}), rates))


def test_rate_slope_by_hand():
    rates = [2.0**k for k in range(10)]
    # two instances whose largest working rates halve with every doubling of T: slope −1 at every resample
    fit = tt.rate_slope([8, 16, 32], np.array([[64.0, 128.0], [32.0, 64.0], [16.0, 32.0]]), rates, resamples=50)
    assert fit == dict(slope=pytest.approx(-1.0), low=pytest.approx(-1.0), high=pytest.approx(-1.0), censored=0)
    # rows are lengths: at T = 8 both instances reach the top of the grid (censored), at T = 16 one falls to 4
    mixed = tt.rate_slope([8, 16], np.array([[512.0, 512.0], [512.0, 4.0]]), rates, resamples=400)
    assert mixed["slope"] == pytest.approx(-7.0) and mixed["censored"] == 1
    assert mixed["low"] == pytest.approx(-7.0) and mixed["high"] == pytest.approx(0.0)  # resamples of the flat one
    # the set's rate rises from 8 to 16, but resamples of the first instance alone fall from 64 to 16
    spread = tt.rate_slope([8, 16], np.array([[64.0, 8.0], [16.0, 16.0]]), rates, resamples=400)
    assert spread["slope"] == pytest.approx(1.0) and spread["censored"] == 0
    assert spread["low"] == pytest.approx(-2.0) and spread["high"] == pytest.approx(1.0)
    assert math.isnan(tt.rate_slope([8], np.array([[1.0]]), rates)["slope"])
    # an instance that fails even at the smallest rate counts as half of it
    assert tt.rate_slope([8, 16], np.array([[1.0], [np.nan]]), rates)["slope"] == pytest.approx(-1.0)


def _finals(dr_long_top=0.0, grpo_long=None, grpo_tail=1.0):
    """Two instances per (variant, rate ∈ {1, 2, 4, 8}, T ∈ {4, 16, 64}); every run reaches J = 1, except
    Dr. GRPO at rates ≥ 4 and T ≥ 16 (final J ``dr_long_top``) and GRPO at rate 8 and T = 64 (``grpo_long``,
    default 0: it fails there); GRPO's tail J at T = 64 is ``grpo_tail``."""
    rows = []
    for variant in ("dr_grpo", "grpo", "reinforce"):
        for rate in (1.0, 2.0, 4.0, 8.0):
            for length in (4, 16, 64):
                for instance, jitter in enumerate((0.0, -1e-3)):
                    final = 1.0
                    if variant == "dr_grpo" and rate >= 4 and length >= 16:
                        final = dr_long_top
                    if (variant, rate, length) == ("grpo", 8.0, 64):
                        final = 0.0 if grpo_long is None else grpo_long
                    tail = grpo_tail + jitter if (variant, length) == ("grpo", 64) and final > 0.5 else final
                    rows.append(dict(T=length, variant=variant, learning_rate=rate, instance=instance,
                                     final_J=final, tail_J=tail))
    finals = pd.DataFrame(rows)
    finals["works"] = finals.final_J >= 0.6
    return tt.SampledTraining([4, 16, 64], [1.0, 2.0, 4.0, 8.0], 0.1, pd.DataFrame(), finals)


def test_training_outcome_by_hand(monkeypatch):
    monkeypatch.setattr(tt, "PLATEAU_RATES", 2.0)
    outcome = tt.training_outcome(_finals())
    assert (outcome.short, outcome.long) == (4, 64)
    assert outcome.lost_rates == [4.0, 8.0]
    assert outcome.largest_working.loc["dr_grpo"].tolist() == [8.0, 2.0, 2.0]
    assert outcome.largest_working.loc["grpo"].tolist() == [8.0, 8.0, 4.0]
    assert outcome.instance_largest.loc[("grpo", 64)].tolist() == [4.0, 4.0]
    assert outcome.failing.loc[("dr_grpo", 4.0)].tolist() == [0.0, 1.0, 1.0]
    assert outcome.censored().loc["grpo"].tolist() == [1.0, 1.0, 0.0]
    assert outcome.length_failure_margins() == [1.5]
    assert outcome.grpo_shrinks_margins() == [0.5]  # 8 at T = 4, 4 at T = 64: one doubling
    assert outcome.grpo_above_margins() == [0.5]  # 4 against Dr. GRPO's 2 at T = 64: one doubling
    fits = outcome.slope_table()
    assert fits.loc[("dr_grpo", "all"), "slope"] == pytest.approx(np.polyfit(np.log2([4, 16, 64]), [3, 1, 1], 1)[0])
    assert fits.loc[("dr_grpo", "tail"), "slope"] == pytest.approx(0.0)  # T ≥ 8: 2 at T = 16 and 64
    assert outcome.slope_margins("dr_grpo", 0.0) == [pytest.approx(1e-9), pytest.approx(1e-9)]
    assert outcome.plateau.loc[1.0, "mean"] == pytest.approx(1 - 5e-4)
    assert outcome.stagnation_margins()[0] < 0  # GRPO reaches 1 at its working rates
    numbers = outcome.numbers()
    assert numbers["largest_grpo_long"] == 4.0 and numbers["largest_dr_grpo_short"] == 8.0
    assert numbers["top_rate"] == 8.0 and numbers["lost_rates"] == 2 and numbers["training_long"] == 64
    assert [row["rate"] for row in outcome.headline()["largest_working_learning_rate"]][:3] == [8.0, 2.0, 2.0]


def test_training_outcome_margins_fail_on_counter_examples(monkeypatch):
    monkeypatch.setattr(tt, "PLATEAU_RATES", 2.0)
    # Dr. GRPO that works at every rate and length: no rate is lost with length, and GRPO is not above it
    robust = tt.training_outcome(_finals(dr_long_top=1.0))
    assert robust.length_failure_margins()[0] < 0 and robust.grpo_above_margins()[0] < 0
    # GRPO that works at every rate and length: its largest working rate does not shrink
    assert tt.training_outcome(_finals(grpo_long=1.0)).grpo_shrinks_margins()[0] < 0
    # GRPO that stagnates at 0.9: the paper's hypothesis then holds
    assert tt.training_outcome(_finals(grpo_tail=0.9)).stagnation_margins()[0] > 0
    # a slope outside the interval
    assert min(tt.training_outcome(_finals()).slope_margins("dr_grpo", -1.0)) < 0


# ----------------------------------------------------------------------------------------------
# The memory estimate of the book's pre-flight check
# ----------------------------------------------------------------------------------------------


def _config(**changes) -> tt.TokenConfig:
    return tt.TokenConfig(**{**tt.PRESETS["ci"], **changes})


LAW_BOUND = dict(longest_length=16, majority_longest_length=64, instances=2)
"""A configuration whose memory is the length law's Hessian under the ``majority`` verifier at T = 64 for two
instances (its forward-algorithm graph once per parameter, D = 42): ≈ 0.17 GB."""


def test_estimated_peak_bytes_grows_with_the_dominant_sizes():
    # The majority verifier counts up to T: its Hessian grows like T² (measured), and like the instances.
    law = _config(**LAW_BOUND).estimated_peak_bytes()
    longer = _config(**dict(LAW_BOUND, majority_longest_length=128)).estimated_peak_bytes()
    assert longer / law == pytest.approx(4, rel=0.02)
    assert _config(**dict(LAW_BOUND, instances=4)).estimated_peak_bytes() == pytest.approx(2 * law)
    # Training-bound (groups of 64 responses of length 256): twice the seeds, twice the memory.
    training = dict(group_size=64, training_longest_length=256)
    ratio = (_config(**training, training_seeds=128).estimated_peak_bytes()
             / _config(**training, training_seeds=64).estimated_peak_bytes())
    assert ratio == pytest.approx(2, rel=0.01)


def test_ci_preset_estimates_well_under_the_ci_machine():
    assert _config().estimated_peak_bytes() < 4 * 2**30


def test_paper_preset_estimates_under_a_third_of_the_ci_machine():
    """The length law's Hessians under the majority verifier at T = 512 are taken one instance at a time
    (markov.hessian_chunk): ≈ 5 GiB, where all 16 at once needed ≈ 79 GiB."""
    assert _config(**tt.PRESETS["paper"]).estimated_peak_bytes() < 8 * 2**30


def test_the_hessian_in_chunks_equals_the_hessian_at_once(monkeypatch):
    policy, verifier, theta = token_chain.make_instances(4, 8, "majority", 0.3, [0, 1, 2])
    at_once = markov.log_odds_hessian(policy, theta, verifier)
    assert markov.hessian_chunk(policy, verifier) >= 3
    monkeypatch.setattr(markov, "HESSIAN_MEMORY", 1)  # one point at a time
    assert markov.hessian_chunk(policy, verifier) == 1
    torch.testing.assert_close(markov.log_odds_hessian(policy, theta, verifier), at_once, rtol=1e-12, atol=1e-12)
    assert at_once.abs().max() > 0


MEMORY_SETUP = """
from rlvr_dynamics.engines import token_chain
from rlvr_dynamics.theory import markov
def core(vocab, length, instances):  # the length law's largest call: the Hessian under the majority verifier
    policy, verifier, theta = token_chain.make_instances(vocab, length, "majority", 0.3, list(range(instances)))
    markov.log_odds_hessian(policy, theta, verifier)
core(6, 4, 1)
"""


@measures_memory
def test_estimated_peak_bytes_is_within_three_times_a_measured_run():
    config = _config(**LAW_BOUND)
    measured = peak_rss_bytes(MEMORY_SETUP, f"core({config.vocab_size}, {config.majority_longest_length}, "
                                            f"{config.instances})")
    assert 1 / 3 < measured / config.estimated_peak_bytes() < 3
