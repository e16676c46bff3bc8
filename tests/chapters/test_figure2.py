"""Tests of rlvr_dynamics.chapters.figure2: the task and warm-up checks, identity (LM1)
on sampled groups, the run summary and the margins of the chapter's findings, Figure 2's table and
panel, the logistic fit, the shape verdicts and the relabelling test — on constructed runs, each
margin shown to go negative on a counter-example."""

import dataclasses
import json
from fractions import Fraction
from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import special

from rlvr_dynamics.chapters import figure2
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


def test_setup_numbers_are_the_constants_the_code_uses():
    assert figure2.SETUP_NUMBERS == {"0.1": 0.10, "0.5": 0.5, "10%": 0.10, "95%": 0.95, "5%": 0.05}
    assert figure2.SETUP_NUMBERS["0.1"] == figure2.PRESETS["ci"]["min_gain"]
    x = np.linspace(0, 1, 12)
    y = 1 + x + 0.5 * x ** 2 + np.random.default_rng(0).normal(0, 0.05, x.size)
    c, low, high = figure2.curvature(x, y)  # the default level is INTERVAL_LEVEL
    assert (c, low, high) == figure2.curvature(x, y, 0.95)
    narrower = figure2.curvature(x, y, 0.5)
    assert low < narrower[1] < c < narrower[2] < high


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


def _fake_run(step_lengths, gaps, accuracy_every=2, loss_type="grpo", **columns):
    steps = np.arange(1, len(step_lengths) + 1)
    frame = pd.DataFrame({"step": steps, "step_length": step_lengths, "gap_estimate": gaps, "gap_norm": gaps,
                          "alignment": 0.5 * np.asarray(gaps)} | columns)
    evals = pd.DataFrame({"step": np.arange(0, len(steps) + 1, accuracy_every)})
    evals["accuracy"] = np.linspace(0.3, 0.6, len(evals))
    config = grpo.GRPORunConfig(loss_type=loss_type, steps=len(steps), completions_per_step=16, num_generations=8)
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


def test_table_glue_by_hand():
    runs = [_tracked_run(alignment=[0.2, 0.2, 0.4, 0.4]),
            _tracked_run(gap_estimate=[2.0, 2.2, 4.0, 3.6], alignment=[1.0, -1.0, 1.0, 1.0],
                         alignment_cosine=[0.3] * 4, loss_type="dr_grpo")]
    summary = figure2.run_summary(runs)
    glued = figure2.table_glue(runs, summary)
    assert glued == pytest.approx({"ratio_low": 1.0, "ratio_high": 1.0, "prompt_gap_low": 2.0, "prompt_gap_high": 2.0,
                                   "update_cosine_low": 0.15, "update_cosine_high": 0.3, "gain_low": 0.3,
                                   "gain_high": 0.3, "gradient_cosine_min": 0.95, "positive_min": 0.75,
                                   # (a)/(b) with unit steps: 12/1.2 = 10, and 11.8/(1 + 0 + 1 + 1) (u·Δ clipped at 0)
                                   "smaller_min": 11.8 / 3})
    assert all(isinstance(v, float) for v in glued.values())


