"""Tests of rlvr_dynamics.theory.estimators: REINFORCE (4), GRPO (5), Dr. GRPO directions, exact and
sampled. float64 throughout.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlvr_dynamics.chapters import gradient_gap
from rlvr_dynamics.theory import estimators, gaps
from rlvr_dynamics.theory.policies import TokenPolicy

from _helpers import F64, assert_close, t


# Two arms, logits (0, log 3): π = (1/4, 3/4); reward (1, 0): J = 1/4, σ = √(J(1 − J)) = √3/4.
# Softmax scores: s₁ = (3/4, −3/4), s₂ = (−1/4, 1/4);  ∇J = 3/16·(1, −1).
def two_arm():
    log_prob = torch.log_softmax(t([0.0, math.log(3.0)]), dim=-1)
    score = t([[0.75, -0.75], [-0.25, 0.25]])
    reward = t([1.0, 0.0])
    return log_prob, score, reward


def random_instances(n=5, seed=0):
    """n token-policy instances (V = 3, T = 4) with exact log π, scores, rewards and lengths."""
    generator = torch.Generator().manual_seed(seed)
    instances = gradient_gap.random_token_policies(TokenPolicy(3, 4), n, 1.0, generator)
    log_prob, score = instances.policy.log_prob_and_score(instances.theta, instances.tokens, instances.lengths)
    lengths = instances.lengths.expand_as(log_prob)
    return log_prob, score, instances.reward, lengths


# ----------------------------------------------------------------------------------------------
# expected_direction
# ----------------------------------------------------------------------------------------------


def test_reinforce_is_policy_gradient():
    log_prob, score, reward, lengths = random_instances()
    direction = estimators.expected_direction(log_prob, score, reward, lengths, "reinforce")
    assert_close(direction, gaps.policy_gradient(log_prob, score, reward))
    # Independent NumPy evaluation of eq. (4): Σ_o π(o)(r(o) − J) s(o).
    p, s, r = log_prob.exp().numpy(), score.numpy(), reward.numpy()
    J = (p * r).sum(-1, keepdims=True)
    assert_close(direction, np.einsum("nr,nrd->nd", p * (r - J), s), rtol=1e-10, atol=1e-13)


def test_reinforce_two_arm_by_hand():
    log_prob, score, reward = two_arm()
    direction = estimators.expected_direction(log_prob, score, reward, torch.ones(2), "reinforce")
    assert_close(direction, [3 / 16, -3 / 16])


@pytest.mark.parametrize("group_size", [2, 4, 8])
def test_dr_grpo_is_scaled_policy_gradient(group_size):
    log_prob, score, reward, lengths = random_instances()
    direction = estimators.expected_direction(log_prob, score, reward, lengths, "dr_grpo", group_size)
    assert_close(direction, (1 - 1 / group_size) * gaps.policy_gradient(log_prob, score, reward))


def test_dr_grpo_two_arm_by_hand():
    # G = 4: (1 − 1/4)·3/16·(1, −1) = 9/64·(1, −1).
    log_prob, score, reward = two_arm()
    direction = estimators.expected_direction(log_prob, score, reward, torch.ones(2), "dr_grpo", 4)
    assert_close(direction, [9 / 64, -9 / 64])


@pytest.mark.parametrize("length", [1, 3])
def test_grpo_equal_lengths(length):
    # With |o| = ℓ for every o: g_GRPO = ∇J / (ℓ·√(J(1 − J))).
    log_prob, score, reward, lengths = random_instances()
    lengths = torch.full_like(lengths, length)
    direction = estimators.expected_direction(log_prob, score, reward, lengths, "grpo")
    J = gaps.success_probability(log_prob, reward)
    expected = gaps.policy_gradient(log_prob, score, reward) / (length * torch.sqrt(J * (1 - J))).unsqueeze(-1)
    assert_close(direction, expected, rtol=1e-10, atol=1e-13)


def test_grpo_two_arm_by_hand():
    # Lengths (1, 3). g_GRPO = Σ_o π(o)(r − J)/σ · s(o)/|o|
    #   = [1/4·3/4·s₁/1 + 3/4·(−1/4)·s₂/3] / σ = (3/16)(4/√3)·(s₁ − s₂/3)
    #   = (√3/4)·(3/4 + 1/12, −3/4 − 1/12) = (√3/4)(5/6)·(1, −1) = (5√3/24)·(1, −1).
    log_prob, score, reward = two_arm()
    direction = estimators.expected_direction(log_prob, score, reward, torch.tensor([1, 3]), "grpo")
    c = 5 * math.sqrt(3) / 24
    assert_close(direction, [c, -c])


def test_grpo_general_lengths_against_numpy():
    log_prob, score, reward, _ = random_instances(seed=1)
    generator = torch.Generator().manual_seed(5)
    lengths = torch.randint(1, 6, log_prob.shape, generator=generator)
    direction = estimators.expected_direction(log_prob, score, reward, lengths, "grpo")
    p, s, r, ell = log_prob.exp().numpy(), score.numpy(), reward.numpy(), lengths.numpy()
    J = (p * r).sum(-1, keepdims=True)
    sigma = np.sqrt(J * (1 - J))
    expected = np.einsum("nr,nrd->nd", p * (r - J) / sigma / ell, s)
    assert_close(direction, expected, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_grpo_degenerate_reward_is_zero_not_nan(value):
    # σ = 0 when J ∈ {0, 1}: the direction is defined as 0.
    log_prob, score, _ = two_arm()
    reward = torch.full((2,), value, dtype=F64)
    direction = estimators.expected_direction(log_prob, score, reward, torch.ones(2), "grpo")
    assert_close(direction, [0.0, 0.0])


def test_expected_direction_batched_equals_loop():
    log_prob, score, reward, lengths = random_instances(n=6, seed=2)
    log_prob, score = log_prob.unflatten(0, (2, 3)), score.unflatten(0, (2, 3))
    reward, lengths = reward.unflatten(0, (2, 3)), lengths.unflatten(0, (2, 3))
    for variant in estimators.VARIANTS:
        batched = estimators.expected_direction(log_prob, score, reward, lengths, variant, 4)
        assert batched.shape == (2, 3, score.shape[-1])
        for i in range(2):
            for j in range(3):
                single = estimators.expected_direction(
                    log_prob[i, j], score[i, j], reward[i, j], lengths[i, j], variant, 4
                )
                torch.testing.assert_close(batched[i, j], single, rtol=1e-12, atol=1e-14)


def test_unknown_variant_raises():
    log_prob, score, reward = two_arm()
    with pytest.raises(ValueError):
        estimators.expected_direction(log_prob, score, reward, torch.ones(2), "ppo")
    with pytest.raises(ValueError):
        estimators.group_advantages(reward, "GRPO")
    with pytest.raises(ValueError):
        estimators.sampled_direction(score, reward, torch.ones(2), "dapo")


@pytest.mark.parametrize("group_size", [None, 1, 0])
def test_dr_grpo_needs_group_size(group_size):
    log_prob, score, reward = two_arm()
    with pytest.raises(ValueError):
        estimators.expected_direction(log_prob, score, reward, torch.ones(2), "dr_grpo", group_size)


@pytest.mark.parametrize("variant", ["reinforce", "dr_grpo"])
def test_expected_direction_shape_mismatch_raises(variant):
    log_prob, score, reward = two_arm()
    with pytest.raises(ValueError):  # reward of a different length
        estimators.expected_direction(log_prob, score, t([1.0, 0.0, 0.0]), torch.ones(2), variant, 4)
    with pytest.raises(ValueError):  # score without the parameter axis
        estimators.expected_direction(log_prob, score[:, 0], reward, torch.ones(2), variant, 4)
    with pytest.raises(ValueError):  # score with one response instead of two
        estimators.expected_direction(log_prob, score[:1], reward, torch.ones(2), variant, 4)


def test_grpo_reward_shape_mismatch_raises():
    log_prob, score, _ = two_arm()
    with pytest.raises(ValueError):
        estimators.expected_direction(log_prob, score, t([1.0, 0.0, 0.0]), torch.ones(2), "grpo")


def test_grpo_score_shape_mismatch_raises():
    log_prob, score, reward = two_arm()
    with pytest.raises(ValueError):
        estimators.expected_direction(log_prob, score[:1], reward, torch.ones(2), "grpo")
    with pytest.raises(ValueError):
        estimators.expected_direction(log_prob, score, reward, torch.ones(3), "grpo")


def test_sampled_direction_shape_mismatch_raises():
    score = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError):
        estimators.sampled_direction(score[:1], t([1.0, 0.0]), torch.ones(2), "dr_grpo")
    with pytest.raises(ValueError):
        estimators.group_advantages(t([1.0, 0.0]), "reinforce", t([0.5, 0.5, 0.5]))


# ----------------------------------------------------------------------------------------------
# group_advantages
# ----------------------------------------------------------------------------------------------


def test_group_advantages_by_hand():
    # Rewards (1, 0, 0, 1): mean 1/2, centred (1/2, −1/2, −1/2, 1/2).
    # Unbiased std: √(Σ (r − r̄)² / (G − 1)) = √(1/3); GRPO divides by √(1/3) + 1e−4.
    rewards = t([1.0, 0.0, 0.0, 1.0])
    centred = [0.5, -0.5, -0.5, 0.5]
    assert_close(estimators.group_advantages(rewards, "dr_grpo"), centred)
    scale = math.sqrt(1 / 3) + 1e-4
    assert_close(estimators.group_advantages(rewards, "grpo"), [c / scale for c in centred])
    # REINFORCE with exact J = 0.3: r − 0.3.
    assert_close(estimators.group_advantages(rewards, "reinforce", t(0.3)), [0.7, -0.3, -0.3, 0.7])


def test_group_advantages_grpo_uses_unbiased_std_not_population_std():
    # Rewards (1, 0, 0, 0): centred (3/4, −1/4, −1/4, −1/4); Σ c² = 3/4;
    # unbiased std √(1/4) = 1/2 (population std would be √(3/16) ≈ 0.433).
    rewards = t([1.0, 0.0, 0.0, 0.0])
    expected = np.array([0.75, -0.25, -0.25, -0.25]) / (0.5 + 1e-4)
    assert_close(estimators.group_advantages(rewards, "grpo"), expected)


def test_group_advantages_batched():
    rewards = t([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    J = t([0.5, 0.6, 0.1])
    r = rewards.numpy()
    centred = r - r.mean(-1, keepdims=True)
    std = r.std(-1, ddof=1, keepdims=True)
    assert_close(estimators.group_advantages(rewards, "dr_grpo"), centred)
    assert_close(estimators.group_advantages(rewards, "grpo"), centred / (std + 1e-4))
    assert_close(estimators.group_advantages(rewards, "reinforce", J), r - J.numpy()[:, None])


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_group_advantages_all_equal_are_zero(value):
    rewards = torch.full((5,), value, dtype=F64)
    for variant in ("grpo", "dr_grpo"):
        advantages = estimators.group_advantages(rewards, variant)
        assert torch.all(advantages == 0.0)


def test_group_advantages_reinforce_needs_success_probability():
    with pytest.raises(ValueError):
        estimators.group_advantages(t([1.0, 0.0]), "reinforce")


@pytest.mark.parametrize("variant", ["grpo", "dr_grpo"])
def test_group_advantages_group_of_one_raises(variant):
    with pytest.raises(ValueError):
        estimators.group_advantages(t([1.0]), variant)
    with pytest.raises(ValueError):
        estimators.group_advantages(t([[1.0], [0.0]]), variant)


# ----------------------------------------------------------------------------------------------
# sampled_direction
# ----------------------------------------------------------------------------------------------


def test_sampled_direction_by_hand():
    # G = 2, rewards (1, 0), scores s₁ = (1, 2), s₂ = (3, −1), lengths (1, 2).
    # dr_grpo: A = (1/2, −1/2); (1/2)(A₁s₁ + A₂s₂) = (1/4)(s₁ − s₂) = (−1/2, 3/4).
    # grpo: unbiased std of (1, 0) = √(1/2); A = ±(1/2)/(√(1/2) + 1e−4); divided by |o|:
    #   (1/2)·a·(s₁/1 − s₂/2) with a = (1/2)/(√(1/2) + 1e−4);  s₁ − s₂/2 = (−1/2, 5/2).
    # reinforce, J = 0.25: A = (3/4, −1/4); (1/2)(3/4 s₁ − 1/4 s₂) = (1/2)(0, 7/4) = (0, 7/8).
    score = t([[1.0, 2.0], [3.0, -1.0]])
    rewards = t([1.0, 0.0])
    lengths = torch.tensor([1, 2])
    assert_close(estimators.sampled_direction(score, rewards, lengths, "dr_grpo"), [-0.5, 0.75])
    a = 0.5 / (math.sqrt(0.5) + 1e-4)
    assert_close(estimators.sampled_direction(score, rewards, lengths, "grpo"), [0.5 * a * -0.5, 0.5 * a * 2.5])
    assert_close(estimators.sampled_direction(score, rewards, lengths, "reinforce", t(0.25)), [0.0, 0.875])


def test_sampled_direction_batched_equals_loop():
    generator = torch.Generator().manual_seed(3)
    score = torch.randn(3, 2, 5, 4, generator=generator, dtype=F64)
    rewards = (torch.rand(3, 2, 5, generator=generator, dtype=F64) < 0.5).to(F64)
    lengths = torch.randint(1, 5, (3, 2, 5), generator=generator)
    J = torch.rand(3, 2, generator=generator, dtype=F64)
    for variant in estimators.VARIANTS:
        batched = estimators.sampled_direction(score, rewards, lengths, variant, J)
        assert batched.shape == (3, 2, 4)
        for i in range(3):
            for j in range(2):
                single = estimators.sampled_direction(score[i, j], rewards[i, j], lengths[i, j], variant, J[i, j])
                torch.testing.assert_close(batched[i, j], single, rtol=1e-12, atol=1e-14)


def test_sampled_direction_unbiasedness_monte_carlo():
    # One random V = 3, T = 3 token policy (R = 7, D = 21), 20 000 groups of G = 4 drawn with a fixed
    # seed. For each coordinate, z = (mean of the group directions − target) / (sample std / √n).
    # Tolerance: |z| < 4.5 for every coordinate with non-zero variance (Bonferroni over ≤ 21
    # coordinates: family-wise false-alarm rate ≈ 21 · 6.8e−6 ≈ 1.4e−4). Coordinates with zero
    # variance (W's EOS row and the last position bias: no response touches them) must have an
    # exact target of 0.
    # Targets: dr_grpo → (1 − 1/G)∇J; reinforce with exact J → ∇J. Power check: each average is
    # far (max |z| > 10) from the *other* target, so the test discriminates the 1 − 1/G factor.
    G, n_groups = 4, 20_000
    generator = torch.Generator().manual_seed(1)
    instances = gradient_gap.random_token_policies(TokenPolicy(3, 3), 1, 1.0, generator)
    log_prob, score_all = instances.policy.log_prob_and_score(instances.theta[0], instances.tokens, instances.lengths)
    grad = gaps.policy_gradient(log_prob, score_all, instances.reward[0])
    J = gaps.success_probability(log_prob, instances.reward[0])
    assert 0.05 < J < 0.95

    score, reward, lengths = gradient_gap.sampled_responses(instances, 0, G * n_groups, generator)
    score = score.unflatten(0, (n_groups, G))
    reward, lengths = reward.unflatten(0, (n_groups, G)), lengths.unflatten(0, (n_groups, G))
    cases = [("dr_grpo", (1 - 1 / G) * grad, grad), ("reinforce", grad, (1 - 1 / G) * grad)]
    for variant, target, other in cases:
        estimates = estimators.sampled_direction(score, reward, lengths, variant, J.expand(n_groups))
        assert estimates.shape == (n_groups, 21)
        standard_error = estimates.std(0) / math.sqrt(n_groups)
        varies = standard_error > 0
        assert varies.sum() >= 12
        assert torch.all(target[~varies] == 0.0)
        z = (estimates.mean(0) - target)[varies] / standard_error[varies]
        assert z.abs().max() < 4.5, (variant, z)
        z_other = (estimates.mean(0) - other)[varies] / standard_error[varies]
        assert z_other.abs().max() > 10.0, (variant, z_other)


# ----------------------------------------------------------------------------------------------
# normalize_direction
# ----------------------------------------------------------------------------------------------


def test_normalize_direction():
    direction, norm = estimators.normalize_direction(t([3.0, 4.0]))
    assert_close(direction, [0.6, 0.8])
    assert_close(norm, 5.0)

    generator = torch.Generator().manual_seed(4)
    updates = torch.randn(4, 3, 7, generator=generator, dtype=F64)
    updates[1, 2] = 0.0
    direction, norm = estimators.normalize_direction(updates)
    assert direction.shape == (4, 3, 7) and norm.shape == (4, 3)
    expected_norm = np.linalg.norm(updates.numpy(), axis=-1)
    assert_close(norm, expected_norm)
    unit = torch.linalg.vector_norm(direction, dim=-1)
    nonzero = torch.ones(4, 3, dtype=torch.bool)
    nonzero[1, 2] = False
    assert_close(unit[nonzero], torch.ones(11, dtype=F64))
    assert_close(direction * norm.unsqueeze(-1), updates)  # g = ‖g‖ w
    # The zero update stays the zero direction, with norm 0, no NaN.
    assert torch.all(direction[1, 2] == 0.0)
    assert norm[1, 2] == 0.0
    assert not torch.isnan(direction).any()
