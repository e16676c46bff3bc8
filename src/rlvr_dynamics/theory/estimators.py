"""Update directions of RLVR algorithms, written as the generic step (3): θ ← θ + η_k w_k.

An algorithm with learning rate α and gradient estimate g moves by α g, i.e. direction
w_k = g / ‖g‖ and effective step η_k = α ‖g‖ (Section 2). Variants (string options):

- ``"reinforce"``: eq. (4), advantage r − J with the exact baseline J (Williams, 1992).
- ``"grpo"``: eq. (5), advantage (r − J)/σ(q) and per-response length normalization 1/|o|
  (Shao et al., 2024). Sampled: group mean and unbiased group std (+ ε), as in GRPO.
- ``"dr_grpo"``: group-mean advantage r_i − r̄, no std and no length normalization
  (Liu et al., 2025). In expectation over a group of G: (1 − 1/G) ∇J (derived in the book).

Responses are given as in :mod:`rlvr_dynamics.theory.gaps`: ``log_prob`` (..., R), ``score``
(..., R, D), ``reward`` (..., R), plus ``lengths`` (..., R) = |o| ≥ 1.
"""

from __future__ import annotations

import torch

from rlvr_dynamics.theory.gaps import check_shapes, log_success_probability, policy_gradient

VARIANTS = ("reinforce", "grpo", "dr_grpo")
GRPO_STD_EPSILON = 1e-4  # TRL's default epsilon in the std normalization


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant = {variant!r} is unknown: allowed {VARIANTS}")


def expected_direction(
    log_prob: torch.Tensor,
    score: torch.Tensor,
    reward: torch.Tensor,
    lengths: torch.Tensor,
    variant: str,
    group_size: int | None = None,
) -> torch.Tensor:
    """Eqs. (4), (5) and Dr. GRPO: the population update g(π) of each variant (unnormalised). Shape (..., D).

    - reinforce: Σ_o π(o) (r − J) ∇log π(o) = ∇J, eq. (4);
    - grpo: Σ_o π(o) (r − J)/σ · ∇log π(o)/|o| with σ = √(J(1−J)), eq. (5); zero when σ = 0;
    - dr_grpo: (1 − 1/G) ∇J, the expectation of the group-demeaned estimator with G ≥ 2.
    """
    check_variant(variant)
    check_shapes(log_prob, reward, score)
    if lengths.shape != log_prob.shape:
        raise ValueError(f"lengths {tuple(lengths.shape)} and log_prob {tuple(log_prob.shape)} differ")
    if variant == "reinforce":
        return policy_gradient(log_prob, score, reward)
    if variant == "dr_grpo":
        if group_size is None or group_size < 2:
            raise ValueError(f"group_size = {group_size!r}: dr_grpo needs a group of at least 2")
        return (1.0 - 1.0 / group_size) * policy_gradient(log_prob, score, reward)
    log_pos = log_success_probability(log_prob, reward)
    log_neg = log_success_probability(log_prob, 1.0 - reward)
    success = log_pos.exp().unsqueeze(-1)  # (..., 1)
    log_sigma = 0.5 * (log_pos + log_neg)  # σ = √(J (1 − J)), in log space
    inverse_sigma = torch.where(torch.isfinite(log_sigma), (-log_sigma).exp(), 0.0).unsqueeze(-1)
    weights = log_prob.exp() * (reward - success) * inverse_sigma / lengths.to(log_prob.dtype)  # (..., R)
    return torch.einsum("...r,...rd->...d", weights, score)


def group_advantages(
    rewards: torch.Tensor, variant: str, success_probability: torch.Tensor | None = None
) -> torch.Tensor:
    """Advantages of a sampled group. rewards (..., G) → (..., G).

    reinforce: r_i − J (``success_probability`` J of shape (...) required); grpo: (r_i − r̄)/(s + ε)
    with s the unbiased group std; dr_grpo: r_i − r̄. A group whose rewards are all equal gets
    zero advantage under grpo and dr_grpo (no update), as in the algorithms.
    """
    check_variant(variant)
    if variant == "reinforce":
        if success_probability is None:
            raise ValueError("reinforce advantages need the exact success_probability J")
        if success_probability.shape != rewards.shape[:-1]:
            raise ValueError(f"success_probability {tuple(success_probability.shape)} must have the group's "
                             f"batch shape {tuple(rewards.shape[:-1])}")
        return rewards - success_probability.unsqueeze(-1)
    if rewards.shape[-1] < 2:
        raise ValueError(f"group size {rewards.shape[-1]}: {variant} needs at least 2 samples per group")
    centred = rewards - rewards.mean(-1, keepdim=True)
    if variant == "dr_grpo":
        return centred
    return centred / (rewards.std(-1, keepdim=True) + GRPO_STD_EPSILON)


def sampled_direction(
    score: torch.Tensor,
    rewards: torch.Tensor,
    lengths: torch.Tensor,
    variant: str,
    success_probability: torch.Tensor | None = None,
) -> torch.Tensor:
    """The one-step, unclipped estimate from one group: (1/G) Σ_i A_i ∇log π(o_i) (/|o_i| for grpo).

    score (..., G, D), rewards (..., G), lengths (..., G) → (..., D).
    """
    check_shapes(rewards, lengths, score)
    advantages = group_advantages(rewards, variant, success_probability)  # (..., G)
    if variant == "grpo":
        advantages = advantages / lengths.to(advantages.dtype)
    return torch.einsum("...g,...gd->...d", advantages, score) / rewards.shape[-1]


def normalize_direction(update: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (3): split an update g into the unit direction w = g/‖g‖ and its norm ‖g‖ (so η_k = α‖g‖).

    update (..., D) → w (..., D), norm (...); w = 0 where g = 0.
    """
    norm = torch.linalg.vector_norm(update, dim=-1)
    safe = torch.where(norm > 0, norm, 1.0).unsqueeze(-1)
    return torch.where(norm.unsqueeze(-1) > 0, update / safe, 0.0), norm