def test_run_margins_hold_by_hand_and_each_fails_on_a_counter_example():
    # cumulative: estimate Σ 1·(2, 2, 4, 4) = 12, measured Σ 1·0.1·(2, 2, 4, 4) = 1.2: ratio 10
    run = _tracked_run(alignment=[0.2, 0.2, 0.4, 0.4])
    margins = figure2.run_margins(run)
    assert list(margins) == ["gradient_along_gap", "update_off_gap", "estimate_matches", "prompt_gap_longer",
                             "positive_alignment", "measured_smaller"]
    expected = {"gradient_along_gap": 0.05, "update_off_gap": 0.15, "estimate_matches": 0.15,
                "prompt_gap_longer": 0.0, "positive_alignment": 0.05, "measured_smaller": 7.0}
    for name, value in expected.items():
        assert margins[name] == [pytest.approx(value)], name
    broken = figure2.run_margins(_tracked_run(
        gradient_gap_cosine=[0.5] * 4, alignment_cosine=[0.5] * 4, gap_estimate=[3.0, 3.0, 6.0, 6.0],
        prompt_gap_norm_mean=[2.0, 2.0, 4.0, 4.0], alignment=[1.0, -1.0, 2.0, 2.0]))
    # cosines 0.5 and 0.5, ratios 1.5 and 1, u·Δ > 0 at 3/4 of steps: broken; (a) = 18 vs (b) = 5 (3.6×): holds
    assert [broken[name][0] < 0 for name in expected] == [True, True, True, True, True, False]
    close = figure2.run_margins(_tracked_run(alignment=[1.0, 1.0, 2.0, 2.0]))  # (b) = 6, (a) = 12: only 2×
    assert close["measured_smaller"] == [pytest.approx(-1.0)]


def test_cumulative_gap_and_relabelling_by_hand():
    run = _fake_run([1.0, 2.0, 1.0, 2.0], [1.0, 1.0, 3.0, 3.0])
    cumulative = run.cumulative()
    assert cumulative["estimate"].tolist() == [0, 3, 12]  # 1·1 + 2·1, then + 1·3 + 2·3
    assert cumulative["measured"].tolist() == [0, 1.5, 6]
    constant = figure2.step_relabelling(_fake_run([1.0] * 20, [2.0] * 20))
    assert constant["step_length_cv"] == 0 and constant["estimate_vs_step_r2"] == pytest.approx(1)
    growing = figure2.step_relabelling(_fake_run([1.0] * 20, list(np.geomspace(1, 1e4, 20))))
    assert growing["estimate_vs_step_r2"] < 0.8


# ----------------------------------------------------------------------------------------------
# Figure 2: the table, the panel, the logistic fit
# ----------------------------------------------------------------------------------------------


def test_figure2_table_and_panel():
    runs = [_fake_run([1.0, 2.0, 1.0, 2.0], [1.0, 1.0, 3.0, 3.0]),
            _fake_run([1.0] * 4, [2.0] * 4, loss_type="dr_grpo")]
    table = figure2.figure2_table(runs)
    assert table["run"].tolist() == ["grpo / group / lr 0.0003"] * 3 + ["dr_grpo / group / lr 0.0003"] * 3
    assert table["normalized_step"].tolist() == [0, 0.5, 1] * 2
    assert table["estimate"].tolist() == [0, 3, 12, 0, 4, 8]
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    points = figure2.draw_relation_panel(ax, table, "estimate", "title")
    assert len(ax.collections) == 2 and len(ax.lines) == 2  # a scatter and a logistic fit per run
    assert points is ax.collections[-1] and points.get_label() == "dr_grpo / group / lr 0.0003"
    assert ax.get_title() == "title" and ax.get_legend() is not None
    labels = {figure2.run_label(run): figure2.figure_label(run) for run in runs}
    fig, ax = plt.subplots()
    points = figure2.draw_relation_panel(ax, table, "estimate", "title", labels)
    assert points.get_label() == "Dr. GRPO loss, advantages ÷ group std, lr 0.0003"
    plt.close("all")


def test_figure_labels_spell_out_every_setting():
    run = _fake_run([1.0], [1.0], loss_type="dr_grpo")
    assert figure2.figure_label(run) == "Dr. GRPO loss, advantages ÷ group std, lr 0.0003"
    changed = dataclasses.replace(run.config, scale_rewards="none", advantage_filter="negative")
    unscaled = SimpleNamespace(config=changed)
    assert figure2.figure_label(unscaled) == ("Dr. GRPO loss, advantages not std-scaled, lr 0.0003, "
                                              "negative advantages only")
    assert set(figure2.LOSS_NAMES) == set(grpo.LOSS_TYPES) and set(figure2.SCALE_NAMES) == set(grpo.SCALE_REWARDS)
    assert set(figure2.FILTER_NAMES) == set(grpo.ADVANTAGE_FILTERS)


