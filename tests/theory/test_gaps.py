"""Tests of rlvr_dynamics.theory.gaps: J, log-odds, π±, g±, the Gradient Gap (9), identity (10),
gap alignment (11) and the conditional variances of (17).

Expected values are derived by hand (comments) or computed independently with NumPy / autograd.
Everything is float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlvr_dynamics.chapters.gradient_gap import random_token_policies
from rlvr_dynamics.theory import gaps
from rlvr_dynamics.theory.policies import TokenPolicy, bandit_log_policy, bandit_scores

from _helpers import F64, assert_close, t

INF = math.inf


# ----------------------------------------------------------------------------------------------
# Hand-computed instances
# ----------------------------------------------------------------------------------------------


def two_arm():
    log_prob = torch.log_softmax(t([math.log(1.0), math.log(3.0)]), dim=-1)
    score = t([[0.75, -0.75], [-0.25, 0.25]])
    reward = t([1.0, 0.0])
    return log_prob, score, reward


def three_response():
    log_prob = torch.log_softmax(t([0.0, math.log(2.0), math.log(5.0)]), dim=-1)
    probs = t([1 / 8, 2 / 8, 5 / 8])
    score = torch.eye(3, dtype=F64) - probs
    reward = t([1.0, 1.0, 0.0])
    return log_prob, score, reward


class TestTwoArmByHand:
    def test_success_probability(self):
        log_prob, _, reward = two_arm()
        assert_close(gaps.log_success_probability(log_prob, reward), math.log(0.25))
        assert_close(gaps.success_probability(log_prob, reward), 0.25)

    def test_log_odds(self):
        log_prob, _, reward = two_arm()
        assert_close(gaps.log_odds(log_prob, reward), math.log(1.0 / 3.0))

    def test_conditional_log_policy(self):
        log_prob, _, reward = two_arm()
        assert_close(gaps.conditional_log_policy(log_prob, reward, positive=True), [0.0, -INF])
        assert_close(gaps.conditional_log_policy(log_prob, reward, positive=False), [-INF, 0.0])

    def test_conditional_score_means(self):
        log_prob, score, reward = two_arm()
        g_plus, g_minus = gaps.conditional_score_means(log_prob, score, reward)
        assert_close(g_plus, [0.75, -0.75])
        assert_close(g_minus, [-0.25, 0.25])

    def test_gradient_gap(self):
        log_prob, score, reward = two_arm()
        assert_close(gaps.gradient_gap(log_prob, score, reward), [1.0, -1.0])

    def test_policy_gradient_both_sides_of_identity(self):
        log_prob, score, reward = two_arm()
        assert_close(gaps.policy_gradient(log_prob, score, reward), [3 / 16, -3 / 16])
        assert_close(gaps.policy_gradient_from_gap(log_prob, score, reward), [3 / 16, -3 / 16])

    def test_gap_alignment(self):
        # gap = (1, −1): w = (1, 0) → 1; w = (1, −1)/√2 → √2 (= ‖gap‖, cosine 1); w = (1, 1)/√2 → 0.
        gap = t([1.0, -1.0])
        assert_close(gaps.gap_alignment(t([1.0, 0.0]), gap), 1.0)
        assert_close(gaps.gap_alignment(t([1.0, -1.0]) / math.sqrt(2), gap), math.sqrt(2))
        assert_close(gaps.gap_alignment(t([1.0, 1.0]) / math.sqrt(2), gap), 0.0)

    def test_conditional_variances_single_response_regions(self):
        # Each region holds one response: both conditional variances are exactly 0.
        log_prob, score, reward = two_arm()
        var_plus, var_minus = gaps.conditional_variances(log_prob, score, reward, t([1.0, 0.0]))
        assert_close(var_plus, 0.0)
        assert_close(var_minus, 0.0)

    def test_reward_swapped(self):
        # Reward (0, 1): J = 3/4, gap = s₂ − s₁ = (−1, 1), ∇J = 3/16·(−1, 1).
        log_prob, score, _ = two_arm()
        reward = t([0.0, 1.0])
        assert_close(gaps.success_probability(log_prob, reward), 0.75)
        assert_close(gaps.log_odds(log_prob, reward), math.log(3.0))
        assert_close(gaps.gradient_gap(log_prob, score, reward), [-1.0, 1.0])
        assert_close(gaps.policy_gradient_from_gap(log_prob, score, reward), [-3 / 16, 3 / 16])


class TestThreeResponsesByHand:
    def test_success_and_log_odds(self):
        log_prob, _, reward = three_response()
        assert_close(gaps.success_probability(log_prob, reward), 3 / 8)
        assert_close(gaps.log_success_probability(log_prob, reward), math.log(3 / 8))
        assert_close(gaps.log_odds(log_prob, reward), math.log(3 / 5))

    def test_conditional_log_policy(self):
        log_prob, _, reward = three_response()
        assert_close(
            gaps.conditional_log_policy(log_prob, reward, positive=True), [math.log(1 / 3), math.log(2 / 3), -INF]
        )
        assert_close(gaps.conditional_log_policy(log_prob, reward, positive=False), [-INF, -INF, 0.0])

    def test_score_means_and_gap(self):
        log_prob, score, reward = three_response()
        g_plus, g_minus = gaps.conditional_score_means(log_prob, score, reward)
        assert_close(g_plus, [5 / 24, 10 / 24, -15 / 24])
        assert_close(g_minus, [-1 / 8, -2 / 8, 3 / 8])
        assert_close(gaps.gradient_gap(log_prob, score, reward), [1 / 3, 2 / 3, -1.0])

    def test_policy_gradient(self):
        log_prob, score, reward = three_response()
        expected = [5 / 64, 10 / 64, -15 / 64]
        assert_close(gaps.policy_gradient(log_prob, score, reward), expected)
        assert_close(gaps.policy_gradient_from_gap(log_prob, score, reward), expected)

    def test_gap_alignment(self):
        # w = (0, 0, 1) picks the last coordinate of the gap: −1; w = (1, 1, 1)/√3: (1/3 + 2/3 − 1)/√3 = 0.
        gap = t([1 / 3, 2 / 3, -1.0])
        assert_close(gaps.gap_alignment(t([0.0, 0.0, 1.0]), gap), -1.0)
        assert_close(gaps.gap_alignment(t([1.0, 1.0, 1.0]) / math.sqrt(3), gap), 0.0)

    def test_conditional_variances(self):
        log_prob, score, reward = three_response()
        var_plus, var_minus = gaps.conditional_variances(log_prob, score, reward, t([1.0, 0.0, 0.0]))
        assert_close(var_plus, 2 / 9)
        assert_close(var_minus, 0.0)


# ----------------------------------------------------------------------------------------------
# Batched inputs
# ----------------------------------------------------------------------------------------------


def random_batch(shape=(4, 3), responses=5, dim=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    log_prob = torch.log_softmax(2.0 * torch.randn(*shape, responses, generator=generator, dtype=F64), dim=-1)
    score = torch.randn(*shape, responses, dim, generator=generator, dtype=F64)
    reward = (torch.rand(*shape, responses, generator=generator, dtype=F64) < 0.5).to(F64)
    reward[0, 0] = 0.0  # one instance with J = 0
    reward[1, 1] = 1.0  # one instance with J = 1
    reward[2, 2, :2] = t([1.0, 0.0])  # and make sure one is mixed
    direction = torch.randn(*shape, dim, generator=generator, dtype=F64)
    return log_prob, score, reward, direction


def all_quantities(log_prob, score, reward, direction):
    """Every function of gaps.py on one input (batched or not), by name."""
    g_plus, g_minus = gaps.conditional_score_means(log_prob, score, reward)
    gap = gaps.gradient_gap(log_prob, score, reward)
    var_plus, var_minus = gaps.conditional_variances(log_prob, score, reward, direction)
    return {
        "log_J": gaps.log_success_probability(log_prob, reward),
        "J": gaps.success_probability(log_prob, reward),
        "log_odds": gaps.log_odds(log_prob, reward),
        "cond_plus": gaps.conditional_log_policy(log_prob, reward, True),
        "cond_minus": gaps.conditional_log_policy(log_prob, reward, False),
        "g_plus": g_plus,
        "g_minus": g_minus,
        "gap": gap,
        "pg": gaps.policy_gradient(log_prob, score, reward),
        "pg_gap": gaps.policy_gradient_from_gap(log_prob, score, reward),
        "align": gaps.gap_alignment(direction, gap),
        "var_plus": var_plus,
        "var_minus": var_minus,
    }


def test_batched_equals_loop_of_unbatched():
    log_prob, score, reward, direction = random_batch()
    batched = all_quantities(log_prob, score, reward, direction)
    assert batched["J"].shape == (4, 3)
    assert batched["gap"].shape == (4, 3, 6)
    assert batched["cond_plus"].shape == (4, 3, 5)
    for i in range(4):
        for j in range(3):
            lp, s, r, w = log_prob[i, j], score[i, j], reward[i, j], direction[i, j]
            single = all_quantities(lp, s, r, w)
            for name, value in single.items():
                torch.testing.assert_close(batched[name][i, j], value, rtol=1e-12, atol=1e-14, msg=name)


def test_batched_gap_alignment_broadcasts_one_direction():
    # One direction (D,) against a batch of gaps (4, 3, D): row-wise dot products.
    _, score, _, direction = random_batch()
    gap = score[..., 0, :]  # any (4, 3, 6) tensor
    w = direction[0, 0]
    expected = np.einsum("ijd,d->ij", gap.numpy(), w.numpy())
    assert_close(gaps.gap_alignment(w, gap), expected)


# ----------------------------------------------------------------------------------------------
# Edge cases: empty regions, J within rounding of 1, huge logits
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("all_correct", [False, True], ids=["J=0", "J=1"])
def test_empty_region(all_correct):
    log_prob, score, _ = three_response()
    reward = torch.full((3,), 1.0 if all_correct else 0.0, dtype=F64)
    probs = log_prob.exp()
    full_mean = probs @ score  # E_π[s]: the occupied region's conditional mean is the full mean

    J = gaps.success_probability(log_prob, reward)
    assert_close(J, 1.0 if all_correct else 0.0)
    assert_close(gaps.log_odds(log_prob, reward), INF if all_correct else -INF)

    empty_cond = gaps.conditional_log_policy(log_prob, reward, positive=not all_correct)
    full_cond = gaps.conditional_log_policy(log_prob, reward, positive=all_correct)
    assert torch.all(empty_cond == -INF)
    assert_close(full_cond, log_prob)

    g_plus, g_minus = gaps.conditional_score_means(log_prob, score, reward)
    g_empty, g_full = (g_minus, g_plus) if all_correct else (g_plus, g_minus)
    assert_close(g_empty, torch.zeros(3, dtype=F64))
    assert_close(g_full, full_mean)
    expected_gap = full_mean if all_correct else -full_mean
    assert_close(gaps.gradient_gap(log_prob, score, reward), expected_gap)

    assert_close(gaps.policy_gradient(log_prob, score, reward), torch.zeros(3, dtype=F64))
    assert_close(gaps.policy_gradient_from_gap(log_prob, score, reward), torch.zeros(3, dtype=F64))
    var_plus, var_minus = gaps.conditional_variances(log_prob, score, reward, t([1.0, 0.0, 0.0]))
    var_empty = var_minus if all_correct else var_plus
    assert_close(var_empty, 0.0)
    # Occupied region: Var_π[w·s] = Var_π[e₁ − π₁ over arms] = π₁(1 − π₁) = 7/64.
    assert_close(var_plus if all_correct else var_minus, 7 / 64)
    outputs = [J, g_plus, g_minus, var_plus, var_minus, gaps.policy_gradient_from_gap(log_prob, score, reward)]
    assert not any(torch.isnan(x).any() for x in outputs)


def test_empty_region_batched_no_nan():
    log_prob, score, reward, direction = random_batch()
    outputs = [
        gaps.log_success_probability(log_prob, reward),
        *gaps.conditional_score_means(log_prob, score, reward),
        gaps.gradient_gap(log_prob, score, reward),
        gaps.policy_gradient(log_prob, score, reward),
        gaps.policy_gradient_from_gap(log_prob, score, reward),
        *gaps.conditional_variances(log_prob, score, reward, direction),
        gaps.log_odds(log_prob, reward),
    ]
    for out in outputs:
        assert not torch.isnan(out).any()
    assert_close(gaps.policy_gradient_from_gap(log_prob, score, reward)[0, 0], torch.zeros(6, dtype=F64))
    assert_close(gaps.policy_gradient_from_gap(log_prob, score, reward)[1, 1], torch.zeros(6, dtype=F64))
    assert_close(gaps.conditional_score_means(log_prob, score, reward)[0][0, 0], torch.zeros(6, dtype=F64))
    assert_close(gaps.conditional_score_means(log_prob, score, reward)[1][1, 1], torch.zeros(6, dtype=F64))


def test_success_within_1e20_of_one():
    # Logits z = (0, −50, −51), reward (1, 0, 0). With L = log(1 + e^{−50} + e^{−51}):
    #   π₁ = e^{−L}, π₂ = e^{−50−L}, π₃ = e^{−51−L};  1 − J = π₂ + π₃ ≈ 2.6e−22.
    # log odds = log π₁ − log(π₂ + π₃) = −L − (−50 − L + log(1 + e^{−1})) = 50 − log(1 + e^{−1}),
    # whereas log(J) − log(1 − J) from J itself is +inf (J rounds to 1.0).
    L = math.log1p(math.exp(-50.0) + math.exp(-51.0))
    log_prob = t([-L, -50.0 - L, -51.0 - L])
    reward = t([1.0, 0.0, 0.0])
    J = gaps.success_probability(log_prob, reward)
    assert J.item() == 1.0  # 1 − J is below float64 resolution ...
    assert torch.isinf(torch.log(J) - torch.log1p(-J))  # ... so the naive log odds is useless
    expected = 50.0 - math.log1p(math.exp(-1.0))
    assert_close(gaps.log_odds(log_prob, reward), expected, rtol=1e-14, atol=0.0)

    # ∇J of the softmax (J = π₁): ∂J/∂z = π₁(e₁ − π) = (π₁(π₂ + π₃), −π₁π₂, −π₁π₃), each ~1e−22.
    p1, p2, p3 = math.exp(-L), math.exp(-50.0 - L), math.exp(-51.0 - L)
    # Scores written without cancellation: e₁ − π = (π₂ + π₃, −π₂, −π₃).
    score = t([[p2 + p3, -p2, -p3], [-p1, 1.0 - p2, -p3], [-p1, -p2, 1.0 - p3]])
    expected_grad = [p1 * (p2 + p3), -p1 * p2, -p1 * p3]
    assert_close(gaps.policy_gradient_from_gap(log_prob, score, reward), expected_grad, rtol=1e-12, atol=0.0)
    assert_close(gaps.policy_gradient(log_prob, score, reward), expected_grad, rtol=1e-12, atol=0.0)
    # gap = π⁺ − π⁻ = (1, −1/(1 + e^{−1}), −e^{−1}/(1 + e^{−1})), an O(1) vector.
    a = 1.0 / (1.0 + math.exp(-1.0))
    assert_close(gaps.gradient_gap(log_prob, score, reward), [1.0, -a, -(1.0 - a)], rtol=1e-12, atol=1e-15)


def test_logits_of_magnitude_1e4_are_finite():
    # Logits (1e4, −1e4, 0): log π = (0, −2e4, −1e4) (exactly, in float64), π ≈ e₁.
    # Reward (0, 1, 1): log J = logsumexp(−2e4, −1e4) = −1e4; log(1 − J) = 0 ⇒ log odds = −1e4.
    # π⁺ = (0, e^{−1e4}, 1) ≈ e₃, π⁻ = e₁; with softmax scores e_y − π ≈ e_y − e₁:
    # g⁺ ≈ e₃ − e₁, g⁻ ≈ 0, gap = π⁺ − π⁻ = (−1, 0, 1); ∇J = J(1 − J)·gap underflows to 0.
    logits = t([1e4, -1e4, 0.0])
    log_prob = torch.log_softmax(logits, dim=-1)
    reward = t([0.0, 1.0, 1.0])
    score = torch.eye(3, dtype=F64) - log_prob.exp()
    assert_close(gaps.log_success_probability(log_prob, reward), -1e4)
    assert_close(gaps.log_odds(log_prob, reward), -1e4)
    g_plus, g_minus = gaps.conditional_score_means(log_prob, score, reward)
    assert_close(g_plus, [-1.0, 0.0, 1.0])
    assert_close(g_minus, [0.0, 0.0, 0.0])
    assert_close(gaps.gradient_gap(log_prob, score, reward), [-1.0, 0.0, 1.0])
    for out in (
        gaps.success_probability(log_prob, reward),
        gaps.policy_gradient(log_prob, score, reward),
        gaps.policy_gradient_from_gap(log_prob, score, reward),
        *gaps.conditional_variances(log_prob, score, reward, t([1.0, 1.0, 1.0])),
        gaps.conditional_log_policy(log_prob, reward, True)[1:],
    ):
        assert torch.isfinite(out).all()
    assert_close(gaps.policy_gradient_from_gap(log_prob, score, reward), [0.0, 0.0, 0.0])


# ----------------------------------------------------------------------------------------------
# Shape checks
# ----------------------------------------------------------------------------------------------


def test_log_prob_reward_shape_mismatch_raises():
    log_prob, score, _ = three_response()
    bad_reward = t([1.0, 0.0])
    for fn in (gaps.log_success_probability, gaps.success_probability, gaps.log_odds):
        with pytest.raises(ValueError):
            fn(log_prob, bad_reward)
    with pytest.raises(ValueError):
        gaps.conditional_log_policy(log_prob, bad_reward, True)
    for fn in (gaps.conditional_score_means, gaps.gradient_gap, gaps.policy_gradient, gaps.policy_gradient_from_gap):
        with pytest.raises(ValueError):
            fn(log_prob, score, bad_reward)
    with pytest.raises(ValueError):
        gaps.conditional_variances(log_prob, score, bad_reward, t([1.0, 0.0, 0.0]))


def test_batched_reward_against_unbatched_log_prob_raises():
    log_prob, score, reward = three_response()
    with pytest.raises(ValueError):
        gaps.success_probability(log_prob, reward.expand(2, 3))


def test_score_without_parameter_axis_raises():
    log_prob, _, reward = three_response()
    flat_score = t([0.1, 0.2, 0.3])  # (R,) instead of (R, D)
    for fn in (gaps.conditional_score_means, gaps.gradient_gap, gaps.policy_gradient, gaps.policy_gradient_from_gap):
        with pytest.raises(ValueError):
            fn(log_prob, flat_score, reward)
    with pytest.raises(ValueError):
        gaps.conditional_variances(log_prob, flat_score, reward, t([1.0]))


def test_score_with_wrong_number_of_responses_raises():
    log_prob, score, reward = three_response()
    with pytest.raises(ValueError):
        gaps.gradient_gap(log_prob, score[:2], reward)
    with pytest.raises(ValueError):
        gaps.policy_gradient(log_prob, score[:2], reward)


def test_gap_alignment_parameter_axes_differ_raises():
    with pytest.raises(ValueError):
        gaps.gap_alignment(t([1.0, 0.0, 0.0]), t([1.0, -1.0]))


# ----------------------------------------------------------------------------------------------
# Identity (10) against autograd
# ----------------------------------------------------------------------------------------------


def test_identity_on_random_bandits():
    generator = torch.Generator().manual_seed(1)
    n, d, arms = 6, 3, 5
    theta = torch.randn(n, d, arms, generator=generator, dtype=F64)
    context = torch.rand(n, d, generator=generator, dtype=F64)
    reward = (torch.rand(n, arms, generator=generator, dtype=F64) < 0.4).to(F64)
    reward[:, 0], reward[:, 1] = 1.0, 0.0  # both regions non-empty
    log_prob = bandit_log_policy(theta, context)
    score = bandit_scores(theta, context)  # (n, N, d·N)
    lhs = gaps.policy_gradient(log_prob, score, reward)
    rhs = gaps.policy_gradient_from_gap(log_prob, score, reward)

    leaf = theta.clone().requires_grad_(True)
    (autograd,) = torch.autograd.grad((bandit_log_policy(leaf, context).exp() * reward).sum(), leaf)
    autograd = autograd.flatten(-2)  # (n, d·N), same row-major flattening as bandit_scores
    assert torch.linalg.vector_norm(autograd, dim=-1).min() > 1e-3  # non-trivial gradients
    assert_close(lhs, rhs, rtol=1e-10, atol=1e-13)
    assert_close(lhs, autograd, rtol=1e-10, atol=1e-13)
    assert_close(rhs, autograd, rtol=1e-10, atol=1e-13)


def test_identity_on_random_token_policies():
    generator = torch.Generator().manual_seed(2)
    policy = TokenPolicy(3, 4)
    instances = random_token_policies(policy, 5, 1.0, generator)
    log_prob, score = policy.log_prob_and_score(instances.theta, instances.tokens, instances.lengths)
    lhs = gaps.policy_gradient(log_prob, score, instances.reward)
    rhs = gaps.policy_gradient_from_gap(log_prob, score, instances.reward)

    leaf = instances.theta.clone().requires_grad_(True)
    success = (policy.log_prob(leaf, instances.tokens, instances.lengths).exp() * instances.reward).sum(-1)
    (autograd,) = torch.autograd.grad(success.sum(), leaf)
    assert torch.linalg.vector_norm(autograd, dim=-1).min() > 1e-3
    assert_close(lhs, rhs, rtol=1e-10, atol=1e-13)
    assert_close(lhs, autograd, rtol=1e-10, atol=1e-13)
    # J itself also agrees with the autograd-side objective.
    assert_close(gaps.success_probability(log_prob, instances.reward), success.detach())


# ----------------------------------------------------------------------------------------------
# Conditional variances against a direct NumPy computation
# ----------------------------------------------------------------------------------------------


def numpy_conditional_variances(log_prob, score, reward, direction):
    p = np.exp(log_prob)
    x = score @ direction  # (R,)
    out = []
    for region in (reward > 0.5, reward <= 0.5):
        if not region.any():
            out.append(0.0)
            continue
        q = p[region] / p[region].sum()
        mean = (q * x[region]).sum()
        out.append(float((q * (x[region] - mean) ** 2).sum()))
    return out


def test_conditional_variances_against_numpy():
    log_prob, score, reward, direction = random_batch(shape=(3, 4), responses=7, dim=5, seed=3)
    var_plus, var_minus = gaps.conditional_variances(log_prob, score, reward, direction)
    assert var_plus.shape == var_minus.shape == (3, 4)
    nontrivial = 0
    for i in range(3):
        for j in range(4):
            expected = numpy_conditional_variances(
                log_prob[i, j].numpy(), score[i, j].numpy(), reward[i, j].numpy(), direction[i, j].numpy()
            )
            nontrivial += sum(v > 1e-3 for v in expected)
            assert_close(var_plus[i, j], expected[0], rtol=1e-10, atol=1e-14)
            assert_close(var_minus[i, j], expected[1], rtol=1e-10, atol=1e-14)
    assert nontrivial >= 10  # the comparison is not all zeros
