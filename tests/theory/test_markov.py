"""Tests of rlvr_dynamics.theory.markov (the forward algorithm, verifiers, sampling, the ψ₁ norm of the
length) against the enumeration of every response (TokenPolicy.enumerate_responses + gaps /
estimators), hand-computed numbers, finite differences and Monte-Carlo checks at fixed seeds.
float64, small V and T, explicit generators.
"""

from __future__ import annotations

import math

import pytest
import torch

from rlvr_dynamics.engines import token_chain
from rlvr_dynamics.theory import estimators, gaps, markov
from rlvr_dynamics.theory.policies import EOS, TokenPolicy, contains_token_reward

from _helpers import F64, V, assert_close, bigram, enumerated, random_theta, t

LOG2 = math.log(2.0)


def masked_logsumexp(values, mask):
    return torch.logsumexp(torch.where(mask, values, -torch.inf), dim=-1)


# ----------------------------------------------------------------------------------------------
# The forward algorithm against enumeration
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [2, 3, 6])
@pytest.mark.parametrize("kind", markov.VERIFIERS)
def test_outcomes_and_gradient_gap_equal_enumeration(kind, length):
    policy, verifier = bigram(length), markov.Verifier(kind, V, answer_token=2)
    theta = random_theta(policy, seed=10 * length + len(kind), batch=(2,))
    log_prob, score, reward, lengths, _ = enumerated(policy, verifier, theta)
    result = markov.outcomes(policy, theta, verifier)
    success = reward > 0.5
    assert 0 < int(success.sum()) < len(reward)  # both regions are populated
    assert_close(result.log_success, masked_logsumexp(log_prob, success), rtol=0, atol=1e-12)
    assert_close(result.log_failure, masked_logsumexp(log_prob, ~success), rtol=0, atol=1e-12)
    assert_close(result.log_odds, gaps.log_odds(log_prob, reward.expand_as(log_prob)), rtol=0, atol=1e-12)
    for ell in range(1, length + 1):
        at = lengths == ell
        assert_close(result.log_length_pmf[..., ell - 1], masked_logsumexp(log_prob, at), rtol=0, atol=1e-12)
        assert_close(result.log_success_by_length[..., ell - 1].exp(),
                     masked_logsumexp(log_prob, at & success).exp(), rtol=0, atol=1e-14)
        assert_close(result.log_failure_by_length[..., ell - 1].exp(),
                     masked_logsumexp(log_prob, at & ~success).exp(), rtol=0, atol=1e-14)
    expected_mean = (log_prob.exp() * lengths.to(F64)).sum(-1)
    assert_close(markov.mean_length(result), expected_mean, rtol=0, atol=1e-12)
    # The Gradient Gap: autograd of the exact log-odds against E_π⁺[score] − E_π⁻[score].
    detached, gap = markov.log_odds_and_gradient_gap(policy, theta, verifier)
    assert gap.shape == theta.shape and not detached.log_success.requires_grad
    assert_close(detached.log_odds, result.log_odds, rtol=0, atol=0)
    expected_gap = gaps.gradient_gap(log_prob, score, reward.expand_as(log_prob))
    assert torch.linalg.vector_norm(expected_gap, dim=-1).min() > 1e-3
    assert_close(gap, expected_gap, rtol=0, atol=1e-12)


@pytest.mark.parametrize("variant", estimators.VARIANTS)
def test_expected_update_equals_enumerated_expected_direction(variant):
    for length, kind in [(3, "final_token"), (6, "final_token"), (3, "contains"), (6, "contains"), (3, "majority"),
                         (6, "majority")]:
        policy = bigram(length)
        theta = random_theta(policy, seed=7 + length, batch=(2,))
        verifier = markov.Verifier(kind, V, answer_token=3)
        log_prob, score, reward, lengths, _ = enumerated(policy, verifier, theta)
        expected = estimators.expected_direction(log_prob, score, reward.expand_as(log_prob),
                                                 lengths.expand_as(log_prob), variant, group_size=5)
        update = markov.expected_update(policy, theta, verifier, variant, group_size=5)
        assert update.shape == theta.shape
        assert torch.linalg.vector_norm(expected, dim=-1).min() > 1e-4
        assert_close(update, expected, rtol=0, atol=1e-12)


def test_expected_update_rejects_bad_variant_and_group():
    policy = bigram(3)
    theta = random_theta(policy, seed=0)
    verifier = markov.Verifier("contains", V)
    with pytest.raises(ValueError):
        markov.expected_update(policy, theta, verifier, "ppo")
    with pytest.raises(ValueError):
        markov.expected_update(policy, theta, verifier, "dr_grpo", group_size=1)
    with pytest.raises(ValueError):
        markov.expected_update(policy, theta, verifier, "dr_grpo")


