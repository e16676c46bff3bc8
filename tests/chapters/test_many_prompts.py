"""Tests of rlvr_dynamics.chapters.many_prompts: the presets, the runs on tiny settings, and every margin,
table and summary of the chapter — each margin shown to fail on a constructed counter-example."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from rlvr_dynamics.chapters import many_prompts as mpc
from rlvr_dynamics.engines import multi_prompt as mp

F64 = torch.float64


@pytest.fixture(scope="module")
def tiny():
    return dataclasses.replace(mpc.ManyPromptsConfig(**mpc.PRESETS["ci"]), bandit_prompts=8, bandit_dim=3,
                               bandit_arms=5, bandit_steps=20, chain_prompts=6, steps=30, long_steps=40, seeds=3,
                               tuning_seeds=2, step_size_grid="10,100", prompts_per_step=2, record_every=5)


@pytest.fixture(scope="module")
def comparison(tiny):
    return {regime: mpc.compare_rules(tiny, 0, regime) for regime in mpc.REGIMES}


@pytest.fixture(scope="module")
def bandit_runs(tiny):
    family = mpc.bandit_family(tiny, mpc.problem_seeds(0, tiny.seeds))
    return family, mpc.alignment_runs(tiny, family, torch.Generator().manual_seed(0))


def _run(value, alignment=None, change=None, step=None):
    """A PromptRun from values (S, B, Q) recorded at every step; other fields from the given or zeros."""
    value = torch.as_tensor(value, dtype=F64)
    records, runs, prompts = value.shape
    steps = records - 1
    zeros = torch.zeros(steps, runs, prompts, dtype=F64)
    return mp.PromptRun(torch.arange(records), value, torch.logit(value),
                        zeros if alignment is None else torch.as_tensor(alignment, dtype=F64),
                        zeros if change is None else torch.as_tensor(change, dtype=F64),
                        torch.ones(steps, runs, dtype=F64) if step is None else torch.as_tensor(step, dtype=F64),
                        torch.ones(runs, dtype=F64), torch.ones(steps, runs, prompts, dtype=torch.bool),
                        torch.zeros(runs, 1, dtype=F64))


def test_presets_are_valid_and_the_setup_numbers_are_the_constants():
    for preset in ("ci", "paper"):
        config = mpc.ManyPromptsConfig(**mpc.PRESETS[preset])
        config.check()
        assert config.lm_config(preset).run_configs()[1].prompt_weighting == "safe_step"
    assert mpc.SETUP_NUMBERS == {"0.5": 0.5, "90%": 0.9, "0.9": 0.9, "95%": 0.95, "1e-10": 1e-10, "100%": 1.0,
                                 "0.01": 0.01}
    assert mpc.ROBUSTNESS_RECORD.as_posix() == "data/robustness/many_prompts.json"


@pytest.mark.parametrize("change, message", [
    (dict(band_low=0.9, band_high=0.5), "band_low must not exceed band_high"),
    (dict(prompts_per_step=17), "prompts_per_step' = 17 is out of range"),
    (dict(lengths="2,1"), "1 is out of range"), (dict(lengths="two"), "'two' is not a int"),
    (dict(step_size_grid="1,0"), "0.0 is out of range"), (dict(record_every=401), "record_every' = 401"),
])
def test_config_rejects_inconsistent_settings(change, message):
    config = dataclasses.replace(mpc.ManyPromptsConfig(**mpc.PRESETS["ci"]), **change)
    with pytest.raises(ValueError, match=message):
        config.check()


def test_stuck_prompts_and_run_metrics_by_hand():
    # prompt 0 converges, prompt 1 falls (stuck), prompt 2 is unsolved but rising (not stuck)
    value = [[[0.2, 0.4, 0.1]], [[0.6, 0.3, 0.2]], [[0.95, 0.2, 0.3]]]
    run = _run(value, alignment=[[[1.0, -1.0, 1.0]], [[1.0, -2.0, 0.5]]])
    assert mpc.stuck_prompts(run).tolist() == [[False, True, False]]
    assert mpc.always_opposed(run).tolist() == [[False, True, False]]
    metrics = mpc.run_metrics(run)
    assert math.isclose(metrics.batch_success[0], (0.95 + 0.2 + 0.3) / 3)
    assert metrics.worst_success[0] == pytest.approx(0.2) and math.isnan(metrics.steps_to_90[0])
    assert math.isclose(metrics.stuck_share[0], 1 / 3) and math.isclose(metrics.opposed_share[0], 1 / 3)
    reached = mpc.run_metrics(_run([[[0.5, 0.5]], [[0.95, 0.9]], [[1 - 1e-9, 0.9]]]))
    assert reached.steps_to_90[0] == 1


def test_lemma1_margins_fail_when_a_change_leaves_the_bound():
    constants = torch.tensor([[2.0, 1.0]], dtype=F64)
    step = torch.tensor([[0.1]], dtype=F64)
    inside = _run([[[0.5, 0.5]], [[0.5, 0.5]]], alignment=[[[1.0, -1.0]]], change=[[[0.1 + 0.019, -0.1 - 0.009]]],
                  step=step)
    assert mpc.lemma1_margins(inside, constants).min() == pytest.approx(0.05)
    outside = dataclasses.replace(inside, log_odds_change=torch.tensor([[[0.1 + 0.021, -0.1]]], dtype=F64))
    assert mpc.lemma1_margins(outside, constants).min() < 0


def test_ceiling_margins_fail_when_a_prompt_rises_above_its_ceiling():
    run = _run([[[0.5]], [[0.5]]], alignment=[[[-1.0]]], step=torch.tensor([[0.1]], dtype=F64))
    constants = torch.tensor([[1.0]], dtype=F64)
    assert mpc.ceiling_margins(run, constants, run.log_odds[0]).min() >= 0
    risen = dataclasses.replace(run, log_odds=torch.tensor([[[0.0]], [[0.02]]], dtype=F64))  # ceiling 0.01
    assert mpc.ceiling_margins(risen, constants, risen.log_odds[0]).min() == pytest.approx(-0.01)


def test_the_bandit_runs_and_their_summary(tiny, bandit_runs):
    family, runs = bandit_runs
    assert list(runs) == ["GRPO", "Dr. GRPO", "safe step"] and runs["GRPO"].alignment.shape == (20, 3, 8)
    summary = mpc.bandit_summary(runs)
    assert summary["opposed_end_dr"].shape == (3,) and summary["fewer_stuck"].shape == (2,)
    table = mpc.alignment_table(runs)
    assert table["rule"].tolist() == list(runs) and table["batch success"].between(0, 1).all()
    glue = mpc.bandit_glue(tiny, runs, summary)
    assert glue["bandit_prompts"] == 8 and 0 <= glue["bandit_overshoot_max"] <= 1
    # the summary's margins turn negative when the safe-step rule is the worse one
    worse = dict(runs, **{"safe step": runs["Dr. GRPO"], "Dr. GRPO": runs["safe step"]})
    flipped = mpc.bandit_summary(worse)
    assert flipped["fewer_stuck"][1] == -summary["fewer_stuck"][1]


def test_the_propositions_hold_on_real_runs_and_fail_on_a_broken_one(tiny, bandit_runs):
    family, runs = bandit_runs
    margins = mpc.proposition_margins({"bandit": (family, runs)}, tiny.group_size)
    assert len(margins) == 7 and all(m.min() >= 0 for m in margins.values() if len(m))
    assert sum(len(m) > 0 for m in margins.values()) >= 5  # B10(a)-(b) need a run where every prompt is aligned
    assert mpc.lemma1_glue(margins)["lemma1_used"] == pytest.approx(1 - margins[mpc.LEMMA1_CLAIM].min())
    broken = dict(runs, GRPO=dataclasses.replace(runs["GRPO"], alignment=-runs["GRPO"].alignment))
    assert mpc.proposition_margins({"bandit": (family, broken)}, tiny.group_size)[
        next(k for k in margins if k.startswith("B10: |Δf_q"))].min() < 0


def test_threshold_margins_are_positive_at_the_start_and_identity_holds(tiny):
    chain = mpc.chain_family(tiny, [0, 1])
    margins = mpc.threshold_margins_at(chain, [chain.theta0], tiny.group_size)
    assert len(margins["improve"]) and margins["improve"].min() > 0 and margins["half"].min() >= 0
    b11 = mpc.identity_margins(chain, [chain.theta0], tiny.group_size)
    assert b11["identity"].min() >= 0 and (b11["criterion"] == 1).all()
    spread = mpc.spread_frame(chain, chain.theta0, tiny.group_size)
    assert (spread["ratio"] <= 1 + 1e-12).all() and (spread["shared"] <= spread["mean own"]).all()


def test_the_comparison_tunes_every_rule_on_the_same_grid_and_reports_intervals(tiny, comparison):
    linear = comparison["linear"]
    assert list(linear) == [name for name, _, _ in mpc.RULES]
    assert all(set(r.tuning) == {10.0, 100.0} and r.step_size in (10.0, 100.0) for r in linear.values())
    assert all(len(r.metrics) == tiny.seeds for r in linear.values())
    table = mpc.comparison_table(linear)
    assert table.columns.tolist() == ["rule", "α", "final batch success", "worst prompt's success", "stuck prompts",
                                      "steps to 90%"]
    assert table["final batch success"].str.match(r"^\d\.\d{3} \[-?\d\.\d{3}, -?\d\.\d{3}\]$").all()
    differences = mpc.differences_table(comparison)
    assert len(differences) == 2 * 2 * 2 * (len(mpc.RULES) - 1)
    glue = mpc.comparison_glue(comparison)
    assert glue["best_batch_linear"] in linear and glue["safe_worst_vs_dr_low"] <= glue["safe_worst_vs_dr"]
    records = mpc.comparison_records(comparison, tiny.grid)
    assert all(len(m) >= 1 for m in records.values()) and len(records) == 2 * (4 * 2 + 2)
    assert mpc.tuning_edge_margins(linear, tiny.grid) == [-1.0] * len(linear)  # a two-point grid has no inside


def test_paired_differences_and_winners_by_hand():
    frame = lambda values: pd.DataFrame({"batch_success": values, "worst_success": values})  # noqa: E731
    results = {name: mpc.RuleResult(name, "linear", 1.0, {}, frame(values), None)
               for name, values in {"GRPO": [0.5, 0.6, 0.7], "Dr. GRPO": [0.5, 0.6, 0.7],
                                    "better": [0.6, 0.7, 0.8]}.items()}
    differences = mpc.paired_differences(results, "GRPO", "batch_success")
    row = differences.set_index("rule").loc["better"]
    assert row.difference == pytest.approx(0.1) and row.low == pytest.approx(0.1)  # a constant difference
    assert mpc.difference_margins(results, "better", "GRPO", "batch_success")[0] == pytest.approx(0.1)
    assert mpc.difference_margins(results, "GRPO", "better", "batch_success")[0] == pytest.approx(-0.1)
    assert mpc.winners(results, "batch_success") == ["GRPO", "Dr. GRPO", "better"]  # wide interval: all tied
    assert mpc.winners(results, "batch_success", larger=False) == ["GRPO", "Dr. GRPO", "better"]


def test_stagnation_frame_table_and_margins(tiny, comparison):
    chain = mpc.chain_family(tiny, [0, 1, 2])
    runs = mpc.long_runs(tiny, chain, comparison["linear"], torch.Generator().manual_seed(0))
    assert list(runs) == ["GRPO", "Dr. GRPO"] and runs["GRPO"].step.shape == (40, 3)
    frame = mpc.stagnation_frame(runs)
    assert len(frame) == 6 and frame["failure ratio"].gt(0).all()
    table = mpc.stagnation_table(frame)
    assert table["rule"].tolist() == ["GRPO", "Dr. GRPO"]
    glue = mpc.stagnation_glue(frame, runs)
    assert glue["problems"] == 3 and 0 <= glue["long_overshoot_max"] <= 1
    stalled = frame.assign(stuck=[0.0, 0.5, 0, 0, 0, 0])
    assert mpc.stall_margins(stalled) == [0.5] and mpc.stall_margins(frame.assign(stuck=0.0)) == [-0.5]
    stuck, clean = mpc.example_runs(_run([[[0.2, 0.2], [0.2, 0.2]], [[0.1, 0.9], [0.9, 0.9]],
                                          [[0.1, 0.95], [0.95, 0.95]]]))
    assert (stuck, clean) == (0, 1)


def test_overshoot_share_counts_aligned_prompts_that_lose():
    run = _run([[[0.5, 0.5]], [[0.5, 0.5]], [[0.5, 0.5]]], alignment=[[[1.0, -1.0]], [[1.0, 1.0]]],
               change=[[[-0.1, -0.1]], [[0.1, 0.1]]])
    assert mpc.overshoot_share(run) == 0.25


def test_lm_frames_table_and_margins_on_synthetic_runs():
    evals = pd.DataFrame({"step": [0, 10, 0, 10], "accuracy": [0.3, 0.4, 0.3, 0.45],
                          "variant": ["Dr. GRPO", "Dr. GRPO", "safe-step weights", "safe-step weights"]})
    prompts = pd.DataFrame({"step": [10, 10], "prompt_alignment_positive": [0.75, 1.0],
                            "prompt_alignment_mean": [0.1, 0.2], "variant": ["Dr. GRPO", "safe-step weights"]})
    table = mpc.lm_table(evals, prompts).set_index("variant")
    assert table.loc["Dr. GRPO", "gain"] == pytest.approx(0.1)
    assert table.loc["safe-step weights", "gain"] == pytest.approx(0.15)
    assert mpc.lm_gain_margins(evals)[0] == pytest.approx(0.05)
    glue = mpc.lm_glue(evals, prompts)
    assert glue["lm_aligned_dr"] == 0.75 and glue["lm_aligned_safe"] == 1.0
    margins = mpc.lm_opposed_margins(prompts)
    assert margins[0] > 0 and margins[1] < 0  # every prompt aligned: no prompt opposed, the claim fails there
    assert mpc.lm_opposed_margins(pd.DataFrame()).min() < 0


def test_forward_algorithm_margins_and_descriptions(tiny):
    chain = mpc.chain_family(tiny, [0])
    assert mpc.forward_algorithm_margins(chain).min() > 0
    table = mpc.describe_families({"chain": chain})
    assert table.loc[0, "lengths T_q"] == "2, 4, 8" and table.loc[0, "parameters D"] == chain.n_params
    assert mpc.problem_seeds(1, 2, 5) == [1_000_005, 1_000_006]
    glue = mpc.setup_glue(tiny, {"linear": {name: mpc.RuleResult(name, "linear", 3.0, {}, None, None)
                                            for name in mpc.BASELINES}})
    assert glue["grid"] == "10, 100" and glue["long_alpha_grpo"] == 3.0


def test_headline_is_json_ready(tiny, bandit_runs, comparison):
    import json

    _, runs = bandit_runs
    chain = mpc.chain_family(tiny, [0])
    long = mpc.long_runs(tiny, chain, comparison["linear"], torch.Generator().manual_seed(0))
    headline = mpc.headline(runs, long, comparison, mpc.stagnation_frame(long))
    assert set(headline) == {"bandit", "chain_long", "stagnation", "comparison"}
    json.dumps(headline, allow_nan=True)
    assert np.isfinite(headline["comparison"]["linear"]["GRPO"]["batch_success"])


def test_lemma1_margins_allow_float64_rounding_and_no_more():
    """At a step of 1e-60 the bound C η² is far below the resolution of f: a remainder of a few ulps passes,
    one of a thousand ulps fails."""
    constants = torch.tensor([[1.0]], dtype=F64)
    value = torch.sigmoid(torch.tensor(3.0, dtype=F64)).item()
    ulp = torch.finfo(F64).eps * 3.0
    for remainder, passes in ((2 * ulp, True), (1000 * ulp, False)):
        run = _run([[[value]], [[value]]], alignment=[[[1.0]]], change=[[[1e-60 + remainder]]],
                   step=torch.tensor([[1e-60]], dtype=F64))
        assert (mpc.lemma1_margins(run, constants).min() >= 0) == passes
