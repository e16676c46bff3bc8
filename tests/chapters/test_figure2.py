"""Tests of rlvr_dynamics.chapters.figure2: the parameters and the gap-or-clock design, the task and
warm-up checks, identity (LM1) on sampled groups, the run summary and the margins of the chapter's
findings, the logistic fit, the held-out test "gap or clock?" (the clock table, the fits, the intervals
over GRPO seeds, the design's precision) and its panel, Theorem 1 per prompt, the recorded GPU run's
schema and the robustness record's glue — on constructed runs, each margin shown to go negative on a
counter-example."""

import dataclasses
import json
import math
from fractions import Fraction
from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import special

from rlvr_dynamics.chapters import figure2, statistics
from rlvr_dynamics.files import project_root
from rlvr_dynamics.lm import grpo
from rlvr_dynamics.lm import model as lm_model
from rlvr_dynamics.lm import task as lm_task
from rlvr_dynamics.lm.warmup import WarmupResult

matplotlib.use("Agg")


def _problem(question, solution, answer):
    return lm_task.Problem(question, solution, Fraction(answer), question)


# ----------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["ci", "paper"])
def test_presets_set_every_field_with_the_min_gain(preset):
    names = {f.name for f in dataclasses.fields(figure2.Figure2Config)}
    assert set(figure2.PRESETS[preset]) == names
    config = figure2.Figure2Config(**figure2.PRESETS[preset])
    config.check()
    assert config.min_gain == figure2.MIN_GAIN == 0.10


@pytest.mark.parametrize("preset", ["ci", "paper"])
def test_the_design_has_runs_whose_clocks_differ(preset):
    config = figure2.Figure2Config(**figure2.PRESETS[preset])
    runs = config.run_configs()
    assert len({run.learning_rate for run in runs}) >= 2
    assert {run.lr_schedule for run in runs} == {"constant", "cosine"}
    assert {run.optimizer for run in runs} == {"adamw", "sgd"}
    assert len({run.steps for run in runs}) == len(runs)  # distinct horizons: k and k/K differ
    assert config.grpo_seeds == 3
    assert config.tracked_run_numbers() and all(number <= len(runs) for number in config.tracked_run_numbers())


def _typed(key: str) -> float:
    """The number a SETUP_NUMBERS key shows the reader ("95% of" → 0.95)."""
    number = float(key.rstrip("% of"))
    return number / 100 if "%" in key else number


def test_setup_numbers_are_the_constants_the_code_uses():
    for key, value in figure2.SETUP_NUMBERS.items():
        assert _typed(key) == pytest.approx(value, abs=1e-12), key
    # where the number is a named constant of the module or the preset, it is that constant
    named = {"0.1": figure2.MIN_GAIN, "95%": figure2.INTERVAL_LEVEL, "0.015": figure2.MAX_ACCURACY_SE,
             "0.4": figure2.MIN_SPAN, "2.5": figure2.PRESETS["ci"]["temperature"],
             "0.85": figure2.PRESETS["ci"]["warmup_target"]}
    for key in named.keys() & figure2.SETUP_NUMBERS.keys():
        assert figure2.SETUP_NUMBERS[key] == named[key], key
    assert figure2.SETUP_NUMBERS["0.1"] == figure2.PRESETS["ci"]["min_gain"]


# ----------------------------------------------------------------------------------------------
# The task and the warm-up
# ----------------------------------------------------------------------------------------------


def test_overlap_and_reference_margins_by_hand():
    train = [_problem("1+2=", "3", 3), _problem("2+2=", "4", 4)]
    validation = [_problem("3+4=", "7", 7), _problem("5+1=", "6", 6)]
    assert figure2.overlap_margins(train, validation) == [0]
    assert figure2.overlap_margins(train, validation + [train[1], train[0]]) == [-2]  # two shared questions
    assert figure2.reference_reward_margins(validation).tolist() == [0.0, 0.0]
    wrong = validation + [_problem("1+1=", "3", 2), _problem("9+9=", "so 9+9=18\n#### 18", 18)]
    assert figure2.reference_reward_margins(wrong).tolist() == [0.0, 0.0, -1.0, 0.0]
    generated = lm_task.generate_problems("word", 20, seed=3)
    assert (figure2.reference_reward_margins(generated) == 0).all()


def test_extractor_margins_hold_and_fail_on_a_wrong_expectation():
    extracted = figure2.extract_answers()
    assert extracted["#### 1,234"] == 1234 and extracted["3.50 dollars"] == Fraction(7, 2)
    assert extracted["no number"] is None
    assert figure2.extractor_margins(extracted) == [0] * len(figure2.EXTRACTOR_CASES)
    wrong = dict(figure2.EXTRACTOR_CASES, **{"#### 1,234": 1235, "no number": 0, "-7": None})
    assert figure2.extractor_margins(extracted, wrong) == [-1, 0, 0, -1, 0, -1]
    assert figure2.describe_extractor({"7": Fraction(7), "x": None}) == "extractor: {'7': 7.0, 'x': None}"


def test_describe_problems_by_hand():
    train = [_problem("1+2=", "3", 3), _problem("2+2=", "4", 4), _problem("3+3=", "6", 6)]
    text = figure2.describe_problems(train, train[:1], [_problem("Q: x?\nA: ", "1\n#### 1", 1)])
    assert text.splitlines() == ["3 training and 1 validation problems; examples:",
                                 "  prompt '1+2=' → reference '3'", "  prompt '2+2=' → reference '4'",
                                 "  prompt 'Q: x?\\nA: ' → reference '1\\n#### 1'"]


def test_warmup_margins_headline_and_description_by_hand():
    warmup = WarmupResult(steps=50, reached_target=True, history=[(25, 0.1234), (50, 0.4)])
    assert figure2.warmup_margins(warmup, 0.35) == [pytest.approx(0.05)]
    assert figure2.warmup_margins(warmup, 0.45)[0] == pytest.approx(-0.05)  # stopped below its target
    assert figure2.warmup_headline(warmup) == {"warmup_steps": 50, "warmup_accuracy": 0.4}
    assert figure2.describe_warmup(139_968, warmup, 0.35).splitlines() == [
        "model: 139,968 parameters",
        "warm-up: 50 steps, sampled validation accuracy 0.400 (target 0.35); reached: True",
        "accuracy checks (step, accuracy): [(25, 0.123), (50, 0.4)]"]
    assert figure2.describe_warmup(10, None, 0.0) == "model: 10 parameters"


# ----------------------------------------------------------------------------------------------
# Identity (LM1)
# ----------------------------------------------------------------------------------------------


