"""Tests of rlvr_dynamics.chapters.trajectory_theory: phases and the critical step, and the chapter's
checks, margins, tables and figure panels — each margin shown to fail on a constructed counter-example."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from rlvr_dynamics.chapters import statistics  # noqa: E402
from rlvr_dynamics.chapters import trajectory_theory as theory  # noqa: E402
from rlvr_dynamics.engines import three_response  # noqa: E402
from rlvr_dynamics.engines.three_response import Trajectories  # noqa: E402
from rlvr_dynamics.theory import bounds, gaps  # noqa: E402
from rlvr_dynamics.theory.policies import random_bandits  # noqa: E402

from _helpers import F64, assert_close, measures_memory, peak_rss_bytes, t  # noqa: E402


def test_classify_and_critical_step():
    values = torch.tensor([[0.3, 0.3, 0.3], [0.2, 0.31, 0.5], [0.1, 0.29, 0.7]], dtype=F64)  # (K+1, B)
    assert theory.classify(values).tolist() == ["collapses", "stagnates", "converges"]
    grid = np.array([0.1, 0.2, 0.3, 0.4])
    assert theory.critical_step(grid, np.array([False, True, False, True])) == 0.4
    assert theory.critical_step(grid, np.array([False, False, True, True])) == 0.3
    assert theory.critical_step(grid, np.array([True, True, True, True])) == 0.1
    assert math.isnan(theory.critical_step(grid, np.array([True, False, False, False])))
    assert statistics.loglog_slope(np.array([1.0, 10.0, 100.0]), np.array([2.0, 2e3, 2e6])) == pytest.approx(3.0)


def test_sweep_grid_and_constants():
    grid = theory.sweep_grid(61)
    assert grid[0] == pytest.approx(1e-4) and grid[-1] == pytest.approx(1.0) and grid[30] == pytest.approx(1e-2)
    assert abs(theory.SHARP_CONSTANT - 1.5) < 1e-15  # L_o + G_o²/2 = 1/2 + 2/2
    assert abs(bounds.LEMMA_CONSTANT - 16.5) < 1e-14  # L_o + 8G_o² = 1/2 + 16


def _trajectories(value, alignment, step, log_odds=None, negative_variance=None):
    """Trajectories from values (K + 1, B), alignments and steps (K, B); log-odds from the values."""
    alignment, step = t(alignment), t(step)
    odds = bounds.logit(t(value)) if log_odds is None else t(log_odds)
    value = torch.sigmoid(odds) if value is None else t(value)
    variance = torch.zeros_like(step) if negative_variance is None else t(negative_variance)
    return Trajectories(value, odds, alignment, step, variance, odds.diff(dim=0))


# ----------------------------------------------------------------------------------------------
# Assumption 1
# ----------------------------------------------------------------------------------------------


def test_softmax_constant_ratios_are_at_most_one_and_consume_two_normal_draws():
    generator = torch.Generator().manual_seed(3)
    score, lipschitz = theory.softmax_constant_ratios(generator, n=500)
    assert 0.9 < score <= 1 and 0.5 < lipschitz <= 1
    # the stream is left exactly where two (n, 3) normal draws leave it (the notebook's draw order)
    reference = torch.Generator().manual_seed(3)
    torch.randn(500, 3, generator=reference, dtype=F64)
    torch.randn(500, 3, generator=reference, dtype=F64)
    assert torch.equal(torch.rand(4, generator=generator), torch.rand(4, generator=reference))


def test_bandit_score_ratio_by_hand():
    # θ = 0 with N = 2 arms: π = (½, ½), the score of arm y is x ⊗ (e_y − π), of norm ‖x‖/√2:
    # the ratio to G_o = √2‖x‖ is exactly ½, whatever the context.
    problems = SimpleNamespace(theta=torch.zeros(3, 4, 2, dtype=F64), context=torch.rand(3, 4, dtype=F64) + 0.1)
    assert theory.bandit_score_ratio(problems) == pytest.approx(0.5, abs=1e-15)
    # N arms at θ = 0: ‖e_y − 1/N‖² = (N − 1)/N
    problems = SimpleNamespace(theta=torch.zeros(1, 2, 5, dtype=F64), context=t([[1.0, 2.0]]))
    assert theory.bandit_score_ratio(problems) == pytest.approx(math.sqrt(4 / 5) / math.sqrt(2), abs=1e-15)


def test_assumption1_margins_fail_where_a_ratio_exceeds_one():
    ratios = theory.Assumption1Ratios(0.5, 0.9, 0.75)
    assert ratios.margins() == [0.5, pytest.approx(0.1), 0.25]
    assert ratios.headline() == {"assumption1_ratios": {"score": 0.5, "bandit_score": 0.9, "lipschitz": 0.75}}
    assert "three responses 0.5000, bandits 0.9000" in ratios.summary()
    assert min(theory.Assumption1Ratios(0.5, 1.2, 0.75).margins()) == pytest.approx(-0.2)


# ----------------------------------------------------------------------------------------------
# Lemma 1
# ----------------------------------------------------------------------------------------------


def test_lemma1_case_by_hand_and_on_a_violation():
    # residual (0.1, 0), η² (1, 1e-12), paper bound ½η² and sharp constant 0.2:
    # paper margin min(0.5 − 0.1, 0.5e-12) = 5e-13; sharp margin min(0.1 + 1e-12, 2e-13 + 1e-12) = 1.2e-12;
    # the ratio is taken only at the first entry (0.2 > 1e-9): 0.1 / 0.2 = ½.
    case = theory.lemma1_case("x", t([[0.1, 0.0]]), 0.5 * t([[1.0, 1e-12]]), 0.2, t([[1.0, 1e-12]]))
    assert case.paper_margin == pytest.approx(5e-13, rel=1e-12)
    assert case.sharp_margin == pytest.approx(1.2e-12, rel=1e-12)
    assert case.sharp_ratio == 0.5 and case.steps_checked == 2
    # a residual above the constant times η² breaks the bound
    broken = theory.lemma1_case("x", t([[0.6, 0.0]]), 0.5 * t([[1.0, 1e-12]]), 0.2, t([[1.0, 1e-12]]))
    assert broken.paper_margin == pytest.approx(-0.1) and broken.sharp_margin < 0
    assert broken.sharp_ratio == pytest.approx(3.0)


def test_lemma1_on_the_instance_holds_and_fails_on_a_shifted_log_odds_change():
    grid = theory.sweep_grid(60)[::6]  # 10 steps from 1e-4 to 0.5
    runs = theory.instance_sweep(grid, 0.3, 0.01, 30)
    assert set(runs) == {"gap", "overshoot", "benign"} and runs["gap"].value.shape == (31, len(grid))
    cases = [theory.lemma1_instance_case(rule, r) for rule, r in runs.items()]
    check = theory.Lemma1Check(cases, [])
    assert (check.paper_margins() > 0).all() and min(check.sharp_margins()) > 0
    assert 0 < check.headline()["lemma1_worst_sharp_ratio"] <= 1
    # the log-odds moving by 1 more than Δμη at every step: (16) fails at every step η < 1/4
    shifted = dataclasses.replace(runs["gap"], log_odds_change=runs["gap"].log_odds_change + 1.0)
    assert theory.lemma1_instance_case("gap", shifted).paper_margin < 0


def test_lemma1_bandit_cases_hold_on_a_small_bandit():
    config = dataclasses.replace(theory.TrajectoryConfig(**theory.PRESETS["ci"]), bandit_seeds=1, bandit_steps=20,
                                 bandit_eval_size=10)
    cases = theory.lemma1_bandit_cases(config, seed=0, device="cpu")
    assert [c.label for c in cases] == ["reinforce", "normalized"]
    assert all(c.steps_checked == 20 * 3 * 10 for c in cases)  # K × (1 seed × 3 sizes) × E
    check = theory.Lemma1Check([], cases)
    assert (check.paper_margins() > 0).all() and min(check.sharp_margins()) > 0
    table = check.bandit_table()
    assert table["step sizes"].tolist() == [[0.1, 1.0, 10.0], [0.01, 0.1, 1.0]]
    assert "worst margin of (16)" in check.summary()


def test_lemma1_check_headline_by_hand():
    cases = [theory.Lemma1Case("a", 2e-13, 1e-12, 0.1, 4), theory.Lemma1Case("b", -3e-12, 5e-13, 0.4, 6, [1.0])]
    check = theory.Lemma1Check(cases[:1], cases[1:])
    assert_close(torch.as_tensor(check.paper_margins()), [1.2e-12, -2e-12], rtol=1e-12, atol=0)
    assert check.sharp_margins() == [1e-12, 5e-13]
    assert check.headline() == {"lemma1_worst_margin": -3e-12, "lemma1_worst_sharp_ratio": 0.4}


# ----------------------------------------------------------------------------------------------
# Theorem 1 and Corollary 1
# ----------------------------------------------------------------------------------------------


def test_cumulative_alignment_by_hand():
    # M(0) = 0, M(1) = [1]₊·0.5 = 0.5 and [−1]₊·0.5 = 0, M(2) = 0.5 + 2 = 2.5 and 0 + 3 = 3
    M = theory.cumulative_alignment(t([[1.0, -1.0], [2.0, 3.0]]), t([[0.5, 0.5], [1.0, 1.0]]))
    assert_close(M, [[0.0, 0.0], [0.5, 0.0], [2.5, 3.0]])


def test_convergence_margin_by_hand_and_on_a_violation():
    # J₀ = ½ (f₀ = 0), Δμ = 2, η = 1 then Δμ = 1, η = 1: M(1) = 2, M(2) = 3, so (15b) asks f₁ ≥ 1, f₂ ≥ 3/2.
    # Log-odds (0, 2, 2.5): margins 1 and 1, the first (K = 1) is reported; gains 2/1 and 2.5/1.5.
    runs = _trajectories(None, [[2.0], [1.0]], [[1.0], [1.0]], log_odds=[[0.0], [2.0], [2.5]])
    case = theory.convergence_margin(runs)
    assert case.margin == pytest.approx(1.0) and case.step == 1 and case.gain_ratio == pytest.approx(2.5 / 1.5)
    # the K = 0 equality (margin 0) is not counted: the margin is 1.5 − 1 at K = 1
    assert theory.convergence_margin(_trajectories(None, [[2.0]], [[1.0]], log_odds=[[0.0], [1.5]])).margin == 0.5
    # J₁ = 0.7 < sigmoid(1) = 0.7311: (15b) fails, by log-odds logit(0.7) − 1 < 0, at K = 1
    broken = theory.convergence_margin(_trajectories([[0.5], [0.7]], [[2.0]], [[1.0]]))
    assert broken.margin == pytest.approx(math.log(0.7 / 0.3) - 1) and broken.margin < 0 and broken.gain_ratio < 1
    # the smallest margin at the second step of the second run
    two = _trajectories(None, [[2.0, 2.0], [2.0, 2.0]], [[1.0, 1.0], [1.0, 1.0]], log_odds=[[0, 0], [3, 3], [5, 2.5]])
    assert theory.convergence_margin(two).margin == pytest.approx(0.5) and theory.convergence_margin(two).step == 2


def test_stagnation_margin_by_hand_and_on_a_violation():
    # J₀ = ½, Δμ = 1, η = ½: C₀ = ½, C₀′ = 16.5/4 = 4.125, cap = sigmoid(4.625)
    cap = 1 / (1 + math.exp(-4.625))
    assert theory.stagnation_margin(_trajectories([[0.5], [0.6]], [[1.0]], [[0.5]])) == pytest.approx(cap - 0.6)
    assert theory.stagnation_margin(_trajectories([[0.5], [0.999]], [[1.0]], [[0.5]])) == pytest.approx(cap - 0.999)
    assert cap - 0.999 < 0


def test_theorem1_check_holds_on_the_instance():
    starts = theory.theorem1_starts()
    assert_close(starts, np.linspace(0.05, 0.95, 7), rtol=0, atol=1e-15)
    check = theory.theorem1_check(starts[::3], 40, 0.01, stagnation_steps=40)
    assert (check.convergence_margins() > 0).all() and (check.stagnation_margins() > 0).all()
    assert check.table()["rule"].tolist() == ["gap", "overshoot", "benign"]
    assert set(check.headline()) == {"theorem1b_worst_margin", "theorem1b_worst_rule", "theorem1b_worst_step",
                                     "theorem1b_min_gain_ratio", "theorem1a_worst_margin"}
    # the (15a) step is small: the first step is the tightest and the gain is close to the full M(K)
    assert check.headline()["theorem1b_worst_step"] == 1 and 1.9 < check.headline()["theorem1b_min_gain_ratio"] < 2
    assert "smallest margin f_K − f0 − M(K)/2" in check.summary()
    # (15a) keeps every step far below 1/(2√L_o)
    assert (check.table()["max η_k · 2√L_o"] < 1).all()


def test_theorem1_row_by_hand():
    row = theory.theorem1_row("gap", _trajectories([[0.5, 0.5], [0.61234, 0.7]], [[1.0, 1.0]], [[0.25, 0.5]]))
    assert row["final J (J0 = 0.05 … 0.95)"] == [0.612, 0.7]
    assert row["max η_k · 2√L_o"] == pytest.approx(0.5 * 2 * math.sqrt(0.5))


def test_corollary1_run_holds_and_its_margins_fail_for_an_overstated_gap():
    run = theory.corollary1_run(theory.theorem1_starts()[::2], 200)
    assert run.step == pytest.approx(math.sqrt(1.5) / 33)  # Δμ/(2(L_o + 8G_o²)) < 1/(2√L_o)
    assert run.steps == 200 and run.log_bound.shape == (201, 4)
    assert min(run.bound_margins()) > 0 and (run.rate_margins() > 0).all()
    assert run.headline()["corollary1_bound_slope"] == pytest.approx(-0.5 * math.sqrt(1.5) * run.step)
    assert (run.rate_ratios > 1).all() and run.headline()["corollary1_min_rate_ratio"] == run.rate_ratios.min()
    # the same runs against a gap three times larger: the bound and the rate both fail
    overstated = dataclasses.replace(run, alignment=3 * run.alignment)
    assert min(overstated.bound_margins()) < 0 and (overstated.rate_margins() < 0).all()


def test_corollary1_slopes_by_hand():
    # log-odds 50 + k: log(1 − J_k) = −softplus(50 + k) = −(50 + k) to 1e-22, a slope of −1
    odds = [[50.0 + k] for k in range(5)]
    runs = _trajectories(torch.sigmoid(t(odds)).tolist(), [[1.0]] * 4, [[0.1]] * 4, log_odds=odds)
    run = theory.Corollary1Run(1.0, 0.1, runs)
    assert run.slopes.tolist() == [-1.0] and run.bound_slope == -0.05
    assert run.rate_margins().tolist() == pytest.approx([0.95])
    assert run.rate_ratios.tolist() == pytest.approx([20.0])  # −1 / −0.05


# ----------------------------------------------------------------------------------------------
# The second-order expansion (17)
# ----------------------------------------------------------------------------------------------


def test_expansion_residuals_by_hand():
    # Δμ = 2, Var⁺ = 1, Var⁻ = 3 and a change that is exactly Δμη + ½(Var⁺ − Var⁻)η² = 2η − η²:
    # the ½ version leaves 0, the printed version leaves |−η² + 2η²| = η².
    etas = np.array([0.5, 1.0])
    change = t([[0.75], [1.0]])
    half, paper = theory.expansion_residuals(change, t([2.0]), t([1.0]), t([3.0]), etas)
    assert_close(half, [[0.0], [0.0]])
    assert_close(paper, [[0.25], [1.0]])


def test_expansion_states_and_draw_order():
    generator = torch.Generator().manual_seed(1)
    states = theory.expansion_states(5, generator)
    assert states.shape == (5, 3)
    reference = torch.Generator().manual_seed(1)
    values = torch.rand(5, generator=reference, dtype=F64) * 0.8 + 0.1
    wrong = t([0.0, 0.3]) + torch.randn(5, 2, generator=reference, dtype=F64)
    assert_close(states[:, 1:], wrong)
    # J₀ is set before the wrong logits move: the logits give J₀ at wrong logits (0, 0.3)
    assert_close(torch.sigmoid(states[:, 0] - torch.logsumexp(t([0.0, 0.3]), 0)), values)


def test_expansion_study_on_both_families_and_on_counter_examples():
    etas = theory.expansion_steps()
    generator = torch.Generator().manual_seed(2)
    states = theory.expansion_states(6, generator)
    parts = [theory.instance_expansion(states, rule, 0.05, etas) for rule in ("gap", "overshoot", "benign")]
    theta = torch.randn(4, 3, 6, generator=generator, dtype=F64)
    reward = torch.zeros(4, 6, dtype=F64)
    reward[:, :2] = 1  # two correct arms: Var⁺ ≠ 0
    problems = SimpleNamespace(theta=theta, context=torch.rand(4, 3, generator=generator, dtype=F64), reward=reward)
    parts.append(theory.bandit_expansion(problems, etas, generator))
    study = theory.ExpansionStudy.from_parts(etas, parts)
    assert study.residual_half.shape == (9, 3 * 6 + 4)
    assert min(study.cubic_margins()) > 0 and min(study.paper_margins()) > 0
    assert len(study.per_state_slopes) > 0 and (study.per_state_margins() > 0).all()
    assert "median residual slope" in study.summary()
    # residuals shrinking like η² with the ½ and like η³ without it: all three claims fail
    e = torch.tensor(etas)[:, None]
    swapped = theory.ExpansionStudy(etas, e**2 * t([[1.0, 2.0]]), e**3 * t([[1.0, 2.0]]))
    assert min(swapped.cubic_margins()) < 0 and (swapped.per_state_margins() < 0).all()
    assert min(swapped.paper_margins()) < 0
    assert swapped.headline() == {"expansion_slope_half": pytest.approx(2.0),
                                  "expansion_slope_paper": pytest.approx(3.0)}


# ----------------------------------------------------------------------------------------------
# The Hessian terms: log-linear against non-linear logits
# ----------------------------------------------------------------------------------------------


def _phi(policy, theta, w, reward, t_value):
    """f(θ + t w) for the log-odds of ``policy`` (n, R) at the states theta (n, D). (n,)"""
    return gaps.log_odds(policy(theta + t_value * w), reward.expand(len(theta), -1))


def test_second_order_terms_on_the_softmax_by_hand():
    # log π = log_softmax(θ): s(o) = w_o − π·w and h(o) = −Var_π[w] for every o, so H⁺ = H⁻ = −Var_π[w];
    # one correct response: Var⁺ = 0, Δμ = w_a − E_{π⁻}[w] and Var⁻ = Var_{π⁻}[w] (the engine's).
    theta = t([[0.3, -0.2, 0.5], [1.0, 0.0, -1.0]])
    w = t([[0.6, -0.8, 0.0], [0.0, 0.6, 0.8]])
    reward = t([1.0, 0.0, 0.0])
    terms = theory.second_order_terms(theory.log_softmax_policy, theta, w, reward)
    pi = torch.softmax(theta, -1)
    variance = (pi * w**2).sum(-1) - (pi * w).sum(-1) ** 2
    assert_close(terms.hessian_plus, -variance)
    assert_close(terms.hessian_minus, -variance)
    assert_close(terms.hessian_difference, [0.0, 0.0], atol=1e-15)
    wrong = torch.softmax(theta[:, 1:], -1)
    assert_close(terms.alignment, w[:, 0] - (wrong * w[:, 1:]).sum(-1))
    assert_close(terms.var_plus, [0.0, 0.0])
    assert_close(terms.var_minus, three_response.negative_variance(theta, w))
    assert_close(terms.curvature, -terms.var_minus, atol=1e-15)


def test_second_order_terms_match_finite_differences_on_the_two_layer_family():
    generator = torch.Generator().manual_seed(4)
    policies = theory.random_two_layer(5, generator)
    w = theory.positive_unit_direction(torch.randn(5, 3, generator=generator, dtype=F64), generator)
    terms = theory.second_order_terms(policies.log_policy, policies.theta, w, policies.reward)
    h = 1e-4
    plus, zero, minus = (_phi(policies.log_policy, policies.theta, w, policies.reward, s) for s in (h, 0.0, -h))
    assert_close(terms.alignment, (plus - minus) / (2 * h), rtol=1e-7, atol=1e-9)
    assert_close(terms.curvature, (plus - 2 * zero + minus) / h**2, rtol=1e-5, atol=1e-5)
    # the Hessian terms do not cancel on a non-linear map
    assert (terms.hessian_difference.abs() > 1e-3).all()
    # the per-response log-probability: log_softmax(B tanh(Aθ)) by hand for the first policy
    hidden = torch.tanh(policies.first[0] @ policies.theta[0])
    assert_close(policies.log_policy(policies.theta)[0], torch.log_softmax(policies.second[0] @ hidden, -1))


def test_random_two_layer_draw_order_and_reward():
    generator = torch.Generator().manual_seed(6)
    policies = theory.random_two_layer(3, generator)
    reference = torch.Generator().manual_seed(6)
    assert torch.equal(policies.first, torch.randn(3, 4, 3, generator=reference, dtype=F64))
    assert torch.equal(policies.second, torch.randn(3, 5, 4, generator=reference, dtype=F64))
    assert torch.equal(policies.theta, torch.randn(3, 3, generator=reference, dtype=F64))
    assert policies.reward.tolist() == [[1.0, 1.0, 0.0, 0.0, 0.0]] * 3


def test_positive_unit_direction():
    gap = t([[1.0, 0.0], [0.0, -1.0], [1.0, 1.0]])
    w = theory.positive_unit_direction(gap, torch.Generator().manual_seed(0))
    assert_close(torch.linalg.vector_norm(w, dim=-1), [1.0, 1.0, 1.0])
    assert ((w * gap).sum(-1) >= 0).all()


def test_loglinear_hessian_differences_vanish_and_the_check_fails_on_non_linear_logits():
    generator = torch.Generator().manual_seed(5)
    states = theory.expansion_states(4, generator)
    problems = random_bandits(3, 4, 6, 1.0, generator)
    differences = theory.loglinear_hessian_differences(states, 0.05, problems)
    assert differences.shape == (4,) and (differences < 1e-14).all()
    assert (theory.FLOAT_SLACK - differences > 0).all()  # the chapter's margins
    # the same margin on the two-layer family: negative
    policies = theory.random_two_layer(4, generator)
    w = theory.positive_unit_direction(torch.randn(4, 3, generator=generator, dtype=F64), generator)
    nonlinear = theory.second_order_terms(policies.log_policy, policies.theta, w, policies.reward)
    assert theory.FLOAT_SLACK - nonlinear.hessian_difference.abs().max().item() < 0


def test_nonlinear_expansion_slopes_and_counter_examples():
    generator = torch.Generator().manual_seed(7)
    etas = theory.expansion_steps()
    study = theory.nonlinear_expansion(theory.random_two_layer(12, generator), etas, generator)
    assert study.residual_variance.shape == (9, 12) and study.residual_full.shape == (9, 12)
    assert min(study.quadratic_margins()) > 0 and min(study.cubic_margins()) > 0
    # the residual of the ½(Var⁺ − Var⁻) form is ½|H⁺ − H⁻|η² to leading order
    assert_close(study.residual_variance[0], 0.5 * study.terms.hessian_difference.abs() * etas[0] ** 2, rtol=0.05,
                 atol=1e-9)
    headline = study.headline()
    assert headline["nonlinear_median_hessian_over_variance"] == pytest.approx(float(np.median(study.hessian_ratio)))
    assert "two-layer logits" in study.summary()
    # residuals of a log-linear family (η³ without the Hessian term) and a wrong Hessian term (η²): both fail
    e = torch.tensor(etas)[:, None]
    swapped = theory.NonlinearExpansion(etas, e**3 * t([[1.0, 2.0]]), e**2 * t([[1.0, 2.0]]), study.terms)
    assert min(swapped.quadratic_margins()) < 0 and min(swapped.cubic_margins()) < 0


# ----------------------------------------------------------------------------------------------
# The critical step against its second-order prediction
# ----------------------------------------------------------------------------------------------


def test_second_order_critical_and_its_third_order_coefficient():
    logits, alignment = theory.critical_instances(3, 0.01, torch.Generator().manual_seed(0))
    predicted, third = theory.second_order_critical(logits, alignment)
    w = three_response.direction(logits, "overshoot", alignment)
    assert_close(predicted, 2 * alignment / three_response.negative_variance(logits, w))
    # two wrong responses: κ₃/κ₂ = (1 − 2π⁻_b)(w_b − w_c)
    share = torch.softmax(logits[:, 1:], -1)[:, 0]
    assert_close(third, -(1 - 2 * share) * (w[:, 1] - w[:, 2]) / 3)
    assert (third.abs() <= math.sqrt(2) / 3).all()
    # the exact root of the first step's log-odds change, by bisection, is η₀(1 + c₃η₀) up to O(η₀³)
    low, high = predicted / 2, predicted * 2
    for _ in range(60):
        middle = (low + high) / 2
        falls = three_response.log_odds(logits + middle[:, None] * w) < three_response.log_odds(logits)
        low, high = torch.where(falls, low, middle), torch.where(falls, middle, high)
    assert ((high / predicted - 1 - third * predicted).abs() < 2 * predicted**2).all()


def test_critical_instances_draw_order_and_ranges():
    generator = torch.Generator().manual_seed(2)
    logits, alignment = theory.critical_instances(50, 0.01, generator)
    assert logits.shape == (51, 3) and alignment.shape == (51,)
    assert logits[0].tolist() == pytest.approx([0.0, 0.0, 0.3]) and alignment[0] == 0.01  # the chapter's instance
    reference = torch.Generator().manual_seed(2)
    assert_close(logits[1:, 2], 4 * torch.rand(50, generator=reference, dtype=F64) - 2)
    assert (logits[1:, :2] == 0).all()
    assert (alignment[1:] >= 1e-3).all() and (alignment[1:] <= math.sqrt(2.5) / 120).all()


def test_critical_step_check_on_instances_and_on_counter_examples():
    logits, alignment = theory.critical_instances(4, 0.01, torch.Generator().manual_seed(1))
    check = theory.critical_step_check(logits, alignment, 60, points=31)
    assert check.measured.shape == (5,) and check.resolution == pytest.approx(1.5 / 30)
    assert (check.margins() > 0).all()
    # the chapter's instance: η₀ = 0.04115, measured a little below
    assert check.predicted[0] == pytest.approx(0.04115, abs=1e-5)
    assert abs(check.measured[0] / check.predicted[0] - 1) < 0.01
    assert "chapter's instance" in check.summary() and check.headline()["critical_max_coefficient"] < 0.5

    def made(measured):
        return theory.CriticalStepCheck(np.array([0.01, 0.01, 0.01]), np.array([0.1, 0.1, 0.1]), np.zeros(3),
                                        np.full(3, 0.5), np.array(measured), 0.05, 10)

    # η* = η₀(1 + cη₀): c = 0.3 holds (margin 0.2), c = −0.6 fails (−0.1), no collapse in the grid fails (−1)
    assert made([0.103, 0.094, math.nan]).margins().tolist() == pytest.approx([0.2, -0.1, -1.0])
    # a wrong prediction: the instance's η* measured against twice its η₀ fails
    doubled = dataclasses.replace(check, predicted=2 * check.predicted)
    assert (doubled.margins() < 0).all()


# ----------------------------------------------------------------------------------------------
# Theorem 2, the threshold sweep and the phase diagrams
# ----------------------------------------------------------------------------------------------


def test_theorem2_run_holds_and_fails_for_a_rising_value():
    run = theory.theorem2_run(0.01, 0.3, 60)
    low, high = run.window
    assert low == pytest.approx(60 * 0.01 / 2.5) and high == pytest.approx(1 / (2 * math.sqrt(2.5)))
    assert run.step_sizes.tolist() == pytest.approx([low, (low + high) / 2, high])
    assert (run.alignment_margins() > 0).all() and (run.decrease_margins() > 0).all()
    assert (run.collapse_margins() > 0).all()
    assert "J strictly decreasing" in run.summary()
    # J rising from ½ to ⅔ to ¾: the value increases and the log-odds rise
    rising = theory.Theorem2Run(0.01, run.window, np.array([0.3]),
                                _trajectories([[0.5], [2 / 3], [0.75]], [[0.02], [0.005]], [[0.3], [0.3]]))
    assert rising.decrease_margins().tolist() == pytest.approx([-1 / 6])  # min(½ − ⅔, ⅔ − ¾)
    assert rising.collapse_margins().tolist() == pytest.approx([-(math.log(3) - math.log(2))])
    assert rising.alignment_margins().tolist() == pytest.approx([-0.005 + 1e-12])


def _threshold(collapsed, critical, safe=1.5, window=(5.0, 6.0), gap_final=(0.4, 0.5, 0.6, 0.7)):
    grid = np.array([1.0, 2.0, 3.0, 4.0])
    return theory.ThresholdSweep(grid, grid, np.array(gap_final), np.array(collapsed), critical, 0.5, safe,
                                 np.array([1.0, 3.0]), window, 0.3, 10)


def test_threshold_margins_by_hand_and_on_violations():
    sweep = _threshold([False, False, True, True], 3.0)
    assert sweep.window_margins() == [2.0]
    assert sweep.gap_margins().tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])  # J_K − J₀ = 0.3
    assert sweep.headline() == {"critical_step": 3.0, "critical_over_scale": 6.0, "safe_step": 1.5,
                                "predicted_critical_second_order": 2.0, "window_over_critical": 5 / 3,
                                "gap_min_gain": pytest.approx(0.1)}
    assert _threshold([False, False, True, True], 3.0, window=(2.0, 6.0)).window_margins() == [-1.0]
    # the gap direction losing at one step: its margin is negative there
    lost = _threshold([False, False, True, True], 3.0, gap_final=(0.4, 0.25, 0.6, 0.7))
    assert lost.gap_margins().min() == pytest.approx(-0.05)


def test_threshold_sweep_on_the_instance():
    grid = theory.sweep_grid(60)[::4]
    sweep = theory.threshold_sweep(grid, theory.instance_sweep(grid, 0.3, 0.01, 100), 0.01, 0.3)
    assert sweep.steps == 100 and sweep.scale == pytest.approx(0.01 / 2.5) and sweep.safe == pytest.approx(0.01 / 33)
    assert min(sweep.window_margins()) > 0
    assert (sweep.gap_margins() > 0).all()  # the gap direction never loses
    # every step from η* up collapses, none at or below the safe step does
    assert sweep.collapsed[sweep.grid >= sweep.critical].all() and not sweep.collapsed[sweep.grid <= sweep.safe].any()


def test_bandit_sweep_by_hand():
    # 2 step sizes × 2 seeds (seed-major), 2 evaluation contexts, recorded at steps 0 and 7
    value = t([[[0.1, 0.1], [0.1, 0.1], [0.2, 0.2], [0.2, 0.2]],
               [[0.1, 0.1], [0.4, 0.6], [0.3, 0.3], [0.6, 0.8]]])  # (S, B, E)
    runs = SimpleNamespace(value=value, recorded_steps=torch.tensor([0, 7]))
    sweep = theory.bandit_sweep(runs, np.array([0.1, 0.2]), [0, 1, 1, 2])
    assert sweep.frame["η"].tolist() == [0.1, 0.2, 0.1, 0.2] and sweep.frame["seed"].tolist() == [0, 0, 1, 1]
    assert sweep.steps == 7
    headline = sweep.headline()
    assert headline["bandit_sweep_mean_final_J"] == pytest.approx({0.1: 0.2, 0.2: 0.6})
    assert headline["bandit_sweep_learned_arms"] == {0.1: 0.5, 0.2: 1.5}
    assert "best mean final J 0.600 at η = 0.2" in sweep.summary()
    # mean J₀ 0.1, 0.1, 0.2, 0.2 and final 0.1, 0.5, 0.3, 0.7 per run: no run loses; by step: 0.2 then 0.6
    assert sweep.no_collapse_margins().tolist() == pytest.approx([0.0, 0.4, 0.1, 0.5])
    assert headline["bandit_best_step"] == 0.2 and headline["bandit_best_final"] == pytest.approx(0.6)
    assert headline["bandit_smallest_step_final"] == pytest.approx(0.2)
    assert headline["bandit_largest_step_final"] == pytest.approx(0.6)
    assert headline["bandit_mean_initial"] == pytest.approx(0.15) and headline["bandit_largest_drop"] == 0.0
    assert headline["bandit_runs_not_losing"] == 4 and headline["bandit_runs"] == 4
    assert headline["bandit_learned_arms_largest_step"] == 1.5
    # a run that ends below its start: its margin is negative and it is not counted
    lower = theory.bandit_sweep(SimpleNamespace(value=t([[[0.3, 0.3]], [[0.2, 0.1]]]), recorded_steps=torch.tensor(
        [0, 5])), np.array([0.1]), [0])
    assert lower.no_collapse_margins().tolist() == pytest.approx([-0.15])
    assert lower.headline()["bandit_runs_not_losing"] == 0


def test_phase_diagram_margins_by_hand_and_on_a_violation():
    # cells η ≤ Δμ/33: only (Δμ = 1, η = 1e-3)
    grid, alignments = np.array([1e-3, 1.0]), np.array([1e-3, 1.0])
    phase = np.array([["collapses", "collapses"], ["converges", "collapses"]])
    phases = theory.PhaseDiagrams(grid, np.array([0.3, 0.6]), alignments, phase, phase, 0.01, 10)
    assert phases.safe_margins() == [0.0]
    assert phases.shares() == {"collapses": 0.75, "converges": 0.25}
    broken = dataclasses.replace(phases, phase_alignment=np.full((2, 2), "collapses"))
    assert broken.safe_margins() == [-1.0]


def test_phase_diagrams_run_on_small_grids():
    config = dataclasses.replace(theory.TrajectoryConfig(**theory.PRESETS["ci"]), steps=30, phase_points=3)
    grid = theory.sweep_grid(60)[::15]
    phases = theory.phase_diagrams(grid, config)
    assert phases.phase_value.shape == (3, len(grid)) and phases.phase_alignment.shape == (3, len(grid))
    assert set(np.unique(phases.phase_alignment)) <= set(theory.PHASES)
    assert phases.safe_margins() == [0.0]


def test_figure_panels_draw():
    etas = theory.expansion_steps()
    e = torch.tensor(etas)[:, None]
    fig, axes = plt.subplots(1, 4)
    theory.draw_expansion(axes[0], theory.ExpansionStudy(etas, e**3, e**2))
    assert len(axes[0].get_lines()) == 3 and "slope 3.00" in axes[0].get_legend().get_texts()[0].get_text()
    terms = theory.SecondOrderTerms(*(t([1.0]) for _ in range(5)))
    theory.draw_nonlinear_expansion(axes[3], theory.NonlinearExpansion(etas, e**2, e**3, terms))
    assert len(axes[3].get_lines()) == 4 and "slope 2.00" in axes[3].get_legend().get_texts()[0].get_text()
    run = theory.theorem2_run(0.01, 0.3, 20)
    fig2, axes2 = plt.subplots(1, 3)
    theory.draw_theorem2_traces(axes2, run)
    assert [len(ax.get_lines()) for ax in axes2] == [4, 3, 3]
    theory.draw_instance_sweep(axes[1], _threshold([False, False, True, True], 3.0))
    assert axes[1].get_xscale() == "log" and axes[1].get_ylabel() == "$J$ after 10 steps"
    frame = pd.DataFrame({"η": [0.1, 0.2], "seed": [0, 0], "mean final J": [0.1, 0.2], "mean J0": [0.01, 0.01],
                          "learned arms": [0, 1]})
    theory.draw_bandit_sweep(axes[2], theory.BanditSweep(frame, 5))
    assert axes[2].get_ylabel() == "$J$ after 5 steps"
    fig3, axes3 = plt.subplots(1, 2)
    phase = np.array([["collapses", "converges"], ["stagnates", "collapses"]])
    theory.draw_phase_diagrams(axes3, theory.PhaseDiagrams(np.array([1e-3, 1.0]), np.array([0.3, 0.6]),
                                                           np.array([1e-3, 1.0]), phase, phase, 0.01, 10), 0.5)
    assert axes3[0].get_title() == "Phase after 10 steps (Δμ = 0.01)"
    for figure in (fig, fig2, fig3):
        plt.close(figure)


# ----------------------------------------------------------------------------------------------
# The memory estimate of the book's pre-flight check
# ----------------------------------------------------------------------------------------------


def _config(**changes) -> theory.TrajectoryConfig:
    return theory.TrajectoryConfig(**{**theory.PRESETS["ci"], **changes})


def test_estimated_peak_bytes_grows_with_the_dominant_sizes():
    # Phase-diagram-bound (2000 steps × 20 initial values × 100 step sizes, two runs of six (K, B) records):
    # twice the initial values, about twice the memory (the sweep's kept runs do not grow).
    phases = _config(steps=2000, phase_points=20, sweep_points=100).estimated_peak_bytes()
    assert 1.9 < _config(steps=2000, phase_points=40, sweep_points=100).estimated_peak_bytes() / phases < 2
    # Expansion-bound (dense bandit scores (n, 100, 1000)): twice the states, twice the memory.
    expansion = _config(expansion_states=1000).estimated_peak_bytes()
    assert _config(expansion_states=2000).estimated_peak_bytes() / expansion == pytest.approx(2, rel=0.01)
    # Every size at its largest: the phase diagrams' 4·10⁵ runs of 10⁵ steps, ≈ 8 TB.
    assert _config(steps=100_000, sweep_points=2_000, phase_points=200).estimated_peak_bytes() > 7e12


@pytest.mark.parametrize("preset", ["ci", "paper"])
def test_presets_estimate_well_under_the_ci_machine(preset):
    assert _config(**theory.PRESETS[preset]).estimated_peak_bytes() < 4 * 2**30


MEMORY_SETUP = """
import torch
from rlvr_dynamics.chapters import trajectory_theory
from rlvr_dynamics.theory.policies import random_bandits
def core(bandits, **changes):
    config = trajectory_theory.TrajectoryConfig(**{**trajectory_theory.PRESETS["ci"], **changes})
    generator = torch.Generator().manual_seed(0)
    trajectory_theory.bandit_score_ratio(random_bandits(bandits, 10, 100, 3.0, generator))
    trajectory_theory.phase_diagrams(trajectory_theory.sweep_grid(config.sweep_points), config)
core(2, steps=10)
"""


@measures_memory
def test_estimated_peak_bytes_is_within_three_times_a_measured_run():
    # The ci preset's largest checks: Assumption 1 on 500 random bandits (dense scores, ≈ 0.4 GB, the
    # chapter's floor) and the phase diagrams.
    measured = peak_rss_bytes(MEMORY_SETUP, "core(500)")
    assert 1 / 3 < measured / _config().estimated_peak_bytes() < 3
