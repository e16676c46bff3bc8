"""Token-level theory (Section 4): the bounds as pure functions, the chapter's instances and exact runs.

**Policy.** The shared-parameter bigram chain ``TokenPolicy(V, T, position_bias=False)``: the
logits at every position are the row W[o_{t−1}] of one table, token 0 is EOS and position T
forces it. Its token score is e_{o_t} − π(· | o_{t−1}) in the row of o_{t−1}, so Assumption 2
holds with G_p = √2 and L_p = ½ (:data:`SCORE_BOUND`, :data:`SMOOTHNESS`), and Assumption 3 with
T_∞ = T.

**Instances** (:func:`make_instances`): entries of W drawn N(0, 1) from the instance's seed, the
same draw at every T; the EOS column set so that every token row stops with probability 2/T (so
E|o| ≈ 0.43 T grows with T) and the BOS row (almost) never does; the answer token's column shifted so that J₀ hits a target exactly.

**Directions** (:data:`DIRECTIONS`, unit vectors w_k of the generic step θ ← θ + η_k w_k):

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
from scipy import stats

from rlvr_dynamics import estimators, markov
from rlvr_dynamics.params import parameter
from rlvr_dynamics.policies import TokenPolicy
from rlvr_dynamics.trajectory_theory import loglog_slope

DTYPE = torch.float64
SCORE_BOUND = math.sqrt(2.0)
"""G_p: ‖e_v − π(· | p)‖² = (1 − π_v)² + Σ_{u≠v} π_u² ≤ 2, approached as π concentrates on u ≠ v."""
SMOOTHNESS = 0.5
"""L_p: the token score's Jacobian is −(diag π − ππᵀ) in one row block, of norm ≤ ½ (Gershgorin)."""
DIRECTIONS = ("gap", "overshoot", "grpo")
STEP_RULES = ("constant", "theorem3")
EMPTY_LOGIT = -30.0  # EOS logit after BOS at initialisation: an empty response has probability ≈ 1e-13


LEARNING_RATES = (1.0, 10.0, 100.0, 1000.0)  # the fixed learning rates of the sampled training


@dataclass(frozen=True)
class TokenConfig:
    """Parameters of the chapter *Token-level theory*."""

    vocab_size: int = parameter("V, tokens including EOS", "int", low=3, high=16)
    verifier: str = parameter("reward of the (22)/Theorem-3/4 runs, heatmap and training", "str",
                              choices=markov.VERIFIERS)
    initial_value: float = parameter("J₀ of the exact runs and the length law", "float", low=0.05, high=0.95)
    alignment: float = parameter("Δμ of the Theorem-4 adversary (≤ √(2.5·4)/240 ≈ 0.0132)", "float", low=1e-4,
                                 high=0.0132)
    longest_length: int = parameter("longest T of the length law (T = 4, 8, …, doubling)", "int", low=16, high=4096)
    majority_longest_length: int = parameter("longest T for the 'majority' verifier (its cost grows like T²)",
                                             "int", low=8, high=1024)
    instances: int = parameter("random instances (seeds) per length", "int", low=2, high=64)
    steps: int = parameter("steps of the exact runs", "int", low=5, high=10_000)
    value_points: int = parameter("values of J on the heatmap's axis", "int", low=3, high=50)
    group_size: int = parameter("G, responses per group in GRPO / Dr. GRPO", "int", low=2, high=64)
    training_longest_length: int = parameter("longest T of the sampled training (4, 16, 64, …)", "int", low=4,
                                             high=1024)
    training_steps: int = parameter("steps of the sampled training", "int", low=10, high=100_000)
    training_seeds: int = parameter("sampled-training runs per (variant, learning rate, T)", "int", low=2, high=256)
    training_initial_value: float = parameter("J₀ of the sampled training", "float", low=0.02, high=0.9)


PRESETS = {
    "ci": dict(vocab_size=6, verifier="final_token", initial_value=0.3, alignment=0.002, longest_length=256,
               majority_longest_length=64, instances=4, steps=30, value_points=7, group_size=8,
               training_longest_length=64, training_steps=100, training_seeds=8, training_initial_value=0.1),
    "paper": dict(vocab_size=6, verifier="final_token", initial_value=0.3, alignment=0.002, longest_length=1024,
                  majority_longest_length=512, instances=16, steps=100, value_points=15, group_size=8,
                  training_longest_length=256, training_steps=300, training_seeds=32, training_initial_value=0.1),
}