def test_direction_errors_on_a_tiny_model(monkeypatch):
    tokenizer = lm_model.byte_tokenizer()
    model = lm_model.build_model("ci", tokenizer, seed=0)
    config = figure2.Figure2Config(**figure2.PRESETS["ci"])
    problems = lm_task.generate_problems("arithmetic", 8, seed=0)
    # An untrained model answers nothing right: every group would be all-wrong. Reward alternately
    # instead, so every group has both outcomes (the identity holds for any rewards of both kinds).
    monkeypatch.setattr(figure2.lm_task, "correctness_reward",
                        lambda texts, answers: [float(i % 2) for i in range(len(texts))])
    errors = figure2.direction_errors(model, tokenizer, problems, config, torch.Generator().manual_seed(0), "cpu",
                                      groups=2)
    assert len(errors) == 2 * len(grpo.SCALE_REWARDS)  # stops after two mixed groups
    assert max(errors) < figure2.DIRECTION_TOLERANCE
    assert (figure2.direction_margins(errors) > 0).all()
    assert figure2.describe_direction_errors(errors).startswith("(LM1) on 2 mixed groups × 3 ")
    # groups with one outcome only are skipped
    monkeypatch.setattr(figure2.lm_task, "correctness_reward", lambda texts, answers: [0.0] * len(texts))
    assert figure2.direction_errors(model, tokenizer, problems[:2], config, torch.Generator().manual_seed(0),
                                    "cpu") == []


def test_direction_margins_fail_above_the_tolerance():
    assert figure2.direction_margins([1e-7, 2e-5]).tolist() == pytest.approx([1e-5 - 1e-7, -1e-5])


# ----------------------------------------------------------------------------------------------
# Constructed runs
# ----------------------------------------------------------------------------------------------


def _fake_run(step_lengths, gaps, accuracy_every=2, loss_type="grpo", optimizer="adamw", **columns):
    steps = np.arange(1, len(step_lengths) + 1)
    frame = pd.DataFrame({"step": steps, "step_length": step_lengths, "gap_estimate": gaps, "gap_norm": gaps,
                          "alignment": 0.5 * np.asarray(gaps)} | columns)
    evals = pd.DataFrame({"step": np.arange(0, len(steps) + 1, accuracy_every)})
    evals["accuracy"] = np.linspace(0.3, 0.6, len(evals))
    config = grpo.GRPORunConfig(loss_type=loss_type, optimizer=optimizer, steps=len(steps), completions_per_step=16,
                                num_generations=8)
    return grpo.GRPORun(config, frame, evals, 0.0)


def _tracked_run(**change):
    """Four steps with every tracked column, values chosen for hand computation."""
    columns = dict(mixed_prompts=[1.0, 2.0, 2.0, 1.0], gradient_gap_cosine=[0.9, 1.0, 0.95, 0.95],
                   alignment_cosine=[0.1, 0.2, 0.1, 0.2], prompt_gap_norm_mean=[4.0, 4.0, 8.0, 8.0])
    step_lengths, gaps = change.pop("step_lengths", [1.0] * 4), change.pop("gaps", [2.0, 2.0, 4.0, 4.0])
    return _fake_run(step_lengths, gaps, **(columns | change))


def test_run_summary_by_hand():
    run = _tracked_run(gap_estimate=[2.0, 2.2, 4.0, 3.6], alignment=[1.0, -1.0, 1.0, 1.0])
    (row,) = figure2.run_summary([run]).to_dict("records")
    assert row["run"] == "grpo / group / lr 0.0003"
    assert (row["accuracy at 0"], row["final accuracy"]) == (0.3, 0.6) and row["gain"] == pytest.approx(0.3)
    assert row["mixed prompts"] == pytest.approx(1.5 / 2)  # 2 prompts per step (16 completions / G = 8)
    assert row["cos(−∇L, Δ)"] == pytest.approx(0.95) and row["cos(u, Δ)"] == pytest.approx(0.15)
    assert row["u·Δ > 0"] == 0.75
    assert row["(a)/‖Δ‖"] == pytest.approx(1.0)  # ratios 1, 1.1, 1, 0.9: median 1
    assert row["mean ‖Δ_q‖/‖Δ‖"] == pytest.approx(2.0)
    assert figure2.accuracy_gain(run) == pytest.approx(0.3)
    assert figure2.gain_margins(run, 0.1) == [pytest.approx(0.2)]
    assert figure2.gain_margins(run, 0.4)[0] == pytest.approx(-0.1)


def test_run_summary_counts_only_the_steps_that_moved():
    # the first step did not move (a warm-up from 0): its cosine and its u·Δ are left out
    run = _tracked_run(step_lengths=[0.0, 1.0, 1.0, 1.0], alignment=[-1.0, -1.0, 1.0, 1.0],
                       alignment_cosine=[0.9, 0.1, 0.2, 0.3])
    (row,) = figure2.run_summary([run]).to_dict("records")
    assert row["cos(u, Δ)"] == pytest.approx(0.2)  # (0.1 + 0.2 + 0.3)/3, not 0.375 over every step
    assert row["u·Δ > 0"] == pytest.approx(2 / 3)  # not 1/2
    assert row["cos(−∇L, Δ)"] == pytest.approx(0.95)  # every step: the gradient exists where u = 0


def _accuracy_run(accuracy, eval_problems=4, eval_samples=2):
    run = _fake_run([1.0] * 4, [2.0] * 4)
    config = dataclasses.replace(run.config, eval_problems=eval_problems, eval_samples=eval_samples)
    evals = pd.DataFrame({"step": np.arange(0, 2 * len(accuracy), 2), "accuracy": accuracy})
    return grpo.GRPORun(config, run.steps, evals, 0.0)


def test_rise_margins_by_hand_and_on_counter_examples():
    # 4 problems × 2 samples: the accuracy moves in steps of 1/8, the margin is the gain − 1/16
    assert figure2.accuracy_resolution(_accuracy_run([0.5, 0.5])) == 1 / 8
    assert figure2.rise_margins([_accuracy_run([0.25, 0.5, 0.625]), _accuracy_run([0.5, 0.625])]) == [
        pytest.approx(0.375 - 1 / 16), pytest.approx(1 / 16)]  # one step up still holds
    assert figure2.rise_margins([_accuracy_run([0.5, 0.75, 0.5])]) == [pytest.approx(-1 / 16)]  # back where it began
    assert figure2.rise_margins([_accuracy_run([0.5, 0.375])]) == [pytest.approx(-0.1875)]  # lower
    # rounding: equal accuracies computed two ways are not a rise
    assert figure2.rise_margins([_accuracy_run([0.1 + 0.2, 0.3])])[0] < 0
    assert figure2.accuracy_resolution(_fake_run([1.0], [1.0])) == 1 / 1024  # the default 256 × 4


