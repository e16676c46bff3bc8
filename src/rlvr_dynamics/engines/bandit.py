"""The contextual-bandit REINFORCE experiment of Section 5.1, batched over independent runs.

**Problem** (one per seed). Contexts x ∈ [0, 1]^d, N arms, scores s(x) = βᵀx with β ∈ R^{d×N}
standard normal; reward 1 for the arm y*(x) = argmax s(x), 0 otherwise. Linear logits θᵀx
with θ₀ i.i.d. N(0, init_scale²). A *pool* of training contexts and a set of *evaluation*
contexts, all uniform on [0, 1]^d.

**Update** (exact REINFORCE at one training context x_k, step size α):

    θ_{k+1} = θ_k + α ∇J_{x_k}(θ_k),     ∇J_x = J_x (1 − J_x) · x ⊗ v_x,    v_x = e_{y*(x)} − π⁻_x,

where π⁻_x is the policy conditioned on the wrong arms (eq. 7b); x ⊗ v_x is the Gradient Gap (9)
of the bandit (``policies.bandit_gradient_gap``). In the generic scheme (3) this is the unit
direction w_k = x̂_k ⊗ v̂_k and the *effective* step η_k = α‖∇J_{x_k}‖ = α J(1 − J)‖x_k‖‖v_k‖.
x_k is drawn uniformly among the pool contexts whose current value J lies in the band [lo, hi]
(the paper's curriculum filter, re-evaluated at every step).

**Gap alignment** (11) at every context x, in O(d + N) once π_x is known, because w_k and the
gap are both rank one: Δμ_x(k) = (x̂_k · x) · (v̂_k · v_x), and
v̂_k · v_x = v̂_k[y*(x)] − (v̂_k · π⁻_x).

**Cumulative gaps.** M_x(K) = Σ_{k<K} [Δμ_x(k)]₊ η_k (14) is paired with J_x(K), as in
Theorem 1. The paper's "· η" is read two ways, both recorded: ``"effective"`` (η_k = α‖∇J‖,
the η of (14)–(16); the book's choice) and ``"nominal"`` (the constant α = 0.1). The relative
cumulative gap subtracts the training context's own alignment [Δμ_{x_k}(k)]₊ = ‖gap_{x_k}‖.

**Empty band.** With θ₀ ≈ 0 every context starts at J ≈ 1/N, below any sensible band, so the
filter is empty at the start of every run with the paper's settings. ``fallback`` says what
happens then (:data:`FALLBACKS`); the steps that fell back are counted per run and reported by
an :class:`EmptyBandWarning` — never a crash or a silent empty loop.

**Batching.** Every tensor has a leading run axis B (seeds × step sizes × …), so a sweep is one
tensor program on CPU or GPU. Per step and context the cost is O(N) for the incremental logit
update and the softmax statistics plus O(d) for the alignment; logits are recomputed from θ
every ``REFRESH_EVERY`` steps so rounding cannot accumulate. Arms never appear in a Python loop.
One step is one function (:func:`_step`); with ``compile=True`` it is compiled whole, and the
evaluation contexts' part becomes one loop that reads and writes each logit once with one exponential
(the benchmark's floor: ``rlvr_dynamics.bench.bandit``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from rlvr_dynamics.devices import resolve_device
from rlvr_dynamics.engines.records import Record
from rlvr_dynamics.theory.policies import bandit_conditional_probs

__all__ = [
    "FALLBACKS",
    "UPDATES",
    "ETA_READINGS",
    "DTYPES",
    "EmptyBandWarning",
    "BanditSpec",
    "ContextualBandits",
    "BanditTrajectories",
    "make_bandits",
    "simulate",
    "simulate_reference_numpy",
    "alignment_matrix",
    "concatenate",
    "simulate_in_groups",
    "check_band",
    "check_step_sizes",
    "learned_arms",
]

FALLBACKS = ("pool", "nearest")
"""What a step does when no pool context has J in the band:

