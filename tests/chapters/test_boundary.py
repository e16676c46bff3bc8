"""Tests of rlvr_dynamics.chapters.boundary: the constants and presets, the language-model runs' settings, the
exact model's problems and runs on tiny settings, and every frame, table, margin and glue number of the chapter
— the frames by hand on fake runs with known success probabilities, each margin shown to fail on a constructed
counter-example."""

from __future__ import annotations

import dataclasses
import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from rlvr_dynamics.chapters import boundary as bd
from rlvr_dynamics.engines import multi_prompt as mp
from rlvr_dynamics.lm import grpo

F64 = torch.float64
T_975_1 = 12.706204736174698  # Student t, 97.5% quantile, one degree of freedom


@pytest.fixture(scope="module")
def tiny():
    return dataclasses.replace(bd.BoundaryConfig(**bd.PRESETS["ci"]), prompts=4, seeds=2, steps=6, record_every=2,
                               largest_k=8)


@pytest.fixture(scope="module")
def real(tiny):
    """A tiny real run of every variant: (family, run, pass frame)."""
    family = bd.problem_family(tiny, 0)
    run = bd.run_variants(tiny, family, torch.Generator().manual_seed(0))
    return family, run, bd.pass_frame(run, tiny)


def _sampled(success, steps=None, clipped=None) -> mp.SampledRun:
    """A SampledRun from exact success probabilities J (S, B, Q) at ``steps`` (default 0, 1, …); the other
    fields are placeholders (clipped_fraction from ``clipped`` (K, B) when given)."""
    success = torch.as_tensor(success, dtype=F64)
    records, runs, _ = success.shape
    steps = torch.arange(records) if steps is None else torch.tensor(steps)
    count = int(steps[-1])
    clipped = torch.zeros(count, runs, dtype=F64) if clipped is None else torch.as_tensor(clipped, dtype=F64)
    return mp.SampledRun(steps, success.log(), torch.log1p(-success), clipped, torch.ones(count, runs, dtype=F64),
                         torch.ones(runs, dtype=F64), torch.zeros(runs, 1, dtype=F64))