def test_logistic_fit_recovers_known_parameters():
    gap = np.linspace(0, 10, 30)
    fit = figure2.logistic_fit(gap, special.expit(-1.5 + 0.4 * gap))
    assert fit["intercept"] == pytest.approx(-1.5, abs=1e-4) and fit["slope"] == pytest.approx(0.4, abs=1e-5)
    assert fit["r2"] == pytest.approx(1.0) and fit["rmse"] == pytest.approx(0, abs=1e-6)
    assert figure2.logistic(np.array([0.0]), 0.0, 1.0).tolist() == [0.5]


def test_pooled_fit_comparison_prefers_the_column_that_aligns_the_runs():
    # Two runs on one logistic curve in x, at different speeds: x aligns them, the step does not.
    step = np.linspace(0, 1, 11)
    rows = [pd.DataFrame({"normalized_step": step, "estimate": speed * step, "measured": speed * step,
                          "accuracy": special.expit(-2 + 4 * speed * step)}) for speed in (0.5, 1.0)]
    pooled = figure2.pooled_fit_comparison(pd.concat(rows, ignore_index=True))
    assert pooled["estimate"] == pytest.approx(0, abs=1e-6) and pooled["normalized_step"] > 0.01


# ----------------------------------------------------------------------------------------------
# The shape of the relation, the relabelling test and their margins
# ----------------------------------------------------------------------------------------------


def test_relation_shape_verdicts():
    x = np.linspace(0, 1, 25)
    noise = np.random.default_rng(1).normal(0, 0.002, x.size)
    logistic_shape = figure2.relation_shape(x, special.expit(-4 + 8 * x) + noise)
    assert logistic_shape["verdict"] == "logistic"  # symmetric: zero quadratic term, but not a line
    assert logistic_shape["accuracy_curvature"][1] < 0 < logistic_shape["accuracy_curvature"][2]
    assert figure2.relation_shape(x, special.expit(-4 + 16 * np.sqrt(x)) + noise)["verdict"] == "concave"
    assert figure2.relation_shape(x, 0.3 + 0.4 * np.sqrt(x) + noise)["verdict"] == "concave"
    assert figure2.relation_shape(x, 0.4 + 0.1 * x + 20 * noise)["verdict"] == "linear within noise"
    c, low, high = figure2.curvature(x, 1 + 2 * x + 3 * x ** 2)
    assert c == pytest.approx(3) and low - 1e-9 <= 3 <= high + 1e-9
    assert figure2.nonlinearity_pvalue(x, 1 + 2 * x) == 1.0  # exact line: nothing to explain
    assert figure2.nonlinearity_pvalue(x, x ** 3 + noise) < 1e-6


def _study(shapes, spearman, curvatures, r2, step_cv, pooled):
    runs = ["A", "A", "B", "B"]
    shape = pd.DataFrame({"run": runs, "reading": list(figure2.READINGS) * 2, "spearman": spearman, "shape": shapes})
    relabelling = pd.DataFrame({"run": ["A", "B"], "step_length_cv": step_cv, "gap_estimate_cv": [0.1, 0.2],
                                "gap_norm_cv": [0.3, 0.4], "alignment_cv": [0.5, 0.6],
                                "estimate_vs_step_r2": r2[0], "measured_vs_step_r2": r2[1]})
    return figure2.RelationStudy(shape, curvatures, relabelling, pooled, "A")


