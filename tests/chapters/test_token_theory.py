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
from rlvr_dynamics.theory import bounds

from _helpers import assert_close, t

# A small chapter: V = 4, lengths 4 and 8 (training: 4 and 16), two instances, three steps.
SMALL = dataclasses.replace(tt.TokenConfig(**tt.PRESETS["ci"]), vocab_size=4, longest_length=8,
                            majority_longest_length=8, instances=2, steps=3, value_points=3, group_size=4,
                            training_longest_length=16, training_steps=10, training_seeds=2)


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
    # a step where the log-odds change falls 1e-9 short of (22), a K where J_K is below (18b)
    broken = dataclasses.replace(study, margins22=t([0.5, -1e-9]), margins3=t([-1e-6]))
    assert bool((broken.ineq22_margins() < 0).any()) and bool((broken.theorem3_margins() < 0).all())


def test_theorem4_instance_decreases_and_fails_outside_its_hypothesis():
    instance = tt.theorem4_instance(dataclasses.replace(SMALL, vocab_size=6), tt.instance_seeds(0, 4), "cpu")
    low, high = bounds.theorem4_window(SMALL.alignment, tt.THEOREM4_LENGTH)
    assert (instance.low, instance.high) == (low, high)
    assert_close(instance.window_steps[[0, -1]], [low, high])
    assert instance.run.value.shape == (SMALL.steps + 1, 4 * tt.THEOREM4_STEPS)
    assert min(instance.hypothesis_margins()) > 0 and min(instance.alignment_margins()) > 0
    assert bool((instance.decrease_margins() > 0).all())
    assert instance.headline()["theorem4_window"] == [low, high]
    # an alignment above √((L_p + G_p²)T)/240, and a run whose alignment is not the target
    assert dataclasses.replace(instance, alignment=0.05).hypothesis_margins()[0] < 0
    assert min(dataclasses.replace(instance, alignment=SMALL.alignment + 1e-9).alignment_margins()) < 0
    # a window that is empty, and a run in which J increases once
    assert dataclasses.replace(instance, low=high, high=low).hypothesis_margins()[1] < 0
    rising = instance.run.value.clone()
    rising[2, 0] = rising[1, 0] + 1e-6
    assert bool((dataclasses.replace(instance, run=dataclasses.replace(instance.run, value=rising))
                 .decrease_margins() < 0).any())


# ----------------------------------------------------------------------------------------------
# The length law
# ----------------------------------------------------------------------------------------------


def _fit(slope, low, high):
    return {"slope": slope, "low": low, "high": high, "per_seed_min": low, "per_seed_max": high,
            "pooled_slope": slope, "pooled_r2": 0.9, "seeds": 4}


def _law(final_token=(-0.1, -0.2, 0.0), contains=(-0.1, -0.2, 0.0), majority=(-0.5, -0.6, -0.4)):
    rows = [dict(verifier=kind, T=length, instance=0, eta_star=eta, gap_norm=1.0)
            for kind, etas in (("final_token", (2.0, 1.5)), ("contains", (1.0, 0.8)), ("majority", (1.0, 0.5)))
            for length, eta in zip((4, 16), etas, strict=True)]
    fits = {"final_token": _fit(*final_token), "contains": _fit(*contains), "majority": _fit(*majority)}
    return tt.LengthLaw(pd.DataFrame(rows), fits)


def test_length_law_margins_by_hand():
    law = _law()
    assert_close(t(law.naive_excluded_margins()), [1.3, 1.3, 0.9])
    assert_close(t(law.not_steeper_margins()), [1.0, 1.0, 0.6])
    assert_close(t(law.flattening_margins()), [0.3])
    assert_close(t(law.majority_margins()), [0.25, 0.2])
    assert law.exists_margins().tolist() == [0.5] * 6
    assert list(law.headline()["length_law"]) == ["final_token", "contains", "majority"]


def test_length_law_margins_fail_on_counter_examples():
    naive = _law(final_token=(-2.0, -2.2, -1.8))  # the naive slope −2 (∝ 1/T²)
    assert naive.naive_excluded_margins()[0] < 0 and naive.not_steeper_margins()[0] < 0
    assert naive.flattening_margins()[0] < 0
    paper = _law(final_token=(-1.0, -1.1, -0.9))  # the paper's 1/T: not a flattening
    assert paper.naive_excluded_margins()[0] > 0 and paper.flattening_margins()[0] < 0
    assert min(_law(majority=(-1.0, -1.1, -0.9)).majority_margins()) < 0  # steeper than the range
    assert min(_law(majority=(-0.1, -0.15, -0.05)).majority_margins()) < 0  # flatter than the range
    missing = _law()
    missing.table.loc[3, "eta_star"] = np.nan
    assert missing.exists_margins()[3] == -0.5