def _glue_runs():
    """Two AdamW runs and one SGD run (see test_table_glue_by_hand)."""
    return [_tracked_run(alignment=[0.2, 0.2, 0.4, 0.4]),
            _tracked_run(gap_estimate=[2.0, 2.2, 4.0, 3.6], alignment=[1.0, -1.0, 1.0, 1.0],
                         alignment_cosine=[0.3] * 4, loss_type="dr_grpo"),
            _tracked_run(alignment=[0.2, 0.2, 0.4, 0.4], alignment_cosine=[0.95, 0.9, 0.95, 0.9], optimizer="sgd")]


def test_table_glue_by_hand():
    runs = _glue_runs()
    glued = figure2.table_glue(runs, figure2.run_summary(runs))
    assert glued == pytest.approx({"ratio_low": 1.0, "ratio_high": 1.0, "prompt_gap_low": 2.0, "prompt_gap_high": 2.0,
                                   "gain_low": 0.3, "gain_high": 0.3, "gradient_cosine_min": 0.95,
                                   "adam_cosine_low": 0.15, "adam_cosine_high": 0.3,  # the SGD run's 0.925 left out
                                   "sgd_cosine_min": 0.925, "positive_min": 0.75,
                                   # AdamW runs only; (a)/(b) with unit steps: 12/1.2 = 10, and
                                   # 11.8/(1 + 0 + 1 + 1) (u·Δ clipped at 0)
                                   "smaller_min": 11.8 / 3})
    assert all(isinstance(v, float) for v in glued.values())


def test_table_glue_is_nan_without_runs_of_an_optimizer():
    adam, sgd = _glue_runs()[:2], _glue_runs()[2:]
    glued = figure2.table_glue(adam, figure2.run_summary(adam))
    assert math.isnan(glued["sgd_cosine_min"]) and glued["adam_cosine_low"] == pytest.approx(0.15)
    glued = figure2.table_glue(sgd, figure2.run_summary(sgd))
    assert [math.isnan(glued[name]) for name in ("adam_cosine_low", "adam_cosine_high", "smaller_min")] == [True] * 3
    assert glued["sgd_cosine_min"] == pytest.approx(0.925)


ADAM_MARGINS = ["gradient_along_gap", "estimate_matches", "prompt_gap_longer", "positive_alignment", "update_off_gap",
                "measured_smaller"]


def test_run_margins_hold_by_hand_and_each_fails_on_a_counter_example():
    # cumulative: estimate Σ 1·(2, 2, 4, 4) = 12, measured Σ 1·0.1·(2, 2, 4, 4) = 1.2: ratio 10
    run = _tracked_run(alignment=[0.2, 0.2, 0.4, 0.4])
    margins = figure2.run_margins(run)
    assert list(margins) == ADAM_MARGINS
    expected = {"gradient_along_gap": 0.05, "estimate_matches": 0.15, "prompt_gap_longer": 0.0,
                "positive_alignment": 0.05, "update_off_gap": 0.15, "measured_smaller": 7.0}
    for name, value in expected.items():
        assert margins[name] == [pytest.approx(value)], name
    broken = figure2.run_margins(_tracked_run(
        gradient_gap_cosine=[0.5] * 4, alignment_cosine=[0.5] * 4, gap_estimate=[3.0, 3.0, 6.0, 6.0],
        prompt_gap_norm_mean=[2.0, 2.0, 4.0, 4.0], alignment=[1.0, -1.0, 2.0, 2.0]))
    # cosines 0.5 and 0.5, ratios 1.5 and 1, u·Δ > 0 at 3/4 of steps: broken; (a) = 18 vs (b) = 5 (3.6×): holds
    assert [broken[name][0] < 0 for name in expected] == [True, True, True, True, True, False]
    close = figure2.run_margins(_tracked_run(alignment=[1.0, 1.0, 2.0, 2.0]))  # (b) = 6, (a) = 12: only 2×
    assert close["measured_smaller"] == [pytest.approx(-1.0)]


def test_run_margins_over_the_steps_that_moved():
    # the first step did not move: over every step u·Δ > 0 at 3/4 and the mean cosine 0.375 (both would fail)
    run = _tracked_run(step_lengths=[0.0, 1.0, 1.0, 1.0], alignment=[0.0, 0.2, 0.4, 0.4],
                       alignment_cosine=[0.9, 0.1, 0.2, 0.3])
    margins = figure2.run_margins(run)
    assert margins["positive_alignment"] == [pytest.approx(0.05)] and margins["update_off_gap"] == [pytest.approx(0.1)]
    assert margins["measured_smaller"] == [pytest.approx(10 / 1.0 - 3)]  # (a) = 2 + 4 + 4, (b) = 0.2 + 0.4 + 0.4
    moved_back = _tracked_run(step_lengths=[0.0, 1.0, 1.0, 1.0], alignment=[1.0, -0.2, 0.4, 0.4])
    assert figure2.run_margins(moved_back)["positive_alignment"] == [pytest.approx(2 / 3 - 0.95)]


def test_sgd_run_margins_ask_for_an_update_along_the_gap():
    run = _tracked_run(optimizer="sgd", alignment=[0.2, 0.2, 0.4, 0.4], alignment_cosine=[0.95] * 4)
    margins = figure2.run_margins(run)
    assert list(margins) == ADAM_MARGINS[:4] + ["update_along_gap"]  # no update_off_gap, no measured_smaller
    assert margins["update_along_gap"] == [pytest.approx(0.05)]
    off = _tracked_run(optimizer="sgd", alignment=[0.2, 0.2, 0.4, 0.4], alignment_cosine=[0.5] * 4)
    assert figure2.run_margins(off)["update_along_gap"] == [pytest.approx(-0.4)]
    # over the steps that moved: a cosine of 0 where the update was 0 does not count (0.7125 over every step)
    still = _tracked_run(optimizer="sgd", step_lengths=[0.0, 1.0, 1.0, 1.0], alignment_cosine=[0.0, 0.95, 0.95, 0.95])
    assert figure2.run_margins(still)["update_along_gap"] == [pytest.approx(0.05)]


def test_cumulative_gap_by_hand():
    run = _fake_run([1.0, 2.0, 1.0, 2.0], [1.0, 1.0, 3.0, 3.0])
    cumulative = run.cumulative()
    assert cumulative["estimate"].tolist() == [0, 3, 12]  # 1·1 + 2·1, then + 1·3 + 2·3
    assert cumulative["measured"].tolist() == [0, 1.5, 6]
    assert cumulative["path"].tolist() == [0, 3, 6]


# ----------------------------------------------------------------------------------------------
# Figure labels, the per-step diagnostics, the logistic fit
# ----------------------------------------------------------------------------------------------


