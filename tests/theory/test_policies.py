"""Tests of rlvr_dynamics.theory.policies: the linear-softmax bandit and the token-level policy.

Expected values are computed by hand, with itertools / NumPy, or by torch autograd. float64.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from rlvr_dynamics.theory import gaps
from rlvr_dynamics.theory.policies import (
    EOS,
    TokenPolicy,
    bandit_conditional_probs,
    bandit_gradient_gap,
    bandit_log_policy,
    bandit_policy_gradient,
    bandit_scores,
    contains_token_reward,
    random_bandits,
    random_reward,
)

from _helpers import F64, assert_close, t

# ----------------------------------------------------------------------------------------------
# Bandit
# ----------------------------------------------------------------------------------------------


def random_bandit(batch=(3,), d=4, arms=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    theta = torch.randn(*batch, d, arms, generator=generator, dtype=F64)
    context = torch.rand(*batch, d, generator=generator, dtype=F64)
    reward = (torch.rand(*batch, arms, generator=generator, dtype=F64) < 0.5).to(F64)
    reward[..., 0], reward[..., 1] = 1.0, 0.0
    return theta, context, reward


def test_bandit_hand_computed_d1_n2():
    # d = 1, N = 2, x = 2, θ = (0, log(3)/2): logits x·θ = (0, log 3) ⇒ π = (1/4, 3/4).
    # Scores x ⊗ (e_y − π): arm 1: 2·(3/4, −3/4) = (3/2, −3/2); arm 2: 2·(−1/4, 1/4) = (−1/2, 1/2).
    # Reward (1, 0): J = 1/4, π⁺ = (1, 0), π⁻ = (0, 1), gap = x ⊗ (π⁺ − π⁻) = (2, −2),
    # ∇J = J(1 − J)·gap = 3/16·(2, −2) = (3/8, −3/8)  [= x ⊗ π∘(r − J) = 2·(1/4·3/4, 3/4·(−1/4))].
    theta = t([[0.0, math.log(3.0) / 2]])
    context = t([2.0])
    reward = t([1.0, 0.0])
    assert_close(bandit_log_policy(theta, context), [math.log(0.25), math.log(0.75)])
    assert_close(bandit_scores(theta, context), [[1.5, -1.5], [-0.5, 0.5]])
    probs, plus, minus = bandit_conditional_probs(theta, context, reward)
    assert_close(probs, [0.25, 0.75])
    assert_close(plus, [1.0, 0.0])
    assert_close(minus, [0.0, 1.0])
    assert_close(bandit_gradient_gap(theta, context, reward), [[2.0, -2.0]])
    assert_close(bandit_policy_gradient(theta, context, reward), [[3 / 8, -3 / 8]])


def test_bandit_log_policy_is_normalised_softmax():
    theta, context, _ = random_bandit(batch=(2, 3))
    log_prob = bandit_log_policy(theta, context)
    assert log_prob.shape == (2, 3, 5)
    assert_close(log_prob.exp().sum(-1), torch.ones(2, 3, dtype=F64))
    logits = np.einsum("...d,...dn->...n", context.numpy(), theta.numpy())
    expected = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert_close(log_prob, expected)


def test_bandit_scores_equal_autograd_jacobian():
    theta, context, _ = random_bandit(batch=(3,))
    scores = bandit_scores(theta, context)  # (n, N, d·N)
    assert scores.shape == (3, 5, 20)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(
            lambda th, i=i: bandit_log_policy(th, context[i]), theta[i])  # (N, d, N)
        assert_close(scores[i], jac.flatten(-2))


def test_bandit_closed_forms_equal_generic_gaps():
    theta, context, reward = random_bandit(batch=(4,))
    log_prob = bandit_log_policy(theta, context)
    scores = bandit_scores(theta, context)
    gap = gaps.gradient_gap(log_prob, scores, reward)
    grad = gaps.policy_gradient(log_prob, scores, reward)
    assert_close(bandit_gradient_gap(theta, context, reward).flatten(-2), gap)
    assert_close(bandit_policy_gradient(theta, context, reward).flatten(-2), grad)
    assert torch.linalg.vector_norm(grad, dim=-1).min() > 1e-3


def test_bandit_empty_region_gap_has_no_nan():
    # All arms correct: π⁻ is the zero vector, gap = x ⊗ (π⁺ − 0) = x ⊗ π, ∇J = 0.
    theta, context, _ = random_bandit(batch=(2,))
    reward = torch.ones(2, 5, dtype=F64)
    probs = bandit_log_policy(theta, context).exp()
    assert_close(bandit_gradient_gap(theta, context, reward), torch.einsum("nd,nk->ndk", context, probs))
    assert_close(bandit_policy_gradient(theta, context, reward), torch.zeros(2, 4, 5, dtype=F64))


def test_bandit_context_dimension_mismatch_raises():
    theta = torch.zeros(3, 4, dtype=F64)
    with pytest.raises(ValueError):
        bandit_log_policy(theta, torch.zeros(2, dtype=F64))
    with pytest.raises(ValueError):
        bandit_scores(theta, torch.zeros(4, dtype=F64))


# ----------------------------------------------------------------------------------------------
# TokenPolicy: sizes, enumeration
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "vocab, length, n_params, n_responses",
    [
        # D = (V + 1)·V + T·V;   R = Σ_{ℓ=1}^{T} (V − 1)^{ℓ−1}
        (3, 4, 4 * 3 + 4 * 3, 1 + 2 + 4 + 8),  # 24, 15
        (2, 3, 3 * 2 + 3 * 2, 1 + 1 + 1),  # 12, 3
        (4, 1, 5 * 4 + 1 * 4, 1),  # 24, 1
        (5, 3, 6 * 5 + 3 * 5, 1 + 4 + 16),  # 45, 21
    ],
)
def test_token_policy_sizes(vocab, length, n_params, n_responses):
    policy = TokenPolicy(vocab, length)
    assert policy.n_params == n_params
    assert policy.n_responses == n_responses


def itertools_responses(vocab, length):
    """Every response as a tuple (body tokens …, EOS), by length then lexicographically."""
    out = []
    for ell in range(1, length + 1):
        for body in itertools.product(range(1, vocab), repeat=ell - 1):
            out.append(tuple(body) + (EOS,))
    return out


@pytest.mark.parametrize("vocab, length", [(3, 4), (2, 3), (4, 1), (4, 3)])
def test_enumerate_responses_lists_each_response_once(vocab, length):
    policy = TokenPolicy(vocab, length)
    tokens, lengths = policy.enumerate_responses()
    assert tokens.shape == (policy.n_responses, length)
    assert lengths.shape == (policy.n_responses,)
    assert tokens.dtype == lengths.dtype == torch.long
    expected = itertools_responses(vocab, length)
    listed = [tuple(row[: int(ell)].tolist()) for row, ell in zip(tokens, lengths, strict=True)]
    assert len(set(listed)) == len(listed)  # no duplicates
    assert sorted(listed) == sorted(expected)  # every response
    assert listed == expected  # and in the documented order (by length, then lexicographic)
    for row, ell in zip(tokens, lengths, strict=True):
        ell = int(ell)
        assert 1 <= ell <= length
        assert row[ell - 1] == EOS  # the response ends with EOS
        assert torch.all(row[: ell - 1] != EOS)  # no EOS before the end
        assert torch.all(row[ell:] == EOS)  # EOS padding after the end


def test_enumerate_responses_too_many_raises():
    with pytest.raises(ValueError):
        TokenPolicy(16, 12).enumerate_responses()


def test_response_index_inverts_enumeration():
    for vocab, length in [(3, 4), (2, 3), (4, 3), (3, 1)]:
        policy = TokenPolicy(vocab, length)
        tokens, lengths = policy.enumerate_responses()
        index = policy.response_index(tokens, lengths)
        assert torch.equal(index, torch.arange(policy.n_responses))
        # A permutation of the responses maps to the same permutation of the indices.
        perm = torch.randperm(policy.n_responses, generator=torch.Generator().manual_seed(0))
        assert torch.equal(policy.response_index(tokens[perm], lengths[perm]), perm)


# ----------------------------------------------------------------------------------------------
# TokenPolicy: probabilities and scores
# ----------------------------------------------------------------------------------------------


def random_theta(policy, n=None, scale=1.0, seed=0):
    generator = torch.Generator().manual_seed(seed)
    shape = (policy.n_params,) if n is None else (n, policy.n_params)
    return scale * torch.randn(*shape, generator=generator, dtype=F64)


def test_uniform_policy_probabilities_by_hand():
    # θ = 0, V = 3, T = 3: every free position is uniform over 3 tokens; position 3 forces EOS.
    # [EOS]: 1/3;  [a, EOS]: 1/3·1/3 = 1/9 (2 of them);  [a, b, EOS]: 1/9 · 1 (4 of them).
    # Total 1/3 + 2/9 + 4/9 = 1.
    policy = TokenPolicy(3, 3)
    tokens, lengths = policy.enumerate_responses()
    log_prob = policy.log_prob(torch.zeros(policy.n_params, dtype=F64), tokens, lengths)
    expected = [1 / 3] + [1 / 9] * 2 + [1 / 9] * 4
    assert_close(log_prob.exp(), expected)


@pytest.mark.parametrize("vocab, length", [(3, 4), (2, 3), (4, 3), (3, 1)])
def test_probabilities_sum_to_one(vocab, length):
    policy = TokenPolicy(vocab, length)
    tokens, lengths = policy.enumerate_responses()
    theta = random_theta(policy, n=4, scale=2.0)
    log_prob = policy.log_prob(theta, tokens, lengths)
    assert log_prob.shape == (4, policy.n_responses)
    assert_close(torch.logsumexp(log_prob, -1), torch.zeros(4, dtype=F64), atol=1e-13)
    log_prob2, _ = policy.log_prob_and_score(theta, tokens, lengths)
    assert_close(log_prob2, log_prob)


def test_log_prob_matches_manual_numpy_computation():
    # Recompute log π(o) token by token from W and B with NumPy.
    policy = TokenPolicy(3, 4)
    theta = random_theta(policy, seed=5)
    tokens, lengths = policy.enumerate_responses()
    v, T = 3, 4
    W = theta[: (v + 1) * v].numpy().reshape(v + 1, v)
    B = theta[(v + 1) * v :].numpy().reshape(T, v)
    expected = []
    for row, ell in zip(tokens.tolist(), lengths.tolist(), strict=True):
        prev, total = v, 0.0  # BOS is row V
        for step in range(ell):
            logits = W[prev] + B[step]
            if step == T - 1:
                logits = np.where(np.arange(v) == EOS, logits, -np.inf)
            total += logits[row[step]] - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
            prev = row[step]
        expected.append(total)
    assert_close(policy.log_prob(theta, tokens, lengths), expected)


@pytest.mark.parametrize("vocab, length", [(3, 4), (4, 2)])
def test_score_equals_autograd_jacobian(vocab, length):
    policy = TokenPolicy(vocab, length)
    tokens, lengths = policy.enumerate_responses()
    theta = random_theta(policy, n=2, scale=1.5, seed=1)
    _, score = policy.log_prob_and_score(theta, tokens, lengths)
    assert score.shape == (2, policy.n_responses, policy.n_params)
    for i in range(2):
        jac = torch.autograd.functional.jacobian(lambda th: policy.log_prob(th, tokens, lengths), theta[i])
        assert_close(score[i], jac)
    # Sanity: the scores have zero mean under π (E_π[∇ log π] = 0).
    log_prob, _ = policy.log_prob_and_score(theta, tokens, lengths)
    assert_close(torch.einsum("nr,nrd->nd", log_prob.exp(), score), torch.zeros(2, policy.n_params, dtype=F64),
                 atol=1e-13)


def test_forced_eos_at_last_position():
    policy = TokenPolicy(3, 4)
    V, T = 3, 4
    tokens, lengths = policy.enumerate_responses()
    theta = random_theta(policy, seed=2)
    # Push the last position's bias strongly away from EOS: it must not matter, EOS is forced there.
    bias_last = slice((V + 1) * V + (T - 1) * V, (V + 1) * V + T * V)
    shifted = theta.clone()
    shifted[bias_last] = t([-1e3, 50.0, 70.0])
    log_prob, score = policy.log_prob_and_score(theta, tokens, lengths)
    log_prob_shifted, score_shifted = policy.log_prob_and_score(shifted, tokens, lengths)
    assert_close(log_prob_shifted, log_prob)
    assert_close(score_shifted, score)
    assert_close(torch.logsumexp(log_prob_shifted, -1), 0.0, atol=1e-13)
    # The last position's bias receives no score from any response.
    assert torch.all(score[:, bias_last] == 0.0)
    # A length-T response's probability is the product of its first T − 1 token probabilities only:
    # here, with θ = 0, that is (1/3)^{T−1} = 1/27 (the forced EOS contributes 1, not 1/3).
    uniform = policy.log_prob(torch.zeros(policy.n_params, dtype=F64), tokens, lengths)
    assert_close(uniform[lengths == T].exp(), torch.full((8,), 1 / 27, dtype=F64))
    # Sampling never exceeds T and ends length-T responses with EOS even when EOS has bias −1e3.
    sampled, sampled_lengths = policy.sample(shifted, 2000, torch.Generator().manual_seed(0))
    assert sampled_lengths.max() <= T
    assert torch.all(sampled[:, T - 1] == EOS)


# ----------------------------------------------------------------------------------------------
# TokenPolicy: sampling
# ----------------------------------------------------------------------------------------------


def chi_square_p_value(counts, probs):
    expected = probs * counts.sum()
    return stats.chisquare(counts, expected).pvalue


def test_sample_frequencies_match_enumerated_probabilities():
    # 200k draws from a V = 3, T = 4 policy (15 responses). H0: counts ~ Multinomial(n, π).
    # Accept if the chi-square p-value > 1e-4; the same test must reject (p < 1e-4) a wrong π'
    # with 5% more relative mass on response 0 (renormalised), and π with two responses' probabilities
    # swapped (an indexing error), showing the test has power.
    policy = TokenPolicy(3, 4)
    theta = random_theta(policy, scale=0.7, seed=3)
    tokens, lengths = policy.enumerate_responses()
    probs = policy.log_prob(theta, tokens, lengths).exp().numpy()
    assert probs.min() * 200_000 > 5  # chi-square approximation valid
    sampled, sampled_lengths = policy.sample(theta, 200_000, torch.Generator().manual_seed(12345))
    assert sampled.shape == (200_000, 4) and sampled_lengths.shape == (200_000,)
    index = policy.response_index(sampled, sampled_lengths).numpy()
    counts = np.bincount(index, minlength=policy.n_responses)
    assert counts.sum() == 200_000

    assert chi_square_p_value(counts, probs) > 1e-4
    wrong = probs.copy()
    wrong[0] *= 1.05
    wrong /= wrong.sum()
    assert chi_square_p_value(counts, wrong) < 1e-4
    swapped = probs.copy()
    swapped[[3, 4]] = swapped[[4, 3]]
    assert chi_square_p_value(counts, swapped) < 1e-4


def test_sample_padding_and_lengths_consistent():
    policy = TokenPolicy(4, 5)
    theta = random_theta(policy, seed=4)
    sampled, lengths = policy.sample(theta, 5000, torch.Generator().manual_seed(1))
    steps = torch.arange(5)
    before_end = steps < (lengths[:, None] - 1)
    assert torch.all(sampled[before_end] != EOS)
    assert torch.all(sampled[~before_end] == EOS)
    assert lengths.min() >= 1 and lengths.max() <= 5


def test_same_seed_same_samples_different_seed_different_samples():
    policy = TokenPolicy(3, 4)
    theta = random_theta(policy, seed=6)
    a = policy.sample(theta, 500, torch.Generator().manual_seed(7))
    b = policy.sample(theta, 500, torch.Generator().manual_seed(7))
    c = policy.sample(theta, 500, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_sample_requires_single_parameter_vector():
    policy = TokenPolicy(3, 2)
    with pytest.raises(ValueError):
        policy.sample(torch.zeros(2, policy.n_params, dtype=F64), 10, torch.Generator().manual_seed(0))


def test_wrong_number_of_parameters_raises():
    policy = TokenPolicy(3, 2)
    tokens, lengths = policy.enumerate_responses()
    with pytest.raises(ValueError):
        policy.log_prob(torch.zeros(policy.n_params + 1, dtype=F64), tokens, lengths)
    with pytest.raises(ValueError):
        policy.split(torch.zeros(policy.n_params - 1, dtype=F64))


def test_split_layout():
    # θ = (W flattened row-major (V + 1, V), then B flattened (T, V)).
    policy = TokenPolicy(2, 3)
    theta = torch.arange(policy.n_params, dtype=F64)
    W, B = policy.split(theta)
    assert_close(W, [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    assert_close(B, [[6.0, 7.0], [8.0, 9.0], [10.0, 11.0]])


@pytest.mark.parametrize(
    "vocab, length",
    [(1, 3), (0, 3), (3, 0), (3, -1), (2.0, 3), (3, 2.5), ("3", 3)],
)
def test_invalid_constructor_arguments_raise(vocab, length):
    with pytest.raises(ValueError):
        TokenPolicy(vocab, length)


# ----------------------------------------------------------------------------------------------
# Rewards
# ----------------------------------------------------------------------------------------------


def test_contains_token_reward_by_hand():
    # V = 3, T = 3. Responses in order: [0], [1,0], [2,0], [1,1,0], [1,2,0], [2,1,0], [2,2,0].
    policy = TokenPolicy(3, 3)
    tokens, lengths = policy.enumerate_responses()
    assert_close(contains_token_reward(tokens, lengths, 1), [0, 1, 0, 1, 1, 1, 0])
    assert_close(contains_token_reward(tokens, lengths, 2), [0, 0, 1, 0, 1, 1, 1])
    with pytest.raises(ValueError):
        contains_token_reward(tokens, lengths, EOS)


def test_contains_token_reward_ignores_padding_positions():
    # A response of length 2 whose padding (after EOS) holds a stray token: it must not count.
    tokens = torch.tensor([[2, 0, 1], [1, 0, 0]])
    lengths = torch.tensor([2, 2])
    assert_close(contains_token_reward(tokens, lengths, 1), [0.0, 1.0])


def test_random_reward():
    for fraction in (0.01, 0.5, 0.99):
        for seed in range(5):
            reward = random_reward(10, fraction, torch.Generator().manual_seed(seed))
            assert reward.shape == (10,) and reward.dtype == F64
            assert set(reward.tolist()) <= {0.0, 1.0}
            assert (reward == 1.0).any() and (reward == 0.0).any()
    # Two responses: exactly one correct and one wrong.
    assert sorted(random_reward(2, 0.5, torch.Generator().manual_seed(0)).tolist()) == [0.0, 1.0]
    # The fraction is respected on average (1000 responses, fraction 0.3: sd ≈ 0.0145).
    big = random_reward(1000, 0.3, torch.Generator().manual_seed(0))
    assert abs(big.mean().item() - 0.3) < 0.06
    # Reproducible.
    a = random_reward(50, 0.4, torch.Generator().manual_seed(9))
    b = random_reward(50, 0.4, torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, math.nan])
def test_random_reward_bad_fraction_raises(fraction):
    with pytest.raises(ValueError):
        random_reward(10, fraction, torch.Generator().manual_seed(0))


def test_random_reward_too_few_responses_raises():
    with pytest.raises(ValueError):
        random_reward(1, 0.5, torch.Generator().manual_seed(0))


def test_random_bandits_are_seeded_and_mark_one_to_a_quarter_of_the_arms_correct():
    draw = lambda: random_bandits(50, 4, 12, 2.0, torch.Generator().manual_seed(9))  # noqa: E731
    problems, again = draw(), draw()
    assert problems.theta.shape == (50, 4, 12) and problems.context.shape == (50, 4)
    assert torch.equal(problems.reward, again.reward) and torch.equal(problems.theta, again.theta)
    correct = problems.reward.sum(-1)
    assert bool(((correct >= 1) & (correct <= 3)).all()) and len(correct.unique()) > 1  # k ~ U{1 … ⌈12/4⌉}
    assert bool(((problems.context >= 0) & (problems.context <= 1)).all())