def test_length_law_figure_data_by_hand():
    law = _law()
    grid_t, paper, naive = law.reference_lines()
    assert grid_t.tolist() == [4, 16]
    assert_close(torch.as_tensor(paper), [2.0, 0.5])  # anchored at the largest mean η* at T = 4 (final_token: 2)
    assert_close(torch.as_tensor(naive), [2.0, 0.125])
    assert law.legend_labels(["majority", "paper: slope −1 (∝ 1/T)"]) == [
        "majority: slope -0.50 [-0.60, -0.40]", "paper: slope −1 (∝ 1/T)"]


def test_length_law_finds_a_critical_step_at_every_length():
    law = tt.length_law(SMALL, tt.instance_seeds(0, 2), "cpu")
    assert len(law.table) == 3 * 2 * 2  # verifiers × lengths 4, 8 × instances
    assert min(law.exists_margins()) > 0
    assert bool((law.table.eta_star > 0).all())
    assert set(law.fit_table().index) == {"final_token", "contains", "majority"}


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


# ----------------------------------------------------------------------------------------------
# Sampled training
# ----------------------------------------------------------------------------------------------


def test_t_interval_by_hand():
    interval = tt.t_interval([1.0, 2.0, 3.0])  # mean 2, sample std 1
    half = stats.t.ppf(0.975, 2) / math.sqrt(3)
    assert interval["mean"] == 2.0
    assert interval["low"] == pytest.approx(2 - half) and interval["high"] == pytest.approx(2 + half)


def test_sampled_training_is_seeded_and_lays_out_every_run():
    training = tt.sampled_training(SMALL, 0, "cpu")
    again = tt.sampled_training(SMALL, 0, "cpu")
    pd.testing.assert_frame_equal(training.finals, again.finals)
    assert training.lengths == [4, 16]
    runs = len(tt.estimators.VARIANTS) * len(tt.LEARNING_RATES) * SMALL.training_seeds
    assert len(training.finals) == 2 * runs
    assert training.finals.collapsed.tolist() == (training.finals.final_J < SMALL.training_initial_value / 2).tolist()
    assert training.curve_frame()["learning rate"].iloc[0] == "1"
    assert "learning rate" not in training.curves  # the figure's column is added to a copy


def _finals(dr_long_1000=0.0, grpo_tail=1.0):
    """Two runs per (variant, rate, T ∈ {4, 64}); every run reaches J = 1, except Dr. GRPO at rate 1000 and T = 64
    (final J ``dr_long_1000``) and GRPO's tail J at T = 64, ``grpo_tail``."""
    rows = []
    for variant in ("dr_grpo", "grpo", "reinforce"):
        for rate in tt.LEARNING_RATES:
            for length in (4, 64):
                for instance, jitter in enumerate((0.0, -1e-3)):
                    final = dr_long_1000 if (variant, rate, length) == ("dr_grpo", 1000.0, 64) else 1.0
                    tail = grpo_tail + jitter if (variant, length) == ("grpo", 64) else final
                    rows.append(dict(T=length, variant=variant, learning_rate=rate, instance=instance,
                                     final_J=final, tail_J=tail))
    finals = pd.DataFrame(rows)
    finals["collapsed"] = finals.final_J < 0.05
    return tt.SampledTraining([4, 64], pd.DataFrame(), finals)


def test_training_outcome_by_hand():
    outcome = tt.training_outcome(_finals())
    assert (outcome.short, outcome.long) == (4, 64)
    assert outcome.lost_rates == [1000.0]
    assert outcome.largest_working.loc["dr_grpo"].tolist() == [1000.0, 100.0]
    assert outcome.collapse.loc[("dr_grpo", 1000.0)].tolist() == [0.0, 1.0]
    assert outcome.length_failure_margins() == [0.5]
    assert outcome.grpo_range_margins() == [0.0]
    assert outcome.plateau.loc[1000.0, "mean"] == pytest.approx(1 - 5e-4)
    assert outcome.grpo_reaches_one_margins()[0] > 0 and outcome.stagnation_margins()[0] < 0
    assert [row["rate"] for row in outcome.headline()["largest_working_learning_rate"]][:2] == [1000.0, 100.0]


def test_training_outcome_margins_fail_on_counter_examples():
    # Dr. GRPO that works at every rate and length: no rate is lost with length
    assert tt.training_outcome(_finals(dr_long_1000=1.0)).length_failure_margins()[0] < 0
    # GRPO that stagnates at 0.9: no longer reaches 0.99, and the paper's hypothesis holds
    stagnating = tt.training_outcome(_finals(grpo_tail=0.9))
    assert stagnating.grpo_reaches_one_margins()[0] < 0 and stagnating.stagnation_margins()[0] > 0
    # GRPO whose largest working rate falls from 1000 at T = 4 to 100 at T = 64: one decade lost
    shrinking = _finals()
    finals = shrinking.finals
    finals.loc[(finals.variant == "grpo") & (finals.learning_rate == 1000.0) & (finals["T"] == 64), "final_J"] = 0.0
    finals["collapsed"] = finals.final_J < 0.05
    assert tt.training_outcome(shrinking).grpo_range_margins() == [-1.0]
