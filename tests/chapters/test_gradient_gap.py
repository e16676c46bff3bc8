"""Tests of rlvr_dynamics.chapters.gradient_gap: the Monte-Carlo plug-in estimate of identity (10)."""

from __future__ import annotations

import torch
from rlvr_dynamics.chapters import gradient_gap
from rlvr_dynamics.theory.policies import TokenPolicy
from _helpers import assert_close, t


def test_monte_carlo_gradient_is_plug_in_identity():
    # (1/n) Σ (r_i − r̄) s_i = Ĵ(1 − Ĵ)(ĝ⁺ − ĝ⁻), with Ĵ = r̄ and ĝ± the sample means of the scores
    # over the correct / incorrect samples: an exact algebraic identity.
    generator = torch.Generator().manual_seed(5)
    instances = gradient_gap.random_token_policies(TokenPolicy(3, 3), 2, 1.0, generator)
    for index, n in ((0, 37), (1, 500)):
        score, reward, _ = gradient_gap.sampled_responses(instances, index, n, generator)
        correct = reward > 0.5
        assert correct.any() and (~correct).any()
        J_hat = reward.mean()
        g_plus = score[correct].mean(0)
        g_minus = score[~correct].mean(0)
        expected = J_hat * (1 - J_hat) * (g_plus - g_minus)
        plug_in = gradient_gap.monte_carlo_gradient(score, reward, unbiased=False)
        assert_close(plug_in, expected, rtol=1e-12, atol=1e-12)
        assert_close(gradient_gap.monte_carlo_gradient(score, reward, unbiased=True), expected * n / (n - 1),
                     rtol=1e-12, atol=1e-12)


def test_monte_carlo_gradient_by_hand():
    # Samples: scores (1, 0), (0, 1), (2, 2) with rewards (1, 0, 1): Ĵ = 2/3,
    # ĝ⁺ = ((1, 0) + (2, 2))/2 = (3/2, 1), ĝ⁻ = (0, 1) ⇒ Ĵ(1 − Ĵ)(ĝ⁺ − ĝ⁻) = (2/9)(3/2, 0) = (1/3, 0).
    score = t([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    reward = t([1.0, 0.0, 1.0])
    assert_close(gradient_gap.monte_carlo_gradient(score, reward, unbiased=False), [1 / 3, 0.0])
    assert_close(gradient_gap.monte_carlo_gradient(score, reward, unbiased=True), [0.5, 0.0])
