"""The chapter *Figure 1: REINFORCE on contextual bandits*: its parameters, runs and summaries.

The runs are :func:`rlvr_dynamics.engines.bandit.simulate` calls; this module turns trajectories into
the numbers the chapter reports (fits, regimes, rank correlations, the Theorem-1(b) check,
seed bands and the step-size sweep). Every function is pure: trajectories in, arrays out.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import stats

from rlvr_dynamics.config import parameter
from rlvr_dynamics.engines import bandit
from rlvr_dynamics.theory import bounds

CONVERGED_LEVEL = 0.9
"""A context has *converged* when J_x(K) ≥ 0.9 and is *stuck* when J_x(K) ≤ 0.1."""
STUCK_LEVEL = 0.1
SENSITIVITY_RANGE = (0.01, 10.0)
"""The step sizes of the sensitivity sweep: a log grid over [0.01, 10] (the issue's range)."""


@dataclass(frozen=True)
class Figure1Config:
    """Parameters of the chapter *Figure 1: REINFORCE on contextual bandits* (Section 5.1)."""

    dim: int = parameter("context dimension d", "int", low=1, high=1_000)
    arms: int = parameter("number of arms N", "int", low=2, high=10_000)
    pool_size: int = parameter("training contexts in the pool", "int", low=1, high=100_000)
    eval_size: int = parameter("evaluation contexts", "int", low=1, high=100_000)
    init_scale: float = parameter("standard deviation of the entries of θ₀", "float", low=0.0, high=10.0)
    steps: int = parameter("REINFORCE steps K", "int", low=1, high=1_000_000)
    step_size: float = parameter("step size α of the exact REINFORCE update", "float", low=1e-9, high=1e3)
    band_low: float = parameter("lower end of the curriculum band on J(x_k)", "float", low=0.0, high=1.0)
    band_high: float = parameter("upper end of the curriculum band on J(x_k)", "float", low=0.0, high=1.0)
    fallback: str = parameter("training-context draw when the band is empty", "str", choices=bandit.FALLBACKS)
    eta_reading: str = parameter("the η of the cumulative gap in the figure: α‖∇J‖ or the constant α", "str",
                                 choices=bandit.ETA_READINGS)
    seeds: int = parameter("independent problems for the seed bands (the first is the main run)", "int",
                           low=1, high=1_000)
    sensitivity_points: int = parameter("step sizes on the log grid 0.01 … 10 of the sensitivity sweep", "int",
                                        low=2, high=200)
    reference_steps: int = parameter("steps of the per-run NumPy loop that cross-checks the engine (0: skip)",
                                     "int", low=0, high=1_000_000)
    dtype: str = parameter("floating-point type of the engine", "str", choices=tuple(bandit.DTYPES))

    def check(self) -> None:
        bandit.check_band((self.band_low, self.band_high))
        if self.reference_steps > self.steps:
            raise ValueError(f"parameter 'reference_steps' = {self.reference_steps} is out of range: allowed "
                             f"0 ≤ reference_steps ≤ steps = {self.steps}")

    @property
    def spec(self) -> bandit.BanditSpec:
        return bandit.BanditSpec(self.dim, self.arms, self.pool_size, self.eval_size, self.init_scale)

    @property
    def band(self) -> tuple[float, float]:
        return (self.band_low, self.band_high)

    @property
    def torch_dtype(self) -> torch.dtype:
        return bandit.DTYPES[self.dtype]

    def sensitivity_grid(self) -> np.ndarray:
        return np.geomspace(*SENSITIVITY_RANGE, self.sensitivity_points)


_PAPER_PROBLEM = dict(dim=10, arms=100, pool_size=100, eval_size=500, init_scale=0.01, steps=2000, step_size=0.1,
                      band_low=0.2, band_high=0.8, fallback="pool", eta_reading="effective", dtype="float64")
PRESETS = {
    # The main run is the paper's workload (≈1 s); ci trims the seeds, the sweep and the NumPy check.
    "ci": dict(_PAPER_PROBLEM, seeds=5, sensitivity_points=7, reference_steps=200),
    "paper": dict(_PAPER_PROBLEM, seeds=20, sensitivity_points=16, reference_steps=2000),
}


# ----------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------


def run(config: Figure1Config, seeds, step_sizes=None, record_every: int = 1, device="cpu"):
    """Simulate ``seeds`` × ``step_sizes`` (default: the config's α) in one batch.

    Returns ``(bandits, trajectories, fallback_warnings)``; rows are seed-major (row = seed_index ·
    len(step_sizes) + step_index). The :class:`~rlvr_dynamics.engines.bandit.EmptyBandWarning` is caught
    and returned as text so the chapter can report it.
    """
    step_sizes = np.atleast_1d(config.step_size if step_sizes is None else step_sizes)
    bandits = bandit.make_bandits(config.spec, seeds, config.steps, device=device, dtype=config.torch_dtype)
    bandits = bandits.repeat(len(step_sizes))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", bandit.EmptyBandWarning)
        result = bandit.simulate_in_groups(bandits, np.tile(step_sizes, len(seeds)), config.steps, band=config.band,
                                           fallback=config.fallback, record_every=record_every)
    messages = [str(w.message) for w in caught if issubclass(w.category, bandit.EmptyBandWarning)]
    return bandits, result, messages


# ----------------------------------------------------------------------------------------------
# Summaries
# ----------------------------------------------------------------------------------------------


def log_odds_fit(log_odds: torch.Tensor, cumulative: torch.Tensor) -> dict[str, float]:
    """Least-squares line of logit J_x(k) − logit J_x(0) on a cumulative gap, pooled over every
    context and recorded step. log_odds, cumulative: (S, E) of one run."""
    change = (log_odds - log_odds[0]).flatten().numpy()
    fit = stats.linregress(cumulative.flatten().numpy(), change)
    return {"slope": fit.slope, "intercept": fit.intercept, "r2": fit.rvalue**2, "points": change.size}


def hitting_steps(values: torch.Tensor, recorded_steps: torch.Tensor, level: float) -> np.ndarray:
    """First recorded step with J ≥ ``level`` per context; NaN where never. values (S, ...) → (...)."""
    reached = values >= level
    first = reached.float().argmax(0)
    steps = recorded_steps[first].double()
    return torch.where(reached.any(0), steps, torch.nan).numpy()


def dominant_arms(pool_best_arm: torch.Tensor) -> torch.Tensor:
    """The arms that are optimal for the most pool contexts (several on a tie)."""
    counts = torch.bincount(pool_best_arm)
    return (counts == counts.max()).nonzero().flatten()


def regimes(trajectories: bandit.BanditTrajectories, run: int) -> dict[str, float]:
    """Shares of converged / stuck / in-between contexts at step K, the arms the policy learned
    (optimal arms of converged contexts), whether the learned arm is a dominant arm of the pool,
    and how well "x's optimal arm is the learned arm" predicts convergence."""
    final = trajectories.value[-1, run]
    converged = final >= CONVERGED_LEVEL
    stuck = final <= STUCK_LEVEL
    best = trajectories.best_arm[run]
    learned = torch.unique(best[converged])
    learned_arm = int(torch.bincount(best[converged]).argmax()) if converged.any() else -1
    has_learned = best == learned_arm
    return {
        "converged": converged.double().mean().item(),
        "stuck": stuck.double().mean().item(),
        "in_between": (~converged & ~stuck).double().mean().item(),
        "decreased": (final < trajectories.value[0, run]).double().mean().item(),
        "learned_arms": len(learned),
        "learned_arm": learned_arm,
        "learned_arm_is_dominant": float(learned_arm in dominant_arms(trajectories.pool_best_arm[run]).tolist()),
        "learned_arm_share": has_learned.double().mean().item(),
        "learned_arm_predicts_convergence": (has_learned == converged).double().mean().item(),
    }


def relative_offset_spread(trajectories: bandit.BanditTrajectories, reading: str = "effective") -> float:
    """Largest spread over contexts of M_x(k) − relative_x(k): zero iff the relative cumulative gap
    is the cumulative gap minus a context-independent constant (Σ_i [Δμ_{x_i}(i)]₊ η_i)."""
    offset = trajectories.cumulative_gap[reading] - trajectories.relative_cumulative_gap[reading]  # (S, B, E)
    return (offset.amax(-1) - offset.amin(-1)).abs().max().item()


def speed_correlations(trajectories: bandit.BanditTrajectories, run: int, reading: str = "effective"
                       ) -> dict[str, float]:
    """Observation 3 in numbers: Spearman ρ between the final relative cumulative gap and the
    steps to reach J ≥ 0.9 (converged contexts), and between it and the log-odds gained per step
    (all contexts)."""
    relative = trajectories.relative_cumulative_gap[reading][-1, run].numpy()
    hit = hitting_steps(trajectories.value[:, run], trajectories.recorded_steps, CONVERGED_LEVEL)
    reached = ~np.isnan(hit)
    gain = ((trajectories.log_odds[-1, run] - trajectories.log_odds[0, run]) / trajectories.recorded_steps[-1]).numpy()
    rho_hit = stats.spearmanr(relative[reached], hit[reached]).statistic if reached.sum() > 2 else np.nan
    return {"rho_relative_vs_steps_to_0.9": rho_hit, "rho_relative_vs_log_odds_gain": stats.spearmanr(relative, gain).statistic,
            "contexts_reaching_0.9": int(reached.sum())}


def theorem1b_margins(trajectories: bandit.BanditTrajectories, bandits: bandit.ContextualBandits, run: int
                      ) -> dict[str, np.ndarray | int]:
    """Theorem 1(b) wherever its hypothesis held: J_x(K) − (15b) at every recorded (K, x) such that
    (15a) held at x for all k < K, with x's own constants L_o = ‖x‖²/2 and G_o = √2‖x‖.

    Returns the margins (≥ 0 where the theorem holds), and how many (K, x) pairs did not meet the
    hypothesis and how many of those fall below the curve anyway.
    """
    norm = torch.linalg.vector_norm(bandits.contexts[run, bandits.evaluation].cpu().double(), dim=-1)  # (E,)
    threshold = 2 * (bounds.bandit_smoothness_bound(norm) + 8 * bounds.bandit_score_bound(norm) ** 2)
    held = trajectories.smallest_alignment_ratio[:, run].double() >= threshold  # (S, E)
    value = trajectories.value[:, run].double()
    bound = bounds.convergence_lower_bound(value[0], trajectories.cumulative_gap["effective"][:, run].double())
    margin = value - bound
    latest = int(trajectories.recorded_steps[held.any(-1).nonzero()[:, 0].max()]) if held.any() else -1
    return {"margins": margin[held].numpy(), "held": int(held.sum()), "not_held": int((~held).sum()),
            "latest_step": latest,
            "below_curve_without_hypothesis": int((margin[~held] < 0).sum())}


def binned_mean(x: np.ndarray, y: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean of y in each bin of x (NaN for empty bins): the per-seed curve behind a seed band."""
    which = np.digitize(x, edges) - 1
    sums = np.bincount(which[(which >= 0) & (which < len(edges) - 1)],
                       weights=y[(which >= 0) & (which < len(edges) - 1)], minlength=len(edges) - 1)
    counts = np.bincount(which[(which >= 0) & (which < len(edges) - 1)], minlength=len(edges) - 1)
    with np.errstate(invalid="ignore"):
        return sums / counts


def sensitivity_table(trajectories: bandit.BanditTrajectories, step_sizes: np.ndarray) -> pd.DataFrame:
    """One row per (seed, α): final mean J, shares of the regimes, learned arms, share of steps
    that fell back, and the log-odds fit of both readings."""
    rows = []
    for index in range(trajectories.value.shape[1]):
        seed_index, step_index = divmod(index, len(step_sizes))
        row = {"seed": int(trajectories.seed[index]), "step_size": float(step_sizes[step_index]),
               "final_J": trajectories.value[-1, index].mean().item(),
               "fell_back": trajectories.fell_back[:, index].double().mean().item(),
               "max_effective_step": trajectories.effective_step[:, index].max().item()}
        row.update({k: v for k, v in regimes(trajectories, index).items() if k != "learned_arm"})
        for reading in bandit.ETA_READINGS:
            fit = log_odds_fit(trajectories.log_odds[:, index], trajectories.cumulative_gap[reading][:, index])
            row[f"slope_{reading}"], row[f"r2_{reading}"] = fit["slope"], fit["r2"]
        rows.append(row)
    return pd.DataFrame(rows)