- ``"pool"``: draw x_k uniformly from the whole pool (the filter is lifted for that step);
- ``"nearest"``: draw x_k uniformly among the pool contexts whose J is closest to the band.
"""

UPDATES = ("reinforce", "normalized")
"""The update of :func:`simulate`: ``"reinforce"``, θ += α∇J (effective step η_k = α‖∇J‖, the
paper's Section 5.1); ``"normalized"``, θ += α ∇J/‖∇J‖ (constant effective step η_k = α along the
same direction, the constant-η scheme of Theorem 2 and Corollary 1)."""

ETA_READINGS = ("effective", "nominal")
"""The two readings of the "· η" of the cumulative gap: η_k = α‖∇J_{x_k}‖ or the constant α."""

DTYPES = {"float32": torch.float32, "float64": torch.float64}
REFRESH_EVERY = 64  # steps between exact recomputations of the logits from θ
CONVERGED_LEVEL = 0.9
"""A context has *converged* when its final value J_x(K) is at least this."""


class EmptyBandWarning(UserWarning):
    """Some steps found no pool context in the band and used the fallback."""


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"parameter '{name}' = {value!r} must be a positive integer")
    return int(value)


def check_band(band: Sequence[float]) -> tuple[float, float]:
    """The curriculum band (lo, hi) must satisfy 0 ≤ lo < hi ≤ 1."""
    try:
        low, high = (float(b) for b in band)
    except (TypeError, ValueError):
        raise ValueError(f"parameter 'band' = {band!r} must be a pair (lo, hi) with 0 ≤ lo < hi ≤ 1") from None
    if not (math.isfinite(low) and math.isfinite(high) and 0.0 <= low < high <= 1.0):
        raise ValueError(f"parameter 'band' = ({low!r}, {high!r}) must satisfy 0 ≤ lo < hi ≤ 1")
    return low, high


def check_step_sizes(step_sizes) -> torch.Tensor:
    """Step sizes α: a positive finite number or a 1-D sequence of them → float64 tensor (B,)."""
    try:
        values = torch.as_tensor(step_sizes, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"parameter 'step_size' = {step_sizes!r} must be a positive finite number or a 1-D "
                         "sequence of them") from None
    if values.dim() > 1:
        raise ValueError(f"parameter 'step_size' has shape {tuple(values.shape)}: give a number or a 1-D sequence")
    values = values.reshape(-1)
    if values.numel() == 0:
        raise ValueError("parameter 'step_size' is empty: give at least one positive finite step size")
    bad = ~torch.isfinite(values) | (values <= 0)
    if bad.any():
        raise ValueError(f"parameter 'step_size' = {values[bad][0].item()!r} must be positive and finite")
    return values


def _check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"parameter '{name}' = {value!r} is unknown: allowed {', '.join(map(repr, choices))}")
    return value


@dataclass(frozen=True)
class BanditSpec:
    """Size of one Section-5.1 problem.

    Attributes:
        dim: context dimension d (paper: 10).
        arms: number of arms N (paper: 100).
        pool_size: training contexts in the pool (paper: 100).
        eval_size: evaluation contexts (paper: 500).
        init_scale: standard deviation of the entries of θ₀ (paper: 0.01).
    """

    dim: int = 10
    arms: int = 100
    pool_size: int = 100
    eval_size: int = 500
    init_scale: float = 0.01

    def __post_init__(self):
        for name in ("dim", "arms", "pool_size", "eval_size"):
            _positive_int(name, getattr(self, name))
        if self.arms < 2:
            raise ValueError(f"parameter 'arms' = {self.arms!r} must be at least 2")
        if (isinstance(self.init_scale, bool) or not isinstance(self.init_scale, (int, float, np.floating, np.integer))
                or not (math.isfinite(self.init_scale) and self.init_scale >= 0)):
            raise ValueError(f"parameter 'init_scale' = {self.init_scale!r} must be finite and ≥ 0")


@dataclass(frozen=True)
class ContextualBandits:
    """B independent problems (one row per run), pool contexts first.

    Attributes:
        spec: the problem size.
        seeds: (B,) the seed each row was drawn from.
        beta: (B, d, N) score matrices.
        contexts: (B, P + E, d) pool then evaluation contexts.
        best_arm: (B, P + E) y*(x) = argmax βᵀx.
        theta0: (B, d, N) initial parameters.
        uniforms: (B, K) the uniform draws that pick the training context at each step.
    """

    spec: BanditSpec
    seeds: tuple[int, ...]
    beta: torch.Tensor
    contexts: torch.Tensor
    best_arm: torch.Tensor
    theta0: torch.Tensor
    uniforms: torch.Tensor

    @property
    def n_runs(self) -> int:
        return self.beta.shape[0]

    @property
    def pool(self) -> slice:
        return slice(0, self.spec.pool_size)

    @property
    def evaluation(self) -> slice:
        return slice(self.spec.pool_size, None)

    def rows(self, index: slice) -> ContextualBandits:
        """The runs ``index`` (a slice of the run axis)."""
        return ContextualBandits(self.spec, self.seeds[index], self.beta[index], self.contexts[index],
                                 self.best_arm[index], self.theta0[index], self.uniforms[index])

    def repeat(self, times: int) -> ContextualBandits:
        """Each run repeated ``times`` times consecutively (row b → rows b·times … b·times + times − 1):
        seeds × step sizes with common random numbers."""
        rep = lambda t: t.repeat_interleave(times, dim=0)  # noqa: E731
        seeds = tuple(s for s in self.seeds for _ in range(times))
        return ContextualBandits(self.spec, seeds, rep(self.beta), rep(self.contexts), rep(self.best_arm),
                                 rep(self.theta0), rep(self.uniforms))


def make_bandits(spec: BanditSpec, seeds: Sequence[int], steps: int, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float64) -> ContextualBandits:
    """One problem per seed, each drawn on CPU from its own ``torch.Generator(seed)`` in float64
    (so a run is the same on every device, batch composition and dtype), then moved.

    ``device``: a :class:`torch.device` or a device parameter (``"auto"`` = CUDA when present);
    ``dtype``: torch.float64 (the book) or torch.float32 (2× faster sweeps; see the tests for
    the agreement); ``steps``: how many training-context draws to prepare per run."""
    steps = _positive_int("steps", steps)
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds):
        raise ValueError(f"parameter 'seeds' = {list(seeds)!r} must be non-negative integers")
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("parameter 'seeds' is empty: give at least one seed")
    rows = []
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        beta = torch.randn(spec.dim, spec.arms, generator=generator, dtype=torch.float64)
        contexts = torch.rand(spec.pool_size + spec.eval_size, spec.dim, generator=generator, dtype=torch.float64)
        theta0 = spec.init_scale * torch.randn(spec.dim, spec.arms, generator=generator, dtype=torch.float64)
        uniforms = torch.rand(steps, generator=generator, dtype=torch.float64)
        rows.append((beta, contexts, theta0, uniforms))
    beta, contexts, theta0, uniforms = (torch.stack(t) for t in zip(*rows, strict=True))
    best_arm = torch.bmm(contexts, beta).argmax(-1)  # (B, P + E): reward 1 for the argmax arm only
    if dtype not in DTYPES.values():
        raise ValueError(f"parameter 'dtype' = {dtype!r} is unknown: allowed {', '.join(DTYPES)}")
    device = resolve_device(device) if isinstance(device, str) else device
    move = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
    return ContextualBandits(spec, seeds, move(beta), move(contexts), best_arm.to(device), move(theta0),
                             uniforms.to(device))


@dataclass(frozen=True)
class BanditTrajectories(Record):
    """What :func:`simulate` records (CPU tensors). S = number of recorded steps, K = steps run.

    Per recorded step, per evaluation context (S, B, E):
        value: J_x(k).
        log_odds: log(J_x / (1 − J_x)), computed in log space.
        cumulative_gap: {reading: M_x(k) = Σ_{i<k} [Δμ_x(i)]₊ η_i} for both :data:`ETA_READINGS`.
        relative_cumulative_gap: {reading: Σ_{i<k} ([Δμ_x(i)]₊ − [Δμ_{x_i}(i)]₊) η_i}.
        signed_cumulative_alignment: Σ_{i<k} Δμ_x(i) η_i (effective η): the first-order
            prediction of the change in log-odds, eq. (16).
        smallest_alignment_ratio: min_{i<k} [Δμ_x(i)]₊ / η_i (+inf at k = 0): Theorem 1(b)'s
            step condition (15a) held at x for all steps before k iff it is ≥ 2(L_o + 8G_o²).
    Per step (K, B):
        train_index: pool index of x_k; train_value: J_{x_k}(k); train_gap_norm: ‖gap_{x_k}‖;
        step: η_k = α‖∇J_{x_k}‖, the effective step; fell_back: True where the band was empty.
    Per run (B,): step_size α, seed. Per evaluation context (B, E): best_arm.
    Pool values at the recorded steps (S, B, P): pool_value. Final parameters (B, d, N): final_theta.
    """

    recorded_steps: torch.Tensor
    value: torch.Tensor
    log_odds: torch.Tensor
    cumulative_gap: dict[str, torch.Tensor]
    relative_cumulative_gap: dict[str, torch.Tensor]
    signed_cumulative_alignment: torch.Tensor
    smallest_alignment_ratio: torch.Tensor
    final_theta: torch.Tensor
    pool_value: torch.Tensor
    train_index: torch.Tensor
    train_value: torch.Tensor
    train_gap_norm: torch.Tensor
    step: torch.Tensor
    fell_back: torch.Tensor
    step_size: torch.Tensor
    seed: torch.Tensor
    best_arm: torch.Tensor
    pool_best_arm: torch.Tensor
    band: tuple[float, float]
    fallback: str


def _exp_floor(dtype: torch.dtype) -> float:
    """Shifted logits are clamped here before exp: below it exp lands in the subnormal range,
    which costs 10–25× more per element on CPU and adds nothing above float resolution
    (e^floor is 1.8e-35 in float32, 1e-304 in float64)."""
    return -80.0 if dtype == torch.float32 else -700.0


def _largest_logit(wrong_logits: torch.Tensor, best_logit: torch.Tensor) -> torch.Tensor:
    """max_y ℓ_y of every context (B, C): the shift of the softmax."""
    return torch.maximum(wrong_logits.amax(-1), best_logit)


def _softmax_statistics(wrong_logits: torch.Tensor, best_logit: torch.Tensor, top: torch.Tensor | None = None):
    """Log-space softmax pieces of every context, without cancelling digits.

    wrong_logits (B, C, N): the logits with −inf at y*(x); best_logit (B, C): ℓ_{y*}; top (B, C): their
    maximum when already known (:func:`_largest_logit`). Returns log J and log(1 − J) (B, C), the wrong
    arms' weights e_y = exp(ℓ_y − max ℓ) (B, C, N; ≈ 0 at y*) and their sum m (B, C); π⁻ = e / m
    (eq. 7b) is left unformed to save a pass, and 1 − J = m / (e_{y*} + m) is never computed as 1 − J.
    """
    top = _largest_logit(wrong_logits, best_logit) if top is None else top  # (B, C)
    weights = (wrong_logits - top.unsqueeze(-1)).clamp_(min=_exp_floor(wrong_logits.dtype)).exp_()
    wrong_mass = weights.sum(-1)  # (B, C) > 0
    return (*_log_values(best_logit, top, wrong_mass), weights, wrong_mass)


def _log_values(best_logit: torch.Tensor, top: torch.Tensor, wrong_mass: torch.Tensor):
    """log J and log(1 − J) (B, C) from ℓ_{y*} − max ℓ and the wrong arms' mass m > 0."""
    best_shifted = best_logit - top  # ≤ 0
    log_wrong = wrong_mass.log()
    log_total = torch.logaddexp(best_shifted, log_wrong)
    return best_shifted - log_total, log_wrong - log_total