def test_relation_study_margins_by_hand_and_on_counter_examples():
    study = _study(["concave", "concave", "linear within noise", "linear within noise"], [0.9, 0.8, 0.7, 0.6],
                   [-0.2, -0.1, -0.05, -0.3], ([0.99, 0.97], [0.96, 0.98]), [0.2, 0.3],
                   {"estimate": 0.03, "measured": 0.028, "normalized_step": 0.03})
    assert study.step_r2_margins() == pytest.approx([0.02, 0.01])  # the smaller R² of each reading
    assert study.step_length_margins().tolist() == pytest.approx([0.3, 0.2])
    assert study.spearman_margins().tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6])  # threshold 0: positive
    assert study.spearman_margins(0.5).tolist() == pytest.approx([0.4, 0.3, 0.2, 0.1])
    assert study.pooled_margins() == pytest.approx([0.003, 0.001])
    assert str(study.no_logistic_margins()) == "[0.0, 0.0, 0.0, 0.0]"  # holds: 0, not −0
    assert study.concave_margins() == [0.2, 0.1, 0.05, 0.3]
    assert str(study.first_run_concave_margins()) == "[0.0, 0.0]"
    broken = _study(["logistic", "concave", "convex", "linear within noise"], [0.9, 0.4, 0.7, -0.1],
                    [0.1, -0.1, -0.05, -0.3], ([0.9, 0.97], [0.96, 0.98]), [0.6, 0.3],
                    {"estimate": 0.02, "measured": 0.028, "normalized_step": 0.03})
    assert broken.step_r2_margins()[0] < 0 and broken.step_length_margins()[0] < 0
    assert broken.spearman_margins()[3] < 0 and broken.spearman_margins(0.5)[1] < 0  # falls; and only 0.4
    assert broken.pooled_margins()[0] < 0  # 0.02 < 0.9 · 0.03
    assert broken.no_logistic_margins() == [-1, 0, 0, 0] and broken.concave_margins()[0] < 0
    assert broken.first_run_concave_margins() == [-1, 0]
    assert broken.headline()["pooled_rmse"] is broken.pooled
    report = study.report().splitlines()
    assert report[-1] == ("pooled logistic fit over all runs, RMSE in accuracy: "
                          "estimate 0.0300, measured 0.0280, normalized_step 0.0300")
    assert "step_length_cv" in study.report() and "estimate_vs_step_r2" not in study.report()
    shape, variation = study.tables()
    assert shape is study.shape and variation.columns.tolist() == ["run", "step_length_cv", "gap_estimate_cv",
                                                                   "gap_norm_cv", "alignment_cv"]


def test_relation_glue_values_and_verdict_text_by_hand():
    study = _study(["concave", "concave", "linear within noise", "convex"], [0.9, 0.8, 0.7, 0.6],
                   [-0.2, -0.1, -0.05, -0.3], ([0.99, 0.97], [0.96, 0.98]), [0.2, 0.3],
                   {"estimate": 0.03, "measured": 0.028, "normalized_step": 0.03})
    table = pd.DataFrame({"accuracy": [0.4, np.nan, 0.35, 0.6]})
    glued = study.glue_values(table)
    assert glued == {"step_cv_max": 0.3, "gap_cv_low": 0.1, "gap_cv_high": 0.2, "r2_min": 0.96, "spearman_min": 0.6,
                     "accuracy_low": 0.35, "accuracy_high": 0.6,
                     "verdicts": "2 concave, 1 linear within noise and 1 convex, of 4 run-and-reading pairs"}
    assert figure2.verdict_text(["linear within noise"] * 3) == "3 linear within noise, of 3 run-and-reading pairs"
    assert figure2.verdict_text(["a", "b", "b"]) == "2 b and 1 a, of 3 run-and-reading pairs"


