"""Tests of the token-level chapter: rlvr_dynamics.markov (forward algorithm, verifiers, sampling),
rlvr_dynamics.token_theory (bounds, instances, exact runs) and rlvr_dynamics.token_training.

References are independent of the code under test: enumeration of every response
(TokenPolicy.enumerate_responses + gaps / estimators), hand-computed numbers, finite differences
and Monte-Carlo checks at fixed seeds. float64, small V and T, explicit generators.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlvr_dynamics import estimators, gaps, markov
from rlvr_dynamics import token_theory as tt
from rlvr_dynamics import token_training
from rlvr_dynamics.policies import EOS, TokenPolicy, contains_token_reward
from _helpers import F64, assert_close, t

V = 4
LOG2 = math.log(2.0)


def bigram(length, vocab=V):
    return TokenPolicy(vocab, length, position_bias=False)


def random_theta(policy, seed, batch=(), scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*batch, policy.n_params, generator=generator, dtype=F64)


def enumerated(policy, verifier, theta):
    """log π (..., R), scores (..., R, D), reward (R,), lengths (R,), tokens (R, T) over every response."""
    tokens, lengths = policy.enumerate_responses()
    log_prob, score = policy.log_prob_and_score(theta, tokens, lengths)
    return log_prob, score, verifier.reward(tokens, lengths), lengths, tokens


def masked_logsumexp(values, mask):
    return torch.logsumexp(torch.where(mask, values, -torch.inf), dim=-1)


# ----------------------------------------------------------------------------------------------
# 1. The forward algorithm against enumeration
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
# 2. Verifier.reward
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
        for kind, value in zip(markov.VERIFIERS, expected):
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
    bodies = [row[: int(ell) - 1].tolist() for row, ell in zip(tokens, lengths)]
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
# 3. Sampling
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
    policy, verifier, theta = tt.make_instances(V, 6, kind, torch.tensor([0.3, 0.7], dtype=F64), [0, 1])
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
# 4. ψ₁ norm
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
    policy, verifier, theta = tt.make_instances(V, length, "contains", t([0.2, 0.4, 0.8]), [0, 1, 2])
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
    policy, verifier, theta = tt.make_instances(V, length, "final_token", 0.3, [0])
    exact = markov.length_psi1_norm(markov.outcomes(policy, theta, verifier))
    _, lengths = markov.sample(policy, theta, 20_000, torch.Generator().manual_seed(3))
    counts = torch.bincount(lengths[0] - 1, minlength=length).to(F64)
    sampled = markov.psi1_norm(torch.arange(1, length + 1, dtype=F64), torch.log(counts / counts.sum()))
    assert abs(float(sampled[()] / exact[0]) - 1) < 0.03, (float(sampled), float(exact))


# ----------------------------------------------------------------------------------------------
# 5. The bounds of Section 4, by hand
# ----------------------------------------------------------------------------------------------


def test_theorem3_step_bound_by_hand():
    # L_p = ½, G_p² = 2, T = 4, T_ψ₁ = 2, 1 − J = ½: L T = 2, min{T_ψ₁/(1 − J), 8T²} = min{4, 128} = 4,
    # first = (Δμ/2)/(2 + 2·4) = Δμ/20, second = 1/(2√(2 + 2·2)) = 1/(2√6).
    log_failure = torch.log(t([0.5, 0.5, 0.5]))
    bound = tt.theorem3_step_bound(t([0.1, 10.0, -0.3]), log_failure, 4, t([2.0, 2.0, 2.0]))
    assert_close(bound, [0.1 / 20, 1 / (2 * math.sqrt(6)), 0.0])
    # 1 − J = 10⁻⁶: T_ψ₁/(1 − J) = 2·10⁶ is capped at 8T² = 128: first = (Δμ/2)/(2 + 256).
    capped = tt.theorem3_step_bound(t(0.1), t(math.log(1e-6)), 4, t(2.0))
    assert_close(capped, 0.05 / 258)
    # Other constants: L = 1, G = 1, T = 3, ψ = 1, 1 − J = ¼: first = (0.2/2)/(3 + 4) , second = 1/(2·2).
    other = tt.theorem3_step_bound(t(0.2), t(math.log(0.25)), 3, t(1.0), smoothness=1.0, score_bound=1.0)
    assert_close(other, 0.1 / 7)


def test_theorem4_window_and_largest_alignment_by_hand():
    # (L + G²) T = (½ + 2)·4 = 10: [120·0.01/10, 1/(2√10)].
    low, high = tt.theorem4_window(0.01, 4)
    assert low == pytest.approx(0.12, rel=1e-14)
    assert high == pytest.approx(1 / (2 * math.sqrt(10)), rel=1e-14)
    assert tt.theorem4_largest_alignment(4) == pytest.approx(math.sqrt(10) / 240, rel=1e-14)
    assert tt.theorem4_window(0.01, 4, smoothness=1.0, score_bound=2.0)[0] == pytest.approx(120 * 0.01 / 20, rel=1e-14)


def test_log_odds_change_bound_by_hand():
    # Δμη − (L T + G² T_ψ₁/(1 − J)) η² with L T = 2, G² T_ψ₁/(1 − J) = 2·2/0.5 = 8: 0.1η − 10η².
    steps = t([0.005, 0.01, 0.02])
    bound = tt.log_odds_change_bound(t(0.1), steps, t(math.log(0.5)), 4, t(2.0))
    assert_close(bound, [0.1 * 0.005 - 10 * 0.005**2, 0.0, 0.1 * 0.02 - 10 * 0.02**2], atol=1e-16)


def test_effective_and_safe_steps_by_hand():
    alignment, value, psi1 = t(0.3), t(0.2), t(4.0)
    # GRPO: α Δμ √(J(1 − J))/T_ψ₁ = 2·0.3·0.4/4; Dr. GRPO, REINFORCE: α Δμ J(1 − J) = 2·0.3·0.16.
    assert_close(tt.effective_step("grpo", alignment, value, psi1, learning_rate=2.0), 0.06)
    assert_close(tt.effective_step("dr_grpo", alignment, value, psi1, learning_rate=2.0), 0.096)
    assert_close(tt.effective_step("reinforce", alignment, value, psi1), 0.048)
    assert_close(tt.safe_step(alignment, value, psi1), 0.3 * 0.8 / 4)
    with pytest.raises(ValueError):
        tt.effective_step("ppo", alignment, value, psi1)


# ----------------------------------------------------------------------------------------------
# 6. Instances
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", markov.VERIFIERS)
def test_make_instances_hits_the_target(kind):
    target = t([0.05, 0.5, 0.9])
    policy, verifier, theta = tt.make_instances(5, 6, kind, target, [0, 1, 2], answer_token=2)
    assert policy == TokenPolicy(5, 6, position_bias=False)
    assert verifier == markov.Verifier(kind, 5, 2)
    assert theta.shape == (3, policy.n_params) and theta.dtype == F64
    value = markov.outcomes(policy, theta, verifier).log_success.exp()
    assert_close(value, target, rtol=0, atol=1e-6)
    # Enumeration agrees (an independent check of the calibration).
    log_prob, _, reward, _, _ = enumerated(policy, verifier, theta)
    assert_close(gaps.success_probability(log_prob, reward.expand_as(log_prob)), target, rtol=0, atol=1e-6)


def test_make_instances_share_the_base_draw_across_lengths_and_seeds():
    seeds = [3, 8]
    tables = {}
    for length in (4, 8, 16):
        policy, _, theta = tt.make_instances(V, length, "contains", 0.3, seeds)
        tables[length] = theta.unflatten(-1, (V + 1, V))
    again = tt.make_instances(V, 8, "contains", 0.3, [8])[2].unflatten(-1, (V + 1, V))
    assert torch.equal(again[0], tables[8][1])  # one seed's instance does not depend on the others
    for b, seed in enumerate(seeds):
        base = torch.randn(V + 1, V, generator=torch.Generator().manual_seed(seed), dtype=F64)
        for length, table in tables.items():
            assert torch.equal(table[b, :, 2:], base[:, 2:])  # untouched columns: the seed's N(0, 1) draw
            shift = table[b, :, 1] - base[:, 1]  # the answer column moved by one constant
            assert_close(shift, shift[0].expand(V + 1), rtol=0, atol=1e-12)
            stop = torch.softmax(table[b], dim=-1)[:, 0]
            assert_close(stop[1:V], torch.full((V - 1,), 2 / length, dtype=F64), rtol=0, atol=1e-12)
            assert table[b, V, 0] == tt.EMPTY_LOGIT  # the BOS row (almost) never stops
    assert not torch.equal(tables[4][0, :, 1], tables[4][1, :, 1])


def test_make_instances_rejects_bad_inputs():
    changes = [
        dict(initial_value=0.0),
        dict(initial_value=1.0),
        dict(initial_value=torch.tensor([0.3, 1.2], dtype=F64)),
        dict(max_length=1),
        dict(verifier_kind="last_token"),
        dict(answer_token=0),
        dict(answer_token=V),
        dict(vocab_size=1),
    ]
    for change in changes:
        arguments = dict(vocab_size=V, max_length=4, verifier_kind="final_token", initial_value=0.3, seeds=[0, 1])
        arguments.update(change)
        with pytest.raises(ValueError):
            tt.make_instances(**arguments)


def test_make_instances_at_the_shortest_allowed_length():
    policy, verifier, theta = tt.make_instances(V, 2, "final_token", 0.3, [0])
    assert_close(markov.outcomes(policy, theta, verifier).log_success.exp(), [0.3], rtol=0, atol=1e-6)


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


# ----------------------------------------------------------------------------------------------
# 7. Directions and exact runs
# ----------------------------------------------------------------------------------------------


def _instance(kind="final_token", length=5, seeds=(0, 1), value=0.3):
    return tt.make_instances(V, length, kind, value, list(seeds))


def test_overshoot_candidates_are_unit_aligned_and_negatively_curved():
    policy, verifier, theta = _instance("contains")
    _, gap = markov.log_odds_and_gradient_gap(policy, theta, verifier)
    hessian = markov.log_odds_hessian(policy, theta, verifier)
    target = t([0.002, 0.01])
    candidates = tt.overshoot_candidates(gap, hessian, target)
    assert candidates.shape == (2, 2, policy.n_params)
    assert_close(torch.linalg.vector_norm(candidates, dim=-1), torch.ones(2, 2, dtype=F64), rtol=0, atol=1e-12)
    assert_close((candidates * gap.unsqueeze(1)).sum(-1), target.unsqueeze(-1).expand(2, 2), rtol=0, atol=1e-12)
    normal = candidates[:, 0] - candidates[:, 1]
    normal = normal / torch.linalg.vector_norm(normal, dim=-1, keepdim=True)
    assert_close((normal * gap).sum(-1), torch.zeros(2, dtype=F64), rtol=0, atol=1e-12)
    curvature = torch.einsum("bi,bij,bj->b", normal, hessian, normal)
    unit_gap = gap / torch.linalg.vector_norm(gap, dim=-1, keepdim=True)
    projector = torch.eye(policy.n_params, dtype=F64) - unit_gap.unsqueeze(-1) * unit_gap.unsqueeze(-2)
    lowest = torch.linalg.eigvalsh(projector @ hessian @ projector)[..., 0]
    assert bool((lowest < 0).all())
    assert_close(curvature, lowest, rtol=0, atol=1e-10)


def test_simulate_overshoot_keeps_the_target_alignment_and_takes_the_lower_candidate():
    policy, verifier, theta = _instance("majority")
    target = t([0.003, 0.006])
    step = t([0.05, 0.08])
    run = tt.simulate(policy, verifier, theta, 3, "overshoot", step_size=step, alignment=target)
    assert run.value.shape == (4, 2) and run.alignment.shape == (3, 2) and run.step.shape == (3, 2)
    assert_close(run.alignment, target.expand(3, 2), rtol=0, atol=0)
    # Replay the first step: among the two candidates, the one with the lower log-odds.
    _, gap = markov.log_odds_and_gradient_gap(policy, theta, verifier)
    candidates = tt.overshoot_candidates(gap, markov.log_odds_hessian(policy, theta, verifier), target)
    trials = markov.log_odds(policy, theta.unsqueeze(1) + step[:, None, None] * candidates, verifier)
    assert_close(run.log_odds[1], trials.min(-1).values, rtol=0, atol=1e-12)
    assert_close(run.log_odds_change, run.log_odds[1:] - run.log_odds[:-1], rtol=0, atol=1e-12)
    assert_close(run.value[0], t([0.3, 0.3]), rtol=0, atol=1e-6)


def test_simulate_gap_rule_has_alignment_equal_to_the_gap_norm():
    policy, verifier, theta = _instance("final_token")
    step = t([0.1, 0.2])
    run = tt.simulate(policy, verifier, theta, 2, "gap", step_size=step)
    _, gap0 = markov.log_odds_and_gradient_gap(policy, theta, verifier)
    norm0 = torch.linalg.vector_norm(gap0, dim=-1)
    theta1 = theta + step.unsqueeze(-1) * gap0 / norm0.unsqueeze(-1)
    result1, gap1 = markov.log_odds_and_gradient_gap(policy, theta1, verifier)
    assert_close(run.alignment[0], norm0, rtol=1e-12, atol=0)
    assert_close(run.alignment[1], torch.linalg.vector_norm(gap1, dim=-1), rtol=1e-12, atol=0)
    assert_close(run.log_odds[1], result1.log_odds, rtol=0, atol=1e-12)
    assert_close(run.psi1[1], markov.length_psi1_norm(result1), rtol=1e-12, atol=0)
    assert_close(run.mean_length[1], markov.mean_length(result1), rtol=1e-12, atol=0)
    assert_close(run.step, step.expand(2, 2), rtol=0, atol=0)
    assert bool((run.log_odds_change > 0).all())  # small steps along the gap raise J


def test_simulate_grpo_rule_follows_the_enumerated_grpo_direction():
    policy, verifier, theta = _instance("contains", length=4)
    run = tt.simulate(policy, verifier, theta, 1, "grpo", step_size=t([0.1, 0.1]))
    log_prob, score, reward, lengths, _ = enumerated(policy, verifier, theta)
    update = estimators.expected_direction(log_prob, score, reward.expand_as(log_prob), lengths.expand_as(log_prob),
                                           "grpo")
    direction = update / torch.linalg.vector_norm(update, dim=-1, keepdim=True)
    gap = gaps.gradient_gap(log_prob, score, reward.expand_as(log_prob))
    assert_close(run.alignment[0], (direction * gap).sum(-1), rtol=0, atol=1e-12)
    assert_close(run.log_odds[1], markov.log_odds(policy, theta + 0.1 * direction, verifier), rtol=0, atol=1e-12)


@pytest.mark.parametrize("rule", tt.DIRECTIONS)
def test_theorem3_steps_equal_the_bound_and_inequality_22_holds(rule):
    policy, verifier, theta = _instance("final_token", length=6, seeds=(0, 1, 2))
    alignment = t([0.002, 0.005, 0.01]) if rule == "overshoot" else None
    run = tt.simulate(policy, verifier, theta, 4, rule, step_rule="theorem3", alignment=alignment)
    length = policy.max_length
    expected = tt.theorem3_step_bound(run.alignment, run.log_failure[:-1], length, run.psi1[:-1])
    assert bool((run.step > 0).all())
    assert_close(run.step, expected, rtol=1e-12, atol=0)
    bound = tt.log_odds_change_bound(run.alignment, run.step, run.log_failure[:-1], length, run.psi1[:-1])
    assert float((run.log_odds_change - bound).min()) >= -1e-12
    assert_close(run.log_failure.exp() + run.value, torch.ones_like(run.value), rtol=0, atol=1e-12)


def test_inequality_22_holds_at_constant_steps():
    for kind in markov.VERIFIERS:
        policy, verifier, theta = _instance(kind, length=4, seeds=(0, 1, 2, 3))
        for rule in ("gap", "overshoot"):
            run = tt.simulate(policy, verifier, theta, 3, rule, step_size=t([0.01, 0.05, 0.2, 1.0]),
                              alignment=torch.full((4,), 0.005, dtype=F64))
            bound = tt.log_odds_change_bound(run.alignment, run.step, run.log_failure[:-1], 4, run.psi1[:-1])
            assert float((run.log_odds_change - bound).min()) >= -1e-12, (kind, rule)


def test_simulate_rejects_bad_arguments():
    policy, verifier, theta = _instance(seeds=(0,))
    changes = [
        dict(rule="sideways", step_size=t([0.1])),
        dict(rule="gap", step_rule="adaptive", step_size=t([0.1])),
        dict(rule="gap"),  # constant steps without step_size
        dict(rule="overshoot", step_size=t([0.1])),  # no alignment
        dict(rule="gap", step_size=t([0.1]), steps=0),
    ]
    for change in changes:
        arguments = dict(steps=2)
        arguments.update(change)
        with pytest.raises(ValueError):
            tt.simulate(policy, verifier, theta, **arguments)
    assert tt.simulate(policy, verifier, theta, steps=1, rule="gap", step_size=t([0.1])).value.shape == (2, 1)


# ----------------------------------------------------------------------------------------------
# 8. One-step threshold
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["final_token", "majority"])
def test_one_step_threshold_is_the_first_step_that_lowers_j(kind):
    policy, verifier, theta = _instance(kind, length=4)
    _, gap = markov.log_odds_and_gradient_gap(policy, theta, verifier)
    alignment = t([0.01, 0.01])
    candidates = tt.overshoot_candidates(gap, markov.log_odds_hessian(policy, theta, verifier), alignment)
    eta = tt.one_step_threshold(policy, verifier, theta, candidates, alignment)
    assert eta.shape == (2, 2) and bool(torch.isfinite(eta).all())
    start = markov.log_odds(policy, theta, verifier)[:, None, None]
    below = eta.unsqueeze(-1) * torch.linspace(1e-3, 1 - 1e-6, 200, dtype=F64)  # (B, C, n) steps below η*
    change = markov.log_odds(policy, theta[:, None, None] + below.unsqueeze(-1) * candidates.unsqueeze(-2),
                             verifier) - start
    assert float(change.min()) >= 0  # no smaller step lowers J
    above = markov.log_odds(policy, theta[:, None] + (eta * (1 + 1e-6)).unsqueeze(-1) * candidates, verifier)
    assert bool((above < start.squeeze(-1)).all())


def test_one_step_threshold_is_nan_along_the_gap_of_a_small_instance():
    policy, verifier, theta = _instance("final_token", length=4)
    _, gap = markov.log_odds_and_gradient_gap(policy, theta, verifier)
    norm = torch.linalg.vector_norm(gap, dim=-1)
    direction = (gap / norm.unsqueeze(-1)).unsqueeze(1)
    eta = tt.one_step_threshold(policy, verifier, theta, direction, norm)
    assert bool(torch.isnan(eta).all())
    steps = norm.unsqueeze(-1) * torch.logspace(-1, 3, 200, dtype=F64)  # the searched range
    along = markov.log_odds(policy, theta.unsqueeze(1) + steps.unsqueeze(-1) * direction, verifier)
    assert bool((along >= markov.log_odds(policy, theta, verifier).unsqueeze(-1)).all())


# ----------------------------------------------------------------------------------------------
# 9. Length grid and slopes
# ----------------------------------------------------------------------------------------------


def test_lengths_grid_and_slope_interval_of_exact_power_laws():
    assert tt.lengths_grid(256) == [4, 8, 16, 32, 64, 128, 256]
    assert tt.lengths_grid(300) == [4, 8, 16, 32, 64, 128, 256]
    assert tt.lengths_grid(3) == []
    assert tt.lengths_grid(16, shortest=2) == [2, 4, 8, 16]
    lengths = np.array(tt.lengths_grid(256), dtype=float)
    values = np.array([3.0, 0.5, 7.0])[:, None] * lengths**-1.0
    out = tt.slope_interval(lengths, values)
    for key in ("slope", "low", "high", "per_seed_min", "per_seed_max", "pooled_slope"):
        assert out[key] == pytest.approx(-1.0, abs=1e-9), key
    assert out["seeds"] == 3
    assert out["pooled_r2"] < 1.0  # different prefactors scatter the pooled fit
    same = tt.slope_interval(lengths, np.tile(2.0 * lengths**0.5, (4, 1)))
    assert same["slope"] == pytest.approx(0.5, abs=1e-9) and same["pooled_r2"] == pytest.approx(1.0, abs=1e-12)
    single = tt.slope_interval(lengths, values[:1])
    assert math.isnan(single["low"]) and math.isnan(single["high"])


def test_slope_interval_covers_the_slope_of_noisy_data():
    rng = np.random.default_rng(0)
    lengths = np.array(tt.lengths_grid(1024), dtype=float)
    values = lengths**-0.5 * np.exp(0.2 * rng.standard_normal((16, len(lengths))))
    out = tt.slope_interval(lengths, values)
    assert out["low"] < -0.5 < out["high"]
    assert 0 < out["high"] - out["low"] < 0.1
    assert out["per_seed_min"] <= out["slope"] <= out["per_seed_max"]


# ----------------------------------------------------------------------------------------------
# 10. Sampled training
# ----------------------------------------------------------------------------------------------


def _training_setup(runs=3, length=4, value=0.2, kind="final_token"):
    return tt.make_instances(V, length, kind, value, list(range(runs)))


def test_train_shapes_and_recorded_values():
    policy, verifier, theta = _training_setup()
    rates = t([1.0, 2.0, 3.0])
    run = token_training.train(policy, verifier, theta, ["reinforce", "grpo", "dr_grpo"], rates, 5, 4,
                               torch.Generator().manual_seed(0), record_every=2)
    assert run.value.shape == (4, 3) and run.update_norm.shape == (5, 3)
    assert run.steps.tolist() == [0, 2, 4, 5]
    assert_close(run.value[0], t([0.2, 0.2, 0.2]), rtol=0, atol=1e-6)
    assert_close(run.value[0], markov.outcomes(policy, theta, verifier).log_success.exp(), rtol=0, atol=1e-15)
    assert bool((run.update_norm >= 0).all()) and bool(((run.value > 0) & (run.value < 1)).all())


def test_train_first_step_replays_by_hand():
    policy, verifier, theta = _training_setup(runs=2, kind="contains")
    rates = t([1.5, 0.5])
    variants = ["reinforce", "grpo"]
    run = token_training.train(policy, verifier, theta, variants, rates, 1, 6, torch.Generator().manual_seed(5))
    tokens, lengths = markov.sample(policy, theta, 6, torch.Generator().manual_seed(5))
    rewards = verifier.reward(tokens, lengths)
    scores = markov.sampled_scores(policy, theta, tokens, lengths)
    value = markov.outcomes(policy, theta, verifier).log_success.exp()
    update = torch.stack([
        estimators.sampled_direction(scores[0], rewards[0], lengths[0], "reinforce", value[0]),
        estimators.sampled_direction(scores[1], rewards[1], lengths[1], "grpo"),
    ]) * rates.unsqueeze(-1)
    assert_close(run.update_norm[0], torch.linalg.vector_norm(update, dim=-1), rtol=1e-12, atol=1e-15)
    expected = markov.outcomes(policy, theta + update, verifier).log_success.exp()
    assert_close(run.value[1], expected, rtol=1e-12, atol=0)


def test_train_is_deterministic_per_seed():
    policy, verifier, theta = _training_setup()
    arguments = (policy, verifier, theta, ["grpo", "dr_grpo", "reinforce"], t([2.0, 2.0, 2.0]), 6, 4)
    first = token_training.train(*arguments, torch.Generator().manual_seed(7))
    second = token_training.train(*arguments, torch.Generator().manual_seed(7))
    other = token_training.train(*arguments, torch.Generator().manual_seed(8))
    assert torch.equal(first.value, second.value) and torch.equal(first.update_norm, second.update_norm)
    assert not torch.equal(first.value, other.value)


def test_train_rejects_bad_inputs():
    policy = bigram(4)
    theta = random_theta(policy, seed=0, batch=(3,))
    verifier = markov.Verifier("final_token", V)
    changes = [
        dict(variants=["grpo", "grpo"]),
        dict(variants=["grpo", "ppo", "grpo"]),
        dict(learning_rates=t([1.0, 2.0])),
        dict(learning_rates=t([1.0, 0.0, 1.0])),
        dict(learning_rates=t([1.0, -1.0, 1.0])),
        dict(learning_rates=t([1.0, math.inf, 1.0])),
        dict(learning_rates=t([1.0, math.nan, 1.0])),
        dict(group_size=1),
        dict(steps=0),
        dict(record_every=0),
    ]
    for change in changes:
        arguments = dict(policy=policy, verifier=verifier, theta=theta, variants=["grpo"] * 3,
                         learning_rates=t([1.0, 1.0, 1.0]), steps=3, group_size=4,
                         generator=torch.Generator().manual_seed(0))
        arguments.update(change)
        with pytest.raises(ValueError):
            token_training.train(**arguments)
    valid = token_training.train(policy, verifier, theta, ["grpo"] * 3, t([1.0, 1.0, 1.0]), 3, 4,
                                 torch.Generator().manual_seed(0))
    assert valid.value.shape == (4, 3)


def test_short_training_raises_j_for_every_variant():
    runs_per_variant = 8
    policy, verifier, theta = tt.make_instances(V, 4, "final_token", 0.2, [0] * (3 * runs_per_variant))
    variants = [v for v in ("reinforce", "grpo", "dr_grpo") for _ in range(runs_per_variant)]
    rates = torch.tensor([{"reinforce": 4.0, "grpo": 1.0, "dr_grpo": 4.0}[v] for v in variants], dtype=F64)
    run = token_training.train(policy, verifier, theta, variants, rates, 30, 8, torch.Generator().manual_seed(0),
                               record_every=10)
    means = run.value.reshape(-1, 3, runs_per_variant).mean(-1)  # (steps 0, 10, 20, 30; variant)
    assert_close(means[0], t([0.2, 0.2, 0.2]), rtol=0, atol=1e-6)
    assert bool((means[1:] > means[:-1]).all()), means  # the mean J rises at every record
    assert bool((means[-1] > 0.75).all()), means


# ----------------------------------------------------------------------------------------------
# 11. The constants of Assumption 2
# ----------------------------------------------------------------------------------------------


def test_measured_constants_approach_the_suprema_from_below():
    assert tt.SCORE_BOUND == math.sqrt(2.0) and tt.SMOOTHNESS == 0.5
    score, smooth = tt.measured_constants(6, 2000, torch.Generator().manual_seed(0))
    assert 0.95 * math.sqrt(2.0) <= score <= math.sqrt(2.0) + 1e-12
    assert 0.95 * 0.5 <= smooth <= 0.5 + 1e-12
    again = tt.measured_constants(6, 2000, torch.Generator().manual_seed(0))
    assert again == (score, smooth)
