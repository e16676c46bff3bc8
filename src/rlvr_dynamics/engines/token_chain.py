"""The token-level instances of Section 4 and their exact runs, batched over instances.

**Policy.** The shared-parameter bigram chain ``TokenPolicy(V, T, position_bias=False)``: the
logits at every position are the row W[o_{t−1}] of one table, token 0 is EOS and position T
forces it. Its token score is e_{o_t} − π(· | o_{t−1}) in the row of o_{t−1}, so Assumption 2
holds with G_p = √2 and L_p = ½ (:data:`~rlvr_dynamics.theory.bounds.SCORE_BOUND`,
:data:`~rlvr_dynamics.theory.bounds.SMOOTHNESS`), and Assumption 3 with T_∞ = T.

**Instances** (:func:`make_instances`): entries of W drawn N(0, 1) from the instance's seed, the
same draw at every T; the EOS column set so that every token row stops with probability 2/T (so
E|o| ≈ 0.43 T grows with T) and the BOS row (almost) never does; the answer token's column shifted
so that J₀ hits a target exactly.

**Directions** (:data:`TOKEN_DIRECTION_RULES`, unit vectors w_k of the generic step θ ← θ + η_k w_k):

- ``"gap"``: w = ∇f/‖∇f‖ with f the log-odds, i.e. the exact REINFORCE / Dr. GRPO direction
  (Δμ = ‖g⁺ − g⁻‖);
- ``"overshoot"``: the Theorem-4 adversary, w = cos φ·ĝ + sin φ·n with cos φ = Δμ/‖∇f‖ (alignment
  exactly the target Δμ) and n the unit eigenvector of the log-odds Hessian, restricted to ĝ⊥,
  with the most negative eigenvalue; of ±n the sign that lowers J more at the step taken;
- ``"grpo"``: the exact population GRPO update (5), normalized.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from rlvr_dynamics.engines.records import Record
from rlvr_dynamics.theory import DTYPE, estimators, markov
from rlvr_dynamics.theory.bounds import theorem3_step_bound
from rlvr_dynamics.theory.policies import TokenPolicy

TOKEN_DIRECTION_RULES = ("gap", "overshoot", "grpo")
STEP_RULES = ("constant", "theorem3")
EMPTY_LOGIT = -30.0  # EOS logit after BOS at initialisation: an empty response has probability ≈ 1e-13


def make_instances(vocab_size: int, max_length: int, verifier_kind: str, initial_value: float | torch.Tensor,
                   seeds: list[int], device: torch.device | str = "cpu", answer_token: int = 1,
                   iterations: int = 80) -> tuple[TokenPolicy, markov.Verifier, torch.Tensor]:
    """One instance per seed (module docstring), calibrated to J₀ = ``initial_value`` (a number or
    one value per seed). Returns the policy, the verifier and θ₀ (B, D) in float64."""
    if max_length < 2:
        raise ValueError(f"max_length = {max_length} must be ≥ 2 (one token and EOS)")
    policy = TokenPolicy(vocab_size, max_length, position_bias=False)
    verifier = markov.Verifier(verifier_kind, vocab_size, answer_token)
    target = torch.as_tensor(initial_value, dtype=DTYPE, device=device).expand(len(seeds))
    if not bool(((target > 0) & (target < 1)).all()):
        raise ValueError(f"initial_value = {initial_value!r} must lie in (0, 1)")
    base = torch.stack([
        torch.randn(vocab_size + 1, vocab_size, generator=torch.Generator().manual_seed(int(seed)), dtype=DTYPE)
        for seed in seeds
    ]).to(device)  # (B, V + 1, V), the same draw at every T
    stop = min(2.0 / max_length, 0.5)  # at T = 2 the token rows never get to stop: position 2 forces EOS

    def build(shift: torch.Tensor) -> torch.Tensor:
        table = base.clone()
        table[..., answer_token] += shift.unsqueeze(-1)
        table[..., 0] = math.log(stop / (1 - stop)) + torch.logsumexp(table[..., 1:], dim=-1)  # P(EOS | p) = 2/T
        table[..., vocab_size, 0] = EMPTY_LOGIT  # BOS row: no empty responses, so every J < 1 is reachable
        return table.flatten(-2)

    low = torch.full_like(target, -40.0)
    high = torch.full_like(target, 40.0)
    goal = torch.logit(target)
    for _ in range(iterations):  # J grows with the answer column's shift: bisection
        middle = (low + high) / 2
        below = markov.log_odds(policy, build(middle), verifier) < goal
        low, high = torch.where(below, middle, low), torch.where(below, high, middle)
    theta = build((low + high) / 2)
    reached = markov.outcomes(policy, theta, verifier).log_success.exp()
    if not torch.allclose(reached, target, atol=1e-6):
        raise ValueError(f"initial_value = {initial_value!r} is not reachable by shifting the answer token "
                         f"(reached {reached.tolist()})")
    return policy, verifier, theta


def overshoot_candidates(gap: torch.Tensor, hessian: torch.Tensor, alignment: torch.Tensor) -> torch.Tensor:
    """Theorem 4's adversary: the two directions cos φ ĝ ± sin φ n (module docstring). gap (B, D), hessian
    (B, D, D), alignment (B,) → (B, 2, D)."""
    gap_norm = torch.linalg.vector_norm(gap, dim=-1, keepdim=True)
    unit_gap = gap / gap_norm
    eye = torch.eye(gap.shape[-1], dtype=gap.dtype, device=gap.device)
    projector = eye - unit_gap.unsqueeze(-1) * unit_gap.unsqueeze(-2)  # (B, D, D)
    restricted = projector @ hessian @ projector
    normal = torch.linalg.eigh(restricted).eigenvectors[..., 0]  # most negative curvature ⊥ ĝ
    cosine = (alignment.unsqueeze(-1) / gap_norm).clamp(max=1.0)
    sine = torch.sqrt(1 - cosine**2)
    return torch.stack([cosine * unit_gap + sine * normal, cosine * unit_gap - sine * normal], dim=-2)


@dataclass(frozen=True)
class ExactRun(Record):
    """Per step, (K + 1, B) or (K, B): value J, log(1 − J), log-odds, alignment Δμ_k, step η_k,
    ‖|o|‖_ψ₁ and E|o| at θ_k, and the one-step log-odds change."""

    value: torch.Tensor
    log_failure: torch.Tensor
    log_odds: torch.Tensor
    alignment: torch.Tensor
    step: torch.Tensor
    psi1: torch.Tensor
    mean_length: torch.Tensor
    log_odds_change: torch.Tensor


def simulate(policy: TokenPolicy, verifier: markov.Verifier, theta: torch.Tensor, steps: int, rule: str,
             step_rule: str = "constant", step_size: torch.Tensor | None = None,
             alignment: torch.Tensor | None = None) -> ExactRun:
    """θ_{k+1} = θ_k + η_k w_k for B runs at once, every quantity exact (forward algorithm).

    rule: one of :data:`TOKEN_DIRECTION_RULES`; step_rule: ``"constant"`` (η_k = ``step_size`` (B,)) or
    ``"theorem3"`` (η_k = (18a) with equality at θ_k); alignment (B,): the target Δμ of ``"overshoot"``.
    """
    if rule not in TOKEN_DIRECTION_RULES:
        raise ValueError(f"rule = {rule!r} is unknown: allowed {', '.join(map(repr, TOKEN_DIRECTION_RULES))}")
    if step_rule not in STEP_RULES:
        raise ValueError(f"step_rule = {step_rule!r} is unknown: allowed {', '.join(map(repr, STEP_RULES))}")
    if step_rule == "constant" and step_size is None:
        raise ValueError("a constant step rule needs step_size")
    if rule == "overshoot" and alignment is None:
        raise ValueError("the overshoot rule needs the target alignment Δμ")
    if steps < 1:
        raise ValueError(f"steps = {steps} must be ≥ 1")
    records: dict[str, list[torch.Tensor]] = {name: [] for name in ExactRun.__dataclass_fields__}
    result, gap = markov.log_odds_and_gradient_gap(policy, theta, verifier)
    for k in range(steps + 1):
        psi1 = markov.length_psi1_norm(result)
        records["value"].append(result.log_success.exp())
        records["log_failure"].append(result.log_failure)
        records["log_odds"].append(result.log_odds)
        records["psi1"].append(psi1)
        records["mean_length"].append(markov.mean_length(result))
        if k == steps:
            break
        if rule == "gap":
            direction = gap / torch.linalg.vector_norm(gap, dim=-1, keepdim=True)
        elif rule == "grpo":
            update = markov.expected_update(policy, theta, verifier, "grpo")
            direction = update / torch.linalg.vector_norm(update, dim=-1, keepdim=True)
        else:
            hessian = markov.log_odds_hessian(policy, theta, verifier)
            candidates = overshoot_candidates(gap, hessian, alignment)  # (B, 2, D)
        delta_mu = alignment if rule == "overshoot" else (direction * gap).sum(-1)
        if step_rule == "theorem3":
            eta = theorem3_step_bound(delta_mu, result.log_failure, policy.max_length, psi1)
        else:
            eta = step_size
        if rule == "overshoot":
            trial = markov.log_odds(policy, theta.unsqueeze(1) + eta[:, None, None] * candidates, verifier)
            direction = candidates[torch.arange(len(theta)), trial.argmin(-1)]  # the sign that lowers J more
        theta = theta + eta.unsqueeze(-1) * direction
        previous = result.log_odds
        result, gap = markov.log_odds_and_gradient_gap(policy, theta, verifier)
        records["alignment"].append(delta_mu)
        records["step"].append(eta.expand_as(delta_mu))
        records["log_odds_change"].append(result.log_odds - previous)
    return ExactRun(**{name: torch.stack(values) for name, values in records.items()})


def one_step_threshold(policy: TokenPolicy, verifier: markov.Verifier, theta: torch.Tensor, directions: torch.Tensor,
                       alignment: torch.Tensor, grid_points: int = 81, iterations: int = 40) -> torch.Tensor:
    """The critical step η* of each direction: the smallest η > 0 with f(θ + ηw) < f(θ), i.e. from
    which one step lowers J. θ (B, D), directions (B, C, D) → (B, C); NaN where no step up to
    10³Δμ lowers J. A log grid η/Δμ ∈ [10⁻¹, 10³] brackets the first sign change, bisection refines it.
    """
    start = markov.log_odds(policy, theta, verifier).unsqueeze(-1)  # (B, 1)
    ratios = torch.logspace(-1, 3, grid_points, dtype=theta.dtype, device=theta.device)
    grid = alignment[:, None, None] * ratios  # (B, 1, n)
    points = theta[:, None, None, :] + grid.unsqueeze(-1) * directions.unsqueeze(-2)  # (B, C, n, D)
    change = markov.log_odds(policy, points, verifier) - start.unsqueeze(-1)  # (B, C, n)
    falls = change < 0
    found = falls.any(-1)
    first = falls.int().argmax(-1)  # (B, C)
    high = grid.squeeze(1).unsqueeze(1).expand_as(change).gather(-1, first.unsqueeze(-1)).squeeze(-1)
    low = torch.where(first > 0, high / ratios[1] * ratios[0], torch.zeros_like(high))
    for _ in range(iterations):
        middle = (low + high) / 2
        value = markov.log_odds(policy, theta.unsqueeze(1) + middle.unsqueeze(-1) * directions, verifier)
        falls_here = value < start
        low, high = torch.where(falls_here, low, middle), torch.where(falls_here, middle, high)
    return torch.where(found, high, torch.nan)


def step_ratio_grid(values: np.ndarray, lengths: list[int], seed: int, vocab_size: int, verifier_kind: str,
                    group_size: int, device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """η_eff/η_safe of the exact population updates over a (J, T) grid, learning rate α = 1.

    For each T, one instance (seed ``seed``) calibrated to each J; for each variant of
    :data:`estimators.VARIANTS` the update g gives η_eff = ‖g‖ (eq. 20) and its alignment
    Δμ = ⟨g/‖g‖, ∇f⟩, and η_safe is (18a) at that alignment. Returns ratios (variant → (J, T)),
    plus ``"psi1"`` and ``"alignment"`` (the gap norm ‖∇f‖) on the same grid.
    """
    out = {variant: np.zeros((len(values), len(lengths))) for variant in estimators.VARIANTS}
    out["psi1"] = np.zeros((len(values), len(lengths)))
    out["alignment"] = np.zeros((len(values), len(lengths)))
    for column, length in enumerate(lengths):
        policy, verifier, theta = make_instances(vocab_size, length, verifier_kind, torch.tensor(values, dtype=DTYPE),
                                                 [seed] * len(values), device)
        result, gap = markov.log_odds_and_gradient_gap(policy, theta, verifier)
        psi1 = markov.length_psi1_norm(result)
        out["psi1"][:, column] = psi1.cpu().numpy()
        out["alignment"][:, column] = torch.linalg.vector_norm(gap, dim=-1).cpu().numpy()
        for variant in estimators.VARIANTS:
            update = markov.expected_update(policy, theta, verifier, variant, group_size)
            norm = torch.linalg.vector_norm(update, dim=-1)
            alignment = (update * gap).sum(-1) / norm
            safe = theorem3_step_bound(alignment, result.log_failure, length, psi1)
            out[variant][:, column] = (norm / safe).cpu().numpy()
    return out
