"""Trajectory-level instances on a three-response softmax, batched over runs.

**Policy.** One prompt, responses {a, b, c}: a is correct, b and c are wrong; logits θ ∈ R³ and
π = softmax(θ). The score of response o is e_o − π, so Assumption 1 holds with
G_o = √2 (eq. 12) and L_o = 1/2 (eq. 13): :data:`~rlvr_dynamics.theory.bounds.SCORE_BOUND`,
:data:`~rlvr_dynamics.theory.bounds.SMOOTHNESS`.

**Quantities.** g⁺ − g⁻ = e_a − π⁻ (one correct response, π⁺ = e_a), the log-odds
f = θ_a − log(e^{θ_b} + e^{θ_c}), and along a unit direction w the conditional variances of
(17): Var⁺ = 0 (one correct response) and Var⁻ = Var_{o∼π⁻}[w_o]. For this log-linear family the
exact expansion is f(θ + ηw) − f(θ) = Δμη + ½(Var⁺ − Var⁻)η² + O(η³).

**Direction rules** (:data:`DIRECTION_RULES`), all unit vectors orthogonal to the shift 1 = (1, 1, 1)
(which does not change π):

- ``"gap"``: w = (g⁺ − g⁻)/‖g⁺ − g⁻‖, so Δμ = ‖g⁺ − g⁻‖ (exact REINFORCE / Dr. GRPO direction);
- ``"overshoot"``: the Theorem-2 construction — w = cos φ · ĝ + sin φ · n with cos φ = Δμ/‖g⁺ − g⁻‖
  (alignment exactly the target Δμ > 0) and n the unit vector orthogonal to 1 and to the gap,
  oriented to raise the *less* likely wrong response; it moves mass between b and c, which is
  pure Var⁻;
- ``"benign"``: the same alignment, n oriented the other way (raising the more likely wrong
  response, which shrinks Var⁻).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rlvr_dynamics.engines.records import Record
from rlvr_dynamics.theory import DTYPE, bounds
from rlvr_dynamics.theory.bounds import SCORE_BOUND, SMOOTHNESS

DIRECTION_RULES = ("gap", "overshoot", "benign")
ONES = torch.ones(3, dtype=DTYPE) / math.sqrt(3.0)


def instance_logits(initial_value, n: int | None = None) -> torch.Tensor:
    """The instance's initial logits (ℓ_a, 0, 0.3) with ℓ_a set so that J₀ = ``initial_value``.

    The wrong responses start unequal (b is the less likely), so the rule's orientation is defined.
    initial_value: a number or (B,) → (B, 3).
    """
    values = torch.as_tensor(initial_value, dtype=DTYPE).reshape(-1)
    if n is not None:
        values = values.expand(n)
    wrong = torch.tensor([0.0, 0.3], dtype=DTYPE)
    top = torch.logit(values) + torch.logsumexp(wrong, 0)
    return torch.cat([top[:, None], wrong.expand(len(values), 2)], dim=1)


def log_odds(logits: torch.Tensor) -> torch.Tensor:
    """f = log J/(1 − J) = θ_a − logsumexp(θ_b, θ_c). logits (..., 3) → (...)."""
    return logits[..., 0] - torch.logsumexp(logits[..., 1:], dim=-1)


def value(logits: torch.Tensor) -> torch.Tensor:
    """J = π_a = sigmoid(f). (..., 3) → (...)."""
    return torch.sigmoid(log_odds(logits))


def gradient_gap(logits: torch.Tensor) -> torch.Tensor:
    """g⁺ − g⁻ = e_a − π⁻ (eq. 9 for one correct response). (..., 3) → (..., 3); it sums to 0."""
    wrong = torch.softmax(logits[..., 1:], dim=-1)  # π⁻ over (b, c)
    return torch.cat([torch.ones_like(logits[..., :1]), -wrong], dim=-1)


def negative_variance(logits: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Var⁻ = Var_{o∼π⁻}[w · ∇log π(o)] = Var_{o∼π⁻}[w_o] (the π term is a constant shift). (...)."""
    wrong = torch.softmax(logits[..., 1:], dim=-1)
    w = direction[..., 1:]
    mean = (wrong * w).sum(-1, keepdim=True)
    return (wrong * (w - mean) ** 2).sum(-1)


