"""Tests of rlvr_dynamics.engines.softmax_bandit (the two-stage paper's engine): the bandit, group
advantages, the sampled update, the exact expected update against the enumeration of every group,
the gradient gap, entropy and the batched simulation.
"""

import math

import numpy as np
import pytest
import torch

from rlvr_dynamics.chapters import two_stage as ts
from rlvr_dynamics.engines import softmax_bandit
from rlvr_dynamics.theory import logit_dynamics

F64 = torch.float64


@pytest.fixture
def bandit():
    return softmax_bandit.SoftmaxBandit(6, 2, torch.tensor([[1.0, 0.6, 0.1]], dtype=F64))


def test_bandit_classes_rewards_and_initial_masses(bandit):
    assert bandit.classes.tolist() == [0, 1, 1, 2, 2, 2]
    assert bandit.rewards[0].tolist() == [1.0, 0.6, 0.6, 0.1, 0.1, 0.1]
    probs = torch.softmax(bandit.initial_logits(torch.tensor([0.01, 0.05]), 0.4), -1)
    mass = bandit.class_mass(probs)
    assert torch.allclose(mass, torch.tensor([[0.01, 0.4, 0.59], [0.05, 0.4, 0.55]], dtype=F64))
    assert torch.allclose(probs[0, 1], probs[0, 2]) and torch.allclose(probs[0, 3], probs[0, 5])


@pytest.mark.parametrize("kwargs, message", [
    (dict(actions=2, high_actions=1), "at least 3"),
    (dict(actions=5, high_actions=4), "high_actions = 4"),
    (dict(actions=5, high_actions=1, rewards=[[0.5, 0.6, 0.1]]), "r_low < r_high < r_optimal"),
    (dict(actions=5, high_actions=1, rewards=[[1.5, 0.6, 0.1]]), "must lie in [0, 1]"),
])
def test_bad_bandits_are_rejected(kwargs, message):
    rewards = torch.tensor(kwargs.pop("rewards", [[1.0, 0.5, 0.0]]), dtype=F64)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        softmax_bandit.SoftmaxBandit(kwargs["actions"], kwargs["high_actions"], rewards)


def test_initial_masses_must_leave_room_for_low_actions(bandit):
    with pytest.raises(ValueError, match="initial masses"):
        bandit.initial_logits(0.5, 0.5)


def test_filtered_advantages_filter_and_scale():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 4, dtype=F64)
    out = softmax_bandit.filtered_advantages(rewards, ["group", "group", "group", "none"],
                                          ["grpo", "grpo_n", "grpo_p", "grpo"])
    lone = 0.75 / (0.5 + 1e-4)  # centred 0.75, unbiased std 0.5: (G − 1)/√G = 1.5 up to ε
    assert math.isclose(out[0, 0].item(), lone, rel_tol=1e-12)
    assert math.isclose(0.75 / 0.5, (4 - 1) / math.sqrt(4), rel_tol=1e-12)
    assert (out[1, 0] == 0) and (out[1, 1:] < 0).all()  # GRPO-N keeps only the negatives
    assert (out[2, 1:] == 0).all() and out[2, 0] > 0
    assert torch.allclose(out[3], torch.tensor([0.75, -0.25, -0.25, -0.25], dtype=F64))
    assert (softmax_bandit.filtered_advantages(torch.ones(2, 3, dtype=F64), "group", "grpo") == 0).all()


@pytest.mark.parametrize("call, message", [
    (lambda: softmax_bandit.filtered_advantages(torch.zeros(2, 1), "group", "grpo"), "at least 2 rollouts"),
    (lambda: softmax_bandit.filtered_advantages(torch.zeros(2, 3), "std", "grpo"), "'scale' = 'std' is unknown"),
    (lambda: softmax_bandit.filtered_advantages(torch.zeros(2, 3), "group", "ppo"), "'variant' = 'ppo' is unknown"),
    (lambda: softmax_bandit.filtered_advantages(torch.zeros(2, 3), "group", ["grpo"]), "1 values for 2 runs"),
])
def test_bad_options_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_sampled_update_is_lemma1_averaged_over_the_group():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, generator=generator, dtype=F64)
    probs = torch.softmax(logits, -1)
    actions = torch.randint(5, (3, 4), generator=generator)
    advantages = torch.randn(3, 4, generator=generator, dtype=F64)
    batched = softmax_bandit.sampled_logit_update(probs, actions, advantages, torch.full((3,), 0.3, dtype=F64))
    looped = sum(logit_dynamics.logit_update(logits, actions[:, i], advantages[:, i], 0.3) for i in range(4)) / 4
    assert torch.allclose(batched, looped, atol=1e-14)


