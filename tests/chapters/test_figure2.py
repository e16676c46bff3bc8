"""Tests of rlvr_dynamics.chapters.figure2: the logistic fit, the shape verdicts, the cumulative gap
and the step relabelling, on constructed runs."""

import numpy as np
import pandas as pd
import pytest
from scipy import special

from rlvr_dynamics.chapters import figure2
from rlvr_dynamics.lm import grpo


def test_logistic_fit_recovers_known_parameters():
    gap = np.linspace(0, 10, 30)
    fit = figure2.logistic_fit(gap, special.expit(-1.5 + 0.4 * gap))
    assert fit["intercept"] == pytest.approx(-1.5, abs=1e-4) and fit["slope"] == pytest.approx(0.4, abs=1e-5)
    assert fit["r2"] == pytest.approx(1.0)


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


def _fake_run(step_lengths, gaps, accuracy_every=2):
    steps = np.arange(1, len(step_lengths) + 1)
    frame = pd.DataFrame({"step": steps, "step_length": step_lengths, "gap_estimate": gaps, "gap_norm": gaps,
                          "alignment": 0.5 * np.asarray(gaps)})
    evals = pd.DataFrame({"step": np.arange(0, len(steps) + 1, accuracy_every)})
    evals["accuracy"] = np.linspace(0.3, 0.6, len(evals))
    return grpo.GRPORun(grpo.GRPORunConfig(steps=len(steps)), frame, evals, 0.0)


def test_cumulative_gap_and_relabelling_by_hand():
    run = _fake_run([1.0, 2.0, 1.0, 2.0], [1.0, 1.0, 3.0, 3.0])
    cumulative = run.cumulative()
    assert cumulative["estimate"].tolist() == [0, 3, 12]  # 1·1 + 2·1, then + 1·3 + 2·3
    assert cumulative["measured"].tolist() == [0, 1.5, 6]
    constant = figure2.step_relabelling(_fake_run([1.0] * 20, [2.0] * 20))
    assert constant["step_length_cv"] == 0 and constant["estimate_vs_step_r2"] == pytest.approx(1)
    growing = figure2.step_relabelling(_fake_run([1.0] * 20, list(np.geomspace(1, 1e4, 20))))
    assert growing["estimate_vs_step_r2"] < 0.8
