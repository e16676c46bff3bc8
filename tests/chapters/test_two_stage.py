"""Tests of rlvr_dynamics.chapters.two_stage: the switch and takeover times, the presets, and the
chapter's studies, tables, margins and figure panels — each margin shown to fail on a constructed
counter-example."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from rlvr_dynamics.chapters import statistics
from rlvr_dynamics.chapters import two_stage as ts
from rlvr_dynamics.theory import logit_dynamics

from _helpers import measures_memory, peak_rss_bytes, t

F64 = torch.float64


def _trajectories(class_mass, steps=None, **fields) -> ts.Trajectories:
    """Trajectories from class masses (S, B, 3); every other recorded field defaults to zeros (S, B)."""
    class_mass = t(class_mass)
    records, runs = class_mass.shape[:2]
    zeros = torch.zeros(records, runs, dtype=F64)
    values = {name: t(fields[name]) if name in fields else zeros.clone()
              for name in ("entropy", "value", "log_odds", "signed_cumulative_alignment", "cumulative_gap",
                           "moving_steps", "misaligned_steps")}
    steps = torch.arange(records) if steps is None else torch.tensor(steps)
    return ts.Trajectories(recorded_steps=steps, class_mass=class_mass, final_logits=torch.zeros(runs, 3, dtype=F64),
                           **values)


def _masses(optimal, high):
    """(S, B, 3) class masses from per-run columns of π_O and π_H (lists over runs of lists over steps)."""
    o, h = np.array(optimal, dtype=float).T, np.array(high, dtype=float).T  # (S, B)
    return np.stack([o, h, 1 - o - h], axis=-1).tolist()


def _small_config(**overrides) -> ts.TwoStageConfig:
    values = dict(ts.PRESETS["ci"], steps=40, seeds=3, record_every=10, initial_optimal_grid="0.02,0.05",
                  high_reward_grid="0.3,0.5", group_size_grid="2,4")
    return ts.TwoStageConfig(**dict(values, **overrides))


def test_the_prose_constants_are_the_codes():
    assert ts.SETUP_NUMBERS == {"10%": ts.SWITCH_DROP, "95%": ts.LM_INTERVAL_LEVEL}
    # a 10% drop below the running peak counts, a 9% drop does not
    steps = torch.arange(3)
    assert ts.switch_steps(torch.tensor([[0.5], [1.0], [0.9]], dtype=F64), steps).tolist() == [1.0]
    assert np.isnan(ts.switch_steps(torch.tensor([[0.5], [1.0], [0.91]], dtype=F64), steps)).all()


def test_switch_and_takeover_detection():
    steps = torch.arange(6)
    high = torch.tensor([[0.4, 0.4], [0.6, 0.5], [0.8, 0.6], [0.7, 0.7], [0.5, 0.8], [0.3, 0.9]], dtype=F64)
    assert np.array_equal(ts.switch_steps(high, steps), [2.0, np.nan], equal_nan=True)
    optimal = torch.tensor([[0.1, 0.1], [0.2, 0.1], [0.6, 0.2], [0.9, 0.3], [0.9, 0.3], [0.9, 0.4]], dtype=F64)
    assert np.array_equal(ts.takeover_steps(optimal, steps), [2.0, np.nan], equal_nan=True)


@pytest.mark.parametrize("preset", ["ci", "paper"])
def test_presets_set_every_field_and_pass_their_checks(preset):
    names = {f.name for f in dataclasses.fields(ts.TwoStageConfig)}
    assert set(ts.PRESETS[preset]) == names
    config = ts.TwoStageConfig(**ts.PRESETS[preset])
    config.check()
    lm = config.lm_config(preset)
    assert [c.advantage_filter for c in lm.run_configs()] == ["all", "negative"]


# ----------------------------------------------------------------------------------------------
# Lemma 1 and Theorem 1
# ----------------------------------------------------------------------------------------------


def test_lemma1_study_holds_and_is_seeded():
    first = ts.lemma1_study(5, 0.3, torch.Generator().manual_seed(0), cases=256)
    again = ts.lemma1_study(5, 0.3, torch.Generator().manual_seed(0), cases=256)
    assert first == again
    assert min(first.exactness_margins()) > 0 and min(first.first_order_margins()) > 0
    assert min(first.bidirectional_margins()) > 0  # Δz_a·A = ηA²(1 − π_a) > 0
    assert "over 256 cases" in first.summary() and "η = 0.1, 0.05, 0.025" in first.summary()


def test_lemma1_study_fails_on_a_wrong_update(monkeypatch):
    # Forgetting the −π_v term (moving only the sampled logit) breaks (TS1) and the Remark's proportionality.
    def sampled_logit_only(logits, action, advantage, step_size):
        one_hot = torch.nn.functional.one_hot(action, logits.shape[-1]).to(logits.dtype)
        return step_size * advantage.unsqueeze(-1) * one_hot

    monkeypatch.setattr(logit_dynamics, "logit_update", sampled_logit_only)
    study = ts.lemma1_study(5, 0.3, torch.Generator().manual_seed(0), cases=256)
    assert min(study.exactness_margins()) < 0 and min(study.bidirectional_margins()) < 0


def test_lemma1_margins_by_hand():
    study = ts.Lemma1Study(4, 1e-16, [1 / 128, 1 / 512, 1 / 2048], 0.1, 1e-12)
    assert study.ratios == [4.0, 4.0] and study.first_order_margins() == [0.5, 0.5]
    assert study.exactness_margins() == [1e-12 - 1e-16]
    assert study.bidirectional_margins() == [0.1, 1e-9 - 1e-12]
    assert "ratios [4. 4.]" in study.summary()
    # an error that only halves with η is first order, not second; a wrong step; a logit moving against A
    assert dataclasses.replace(study, first_order_errors=[1 / 256, 1 / 512, 1 / 1024]).first_order_margins() == [
        -1.5, -1.5]
    assert dataclasses.replace(study, error=1e-10).exactness_margins()[0] < 0
    broken = dataclasses.replace(study, sign_margin=-0.01, ratio_spread=1e-6).bidirectional_margins()
    assert broken[0] < 0 and broken[1] < 0


@pytest.fixture
def bandit():
    return ts.SoftmaxBandit(5, 2, t([[1.0, 0.6, 0.1]]))


def test_theorem1_study_holds_on_a_small_bandit(bandit):
    study = ts.theorem1_study(bandit, 4, 4000, torch.Generator().manual_seed(1))
    assert len(study.table) == 36 and len(study.z_scores) == 36 and len(study.closed_form_errors) == 6
    assert min(study.z_margins()) > 0 and min(study.closed_form_margins()) > 0
    assert study.headline() == {"theorem1_max_abs_z": max(study.z_scores)}
    assert "36 (model, scaling, filter, state) cells × 5 logits, 4,000 groups each" in study.summary()


def test_theorem1_study_detects_a_wrong_expectation(bandit, monkeypatch):
    # An expected update off by a factor 2, and a Dr. GRPO closed form without its (1 − 1/G).
    exact = ts.expected_logit_update
    monkeypatch.setattr(ts, "expected_logit_update", lambda *args: 2 * exact(*args))
    closed = ts.dr_grpo_expected_update
    monkeypatch.setattr(ts, "dr_grpo_expected_update", lambda z, b, g, eta: closed(z, b, g, eta) * g / (g - 1))
    study = ts.theorem1_study(bandit, 4, 4000, torch.Generator().manual_seed(1))
    assert min(study.z_margins()) < 0 and min(study.closed_form_margins()) < 0


def test_theorem1_margins_by_hand():
    study = ts.Theorem1Study(pd.DataFrame(), [1.0, 2.5], [1e-16, 3e-16], 5, 10)
    assert study.z_margins() == [4.0, 2.5] and study.headline() == {"theorem1_max_abs_z": 2.5}
    assert min(dataclasses.replace(study, z_scores=[1.0, 6.0]).z_margins()) == -1.0
    assert min(dataclasses.replace(study, closed_form_errors=[1e-9]).closed_form_margins()) < 0


# ----------------------------------------------------------------------------------------------
# Figure 1: times, mass frames, panels
# ----------------------------------------------------------------------------------------------

# Two settings × two runs, steps 0 … 3. Setting 0: run 0 peaks in π_H at step 1 (switch 1) and takes over at
# step 3; run 1 never drops nor takes over (censored). Setting 1: switches 1 and 2, takeovers 1 and 3.
OPTIMAL = [[0.1, 0.1, 0.4, 0.6], [0.1, 0.2, 0.25, 0.25], [0.1, 0.5, 0.6, 0.7], [0.1, 0.2, 0.3, 0.5]]
HIGH = [[0.4, 0.8, 0.5, 0.3], [0.4, 0.5, 0.6, 0.7], [0.4, 0.45, 0.3, 0.2], [0.4, 0.5, 0.6, 0.5]]


def test_times_table_by_hand():
    trajectories = _trajectories(_masses(OPTIMAL, HIGH))
    table, switch, takeover = ts.times_table(trajectories, [dict(name="a"), dict(name="b")], 2)
    assert np.array_equal(switch, [1.0, np.nan, 1.0, 2.0], equal_nan=True)
    assert np.array_equal(takeover, [3.0, np.nan, 1.0, 3.0], equal_nan=True)
    inf = math.inf
    assert table.iloc[0].tolist() == ["a", inf, 1.0, inf, inf, 3.0, inf, 0.5]  # censored runs count as ∞
    assert table.iloc[1].tolist() == ["b", 1.5, 1.0, 2.0, 2.0, 1.0, 3.0, 1.0]
    assert list(table.columns) == ["name", "switch_median", "switch_low", "switch_high", "takeover_median",
                                   "takeover_low", "takeover_high", "takeover_rate"]


def test_mass_frame_by_hand():
    trajectories = _trajectories(_masses(OPTIMAL, HIGH), steps=[0, 5, 10, 15])
    frame = ts.mass_frame(trajectories, [slice(0, 2), slice(2, 4)], ["a", "b"])
    assert len(frame) == 2 * 3 * 4 and list(frame.columns) == ["step", "mass", "low", "high", "action", "setting"]
    optimal_a = frame[(frame.setting == "a") & (frame.action == "optimal")]
    assert optimal_a.step.tolist() == [0, 5, 10, 15]
    assert optimal_a.mass.tolist() == pytest.approx([0.1, 0.15, 0.325, 0.425])
    assert optimal_a.low.tolist()[2] == pytest.approx(0.265) and optimal_a.high.tolist()[2] == pytest.approx(0.385)
    sampled, mean_field = ts.figure1_frames(trajectories, _trajectories(_masses(OPTIMAL[:2], HIGH[:2])), 2, 2)
    assert sampled.setting.unique().tolist() == [0, 1] and mean_field.setting.unique().tolist() == [0, 1]
    assert sampled[sampled.setting == 0].mass.tolist() == frame[frame.setting == "a"].mass.tolist()


def test_figure1_settings_panels_and_main_index():
    config = ts.TwoStageConfig(**ts.PRESETS["ci"])
    assert ts.figure1_settings(config) == [(0.01, 0.5), (0.02, 0.5), (0.03, 0.5), (0.05, 0.5), (0.02, 0.3),
                                           (0.02, 0.5), (0.02, 0.8)]
    panels = ts.figure1_panels(config)
    assert [p[:2] for p in panels] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2)]
    assert panels[0][2] == r"$\pi_O(0)$ = 0.01, $r_H$ = 0.5" and panels[-1][2] == r"$\pi_O(0)$ = 0.02, $r_H$ = 0.8"
    assert ts.main_index(config) == 1
    assert ts.main_index(dataclasses.replace(config, initial_optimal=0.04)) == 0


def test_small_runs_are_seeded_and_shaped():
    config = _small_config()
    first = ts.run_figure1(config, torch.Generator().manual_seed(3), "cpu")
    again = ts.run_figure1(config, torch.Generator().manual_seed(3), "cpu")
    assert torch.equal(first[0].class_mass, again[0].class_mass)
    assert first[0].class_mass.shape == (5, 4 * 3, 3) and first[1].class_mass.shape == (5, 4, 3)
    table = ts.figure1_table(config, *first)
    assert len(table) == 4 and set(ts.FIGURE1_COLUMNS) <= set(table.columns)
    assert table[["pi_O0", "r_H"]].values.tolist() == [[0.02, 0.5], [0.05, 0.5], [0.02, 0.3], [0.02, 0.5]]
    study = ts.group_study(config, [torch.Generator().manual_seed(10 + i) for i in range(2)], "cpu")
    assert study.main == 0 and list(study.masses) == [2, 4] and len(study.table) == 4
    assert set(ts.STUDY_COLUMNS) <= set(study.table.columns)
    runs = ts.run_variants(config, [torch.Generator().manual_seed(20 + i) for i in range(2)], "cpu")
    assert list(runs) == list(ts.REWARD_MODELS) and runs["bernoulli"].class_mass.shape == (5, 9, 3)
    assert list(ts.variant_metrics(runs, 3)) == [f"{r}/{v}" for r in ts.REWARD_MODELS for v in ts.SIGN_VARIANTS]
    assert list(ts.first_order_r2(runs, 3)) == [f"{r}/{v}" for r in ts.REWARD_MODELS for v in ts.SIGN_VARIANTS]


# ----------------------------------------------------------------------------------------------
# The onset of exploration (TS7)
# ----------------------------------------------------------------------------------------------


def _onset_paths():
    # Setting 0 dips to π_O = 0.005 at step 2 with π_H = 0.975, π_L = 0.02: ratio 0.02 / (4 · 0.005) = 1.
    # Setting 1 grows from the start: its bottom is step 0 (π_L = 0.55, π_O = 0.05: ratio 2.75).
    return _trajectories(_masses([[0.02, 0.01, 0.005, 0.01], [0.05, 0.06, 0.07, 0.08]],
                                 [[0.4, 0.8, 0.975, 0.98], [0.4, 0.5, 0.6, 0.7]]), steps=[0, 5, 10, 15])


def test_onset_table_by_hand():
    table = ts.onset_table(_onset_paths(), [(0.02, 0.5), (0.05, 0.5)], high_actions=3)
    assert table.dips.tolist() == [True, False] and table.onset_step.tolist() == [10.0, 0.0]
    assert table.dip_ratio.tolist() == pytest.approx([0.25, 1.0])
    assert table.high_mass_at_onset.tolist() == pytest.approx([0.975, 0.4])
    assert table.onset_ratio.tolist() == pytest.approx([1.0, 2.75])
    in_regime = ts.onset_regime(table)
    assert in_regime.pi_O0.tolist() == [0.02]
    assert ts.onset_margins(in_regime) == pytest.approx([0.2])
    assert ts.deepest_dip(table, 0.02) == pytest.approx(0.25) and ts.dip_margins(table, 0.02) == pytest.approx([0.25])


def test_onset_margins_fail_on_counter_examples():
    table = ts.onset_table(_onset_paths(), [(0.02, 0.5), (0.05, 0.5)], high_actions=3)
    # the better action turning up far from π_L = (n_H + 1) π_O; a shallow dip at the smallest π_O(0)
    assert ts.onset_margins(ts.onset_regime(table.assign(onset_ratio=[1.5, 1.0]))) == pytest.approx([-0.25])
    assert ts.onset_margins(ts.onset_regime(table.assign(onset_ratio=[0.6, 1.0]))) == pytest.approx([-0.2])
    assert ts.dip_margins(table.assign(dip_ratio=[0.7, 1.0]), 0.02) == pytest.approx([-0.2])
    # a dip whose bottom has π_H < 0.9 is outside the Proposition
    assert ts.onset_regime(table.assign(high_mass_at_onset=[0.85, 0.4])).empty


# ----------------------------------------------------------------------------------------------
# Figure 5, the time scales (TS6) and the reward gap
# ----------------------------------------------------------------------------------------------


def test_monotone_margin_by_hand():
    assert ts.monotone_margin([4.0, 2.0, 1.0]) == [0.5, 0.5]
    assert ts.monotone_margin([1.0, 2.0]) == [-1.0]
    assert ts.monotone_margin([3.0]) == [0.0]


def _study(g4=(math.inf, 50.0, 12.5)):
    # takeover = 0.04 · π_O(0)^(−2) at G = 2; half of it at G = 4, where π_O(0) = 0.01 never takes over.
    return pd.DataFrame(dict(G=[2, 2, 2, 4, 4, 4], pi_O0=[0.01, 0.02, 0.04] * 2,
                             takeover_median=[400.0, 100.0, 25.0, *g4]))


def test_takeover_dependence_and_monotonicity_by_hand():
    dependence = ts.takeover_dependence(_study())
    assert dependence.G.tolist() == [2, 4] and dependence.settings_reached.tolist() == [3, 2]
    assert dependence.log_log_slope.tolist() == pytest.approx([-2.0, -2.0])
    assert ts.steeper_than_inverse_margins(dependence) == pytest.approx([1.0, 1.0])
    # a takeover ∝ π_O(0)^(−1/2): slower growth than 1/π_O(0)
    shallow = pd.DataFrame(dict(G=[2, 2], pi_O0=[0.01, 0.04], takeover_median=[200.0, 100.0]))
    assert ts.steeper_than_inverse_margins(ts.takeover_dependence(shallow)) == pytest.approx([-0.5])
    assert ts.later_when_rarer_margins(_study()) == pytest.approx([0.75, 0.75, 0.75])
    assert ts.earlier_with_more_rollouts_margins(_study()) == pytest.approx([0.0, 0.5, 0.5])
    # more rollouts but a later takeover; a rarer better action but an earlier takeover
    slower = _study(g4=(math.inf, 200.0, 50.0))
    assert min(ts.earlier_with_more_rollouts_margins(slower)) == pytest.approx(-1.0)
    assert min(ts.later_when_rarer_margins(_study(g4=(math.inf, 10.0, 12.5)))) < 0
    assert ts.takeover_dependence(_study().assign(takeover_median=math.inf)).empty


def test_exploration_table_and_kappa_spread_by_hand():
    config = ts.TwoStageConfig(**ts.PRESETS["ci"])  # η = 0.3, n_H = 3, std scaling; main π_O(0) = 0.02
    a = {2: 1 / math.sqrt(2), 8: 7 / math.sqrt(8)}  # a_G = (G − 1)/√G
    exploration = {2: 100.0, 8: 100.0 * a[2] / a[8]}  # exactly ∝ 1/a_G
    study = pd.DataFrame(dict(G=[2, 8, 2], pi_O0=[0.02, 0.02, 0.05], mean_field_switch=[50.0, 50.0, 1.0],
                              mean_field_takeover=[50 + exploration[2], 50 + exploration[8], 2.0]))
    table = ts.exploration_table(study, config, ts.main_index(config))
    assert table.G.tolist() == [2, 8]
    assert table.rate_kappa.tolist() == pytest.approx([0.3 * a[g] * 4 / 3 for g in (2, 8)])
    assert ts.kappa_spread(table) == pytest.approx(1.0)
    assert ts.kappa_spread_margins(ts.kappa_spread(table)) == pytest.approx([0.5])
    # an exploration stage that does not shrink with G: spread a_8/a_2 = 3.5
    flat = ts.exploration_table(study.assign(mean_field_takeover=[150.0, 150.0, 2.0]), config, 1)
    assert ts.kappa_spread(flat) == pytest.approx(3.5)
    assert ts.kappa_spread_margins(ts.kappa_spread(flat)) == pytest.approx([-2.0])


def test_reward_gap_spread_uses_the_reward_row_only():
    config = ts.TwoStageConfig(**ts.PRESETS["ci"])  # 4 π_O(0) panels, then 3 r_H panels
    fig1_table = pd.DataFrame(dict(mean_field_takeover=[1200.0, 225.0, 110.0, 55.0, 170.0, 225.0, 340.0]))
    assert ts.reward_row(fig1_table, config).mean_field_takeover.tolist() == [170.0, 225.0, 340.0]
    assert ts.reward_gap_spread(fig1_table, config) == 2.0


# ----------------------------------------------------------------------------------------------
# GRPO, GRPO-N, GRPO-P
# ----------------------------------------------------------------------------------------------


def _variant_runs():
    # One reward model, three variants × two runs, recorded at steps 0, 10, 20. The GRPO runs: run 0 ends with
    # π_O = 0.9 (found) and its entropy 2 → 1 → 1.5 rises again; run 1 ends with π_O = 0.2, entropy 2 → 1.5 → 1.
    optimal = [[0.1, 0.5, 0.9], [0.1, 0.1, 0.2]] * 3
    high = [[0.4, 0.4, 0.05], [0.4, 0.5, 0.6]] * 3
    entropy = np.array([[2.0, 1.0, 1.5], [2.0, 1.5, 1.0]] * 3).T.tolist()
    value = np.array([[0.3, 0.6, 0.95], [0.3, 0.4, 0.5]] * 3).T.tolist()
    moving = np.array([[0, 10, 20], [0, 0, 0]] * 3).T.tolist()
    misaligned = np.array([[0, 2, 5], [0, 0, 0]] * 3).T.tolist()
    return {"deterministic": _trajectories(_masses(optimal, high), steps=[0, 10, 20], entropy=entropy, value=value,
                                           moving_steps=moving, misaligned_steps=misaligned)}


def test_variant_metrics_and_summary_by_hand():
    metrics = ts.variant_metrics(_variant_runs(), 2)
    assert list(metrics) == ["deterministic/grpo", "deterministic/grpo_n", "deterministic/grpo_p"]
    grpo = metrics["deterministic/grpo"]
    assert grpo["success"] == statistics.wilson_interval(1, 2) and grpo["success"][0] == 0.5
    assert grpo["entropy_initial"] == 2.0 and grpo["entropy_min"] == (1.0, 1.0, 1.0)
    assert grpo["entropy_min_step"] == (15.0, 10.0, 20.0) and grpo["entropy_final"][0] == 1.25
    assert grpo["rises_after_min"] == 0.5 and grpo["misaligned_share"] == 0.125  # (5/20 + 0/1)/2
    assert grpo["final_value"][0] == pytest.approx(0.725)
    assert grpo["takeover"] == (math.inf, 10.0, math.inf)  # run 0 at step 10 (π_O = 0.5), run 1 never
    summary = ts.variant_summary(metrics)
    assert len(summary) == 3 and summary.iloc[0]["success [95% CI]"].startswith("0.50 [")
    assert summary.iloc[0][["entropy min", "entropy final", "Δμ<0 share"]].tolist() == [1.0, 1.25, 0.125]
    glued = ts.variant_glue(metrics)
    assert len(glued) == 1 + 3 * 3 and glued["entropy_initial"] == 2.0
    assert glued["success_det_grpo"] == 0.5 and glued["takeover_det_grpo"] == math.inf
    assert glued["entropy_det_grpo_p"] == 1.25


def _metrics(**changes):
    base = {f"{r}/{v}": dict(entropy_initial=2.0, entropy_final=(1.0, 0.9, 1.1), success=(0.5, 0.3, 0.7),
                             rises_after_min=0.0) for r in ts.REWARD_MODELS for v in ts.SIGN_VARIANTS}
    for key, values in changes.items():
        base[key.replace("__", "/")] = dict(base[key.replace("__", "/")], **values)
    return base


def test_variant_margins_hold_and_fail_by_hand():
    holding = _metrics(deterministic__grpo_n=dict(entropy_final=(1.5, 1.4, 1.6), success=(0.0, 0.0, 0.1)),
                       deterministic__grpo_p=dict(success=(1.0, 0.9, 1.0)),
                       bernoulli__grpo_n=dict(success=(0.9, 0.8, 1.0)), bernoulli__grpo=dict(success=(0.8, 0.7, 0.9)))
    assert ts.diversity_margins(holding) == pytest.approx([0.3])
    assert ts.starvation_margins(holding) == [0.05]
    assert ts.positive_only_margins(holding) == [0.5]
    assert ts.bernoulli_negative_only_margins(holding) == pytest.approx([0.1, 0.4])
    assert ts.no_rebound_margins(holding) == [0.5, 0.5]
    assert ts.below_base_margins(holding) == [1.0, 0.5, 1.0, 1.0, 1.0, 1.0]
    # GRPO-N's entropy interval overlapping GRPO's; GRPO-N finding the better action; GRPO-P finding it less
    # often; GRPO beating GRPO-N under the verifier; GRPO-N's entropy rebounding; an entropy ending above the base
    assert ts.diversity_margins(_metrics())[0] < 0
    assert ts.starvation_margins(_metrics())[0] < 0
    assert ts.positive_only_margins(_metrics(deterministic__grpo_p=dict(success=(0.4, 0.2, 0.6))))[0] < 0
    assert min(ts.bernoulli_negative_only_margins(_metrics(bernoulli__grpo=dict(success=(0.6, 0.4, 0.8))))) < 0
    assert ts.no_rebound_margins(_metrics(bernoulli__grpo_n=dict(rises_after_min=0.75))) == [0.5, -0.25]
    assert min(ts.below_base_margins(_metrics(bernoulli__grpo_p=dict(entropy_final=(2.5, 2.4, 2.6))))) == -0.5


def test_first_order_r2_by_hand():
    change = np.array([[0.0, 0.5, 1.5], [0.0, -0.2, 0.3]] * 3).T  # (S, B) log-odds with logit J(0) = 0
    exact = {"deterministic": _trajectories(_masses([[0.1] * 3] * 6, [[0.4] * 3] * 6), log_odds=change.tolist(),
                                            signed_cumulative_alignment=change.tolist())}
    r2 = ts.first_order_r2(exact, 2)
    assert r2 == {"deterministic/grpo": 1.0, "deterministic/grpo_n": 1.0, "deterministic/grpo_p": 1.0}
    assert ts.r2_margins(r2) == pytest.approx([0.1] * 3)
    # a first-order prediction that never moves explains nothing: R² = 0
    flat = {"deterministic": dataclasses.replace(exact["deterministic"],
                                                 signed_cumulative_alignment=torch.zeros(3, 6, dtype=F64))}
    assert ts.r2_margins(ts.first_order_r2(flat, 2)) == pytest.approx([-0.9] * 3)


# ----------------------------------------------------------------------------------------------
# The language model
# ----------------------------------------------------------------------------------------------


def _lm_run(advantage_filter, accuracy, entropy):
    config = SimpleNamespace(loss_type="grpo", scale_rewards="group", learning_rate=3e-4,
                             advantage_filter=advantage_filter)
    return SimpleNamespace(config=config, evals=pd.DataFrame(dict(step=[0, 30, 60], accuracy=accuracy,
                                                                  entropy=entropy)))


def _lm_runs():
    # Two GRPO seeds. Seed 0: GRPO 0.4 → 0.6 (entropy 0.5 → 0.35), GRPO-N 0.4 → 0.5 (0.5 → 0.49).
    # Seed 1: GRPO 0.3 → 0.4 (0.5 → 0.4), GRPO-N 0.3 → 0.3 (0.5 → 0.42).
    return {0: [_lm_run("all", [0.4, 0.5, 0.6], [0.5, 0.4, 0.35]),
                _lm_run("negative", [0.4, 0.45, 0.5], [0.5, 0.48, 0.49])],
            1: [_lm_run("all", [0.3, 0.35, 0.4], [0.5, 0.45, 0.4]),
                _lm_run("negative", [0.3, 0.3, 0.3], [0.5, 0.45, 0.42])]}


def test_run_lm_comparison_runs_every_seed_from_one_checkpoint(monkeypatch):
    calls = []
    monkeypatch.setattr(ts.experiment, "run_all", lambda config, folder, train, validation, seed, device:
                        calls.append((folder, seed)) or [seed])
    assert ts.run_lm_comparison("config", "warm", [], [], [3, 4, 5], "cpu") == {3: [3], 4: [4], 5: [5]}
    assert calls == [("warm", 3), ("warm", 4), ("warm", 5)]


def test_lm_summary_frame_and_table_by_hand():
    runs = _lm_runs()
    summary = ts.lm_summary(runs[0])
    assert summary["all"] == dict(accuracy_start=0.4, accuracy_end=0.6, entropy_start=0.5, entropy_end=0.35,
                                  entropy_min=0.35)
    assert summary["negative"]["entropy_min"] == 0.48
    frame = ts.lm_frame(runs)
    assert len(frame) == 12 and frame.variant.unique().tolist() == ["GRPO", "GRPO-N"]
    assert frame.grpo_seed.unique().tolist() == [0, 1]
    table = ts.lm_table(frame)
    assert table.columns.get_level_values("variant").unique().tolist() == ["GRPO", "GRPO-N"]
    assert table.loc[0, ("accuracy", "GRPO")] == pytest.approx(0.35)  # GRPO's mean accuracy at step 0: (0.4 + 0.3)/2


def test_lm_comparison_by_hand():
    comparison = ts.LMComparison.from_runs(_lm_runs())
    assert comparison.seeds == [0, 1]
    assert comparison.gains("all") == pytest.approx([0.2, 0.1])
    assert comparison.gains("negative") == pytest.approx([0.1, 0.0])
    assert comparison.gain_differences() == pytest.approx([0.1, 0.1])
    assert comparison.entropy_differences() == pytest.approx([0.14, 0.02])
    assert comparison.entropy_share() == 1.0
    assert comparison.entropy_drops("all") == pytest.approx([0.15, 0.1])
    headline = comparison.headline()
    assert headline["gain_grpo"] == pytest.approx(statistics.mean_interval(np.array([0.2, 0.1])))
    assert headline["entropy_difference"][0] == pytest.approx(0.08) and headline["grpo_seeds"] == [0, 1]
    assert len(headline["per_seed"]) == 2
    glued = comparison.glue()
    assert glued["lm_runs"] == 2 and glued["lm_higher_entropy"] == 2 and glued["lm_grpo_n_gains"] == 1
    assert len(glued) == 3 + 6 * 3
    assert glued["lm_gain_difference"] == pytest.approx(0.1) and glued["lm_entropy_grpo_n"] == pytest.approx(0.455)
    assert (glued["lm_gain_grpo_low"], glued["lm_gain_grpo_high"]) == pytest.approx(headline["gain_grpo"][1:])
    table = comparison.table()
    assert table.columns.tolist() == ["GRPO", "GRPO-N", "GRPO-N − GRPO"]
    assert table.loc["final entropy per seed", "GRPO-N − GRPO"] == "+0.140 +0.020"
    assert table.loc["accuracy gain", "GRPO"].startswith("0.150 [")


def test_lm_margins_hold_and_fail_by_hand():
    comparison = ts.LMComparison.from_runs(_lm_runs())
    assert ts.lm_gain_margins(comparison, "all") == pytest.approx([0.15])
    assert ts.lm_gain_margins(comparison, "negative") == pytest.approx([0.05])
    assert ts.lm_gain_order_margins(comparison) == pytest.approx([0.1])
    assert ts.lm_entropy_margins(comparison) == pytest.approx([0.08])
    assert ts.lm_entropy_fall_margins(comparison) == pytest.approx([0.125, 0.045])
    # GRPO-N losing accuracy on average; GRPO-N ending with less entropy than GRPO on average (in one of two seeds)
    worse = _lm_runs()
    worse[1][1] = _lm_run("negative", [0.3, 0.2, 0.1], [0.5, 0.3, 0.2])
    comparison = ts.LMComparison.from_runs(worse)
    assert ts.lm_gain_margins(comparison, "negative") == pytest.approx([-0.05])
    assert ts.lm_gain_order_margins(comparison) == pytest.approx([0.2])
    assert ts.lm_entropy_margins(comparison) == pytest.approx([(0.14 - 0.2) / 2])
    assert comparison.entropy_share() == 0.5
    # GRPO-N's entropy rising above its start on average
    rising = _lm_runs()
    rising[0][1] = _lm_run("negative", [0.4, 0.45, 0.5], [0.5, 0.55, 0.6])
    assert ts.lm_entropy_fall_margins(ts.LMComparison.from_runs(rising)) == pytest.approx([0.125, -0.01])
    # GRPO losing accuracy on average
    losing = _lm_runs()
    losing[0][0] = _lm_run("all", [0.4, 0.3, 0.2], [0.5, 0.4, 0.35])
    assert ts.lm_gain_margins(ts.LMComparison.from_runs(losing), "all") == pytest.approx([-0.05])
    # GRPO-N gaining more than GRPO
    better_n = _lm_runs()
    better_n[0][1] = _lm_run("negative", [0.4, 0.6, 0.8], [0.5, 0.48, 0.49])
    assert ts.lm_gain_order_margins(ts.LMComparison.from_runs(better_n)) == pytest.approx([-0.05])


# ----------------------------------------------------------------------------------------------
# The figure panels
# ----------------------------------------------------------------------------------------------


def test_drawing_functions_draw_every_series():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trajectories = _trajectories(_masses(OPTIMAL, HIGH), steps=[0, 5, 10, 15])
    sampled, mean_field = ts.figure1_frames(trajectories, _trajectories(_masses(OPTIMAL[:2], HIGH[:2])), 2, 2)
    fig, axes = plt.subplots(1, 2)
    ts.draw_masses(axes[0], sampled[sampled.setting == 0], mean_field[mean_field.setting == 0], "title")
    assert len(axes[0].lines) == 6 and axes[0].get_title() == "title"  # 3 sampled classes + 3 mean field
    study = _study().assign(takeover_low=1.0, takeover_high=math.inf, mean_field_takeover=10.0)
    ts.draw_times(axes[1], study, "takeover", [2, 4], 100)
    assert [text.get_text() for text in axes[1].legend().get_texts()] == ["G = 2", "G = 4"]
    plt.close(fig)
    assert [h.get_label() for h in ts.mass_legend_handles(7)][3:] == ["sampled mean (7 runs)",
                                                                       "mean field (exact E[Δz])"]
    fig, axes = plt.subplots(1, 3)
    ts.draw_variant_row(axes, _variant_runs()["deterministic"], "deterministic", 2)
    assert [len(ax.lines) for ax in axes] == [3, 4, 4]  # + the initial entropy; + the diagonal
    assert axes[0].get_title() == "Deterministic reward" and axes[2].get_xlabel().startswith(r"$\sum_k")
    assert [line.get_label() for line in axes[0].lines] == ["GRPO", "GRPO-N (negative only)", "GRPO-P (positive only)"]
    plt.close(fig)
    fig, axes = plt.subplots(1, 2)
    ts.draw_lm(axes, ts.lm_frame(_lm_runs()))
    assert [sum(len(line.get_xdata()) == 3 for line in ax.lines) for ax in axes] == [2, 2]  # a mean per variant
    assert [text.get_text() for text in axes[0].get_legend().get_texts()] == ["GRPO", "GRPO-N"]
    assert axes[1].get_legend() is None and axes[1].get_ylabel() == "mean token entropy (nats)"
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# The memory estimate of the book's pre-flight check
# ----------------------------------------------------------------------------------------------


def _config(**changes) -> ts.TwoStageConfig:
    return ts.TwoStageConfig(**{**ts.PRESETS["ci"], **changes})


RUN_BOUND = dict(seeds=200, steps=1000, record_every=1, monte_carlo_groups=1000)
"""A configuration whose memory is the bandit runs' records: 7 settings × 200 seeds, every step of 1000: ≈ 0.3 GB."""


