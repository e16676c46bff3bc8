"""The trajectory-level quantities of Section 3.1, for any policy whose responses can be listed.

A policy on one prompt is given by three aligned tensors over its R responses:

- ``log_prob``  (..., R)     log π_θ(o | q), a complete distribution (logsumexp over R is 0);
- ``score``     (..., R, D)  ∇_θ log π_θ(o | q), the score of each response;
- ``reward``    (..., R)     r*(q, o) ∈ {0, 1}.

Leading dimensions are batch axes (instances, runs, step sizes …). Everything is computed in
log space: J = 0 or 1 and log-probabilities of −1e4 give finite numbers, never NaN. Where a
region is empty (J = 0 or J = 1) its conditional policy is undefined; we return the zero
vector for its score mean, which is what the identity (10) needs (both sides are 0 there).
"""

from __future__ import annotations

import torch

__all__ = [
    "log_success_probability",
    "success_probability",
    "log_odds",
    "conditional_log_policy",
    "conditional_score_means",
    "gradient_gap",
    "policy_gradient",
    "policy_gradient_from_gap",
    "gap_alignment",
    "conditional_variances",
]


def check_shapes(log_prob: torch.Tensor, reward: torch.Tensor, score: torch.Tensor | None = None):
    if log_prob.shape != reward.shape:
        raise ValueError(f"log_prob {tuple(log_prob.shape)} and reward {tuple(reward.shape)} differ")
    if score is not None and score.shape[:-1] != log_prob.shape:
        raise ValueError(
            f"score {tuple(score.shape)} must be log_prob's shape {tuple(log_prob.shape)} plus a parameter axis"
        )


def _masked_log_prob(log_prob: torch.Tensor, reward: torch.Tensor, positive: bool) -> torch.Tensor:
    """log π(o) on 𝒪⁺ (``positive``) or 𝒪⁻, −inf elsewhere: the partition (6)."""
    inside = reward > 0.5 if positive else reward <= 0.5
    return torch.where(inside, log_prob, torch.full_like(log_prob, -torch.inf))