def direction(logits: torch.Tensor, rule: str, alignment: torch.Tensor | None = None) -> torch.Tensor:
    """Theorem 2's construction (rule ``"overshoot"``) and the other rules: the unit update direction
    w_k of a rule (module docstring). logits (..., 3); alignment (...)
    is the target Δμ for ``"overshoot"`` and ``"benign"`` (0 < Δμ ≤ ‖g⁺ − g⁻‖) → (..., 3)."""
    if rule not in DIRECTION_RULES:
        raise ValueError(
            f"parameter 'direction' = {rule!r} is unknown: allowed {', '.join(map(repr, DIRECTION_RULES))}")
    gap = gradient_gap(logits)
    gap_norm = torch.linalg.vector_norm(gap, dim=-1, keepdim=True)
    unit_gap = gap / gap_norm
    if rule == "gap":
        return unit_gap
    if alignment is None:
        raise ValueError(f"direction rule {rule!r} needs the target 'alignment' Δμ")
    cosine = (alignment.unsqueeze(-1) / gap_norm).clamp(max=1.0)
    normal = torch.linalg.cross(ONES.to(logits).expand_as(unit_gap), unit_gap, dim=-1)  # ⊥ 1 and ⊥ gap, unit
    wrong = torch.softmax(logits[..., 1:], dim=-1)
    raise_minority = torch.where(wrong[..., :1] <= wrong[..., 1:], 1.0, -1.0)  # +1: b is the less likely
    orientation = torch.sign(normal[..., 1:2] - normal[..., 2:3]) * raise_minority
    orientation = torch.where(orientation == 0, torch.ones_like(orientation), orientation)
    if rule == "benign":
        orientation = -orientation
    return cosine * unit_gap + torch.sqrt(1 - cosine**2) * orientation * normal


@dataclass(frozen=True)
class Trajectories(Record):
    """Per step (K + 1 or K, B): values, log-odds, alignment Δμ_k, steps η_k, Var⁻ along w_k,
    and the one-step change of the log-odds (K, B)."""

    value: torch.Tensor
    log_odds: torch.Tensor
    alignment: torch.Tensor
    step: torch.Tensor
    negative_variance: torch.Tensor
    log_odds_change: torch.Tensor


def step_size_from_rule(rule: str, base: torch.Tensor, alignment: torch.Tensor, k: int) -> torch.Tensor:
    """``"constant"``: η_k = base; ``"theorem1b"``: η_k = [Δμ_k]₊ / (2(L_o + 8G_o²)) (eq. 15a);
    ``"decaying"``: η_k = base · 0.9^k (Σ η² < ∞)."""
    if rule == "constant":
        return base
    if rule == "theorem1b":
        return bounds.convergence_step_bound(alignment, SMOOTHNESS, SCORE_BOUND)
    if rule == "decaying":
        return base * 0.9**k
    raise ValueError(f"parameter 'step_rule' = {rule!r} is unknown: allowed 'constant', 'theorem1b', 'decaying'")


def simulate(initial_logits: torch.Tensor, steps: int, rule: str, step_size: torch.Tensor,
             alignment: torch.Tensor | None = None, step_rule: str = "constant",
             alignment_decay: float = 1.0) -> Trajectories:
    """θ_{k+1} = θ_k + η_k w_k for B runs at once (eq. 3).

    initial_logits (B, 3); step_size (B,) the base step; alignment (B,) the target Δμ of the
    ``overshoot``/``benign`` rules, multiplied by ``alignment_decay``^k at step k.
    """
    if steps < 1:
        raise ValueError(f"parameter 'steps' = {steps} must be ≥ 1")
    logits = initial_logits.clone()
    values, odds, aligns, etas, variances, changes = [value(logits)], [log_odds(logits)], [], [], [], []
    for k in range(steps):
        target = None if alignment is None else alignment * alignment_decay**k
        w = direction(logits, rule, target)
        delta_mu = (w * gradient_gap(logits)).sum(-1)
        eta = step_size_from_rule(step_rule, step_size, delta_mu, k)
        variances.append(negative_variance(logits, w))
        logits = logits + eta.unsqueeze(-1) * w
        aligns.append(delta_mu)
        etas.append(eta)
        values.append(value(logits))
        odds.append(log_odds(logits))
        changes.append(odds[-1] - odds[-2])
    stack = torch.stack
    return Trajectories(stack(values), stack(odds), stack(aligns), stack(etas), stack(variances), stack(changes))