def test_estimated_peak_bytes_grows_with_the_dominant_sizes():
    # Theorem-1-bound ((n, V) updates of n sampled groups): twice the groups, twice the memory.
    groups = _config(monte_carlo_groups=2_000_000).estimated_peak_bytes()
    assert _config(monte_carlo_groups=4_000_000).estimated_peak_bytes() == 2 * groups
    # Run-bound: about twice the memory for twice the seeds, and for twice the recorded steps.
    runs = _config(**RUN_BOUND).estimated_peak_bytes()
    assert 1.95 < _config(**dict(RUN_BOUND, seeds=400)).estimated_peak_bytes() / runs < 2
    assert 1.95 < _config(**dict(RUN_BOUND, steps=2000)).estimated_peak_bytes() / runs < 2


@pytest.mark.parametrize("preset", ["ci", "paper"])
def test_presets_estimate_well_under_the_ci_machine(preset):
    assert _config(**ts.PRESETS[preset]).estimated_peak_bytes() < 4 * 2**30


MEMORY_SETUP = """
import torch
from rlvr_dynamics.chapters import two_stage
def core(**changes):
    config = two_stage.TwoStageConfig(**{**two_stage.PRESETS["ci"], **changes})
    two_stage.run_figure1(config, torch.Generator().manual_seed(0), "cpu")
core(steps=10)
"""


@measures_memory
def test_estimated_peak_bytes_is_within_three_times_a_measured_run():
    # The Figure-1 runs, as large as the estimate's largest phase (the group study's runs on top of them).
    measured = peak_rss_bytes(MEMORY_SETUP, f"core(**{RUN_BOUND!r})")
    assert 1 / 3 < measured / _config(**RUN_BOUND).estimated_peak_bytes() < 3
