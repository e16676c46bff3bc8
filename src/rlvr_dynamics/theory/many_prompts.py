"""Many prompts under one shared update: Lemma 1 and Theorem 1 applied prompt by prompt (the book's
Propositions B10–B12; the paper's analysis is single-prompt).

Q prompts share the parameters θ ∈ R^D. Prompt q has its own log-odds f_q = log J_q/(1 − J_q), its own
Gradient Gap g⁺_q − g⁻_q = ∇f_q (eq. 10) and its own Lemma-1 constant C_q (Assumption 1 holds per prompt
with its own G_o, L_o). A shared step θ ← θ + η w, ‖w‖ = 1, has one alignment per prompt,

    Δμ_q = ⟨w, g⁺_q − g⁻_q⟩,                                                  (eq. 11 per prompt)

and Lemma 1 bounds each prompt's log-odds change by η Δμ_q ± C_q η². Shapes: alignments, constants and
values are (..., Q) and broadcast; parameter vectors carry a last axis D. Log space where 0 or 1 would
cancel (sigmoid of log-odds, never 1 − J formed from J ≈ 1).
"""

from __future__ import annotations

import torch

from rlvr_dynamics.theory.bounds import SCORE_BOUND, SMOOTHNESS

CONSTANTS = ("sharp", "paper")
"""Which Lemma-1 constant C = C(L_o, G_o): ``"sharp"`` — L_o + G_o²/2, the book's proof of Lemma 1
(the Hessian terms are each ≤ L_o, the variance difference ≤ G_o²); ``"paper"`` — L_o + 8G_o², eq. (16)."""