def test_figure_labels_spell_out_every_setting():
    run = _fake_run([1.0], [1.0], loss_type="dr_grpo")
    steps = run.config.steps
    expected = f"AdamW lr 0.0003 (constant, K = {steps}), Dr. GRPO loss, advantages ÷ group std"
    assert figure2.figure_label(run) == expected
    changed = dataclasses.replace(run.config, scale_rewards="none", advantage_filter="negative", optimizer="sgd",
                                  lr_schedule="cosine")
    unscaled = SimpleNamespace(config=changed)
    assert figure2.figure_label(unscaled) == (f"SGD lr 0.0003 (warm-up + cosine, K = {steps}), Dr. GRPO loss, "
                                              "advantages not std-scaled, negative advantages only")
    assert set(figure2.LOSS_NAMES) == set(grpo.LOSS_TYPES) and set(figure2.SCALE_NAMES) == set(grpo.SCALE_REWARDS)
    assert set(figure2.FILTER_NAMES) == set(grpo.ADVANTAGE_FILTERS)
    assert set(figure2.OPTIMIZER_NAMES) == set(grpo.OPTIMIZERS)
    assert set(figure2.SCHEDULE_NAMES) == set(grpo.LR_SCHEDULES)


def test_diagnostics_frames():
    runs = [_fake_run([1.0, 2.0], [1.0, 3.0], gradient_gap_cosine=[0.9, 1.0], alignment_cosine=[0.1, 0.2])]
    long, gaps, cosines = figure2.diagnostics_frames(runs)
    assert long["run"].tolist() == ["AdamW lr 0.0003 (constant, K = 2), GRPO loss, advantages ÷ group std"] * 2
    estimate, measured = figure2.GAP_NAMES["gap_estimate"], figure2.GAP_NAMES["gap_norm"]
    assert gaps[["step", "gap", "value"]].values.tolist() == [[1, estimate, 1.0], [2, estimate, 3.0],
                                                             [1, measured, 1.0], [2, measured, 3.0]]
    assert cosines["cosine with Δ"].tolist() == ["cos(−∇L, Δ)"] * 2 + ["cos(u, Δ)"] * 2  # no raw column names
    assert cosines["value"].tolist() == [0.9, 1.0, 0.1, 0.2]


def test_logistic_fit_recovers_known_parameters():
    gap = np.linspace(0, 10, 30)
    fit = figure2.logistic_fit(gap, special.expit(-1.5 + 0.4 * gap))
    assert fit["intercept"] == pytest.approx(-1.5, abs=1e-4) and fit["slope"] == pytest.approx(0.4, abs=1e-5)
    assert fit["r2"] == pytest.approx(1.0) and fit["rmse"] == pytest.approx(0, abs=1e-6)
    assert figure2.logistic(np.array([0.0]), 0.0, 1.0).tolist() == [0.5]