def measured_constants(vocab_size: int, states: int, generator: torch.Generator) -> tuple[float, float]:
    """The largest token-score norm ‖e_v − π(· | p)‖ and largest λ_max(diag π − ππᵀ) over random
    softmax rows of growing scale (logits × 1 … 30): the suprema G_p = √2 and L_p = ½ of Assumption 2."""
    scales = torch.logspace(0, math.log10(30), states, dtype=DTYPE).unsqueeze(-1)
    probs = torch.softmax(scales * torch.randn(states, vocab_size, generator=generator, dtype=DTYPE), dim=-1)
    eye = torch.eye(vocab_size, dtype=DTYPE)
    score_norm = torch.linalg.vector_norm(eye.unsqueeze(0) - probs.unsqueeze(1), dim=-1).max()  # over rows, tokens
    fisher = torch.diag_embed(probs) - probs.unsqueeze(-1) * probs.unsqueeze(-2)
    return float(score_norm), float(torch.linalg.eigvalsh(fisher)[..., -1].max())


# ----------------------------------------------------------------------------------------------
# The bounds of Section 4
# ----------------------------------------------------------------------------------------------


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
    estimators._check_variant(variant)
    if variant == "grpo":
        return learning_rate * alignment * torch.sqrt(value * (1 - value)) / psi1
    return learning_rate * alignment * value * (1 - value)


def safe_step(alignment: torch.Tensor, value: torch.Tensor, psi1: torch.Tensor) -> torch.Tensor:
    """Eq. (21), the scaling of (18a) when L_p ≪ G_p²: Δμ (1 − J)/T_ψ₁ (no constants)."""
    return alignment * (1 - value) / psi1


# ----------------------------------------------------------------------------------------------
# Instances
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Directions and exact runs
# ----------------------------------------------------------------------------------------------


def overshoot_candidates(gap: torch.Tensor, hessian: torch.Tensor, alignment: torch.Tensor) -> torch.Tensor:
    """The two Theorem-4 directions cos φ ĝ ± sin φ n (module docstring). gap (B, D), hessian
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
class ExactRun:
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

    rule: one of :data:`DIRECTIONS`; step_rule: ``"constant"`` (η_k = ``step_size`` (B,)) or
    ``"theorem3"`` (η_k = (18a) with equality at θ_k); alignment (B,): the target Δμ of ``"overshoot"``.
    """
    if rule not in DIRECTIONS:
        raise ValueError(f"rule = {rule!r} is unknown: allowed {', '.join(map(repr, DIRECTIONS))}")
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
        if rule == "overshoot":
            delta_mu = alignment
        else:
            delta_mu = (direction * gap).sum(-1)
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


def lengths_grid(longest: int, shortest: int = 4) -> list[int]:
    """T = 4, 8, 16, …, up to ``longest`` (doubling)."""
    out, length = [], shortest
    while length <= longest:
        out.append(length)
        length *= 2
    return out


def slope_interval(lengths: np.ndarray, values: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Log-log slope of ``values`` (seeds, lengths) on ``lengths``: one least-squares slope per seed,
    their mean and a Student-t interval over seeds (and the pooled fit's slope and R²)."""
    log_x, log_y = np.log(lengths), np.log(values)
    per_seed = np.array([loglog_slope(lengths, row) for row in values])
    mean = float(per_seed.mean())
    if len(per_seed) > 1:
        half = float(stats.t.ppf(0.5 + level / 2, len(per_seed) - 1) * per_seed.std(ddof=1) / math.sqrt(len(per_seed)))
    else:
        half = math.nan
    pooled = stats.linregress(np.tile(log_x, len(log_y)), log_y.ravel())
    return {"slope": mean, "low": mean - half, "high": mean + half, "per_seed_min": float(per_seed.min()),
            "per_seed_max": float(per_seed.max()), "pooled_slope": float(pooled.slope),
            "pooled_r2": float(pooled.rvalue**2), "seeds": int(len(per_seed))}


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
