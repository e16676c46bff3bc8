"""Tests of rlvr_dynamics.theory.logit_dynamics: Lemma 1 of Yao et al. against autograd, the softmax
linearisation and the exploration rate (TS6).
"""

import math

import pytest
import torch

from rlvr_dynamics.theory import logit_dynamics

F64 = torch.float64


def test_lemma1_matches_autograd_and_hand_values():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 7, generator=generator, dtype=F64)
    action = torch.randint(7, (50,), generator=generator)
    advantage = torch.randn(50, generator=generator, dtype=F64)
    formula = logit_dynamics.logit_update(logits, action, advantage, 0.7)
    assert torch.allclose(formula, logit_dynamics.logit_update_autograd(logits, action, advantage, 0.7), atol=1e-14)
    # by hand: uniform π over 4, a = 0, A = 2, η = 0.5 → Δz = (0.75, −0.25, −0.25, −0.25)
    hand = logit_dynamics.logit_update(torch.zeros(1, 4, dtype=F64), torch.tensor([0]),
                                       torch.tensor([2.0], dtype=F64), 0.5)
    assert torch.allclose(hand, torch.tensor([[0.75, -0.25, -0.25, -0.25]], dtype=F64))


def test_first_order_probability_change_is_the_softmax_jacobian():
    logits = torch.tensor([[0.3, -1.0, 2.0, 0.0]], dtype=F64)
    delta = 1e-6 * torch.tensor([[1.0, -2.0, 0.5, 3.0]], dtype=F64)
    probs = torch.softmax(logits, -1)
    exact = torch.softmax(logits + delta, -1) - probs
    assert torch.allclose(logit_dynamics.first_order_probability_change(probs, delta), exact, atol=1e-15)


def test_exploration_rate_formula():
    assert math.isclose(logit_dynamics.exploration_rate(4, 0.2, "group", 0.5, 3), 0.2 * 1.5 * 4 / 3)
    assert math.isclose(logit_dynamics.exploration_rate(4, 0.2, "none", 0.5, 1), 0.2 * 0.75 * 0.5 * 2)
    with pytest.raises(ValueError):
        logit_dynamics.exploration_rate(4, 0.2, "batch", 0.5, 3)