def test_logistic_fit_falls_back_to_the_log_odds_fit_when_curve_fit_fails(monkeypatch):
    x = np.linspace(0, 1, 9)
    accuracy = np.array([0.0, 0.1, 0.15, 0.3, 0.35, 0.6, 0.7, 0.9, 1.0])  # 0 and 1: clipped on the log-odds
    converged = figure2.logistic_fit(x, accuracy)

    def no_convergence(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found: Number of calls to function has reached maxfev")

    monkeypatch.setattr(figure2.optimize, "curve_fit", no_convergence)
    fit = figure2.logistic_fit(x, accuracy)
    slope, intercept = np.polyfit(x, special.logit(np.clip(accuracy, 1e-3, 1 - 1e-3)), 1)
    assert (fit["intercept"], fit["slope"]) == pytest.approx((intercept, slope))
    residual = accuracy - special.expit(intercept + slope * x)
    assert fit["rmse"] == pytest.approx(np.sqrt(np.mean(residual ** 2)))
    assert fit["r2"] == pytest.approx(1 - (residual ** 2).sum() / ((accuracy - accuracy.mean()) ** 2).sum())
    assert converged["rmse"] < fit["rmse"]  # the least-squares fit is a better one: the fallback is only the start


# ----------------------------------------------------------------------------------------------
# Gap or clock: the clock table, the held-out fits and their comparison over GRPO seeds
# ----------------------------------------------------------------------------------------------


def _clock_run(alignment, accuracy, learning_rate, step_lengths=None, optimizer="adamw", lr_schedule="constant",
               se=0.01):
    """A run of K = len(alignment) steps (unit gaps) evaluated at every step 0..K: ``accuracy`` (K + 1 values),
    standard error ``se``; its label differs by ``learning_rate``, ``optimizer`` and ``lr_schedule``."""
    steps = len(alignment)
    run = _fake_run([1.0] * steps if step_lengths is None else step_lengths, [1.0] * steps, alignment=alignment)
    config = dataclasses.replace(run.config, learning_rate=learning_rate, optimizer=optimizer, lr_schedule=lr_schedule)
    evals = pd.DataFrame({"step": np.arange(steps + 1), "accuracy": accuracy, "accuracy_se": se})
    return grpo.GRPORun(config, run.steps, evals, 0.0)


def test_clock_table_by_hand():
    first = _clock_run([1.0, -1.0, 2.0], [0.1, 0.2, 0.3, 0.4], 1e-3, step_lengths=[1.0, 2.0, 1.0])
    second = _clock_run([1.0, 1.0], [0.5, 0.5, 0.6], 2e-3, optimizer="sgd", lr_schedule="cosine")
    table = figure2.clock_table({0: [first, second], 3: [first]})
    assert table.columns.tolist()[:5] == ["grpo_seed", "run", "step", "accuracy", "accuracy_se"]
    assert set(figure2.CLOCKS) <= set(table.columns) and figure2.GAP_CLOCK in figure2.CLOCKS
    assert table["grpo_seed"].tolist() == [0] * 7 + [3] * 4
    assert table["run"].tolist()[3:5] == ["grpo / group / lr 0.001", "grpo / group / lr 0.002 / sgd / cosine"]
    rows = table.iloc[:4]
    assert rows["step"].tolist() == [0, 1, 2, 3] and rows["accuracy"].tolist() == [0.1, 0.2, 0.3, 0.4]
    assert rows["measured"].tolist() == [0, 1, 1, 3]  # 1·1, + 2·[−1]₊ = 0, + 1·2
    assert rows["estimate"].tolist() == [0, 1, 3, 4] and rows["path"].tolist() == [0, 1, 3, 4]
    assert rows["normalized_step"].tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert table["constant"].eq(0).all()
    assert table.iloc[4:7]["normalized_step"].tolist() == [0, 0.5, 1]  # K = 2


RATES = (1e-3, 2e-3, 3e-3)


def _design(accuracy_of, speeds=((0.5, 1.0, 2.0), (0.75, 1.5, 3.0)), steps=10):
    """Per GRPO seed, three runs of ``steps`` unit steps whose gap grows at the ``speeds`` (measured = speed·k);
    accuracy = ``accuracy_of(measured, k)``."""
    k = np.arange(steps + 1)
    return {seed: [_clock_run([speed] * steps, accuracy_of(speed * k, k), rate)
                   for speed, rate in zip(row, RATES[:len(row)], strict=True)]
            for seed, row in enumerate(speeds)}


def test_heldout_fits_pick_the_variable_accuracy_is_a_function_of():
    # accuracy an exact logistic function of the cumulative gap, not of the step (the runs gather it at 3 speeds)
    heldout = figure2.heldout_fits(figure2.clock_table(_design(lambda gap, k: special.expit(-2 + 0.2 * gap))))
    assert heldout.columns.tolist() == ["grpo_seed", "held_out", "clock", "rmse"]
    assert len(heldout) == 2 * 3 * len(figure2.CLOCKS)  # seeds × held-out runs × variables
    rmse = heldout.groupby("clock")["rmse"]
    assert rmse.max()["measured"] == pytest.approx(0, abs=1e-6)
    assert rmse.min()["step"] > 0.04 and rmse.min()["normalized_step"] > 0.04 and rmse.min()["path"] > 0.04
    # and the reverse: accuracy a function of the step, the gap gathered at 3 speeds
    heldout = figure2.heldout_fits(figure2.clock_table(_design(lambda gap, k: special.expit(-2 + 0.4 * k))))
    rmse = heldout.groupby("clock")["rmse"]
    assert rmse.max()["step"] == pytest.approx(0, abs=1e-6)
    assert rmse.max()["normalized_step"] == pytest.approx(0, abs=1e-6)  # every run has K = 10
    assert rmse.min()["measured"] > 0.05


def test_heldout_constant_predicts_the_mean_of_the_other_runs():
    table = figure2.clock_table(_design(lambda gap, k: special.expit(-2 + 0.2 * gap), speeds=((0.5, 1.0, 2.0),)))
    heldout = figure2.heldout_fits(table, clocks=("constant",))
    first = table["run"] == "grpo / group / lr 0.001"
    error = table.loc[first, "accuracy"] - table.loc[~first, "accuracy"].mean()
    assert heldout["rmse"].iloc[0] == pytest.approx(np.sqrt((error ** 2).mean()))
    assert heldout["held_out"].tolist() == ["grpo / group / lr 0.001", "grpo / group / lr 0.002",
                                            "grpo / group / lr 0.003"]


def _heldout(rows):
    """A held-out frame by hand: (seed, held-out run) → {clock: rmse}."""
    return pd.DataFrame([{"grpo_seed": seed, "held_out": run, "clock": clock, "rmse": rmse}
                         for (seed, run), errors in rows.items() for clock, rmse in errors.items()])


HELDOUT = {(0, "A"): {"step": 0.3, "measured": 0.1}, (0, "B"): {"step": 0.1, "measured": 0.2},
           (1, "A"): {"step": 0.4, "measured": 0.1}, (1, "B"): {"step": 0.2, "measured": 0.1}}


def test_clock_comparison_by_hand():
    comparison = figure2.clock_comparison(_heldout(HELDOUT))
    assert comparison.columns.tolist() == ["variable", "held-out RMSE", "RMSE low", "RMSE high", "minus gap's",
                                           "difference low", "difference high", "gap better in"]
    assert comparison["variable"].tolist() == ["measured", "step"]  # in the order of CLOCKS
    gap, step = comparison.iloc[0], comparison.iloc[1]
    # per seed, averaged over held-out runs: gap 0.15 and 0.1, step 0.2 and 0.3
    assert gap["held-out RMSE"] == pytest.approx(0.125) and step["held-out RMSE"] == pytest.approx(0.25)
    assert (gap["RMSE low"], gap["RMSE high"]) == pytest.approx(statistics.mean_interval([0.15, 0.1])[1:])
    # "minus gap's" = RMSE(step) − RMSE(gap), paired by seed: 0.05 and 0.2 (> 0: the gap predicts better)
    assert step["minus gap's"] == pytest.approx(0.125)
    assert (step["difference low"], step["difference high"]) == pytest.approx(statistics.mean_interval([0.05, 0.2])[1:])
    assert (gap["minus gap's"], gap["difference low"], gap["difference high"]) == (0, 0, 0)
    assert step["gap better in"] == "3 of 4" and gap["gap better in"] == "0 of 4"  # (0, B): step 0.1 < 0.2


def test_best_clock_and_gap_better_margins_by_hand_and_on_a_counter_example():
    comparison = figure2.clock_comparison(_heldout(HELDOUT))
    assert figure2.best_clock(comparison) == "measured"
    assert figure2.gap_better_margins(comparison, "step") == [pytest.approx(0.125)]
    swapped = {key: {"step": errors["measured"], "measured": errors["step"]} for key, errors in HELDOUT.items()}
    comparison = figure2.clock_comparison(_heldout(swapped))
    assert figure2.best_clock(comparison) == "step"
    assert figure2.gap_better_margins(comparison, "step") == [pytest.approx(-0.125)]  # the step predicts better


def test_comparison_glue_by_hand():
    comparison = figure2.clock_comparison(_heldout(HELDOUT))
    glued = figure2.comparison_glue(comparison)
    low, high = statistics.mean_interval([0.05, 0.2])[1:]
    assert glued == {"best_clock": "cumulative gap (b)", "rmse_measured": pytest.approx(0.125),
                     "rmse_step": pytest.approx(0.25), "minus_step": pytest.approx(0.125),
                     "minus_step_low": pytest.approx(low), "minus_step_high": pytest.approx(high),
                     "gap_better_step": "3 of 4"}  # no difference of the gap with itself


def test_clock_comparison_on_constructed_runs():
    heldout = figure2.heldout_fits(figure2.clock_table(_design(lambda gap, k: special.expit(-2 + 0.2 * gap))))
    comparison = figure2.clock_comparison(heldout)
    assert comparison["variable"].tolist() == list(figure2.CLOCKS)
    assert figure2.best_clock(comparison) == figure2.GAP_CLOCK
    rows = comparison.set_index("variable")
    for clock in ("step", "normalized_step", "path", "constant"):
        assert figure2.gap_better_margins(comparison, clock)[0] > 0.2, clock
        assert rows.loc[clock, "gap better in"] == "6 of 6", clock
    # the reverse: accuracy a function of the step, the gap gathered at different speeds
    heldout = figure2.heldout_fits(figure2.clock_table(_design(lambda gap, k: special.expit(-2 + 0.4 * k))))
    comparison = figure2.clock_comparison(heldout)
    assert figure2.best_clock(comparison) != figure2.GAP_CLOCK
    assert figure2.gap_better_margins(comparison, "step")[0] < -0.2
    assert comparison.set_index("variable").loc["step", "gap better in"] == "0 of 6"


# ----------------------------------------------------------------------------------------------
# The design and its precision
# ----------------------------------------------------------------------------------------------


def _design_runs():
    """Two GRPO seeds of two runs: AdamW constant (unit steps) and SGD cosine (steps 1, 3, 3, 1)."""
    adam = [_clock_run([1.0] * 4, [0.2, 0.3, 0.4, 0.5, 0.6], 1e-3),
            _clock_run([1.0, 1.0, 1.0, 3.0], [0.2, 0.25, 0.3, 0.35, 0.4], 1e-3, se=[0.01, 0.01, 0.02, 0.01, 0.01])]
    sgd = [_clock_run([2.0] * 4, accuracy, 0.3, step_lengths=[1.0, 3.0, 3.0, 1.0], optimizer="sgd",
                      lr_schedule="cosine") for accuracy in ([0.1, 0.1, 0.2, 0.3, 0.3], [0.1, 0.2, 0.4, 0.5, 0.6])]
    return {0: [adam[0], sgd[0]], 1: [adam[1], sgd[1]]}


def test_design_summary_by_hand():
    design = figure2.design_summary(_design_runs())
    assert design.columns.tolist() == ["run", "optimizer", "schedule", "learning rate", "K", "points", "largest SE",
                                       "accuracy span", "CV of η_k", "G_K / K", "G_K / Σ η"]
    adam, sgd = design.to_dict("records")
    assert (adam["run"], adam["optimizer"], adam["schedule"], adam["learning rate"]) == (
        "grpo / group / lr 0.001", "adamw", "constant", 1e-3)
    assert sgd["run"] == "grpo / group / lr 0.3 / sgd / cosine" and (sgd["K"], sgd["points"]) == (4, 5)
    assert adam["largest SE"] == 0.02 and sgd["largest SE"] == 0.01  # over every seed
    assert adam["accuracy span"] == pytest.approx(0.4) and sgd["accuracy span"] == pytest.approx(0.5)
    assert adam["CV of η_k"] == 0 and sgd["CV of η_k"] == pytest.approx(np.sqrt(8 / 7) / 2)  # 1, 3, 3, 1 twice
    # G_K = 4 and 6 for AdamW (unit steps), 2·(1 + 3 + 3 + 1) = 16 for SGD; Σ η = 4 and 8
    assert adam["G_K / K"] == pytest.approx((1 + 1.5) / 2) and adam["G_K / Σ η"] == pytest.approx((1 + 1.5) / 2)
    assert sgd["G_K / K"] == pytest.approx(4) and sgd["G_K / Σ η"] == pytest.approx(2)


def test_clock_spread_margins_and_design_glue_by_hand():
    design = figure2.design_summary(_design_runs())
    assert figure2.clock_spread_margins(design) == [pytest.approx(4 / 1.25 - 2)]
    assert figure2.clock_spread_margins(design, ratio=4)[0] == pytest.approx(-0.8)
    relabelled = pd.DataFrame({"G_K / K": [0.7, 0.7, 0.7]})  # the gap one step count under three names
    assert figure2.clock_spread_margins(relabelled) == [pytest.approx(-1.0)]
    glued = figure2.design_glue(design)
    assert glued == pytest.approx({"points_min": 5, "se_max": 0.02, "span_max": 0.5, "cv_low": 0.0,
                                   "cv_high": np.sqrt(8 / 7) / 2, "per_step_spread": 3.2})
    assert isinstance(glued["points_min"], int)


def _precise(steps=20, se=0.01, low=0.2, high=0.65, rate=1e-3):
    return _clock_run([1.0] * steps, np.linspace(low, high, steps + 1), rate, se=se)


def test_precision_margins_by_hand_and_each_fails_on_a_counter_example():
    margins = figure2.precision_margins({0: [_precise(), _precise(rate=2e-3, high=0.3)], 1: [_precise(steps=25)]})
    assert list(margins) == ["points", "standard_error", "span"]
    assert margins["points"] == [1, 1, 6]  # 21, 21 and 26 points
    assert margins["standard_error"] == pytest.approx([0.005] * (21 + 21 + 26))
    assert margins["span"] == [pytest.approx(0.05)]  # the widest run: 0.2 → 0.65
    assert figure2.precision_margins({0: [_precise(), _precise(steps=18)]})["points"] == [1, -1]
    noisy = figure2.precision_margins({0: [_precise(se=[0.01] * 20 + [0.02])]})["standard_error"]
    assert noisy[-1] == pytest.approx(-0.005) and min(noisy[:-1]) > 0
    assert figure2.precision_margins({0: [_precise(high=0.5)], 1: [_precise(high=0.55)]})["span"] == [
        pytest.approx(-0.05)]  # no run covers 0.4


def test_draw_clock_panel():
    import matplotlib.pyplot as plt

    table = figure2.clock_table(_design(lambda gap, k: special.expit(-2 + 0.2 * gap), speeds=((0.5, 1.0), (1.0, 2.0))))
    labels = {"grpo / group / lr 0.001": "slow", "grpo / group / lr 0.002": "fast"}
    fig, ax = plt.subplots()
    figure2.draw_clock_panel(ax, table, "measured", labels, legend=True)
    assert len(ax.collections) == 4 and len(ax.lines) == 4 + 1  # per run and seed a scatter and a line; one fit
    fit = ax.lines[-1]
    assert fit.get_linestyle() == "--" and fit.get_xdata()[[0, -1]].tolist() == [0, table["measured"].max()]
    assert fit.get_ydata() == pytest.approx(special.expit(-2 + 0.2 * fit.get_xdata()), abs=1e-6)  # the exact curve
    assert figure2.CLOCKS["measured"] in ax.get_title() and ax.get_xlabel() == "cumulative gap (b)"
    assert ax.get_ylabel() == "sampled validation accuracy"
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["slow", "fast"]  # one entry per run
    fig, ax = plt.subplots()
    figure2.draw_clock_panel(ax, table, "step", {"grpo / group / lr 0.002": "fast"})  # only the runs labelled
    assert len(ax.collections) == 2 and ax.get_legend() is None and "step k" in ax.get_title()
    plt.close("all")


# ----------------------------------------------------------------------------------------------
# Theorem 1 per prompt
# ----------------------------------------------------------------------------------------------


def test_prompt_trajectories_by_hand():
    samples = 3
    frame = pd.DataFrame({  # PromptTracker.frame rows, out of order
        "step": [2, 0, 1, 3, 0, 1, 2], "prompt": [1, 0, 0, 0, 1, 1, 0], "successes": [1, 1, 2, 3, 0, 0, 3],
        "inner": [np.nan, 0.5, -0.2, 0.3, np.nan, 1.0, np.nan], "step_length": [0.1] * 7})
    frame["value"] = frame["successes"] / samples
    trajectories = figure2.prompt_trajectories(frame, samples)
    assert trajectories[["prompt", "step"]].values.tolist() == [[0, 0], [0, 1], [0, 2], [0, 3], [1, 0], [1, 1], [1, 2]]
    # logit((n + ½)/4): n = 0, 1, 2, 3 → log(1/7), log(3/5), log(5/3), log(7): finite at 0 and 3 successes
    assert trajectories["log_odds"].tolist() == pytest.approx(np.log([3 / 5, 5 / 3, 7, 7, 1 / 7, 1 / 7, 3 / 5]))
    assert trajectories["log_odds_change"].tolist() == pytest.approx(
        np.log([1, 25 / 9, 35 / 3, 35 / 3, 1, 1, 21 / 5]))
    # M(k): the positive part of inner over the steps strictly before k; a NaN (one outcome only) adds 0
    assert trajectories["M"].tolist() == pytest.approx([0, 0.5, 0.5, 0.5, 0, 0, 1.0])
    assert trajectories["S"].tolist() == pytest.approx([0, 0.5, 0.3, 0.3, 0, 0, 1.0])  # signed: −0.2 counts
    assert trajectories["value"].tolist() == pytest.approx([1 / 3, 2 / 3, 1, 1, 0, 0, 1 / 3])


def _trajectories():
    """Three prompts: the change exactly 2·M (S a different curve), exactly M/4 (the bound fails), M always 0."""
    rows = [(0, [0, 1, 2, 3], [0, 1, 1, 2], [0, 2, 4, 6]), (1, [0, 2, 4], [0, 2, 4], [0, 0.5, 1.0]),
            (2, [0, 0], [0, 0], [0, 0.3])]
    return pd.DataFrame([{"prompt": prompt, "step": step, "M": m, "S": s, "log_odds_change": change,
                          "value": 0.25 + 0.1 * step}
                         for prompt, ms, ss, changes in rows
                         for step, (m, s, change) in enumerate(zip(ms, ss, changes, strict=True))])


def test_prompt_slopes_by_hand():
    slopes = figure2.prompt_slopes(_trajectories())
    assert slopes.columns.tolist() == ["prompt", "slope on M", "R² on M", "slope on S", "R² on S", "M_q(K)",
                                       "log-odds change", "value at 0", "value at K", "bound (15b) holds"]
    exact, flat, never = slopes.to_dict("records")
    assert exact["slope on M"] == pytest.approx(2) and exact["R² on M"] == pytest.approx(1)
    # on S = (0, 1, 1, 2): slope (2 + 4 + 12)/6 = 3, residuals (0, −1, 1, 0), total 20 → R² 0.9
    assert exact["slope on S"] == pytest.approx(3) and exact["R² on S"] == pytest.approx(0.9)
    assert (exact["M_q(K)"], exact["log-odds change"], exact["value at 0"], exact["value at K"]) == pytest.approx(
        (3, 6, 0.25, 0.55))
    assert exact["bound (15b) holds"] is True  # 6 ≥ 3/2
    assert flat["slope on M"] == pytest.approx(0.25) and flat["R² on M"] == pytest.approx(1)
    assert flat["bound (15b) holds"] is False  # 1 < 4/2: the counter-example
    assert math.isnan(never["slope on M"]) and math.isnan(never["R² on M"])  # no gap: no slope
    assert never["bound (15b) holds"] is True  # 0.3 ≥ 0


def test_slope_summary_by_hand():
    summary = figure2.slope_summary(figure2.prompt_slopes(_trajectories()))
    assert summary == pytest.approx({
        "prompts": 3, "slope_M_median": 1.125, "slope_M_q1": 0.25 + 0.25 * 1.75, "slope_M_q3": 0.25 + 0.75 * 1.75,
        "r2_M_median": 1.0, "slope_S_median": 1.625, "slope_S_q1": 0.25 + 0.25 * 2.75,
        "slope_S_q3": 0.25 + 0.75 * 2.75, "r2_S_median": 0.95,  # NaN slopes and R² left out
        "positive_share": 2 / 3, "bound_share": 2 / 3})  # a NaN slope is not a positive one


# ----------------------------------------------------------------------------------------------
# The recorded GPU run of the paper preset
# ----------------------------------------------------------------------------------------------


COMPARISON = [{"variable": "measured", "held-out RMSE": 0.03, "minus gap's": 0.0, "gap better in": "0 of 9"},
              {"variable": "step", "held-out RMSE": 0.08, "minus gap's": 0.05, "gap better in": "9 of 9"}]


def _gpu_run_folder(tmp_path):
    """The output folder of a (fake) ``rlvr-book run figure2 --preset paper -p device cuda``: metrics.json as
    results.write_metrics writes it and one figure PNG in a subfolder."""
    folder = tmp_path / "run"
    (folder / "figures").mkdir(parents=True)
    (folder / "figures" / "figure2.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    parameters = {"preset": "paper", "seed": 0, "device": "cuda", "output_dir": str(folder),
                  **figure2.PRESETS["paper"]}
    metrics = {"notebook": "figure2", "headline": {"best_clock": "measured", "clock_comparison": COMPARISON},
               "claims": [{"claim": "the gap predicts held-out runs better than the step", "enforced": True,
                           "margins": [0.05], "held": True}],
               "figures": ["figure2"], "figure_legibility": {}, "parameters": parameters, "seed": 0, "device": "cuda",
               "run_seconds": 312.4, "timings_s": {}, "versions": {"torch": "2.5.1", "trl": "0.19.0"}}
    (folder / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return folder


COMMAND = "OUT=out bash .ci/gpu-figure2"


def test_gpu_record_written_and_read_back(tmp_path):
    destination = tmp_path / "gpu"
    path = figure2.write_gpu_record(_gpu_run_folder(tmp_path), destination, COMMAND, "2025-01-02")
    assert path == destination / "record.json" and (destination / "figure2.png").is_file()
    record = figure2.read_gpu_record(destination)
    assert record == json.loads(path.read_text(encoding="utf-8"))
    assert (record["device"], record["date"], record["command"], record["preset"], record["seed"]) == (
        "cuda", "2025-01-02", COMMAND, "paper", 0)
    assert record["run_seconds"] == 312.4 and record["figures"] == ["figure2.png"]
    assert record["headline"]["clock_comparison"] == COMPARISON
    assert figure2.gpu_record_text(record) == ("Recorded on cuda on 2025-01-02: the paper preset at seed 0, 5.2 min "
                                               f"(torch 2.5.1, trl 0.19.0); command: {COMMAND}")
    assert figure2.gpu_record_table(record).equals(pd.DataFrame(COMPARISON))
    assert figure2.read_gpu_record(tmp_path / "nothing") is None  # no record.json
    none = figure2.gpu_record_text(None)
    assert none.startswith("No GPU run of the paper preset is recorded yet") and none.endswith(figure2.GPU_COMMAND)
    assert figure2.GPU_RECORD.as_posix() == "data/gpu/figure2"


def _drop(name):
    return lambda record: record.pop(name)


def _set(name, value):
    return lambda record: record.update({name: value})


def _set_parameter(name, value):
    return lambda record: record["parameters"].update({name: value})


@pytest.mark.parametrize("change, problem", [
    (_drop("date"), "field 'date' is missing or not of type str"),
    (_drop("parameters"), "field 'parameters' is missing or not of type dict"),
    (_set("seed", "0"), "field 'seed' is missing or not of type int"),
    (_set("seed", True), "field 'seed' is missing or not of type int"),  # a bool is not a seed
    (_set("run_seconds", "5 min"), "field 'run_seconds' is missing or not of type float"),
    (_set("figures", "figure2.png"), "field 'figures' is missing or not of type list"),
    (_set("device", "cpu"), "device 'cpu' is not a GPU"),
    (_set("preset", "ci"), "preset 'ci', expected 'paper'"),
    (_set_parameter("steps", figure2.PRESETS["ci"]["steps"]), "parameters differ from the 'paper' preset: steps"),
    (lambda record: record["parameters"].pop("temperature"), "parameters differ from the 'paper' preset: temperature"),
    (_set("figures", ["figure2.png", "figure2-clock.png"]), "figure files missing: figure2-clock.png"),
])
def test_read_gpu_record_names_each_schema_violation(tmp_path, change, problem):
    destination = tmp_path / "gpu"
    path = figure2.write_gpu_record(_gpu_run_folder(tmp_path), destination, COMMAND, "2025-01-02")
    record = json.loads(path.read_text(encoding="utf-8"))
    change(record)
    path.write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(ValueError) as error:
        figure2.read_gpu_record(destination)
    message = str(error.value)
    assert message == f"{path}: {problem}" and "\n" not in message


def test_read_gpu_record_accepts_whole_seconds_and_rejects_what_is_not_a_record(tmp_path):
    destination = tmp_path / "gpu"
    path = figure2.write_gpu_record(_gpu_run_folder(tmp_path), destination, COMMAND, "2025-01-02")
    record = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(dict(record, run_seconds=300)), encoding="utf-8")
    assert figure2.read_gpu_record(destination)["run_seconds"] == 300  # a whole number of seconds is a number
    (destination / "figure2.png").unlink()
    with pytest.raises(ValueError, match="figure files missing: figure2.png$"):
        figure2.read_gpu_record(destination)
    for text, problem in (("{not json", "not valid JSON"), ("[1, 2]", "field 'device' is missing")):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ValueError) as error:
            figure2.read_gpu_record(destination)
        assert str(error.value).startswith(f"{path}: {problem}") and "\n" not in str(error.value)