def prompt_alignments(direction: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
    """B10: Δμ_q = ⟨w/‖w‖, g⁺_q − g⁻_q⟩ for every prompt, eq. (11) per prompt.   (..., D), (..., Q, D) → (..., Q)

    ``direction`` is the update u (any length; it is normalised, so Δμ_q is the paper's alignment of the
    generic step (3) with η = ‖u‖); a zero update has alignment 0 with every prompt."""
    if direction.shape[-1] != gaps.shape[-1]:
        raise ValueError(f"direction {tuple(direction.shape)} and gaps {tuple(gaps.shape)}: parameter axes differ")
    norm = torch.linalg.vector_norm(direction, dim=-1, keepdim=True)  # (..., 1)
    unit = torch.where(norm > 0, direction / norm.clamp_min(torch.finfo(direction.dtype).tiny), 0.0)
    return torch.einsum("...d,...qd->...q", unit, gaps)


def lemma1_constant(smoothness: torch.Tensor | float, score_bound: torch.Tensor | float,
                    constant: str = "sharp") -> torch.Tensor:
    """B10: C_q of Lemma 1, eq. (16), from a prompt's L_o and G_o (:data:`CONSTANTS`). Broadcasts."""
    smoothness, score_bound = torch.as_tensor(smoothness), torch.as_tensor(score_bound)
    if constant == "sharp":
        return smoothness + score_bound**2 / 2
    if constant == "paper":
        return smoothness + 8 * score_bound**2
    raise ValueError(f"constant = {constant!r} is unknown: allowed {', '.join(map(repr, CONSTANTS))}")


def prompted_chain_regularity(feature_norm: torch.Tensor, max_length: torch.Tensor | int
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Assumption 1, eqs. (12)–(13), for a prompt of the prompted bigram chain: (G_o, L_o).   (...) → (...), (...)

    A response draws its first token from the row xᵀU (score x ⊗ (e − π): norm ≤ √2‖x‖, Hessian norm
    ≤ ‖x‖²/2) and at most T − 2 further free tokens from rows of W (each ≤ √2 and ≤ ½); position T forces
    EOS and contributes nothing. The triangle inequality over positions gives G_o = √2(‖x‖ + T − 2) and
    L_o = (‖x‖² + T − 2)/2; at T = 2 they are the bandit's √2‖x‖ and ‖x‖²/2."""
    free = torch.as_tensor(max_length, dtype=feature_norm.dtype) - 2
    if bool((free < 0).any()):
        raise ValueError("max_length must be ≥ 2 (one token and EOS)")
    score = SCORE_BOUND * (feature_norm + free)
    smoothness = SMOOTHNESS * (feature_norm**2 + free)
    return score, smoothness


def log_odds_change_interval(alignments: torch.Tensor, step: torch.Tensor, constants: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """B10: the interval [ηΔμ_q − C_q η², ηΔμ_q + C_q η²] that Lemma 1 puts around every prompt's change
    f_q(θ + ηw) − f_q(θ) under one shared step.   (..., Q), (...), (..., Q) → (..., Q), (..., Q)"""
    step = torch.as_tensor(step, dtype=alignments.dtype).unsqueeze(-1)
    first, second = step * alignments, constants * step**2
    return first - second, first + second


def every_prompt_improves_below(alignments: torch.Tensor, constants: torch.Tensor) -> torch.Tensor:
    """B10(a): min_q Δμ_q / C_q — every step 0 < η below it raises every prompt's log-odds (Lemma 1);
    0 when some prompt has Δμ_q ≤ 0 (no positive step is guaranteed for it).   (..., Q) → (...)"""
    return (alignments.clamp_min(0) / constants).amin(-1)


def shared_safe_step(alignments: torch.Tensor, constants: torch.Tensor) -> torch.Tensor:
    """B10(b): η_all = min_q [Δμ_q]₊ / (2 C_q), eq. (15a) for every prompt at once: each prompt then gains at
    least η Δμ_q / 2 in log-odds.   (..., Q) → (...)"""
    return every_prompt_improves_below(alignments, constants) / 2


def safe_step_spread(alignments: torch.Tensor, constants: torch.Tensor) -> torch.Tensor:
    """B10(c): η_all / mean_q η_q with η_q = [Δμ_q]₊/(2C_q) the prompt's own (15a) step: min r / mean r of
    the ratios r_q = [Δμ_q]₊/C_q, ≤ 1 with equality iff every prompt has the same ratio; it falls as the
    ratios spread and is 0 once one prompt is not aligned. NaN where no prompt is aligned.   (..., Q) → (...)"""
    ratios = alignments.clamp_min(0) / constants
    return ratios.amin(-1) / ratios.mean(-1)


def weighted_alignment_identity(weights: torch.Tensor, gaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """B11: for an update u = Σ_q c_q (g⁺_q − g⁻_q), both sides of Σ_q c_q Δμ_q(u) = ‖u‖.
    (..., Q), (..., Q, D) → left (...), right (...).

    Dr. GRPO and REINFORCE weigh prompt q by c_q ∝ J_q(1 − J_q) (∇J_q = J_q(1 − J_q)∇f_q, eq. 10), so the
    batch improves to first order (Σ c_q Δμ_q > 0) even when some Δμ_q < 0."""
    update = torch.einsum("...q,...qd->...d", weights, gaps)
    left = (weights * prompt_alignments(update, gaps)).sum(-1)
    return left, torch.linalg.vector_norm(update, dim=-1)


def opposed_prompts(weights: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
    """B11: which prompts the update u = Σ_p c_p (g⁺_p − g⁻_p) opposes, by the conflict criterion
    ⟨c_q gap_q, Σ_{p≠q} c_p gap_p⟩ < −‖c_q gap_q‖² (equivalently Δμ_q(u) < 0 for c_q > 0).   (..., Q) bool"""
    parts = weights.unsqueeze(-1) * gaps  # (..., Q, D)
    others = parts.sum(-2, keepdim=True) - parts
    return (parts * others).sum(-1) < -(parts * parts).sum(-1)


def stuck_log_odds_ceiling(initial_log_odds: torch.Tensor, steps: torch.Tensor, alignments: torch.Tensor,
                           constants: torch.Tensor) -> torch.Tensor:
    """B12 (Theorem 1(a) per prompt): f_q(K) ≤ f_q(0) + Σ_{k<K} η_k[Δμ_q(k)]₊ + C_q Σ_{k<K} η_k² at every K.
    ``steps`` (K, ...) the shared η_k, ``alignments`` (K, ..., Q); returns the ceiling at K = 0 … K,
    (K + 1, ..., Q). A prompt whose alignment stayed ≤ 0 keeps only f_q(0) + C_q Σ η_k²."""
    gains = steps.unsqueeze(-1) * alignments.clamp_min(0) + constants * steps.unsqueeze(-1) ** 2  # (K, ..., Q)
    start = torch.zeros_like(gains[:1])
    return initial_log_odds + torch.cat([start, gains]).cumsum(0)


def batch_success_ceiling(log_odds_ceiling: torch.Tensor, stuck: torch.Tensor) -> torch.Tensor:
    """B12: the batch success (1/Q) Σ_q J_q(K) ≤ (1/Q)[Σ_{q stuck} sigmoid(ceiling_q) + #others]: the
    prompts whose alignment stayed ≤ 0 hold it strictly below 1 whatever the others do.   (..., Q) → (...)"""
    return torch.where(stuck, torch.sigmoid(log_odds_ceiling), 1.0).mean(-1)
