"""Trajectory-level results of Section 3 as pure functions: log-odds, the bounds of Theorem 1
and the regularity constants of Assumption 1 for the linear-softmax bandit.

Conventions: values J ∈ [0, 1] and cumulative alignments M ≥ 0 broadcast against each other;
everything is computed in log space where 0 or 1 would otherwise cancel.
"""

from __future__ import annotations

import torch

__all__ = [
    "logit",
    "convergence_lower_bound",
    "stagnation_upper_bound",
    "convergence_step_bound",
    "bandit_score_bound",
    "bandit_smoothness_bound",
]


def logit(value: torch.Tensor) -> torch.Tensor:
    """log(J / (1 − J)), the quantity whose change (16) controls; ±inf at 0 and 1."""
    return torch.log(value) - torch.log1p(-value)


def convergence_lower_bound(initial_value: torch.Tensor, cumulative_alignment: torch.Tensor) -> torch.Tensor:
    """Eq. (15b) of Theorem 1(b): J(K) ≥ J₀ / (J₀ + (1 − J₀) exp(−M(K)/2)).

    Written as sigmoid(logit J₀ + M/2), the same number without overflow for large M.
    """
    return torch.sigmoid(logit(initial_value) + cumulative_alignment / 2)


def stagnation_upper_bound(initial_value: torch.Tensor, c0: torch.Tensor | float, c0_prime: torch.Tensor | float
                           ) -> torch.Tensor:
    """Theorem 1(a), in the book's reading: J(k) ≤ J₀ / (J₀ + e^{−(C₀ + C₀′)}(1 − J₀)).

    With M(K) ≤ C₀ and Σ η²(L_o + 8G_o²) ≤ C₀′, summing (16) bounds the log-odds *gain* by
    C₀ + C₀′, i.e. J(k) ≤ sigmoid(logit J₀ + C₀ + C₀′). The extracted paper text has
    e^{+(C₀ + C₀′)}, which would put J(k) below J₀ (see the introduction's note on readings).
    """
    return torch.sigmoid(logit(initial_value) + torch.as_tensor(c0) + torch.as_tensor(c0_prime))


def convergence_step_bound(alignment: torch.Tensor, smoothness: torch.Tensor | float,
                           score_bound: torch.Tensor | float) -> torch.Tensor:
    """Eq. (15a): the largest step Theorem 1(b) allows, [Δμ]₊ / (2(L_o + 8 G_o²))."""
    return alignment.clamp_min(0) / (2 * (smoothness + 8 * torch.as_tensor(score_bound) ** 2))


def bandit_score_bound(context_norm: torch.Tensor) -> torch.Tensor:
    """Assumption 1(a), eq. (12), for linear-softmax logits at context x: G_o = √2 ‖x‖.

    The score is x ⊗ (e_y − π), and ‖e_y − π‖² = (1 − π_y)² + Σ_{z≠y} π_z² ≤ 2(1 − π_y)² ≤ 2;
    the bound is approached as π concentrates on an arm z ≠ y, so it is the supremum.
    """
    return 2**0.5 * context_norm


def bandit_smoothness_bound(context_norm: torch.Tensor) -> torch.Tensor:
    """Assumption 1(b), eq. (13), for linear-softmax logits at context x: L_o = ‖x‖² / 2.

    ∇²_θ log π(y | x) = −(x xᵀ) ⊗ (diag π − π πᵀ), whose operator norm is ‖x‖² λ_max(diag π − ππᵀ);
    Gershgorin gives λ_max ≤ max_y 2π_y(1 − π_y) ≤ 1/2. The score's Lipschitz constant is the
    supremum of that norm over θ.
    """
    return context_norm**2 / 2
