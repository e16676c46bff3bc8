"""Tests of rlvr_dynamics.theory.bounds: Theorem 1 (15a)/(15b) and its part (a), the constants of
Assumption 1 (which hold and are approached), and the bounds of Section 4 by hand.
"""

from __future__ import annotations

import math

import pytest
import torch

from rlvr_dynamics.engines import three_response, token_chain
from rlvr_dynamics.theory import bounds
from rlvr_dynamics.theory.policies import bandit_log_policy, bandit_scores

from _helpers import F64, assert_close, t

# ----------------------------------------------------------------------------------------------
# Theorem 1 bounds and Assumption 1 constants
# ----------------------------------------------------------------------------------------------


def test_logit():
    assert bounds.logit(t(0.5)).item() == 0.0
    assert_close(bounds.logit(t([0.25, 0.75, 0.9])), [math.log(1 / 3), math.log(3), math.log(9)])
    assert bounds.logit(t(0.0)).item() == -math.inf and bounds.logit(t(1.0)).item() == math.inf
    # Tiny J: log-space keeps the digits (1 − J is not rounded away).
    assert_close(bounds.logit(t(1e-300)), t(math.log(1e-300)))


@pytest.mark.parametrize("j0", [1e-4, 0.01, 0.3, 0.5, 0.9])
def test_convergence_lower_bound(j0):
    initial = t(j0)
    assert_close(bounds.convergence_lower_bound(initial, t(0.0)), initial)
    moderate = t([0.1, 1.0, 5.0, 20.0])
    formula = j0 / (j0 + (1 - j0) * torch.exp(-moderate / 2))
    assert_close(bounds.convergence_lower_bound(initial, moderate), formula)
    assert torch.all(bounds.convergence_lower_bound(initial, moderate) > initial)
    assert torch.all(bounds.convergence_lower_bound(initial, moderate).diff() > 0)
    huge = bounds.convergence_lower_bound(initial, t(1e4))
    assert torch.isfinite(huge) and huge.item() == 1.0
    # Broadcasting: J₀ (E,) against M (S, E).
    values = t([j0, 0.5])
    grid = torch.stack([torch.zeros(2, dtype=F64), torch.full((2,), 4.0, dtype=F64)])
    bound = bounds.convergence_lower_bound(values, grid)
    assert bound.shape == (2, 2)
    assert_close(bound[0], values)


@pytest.mark.parametrize("j0", [0.01, 0.4, 0.8])
def test_stagnation_upper_bound(j0):
    initial = t(j0)
    assert_close(bounds.stagnation_upper_bound(initial, 0.0, 0.0), initial)
    c0 = t([0.0, 0.1, 1.0, 3.0, 10.0])
    upper = bounds.stagnation_upper_bound(initial, c0, 0.5)
    assert torch.all(upper.diff() > 0) and torch.all(upper >= initial) and torch.all(upper <= 1)
    total = c0 + 0.5
    assert_close(upper, j0 / (j0 + torch.exp(-total) * (1 - j0)))
    # C₀ and C₀′ enter only through their sum.
    assert_close(bounds.stagnation_upper_bound(initial, 1.0, 2.0),
                 bounds.stagnation_upper_bound(initial, 3.0, 0.0))


def test_convergence_step_bound():
    alignment = t([-1.0, 0.0, 0.5, 2.0])
    # [Δμ]₊ / (2(L + 8G²)) with L = 0.5, G = 0.25: denominator 2(0.5 + 0.5) = 2.
    assert_close(bounds.convergence_step_bound(alignment, 0.5, 0.25), [0.0, 0.0, 0.25, 1.0])


def test_bandit_score_bound_holds_and_is_approached():
    generator = torch.Generator().manual_seed(0)
    d, n = 3, 5
    contexts = torch.rand(200, d, generator=generator, dtype=F64)
    theta = 3.0 * torch.randn(200, d, n, generator=generator, dtype=F64)
    scores = bandit_scores(theta, contexts)  # (200, N, d·N): every arm's score
    norms = torch.linalg.vector_norm(scores, dim=-1)  # (200, N)
    bound = bounds.bandit_score_bound(torch.linalg.vector_norm(contexts, dim=-1))
    assert_close(bound, math.sqrt(2) * torch.linalg.vector_norm(contexts, dim=-1))
    assert torch.all(norms <= bound[:, None] * (1 + 1e-12))
    assert (norms / bound[:, None]).max() > 0.9  # random θ already come close
    # π concentrated on arm 0: the score of arm 1 is ≈ x ⊗ (e_1 − e_0), of norm √2 ‖x‖.
    x = t([0.3, 0.9, 0.5])
    peaked = torch.zeros(d, n, dtype=F64)
    peaked[:, 0] = 60.0 * x / x.dot(x)  # logit 60 on arm 0, 0 elsewhere
    norm = torch.linalg.vector_norm(bandit_scores(peaked, x)[1])
    bound_x = bounds.bandit_score_bound(torch.linalg.vector_norm(x))
    assert norm <= bound_x and norm / bound_x > 1 - 1e-12


