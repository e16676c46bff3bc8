"""Tests of rlvr_dynamics.engines.token_chain: instances calibrated to J₀, the directions and exact runs
(the Theorem-4 adversary, (18a) steps, inequality (22)) and the one-step threshold, against the
enumeration of every response and hand-computed numbers.
"""

from __future__ import annotations

import pytest
import torch

from rlvr_dynamics.engines import token_chain
from rlvr_dynamics.theory import bounds, estimators, gaps, markov
from rlvr_dynamics.theory.policies import TokenPolicy

from _helpers import F64, V, assert_close, enumerated, t

# ----------------------------------------------------------------------------------------------
# Instances
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", markov.VERIFIERS)
def test_make_instances_hits_the_target(kind):
    target = t([0.05, 0.5, 0.9])
    policy, verifier, theta = token_chain.make_instances(5, 6, kind, target, [0, 1, 2], answer_token=2)
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
        policy, _, theta = token_chain.make_instances(V, length, "contains", 0.3, seeds)
        tables[length] = theta.unflatten(-1, (V + 1, V))
    again = token_chain.make_instances(V, 8, "contains", 0.3, [8])[2].unflatten(-1, (V + 1, V))
    assert torch.equal(again[0], tables[8][1])  # one seed's instance does not depend on the others
    for b, seed in enumerate(seeds):
        base = torch.randn(V + 1, V, generator=torch.Generator().manual_seed(seed), dtype=F64)
        for length, table in tables.items():
            assert torch.equal(table[b, :, 2:], base[:, 2:])  # untouched columns: the seed's N(0, 1) draw
            shift = table[b, :, 1] - base[:, 1]  # the answer column moved by one constant
            assert_close(shift, shift[0].expand(V + 1), rtol=0, atol=1e-12)
            stop = torch.softmax(table[b], dim=-1)[:, 0]
            assert_close(stop[1:V], torch.full((V - 1,), 2 / length, dtype=F64), rtol=0, atol=1e-12)
            assert table[b, V, 0] == token_chain.EMPTY_LOGIT  # the BOS row (almost) never stops
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
            token_chain.make_instances(**arguments)