def test_compositions_count_and_sum():
    rows = softmax_bandit._compositions(7, 3)
    assert rows.shape == (math.comb(9, 2), 3) and (rows.sum(1) == 7).all() and len({tuple(r) for r in rows}) == 36


@pytest.mark.parametrize("reward_model", softmax_bandit.REWARD_MODELS)
def test_expected_update_equals_enumeration_of_every_group(bandit, reward_model):
    """Theorem 1 against a brute-force sum over all V^G action tuples (and reward draws), G = 3."""
    G = 3
    logits = torch.tensor([[-0.5, 0.4, 0.1, -0.2, 0.3, -1.0]], dtype=F64)
    probs = torch.softmax(logits, -1)[0]
    rewards = bandit.rewards[0]
    for scale in logit_dynamics.SCALES:
        for variant in softmax_bandit.SIGN_VARIANTS:
            total = torch.zeros(6, dtype=F64)
            for tup in np.ndindex(*(6,) * G):
                actions = torch.tensor([tup])
                p_actions = probs[list(tup)].prod()
                outcomes = [(rewards[list(tup)].unsqueeze(0), 1.0)]
                if reward_model == "bernoulli":
                    outcomes = []
                    for bits in np.ndindex(*(2,) * G):
                        paid = torch.tensor([bits], dtype=F64)
                        p_bits = torch.where(paid[0] > 0, rewards[list(tup)], 1 - rewards[list(tup)]).prod()
                        outcomes.append((paid, float(p_bits)))
                for paid, p_paid in outcomes:
                    adv = softmax_bandit.filtered_advantages(paid, scale, variant)
                    total += p_actions * p_paid * softmax_bandit.sampled_logit_update(probs.unsqueeze(0), actions, adv,
                                                                          torch.ones(1, dtype=F64))[0]
            exact = softmax_bandit.expected_logit_update(logits, bandit, G, 1.0, scale, variant, reward_model)[0]
            assert torch.allclose(exact, total, atol=1e-12), (scale, variant)


def test_dr_grpo_closed_form_and_zero_sum(bandit):
    logits = torch.randn(4, 6, generator=torch.Generator().manual_seed(2), dtype=F64)
    for model in softmax_bandit.REWARD_MODELS:
        exact = softmax_bandit.expected_logit_update(logits, bandit.repeat(4), 5, 0.2, "none", "grpo", model)
        assert torch.allclose(exact, softmax_bandit.dr_grpo_expected_update(logits, bandit.repeat(4), 5, 0.2),
                              atol=1e-14)
        m = softmax_bandit.conditional_advantages(logits, bandit.repeat(4), 5, "group", "grpo", model)
        assert ((torch.softmax(logits, -1) * m).sum(-1).abs() < 1e-13).all()


def test_gradient_gap_is_the_log_odds_gradient(bandit):
    logits = torch.tensor([[0.2, -0.3, 0.5, 0.0, 1.0, -2.0]], dtype=F64, requires_grad=True)
    probs = torch.softmax(logits, -1)
    value = (probs * bandit.rewards).sum()
    (grad,) = torch.autograd.grad(torch.log(value) - torch.log1p(-value), logits)
    gap, success, failure = softmax_bandit.gradient_gap(probs.detach(), bandit.rewards)
    assert torch.allclose(gap, grad, atol=1e-14) and math.isclose(success.item() + failure.item(), 1.0)


def test_entropy_in_log_space_handles_extreme_logits():
    assert math.isclose(softmax_bandit.entropy(torch.zeros(4, dtype=F64)).item(), math.log(4), rel_tol=1e-14)
    assert softmax_bandit.entropy(torch.tensor([0.0, -1e4], dtype=F64)).item() == pytest.approx(0.0, abs=1e-300)