def test_the_committed_gpu_record_matches_the_paper_preset():
    folder = project_root() / figure2.GPU_RECORD
    if not (folder / "record.json").is_file():
        pytest.skip(f"no GPU run of the paper preset is recorded yet ({figure2.GPU_RECORD.as_posix()}/record.json "
                    f"absent): {figure2.GPU_COMMAND}")
    record = figure2.read_gpu_record()
    assert record is not None and record["preset"] == "paper"
    assert not figure2.gpu_record_table(record).empty


# ----------------------------------------------------------------------------------------------
# The committed robustness record, for the prose
# ----------------------------------------------------------------------------------------------


def test_enforced_summary_and_the_record_path(tmp_path):
    record = {"seeds": [0, 1, 2], "claims": [
        {"claim": "rises", "enforced": True, "held": 3, "of": 3, "worst_margin": 0.04},
        {"claim": "fact", "enforced": True, "held": 2, "of": 3, "worst_margin": None}]}
    # "fact" failed at a seed: not counted as holding everywhere
    assert figure2.enforced_summary(record) == "1 of its 2 enforced claims holding at every one of its 3 seeds (0–2)"
    record["claims"][1]["held"] = 3
    assert figure2.enforced_summary(record) == "all 2 of its enforced claims holding at every one of its 3 seeds (0–2)"
    assert figure2.enforced_summary(None) == "no robustness record yet"
    path = tmp_path / "figure2.json"
    assert figure2.load_seed_record(path) is None
    path.write_text(json.dumps(record), encoding="utf-8")
    assert figure2.load_seed_record(path) == record
    assert figure2.ROBUSTNESS_RECORD.as_posix() == "data/robustness/figure2.json"