def _batched_matvec(matrices: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """(B, C, n) @ (B, n) → (B, C). Passing the vector as a transposed row takes BLAS's gemm
    path, 2–4× faster on CPU than the (B, n, 1) column (which falls to batched gemv)."""
    return torch.bmm(matrices, vectors.unsqueeze(1).transpose(1, 2)).squeeze(-1)


def _alignment_factor(weights: torch.Tensor, wrong_mass: torch.Tensor, v_unit: torch.Tensor) -> torch.Tensor:
    """v̂_k · π⁻_x = Σ_y e_y v̂_k[y] / m for every context: weights (B, C, N), wrong_mass (B, C),
    v_unit (B, N) → (B, C)."""
    return _batched_matvec(weights, v_unit) / wrong_mass


def _update_logits(wrong_logits: torch.Tensor, best_logit: torch.Tensor, inner: torch.Tensor,
                   coefficient: torch.Tensor, best_arm: torch.Tensor) -> None:
    """In place: ℓ_x += (x · x_k) c_k for every context, the logit change of θ += x_k ⊗ c_k
    (wrong_logits stays −inf at y*)."""
    wrong_logits.addcmul_(inner.unsqueeze(-1), coefficient.unsqueeze(1))
    best_logit.addcmul_(inner, coefficient.gather(-1, best_arm))


def _update_and_statistics(wrong_logits, best_logit, inner, coefficient, best_arm):
    """The pool's step: the previous step's logit update (in place), then :func:`_softmax_statistics`
    (the weights are kept: v_k is read from them)."""
    _update_logits(wrong_logits, best_logit, inner, coefficient, best_arm)
    return _softmax_statistics(wrong_logits, best_logit)


def _evaluation_pass(wrong_logits, best_logit, top, inner, coefficient, best_arm, v_unit):
    """The evaluation contexts' whole step k, given their logits ℓ(k) and max ℓ(k): log J and log(1 − J),
    v̂_k · π⁻_x (B, E); then ℓ(k + 1) = ℓ(k) + (x · x_k) c_k in place, and its maximum (B, E) for the next
    step. The weights are not kept."""
    log_value, log_failure, weights, wrong_mass = _softmax_statistics(wrong_logits, best_logit, top)
    factor = _alignment_factor(weights, wrong_mass, v_unit)
    _update_logits(wrong_logits, best_logit, inner, coefficient, best_arm)
    return log_value, log_failure, factor, _largest_logit(wrong_logits, best_logit)


def _fused_evaluation_pass(wrong_logits, best_logit, top, inner, coefficient, best_arm, v_unit):
    """:func:`_evaluation_pass` written for ``torch.compile``: v̂_k · π⁻_x as an elementwise product
    summed over the arms (a reduction inductor fuses into the exponentials' loop) instead of the
    batched matrix product eager mode prefers. Compiled, it is one loop over the logits: read ℓ(k), one
    exponential, three sums, write ℓ(k + 1) and take its maximum — the traffic of the benchmark's floor."""
    weights = (wrong_logits - top.unsqueeze(-1)).clamp(min=_exp_floor(wrong_logits.dtype)).exp()
    wrong_mass = weights.sum(-1)
    factor = (weights * v_unit.unsqueeze(1)).sum(-1) / wrong_mass
    log_value, log_failure = _log_values(best_logit, top, wrong_mass)
    _update_logits(wrong_logits, best_logit, inner, coefficient, best_arm)
    return log_value, log_failure, factor, _largest_logit(wrong_logits, best_logit)


def _choose_and_step(log_pool_value, log_pool_failure, pool_weights, pool_mass, uniforms, contexts, context_norm,
                     best_arm, alpha, band, fallback, update):
    """Step k from the pool alone: x_k (:func:`_choose_training_contexts`), v_k = e_{y*} − π⁻ there, the
    effective step η_k and the logit update it makes, ℓ_x += (x · x_k) c_k with c_k = (η_k / ‖gap‖) v_k.
    Returns a dict of (B,) index, fell_back, x_norm, gap_norm, eta; (B, N) v_train, v_unit, coefficient;
    (B, d) x_train; (B, C) inner = x · x_k."""
    rows = torch.arange(log_pool_value.shape[0], device=log_pool_value.device)
    index, fell_back = _choose_training_contexts(log_pool_value.exp(), uniforms, band, fallback)
    v_train = pool_weights[rows, index] / (-pool_mass[rows, index, None])  # (B, N)
    v_train[rows, best_arm[rows, index]] = 1.0
    v_norm = torch.linalg.vector_norm(v_train, dim=-1)  # (B,)
    x_train = contexts[rows, index]  # (B, d)
    x_norm = context_norm[rows, index]  # (B,)
    gap_norm = x_norm * v_norm  # ‖gap_{x_k}‖ = Δμ_{x_k}(k), since w_k ∥ gap_{x_k}
    variability = torch.exp(log_pool_value[rows, index] + log_pool_failure[rows, index])  # J(1 − J), no cancelling
    eta = alpha * variability * gap_norm if update == "reinforce" else alpha  # α‖∇J_{x_k}‖ or α
    return {"index": index, "fell_back": fell_back, "v_train": v_train, "v_unit": v_train / v_norm[:, None],
            "x_train": x_train, "x_norm": x_norm, "gap_norm": gap_norm, "eta": eta,
            "inner": _batched_matvec(contexts, x_train),  # x · x_k  (B, C)
            # θ += η_k w_k = (η_k / ‖gap‖) x_k ⊗ v_k (= α J(1 − J) x_k ⊗ v_k for REINFORCE)
            "coefficient": (eta / gap_norm)[:, None] * v_train}


def _account(step, log_pool_value, pool_weights, pool_mass, eval_factor, best_arm, alpha, accumulated,
             smallest_ratio, theta):
    """The rest of step k, O(B·C): the alignment Δμ_x(k) of every context and the accumulators (in
    place), and θ += x_k ⊗ c_k (in place). ``step``: :func:`_choose_and_step`'s dict. Returns the step's
    trace row (4, B): J_{x_k}, ‖gap_{x_k}‖, η_k, fell back."""
    rows = torch.arange(step["index"].shape[0], device=step["index"].device)
    eta, gap_norm, v_unit = step["eta"], step["gap_norm"], step["v_unit"]
    # Δμ_x(k) = (x̂_k · x)(v̂_k[y*(x)] − v̂_k · π⁻_x) for every context x: O(d + N) each.
    wrong_part = torch.cat((_alignment_factor(pool_weights, pool_mass, v_unit), eval_factor), dim=1)
    alignment = step["inner"] / step["x_norm"][:, None] * (v_unit.gather(-1, best_arm) - wrong_part)  # (B, C)
    positive = alignment.clamp_min(0)
    terms = torch.stack((positive, positive, positive - gap_norm[:, None], positive - gap_norm[:, None],
                         alignment))  # (5, B, C)
    accumulated.addcmul_(terms, torch.stack((eta, alpha, eta, alpha, eta)).unsqueeze(-1))
    torch.fmin(smallest_ratio, positive / eta[:, None], out=smallest_ratio)  # fmin: 0/0 (η_k = 0) is ignored
    theta.baddbmm_(step["x_train"].unsqueeze(-1), step["coefficient"].unsqueeze(1))
    return torch.stack((log_pool_value[rows, step["index"]].exp(), gap_norm, eta, step["fell_back"].to(eta.dtype)))


def _step(state: dict, problem: dict, uniforms, alpha, band, fallback, update, fused: bool) -> dict:
    """One REINFORCE step k < K of every run, from the pool's logits to θ_{k+1}.

    ``state`` (updated in place: the logits, θ and the accumulators): pool_logits (B, P, N),
    pool_best_logit (B, P), pool_inner (B, P) and coefficient (B, N) (step k − 1's update, not yet in the
    pool's logits), eval_logits (B, E, N) and eval_best_logit (B, E) (ℓ(k)), eval_top (B, E) (their max),
    accumulated (5, B, C), smallest_ratio (B, C), theta (B, d, N). ``problem``: contexts, context_norm,
    best_arm and its pool and evaluation parts. ``fused``: the evaluation pass written for
    ``torch.compile`` (:func:`_fused_evaluation_pass`). Returns step k's log J of the pool and of the
    evaluation contexts, log(1 − J) of the latter, the trace row (4, B), x_k's index (B,), and what the
    next step needs: eval_top, pool_inner, coefficient."""
    pool = state["pool_inner"].shape[1]
    log_pool_value, log_pool_failure, pool_weights, pool_mass = _update_and_statistics(
        state["pool_logits"], state["pool_best_logit"], state["pool_inner"], state["coefficient"],
        problem["pool_best_arm"])
    step = _choose_and_step(log_pool_value, log_pool_failure, pool_weights, pool_mass, uniforms,
                            problem["contexts"], problem["context_norm"], problem["best_arm"], alpha, band, fallback,
                            update)
    evaluation_pass = _fused_evaluation_pass if fused else _evaluation_pass
    log_eval_value, log_eval_failure, eval_factor, eval_top = evaluation_pass(
        state["eval_logits"], state["eval_best_logit"], state["eval_top"], step["inner"][:, pool:],
        step["coefficient"], problem["eval_best_arm"], step["v_unit"])
    trace = _account(step, log_pool_value, pool_weights, pool_mass, eval_factor, problem["best_arm"], alpha,
                     state["accumulated"], state["smallest_ratio"], state["theta"])
    return {"log_pool_value": log_pool_value, "log_eval_value": log_eval_value,
            "log_eval_failure": log_eval_failure, "trace": trace, "index": step["index"],
            "eval_top": eval_top, "pool_inner": step["inner"][:, :pool], "coefficient": step["coefficient"]}


_COMPILED: dict[str, object] = {}


def _step_function(compile: bool):
    """:func:`_step`, eager or compiled whole by ``torch.compile`` (inductor: one loop over the evaluation
    logits with one exponential per logit, and a handful of kernels for the dozens of small operations
    around it, behind one call per step; needs a C++ compiler on CPU)."""
    if not compile:
        return functools.partial(_step, fused=False)
    if "step" not in _COMPILED:
        _COMPILED["step"] = torch.compile(functools.partial(_step, fused=True), dynamic=False)
    return _COMPILED["step"]


def _split_logits(contexts: torch.Tensor, theta: torch.Tensor, best_arm: torch.Tensor):
    """Exact logits θᵀx of every context, split into ℓ_{y*} (B, C) and the rest (−inf at y*)."""
    logits = torch.bmm(contexts, theta)  # (B, C, N)
    best_logit = logits.gather(-1, best_arm.unsqueeze(-1)).squeeze(-1)
    return logits.scatter_(-1, best_arm.unsqueeze(-1), -torch.inf), best_logit


def _choose_training_contexts(pool_value: torch.Tensor, uniforms: torch.Tensor, band: tuple[float, float],
                              fallback: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Index (B,) of x_k among the pool, uniform over the eligible contexts, and whether it fell back.

    The u-th eligible context (in pool order, u ∈ [0, 1) scaled by their count) is taken, so a
    run's choices depend only on its own uniforms and values, not on the rest of the batch.
    """
    low, high = band
    eligible = (pool_value >= low) & (pool_value <= high)  # (B, P)
    empty = ~eligible.any(-1)  # (B,)
    if fallback == "pool":
        substitute = torch.ones_like(eligible)
    else:  # "nearest": the contexts at the smallest distance from the band
        distance = (low - pool_value).clamp_min(0) + (pool_value - high).clamp_min(0)
        substitute = distance <= distance.amin(-1, keepdim=True)
    eligible = torch.where(empty[:, None], substitute, eligible)  # no branch: no device sync
    count = eligible.sum(-1)  # (B,) ≥ 1
    rank = torch.minimum((uniforms * count).long(), count - 1)  # which eligible context
    index = (eligible.cumsum(-1) > rank[:, None]).int().argmax(-1)  # first position past `rank` of them
    return index, empty


def simulate(bandits: ContextualBandits, step_sizes, steps: int, band: Sequence[float] = (0.2, 0.8),
             fallback: str = "pool", record_every: int = 1, progress: bool = False,
             compile: bool = False, update: str = "reinforce") -> BanditTrajectories:
    """Section 5.1: run exact REINFORCE on every row of ``bandits`` for ``steps`` steps.

    Args:
        bandits: B problems (:func:`make_bandits`, possibly ``.repeat``-ed for a step-size grid).
        step_sizes: α, a positive number or one per run (B,).
        steps: K, number of updates (≤ the number of uniforms drawn per run).
        band: (lo, hi), the curriculum filter on the training context's current J.
        fallback: one of :data:`FALLBACKS`, used at steps where the band is empty.
        record_every: record the per-context quantities every this many steps (and at step K).
        progress: show a tqdm bar.
        update: one of :data:`UPDATES`.
        compile: fuse the per-step kernels with ``torch.compile`` (same numbers to rounding;
            2–3× faster on large batches after a one-off compilation of tens of seconds).
    Returns:
        :class:`BanditTrajectories`. Warns :class:`EmptyBandWarning` if any step fell back.
    """
    band = check_band(band)
    fallback = _check_choice("fallback", fallback, FALLBACKS)
    update = _check_choice("update", update, UPDATES)
    steps = _positive_int("steps", steps)
    record_every = _positive_int("record_every", record_every)
    if steps > bandits.uniforms.shape[1]:
        raise ValueError(f"parameter 'steps' = {steps} exceeds the {bandits.uniforms.shape[1]} steps drawn "
                         "for these bandits (make_bandits(..., steps=…))")
    n_runs, pool = bandits.n_runs, bandits.spec.pool_size
    alpha = check_step_sizes(step_sizes)
    if alpha.numel() == 1:
        alpha = alpha.expand(n_runs)
    if alpha.numel() != n_runs:
        raise ValueError(f"parameter 'step_size' has {alpha.numel()} values for {n_runs} runs")
    dtype, device = bandits.contexts.dtype, bandits.contexts.device
    alpha = alpha.to(device=device, dtype=dtype)  # (B,)

    contexts, best_arm = bandits.contexts, bandits.best_arm  # (B, C, d), (B, C)
    theta = bandits.theta0.clone()  # (B, d, N)
    context_norm = torch.linalg.vector_norm(contexts, dim=-1)  # (B, C)
    evaluation, n_eval = bandits.evaluation, bandits.spec.eval_size
    recorded_steps = sorted({*range(0, steps + 1, record_every), steps})

    # Accumulators, (5, B, C): M_eff, M_nom, relative_eff, relative_nom, signed (effective η);
    # and the running min over k of [Δμ_x(k)]₊ / η_k, the hypothesis (15a) of Theorem 1(b).
    accumulated = torch.zeros(5, n_runs, contexts.shape[1], dtype=dtype, device=device)
    smallest_ratio = torch.full((n_runs, contexts.shape[1]), torch.inf, dtype=dtype, device=device)
    # Recorded per context, (S, 8, B, E): J, log-odds, the five accumulators, the running min.
    record = torch.empty(len(recorded_steps), 8, n_runs, n_eval, dtype=dtype, device=device)
    pool_record = torch.empty(len(recorded_steps), n_runs, pool, dtype=dtype, device=device)
    # Per step, (K, 4, B): J_{x_k}, ‖gap_{x_k}‖, η_k, fell back; and the index (K, B).
    trace = torch.empty(steps, 4, n_runs, dtype=dtype, device=device)
    train_index = torch.empty(steps, n_runs, dtype=torch.long, device=device)
    slot = 0

    # The logits of the pool and of the evaluation contexts, kept apart: x_k is chosen from the pool's
    # values, and the evaluation contexts' pass then needs v̂_k and c_k, so that pass is one loop (_step).
    problem = {"contexts": contexts, "context_norm": context_norm, "best_arm": best_arm,
               "pool_best_arm": best_arm[:, :pool], "eval_best_arm": best_arm[:, evaluation]}
    state = {"accumulated": accumulated, "smallest_ratio": smallest_ratio, "theta": theta,
             "coefficient": torch.zeros(n_runs, bandits.spec.arms, dtype=dtype, device=device)}
    step_function = _step_function(compile)
    for k in tqdm(range(steps + 1), disable=not progress, desc="REINFORCE steps", leave=False):
        if k % REFRESH_EVERY == 0:  # exact logits from θ: no drift from the rank-one updates
            (state["pool_logits"], state["pool_best_logit"]), (state["eval_logits"], state["eval_best_logit"]) = (
                _split_logits(contexts[:, part], theta, best_arm[:, part]) for part in (bandits.pool, evaluation))
            state["eval_top"] = _largest_logit(state["eval_logits"], state["eval_best_logit"])
            # no update pending; laid out like the view of x · x_k that later steps pass (one compiled variant)
            state["pool_inner"] = torch.zeros(n_runs, contexts.shape[1], dtype=dtype, device=device)[:, :pool]
        recording = k == recorded_steps[slot]
        if recording:  # the accumulators before step k
            record[slot, 2:7] = accumulated[:, :, evaluation]
            record[slot, 7] = smallest_ratio[:, evaluation]
        if k < steps:
            out = step_function(state, problem, bandits.uniforms[:, k], alpha, band, fallback, update)
            trace[k], train_index[k] = out["trace"], out["index"]
        else:  # the values after the last step: no step follows
            log_pool_value, *_ = _update_and_statistics(state["pool_logits"], state["pool_best_logit"],
                                                        state["pool_inner"], state["coefficient"],
                                                        problem["pool_best_arm"])
            log_eval_value, log_eval_failure, *_ = _softmax_statistics(state["eval_logits"], state["eval_best_logit"],
                                                                       state["eval_top"])
            out = {"log_pool_value": log_pool_value, "log_eval_value": log_eval_value,
                   "log_eval_failure": log_eval_failure}
        if recording:
            record[slot, 0] = out["log_eval_value"].exp()
            record[slot, 1] = out["log_eval_value"] - out["log_eval_failure"]
            pool_record[slot] = out["log_pool_value"].exp()
            slot += 1
        if k < steps:
            state.update(eval_top=out["eval_top"], pool_inner=out["pool_inner"], coefficient=out["coefficient"])

    trace, record, pool_record = trace.cpu(), record.cpu(), pool_record.cpu()
    fell_back = trace[:, 3] > 0.5  # (K, B)
    if fell_back.any():
        runs = int(fell_back.any(0).sum())
        warnings.warn(
            f"the band [{band[0]:g}, {band[1]:g}] held no pool context at {int(fell_back.sum())} of "
            f"{steps * n_runs} steps ({runs} of {n_runs} runs; first in-band step of run 0: "
            f"{_first_false(fell_back[:, 0])}); those steps drew x_k by the {fallback!r} fallback",
            EmptyBandWarning,
            stacklevel=2,
        )
    return BanditTrajectories(
        recorded_steps=torch.tensor(recorded_steps),
        value=record[:, 0],
        log_odds=record[:, 1],
        cumulative_gap={"effective": record[:, 2], "nominal": record[:, 3]},
        relative_cumulative_gap={"effective": record[:, 4], "nominal": record[:, 5]},
        signed_cumulative_alignment=record[:, 6],
        smallest_alignment_ratio=record[:, 7],
        final_theta=theta.cpu(),
        pool_value=pool_record,
        train_index=train_index.cpu(),
        train_value=trace[:, 0],
        train_gap_norm=trace[:, 1],
        step=trace[:, 2],
        fell_back=fell_back,
        step_size=alpha.cpu(),
        seed=torch.tensor(bandits.seeds),
        best_arm=best_arm[:, evaluation].cpu(),
        pool_best_arm=best_arm[:, bandits.pool].cpu(),
        band=band,
        fallback=fallback,
    )


GROUP_RUNS = 64
"""Runs per group of :func:`simulate_in_groups` on CPU: a (64, 600, 100) float64 batch still fits
the cache; a 320-run batch is memory-bound and 2–3× slower per run."""


def simulate_in_groups(bandits: ContextualBandits, step_sizes, steps: int, group_size: int | None = None,
                       **options) -> BanditTrajectories:
    """:func:`simulate` on consecutive groups of at most ``group_size`` runs (default
    :data:`GROUP_RUNS` on CPU, all runs at once elsewhere), joined; the result does not depend
    on the grouping. ``step_sizes``: one per run (B,) or a single number."""
    alpha = check_step_sizes(step_sizes)
    alpha = alpha.expand(bandits.n_runs) if alpha.numel() == 1 else alpha
    if group_size is None:
        group_size = GROUP_RUNS if bandits.contexts.device.type == "cpu" else bandits.n_runs
    group_size = _positive_int("group_size", group_size)
    parts = [simulate(bandits.rows(slice(start, start + group_size)), alpha[start:start + group_size], steps,
                      **options)
             for start in range(0, bandits.n_runs, group_size)]
    return parts[0] if len(parts) == 1 else concatenate(parts)


def concatenate(parts: Sequence[BanditTrajectories]) -> BanditTrajectories:
    """Join trajectories of consecutive groups of runs (same steps, band and fallback) along the run axis."""
    joined = {}
    for field in dataclasses.fields(BanditTrajectories):
        values = [getattr(p, field.name) for p in parts]
        if field.name in ("recorded_steps", "band", "fallback"):
            joined[field.name] = values[0]
        elif isinstance(values[0], dict):
            joined[field.name] = {key: torch.cat([v[key] for v in values], dim=1) for key in values[0]}
        elif field.name in ("step_size", "seed", "best_arm", "pool_best_arm", "final_theta"):
            joined[field.name] = torch.cat(values, dim=0)
        else:  # (S or K, B, ...) tensors
            joined[field.name] = torch.cat(values, dim=1)
    return BanditTrajectories(**joined)


def learned_arms(trajectories: BanditTrajectories, run: int, level: float = CONVERGED_LEVEL) -> torch.Tensor:
    """The arms run ``run`` learned: the optimal arms of its evaluation contexts that converged
    (J_x(K) ≥ ``level``), each once, in increasing order."""
    final = trajectories.value[-1, run]
    return torch.unique(trajectories.best_arm[run][final >= level])


def _first_false(flags: torch.Tensor) -> str:
    where = (~flags).nonzero()
    return str(int(where[0])) if len(where) else "never"


def alignment_matrix(theta: torch.Tensor, train_contexts: torch.Tensor, train_best: torch.Tensor,
                     contexts: torch.Tensor, best_arm: torch.Tensor) -> torch.Tensor:
    """Gap alignment (11) of the REINFORCE direction of every training context with the gap of
    every context, for one θ: Δμ[i, j] = ⟨∇J_{x_i} / ‖∇J_{x_i}‖, x_j ⊗ v_{x_j}⟩
    = (x̂_i · x_j)(v̂_i · v_{x_j}), v_x = e_{y*(x)} − π⁻_x.

    theta (d, N), train_contexts (P, d), train_best (P,), contexts (E, d), best_arm (E,) → (P, E).
    """
    def gap_factor(x, best):  # v_x = π⁺ − π⁻ (n, N), from the policies' log-space conditionals
        reward = torch.nn.functional.one_hot(best, theta.shape[-1]).to(theta.dtype)
        _, plus, minus = bandit_conditional_probs(theta, x, reward)
        return plus - minus

    v_train, v_eval = gap_factor(train_contexts, train_best), gap_factor(contexts, best_arm)
    x_unit = train_contexts / torch.linalg.vector_norm(train_contexts, dim=-1, keepdim=True)
    v_unit = v_train / torch.linalg.vector_norm(v_train, dim=-1, keepdim=True)
    return (x_unit @ contexts.T) * (v_unit @ v_eval.T)


# ----------------------------------------------------------------------------------------------
# The straightforward per-run NumPy loop: the oracle of the tests and the benchmark's baseline
# ----------------------------------------------------------------------------------------------


def simulate_reference_numpy(bandits: ContextualBandits, run: int, step_size: float, steps: int,
                             band: Sequence[float] = (0.2, 0.8), fallback: str = "pool") -> dict[str, np.ndarray]:
    """One run of the same experiment written as the definitions read, in float64 NumPy.

    Recomputes the logits from θ and materialises, for every evaluation context, the d×N
    matrices g⁺ = x ⊗ (π⁺ − π) and g⁻ = x ⊗ (π⁻ − π) (eq. 8 for linear logits), ∇J at the
    training context and the unit direction w_k, then Δμ_x = ⟨w_k, g⁺_x − g⁻_x⟩ (eq. 11) by a
    full inner product. O(E·d·N) per step. Returns J (K + 1, E) and the effective cumulative gap
    (K + 1, E), and the training indices (K,).
    """
    low, high = check_band(band)
    fallback = _check_choice("fallback", fallback, FALLBACKS)
    beta = bandits.beta[run].double().cpu().numpy()
    contexts = bandits.contexts[run].double().cpu().numpy()
    theta = bandits.theta0[run].double().cpu().numpy().copy()
    uniforms = bandits.uniforms[run].double().cpu().numpy()
    pool = bandits.spec.pool_size
    best = np.argmax(contexts @ beta, axis=1)
    eval_x, eval_best = contexts[pool:], best[pool:]
    n_eval, n_arms = len(eval_x), beta.shape[1]
    eval_rows = np.arange(n_eval)
    one_hot = np.zeros((n_eval, n_arms))
    one_hot[eval_rows, eval_best] = 1.0

    def policy(x):
        logits = x @ theta
        logits -= logits.max(-1, keepdims=True)
        probs = np.exp(logits)
        return probs / probs.sum(-1, keepdims=True)

    values, gaps, indices = [], [], []
    cumulative = np.zeros(n_eval)
    for k in range(steps + 1):
        probs = policy(eval_x)  # (E, N)
        values.append(probs[eval_rows, eval_best])
        gaps.append(cumulative.copy())
        if k == steps:
            break
        pool_probs = policy(contexts[:pool])
        pool_value = pool_probs[np.arange(pool), best[:pool]]
        eligible = (pool_value >= low) & (pool_value <= high)
        if not eligible.any():
            if fallback == "pool":
                eligible = np.ones(pool, dtype=bool)
            else:
                distance = np.clip(low - pool_value, 0, None) + np.clip(pool_value - high, 0, None)
                eligible = distance <= distance.min()
        candidates = np.flatnonzero(eligible)
        index = candidates[min(int(uniforms[k] * len(candidates)), len(candidates) - 1)]
        indices.append(index)
        x_k, p_k, y_k = contexts[index], pool_probs[index], best[index]
        grad = np.outer(x_k, p_k[y_k] * (np.eye(n_arms)[y_k] - p_k))  # ∇J_{x_k} (d, N)
        grad_norm = np.linalg.norm(grad)
        direction = grad / grad_norm
        plus = one_hot  # π⁺ is the point mass on y*
        minus = probs * (1 - one_hot)
        minus /= minus.sum(-1, keepdims=True)
        g_plus = eval_x[:, :, None] * (plus - probs)[:, None, :]  # (E, d, N)
        g_minus = eval_x[:, :, None] * (minus - probs)[:, None, :]
        alignment = np.einsum("edn,dn->e", g_plus - g_minus, direction)
        cumulative += np.clip(alignment, 0, None) * step_size * grad_norm
        theta += step_size * grad
    return {"value": np.array(values), "cumulative_gap": np.array(gaps), "train_index": np.array(indices)}
