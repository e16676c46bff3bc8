"""Tests of rlvr_dynamics.engines.three_response: the quantities against autograd, the direction rules
and the Theorem-2 instance.
"""

from __future__ import annotations

import math

import pytest
import torch

from rlvr_dynamics.engines import three_response
from rlvr_dynamics.theory import bounds, gaps

from _helpers import F64, assert_close, t

STATES = torch.tensor([[0.0, 0.0, 0.3], [1.0, -2.0, 0.5], [-3.0, 1.0, 1.2], [2.0, 0.4, -0.4]], dtype=F64)


REWARD = torch.tensor([1.0, 0.0, 0.0], dtype=F64)


def _autograd_gap(logits):
    leaf = logits.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(three_response.log_odds(leaf).sum(), leaf)
    return grad  # ∇ logit J = g⁺ − g⁻


def test_gap_equals_gradient_of_log_odds_and_generic_formula():
    assert_close(three_response.gradient_gap(STATES), _autograd_gap(STATES), atol=1e-13)
    log_prob = torch.log_softmax(STATES, -1)
    score = torch.eye(3, dtype=F64) - log_prob.exp()[:, None, :]  # e_o − π
    assert_close(three_response.gradient_gap(STATES), gaps.gradient_gap(log_prob, score, REWARD.expand(4, 3)),
                 atol=1e-13)
    assert_close(three_response.value(STATES), torch.softmax(STATES, -1)[:, 0], atol=1e-15)


@pytest.mark.parametrize("rule", three_response.DIRECTION_RULES)
def test_directions_are_unit_orthogonal_to_the_shift_and_aligned_as_asked(rule):
    target = torch.full((4,), 0.05, dtype=F64)
    w = three_response.direction(STATES, rule, target)
    assert_close(torch.linalg.vector_norm(w, dim=-1), torch.ones(4, dtype=F64), atol=1e-13)
    assert_close(w.sum(-1), torch.zeros(4, dtype=F64), atol=1e-13)
    alignment = (w * three_response.gradient_gap(STATES)).sum(-1)
    expected = torch.linalg.vector_norm(three_response.gradient_gap(STATES), dim=-1) if rule == "gap" else target
    assert_close(alignment, expected, atol=1e-13)


def test_overshoot_raises_the_minority_wrong_response_and_benign_the_majority():
    for rule, sign in (("overshoot", 1.0), ("benign", -1.0)):
        w = three_response.direction(STATES, rule, torch.full((4,), 0.01, dtype=F64))
        minority_is_b = STATES[:, 1] <= STATES[:, 2]
        push = torch.where(minority_is_b, w[:, 1] - w[:, 2], w[:, 2] - w[:, 1])
        assert (sign * push > 0).all()


def test_negative_variance_matches_generic_conditional_variance():
    w = three_response.direction(STATES, "overshoot", torch.full((4,), 0.02, dtype=F64))
    log_prob = torch.log_softmax(STATES, -1)
    score = torch.eye(3, dtype=F64) - log_prob.exp()[:, None, :]
    var_plus, var_minus = gaps.conditional_variances(log_prob, score, REWARD.expand(4, 3), w)
    assert_close(var_plus, torch.zeros(4, dtype=F64), atol=1e-15)
    assert_close(three_response.negative_variance(STATES, w), var_minus, atol=1e-13)


def test_gap_direction_never_lowers_the_log_odds():
    """Jensen: along the gap, the correct logit rises and every wrong logit falls."""
    runs = three_response.simulate(STATES, 20, "gap", torch.tensor([0.01, 0.3, 3.0, 30.0], dtype=F64))
    assert (runs.log_odds_change > 0).all()


def test_theorem2_instance_collapses_in_the_window_and_not_below_the_safe_step():
    low, high = bounds.theorem2_window(0.01)
    assert low == pytest.approx(60 * 0.01 / 2.5) and high == pytest.approx(1 / (2 * math.sqrt(2.5)))
    steps = torch.tensor([low, high, 0.01 / 33], dtype=F64)
    runs = three_response.simulate(three_response.instance_logits(0.3, 3), 200, "overshoot", steps,
                                   torch.full((3,), 0.01, dtype=F64))
    assert_close(runs.alignment, torch.full_like(runs.alignment, 0.01), atol=1e-12)
    assert (runs.value[1:, :2] < runs.value[:-1, :2]).all()
    assert (runs.log_odds_change[:, 2] > 0).all()  # the safe step of (15a) improves at every step


def test_simulate_step_rules():
    base = torch.full((4,), 0.2, dtype=F64)
    runs = three_response.simulate(STATES, 5, "gap", base, step_rule="theorem1b")
    assert_close(runs.step, runs.alignment / (2 * bounds.LEMMA_CONSTANT), atol=1e-15)
    runs = three_response.simulate(STATES, 5, "gap", base, step_rule="decaying")
    assert_close(runs.step[3], 0.2 * 0.9**3 * torch.ones(4, dtype=F64), atol=1e-15)


@pytest.mark.parametrize("call, match", [
    (lambda: three_response.direction(STATES, "sideways"), "'direction'"),
    (lambda: three_response.direction(STATES, "overshoot"), "'alignment'"),
    (lambda: three_response.simulate(STATES, 0, "gap", torch.ones(4, dtype=F64)), "'steps'"),
    (lambda: three_response.simulate(STATES, 3, "gap", torch.ones(4, dtype=F64), step_rule="fast"), "'step_rule'"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_instance_logits_hit_the_initial_value():
    values = t([0.05, 0.3, 0.9])
    assert_close(three_response.value(three_response.instance_logits(values)), values, atol=1e-14)