def _log_prob_hessian(theta, x, arm):
    def log_prob(flat):
        return bandit_log_policy(flat.reshape(theta.shape), x)[arm]

    return torch.autograd.functional.hessian(log_prob, theta.flatten())


def test_bandit_smoothness_bound_holds_and_is_approached():
    generator = torch.Generator().manual_seed(1)
    d, n = 3, 4
    worst = 0.0
    for _ in range(20):
        x = torch.rand(d, generator=generator, dtype=F64)
        theta = 2.0 * torch.randn(d, n, generator=generator, dtype=F64)
        bound = bounds.bandit_smoothness_bound(torch.linalg.vector_norm(x))
        for arm in (0, 2):
            hessian = _log_prob_hessian(theta, x, arm)  # (d·N, d·N)
            # −(x xᵀ) ⊗ (diag π − π πᵀ), the same for every arm.
            probs = bandit_log_policy(theta, x).exp()
            assert_close(hessian, -torch.kron(torch.outer(x, x), torch.diag(probs) - torch.outer(probs, probs)),
                         atol=1e-13)
            operator_norm = torch.linalg.matrix_norm(hessian, ord=2)
            assert operator_norm <= bound * (1 + 1e-12)
            worst = max(worst, (operator_norm / bound).item())
    assert worst > 0.1
    # Two arms sharing all the mass equally: λ_max(diag π − π πᵀ) = 1/2, the bound is attained.
    x = t([0.2, 0.7, 0.4])
    theta = torch.zeros(d, n, dtype=F64)
    theta[:, :2] = (40.0 * x / x.dot(x))[:, None]  # logits (40, 40, 0, 0)
    operator_norm = torch.linalg.matrix_norm(_log_prob_hessian(theta, x, 0), ord=2)
    assert_close(operator_norm, bounds.bandit_smoothness_bound(torch.linalg.vector_norm(x)), rtol=1e-9)


# ----------------------------------------------------------------------------------------------
# The bounds of Section 4, by hand
# ----------------------------------------------------------------------------------------------


def test_theorem3_step_bound_by_hand():
    # L_p = ½, G_p² = 2, T = 4, T_ψ₁ = 2, 1 − J = ½: L T = 2, min{T_ψ₁/(1 − J), 8T²} = min{4, 128} = 4,
    # first = (Δμ/2)/(2 + 2·4) = Δμ/20, second = 1/(2√(2 + 2·2)) = 1/(2√6).
    log_failure = torch.log(t([0.5, 0.5, 0.5]))
    bound = token_chain.theorem3_step_bound(t([0.1, 10.0, -0.3]), log_failure, 4, t([2.0, 2.0, 2.0]))
    assert_close(bound, [0.1 / 20, 1 / (2 * math.sqrt(6)), 0.0])
    # 1 − J = 10⁻⁶: T_ψ₁/(1 − J) = 2·10⁶ is capped at 8T² = 128: first = (Δμ/2)/(2 + 256).
    capped = token_chain.theorem3_step_bound(t(0.1), t(math.log(1e-6)), 4, t(2.0))
    assert_close(capped, 0.05 / 258)
    # Other constants: L = 1, G = 1, T = 3, ψ = 1, 1 − J = ¼: first = (0.2/2)/(3 + 4) , second = 1/(2·2).
    other = token_chain.theorem3_step_bound(t(0.2), t(math.log(0.25)), 3, t(1.0), smoothness=1.0, score_bound=1.0)
    assert_close(other, 0.1 / 7)


def test_theorem4_window_and_largest_alignment_by_hand():
    # (L + G²) T = (½ + 2)·4 = 10: [120·0.01/10, 1/(2√10)].
    low, high = bounds.theorem4_window(0.01, 4)
    assert low == pytest.approx(0.12, rel=1e-14)
    assert high == pytest.approx(1 / (2 * math.sqrt(10)), rel=1e-14)
    assert bounds.theorem4_largest_alignment(4) == pytest.approx(math.sqrt(10) / 240, rel=1e-14)
    low = bounds.theorem4_window(0.01, 4, smoothness=1.0, score_bound=2.0)[0]
    assert low == pytest.approx(120 * 0.01 / 20, rel=1e-14)


