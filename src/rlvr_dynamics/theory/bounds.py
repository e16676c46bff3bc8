"""Every bound of the paper as a pure function: Lemma 1's constant, Theorem 1 (15a)/(15b) and its
part (a), Corollary 1, Theorem 2's window, and the token-level (18a), (19)–(22) of Section 4, with
the regularity constants of Assumptions 1–2.

Conventions: values J ∈ [0, 1], alignments Δμ, steps η and cumulative alignments M ≥ 0 are
tensors (or numbers) that broadcast against each other; everything is computed in log space where
0 or 1 would otherwise cancel (1/(1 − J) as exp(−log(1 − J)), J(K) as sigmoid of the log-odds).
"""

from __future__ import annotations

import math

import torch

from rlvr_dynamics.theory.estimators import check_variant

SCORE_BOUND = math.sqrt(2.0)
"""G_o (Assumption 1(a), eq. 12) and G_p (Assumption 2) of any softmax row: the score of outcome v is
e_v − π and ‖e_v − π‖² = (1 − π_v)² + Σ_{u≠v} π_u² ≤ 2, approached as π concentrates on u ≠ v.
It holds for the three-response softmax (logits θ = z) and per token for the bigram chain."""
SMOOTHNESS = 0.5
"""L_o (Assumption 1(b), eq. 13) and L_p of a softmax row: ∇²_θ log π(v) = −(diag π − ππᵀ), whose
norm is at most ½ (Gershgorin: λ_max ≤ max_v 2π_v(1 − π_v) ≤ ½)."""
CURVATURE = SMOOTHNESS + SCORE_BOUND**2
"""L_o + G_o², the scale of Theorem 2's window."""
LEMMA_CONSTANT = SMOOTHNESS + 8 * SCORE_BOUND**2
"""L_o + 8G_o², the second-order constant of Lemma 1, eq. (16)."""


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


def lemma1_remainder_bound(step: torch.Tensor, smoothness: torch.Tensor | float = SMOOTHNESS,
                           score_bound: torch.Tensor | float = SCORE_BOUND) -> torch.Tensor:
    """Lemma 1, inequality (16): |f(θ_{k+1}) − f(θ_k) − Δμ_k η_k| ≤ (L_o + 8G_o²) η_k², the bound on
    the second-order remainder of one step of the log-odds f = log J/(1 − J). Broadcasts."""
    return (smoothness + 8 * score_bound**2) * step**2


def corollary1_step(alignment: float, smoothness: float = SMOOTHNESS, score_bound: float = SCORE_BOUND) -> float:
    """Corollary 1's largest constant step: min{Δμ/(2(L_o + 8G_o²)), 1/(2√L_o)} for a uniform gap Δμ."""
    return min(alignment / (2 * (smoothness + 8 * score_bound**2)), 1 / (2 * math.sqrt(smoothness)))


def corollary1_log_failure_bound(initial_log_odds: torch.Tensor, alignment: float, step: float,
                                 steps: torch.Tensor) -> torch.Tensor:
    """Corollary 1 in log space: log(1 − J(K)) ≤ log((1 − J₀)/J₀) − ½ Δμ η K.

    ``initial_log_odds`` is logit J₀ (so log((1 − J₀)/J₀) = −logit J₀ stays finite as J₀ → 1);
    ``steps`` K broadcasts against it, e.g. (K + 1, 1) against (B,) → (K + 1, B).
    """
    return -initial_log_odds - 0.5 * alignment * step * steps


def theorem2_window(alignment: float) -> tuple[float, float]:
    """Theorem 2's step window [60Δμ/(L_o + G_o²), 1/(2√(L_o + G_o²))] on the three-response softmax."""
    return 60 * alignment / CURVATURE, 1 / (2 * math.sqrt(CURVATURE))


def theorem3_step_bound(alignment: torch.Tensor, log_failure: torch.Tensor, max_length: int, psi1: torch.Tensor,
                        smoothness: float = SMOOTHNESS, score_bound: float = SCORE_BOUND) -> torch.Tensor:
    """Eq. (18a): min{ [Δμ]₊/2 / (L_p T_∞ + G_p² min{T_ψ₁/(1 − J), 8T_∞²}), 1/(2√(L_p T_∞ + G_p² T_ψ₁)) }.

    ``log_failure`` is log(1 − J), so 1/(1 − J) never overflows for J → 1. All tensors broadcast.
    """
    length_term = torch.minimum(psi1 * torch.exp(-log_failure), torch.full_like(psi1, 8.0 * max_length**2))
    first = alignment.clamp_min(0) / 2 / (smoothness * max_length + score_bound**2 * length_term)
    second = 1 / (2 * torch.sqrt(smoothness * max_length + score_bound**2 * psi1))
    return torch.minimum(first, second)


def theorem4_window(alignment: float, max_length: int, smoothness: float = SMOOTHNESS,
                    score_bound: float = SCORE_BOUND) -> tuple[float, float]:
    """Eq. (19): the constant steps [120Δμ/((L_p + G_p²)T_∞), 1/(2√((L_p + G_p²)T_∞))] of Theorem 4."""
    scale = (smoothness + score_bound**2) * max_length
    return 120 * alignment / scale, 1 / (2 * math.sqrt(scale))


def theorem4_largest_alignment(max_length: int, smoothness: float = SMOOTHNESS,
                               score_bound: float = SCORE_BOUND) -> float:
    """Theorem 4's hypothesis Δμ ≤ √((L_p + G_p²)T_∞)/240."""
    return math.sqrt((smoothness + score_bound**2) * max_length) / 240


def log_odds_change_bound(alignment: torch.Tensor, step: torch.Tensor, log_failure: torch.Tensor, max_length: int,
                          psi1: torch.Tensor, smoothness: float = SMOOTHNESS,
                          score_bound: float = SCORE_BOUND) -> torch.Tensor:
    """Eq. (22): the lower bound Δμη − (L_p T_∞ + G_p² T_ψ₁/(1 − J)) η² on the one-step log-odds change."""
    return alignment * step - (smoothness * max_length + score_bound**2 * psi1 * torch.exp(-log_failure)) * step**2


def effective_step(variant: str, alignment: torch.Tensor, value: torch.Tensor, psi1: torch.Tensor,
                   learning_rate: float = 1.0) -> torch.Tensor:
    """Eq. (20), the paper's scaling of η_k = α‖g‖: GRPO α Δμ √(J(1 − J))/T_ψ₁; Dr. GRPO and
    REINFORCE α Δμ J(1 − J)."""
    check_variant(variant)
    if variant == "grpo":
        return learning_rate * alignment * torch.sqrt(value * (1 - value)) / psi1
    return learning_rate * alignment * value * (1 - value)


def safe_step(alignment: torch.Tensor, value: torch.Tensor, psi1: torch.Tensor) -> torch.Tensor:
    """Eq. (21), the scaling of (18a) when L_p ≪ G_p²: Δμ (1 − J)/T_ψ₁ (no constants)."""
    return alignment * (1 - value) / psi1