@pytest.mark.parametrize("kind", markov.VERIFIERS)
def test_hessian_is_symmetric_and_matches_finite_differences_of_enumerated_gap(kind):
    length = 4
    policy, verifier = bigram(length), markov.Verifier(kind, V)
    theta = random_theta(policy, seed=3, batch=(2,), scale=0.7)
    hessian = markov.log_odds_hessian(policy, theta, verifier)
    assert hessian.shape == (2, policy.n_params, policy.n_params)
    assert_close(hessian, hessian.transpose(-1, -2), rtol=0, atol=1e-12)
    h = 1e-5
    columns = []
    for i in range(policy.n_params):
        shift = torch.zeros(policy.n_params, dtype=F64)
        shift[i] = h
        gap_plus = gaps.gradient_gap(*_gap_inputs(policy, verifier, theta + shift))
        gap_minus = gaps.gradient_gap(*_gap_inputs(policy, verifier, theta - shift))
        columns.append((gap_plus - gap_minus) / (2 * h))
    finite_difference = torch.stack(columns, dim=-1)  # (B, D, D): column i is ∂(∇f)/∂θ_i
    assert hessian.abs().max() > 1e-2
    assert_close(hessian, finite_difference, rtol=0, atol=1e-6)


def _gap_inputs(policy, verifier, theta):
    log_prob, score, reward, _, _ = enumerated(policy, verifier, theta)
    return log_prob, score, reward.expand_as(log_prob)


def test_batched_outcomes_equal_rowwise():
    policy, verifier = bigram(5), markov.Verifier("majority", V)
    theta = random_theta(policy, seed=4, batch=(2, 3))
    batched = markov.outcomes(policy, theta, verifier)
    assert batched.log_success_by_length.shape == (2, 3, 5)
    for i in range(2):
        for j in range(3):
            single = markov.outcomes(policy, theta[i, j], verifier)
            assert_close(batched.log_odds[i, j], single.log_odds, rtol=0, atol=1e-13)
            assert_close(batched.log_length_pmf[i, j], single.log_length_pmf, rtol=0, atol=1e-13)


# ----------------------------------------------------------------------------------------------
# Verifier.reward
# ----------------------------------------------------------------------------------------------


VERIFIER_CASES = [
    # tokens, length, answer, (final_token, contains, majority)
    ([2, 1, 0, 0], 3, 1, (1.0, 1.0, 0.0)),  # last is 1; one 1 of two tokens is no strict majority
    ([1, 1, 2, 0], 4, 1, (0.0, 1.0, 1.0)),  # last is 2; two 1s of three tokens is a majority
    ([1, 2, 0, 0], 3, 2, (1.0, 1.0, 0.0)),
    ([3, 3, 3, 0], 4, 2, (0.0, 0.0, 0.0)),
    ([3, 0, 0, 0], 2, 3, (1.0, 1.0, 1.0)),  # one token, it is the answer
    ([0, 0, 0, 0], 1, 1, (0.0, 0.0, 0.0)),  # the empty response never succeeds
    ([0, 0, 0, 0], 1, 3, (0.0, 0.0, 0.0)),
]


def test_verifier_reward_by_hand():
    for tokens, length, answer, expected in VERIFIER_CASES:
        for kind, value in zip(markov.VERIFIERS, expected, strict=True):
            verifier = markov.Verifier(kind, V, answer_token=answer)
            reward = verifier.reward(torch.tensor([tokens]), torch.tensor([length]))
            assert reward.dtype == F64
            assert reward.tolist() == [value], (tokens, length, answer, kind)
    # A (2, 2) batch with answer 1: [2,1|3], [1,1,2|4], [1,2|3], [3,3,3|4].
    tokens = torch.tensor([case[0] for case in VERIFIER_CASES[:4]]).reshape(2, 2, 4)
    lengths = torch.tensor([case[1] for case in VERIFIER_CASES[:4]]).reshape(2, 2)
    expected = {"final_token": [1.0, 0.0, 0.0, 0.0], "contains": [1.0, 1.0, 1.0, 0.0],
                "majority": [0.0, 1.0, 0.0, 0.0]}
    for kind in markov.VERIFIERS:
        batched = markov.Verifier(kind, V, answer_token=1).reward(tokens, lengths)
        assert batched.shape == (2, 2)
        assert batched.flatten().tolist() == expected[kind], kind


