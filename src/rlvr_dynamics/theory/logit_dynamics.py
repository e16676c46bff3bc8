"""The companion paper's objects: Lemma 1 of Yao et al. and the time scales of the two-stage
dynamics, derived in the book's chapter *Two-stage dynamics and negative-only gradients*
(equation labels (TS1)–(TS7) refer to that chapter; only the paper's summary is available).

The policy is a softmax over V actions with free logits z ∈ R^V, π = softmax(z); e_a − π is
∇_z log π(a).
"""

from __future__ import annotations

import math

import torch

SCALES = ("group", "none")
"""Advantage scaling: divide by the group's unbiased reward std + ε (``"group"``, GRPO) or not
(``"none"``, Dr. GRPO). The names are TRL's ``scale_rewards`` values."""


def logit_update(logits: torch.Tensor, action: torch.Tensor, advantage: torch.Tensor, step_size) -> torch.Tensor:
    """Lemma 1, (TS1): one policy-gradient step on a sampled action a with advantage A moves every
    logit by Δz_v = η A (1[v = a] − π_v), i.e. Δz_a = η A (1 − π_a) and Δz_v = −η A π_v (v ≠ a).

    logits (..., V), action (...) long, advantage (...) → Δz (..., V).
    """
    probs = torch.softmax(logits, dim=-1)
    one_hot = torch.nn.functional.one_hot(action, logits.shape[-1]).to(logits.dtype)
    return torch.as_tensor(step_size, dtype=logits.dtype) * advantage.unsqueeze(-1) * (one_hot - probs)


def logit_update_autograd(logits: torch.Tensor, action: torch.Tensor, advantage: torch.Tensor,
                          step_size) -> torch.Tensor:
    """The same step taken by autograd: z' − z = −η ∇_z(−A log softmax(z)_a). Reference for (TS1)."""
    z = logits.detach().clone().requires_grad_(True)
    loss = -(advantage * torch.log_softmax(z, dim=-1).gather(-1, action.unsqueeze(-1)).squeeze(-1)).sum()
    (gradient,) = torch.autograd.grad(loss, z)
    return -torch.as_tensor(step_size, dtype=logits.dtype) * gradient


def first_order_probability_change(probs: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """(TS2): Δπ_v ≈ π_v (Δz_v − Σ_u π_u Δz_u), the linearisation of softmax. (..., V) → (..., V)."""
    return probs * (delta - (probs * delta).sum(-1, keepdim=True))


def exploration_rate(group_size: int, step_size: float, scale: str, reward_gap: float, high_actions: int) -> float:
    """(TS6): κ in du/dk ≈ κ π_O for u = log(π_O/π_H), in the exploration stage (π_L ≈ 0, π_O ≪ 1,
    H symmetric over ``high_actions``), to leading order in π_O:

    - ``"group"``: a group with one O and G − 1 H's gives O the advantage (G − 1)/√G and each H
      −1/√G, whatever r_O − r_H (std scaling is scale-free): κ = η (G − 1)/√G · (1 + 1/n_H);
    - ``"none"``: κ = η (1 − 1/G)(r_O − r_H)(1 + 1/n_H), from (TS5).
    """
    if scale not in SCALES:
        raise ValueError(f"scale = {scale!r} is unknown: allowed {', '.join(map(repr, SCALES))}")
    share = 1 + 1 / high_actions
    if scale == "group":
        return step_size * (group_size - 1) / math.sqrt(group_size) * share
    return step_size * (1 - 1 / group_size) * reward_gap * share


def exploration_onset_ratio(class_mass: torch.Tensor, high_actions: int) -> torch.Tensor:
    """(TS7): π_L / ((n_H + 1) π_O). In the rare-event regime of std-scaled GRPO (π_H ≈ 1) the
    optimal mass grows iff this ratio is below 1: d log π_O/dk ≈ η a_G [π_O (1 + 1/n_H) − π_L/n_H].
    class_mass (..., 3) → (...)."""
    return class_mass[..., 2] / ((high_actions + 1) * class_mass[..., 0])