def test_logistic_fit_of_a_variable_that_never_moves_is_the_mean():
    fit = figure2.logistic_fit(np.zeros(5), np.array([0.2, 0.3, 0.4, 0.3, 0.3]))
    assert fit["slope"] == 0 and special.expit(fit["intercept"]) == pytest.approx(0.3)
    assert fit["rmse"] == pytest.approx(np.sqrt(0.02 / 5)) and fit["r2"] == 0


def test_gpu_record_figures_must_be_file_names(tmp_path):
    destination = tmp_path / "gpu"
    path = figure2.write_gpu_record(_gpu_run_folder(tmp_path), destination, COMMAND, "2025-01-02")
    record = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(dict(record, figures=[5])), encoding="utf-8")
    with pytest.raises(ValueError, match="field 'figures' is not a list of file names$"):
        figure2.read_gpu_record(destination)


def test_calibrate_temperature_sets_the_temperature_of_the_start_accuracy(monkeypatch):
    config = figure2.Figure2Config(**figure2.PRESETS["ci"])
    seen = {}

    def bisect(model, tokenizer, problems, target, samples, max_new_tokens, generator):
        seen.update(problems=len(problems), target=target, samples=samples, max_new_tokens=max_new_tokens)
        return 2.41567, 0.149

    monkeypatch.setattr(figure2.scoring, "temperature_for_accuracy", bisect)
    calibrated, accuracy = figure2.calibrate_temperature(config, None, None, list(range(500)), None)
    assert calibrated.temperature == 2.416 and accuracy == 0.149 and calibrated.start_accuracy == 0.15
    assert seen == {"problems": 128, "target": 0.15, "samples": 8, "max_new_tokens": config.max_completion_length}
    assert dataclasses.replace(calibrated, temperature=config.temperature) == config  # nothing else changes
    off = dataclasses.replace(config, start_accuracy=0.0)
    same, nothing = figure2.calibrate_temperature(off, None, None, [], None)
    assert same is off and np.isnan(nothing)


def test_gpu_record_figure_is_the_recorded_figure2(tmp_path):
    assert figure2.gpu_record_figure({"figures": ["figure2.png"]}, tmp_path) == tmp_path / "figure2.png"
    assert figure2.gpu_record_figure({"figures": ["figure2.png"]}).parent == project_root() / figure2.GPU_RECORD
    with pytest.raises(ValueError, match="no figure2.png"):
        figure2.gpu_record_figure({"figures": ["figure2_diagnostics.png"]}, tmp_path)