def _reference_reward(kind, body, answer):
    if not body:
        return 0.0
    if kind == "final_token":
        return float(body[-1] == answer)
    if kind == "contains":
        return float(answer in body)
    return float(2 * body.count(answer) > len(body))


def test_verifier_reward_matches_python_reference_on_every_response():
    policy = bigram(6)
    tokens, lengths = policy.enumerate_responses()
    bodies = [row[: int(ell) - 1].tolist() for row, ell in zip(tokens, lengths, strict=True)]
    for kind in markov.VERIFIERS:
        for answer in (1, 3):
            reward = markov.Verifier(kind, V, answer_token=answer).reward(tokens, lengths)
            assert reward.tolist() == [_reference_reward(kind, body, answer) for body in bodies], (kind, answer)
    for answer in (1, 2, 3):
        assert torch.equal(markov.Verifier("contains", V, answer).reward(tokens, lengths),
                           contains_token_reward(tokens, lengths, answer))


def test_verifier_rejects_bad_arguments():
    for kind, vocab, answer in [("sum", 4, 1), ("contains", 1, 1), ("contains", 4, 0), ("contains", 4, 4),
                                ("majority", 4, True), ("final_token", 4.0, 1)]:
        with pytest.raises(ValueError):
            markov.Verifier(kind, vocab, answer)
    assert markov.Verifier("majority", 2, 1).count_cap(7) == 6  # the smallest valid verifier


# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------


def test_sampled_scores_equal_closed_form_scores():
    length = 4
    policy = bigram(length)
    theta = random_theta(policy, seed=5, batch=(3,))
    tokens, lengths = markov.sample(policy, theta, 60, torch.Generator().manual_seed(1))
    assert set(lengths.unique().tolist()) == set(range(1, length + 1))  # short, full-length and empty responses
    scores = markov.sampled_scores(policy, theta, tokens, lengths)
    assert scores.shape == (3, 60, policy.n_params)
    for b in range(3):
        _, expected = policy.log_prob_and_score(theta[b], tokens[b], lengths[b])
        assert_close(scores[b], expected, rtol=0, atol=1e-13)


def test_sample_structure_and_reproducibility():
    length = 5
    policy = bigram(length)
    theta = random_theta(policy, seed=6, batch=(2,))
    tokens, lengths = markov.sample(policy, theta, 500, torch.Generator().manual_seed(11))
    assert tokens.shape == (2, 500, length) and lengths.shape == (2, 500)
    assert tokens.dtype == lengths.dtype == torch.long
    assert int(lengths.min()) >= 1 and int(lengths.max()) <= length
    steps = torch.arange(length)
    before_end = steps < (lengths.unsqueeze(-1) - 1)
    assert bool((tokens[before_end] != EOS).all())
    assert bool((tokens[~before_end] == EOS).all())  # the EOS at the end and the padding after it
    again = markov.sample(policy, theta, 500, torch.Generator().manual_seed(11))
    assert torch.equal(tokens, again[0]) and torch.equal(lengths, again[1])
    other = markov.sample(policy, theta, 500, torch.Generator().manual_seed(12))
    assert not torch.equal(tokens, other[0])


def test_sample_and_scores_reject_bad_inputs():
    policy = bigram(3)
    theta = random_theta(policy, seed=0)
    with pytest.raises(ValueError):
        markov.sample(policy, theta, 4, torch.Generator().manual_seed(0))  # (D,), not (B, D)
    biased = TokenPolicy(V, 3)
    biased_theta = random_theta(biased, seed=0, batch=(1,))
    with pytest.raises(ValueError):
        markov.sample(biased, biased_theta, 4, torch.Generator().manual_seed(0))
    tokens, lengths = markov.sample(policy, theta.unsqueeze(0), 4, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError):
        markov.sampled_scores(biased, biased_theta, tokens, lengths)


@pytest.mark.parametrize("kind", markov.VERIFIERS)
def test_sampled_success_frequency_and_mean_length_match_exact(kind):
    policy, verifier, theta = token_chain.make_instances(V, 6, kind, torch.tensor([0.3, 0.7], dtype=F64), [0, 1])
    n = 20_000
    tokens, lengths = markov.sample(policy, theta, n, torch.Generator().manual_seed(2024))
    frequency = verifier.reward(tokens, lengths).mean(-1)
    value = torch.tensor([0.3, 0.7], dtype=F64)
    standard_error = torch.sqrt(value * (1 - value) / n)
    assert bool(((frequency - value).abs() < 4 * standard_error).all()), (frequency, value)
    result = markov.outcomes(policy, theta, verifier)
    mean = markov.mean_length(result)
    ells = torch.arange(1, 7, dtype=F64)
    sd = torch.sqrt((result.log_length_pmf.exp() * (ells - mean.unsqueeze(-1)) ** 2).sum(-1))
    assert bool(((lengths.to(F64).mean(-1) - mean).abs() < 4 * sd / math.sqrt(n)).all())