def _by_run(config, pick) -> list:
    """(B, Q) values in the chapter's run order (run b: variant b // seeds, problem b mod seeds) from
    ``pick(variant name, problem)`` → the Q prompts' values."""
    return [pick(bd.VARIANT_NAMES[bd.VARIANTS[b // config.seeds]], b % config.seeds)
            for b in range(len(bd.VARIANTS) * config.seeds)]


# ----------------------------------------------------------------------------------------------
# Constants, configuration, presets
# ----------------------------------------------------------------------------------------------


def test_the_prose_constants_and_the_variants():
    assert bd.SETUP_NUMBERS == {"95%": bd.INTERVAL_LEVEL, "0.05": bd.RARE_LEVEL, "0.01": bd.ENTROPY_TURN}
    assert (bd.INTERVAL_LEVEL, bd.RARE_LEVEL, bd.ENTROPY_TURN) == (0.95, 0.05, 0.01)
    assert bd.VARIANTS == mp.SAMPLED_VARIANTS == ("grpo", "grpo_n", "grpo_p", "gspo", "gspo_n")
    assert set(bd.VARIANT_NAMES) == set(bd.VARIANTS)
    assert list(bd.VARIANT_NAMES.values()) == ["GRPO", "GRPO-N", "GRPO-P", "GSPO", "GSPO-N"]
    assert len(bd.FATES) == 3 and len(set(bd.FATES)) == 3


@pytest.mark.parametrize("preset", ["ci", "paper"])
def test_presets_set_every_field_and_pass_their_checks(preset):
    assert set(bd.PRESETS[preset]) == {f.name for f in dataclasses.fields(bd.BoundaryConfig)}
    config = bd.BoundaryConfig(**bd.PRESETS[preset])
    config.check()
    # largest_k = 1024 = 2¹⁰: eleven k; the LM's n = 256 (ci) or 512 (paper) samples
    assert config.ks.tolist() == [2**i for i in range(11)]
    assert config.lm_ks.tolist() == [2**i for i in range(int(math.log2(config.lm_pass_samples)) + 1)]
    assert config.length_list == (2, 4, 8)


def test_ks_are_the_powers_of_two_and_lm_ks_round_the_sample_count_down():
    config = dataclasses.replace(bd.BoundaryConfig(**bd.PRESETS["ci"]), largest_k=8, lm_pass_samples=100)
    assert config.ks.tolist() == [1, 2, 4, 8]
    assert config.lm_ks.tolist() == [1, 2, 4, 8, 16, 32, 64]  # 100 → 64, the largest power of 2 ≤ n
    assert dataclasses.replace(config, lm_pass_samples=4).lm_ks.tolist() == [1, 2, 4]


@pytest.mark.parametrize("change, message", [
    (dict(largest_k=12), "parameter 'largest_k' = 12 is not a power of 2"),
    (dict(record_every=7), "parameter 'record_every' = 7 is out of range: allowed record_every ≤ steps = 6"),
    (dict(lm_eval_every=41), "parameter 'lm_eval_every' = 41 is out of range: allowed lm_eval_every ≤ lm_steps = "
                             "40"),
    (dict(lengths="2,1"), "parameter 'lengths' = '2,1': 1 is out of range"),
    (dict(lengths="x"), "parameter 'lengths' = 'x': 'x' is not a int"),
    (dict(lengths="2,65"), "65 is out of range"),
])
def test_config_rejects_inconsistent_settings(tiny, change, message):
    config = dataclasses.replace(tiny, **change)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        config.check()


def test_the_boundary_settings_pass_their_check(tiny):
    tiny.check()  # record_every = 2 ≤ steps = 6, largest_k = 8 = 2³
    dataclasses.replace(tiny, record_every=6, lm_eval_every=40).check()  # the bounds themselves are allowed


def test_lm_config_gives_the_five_variants_with_their_ratio_and_filter(tiny):
    from rlvr_dynamics.lm import experiment

    lm = tiny.lm_config("ci")
    runs = lm.run_configs()
    assert [(r.importance_sampling_level, r.advantage_filter) for r in runs] == [
        ("token", "all"), ("token", "negative"), ("token", "positive"), ("sequence", "all"),
        ("sequence", "negative")]
    assert [bd.lm_variant(r) for r in runs] == list(bd.VARIANT_NAMES.values())
    for run in runs:
        assert run.num_iterations == tiny.lm_num_iterations == 2
        assert run.tracking == "off" and run.tracked_prompts == 0  # μ > 1: no gap tracking
        assert run.steps == tiny.lm_steps and run.eval_every == tiny.lm_eval_every
        assert run.pass_problems == tiny.lm_pass_problems and run.pass_samples == tiny.lm_pass_samples
        assert run.loss_type == "grpo" and run.scale_rewards == "group"
        assert run.eval_problems == lm.validation_size  # accuracy on every validation problem
        if run.importance_sampling_level == "sequence":  # GSPO's clip range (3e-4, 4e-4)
            assert (run.epsilon, run.epsilon_high) == (lm.sequence_epsilon, lm.sequence_epsilon_high)
        else:  # the token range (0.2, epsilon_high 0 → None: the same)
            assert (run.epsilon, run.epsilon_high) == (lm.epsilon, None)
    assert runs[3].epsilon != runs[0].epsilon
    # the Figure-2 chapter's model and warm-up of the preset, so its checkpoint is reused
    base = experiment.LMExperimentConfig(**experiment.PRESETS["ci"])
    assert (lm.model_preset, lm.warmup_target, lm.problems) == (base.model_preset, base.warmup_target, base.problems)
    assert tiny.lm_config("paper").model_preset == experiment.PRESETS["paper"]["model_preset"]


def test_lm_variant_maps_level_and_filter_to_the_name():
    for (level, kept), name in {("token", "all"): "GRPO", ("token", "negative"): "GRPO-N",
                                ("token", "positive"): "GRPO-P", ("sequence", "all"): "GSPO",
                                ("sequence", "negative"): "GSPO-N"}.items():
        config = grpo.GRPORunConfig(importance_sampling_level=level, advantage_filter=kept)
        assert bd.lm_variant(config) == name
    with pytest.raises(KeyError):  # a sequence-level positive-only run is not one of the chapter's variants
        bd.lm_variant(grpo.GRPORunConfig(importance_sampling_level="sequence", advantage_filter="positive"))


# ----------------------------------------------------------------------------------------------
# The exact model: problems, runs, pass@k
# ----------------------------------------------------------------------------------------------


def test_problem_family_repeats_every_problem_once_per_variant(tiny):
    family = bd.problem_family(tiny, 0)
    seeds = tiny.seeds
    assert family.theta0.shape[0] == family.answers.shape[0] == seeds * 5 == 10
    assert family.answers.shape == (10, tiny.prompts)
    for b in range(seeds):
        for variant in range(1, 5):  # run b and b + v·seeds: the same problem, the same base model
            assert torch.equal(family.theta0[b], family.theta0[b + variant * seeds])
            assert torch.equal(family.answers[b], family.answers[b + variant * seeds])
            assert torch.equal(family.features[b], family.features[b + variant * seeds])
    assert not torch.equal(family.theta0[0], family.theta0[1])  # two problems
    # problem i of book seed s is the engine's problem s·10⁶ + i
    other = bd.problem_family(tiny, 1)
    assert not torch.equal(other.theta0[0], family.theta0[0])
    direct = mp.make_family("chain", [1_000_001], tiny.prompts, tiny.vocab_size, tiny.feature_dim, tiny.length_list,
                            tiny.answer_rule, init_scale=tiny.init_scale)
    assert torch.equal(direct.theta0[0], other.theta0[1]) and torch.equal(direct.answers[0], other.answers[1])


def test_a_tiny_real_run_and_its_pass_frame(tiny, real):
    family, run, frame = real
    assert run.recorded_steps.tolist() == [0, 2, 4, 6] and run.log_success.shape == (4, 10, tiny.prompts)
    assert run.clipped_fraction.shape == (6, 10)
    assert len(frame) == 4 * 10 * 4 and set(frame.columns) == {"step", "k", "pass", "variant", "problem"}
    assert frame.groupby("variant").size().to_dict() == dict.fromkeys(bd.VARIANT_NAMES.values(), 4 * 2 * 4)
    # step 0: every variant starts from the problem's base model
    base = frame[frame.step == 0].groupby(["problem", "k"])["pass"]
    assert (base.max() - base.min()).max() == 0
    # pass@1 is the mean J over the prompts; pass@k rises with k
    start = run.log_success[0].exp().mean(-1)  # (B,)
    first = frame[(frame.step == 0) & (frame.k == 1) & (frame.variant == "GRPO")].sort_values("problem")
    assert first["pass"].to_numpy() == pytest.approx(start[:2].numpy(), rel=1e-12)
    by_k = frame.pivot_table(index=["step", "variant", "problem"], columns="k", values="pass")
    assert (np.diff(by_k.to_numpy(), axis=1) >= 0).all()
    clipped = bd.clip_share(run, tiny)
    assert list(clipped) == list(bd.VARIANT_NAMES.values()) and all(0 <= v <= 1 for v in clipped.values())


# J = 1/2 on both prompts of every problem at step 0; at the last step J = 3/4 (GRPO, GSPO, GSPO-N), 1/4
# (GRPO-N), and 3/4 on problem 0 but 1/2 on problem 1 (GRPO-P).
def _pass_run(config):
    def last(variant, problem):
        if variant == "GRPO-N":
            return [0.25, 0.25]
        return [0.5, 0.5] if variant == "GRPO-P" and problem == 1 else [0.75, 0.75]

    clipped = torch.tensor([[i / 10] * config.seeds for i in range(5)], dtype=F64).flatten().expand(6, -1)
    return _sampled([_by_run(config, lambda v, p: [0.5, 0.5]), _by_run(config, lambda v, p: [0.6, 0.6]),
                     _by_run(config, last)], steps=[0, 3, 6], clipped=clipped)


def test_pass_frame_and_gains_against_the_base_by_hand(tiny):
    run = _pass_run(tiny)
    frame = bd.pass_frame(run, tiny)
    assert len(frame) == 3 * 10 * 4
    row = frame.set_index(["step", "variant", "problem", "k"])["pass"]
    # pass@2 = 1 − (1 − J)²: 3/4 at J = 1/2, 15/16 at J = 3/4, 7/16 at J = 1/4
    assert row[(0, "GSPO", 1, 2)] == pytest.approx(0.75, abs=1e-15)
    assert row[(6, "GRPO", 0, 2)] == pytest.approx(15 / 16, abs=1e-15)
    assert row[(6, "GRPO-N", 1, 2)] == pytest.approx(7 / 16, abs=1e-15)
    gains = bd.against_base(frame).set_index(["step", "variant", "problem", "k"])
    assert (gains.loc[0, "gain"] == 0).all()  # the base is step 0 of the same problem
    assert gains.loc[(6, "GRPO", 0, 2), "base"] == pytest.approx(0.75, abs=1e-15)
    assert gains.loc[(6, "GRPO", 0, 2), "gain"] == pytest.approx(0.1875, abs=1e-15)  # (1 − 1/16) − (1 − 1/4)
    assert gains.loc[(6, "GRPO", 0, 1), "gain"] == pytest.approx(0.25, abs=1e-15)
    assert gains.loc[(6, "GRPO-N", 0, 2), "gain"] == pytest.approx(-0.3125, abs=1e-15)  # 7/16 − 3/4
    # k = 8: (1 − 4⁻⁸) − (1 − 2⁻⁸) = 255/65536
    assert gains.loc[(6, "GRPO", 1, 8), "gain"] == pytest.approx(255 / 65536, rel=1e-12)
    assert gains.loc[(3, "GRPO", 1, 1), "gain"] == pytest.approx(0.1, abs=1e-15)  # 0.6 − 0.5


def test_final_gains_and_interval_cells_by_hand(tiny):
    frame = bd.pass_frame(_pass_run(tiny), tiny)
    gains = bd.final_gains(frame)
    assert list(gains.columns) == ["mean", "low", "high"] and gains.index.names == ["variant", "k"]
    assert len(gains) == 5 * 4
    # the same gain on both problems: a degenerate interval
    assert gains.loc[("GRPO", 2)].tolist() == pytest.approx([0.1875] * 3, abs=1e-15)
    # GRPO-P's pass@1 gains are 1/4 and 0: mean 1/8, half-width t₀.₉₇₅,₁ · s/√2 = 12.706 · 1/8
    assert gains.loc[("GRPO-P", 1)].tolist() == pytest.approx([0.125, 0.125 - T_975_1 / 8, 0.125 + T_975_1 / 8],
                                                              rel=1e-9)
    cells = bd.interval_cells(gains, [1, 2])
    assert list(cells.columns) == ["pass@1", "pass@2"] and list(cells.index) == list(bd.VARIANT_NAMES.values())
    assert cells.loc["GRPO", "pass@1"] == "0.250 [0.250, 0.250]"
    assert cells.loc["GRPO-N", "pass@1"] == "-0.250 [-0.250, -0.250]"
    assert cells.loc["GRPO-P", "pass@1"] == "0.125 [-1.463, 1.713]"


def test_gain_order_and_shrinkage_margins_pass_and_fail(tiny):
    frame = bd.pass_frame(_pass_run(tiny), tiny)
    gains = bd.final_gains(frame)
    # pass@1 gains GRPO 1/4, GRPO-N −1/4 (fails), GRPO-P 1/8, GSPO 1/4, GSPO-N 1/4
    assert bd.pass1_gain_margins(gains) == pytest.approx([0.25, -0.25, 0.125, 0.25, 0.25], abs=1e-15)
    # GRPO-N ends below the base at k = 8: 2⁻⁸ − (3/4)⁸ < 0, so its shrinkage margin is (3/4)⁸ − 2⁻⁸ > 0;
    # GRPO ends above: margin −255/65536 < 0
    assert bd.shrinkage_margins(gains, "GRPO-N", 8) == pytest.approx([0.75**8 - 2**-8], rel=1e-12)
    assert bd.shrinkage_margins(gains, "GRPO", 8) == pytest.approx([-255 / 65536], rel=1e-12)
    # paired at the last step, pass@2: GRPO 15/16 − GRPO-N 7/16 = 1/2 on each problem
    assert bd.paired_final(frame, "GRPO", "GRPO-N", 2) == pytest.approx([0.5, 0.5], abs=1e-15)
    assert bd.paired_final(frame, "GRPO-P", "GRPO", 1) == pytest.approx([0.0, -0.25], abs=1e-15)
    assert bd.order_margins(frame, "GRPO", "GRPO-N", 2) == pytest.approx([0.5], abs=1e-15)
    assert bd.order_margins(frame, "GRPO-N", "GRPO", 2) == pytest.approx([-0.5], abs=1e-15)


def test_clip_share_averages_each_variants_runs(tiny):
    # clipped_fraction = i/10 on every run of variant i
    assert bd.clip_share(_pass_run(tiny), tiny) == pytest.approx(
        {"GRPO": 0.0, "GRPO-N": 0.1, "GRPO-P": 0.2, "GSPO": 0.3, "GSPO-N": 0.4}, abs=1e-15)


# Base J = (1/2, 1/2): pass@k = 1 − 2⁻ᵏ = 1/2, 3/4, 15/16, 255/256. Trained (1, 1/3): pass@k = 1 − (2/3)ᵏ/2 =
# 2/3, 7/9, 73/81, 1 − 128/6561 ≈ 0.9805 — above the base at k = 1, 2, below at k = 4, 8: crossover 4.
# Trained (3/4, 3/4): above at every k: no crossover (NaN).
def _crossing_run(config):
    def last(variant, problem):
        return [1.0, 1 / 3] if problem == 0 or variant == "GRPO-N" else [0.75, 0.75]

    return _sampled([_by_run(config, lambda v, p: [0.5, 0.5]), _by_run(config, last)], steps=[0, 6])


def test_crossover_ks_and_summary_by_hand(tiny):
    frame = bd.pass_frame(_crossing_run(tiny), tiny)
    crossovers = bd.crossover_ks(frame)
    assert list(crossovers.columns) == ["variant", "problem", "crossover", "pass1_gain"] and len(crossovers) == 10
    rows = crossovers.set_index(["variant", "problem"])
    assert rows.loc[("GRPO", 0), "crossover"] == 4.0
    assert math.isnan(rows.loc[("GRPO", 1), "crossover"])
    assert rows.loc[("GRPO-N", 1), "crossover"] == 4.0
    assert rows.loc[("GRPO", 0), "pass1_gain"] == pytest.approx(1 / 6, abs=1e-15)  # 2/3 − 1/2
    assert rows.loc[("GRPO", 1), "pass1_gain"] == pytest.approx(0.25, abs=1e-15)  # 3/4 − 1/2
    summary = bd.crossover_summary(crossovers)
    assert summary.loc["GRPO", "problems crossing below the base"] == "1 of 2"
    assert summary.loc["GRPO-N", "problems crossing below the base"] == "2 of 2"
    assert summary.loc["GRPO-N", ["median crossover k", "low", "high"]].tolist() == [4.0, 4.0, 4.0]
    # a problem that never crosses counts as ∞ in the order statistics (the table's "∞: it never is")
    assert summary.loc["GRPO", "median crossover k"] == math.inf and summary.loc["GRPO", "low"] == 4.0


# ----------------------------------------------------------------------------------------------
# Rare prompts and the timing of the boundary
# ----------------------------------------------------------------------------------------------

# Recorded steps 0, 2, 4, 6; J of four prompts (the rest of the runs: 0.5 everywhere, not rare).
FATE_PROMPTS = {
    # GRPO, problem 0
    (0, 0): [0.01, 0.02, 0.03, 0.04],  # rare, only rises: "rises", lowest at step 0
    (0, 1): [0.04, 0.01, 0.015, 0.05],  # rare, falls to 1/4 of its start at step 2, ends above: dips, recovers
    (0, 2): [0.02, 0.03, 0.025, 0.01],  # rare, ends below its start
    (0, 3): [0.5, 0.1, 0.01, 0.6],  # not rare (base 0.5 ≥ 0.05): ignored whatever it does
    # GRPO, problem 1: falls to 0.021 > half of 0.04, ends above: still "rises" (bottom at step 2)
    (1, 0): [0.04, 0.021, 0.045, 0.05],
    # GSPO-N (runs 8, 9), problem 1: ends below its start
    (9, 3): [0.03, 0.04, 0.05, 0.0299],
}


def _fate_run(config):
    success = np.full((4, 10, 4), 0.5)
    for (r, q), values in FATE_PROMPTS.items():
        success[:, r, q] = values
    return _sampled(success, steps=[0, 2, 4, 6])


def test_rare_prompts_and_their_fates_by_hand(tiny):
    run = _fate_run(tiny)
    assert bd.rare_prompts(run).nonzero().tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [9, 3]]
    assert bd.rare_prompts(run, 0.035).nonzero().tolist() == [[0, 0], [0, 2], [9, 3]]
    fates = bd.prompt_fates(run, tiny)
    assert list(fates.columns) == ["variant", "problem", "prompt", "base", "final", "bottom_step", "fate"]
    assert fates[["variant", "problem", "prompt", "bottom_step", "fate"]].values.tolist() == [
        ["GRPO", 0, 0, 0, bd.FATES[0]], ["GRPO", 0, 1, 2, bd.FATES[1]], ["GRPO", 0, 2, 6, bd.FATES[2]],
        ["GRPO", 1, 0, 2, bd.FATES[0]], ["GSPO-N", 1, 3, 6, bd.FATES[2]]]
    assert fates.base.tolist() == pytest.approx([0.01, 0.04, 0.02, 0.04, 0.03], rel=1e-12)
    assert fates.final.tolist() == pytest.approx([0.04, 0.05, 0.01, 0.05, 0.0299], rel=1e-12)
    table = bd.fate_table(fates)
    assert list(table.index) == list(bd.VARIANT_NAMES.values())
    # GRPO: four rare prompts, two rise, one dips and recovers (its bottom at step 2), one ends below
    assert table.loc["GRPO", list(bd.FATES)].tolist() == [0.5, 0.25, 0.25]
    assert table.loc["GRPO", ["rare prompts", "median turn step", "turn low", "turn high"]].tolist() == [4, 2, 2, 2]
    assert table.loc["GSPO-N", list(bd.FATES)].tolist() == [0.0, 0.0, 1.0]
    assert math.isnan(table.loc["GSPO-N", "median turn step"])
    assert table.loc["GRPO-P", "rare prompts"] == 0 and math.isnan(table.loc["GRPO-P", bd.FATES[0]])


def test_fate_table_without_rare_prompts(tiny):
    """A base model with no rare prompt (allowed: init_scale 0) gives empty fates, not a crash."""
    fates = bd.prompt_fates(_sampled(np.full((2, 10, 4), 0.5), steps=[0, 6]), tiny)
    table = bd.fate_table(fates)
    assert (table["rare prompts"] == 0).all()


# pass@8 of three GRPO problems at steps 0, 10, …, 40 (base: step 0):
TIMING = {0: [0.5, 0.4, 0.6, 0.45, 0.6],  # below at 10 and 30, at or above from 40: recovered at 40
          1: [0.5, 0.6, 0.4, 0.45, 0.45],  # below from 20 to the end: dipped, not recovered, final −0.05
          2: [0.5, 0.6, 0.7, 0.5, 0.55]}  # never below (at the base at 30 is not below)


def _timing_frame():
    return pd.DataFrame([dict(step=10 * i, k=8, variant="GRPO", problem=p, **{"pass": value})
                         for p, values in TIMING.items() for i, value in enumerate(values)])


def test_timing_table_and_summary_by_hand(tiny):
    trajectories = bd.boundary_trajectories(_timing_frame(), 8)
    assert list(trajectories.columns) == ["variant", "problem", "step", "gain"]
    assert trajectories[trajectories.problem == 1].gain.tolist() == pytest.approx([0, 0.1, -0.1, -0.05, -0.05])
    timing = bd.timing_table(_timing_frame(), tiny).set_index("problem")
    assert timing.dipped.tolist() == [True, True, False]
    assert timing.recovered_step[0] == 40.0
    assert math.isnan(timing.recovered_step[1]) and math.isnan(timing.recovered_step[2])
    assert timing.final_gain.tolist() == pytest.approx([0.1, -0.05, 0.05])
    summary = bd.timing_summary(timing.reset_index())
    assert summary.loc["GRPO"].tolist() == [2, 1, 40.0, 1]
    assert list(summary.columns) == ["dipped below the base", "recovered by the end", "median recovery step",
                                     "below the base at the end"]
    assert summary.loc["GRPO-N", "dipped below the base"] == 0 and math.isnan(summary.loc["GRPO-N",
                                                                                          "median recovery step"])


# ----------------------------------------------------------------------------------------------
# Checks: the on-policy identity (BD4) and the unbiased estimator (BD2)
# ----------------------------------------------------------------------------------------------


def test_on_policy_gspo_steps_as_grpo_and_off_policy_it_does_not(tiny):
    # one update per batch: both ratios are 1, the gradients agree to rounding
    on_policy = bd.on_policy_identity(tiny, 0, 1)
    assert on_policy <= bd.IDENTITY_TOLERANCE and bd.identity_margins(on_policy)[0] >= 0
    # two updates per batch: the second sees different ratios and clip ranges
    assert bd.on_policy_identity(tiny, 0, 2) > 1e-6
    assert bd.identity_margins(0.0) == [1e-12]
    assert bd.identity_margins(1e-9)[0] < 0


def test_the_estimator_is_unbiased_and_a_plug_in_one_is_not(monkeypatch):
    bias = bd.estimator_bias(8, [1, 2, 4, 8], [0.001, 0.05, 0.3, 0.9])
    assert bias <= 1e-10 and bd.unbiased_margins(bias)[0] > 0
    assert bd.unbiased_margins(1e-6)[0] < 0
    # the plug-in 1 − (1 − c/n)ᵏ is biased: at k = 2 its mean is pass@2 − J(1 − J)/n (0.02625 at J = 0.3, n = 8)
    def plug_in(correct, samples, ks):
        ks = torch.as_tensor(ks, dtype=F64)
        return 1 - (1 - correct.to(F64).unsqueeze(-1) / samples) ** ks

    monkeypatch.setattr(bd.boundary, "pass_at_k_unbiased", plug_in)
    broken = bd.estimator_bias(8, [1, 2], [0.3])
    assert broken == pytest.approx(0.3 * 0.7 / 8, rel=1e-9) and bd.unbiased_margins(broken)[0] < 0


# ----------------------------------------------------------------------------------------------
# The glue of the exact model, on a tiny real run
# ----------------------------------------------------------------------------------------------


def test_exact_glue_has_every_documented_number(tiny, real):
    _, run, frame = real
    gains = bd.final_gains(frame)
    crossovers = bd.crossover_ks(frame)
    timing = bd.timing_table(frame, tiny)
    fates = bd.prompt_fates(run, tiny)
    assert len(fates) > 0  # init_scale 3: the base model has rare prompts
    glue = bd.exact_glue(gains, crossovers, timing, fates, frame, tiny, bd.clip_share(run, tiny))
    expected = {"largest_k", "problems", "steps", "inner_steps", "prompts", "base_pass1", "base_passk", "rare_share"}
    for tag in ("p_minus_n", "gspo_minus_grpo"):
        expected |= {tag, f"{tag}_low", f"{tag}_high"}
    for key in bd.VARIANTS:
        for tag in ("pass1", "passk"):
            expected |= {f"{tag}_{key}", f"{tag}_{key}_low", f"{tag}_{key}_high"}
        expected |= {f"{name}_{key}" for name in ("cross", "median_cross", "below", "recovered", "clip", "lost",
                                                  "turn", "turn_step", "recovery_step")}
    assert set(glue) == expected
    assert (glue["largest_k"], glue["problems"], glue["steps"], glue["inner_steps"], glue["prompts"]) == (8, 2, 6, 2,
                                                                                                        4)
    for key in bd.VARIANTS:
        for tag in ("pass1", "passk"):
            assert glue[f"{tag}_{key}_low"] <= glue[f"{tag}_{key}"] <= glue[f"{tag}_{key}_high"]
        assert 0 <= glue[f"cross_{key}"] <= 2 and 0 <= glue[f"below_{key}"] <= 2
        assert 0 <= glue[f"lost_{key}"] <= 1 and 0 <= glue[f"turn_{key}"] <= 1
        turning = fates[(fates.variant == bd.VARIANT_NAMES[key]) & (fates.fate == bd.FATES[1])].bottom_step
        assert glue[f"turn_step_{key}"] == turning.median() or (turning.empty and math.isnan(glue[f"turn_step_{key}"]))
        cross = crossovers[crossovers.variant == bd.VARIANT_NAMES[key]].crossover
        assert glue[f"median_cross_{key}"] == (cross.median() if cross.notna().any() else math.inf)
    assert glue["pass1_grpo"] == gains.loc[("GRPO", 1), "mean"]
    assert 0 < glue["base_pass1"] <= glue["base_passk"] <= 1
    assert glue["rare_share"] == len(fates) / (10 * 4)
    # the tables of the chapter on the same run
    assert len(bd.crossover_summary(crossovers)) == 5 and len(bd.timing_summary(timing)) == 5
    assert bd.fate_table(fates)["rare prompts"].sum() == len(fates)


# ----------------------------------------------------------------------------------------------
# The language model: fake runs with known correct counts
# ----------------------------------------------------------------------------------------------

LM_SETTINGS = {"GRPO": ("token", "all"), "GRPO-N": ("token", "negative"), "GRPO-P": ("token", "positive"),
               "GSPO": ("sequence", "all"), "GSPO-N": ("sequence", "negative")}


def _lm_runs():
    """Two GRPO seeds × five variants, validation at steps 0, 10, 20, n = 4 samples on two problems. Every
    variant but GRPO-N: correct counts [1, 0] → [1, 1] → [2, 1], entropy 0.5, 0.3, 0.4 (it turns); GRPO-N:
    [1, 0] → [1, 0] → [0, 0], entropy 0.5, 0.4, 0.3 (no turn). Accuracy 0.3 → 0.4 (seed 0), 0.3 → 0.5 (seed 1)."""
    runs = {}
    for grpo_seed, accuracy in ((0, [0.3, 0.35, 0.4]), (1, [0.3, 0.3, 0.5])):
        runs[grpo_seed] = []
        for name, (level, kept) in LM_SETTINGS.items():
            negative = name == "GRPO-N"
            evals = pd.DataFrame({"step": [0, 10, 20], "accuracy": accuracy,
                                  "entropy": [0.5, 0.4, 0.3] if negative else [0.5, 0.3, 0.4],
                                  "correct_counts": [[1, 0], [1, 0], [0, 0]] if negative else [[1, 0], [1, 1], [2, 1]]})
            runs[grpo_seed].append(SimpleNamespace(
                config=grpo.GRPORunConfig(importance_sampling_level=level, advantage_filter=kept), evals=evals))
    return runs


def test_lm_frames_estimate_pass_at_k_by_hand():
    evals, passes = bd.lm_frames(_lm_runs(), [1, 2, 4], 4)
    assert len(evals) == 2 * 5 * 3 and set(evals.columns) == {"step", "accuracy", "entropy", "variant", "grpo_seed"}
    assert len(passes) == 2 * 5 * 3 * 3 and set(passes.columns) == {"k", "pass", "step", "variant", "grpo_seed"}
    assert set(evals.variant) == set(bd.VARIANT_NAMES.values())
    value = passes.set_index(["grpo_seed", "variant", "step", "k"])["pass"]
    # n = 4, counts [1, 0]: pass@1 = mean(1/4, 0) = 1/8; pass@2 = mean(1 − C(3,2)/C(4,2), 0) = mean(1/2, 0) = 1/4;
    # pass@4 = mean(1, 0) = 1/2
    assert [value[(0, "GSPO", 0, k)] for k in (1, 2, 4)] == pytest.approx([0.125, 0.25, 0.5], abs=1e-12)
    # counts [2, 1]: pass@1 = mean(1/2, 1/4) = 3/8; pass@2 = mean(1 − 1/6, 1 − 3/6) = 2/3; pass@4 = 1
    assert [value[(1, "GRPO", 20, k)] for k in (1, 2, 4)] == pytest.approx([0.375, 2 / 3, 1.0], abs=1e-12)
    assert [value[(1, "GRPO-N", 20, k)] for k in (1, 2, 4)] == [0.0, 0.0, 0.0]


def test_lm_gains_entropy_changes_and_their_margins():
    evals, passes = bd.lm_frames(_lm_runs(), [1, 2, 4], 4)
    gains = bd.lm_gains(passes)
    assert gains.index.names == ["variant", "k"] and len(gains) == 5 * 3
    # last minus step 0: 3/8 − 1/8, 2/3 − 1/4, 1 − 1/2; GRPO-N: 0 − (1/8, 1/4, 1/2); the same on both seeds
    assert [gains.loc[("GRPO", k), "mean"] for k in (1, 2, 4)] == pytest.approx([0.25, 5 / 12, 0.5], abs=1e-12)
    assert gains.loc[("GRPO-N", 4)].tolist() == pytest.approx([-0.5] * 3, abs=1e-12)
    changes = bd.lm_entropy_changes(evals)
    assert list(changes.index) == sorted(bd.VARIANT_NAMES.values())
    # entropy 0.5, 0.3, 0.4: change −0.1, rebound 0.4 − 0.3 = 0.1; 0.5, 0.4, 0.3: change −0.2, rebound 0
    assert changes.loc["GRPO", ("entropy_change", "mean")] == pytest.approx(-0.1, abs=1e-12)
    assert changes.loc["GRPO", ("rebound", "mean")] == pytest.approx(0.1, abs=1e-12)
    assert changes.loc["GRPO-N", ("entropy_change", "mean")] == pytest.approx(-0.2, abs=1e-12)
    assert changes.loc["GRPO-N", ("rebound", "mean")] == 0
    # accuracy gains 0.1 and 0.2 over the seeds: mean 0.15, half-width 12.706 · (0.1/√2)/√2 = 12.706 · 0.05
    assert changes.loc["GRPO", "accuracy_gain"].tolist() == pytest.approx(
        [0.15, 0.15 - T_975_1 * 0.05, 0.15 + T_975_1 * 0.05], rel=1e-9)
    # the table the page shows: one "mean [low, high]" text per quantity
    cells = bd.change_cells(changes)
    assert list(cells.columns) == list(bd.CHANGE_COLUMNS.values()) and list(cells.index) == list(changes.index)
    assert cells.loc["GRPO-N", "entropy change (nats)"] == "-0.200 [-0.200, -0.200]"
    low, high = 0.15 - T_975_1 * 0.05, 0.15 + T_975_1 * 0.05
    assert cells.loc["GRPO", "accuracy gain"] == f"0.150 [{low:.3f}, {high:.3f}]"
    # no turn: 0.01 − 0.1 < 0 where the entropy rebounds (fails), 0.01 − 0 where it does not
    margins = bd.no_turn_margins(changes)
    assert margins == pytest.approx([-0.09, 0.01, -0.09, -0.09, -0.09], abs=1e-12)
    flat = changes.copy()
    flat[("rebound", "mean")] = 0.0  # no variant's entropy rises from its lowest point: every margin passes
    assert bd.no_turn_margins(flat) == pytest.approx([0.01] * 5)
    assert bd.lm_mean_margins(gains, [("GRPO", 1), ("GRPO-N", 1)]) == pytest.approx([0.25, -0.125], abs=1e-12)
    assert bd.lm_mean_margins(gains, [("GRPO", 1), ("GRPO-N", 1)], sign=-1) == pytest.approx([-0.25, 0.125],
                                                                                             abs=1e-12)
    assert bd.lm_mean_margins(changes["entropy_change"], ["GRPO", "GRPO-N"], -1) == pytest.approx([0.1, 0.2],
                                                                                                  abs=1e-12)


def test_lm_glue_has_every_documented_number(tiny):
    config = dataclasses.replace(tiny, lm_pass_samples=4)  # LM ks 1, 2, 4
    lm_config = config.lm_config()
    evals, passes = bd.lm_frames(_lm_runs(), config.lm_ks, config.lm_pass_samples)
    glue = bd.lm_glue(bd.lm_gains(passes), bd.lm_entropy_changes(evals), config, lm_config)
    expected = {"lm_largest_k", "lm_steps", "lm_seeds", "lm_problems", "lm_iterations", "lm_largest_rebound"}
    for key in bd.VARIANTS:
        for tag in ("pass1", "passk"):
            expected |= {f"lm_{tag}_{key}", f"lm_{tag}_{key}_low", f"lm_{tag}_{key}_high"}
        expected |= {f"lm_entropy_{key}", f"lm_rebound_{key}", f"lm_acc_{key}"}
    assert set(glue) == expected
    assert (glue["lm_largest_k"], glue["lm_steps"], glue["lm_seeds"], glue["lm_problems"],
            glue["lm_iterations"]) == (4, 40, 3, 32, 2)
    assert glue["lm_pass1_grpo"] == pytest.approx(0.25, abs=1e-12)
    assert glue["lm_passk_gspo"] == pytest.approx(0.5, abs=1e-12)  # the largest k is 4
    assert glue["lm_passk_grpo_n"] == pytest.approx(-0.5, abs=1e-12)
    assert glue["lm_entropy_grpo_n"] == pytest.approx(-0.2, abs=1e-12)
    assert glue["lm_rebound_grpo"] == pytest.approx(0.1, abs=1e-12) and glue["lm_rebound_grpo_n"] == 0
    assert glue["lm_largest_rebound"] == pytest.approx(0.1, abs=1e-12)
    assert glue["lm_acc_gspo_n"] == pytest.approx(0.15, abs=1e-12)


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------


def test_drawing_functions_draw_every_series(tiny):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = bd.pass_frame(_pass_run(tiny), tiny)
    style = bd.variant_style()
    assert set(style["palette"]) == set(style["dashes"]) == {"base model"} | set(bd.VARIANT_NAMES.values())
    # colour by the advantages that update, dashes for the sequence-level ratio
    assert style["palette"]["GSPO-N"] == style["palette"]["GRPO-N"] != style["palette"]["GRPO-P"]
    assert style["dashes"]["GSPO"] == (4, 2) and style["dashes"]["GRPO"] == ""
    figure, axes = plt.subplots(1, 7)
    try:
        bd.draw_curves(axes[:2], frame)
        assert axes[0].get_xscale() == "log" and len(axes[0].get_lines()) >= 6  # the base and five variants
        assert axes[1].get_ylabel() == "pass@k − base model"
        bd.draw_trajectories(axes[2:4], frame, 8)
        assert axes[3].get_ylabel() == "pass@8 − base model" and len(axes[3].get_lines()) >= 6
        evals, passes = bd.lm_frames(_lm_runs(), [1, 2, 4], 4)
        bd.draw_lm(axes[4:], evals, passes)
        assert axes[5].get_ylabel() == "mean token entropy (nats)" and len(axes[5].get_lines()) >= 5
    finally:
        plt.close(figure)


# ----------------------------------------------------------------------------------------------
# The recorded long run
# ----------------------------------------------------------------------------------------------


def _long_run_folder(tmp_path, tiny, real, parameters=None):
    """A run folder whose metrics.json has the long run's parameters and a headline like the chapter's."""
    _, run, frame = real
    gains, crossovers = bd.final_gains(frame), bd.crossover_ks(frame)
    timing, fates = bd.timing_table(frame, tiny), bd.prompt_fates(run, tiny)
    exact = bd.exact_glue(gains, crossovers, timing, fates, frame, tiny, bd.clip_share(run, tiny))
    evals, passes = bd.lm_frames(_lm_runs(), [1, 2, 4], 4)
    gains = bd.lm_gains(passes).reset_index().to_dict(orient="records")
    # metrics.json keys are texts: the chapter's writer turns the table's (column, statistic) pairs into str(pair)
    changes = [{str(key): value for key, value in row.items()}
               for row in bd.lm_entropy_changes(evals).reset_index().to_dict(orient="records")]
    metrics = {"device": "cpu", "seed": 0, "run_seconds": 600.0, "versions": {"torch": "x"},
               "parameters": bd.PRESETS["ci"] | bd.LONG_RUN if parameters is None else parameters,
               "headline": {"exact": exact, "lm": {"changes": changes, "gains": gains}}}
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps(metrics, default=float), encoding="utf-8")
    (folder / "boundary_lm.png").write_bytes(b"png")
    return folder


def test_long_record_round_trip_table_and_glue(tmp_path, tiny, real):
    path = bd.write_long_record(_long_run_folder(tmp_path, tiny, real), tmp_path / "rec" / "long.json",
                                bd.long_run_command("out"), "2026-11-30")
    record = bd.read_long_record(path)
    assert bd.long_record_figure(path).read_bytes() == b"png"  # copied beside the record
    bd.long_record_figure(path).unlink()
    with pytest.raises(ValueError, match="figure is missing"):
        bd.long_record_figure(path)
    assert record["command"] == ("rlvr-book run boundary -p steps 3000 -p seeds 32 -p lm_steps 400 "
                                 "-p lm_eval_every 50 --output out")
    assert record["date"] == "2026-11-30" and record["run_seconds"] == 600.0
    table = bd.long_record_table(record)
    assert list(table.index) == list(bd.VARIANT_NAMES.values())
    assert table.loc["GRPO", "LM entropy change"] == "-0.100"  # the fake LM runs: entropy 0.5, 0.3, 0.4
    glue = bd.long_record_glue(record)
    assert glue["long_steps"] == bd.LONG_RUN["steps"] and glue["long_minutes"] == 10.0
    assert glue["long_rebound"] == pytest.approx(0.1) and set(glue) >= {f"long_passk_{v}" for v in bd.VARIANTS}
    # the fake LM runs' gains (see test_lm_gains_entropy_changes_and_their_margins): GRPO +1/4 at k = 1, +1/2 at 4
    assert glue["long_lm_largest_k"] == 4 and glue["long_lm_pass1_grpo"] == pytest.approx(0.25)
    assert glue["long_lm_passk_grpo"] == pytest.approx(0.5) and glue["long_lm_entropy_grpo"] == pytest.approx(-0.1)


def test_read_long_record_rejects_missing_stale_or_broken_records(tmp_path, tiny, real):
    with pytest.raises(ValueError, match="no recorded long run"):
        bd.read_long_record(tmp_path / "none.json")
    stale = bd.PRESETS["ci"] | bd.LONG_RUN | {"steps": 10}
    path = bd.write_long_record(_long_run_folder(tmp_path, tiny, real, stale), tmp_path / "stale.json", "c", "d")
    with pytest.raises(ValueError, match="differ from the 'ci' preset with LONG_RUN: steps"):
        bd.read_long_record(path)
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        bd.read_long_record(broken)
    record = json.loads(path.read_text(encoding="utf-8"))
    del record["device"]
    broken.write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(ValueError, match="field 'device'"):
        bd.read_long_record(broken)
    assert bd.LONG_RECORD.as_posix() == "data/boundary/long-run.json"
    assert bd.ROBUSTNESS_RECORD.as_posix() == "data/robustness/boundary.json"