def test_simulation_is_seeded_and_batched_runs_are_independent(bandit):
    start = bandit.initial_logits(0.05, 0.4).expand(4, -1)
    kwargs = dict(steps=40, group_size=4, step_size=0.3, scales="group", variants=["grpo", "grpo_n", "grpo_p", "grpo"])
    a = softmax_bandit.simulate(bandit, start, generator=torch.Generator().manual_seed(5), **kwargs)
    b = softmax_bandit.simulate(bandit, start, generator=torch.Generator().manual_seed(5), **kwargs)
    assert torch.equal(a.final_logits, b.final_logits) and torch.equal(a.class_mass, b.class_mass)
    assert not torch.equal(a.final_logits[0], a.final_logits[3])  # same settings, different draws
    assert torch.allclose(a.class_mass.sum(-1), torch.ones_like(a.value))
    assert a.recorded_steps.tolist() == list(range(41))


def test_simulation_needs_a_generator_and_valid_options(bandit):
    start = bandit.initial_logits(0.05, 0.4)
    with pytest.raises(ValueError, match="explicit torch.Generator"):
        softmax_bandit.simulate(bandit, start, 5, 4, 0.1, "group", "grpo")
    with pytest.raises(ValueError, match="'dynamics' = 'ode' is unknown"):
        softmax_bandit.simulate(bandit, start, 5, 4, 0.1, "group", "grpo", dynamics="ode")
    with pytest.raises(ValueError, match="'reward_model' = 'noisy' is unknown"):
        softmax_bandit.simulate(bandit, start, 5, 4, 0.1, "group", "grpo", reward_model="noisy",
                    generator=torch.Generator())


def test_mean_field_tracks_the_average_of_many_sampled_runs(bandit):
    """With a small step the sampled mean stays close to the exact expected-update path."""
    start = bandit.initial_logits(0.2, 0.4)
    mean_field = softmax_bandit.simulate(bandit, start, 60, 4, 0.05, "group", "grpo", dynamics="expected")
    sampled = softmax_bandit.simulate(bandit, start.expand(2000, -1), 60, 4, 0.05, "group", "grpo",
                          generator=torch.Generator().manual_seed(3))
    gap = (sampled.class_mass[-1].mean(0) - mean_field.class_mass[-1, 0]).abs().max().item()
    assert gap < 0.01


def test_cumulative_projected_gap_is_the_first_order_log_odds_change(bandit):
    start = bandit.initial_logits(0.1, 0.4)
    run = softmax_bandit.simulate(bandit, start, 200, 4, 0.01, "none", "grpo", dynamics="expected")
    change = run.log_odds[-1, 0] - run.log_odds[0, 0]
    assert change > 0 and abs(run.signed_cumulative_alignment[-1, 0] / change - 1) < 0.01
    assert torch.equal(run.signed_cumulative_alignment, run.cumulative_gap)  # Dr. GRPO's mean step ∥ ∇J: Δμ ≥ 0


def test_two_stage_shape_on_the_mean_field_path():
    """Below the onset threshold: π_O dips, π_H peaks, then π_O takes over, and the dip ends where
    π_L ≈ (n_H + 1) π_O (Proposition TS7)."""
    bandit = softmax_bandit.SoftmaxBandit(10, 3, torch.tensor([[1.0, 0.5, 0.0]], dtype=F64))
    run = softmax_bandit.simulate(bandit, bandit.initial_logits(0.01, 0.4), 2000, 8, 0.3, "group", "grpo",
                                  dynamics="expected")
    optimal, high = run.class_mass[:, 0, 0], run.class_mass[:, 0, 1]
    switch = ts.switch_steps(run.class_mass[..., 1], run.recorded_steps)[0]
    takeover = ts.takeover_steps(run.class_mass[..., 0], run.recorded_steps)[0]
    assert 0 < switch < takeover < 2000
    assert optimal[: int(switch)].min() < 0.5 * optimal[0]
    onset = int(optimal.argmin())  # the bottom of the dip: π_O turns up there
    assert abs(logit_dynamics.exploration_onset_ratio(run.class_mass[onset, 0], 3).item() - 1) < 0.1
    assert high.max() > 0.95