def test_make_instances_at_the_shortest_allowed_length():
    policy, verifier, theta = token_chain.make_instances(V, 2, "final_token", 0.3, [0])
    assert_close(markov.outcomes(policy, theta, verifier).log_success.exp(), [0.3], rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Directions and exact runs
# ----------------------------------------------------------------------------------------------


def _instance(kind="final_token", length=5, seeds=(0, 1), value=0.3):
    return token_chain.make_instances(V, length, kind, value, list(seeds))


def test_overshoot_candidates_are_unit_aligned_and_negatively_curved():
    policy, verifier, theta = _instance("contains")
    _, gap = markov.log_odds_and_gradient_gap(policy, theta, verifier)
    hessian = markov.log_odds_hessian(policy, theta, verifier)
    target = t([0.002, 0.01])
    candidates = token_chain.overshoot_candidates(gap, hessian, target)
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
    run = token_chain.simulate(policy, verifier, theta, 3, "overshoot", step_size=step, alignment=target)
    assert run.value.shape == (4, 2) and run.alignment.shape == (3, 2) and run.step.shape == (3, 2)
    assert_close(run.alignment, target.expand(3, 2), rtol=0, atol=0)
    # Replay the first step: among the two candidates, the one with the lower log-odds.
    _, gap = markov.log_odds_and_gradient_gap(policy, theta, verifier)
    candidates = token_chain.overshoot_candidates(gap, markov.log_odds_hessian(policy, theta, verifier), target)
    trials = markov.log_odds(policy, theta.unsqueeze(1) + step[:, None, None] * candidates, verifier)
    assert_close(run.log_odds[1], trials.min(-1).values, rtol=0, atol=1e-12)
    assert_close(run.log_odds_change, run.log_odds[1:] - run.log_odds[:-1], rtol=0, atol=1e-12)
    assert_close(run.value[0], t([0.3, 0.3]), rtol=0, atol=1e-6)


def test_simulate_gap_rule_has_alignment_equal_to_the_gap_norm():
    policy, verifier, theta = _instance("final_token")
    step = t([0.1, 0.2])
    run = token_chain.simulate(policy, verifier, theta, 2, "gap", step_size=step)
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
    run = token_chain.simulate(policy, verifier, theta, 1, "grpo", step_size=t([0.1, 0.1]))
    log_prob, score, reward, lengths, _ = enumerated(policy, verifier, theta)
    update = estimators.expected_direction(log_prob, score, reward.expand_as(log_prob), lengths.expand_as(log_prob),
                                           "grpo")
    direction = update / torch.linalg.vector_norm(update, dim=-1, keepdim=True)
    gap = gaps.gradient_gap(log_prob, score, reward.expand_as(log_prob))
    assert_close(run.alignment[0], (direction * gap).sum(-1), rtol=0, atol=1e-12)
    assert_close(run.log_odds[1], markov.log_odds(policy, theta + 0.1 * direction, verifier), rtol=0, atol=1e-12)


@pytest.mark.parametrize("rule", token_chain.TOKEN_DIRECTION_RULES)
def test_theorem3_steps_equal_the_bound_and_inequality_22_holds(rule):
    policy, verifier, theta = _instance("final_token", length=6, seeds=(0, 1, 2))
    alignment = t([0.002, 0.005, 0.01]) if rule == "overshoot" else None
    run = token_chain.simulate(policy, verifier, theta, 4, rule, step_rule="theorem3", alignment=alignment)
    length = policy.max_length
    expected = token_chain.theorem3_step_bound(run.alignment, run.log_failure[:-1], length, run.psi1[:-1])
    assert bool((run.step > 0).all())
    assert_close(run.step, expected, rtol=1e-12, atol=0)
    bound = bounds.log_odds_change_bound(run.alignment, run.step, run.log_failure[:-1], length, run.psi1[:-1])
    assert float((run.log_odds_change - bound).min()) >= -1e-12
    assert_close(run.log_failure.exp() + run.value, torch.ones_like(run.value), rtol=0, atol=1e-12)


def test_inequality_22_holds_at_constant_steps():
    for kind in markov.VERIFIERS:
        policy, verifier, theta = _instance(kind, length=4, seeds=(0, 1, 2, 3))
        for rule in ("gap", "overshoot"):
            run = token_chain.simulate(policy, verifier, theta, 3, rule, step_size=t([0.01, 0.05, 0.2, 1.0]),
                              alignment=torch.full((4,), 0.005, dtype=F64))
            bound = bounds.log_odds_change_bound(run.alignment, run.step, run.log_failure[:-1], 4, run.psi1[:-1])
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
            token_chain.simulate(policy, verifier, theta, **arguments)
    assert token_chain.simulate(policy, verifier, theta, steps=1, rule="gap", step_size=t([0.1])).value.shape == (2, 1)


# ----------------------------------------------------------------------------------------------
# One-step threshold
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["final_token", "majority"])
def test_one_step_threshold_is_the_first_step_that_lowers_j(kind):
    policy, verifier, theta = _instance(kind, length=4)
    _, gap = markov.log_odds_and_gradient_gap(policy, theta, verifier)
    alignment = t([0.01, 0.01])
    candidates = token_chain.overshoot_candidates(gap, markov.log_odds_hessian(policy, theta, verifier), alignment)
    eta = token_chain.one_step_threshold(policy, verifier, theta, candidates, alignment)
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
    eta = token_chain.one_step_threshold(policy, verifier, theta, direction, norm)
    assert bool(torch.isnan(eta).all())
    steps = norm.unsqueeze(-1) * torch.logspace(-1, 3, 200, dtype=F64)  # the searched range
    along = markov.log_odds(policy, theta.unsqueeze(1) + steps.unsqueeze(-1) * direction, verifier)
    assert bool((along >= markov.log_odds(policy, theta, verifier).unsqueeze(-1)).all())
