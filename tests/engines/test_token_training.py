"""Tests of rlvr_dynamics.engines.token_training: sampled GRPO / Dr. GRPO / REINFORCE training of the
bigram chain, replayed by hand, seeded, and raising J.
"""

from __future__ import annotations

import math

import pytest
import torch

from rlvr_dynamics.engines import token_chain, token_training
from rlvr_dynamics.theory import estimators, markov

from _helpers import F64, V, assert_close, bigram, random_theta, t


def _training_setup(runs=3, length=4, value=0.2, kind="final_token"):
    return token_chain.make_instances(V, length, kind, value, list(range(runs)))


def test_train_shapes_and_recorded_values():
    policy, verifier, theta = _training_setup()
    rates = t([1.0, 2.0, 3.0])
    run = token_training.train(policy, verifier, theta, ["reinforce", "grpo", "dr_grpo"], rates, 5, 4,
                               torch.Generator().manual_seed(0), record_every=2)
    assert run.value.shape == (4, 3) and run.step.shape == (5, 3)
    assert run.recorded_steps.tolist() == [0, 2, 4, 5]
    assert_close(run.value[0], t([0.2, 0.2, 0.2]), rtol=0, atol=1e-6)
    assert_close(run.value[0], markov.outcomes(policy, theta, verifier).log_success.exp(), rtol=0, atol=1e-15)
    assert bool((run.step >= 0).all()) and bool(((run.value > 0) & (run.value < 1)).all())


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
    assert_close(run.step[0], torch.linalg.vector_norm(update, dim=-1), rtol=1e-12, atol=1e-15)
    expected = markov.outcomes(policy, theta + update, verifier).log_success.exp()
    assert_close(run.value[1], expected, rtol=1e-12, atol=0)


def test_train_is_deterministic_per_seed():
    policy, verifier, theta = _training_setup()
    arguments = (policy, verifier, theta, ["grpo", "dr_grpo", "reinforce"], t([2.0, 2.0, 2.0]), 6, 4)
    first = token_training.train(*arguments, torch.Generator().manual_seed(7))
    second = token_training.train(*arguments, torch.Generator().manual_seed(7))
    other = token_training.train(*arguments, torch.Generator().manual_seed(8))
    assert torch.equal(first.value, second.value) and torch.equal(first.step, second.step)
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
    policy, verifier, theta = token_chain.make_instances(V, 4, "final_token", 0.2, [0] * (3 * runs_per_variant))
    variants = [v for v in ("reinforce", "grpo", "dr_grpo") for _ in range(runs_per_variant)]
    rates = torch.tensor([{"reinforce": 4.0, "grpo": 1.0, "dr_grpo": 4.0}[v] for v in variants], dtype=F64)
    run = token_training.train(policy, verifier, theta, variants, rates, 30, 8, torch.Generator().manual_seed(0),
                               record_every=10)
    means = run.value.reshape(-1, 3, runs_per_variant).mean(-1)  # (steps 0, 10, 20, 30; variant)
    assert_close(means[0], t([0.2, 0.2, 0.2]), rtol=0, atol=1e-6)
    assert bool((means[1:] > means[:-1]).all()), means  # the mean J rises at every record
    assert bool((means[-1] > 0.75).all()), means