def log_success_probability(log_prob: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    """log J_q(π_θ) = log Σ_{o ∈ 𝒪⁺} π_θ(o | q), eqs. (2) and (6). Shape (...)."""
    check_shapes(log_prob, reward)
    return torch.logsumexp(_masked_log_prob(log_prob, reward, positive=True), dim=-1)


def success_probability(log_prob: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    """J_q(π_θ) = E_{o∼π_θ}[r*(q, o)], eq. (2) for one prompt. Shape (...)."""
    return log_success_probability(log_prob, reward).exp()


def log_odds(log_prob: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    """log(J / (1 − J)) = log Σ_{𝒪⁺} π − log Σ_{𝒪⁻} π, the quantity tracked by (16)–(17).

    Computed from the two regions separately, so it stays finite and accurate when J → 1
    (where ``log(1 − J)`` from J itself would round to −inf). Shape (...).
    """
    check_shapes(log_prob, reward)
    log_pos = torch.logsumexp(_masked_log_prob(log_prob, reward, positive=True), dim=-1)
    log_neg = torch.logsumexp(_masked_log_prob(log_prob, reward, positive=False), dim=-1)
    return log_pos - log_neg


def conditional_log_policy(log_prob: torch.Tensor, reward: torch.Tensor, positive: bool) -> torch.Tensor:
    """Eq. (7): log π⁺_θ(o | q) (``positive=True``, 7a) or log π⁻_θ(o | q) (7b). Shape (..., R).

    −inf outside the region; an empty region gives −inf everywhere (π± undefined).
    """
    check_shapes(log_prob, reward)
    masked = _masked_log_prob(log_prob, reward, positive)
    log_mass = torch.logsumexp(masked, dim=-1, keepdim=True)  # log J or log(1 − J)
    finite = torch.isfinite(log_mass)
    return torch.where(finite, masked - torch.where(finite, log_mass, 0.0), masked)


def _conditional_mean(log_cond: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Σ_o π±(o) values(o) with π± given in log space; zero when the region is empty."""
    weights = log_cond.exp()  # (..., R); exp(−inf) = 0 outside the region
    return torch.einsum("...r,...rd->...d", weights, values)


def conditional_score_means(
    log_prob: torch.Tensor, score: torch.Tensor, reward: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """g⁺_q = E_{π⁺}[∇ log π] and g⁻_q = E_{π⁻}[∇ log π], eq. (8). Each of shape (..., D)."""
    check_shapes(log_prob, reward, score)
    g_plus = _conditional_mean(conditional_log_policy(log_prob, reward, positive=True), score)
    g_minus = _conditional_mean(conditional_log_policy(log_prob, reward, positive=False), score)
    return g_plus, g_minus


def gradient_gap(log_prob: torch.Tensor, score: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    """The Gradient Gap g⁺_q − g⁻_q, eq. (9). Shape (..., D)."""
    g_plus, g_minus = conditional_score_means(log_prob, score, reward)
    return g_plus - g_minus


def policy_gradient(log_prob: torch.Tensor, score: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    """∇_θ J_q = E_{o∼π}[(r − J) ∇ log π(o)], eq. (4) with the exact baseline. Shape (..., D)."""
    check_shapes(log_prob, reward, score)
    success = success_probability(log_prob, reward).unsqueeze(-1)  # (..., 1)
    weights = log_prob.exp() * (reward - success)  # (..., R)
    return torch.einsum("...r,...rd->...d", weights, score)


def policy_gradient_from_gap(log_prob: torch.Tensor, score: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    """Right-hand side of identity (10): J (1 − J) (g⁺ − g⁻). Shape (..., D).

    J(1 − J) is formed as exp(log J + log(1 − J)) from the two regions, so it does not
    cancel to 0 when J is within rounding of 1.
    """
    log_pos = log_success_probability(log_prob, reward)
    log_neg = log_success_probability(log_prob, 1.0 - reward)
    variability = (log_pos + log_neg).exp().unsqueeze(-1)  # (..., 1)
    return variability * gradient_gap(log_prob, score, reward)


def gap_alignment(direction: torch.Tensor, gap: torch.Tensor) -> torch.Tensor:
    """Δμ_q(k) = w_k · (g⁺_q(k) − g⁻_q(k)), eq. (11). ``direction`` and ``gap``: (..., D) → (...).

    The paper's w_k has ‖w_k‖ ≤ 1; pass a normalised direction to get its Δμ.
    """
    if direction.shape[-1] != gap.shape[-1]:
        raise ValueError(f"direction {tuple(direction.shape)} and gap {tuple(gap.shape)}: parameter axes differ")
    return (direction * gap).sum(dim=-1)


def conditional_variances(
    log_prob: torch.Tensor, score: torch.Tensor, reward: torch.Tensor, direction: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Var⁺ = Var_{π⁺}[w · ∇ log π] and Var⁻ = Var_{π⁻}[w · ∇ log π], the terms of (17). Each (...).

    ``direction`` w has shape (..., D). An empty region has variance 0.
    """
    check_shapes(log_prob, reward, score)
    if direction.shape[-1] != score.shape[-1]:
        raise ValueError(f"direction {tuple(direction.shape)} and score {tuple(score.shape)}: parameter axes differ")
    projected = torch.einsum("...rd,...d->...r", score, direction).unsqueeze(-1)  # (..., R, 1)
    variances = []
    for positive in (True, False):
        log_cond = conditional_log_policy(log_prob, reward, positive)
        mean = _conditional_mean(log_cond, projected)  # (..., 1)
        centred = (projected - mean.unsqueeze(-2)) ** 2  # (..., R, 1)
        variances.append(_conditional_mean(log_cond, centred).squeeze(-1))
    return variances[0], variances[1]