def test_relation_study_on_constructed_runs():
    accuracy_every = 2
    runs = [_fake_run([1.0] * 20, [2.0] * 20, accuracy_every),
            _fake_run([1.0] * 20, list(np.linspace(1, 3, 20)), accuracy_every, loss_type="dr_grpo")]
    study = figure2.relation_study(runs, figure2.figure2_table(runs))
    assert study.shape[["run", "reading"]].values.tolist() == [
        ["grpo / group / lr 0.0003", "estimate"], ["grpo / group / lr 0.0003", "measured"],
        ["dr_grpo / group / lr 0.0003", "estimate"], ["dr_grpo / group / lr 0.0003", "measured"]]
    assert study.first_run == "grpo / group / lr 0.0003" and len(study.curvatures) == 4
    assert study.shape["spearman"].tolist() == pytest.approx([1.0] * 4)  # accuracy and G both increase
    assert study.shape["R² of G on k"].iloc[0] == pytest.approx(1.0)  # constant factors: G ∝ k
    assert study.relabelling["step_length_cv"].tolist() == [0, 0]
    assert study.shape["accuracy curvature [95%]"].iloc[0].startswith(("+0.000 [", "-0.000 ["))
    assert set(study.headline()) == {"shape", "relabelling", "pooled_rmse"}


def test_diagnostics_frames():
    runs = [_fake_run([1.0, 2.0], [1.0, 3.0], gradient_gap_cosine=[0.9, 1.0], alignment_cosine=[0.1, 0.2])]
    long, gaps, cosines = figure2.diagnostics_frames(runs)
    assert long["run"].tolist() == ["GRPO loss, advantages ÷ group std, lr 0.0003"] * 2
    estimate, measured = figure2.GAP_NAMES["gap_estimate"], figure2.GAP_NAMES["gap_norm"]
    assert gaps[["step", "gap", "value"]].values.tolist() == [[1, estimate, 1.0], [2, estimate, 3.0],
                                                             [1, measured, 1.0], [2, measured, 3.0]]
    assert cosines["cosine with Δ"].tolist() == ["cos(−∇L, Δ)"] * 2 + ["cos(u, Δ)"] * 2  # no raw column names
    assert cosines["value"].tolist() == [0.9, 1.0, 0.1, 0.2]


# ----------------------------------------------------------------------------------------------
# The committed robustness record, for the prose
# ----------------------------------------------------------------------------------------------


def _record(seeds=(0, 1, 2)):
    return {"seeds": list(seeds), "claims": [
        {"claim": "gain ≥ 0.1", "enforced": False, "held": 2, "of": 3, "worst_margin": -0.06},
        {"claim": "rises", "enforced": True, "held": 3, "of": 3, "worst_margin": 0.04},
        {"claim": "fact", "enforced": True, "held": 2, "of": 3, "worst_margin": None}]}


def test_seed_glue_and_enforced_summary_by_hand(tmp_path):
    record = _record()
    assert figure2.seed_glue(record, "gain", "gain ≥ 0.1", 0.1) == {
        "gain_held": "held at 2 of its 3 seeds (0–2)", "gain_worst": "0.040"}  # −0.06 + 0.1: the smallest gain
    assert figure2.seed_glue(record, "x", "rises") == {"x_held": "held at 3 of its 3 seeds (0–2)", "x_worst": "0.040"}
    assert figure2.seed_glue(record, "f", "fact")["f_worst"] == "not known (a seed's run stopped)"
    missing = {"y_held": "is not recorded yet", "y_worst": "not recorded yet"}
    assert figure2.seed_glue(record, "y", "not a claim") == missing and figure2.seed_glue(None, "y", "rises") == missing
    assert figure2.seed_glue(_record((0, 3, 4)), "x", "rises")["x_held"] == "held at 3 of its 3 seeds (0, 3, 4)"
    # "fact" failed at a seed: not counted as holding everywhere
    assert figure2.enforced_summary(record) == "1 of its 2 enforced claims holding at every one of its 3 seeds (0–2)"
    record["claims"][2]["held"] = 3
    assert figure2.enforced_summary(record) == "all 2 of its enforced claims holding at every one of its 3 seeds (0–2)"
    assert figure2.enforced_summary(None) == "no robustness record yet"
    path = tmp_path / "figure2.json"
    assert figure2.load_seed_record(path) is None
    path.write_text(json.dumps(record), encoding="utf-8")
    assert figure2.load_seed_record(path) == record
    assert figure2.ROBUSTNESS_RECORD.as_posix() == "data/robustness/figure2.json"