# ----------------------------------------------------------------------------------------------
# The ψ₁ norm
# ----------------------------------------------------------------------------------------------


def test_psi1_of_point_masses_and_a_two_point_law_by_hand():
    values = torch.arange(1, 7, dtype=F64)
    log_weights = torch.full((6, 6), -torch.inf, dtype=F64)
    log_weights[torch.arange(6), torch.arange(6)] = 0.0  # row ℓ − 1: all mass at ℓ
    assert_close(markov.psi1_norm(values, log_weights), values / LOG2, rtol=1e-12, atol=0)
    # ℓ ∈ {1, 2} with probability ½ each: ½(x + x²) = 2 with x = e^{1/a} ⇒ x = (√17 − 1)/2, a = 1/log x.
    values = t([1.0, 2.0])
    psi1 = markov.psi1_norm(values, torch.log(t([0.5, 0.5])))
    assert_close(psi1, 1 / math.log((math.sqrt(17) - 1) / 2), rtol=1e-12, atol=0)


def test_length_psi1_lies_between_jensen_and_max_and_solves_its_equation():
    length = 16
    policy, verifier, theta = token_chain.make_instances(V, length, "contains", t([0.2, 0.4, 0.8]), [0, 1, 2])
    result = markov.outcomes(policy, theta, verifier)
    psi1 = markov.length_psi1_norm(result)
    mean = markov.mean_length(result)
    assert bool((mean / LOG2 <= psi1 + 1e-12).all()) and bool((psi1 <= length / LOG2 + 1e-12).all())
    assert bool((mean <= psi1).all())
    ells = torch.arange(1, length + 1, dtype=F64)
    pmf = result.log_length_pmf.exp()

    def moment(scale):
        return (pmf * torch.exp(ells / scale.unsqueeze(-1))).sum(-1)

    assert_close(moment(psi1), torch.full((3,), 2.0, dtype=F64), rtol=1e-9, atol=0)
    assert bool((moment(psi1 * (1 - 1e-6)) > 2.0).all())  # the infimum: any smaller a breaks E e^{ℓ/a} ≤ 2


def test_sampled_psi1_close_to_exact():
    length = 16
    policy, verifier, theta = token_chain.make_instances(V, length, "final_token", 0.3, [0])
    exact = markov.length_psi1_norm(markov.outcomes(policy, theta, verifier))
    _, lengths = markov.sample(policy, theta, 20_000, torch.Generator().manual_seed(3))
    counts = torch.bincount(lengths[0] - 1, minlength=length).to(F64)
    sampled = markov.psi1_norm(torch.arange(1, length + 1, dtype=F64), torch.log(counts / counts.sum()))
    assert abs(float(sampled[()] / exact[0]) - 1) < 0.03, (float(sampled), float(exact))


# ----------------------------------------------------------------------------------------------
# Bigram policies without position bias
# ----------------------------------------------------------------------------------------------


def test_outcomes_reject_position_bias_and_vocab_mismatch():
    biased = TokenPolicy(V, 3)
    with pytest.raises(ValueError):
        markov.outcomes(biased, random_theta(biased, seed=0), markov.Verifier("contains", V))
    policy = bigram(3)
    with pytest.raises(ValueError):
        markov.outcomes(policy, random_theta(policy, seed=0), markov.Verifier("contains", V + 1))


def test_token_policy_without_position_bias():
    policy, biased = bigram(3), TokenPolicy(V, 3)
    assert biased.position_bias is True
    assert policy.n_params == (V + 1) * V and biased.n_params == (V + 1) * V + 3 * V
    theta = random_theta(policy, seed=9)
    table, bias = policy.split(theta)
    assert table.shape == (V + 1, V) and torch.equal(bias, torch.zeros(3, V, dtype=F64))
    # Same probabilities as the position-biased policy with B = 0; scores are its W block.
    tokens, lengths = policy.enumerate_responses()
    padded = torch.cat([theta, torch.zeros(3 * V, dtype=F64)])
    log_prob, score = policy.log_prob_and_score(theta, tokens, lengths)
    biased_log_prob, biased_score = biased.log_prob_and_score(padded, tokens, lengths)
    assert_close(log_prob, biased_log_prob)
    assert_close(score, biased_score[:, : policy.n_params])
    with pytest.raises(ValueError):
        TokenPolicy(V, 3, position_bias=1)