def test_log_odds_change_bound_by_hand():
    # Δμη − (L T + G² T_ψ₁/(1 − J)) η² with L T = 2, G² T_ψ₁/(1 − J) = 2·2/0.5 = 8: 0.1η − 10η².
    steps = t([0.005, 0.01, 0.02])
    bound = bounds.log_odds_change_bound(t(0.1), steps, t(math.log(0.5)), 4, t(2.0))
    assert_close(bound, [0.1 * 0.005 - 10 * 0.005**2, 0.0, 0.1 * 0.02 - 10 * 0.02**2], atol=1e-16)


def test_effective_and_safe_steps_by_hand():
    alignment, value, psi1 = t(0.3), t(0.2), t(4.0)
    # GRPO: α Δμ √(J(1 − J))/T_ψ₁ = 2·0.3·0.4/4; Dr. GRPO, REINFORCE: α Δμ J(1 − J) = 2·0.3·0.16.
    assert_close(bounds.effective_step("grpo", alignment, value, psi1, learning_rate=2.0), 0.06)
    assert_close(bounds.effective_step("dr_grpo", alignment, value, psi1, learning_rate=2.0), 0.096)
    assert_close(bounds.effective_step("reinforce", alignment, value, psi1), 0.048)
    assert_close(bounds.safe_step(alignment, value, psi1), 0.3 * 0.8 / 4)
    with pytest.raises(ValueError):
        bounds.effective_step("ppo", alignment, value, psi1)


# ----------------------------------------------------------------------------------------------
# Lemma 1's remainder and Corollary 1
# ----------------------------------------------------------------------------------------------


def test_lemma1_remainder_bound_by_hand():
    # softmax constants: L_o + 8G_o² = 0.5 + 8·2 = 16.5
    assert_close(bounds.lemma1_remainder_bound(t([0.1, 2.0])), t([0.165, 66.0]), rtol=1e-14)
    assert_close(bounds.lemma1_remainder_bound(t(0.5), smoothness=t(1.0), score_bound=t(0.5)), t(0.75))


def test_lemma1_remainder_bounds_the_three_response_log_odds_and_a_too_small_constant_does_not():
    logits = three_response.instance_logits(torch.tensor([0.2, 0.6]))
    runs = three_response.simulate(logits, 30, "gap", t([0.3, 0.8]))
    residual = (runs.log_odds_change - runs.alignment * runs.step).abs()
    assert bool((residual <= bounds.lemma1_remainder_bound(runs.step) + 1e-12).all())
    # the constant cannot be dropped: without it the remainder is not bounded at these steps
    assert bool((residual > 1e-3 * runs.step**2).any())


def test_corollary1_step_and_bound_by_hand():
    # Δμ = 1: min{1/(2·16.5), 1/(2√0.5)} = 1/33
    assert bounds.corollary1_step(1.0) == pytest.approx(1 / 33, rel=1e-15)
    # a huge uniform gap: the 1/(2√L_o) cap binds
    assert bounds.corollary1_step(1e3) == pytest.approx(1 / (2 * math.sqrt(0.5)), rel=1e-15)
    # log(1 − J_K) ≤ log((1 − J₀)/J₀) − ½ΔμηK; J₀ = ½, Δμ = 2, η = 0.1, K = 0, 5 → 0, −0.5
    steps = torch.arange(0, 10, 5, dtype=F64)
    assert_close(bounds.corollary1_log_failure_bound(t(0.0), 2.0, 0.1, steps), t([0.0, -0.5]), atol=1e-15)


def test_corollary1_holds_on_the_uniform_gap_and_fails_above_its_rate():
    """On the three-response softmax the gap direction has Δμ ≥ √(3/2) at every step (a uniform gap):
    at the corollary's step, 1 − J_K stays below the bound; a bound with twice the rate is broken."""
    uniform_gap = math.sqrt(1.5)
    eta = bounds.corollary1_step(uniform_gap)
    runs = three_response.simulate(three_response.instance_logits(torch.tensor([0.1, 0.5, 0.9])), 400, "gap",
                                   torch.full((3,), eta, dtype=F64))
    assert bool((runs.alignment >= uniform_gap - 1e-12).all())
    steps = torch.arange(401, dtype=F64)[:, None]
    log_failure = -torch.nn.functional.softplus(runs.log_odds)
    assert bool((log_failure <= bounds.corollary1_log_failure_bound(runs.log_odds[0], uniform_gap, eta, steps)
                 + 1e-12).all())
    too_fast = bounds.corollary1_log_failure_bound(runs.log_odds[0], uniform_gap, 4 * eta, steps)
    assert bool((log_failure > too_fast).any())
