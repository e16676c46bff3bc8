"""The chapter *REINFORCE on contextual bandits* (the paper's Figure 1): its parameters, runs and summaries.

The runs are :func:`rlvr_dynamics.engines.bandit.simulate` calls; this module turns trajectories into
the numbers the chapter reports: the engine checks (against the NumPy loop of the definitions, the
recomputed values, the sign of the gap alignment), the margins of Lemma 1 (16) and Theorem 1(b)
(15a)–(15b), the log-odds fits, regimes and rank correlations of the paper's three observations,
what decides the two regimes (the first-order decomposition, the conflict of the stuck contexts with
the learned arm, the share of the log-odds lost to overshooting), the seed bands and the step-size
sweep, the numbers the prose glues in (``*_numbers``), and the data and panels of the chapter's
figures. Every function is pure: trajectories in, arrays, tables or text out (the ``draw_*``
functions draw on the Axes they are given).

Shapes: S recorded steps, K steps run, B runs, P pool and E evaluation contexts, d dimensions, N arms.
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
from rlvr_dynamics.engines.bandit import CONVERGED_LEVEL
from rlvr_dynamics.theory import bounds
from rlvr_dynamics.theory.policies import bandit_conditional_probs, bandit_log_policy

STUCK_LEVEL = 0.1
"""A context has *converged* when J_x(K) ≥ 0.9 (:data:`~rlvr_dynamics.engines.bandit.CONVERGED_LEVEL`) and
is *stuck* when J_x(K) ≤ 0.1."""
SENSITIVITY_RANGE = (0.01, 10.0)
"""The step sizes of the sensitivity sweep: a log grid over [0.01, 10] (the issue's range)."""

# The thresholds of the chapter's findings (stated in the claims and the prose, not tuned to the runs).
LOGISTIC_R2 = 0.6
"""Observation 1: the least R² of logit J_x(k) − logit J_x(0) on M_x(k) called a logistic relation."""
FIRST_ORDER_R2 = 0.99
"""The least R² of a regression that the first-order expansion (16) is said to explain."""
SLOPE_TOLERANCE = 0.05
"""|slope − 1| allowed to a first-order fit: a tenth of the distance between the slope 1 of the
first-order curve (16) and the slope ½ of Theorem 1(b)'s curve (15b)."""
IN_BETWEEN_SHARE = 0.05
"""Observation 2: the largest share of contexts ending with 0.1 < J_x(K) < 0.9 called two regimes."""
ARM_ACCURACY = 0.95
"""The least share of contexts that "converged ⇔ its optimal arm is the learned arm" must classify."""
SPEARMAN_LEVEL = -0.8
"""Observation 3 (recorded): the Spearman ρ between the relative gap and the steps to 0.9 called strong."""
OVERSHOOT_SHARE = 0.01
"""The largest share of the log-odds lost where the first-order term was positive (overshooting,
Theorem 2) that is called playing no part."""
SETUP_NUMBERS = {"0.9": CONVERGED_LEVEL, "0.1": STUCK_LEVEL, "0.01": SENSITIVITY_RANGE[0],
                 "0.6": LOGISTIC_R2, "0.99": FIRST_ORDER_R2, "0.05": SLOPE_TOLERANCE, "5%": IN_BETWEEN_SHARE,
                 "0.95": ARM_ACCURACY, "0.8": -SPEARMAN_LEVEL, "1%": OVERSHOOT_SHARE}
"""Decimals the prose may type: the levels 0.9 / 0.1 (also the paper's α = 0.1, the same number), the
sweep's smallest step size, and the thresholds of the findings; every measured number is glued."""


@dataclass(frozen=True)
class Figure1Config:
    """Parameters of the chapter *REINFORCE on contextual bandits* (Section 5.1)."""

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

    def estimated_peak_bytes(self) -> int:
        """The run's peak memory in bytes from its largest tensors (the interpreter and its libraries,
        ≈ 0.4 GB, not included): the recorded trajectories of the main run, the seed runs and the sweep (all
        kept to the end), the problems, and the largest of the per-step state and the checks. Measured runs
        of 0.3–2 GB came within ×1.5 of it."""
        width = torch.finfo(self.torch_dtype).bits // 8
        contexts = self.pool_size + self.eval_size
        seeds, sweep_runs, steps = self.seeds, self.seeds * self.sensitivity_points, self.steps

        def recorded(runs: int, record_every: int) -> int:
            """(S, 8, B, E) per-context and (S, B, P) pool records; joining groups of runs copies them."""
            joined = 2 if runs > bandit.GROUP_RUNS else 1
            per_step = width * (8 * self.eval_size + self.pool_size)
            return joined * runs * per_step * (steps // record_every + 1)

        records = (recorded(1, 1) + recorded(seeds, 10)  # the main run and the seed runs
                   + recorded(sweep_runs, max(1, steps // 100)))  # the step-size sweep
        problems = (8 * steps * (1 + seeds + sweep_runs)  # the float64 uniforms (B, K) of every run
                    + sweep_runs * (width * (2 * self.dim * self.arms + contexts * self.dim) + 8 * contexts))
        state = 3 * width * min(max(seeds, sweep_runs), bandit.GROUP_RUNS) * contexts * self.arms  # (B, C, N) ×3
        checks = max(5 * 8 * (steps + 1) * self.eval_size,  # Theorem 1(b) on the main run: (S, E) copies
                     4 * 8 * self.eval_size * self.dim * self.arms if self.reference_steps else 0,  # NumPy g± (E, d, N)
                     5 * 8 * self.pool_size * self.eval_size)  # alignment matrices (P, E)
        return records + problems + max(state, checks)


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
    learned = bandit.learned_arms(trajectories, run)
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
    steps to reach J ≥ 0.9 (converged contexts), the same ρ with the final log-odds in place of the
    relative gap (what the relative gap ranks like: it is M_x minus a constant, and M_x(K) is about
    the change in log-odds), the ρ between the relative gap and the log-odds gained per step (all
    contexts), and the median steps to 0.9 of the contexts that reach it (NaN where none does)."""
    relative = trajectories.relative_cumulative_gap[reading][-1, run].numpy()
    hit = hitting_steps(trajectories.value[:, run], trajectories.recorded_steps, CONVERGED_LEVEL)
    reached = ~np.isnan(hit)
    final_log_odds = trajectories.log_odds[-1, run].numpy()
    gain = ((trajectories.log_odds[-1, run] - trajectories.log_odds[0, run]) / trajectories.recorded_steps[-1]).numpy()
    enough = reached.sum() > 2
    return {"rho_relative_vs_steps_to_0.9": stats.spearmanr(relative[reached], hit[reached]).statistic
            if enough else np.nan,
            "rho_final_log_odds_vs_steps_to_0.9": stats.spearmanr(final_log_odds[reached], hit[reached]).statistic
            if enough else np.nan,
            "rho_relative_vs_log_odds_gain": stats.spearmanr(relative, gain).statistic,
            "contexts_reaching_0.9": int(reached.sum()),
            "median_steps_to_0.9": float(np.median(hit[reached])) if reached.any() else np.nan}


def first_order_fits(trajectories: bandit.BanditTrajectories, run: int) -> dict[str, float]:
    """Observation 1 taken apart with the first-order expansion (16).

    logit J_x(K) − logit J_x(0) = Σ_{k<K} Δμ_x(k) η_k + second order = M_x(K) − N_x(K) + second order,
    with N_x = Σ [Δμ_x]₋ η what the steps that hurt x took back. Returns the fit (:func:`log_odds_fit`)
    of the change in log-odds on the signed sum over every context and recorded step (``*_signed``), the
    fit on M_x (effective η) over the converged contexts only (``*_converged``: the first-order curve has
    slope 1, Theorem 1(b)'s curve slope ½), and the largest N_x(K) / M_x(K) of a converged context. The
    converged entries are NaN where no context converged.
    """
    log_odds, signed = trajectories.log_odds[:, run], trajectories.signed_cumulative_alignment[:, run]
    gap = trajectories.cumulative_gap["effective"][:, run]
    fit = log_odds_fit(log_odds, signed)
    result = {"slope_signed": fit["slope"], "r2_signed": fit["r2"], "slope_converged": np.nan,
              "r2_converged": np.nan, "negative_part_share_converged": np.nan}
    converged = trajectories.value[-1, run] >= CONVERGED_LEVEL
    if converged.sum() > 1:
        fit = log_odds_fit(log_odds[:, converged], gap[:, converged])
        negative = (gap[-1] - signed[-1])[converged] / gap[-1][converged]
        result.update(slope_converged=fit["slope"], r2_converged=fit["r2"],
                      negative_part_share_converged=negative.max().item())
    return result


def overshoot_share(trajectories: bandit.BanditTrajectories, run: int) -> float:
    """The part of the log-odds lost that overshooting (Theorem 2) lost: over every context and every
    interval between recorded steps, the decreases of logit J_x where the first-order term Σ Δμ_x η of
    the interval was positive, as a share of all decreases (0 where nothing was lost). With every step
    recorded an interval is one step: a step whose second-order term reversed a favourable first-order
    one, which is Theorem 2's failure; over longer intervals helping and hurting steps mix."""
    change = (trajectories.log_odds[1:, run] - trajectories.log_odds[:-1, run]).double()  # (S − 1, E)
    first_order = (trajectories.signed_cumulative_alignment[1:, run]
                   - trajectories.signed_cumulative_alignment[:-1, run]).double()
    lost = (-change).clamp_min(0)
    total = lost.sum().item()
    return lost[first_order > 0].sum().item() / total if total > 0 else 0.0


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
    """One row per (seed, α): final mean J, :func:`regimes` (shares, learned arms), share of steps that fell
    back, the largest effective step, the log-odds fit of both readings and of the signed sum Σ Δμ_x η, and
    :func:`overshoot_share` over the recorded intervals."""
    rows = []
    for index in range(trajectories.value.shape[1]):
        seed_index, step_index = divmod(index, len(step_sizes))
        row = {"seed": int(trajectories.seed[index]), "step_size": float(step_sizes[step_index]),
               "final_J": trajectories.value[-1, index].mean().item(),
               "fell_back": trajectories.fell_back[:, index].double().mean().item(),
               "max_effective_step": trajectories.step[:, index].max().item()}
        row.update({k: v for k, v in regimes(trajectories, index).items() if k != "learned_arm"})
        for reading in bandit.ETA_READINGS:
            fit = log_odds_fit(trajectories.log_odds[:, index], trajectories.cumulative_gap[reading][:, index])
            row[f"slope_{reading}"], row[f"r2_{reading}"] = fit["slope"], fit["r2"]
        fit = log_odds_fit(trajectories.log_odds[:, index], trajectories.signed_cumulative_alignment[:, index])
        row["slope_signed"], row["r2_signed"] = fit["slope"], fit["r2"]
        row["overshoot_share"] = overshoot_share(trajectories, index)
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# Engine checks
# ----------------------------------------------------------------------------------------------


def engine_tolerance(dtype: str) -> float:
    """Tolerance of the engine's implementation checks: 1e-9 in float64, 1e-3 in float32."""
    return 1e-9 if dtype == "float64" else 1e-3


def band_summary(trajectories: bandit.BanditTrajectories) -> dict[str, list | float]:
    """How empty the curriculum band was, per run: the share of steps that fell back (B,), the
    first step with a pool context in the band (None where never), and the largest pool value at
    step 0 (over every run; 1/N at θ₀ ≈ 0)."""
    fell_back = trajectories.fell_back.double().mean(0)  # (K, B) → (B,)
    first_in_band = [int((~trajectories.fell_back[:, r]).nonzero()[0]) if (~trajectories.fell_back[:, r]).any()
                     else None for r in range(trajectories.fell_back.shape[1])]
    return {"fallback_share": fell_back.tolist(), "first_in_band_step": first_in_band,
            "largest_initial_pool_value": trajectories.pool_value[0].max().item()}


def describe_band(summary: dict, arms: int) -> str:
    """:func:`band_summary` as three printed lines."""
    return (f"largest pool value at step 0: {summary['largest_initial_pool_value']:.4f} (1/N = {1 / arms:.4f})\n"
            f"share of steps that fell back, per seed: {np.round(summary['fallback_share'], 3)}\n"
            f"first step with a pool context in the band, per seed: {summary['first_in_band_step']}")


def band_numbers(summary: dict) -> dict[str, float]:
    """:func:`band_summary`'s numbers for the prose: the largest pool value at step 0 and the smallest and
    largest share of steps that fell back over the runs."""
    return {"band_initial_value": float(summary["largest_initial_pool_value"]),
            "band_fallback_min": float(min(summary["fallback_share"])),
            "band_fallback_max": float(max(summary["fallback_share"]))}


def reference_errors(trajectories: bandit.BanditTrajectories, reference: dict[str, np.ndarray], run: int,
                     steps: int) -> dict[str, float | bool]:
    """The engine's run ``run`` against :func:`~rlvr_dynamics.engines.bandit.simulate_reference_numpy`
    over its first ``steps`` steps (every step recorded): max |ΔJ| and max |ΔM| (effective reading)
    over steps 0 … steps and every context, and whether every training draw is the same."""
    span = slice(0, steps + 1)
    value_error = np.abs(trajectories.value[span, run].numpy() - reference["value"]).max()  # over (steps+1, E)
    gap_error = np.abs(trajectories.cumulative_gap["effective"][span, run].numpy() - reference["cumulative_gap"]).max()
    same_draws = (trajectories.train_index[:steps, run].numpy() == reference["train_index"])  # (steps,)
    return {"value": value_error, "gap": gap_error, "same_draws": bool(same_draws.all())}


def reference_margins(errors: dict[str, float | bool], tolerance: float) -> list[float]:
    """Margins of "engine = NumPy loop": tolerance − max|ΔJ|, tolerance − max|ΔM|, and 0 if the
    training draws agree (−1 if not)."""
    return [tolerance - errors["value"], tolerance - errors["gap"], float(errors["same_draws"]) - 1]


def describe_reference(errors: dict[str, float | bool], steps: int) -> str:
    """:func:`reference_errors` as one printed line."""
    return (f"engine vs NumPy definitions over {steps} steps: max |ΔJ| = {errors['value']:.2e}, "
            f"max |ΔM| = {errors['gap']:.2e}, identical training draws: {errors['same_draws']}")


def recomputation_drift(bandits: bandit.ContextualBandits, trajectories: bandit.BanditTrajectories) -> float:
    """Largest |J_x(K) recomputed from θ_K − the engine's J_x(K)| over every run and evaluation
    context (the engine updates the logits incrementally between exact refreshes)."""
    final_log_prob = bandit_log_policy(trajectories.final_theta.double()[:, None],  # (B, 1, d, N) against (B, E, d)
                                       bandits.contexts[:, bandits.evaluation].cpu().double())  # → (B, E, N)
    final_value = final_log_prob.gather(-1, trajectories.best_arm.unsqueeze(-1)).squeeze(-1).exp()  # (B, E)
    return (final_value - trajectories.value[-1].double()).abs().max().item()


def same_arm_alignment(bandits: bandit.ContextualBandits, trajectories: bandit.BanditTrajectories
                       ) -> tuple[list[float], list[float]]:
    """The sign of Δμ_x(k) for every pool × evaluation pair (the proposition's consequences).

    Returns the smallest Δμ over the pairs that share their optimal arm, at θ₀ and at θ_K of every
    run (2B margins, > 0 by the proposition because x_k · x ≥ 0 on [0, 1]^d), and the share of
    pairs with different optimal arms whose Δμ < 0 at θ_K (B,).
    """
    same_arm_margins, different_negative = [], []
    for r in range(bandits.n_runs):
        for theta in (bandits.theta0[r].cpu().double(), trajectories.final_theta[r].double()):
            pool_x = bandits.contexts[r, bandits.pool].cpu().double()  # (P, d)
            eval_x = bandits.contexts[r, bandits.evaluation].cpu().double()  # (E, d)
            pool_arm, eval_arm = trajectories.pool_best_arm[r], trajectories.best_arm[r]
            alignment = bandit.alignment_matrix(theta, pool_x, pool_arm, eval_x, eval_arm)  # (P, E)
            same = pool_arm[:, None] == eval_arm[None, :]
            same_arm_margins.append(alignment[same].min().item())
        different_negative.append((alignment[~same] < 0).double().mean().item())
    return same_arm_margins, different_negative


def stuck_conflict(bandits: bandit.ContextualBandits, trajectories: bandit.BanditTrajectories
                   ) -> dict[str, list[float]]:
    """The stuck regime as the multi-prompt conflict of the paper's Section 6, per run at θ_K.

    Returns, per run (B,): the largest Δμ_x(θ_K) of a pool context whose optimal arm is the learned arm
    (:func:`regimes`) at a stuck context (J_x(K) ≤ 0.1) — negative: every update at such a training
    context hurts every stuck context; the smallest ‖g⁺_x − g⁻_x‖ / (√2‖x‖) = ‖v_x‖ / √2 of a stuck
    context — near 1: their gap is not small, their alignment is negative; and the number of stuck
    contexts. NaN where a run has no stuck context or no pool context of a learned arm.
    """
    largest, smallest_ratio, count = [], [], []
    for r in range(bandits.n_runs):
        theta = trajectories.final_theta[r].double()
        stuck = trajectories.value[-1, r] <= STUCK_LEVEL
        learned = regimes(trajectories, r)["learned_arm"]
        of_learned = trajectories.pool_best_arm[r] == learned
        count.append(int(stuck.sum()))
        if not stuck.any() or not of_learned.any():
            largest.append(np.nan)
            smallest_ratio.append(np.nan)
            continue
        pool_x = bandits.contexts[r, bandits.pool].cpu().double()[of_learned]  # (P', d)
        eval_x = bandits.contexts[r, bandits.evaluation].cpu().double()[stuck]  # (E', d)
        eval_arm = trajectories.best_arm[r][stuck]
        alignment = bandit.alignment_matrix(theta, pool_x, trajectories.pool_best_arm[r][of_learned], eval_x,
                                            eval_arm)  # (P', E')
        largest.append(alignment.max().item())
        reward = torch.nn.functional.one_hot(eval_arm, theta.shape[-1]).double()
        _, plus, minus = bandit_conditional_probs(theta, eval_x, reward)
        smallest_ratio.append((torch.linalg.vector_norm(plus - minus, dim=-1) / 2**0.5).min().item())
    return {"largest_alignment": largest, "smallest_gap_ratio": smallest_ratio, "stuck_contexts": count}


# ----------------------------------------------------------------------------------------------
# Margins of the theory: the relative gap, Lemma 1 (16) and Theorem 1(b)
# ----------------------------------------------------------------------------------------------


def relative_offset_margin(main: bandit.BanditTrajectories, seeds: bandit.BanditTrajectories, reading: str,
                           tolerance: float) -> list[float]:
    """Margin of "relative gap = M_x − a context-independent constant" over the main and the seed
    runs: tolerance · (1 + max |M| of the seed runs) − the largest :func:`relative_offset_spread`."""
    spread = max(relative_offset_spread(r, reading) for r in (main, seeds))
    scale = float(seeds.cumulative_gap[reading].abs().max())
    return [tolerance * (1 + scale) - spread]


def lemma1_margins(bandits: bandit.ContextualBandits, trajectories: bandit.BanditTrajectories,
                   tolerance: float) -> list[float]:
    """Lemma 1 (16) summed over steps, per run: the smallest over contexts x and recorded K of
    (L_o + 8G_o²) Σ_{k<K} η_k² − |logit J_x(K) − logit J_x(0) − Σ_{k<K} Δμ_x(k) η_k| + tolerance,
    with x's constants L_o = ‖x‖²/2, G_o = √2‖x‖ (effective η). (B,), ≥ 0 where the lemma holds."""
    lemma_margins = []
    for r in range(bandits.n_runs):
        norm = torch.linalg.vector_norm(bandits.contexts[r, bandits.evaluation].cpu().double(), dim=-1)  # (E,)
        constant = bounds.bandit_smoothness_bound(norm) + 8 * bounds.bandit_score_bound(norm) ** 2  # (E,)
        eta2 = trajectories.step[:, r].double() ** 2  # (K,)
        cumulative_eta2 = torch.cat([torch.zeros(1, dtype=torch.float64),  # (K + 1,) at the recorded steps → (S,)
                                     eta2.cumsum(0)])[trajectories.recorded_steps]
        residual = (trajectories.log_odds[:, r] - trajectories.log_odds[0, r]
                    - trajectories.signed_cumulative_alignment[:, r]).double().abs()  # (S, E)
        lemma_margins.append((constant[None, :] * cumulative_eta2[:, None] - residual + tolerance).min().item())
    return lemma_margins


def theorem1b_headline(theorem: dict[str, np.ndarray | int]) -> dict[str, int]:
    """From :func:`theorem1b_margins`: the (K, x) pairs where (15a) held up to K, all pairs, and the
    pairs below the (15b) curve (all outside the hypothesis when the theorem holds)."""
    held = theorem["held"]
    return {"theorem1b_hypothesis_pairs": held, "theorem1b_pairs": held + theorem["not_held"],
            "below_curve_pairs": theorem["below_curve_without_hypothesis"]}


def describe_theorem1b(theorem: dict[str, np.ndarray | int]) -> str:
    """:func:`theorem1b_margins` as two printed lines."""
    numbers = theorem1b_headline(theorem)
    held, total, below = numbers["theorem1b_hypothesis_pairs"], numbers["theorem1b_pairs"], numbers["below_curve_pairs"]
    return (f"(15a) held up to K at {held} of {total} (K, x) pairs; the largest such K: {theorem['latest_step']}\n"
            f"pairs below the (15b) curve, all outside the hypothesis: {below} ({below / total:.1%})")


def theorem1b_curve(initial_value: float, cumulative_gap: np.ndarray) -> np.ndarray:
    """The (15b) curve J₀ / (J₀ + (1 − J₀) e^{−M/2}) on a grid of M (the figures' solid line).

    A Python-float J₀ enters as a float32 tensor (``torch.tensor``), as the book's figures draw it."""
    return bounds.convergence_lower_bound(torch.tensor(initial_value), torch.tensor(cumulative_gap)).numpy()


def first_order_curve(initial_value: float, cumulative_gap: np.ndarray) -> np.ndarray:
    """The first-order (16) curve J₀ / (J₀ + (1 − J₀) e^{−M}) = σ(logit J₀ + M) on a grid of M."""
    return torch.sigmoid(bounds.logit(torch.tensor(initial_value)) + torch.tensor(cumulative_gap)).numpy()


# ----------------------------------------------------------------------------------------------
# The main run's observations
# ----------------------------------------------------------------------------------------------


def main_fits(trajectories: bandit.BanditTrajectories, run: int) -> dict[str, dict[str, float]]:
    """Observation 1: :func:`log_odds_fit` of run ``run`` on the cumulative gap of each η reading, on
    the signed sum Σ Δμ_x η (no positive part), and on the effective M_x over the converged contexts
    only (left out where fewer than two converged)."""
    fits = {reading: log_odds_fit(trajectories.log_odds[:, run], trajectories.cumulative_gap[reading][:, run])
            for reading in bandit.ETA_READINGS}
    fits["signed (Σ Δμ η, no positive part)"] = log_odds_fit(trajectories.log_odds[:, run],
                                                             trajectories.signed_cumulative_alignment[:, run])
    converged = trajectories.value[-1, run] >= CONVERGED_LEVEL
    if converged.sum() > 1:
        fits["effective, converged contexts only"] = log_odds_fit(
            trajectories.log_odds[:, run][:, converged], trajectories.cumulative_gap["effective"][:, run][:, converged])
    return fits


def fit_table(fits: dict[str, dict[str, float]]) -> pd.DataFrame:
    """The fits of :func:`main_fits`, one row per regressor."""
    table = pd.DataFrame(fits).T[["slope", "intercept", "r2", "points"]]
    table.index.name = "logit J_k − logit J_0 regressed on"
    return table


def main_summary(fits: dict[str, dict[str, float]], regime: dict[str, float], speed: dict[str, float]) -> str:
    """The main run's fits, regimes (:func:`regimes`) and rank correlations (:func:`speed_correlations`)
    as printed text (4 significant digits)."""
    with pd.option_context("display.float_format", "{:.4g}".format):
        return "\n\n".join([fit_table(fits).to_string(), pd.Series(regime).to_string(), pd.Series(speed).to_string()])


def main_headline(fits: dict[str, dict[str, float]], regime: dict[str, float], speed: dict[str, float]) -> dict:
    """The main run's fits, regimes and rank correlations as headline numbers (plain floats)."""
    return dict(log_odds_fit={k: {m: float(v) for m, v in f.items()} for k, f in fits.items()},
                regimes_main=regime, speed_correlations_main={k: float(v) for k, v in speed.items()})


def main_numbers(trajectories: bandit.BanditTrajectories, run: int, fits: dict[str, dict[str, float]],
                 regime: dict[str, float], speed: dict[str, float], theorem: dict, conflict: dict[str, list],
                 overshoot: float) -> dict[str, float]:
    """The main run's numbers for the prose (``main_*``, plain floats): the fits of :func:`main_fits`
    (1 − R² for the signed sum), the largest effective step, :func:`first_order_fits`' share N/M of the
    converged contexts, :func:`theorem1b_margins`' counts, :func:`regimes`, :func:`stuck_conflict`
    (run ``run``), :func:`speed_correlations` and the per-step :func:`overshoot_share`."""
    signed, converged = fits["signed (Σ Δμ η, no positive part)"], first_order_fits(trajectories, run)
    pairs = theorem["held"] + theorem["not_held"]
    return {
        "main_slope_effective": fits["effective"]["slope"], "main_r2_effective": fits["effective"]["r2"],
        "main_slope_nominal": fits["nominal"]["slope"], "main_r2_nominal": fits["nominal"]["r2"],
        "main_max_step": trajectories.step[:, run].max().item(),
        "main_slope_signed": signed["slope"], "main_unexplained_signed": 1 - signed["r2"],
        "main_slope_converged": converged["slope_converged"],
        "main_unexplained_converged": 1 - converged["r2_converged"],
        "main_negative_share": converged["negative_part_share_converged"],
        "main_hypothesis_pairs": int(theorem["held"]), "main_pairs": int(pairs),
        "main_hypothesis_latest": int(theorem["latest_step"]),
        "main_below_share": theorem["below_curve_without_hypothesis"] / pairs,
        "main_converged": regime["converged"], "main_stuck": regime["stuck"], "main_in_between": regime["in_between"],
        "main_decreased": regime["decreased"], "main_accuracy": regime["learned_arm_predicts_convergence"],
        "main_stuck_alignment": conflict["largest_alignment"][run],
        "main_stuck_gap_ratio": conflict["smallest_gap_ratio"][run],
        "main_rho_relative": speed["rho_relative_vs_steps_to_0.9"],
        "main_rho_log_odds": speed["rho_final_log_odds_vs_steps_to_0.9"],
        "main_overshoot": overshoot,
    }


# ----------------------------------------------------------------------------------------------
# Findings over seeds
# ----------------------------------------------------------------------------------------------


def per_seed_table(trajectories: bandit.BanditTrajectories, seeds, reading: str,
                   bandits: bandit.ContextualBandits | None = None) -> pd.DataFrame:
    """One row per seed run, indexed by seed: :func:`regimes`, :func:`speed_correlations`, the R² of
    both η readings and the slope of the effective one (:func:`log_odds_fit`), :func:`first_order_fits`,
    :func:`overshoot_share` (over the recorded intervals) and, given the runs' ``bandits``,
    :func:`stuck_conflict`."""
    log_odds, gap = trajectories.log_odds, trajectories.cumulative_gap  # (S, B, E) each
    conflict = stuck_conflict(bandits, trajectories) if bandits is not None else None
    rows = []
    for r, s in enumerate(seeds):
        row = {**regimes(trajectories, r), **speed_correlations(trajectories, r, reading),
               **{f"r2_{eta}": log_odds_fit(log_odds[:, r], gap[eta][:, r])["r2"] for eta in bandit.ETA_READINGS},
               "slope_effective": log_odds_fit(log_odds[:, r], gap["effective"][:, r])["slope"],
               **first_order_fits(trajectories, r), "overshoot_share": overshoot_share(trajectories, r), "seed": s}
        if conflict is not None:
            row.update({"stuck_largest_alignment": conflict["largest_alignment"][r],
                        "stuck_smallest_gap_ratio": conflict["smallest_gap_ratio"][r]})
        rows.append(row)
    return pd.DataFrame(rows).set_index("seed")


def first_order_margins(r2: pd.Series, slope: pd.Series) -> pd.Series:
    """Margins of "the first-order expansion explains this regression": min(R² − 0.99, 0.05 − |slope − 1|)
    per row (≥ 0 where both hold; NaN stays NaN, a failure)."""
    return np.minimum(r2 - FIRST_ORDER_R2, SLOPE_TOLERANCE - (slope - 1).abs())


def finding_margins(per_seed: pd.DataFrame, main_overshoot: float) -> dict[str, pd.Series | list]:
    """The chapter's empirical findings (the paper's observations 1 and 2, what explains the two regimes,
    and the absence of overshooting), claim text → margins (≥ 0 where the finding holds): per seed from
    :func:`per_seed_table` (with :func:`stuck_conflict`'s columns), and for the overshooting claim also the
    main run's :func:`overshoot_share` per step (``main_overshoot``) first."""
    return {
        "Observation 1: effective-η reading fits the logistic relation (R² ≥ 0.6, every seed)":
            per_seed["r2_effective"] - LOGISTIC_R2,
        "First order (16): Δ logit J_x on Σ Δμ_x η has R² ≥ 0.99 and slope within 0.05 of 1 (every seed)":
            first_order_margins(per_seed["r2_signed"], per_seed["slope_signed"]),
        "Converged contexts follow the first-order curve (slope 1), not (15b) (slope ½): Δ logit J_x on M_x has "
        "R² ≥ 0.99 and slope within 0.05 of 1 (every seed)":
            first_order_margins(per_seed["r2_converged"], per_seed["slope_converged"]),
        "Observation 2: two regimes — at most 5% of contexts end with 0.1 < J_K < 0.9 (every seed)":
            IN_BETWEEN_SHARE - per_seed["in_between"],
        "Converged ⇔ optimal arm is the learned arm (accuracy ≥ 0.95, every seed)":
            per_seed["learned_arm_predicts_convergence"] - ARM_ACCURACY,
        "Exactly one arm is learned at α = 0.1 (every seed)": -(per_seed["learned_arms"] - 1).abs(),
        "The learned arm is a most frequent optimal arm of the pool (every seed)":
            per_seed["learned_arm_is_dominant"] - 1,
        "Stuck contexts conflict with the learned arm: at θ_K, Δμ_x < 0 for every pool context of the learned arm "
        "at every stuck context (every seed)":
            -per_seed["stuck_largest_alignment"],
        "No overshooting (Theorem 2) at α = 0.1: ≤ 1% of the log-odds lost is lost where Δμ_x η > 0 (main run per "
        "step, seed runs per recorded interval)":
            [OVERSHOOT_SHARE - main_overshoot, *(OVERSHOOT_SHARE - per_seed["overshoot_share"])],
    }


def record_margins(per_seed: pd.DataFrame) -> dict[str, pd.Series]:
    """Observations the chapter reports but does not claim, claim text → per-seed margins: Observation 3,
    whose ranking is that of M_x(K) (the relative gap is M_x minus a constant) and so, to first order,
    that of the final log-odds — near-tautological (contexts that reach 0.9 sooner have more steps left
    to gain log-odds)."""
    return {"Observation 3: Spearman(relative gap, steps to 0.9) ≤ −0.8 among converged contexts (every seed)":
            SPEARMAN_LEVEL - per_seed["rho_relative_vs_steps_to_0.9"]}


def seed_numbers(per_seed: pd.DataFrame, different_negative) -> dict[str, float]:
    """The seed runs' numbers for the prose (``seeds_*``, plain floats): ranges over seeds of the columns of
    :func:`per_seed_table` that the findings and records test, and of the share of different-arm pool ×
    evaluation pairs with Δμ < 0 at θ_K (``different_negative``, from :func:`same_arm_alignment`)."""
    low, high = per_seed.min(), per_seed.max()
    rho_gap = (per_seed["rho_relative_vs_steps_to_0.9"] - per_seed["rho_final_log_odds_vs_steps_to_0.9"]).abs()
    share_gap = (per_seed["converged"] - per_seed["learned_arm_share"]).abs()
    numbers = {f"seeds_{column}_{end}": float(frame[column]) for end, frame in (("min", low), ("max", high))
               for column in ("r2_effective", "slope_signed", "slope_converged", "in_between", "stuck",
                              "learned_arm_predicts_convergence", "stuck_largest_alignment",
                              "stuck_smallest_gap_ratio", "rho_relative_vs_steps_to_0.9", "overshoot_share",
                              "median_steps_to_0.9")}
    return {**numbers, "seeds_unexplained_signed_max": float((1 - per_seed["r2_signed"]).max()),
            "seeds_unexplained_converged_max": float((1 - per_seed["r2_converged"]).max()),
            "seeds_negative_share_max": float(high["negative_part_share_converged"]),
            "seeds_converged_vs_learned_share": float(share_gap.max()),
            "seeds_rho_difference_max": float(rho_gap.max()),
            "seeds_different_negative_min": float(min(different_negative)),
            "seeds_different_negative_max": float(max(different_negative)),
            "seeds_count": len(per_seed)}


def describe_per_seed(per_seed: pd.DataFrame) -> str:
    """:func:`per_seed_table` as printed text, one line per quantity and one column per seed (4
    significant digits, without the learned arm's index)."""
    with pd.option_context("display.float_format", "{:.4g}".format, "display.width", 200):
        return per_seed.drop(columns=["learned_arm"]).T.to_string()


# ----------------------------------------------------------------------------------------------
# Figure 1: data and panels
# ----------------------------------------------------------------------------------------------


def regime_labels(final_value: np.ndarray) -> np.ndarray:
    """The regime of each context from its final value J_x(K): converged, stuck or in between."""
    return np.where(final_value >= CONVERGED_LEVEL, r"converged ($J_K \geq 0.9$)",
                    np.where(final_value <= STUCK_LEVEL, r"stuck ($J_K \leq 0.1$)", "in between"))


@dataclass(frozen=True)
class RunView:
    """One run's recorded curves as NumPy arrays, for the panels of Figure 1.

    Attributes:
        steps: (S,) the recorded steps.
        value: (S, E) J_x(k).
        gap: (S, E) the cumulative gap M_x(k) of the figure's η reading.
        relative: (S, E) the relative cumulative gap of that reading.
        hit: (E,) the first recorded step with J_x ≥ 0.9 (NaN where never).
        reading: the η reading.
    """

    steps: np.ndarray
    value: np.ndarray
    gap: np.ndarray
    relative: np.ndarray
    hit: np.ndarray
    reading: str

    @classmethod
    def of(cls, trajectories: bandit.BanditTrajectories, run: int, reading: str) -> RunView:
        return cls(trajectories.recorded_steps.numpy(), trajectories.value[:, run].numpy(),
                   trajectories.cumulative_gap[reading][:, run].numpy(),
                   trajectories.relative_cumulative_gap[reading][:, run].numpy(),
                   hitting_steps(trajectories.value[:, run], trajectories.recorded_steps, CONVERGED_LEVEL), reading)

    @property
    def initial_value(self) -> float:
        """J₀, the mean value of the evaluation contexts at step 0."""
        return float(np.mean(self.value[0]))


def value_gap_points(view: RunView, every: int = 20) -> pd.DataFrame:
    """Panel 1's points: (M, J, step) of every context at every ``every``-th recorded step."""
    thin = slice(None, None, every)
    return pd.DataFrame({"M": view.gap[thin].ravel(), "J": view.value[thin].ravel(),
                         "step": np.repeat(view.steps[thin], view.value.shape[1])})


def gap_curves(view: RunView, shown: np.ndarray, every: int = 10) -> pd.DataFrame:
    """Panel 2's curves: M_x(k) at every ``every``-th recorded step of the contexts ``shown``, with
    each context's regime (:func:`regime_labels`); context-major rows."""
    label = regime_labels(view.value[-1])
    steps = view.steps[::every]
    return pd.DataFrame({"step": np.tile(steps, len(shown)), "M": view.gap[::every][:, shown].T.ravel(),
                         "context": np.repeat(shown, len(steps)), "regime": np.repeat(label[shown], len(steps))})


def draw_value_vs_gap(ax, view: RunView) -> None:
    """Panel 1: J_x(k) against M_x(k), coloured by step, with the (15b) and first-order curves."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.scatterplot(data=value_gap_points(view), x="M", y="J", hue="step", palette="viridis", s=4, linewidth=0,
                    alpha=0.5, ax=ax, legend=False, rasterized=True)  # rasterized: a small SVG despite 50k points
    grid = np.linspace(0, view.gap.max(), 300)
    ax.plot(grid, theorem1b_curve(view.initial_value, grid), "k-", lw=1.5,
            label=r"Theorem 1(b): $J_0/(J_0 + (1-J_0)e^{-M/2})$")
    ax.plot(grid, first_order_curve(view.initial_value, grid), "k--", lw=1,
            label=r"first order (16): $J_0/(J_0 + (1-J_0)e^{-M})$")
    ax.set(xlabel=f"cumulative gradient gap $M_x(k)$ ({view.reading} $\\eta$)", ylabel="value $J_x(k)$",
           title="(1) value vs cumulative gap")
    ax.legend(loc="lower right")
    norm = plt.Normalize(0, view.steps[-1])
    ax.figure.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label="step $k$")


def draw_gap_over_steps(ax, view: RunView, rng: np.random.Generator, contexts: int = 120) -> None:
    """Panel 2: M_x(k) over steps for ``contexts`` evaluation contexts drawn by ``rng``, by regime."""
    import seaborn as sns

    shown = rng.choice(view.value.shape[1], size=min(contexts, view.value.shape[1]), replace=False)
    sns.lineplot(data=gap_curves(view, shown), x="step", y="M", units="context", estimator=None, hue="regime", lw=0.7,
                 alpha=0.7, ax=ax)
    ax.set(xlabel="step $k$", ylabel="cumulative gap $M_x(k)$",
           title=f"(2) cumulative gap over steps ({len(shown)} contexts)")
    ax.legend(title=None)


def draw_speed(ax, view: RunView) -> None:
    """Panel 3: the final relative cumulative gap against the steps to reach J ≥ 0.9 (contexts that
    never do are drawn above K)."""
    reached = ~np.isnan(view.hit)
    ax.scatter(view.relative[-1][reached], view.hit[reached], s=8, alpha=0.6, label="reached J ≥ 0.9")
    ax.scatter(view.relative[-1][~reached], np.full((~reached).sum(), view.steps[-1] * 1.15), s=8, alpha=0.4,
               marker="x", color="crimson", label="never (drawn above K)")
    ax.set(xlabel="relative cumulative gap at $K$", ylabel="steps to reach $J \\geq 0.9$", yscale="log",
           title="(3) relative gap vs speed of convergence")
    ax.legend()


def seed_band_frames(trajectories: bandit.BanditTrajectories, seeds, reading: str, bins: int = 40
                     ) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The data of the seed-band figure, computed per seed.

    Returns the bin centres (bins,) on [0, max M], and three frames: the mean J per bin of M per
    seed (:func:`binned_mean`, empty bins dropped), the median M per recorded step of the converged
    and the other contexts per seed, and the final relative gap against the steps to J ≥ 0.9 of the
    contexts that get there (seed as text: a categorical hue).
    """
    edges = np.linspace(0, float(trajectories.cumulative_gap[reading].max()), bins + 1)
    centres = (edges[1:] + edges[:-1]) / 2
    rows_binned, rows_regime, rows_speed = [], [], []
    for r, s in enumerate(seeds):
        gap_r = trajectories.cumulative_gap[reading][:, r].numpy()  # (S, E)
        value_r = trajectories.value[:, r].numpy()  # (S, E)
        rows_binned.append(pd.DataFrame({"M": centres, "J": binned_mean(gap_r.ravel(), value_r.ravel(), edges),
                                         "seed": s}))
        converged_r = value_r[-1] >= CONVERGED_LEVEL
        for name, mask in (("converged", converged_r), ("not converged", ~converged_r)):
            if mask.any():
                rows_regime.append(pd.DataFrame({"step": trajectories.recorded_steps.numpy(),
                                                 "median M": np.median(gap_r[:, mask], axis=1),
                                                 "regime": name, "seed": s}))
        hit_r = hitting_steps(trajectories.value[:, r], trajectories.recorded_steps, CONVERGED_LEVEL)
        ok = ~np.isnan(hit_r)
        relative_r = trajectories.relative_cumulative_gap[reading][-1, r].numpy()  # (E,)
        rows_speed.append(pd.DataFrame({"relative gap": relative_r[ok], "steps to 0.9": hit_r[ok], "seed": str(s)}))
    return centres, pd.concat(rows_binned).dropna(), pd.concat(rows_regime), pd.concat(rows_speed)


# ----------------------------------------------------------------------------------------------
# Sensitivity to the step size
# ----------------------------------------------------------------------------------------------


def sweep(config: Figure1Config, seeds, device="cpu") -> tuple[np.ndarray, bandit.BanditTrajectories]:
    """The step-size sweep: every seed × every α of :meth:`Figure1Config.sensitivity_grid` in one
    batch, about 100 recorded steps per run. Returns the grid and the trajectories."""
    grid = config.sensitivity_grid()
    _, trajectories, _ = run(config, seeds, step_sizes=grid, record_every=max(1, config.steps // 100), device=device)
    return grid, trajectories


SENSITIVITY_OUTCOME_COLUMNS = ("final_J", "converged", "stuck", "in_between", "learned_arms", "fell_back")
"""The sweep's outcome columns (one table of the page)."""
SENSITIVITY_FIT_COLUMNS = ("r2_effective", "r2_nominal", "slope_signed", "overshoot_share", "max_effective_step")
"""The sweep's first-order-fit and overshooting columns (the other table: together they are too wide for a page)."""


def sensitivity_summary(table: pd.DataFrame) -> pd.DataFrame:
    """The mean over seeds of :func:`sensitivity_table`'s main columns (:data:`SENSITIVITY_OUTCOME_COLUMNS`,
    then :data:`SENSITIVITY_FIT_COLUMNS`), one row per step size."""
    return table.groupby("step_size")[list(SENSITIVITY_OUTCOME_COLUMNS + SENSITIVITY_FIT_COLUMNS)].mean()


def at_least(table: pd.DataFrame, step_size: float) -> pd.DataFrame:
    """The rows of :func:`sensitivity_table` with α ≥ ``step_size`` (to rounding of the grid)."""
    return table[table["step_size"] >= step_size * (1 - 1e-9)]


def sweep_record_margins(table: pd.DataFrame, step_size: float) -> dict[str, pd.Series]:
    """The sweep's recorded observations, claim text → margins, neither claimed:

    - per (seed, α) row: 1% − the :func:`overshoot_share` over the recorded intervals (the largest steps
      do overshoot on some problems);
    - per seed: at every α ≥ ``step_size`` (the paper's α), the converged contexts are those of the learned
      arm — the smallest accuracy of :func:`regimes`' rule over those α, minus 0.95. It holds at every seed
      of the ci preset's sweep, but at the paper preset's 20 seeds two problems learn a second arm at some
      α ≥ 1, whose contexts are still part-way after 2000 steps, and the rule falls to 0.73 (measured
      2026-11-30): a statement about most problems, not every one (:func:`sensitivity_numbers` counts)."""
    accuracy = at_least(table, step_size).groupby("seed")["learned_arm_predicts_convergence"].min()
    return {"No step size of the sweep overshoots: ≤ 1% of the log-odds lost is lost where Δμ_x η > 0 "
            "(every seed and α, per recorded interval)": OVERSHOOT_SHARE - table["overshoot_share"],
            "At every α ≥ 0.1 of the sweep, converged ⇔ optimal arm is the learned arm (accuracy ≥ 0.95, every seed)":
            accuracy - ARM_ACCURACY}


def overshoot_text(table: pd.DataFrame) -> str:
    """Where the sweep overshoots (:func:`overshoot_share` > 1%), in words for the prose: how many runs,
    at which step sizes, and the largest share (with its α and seed)."""
    worst = table.loc[table["overshoot_share"].idxmax()]
    over = table[table["overshoot_share"] > OVERSHOOT_SHARE]
    largest = (f"the largest share is {worst['overshoot_share']:.2g} (α = {worst['step_size']:.3g}, "
               f"seed {int(worst['seed'])})")
    if over.empty:
        return f"no run of the sweep exceeds 1%; {largest}"
    return f"{len(over)} of the {len(table)} runs exceed 1%, all at α ≥ {over['step_size'].min():.3g}; {largest}"


def sensitivity_numbers(table: pd.DataFrame, step_size: float) -> dict[str, float | str]:
    """The sweep's numbers for the prose (``sweep_*``): the final value at the smallest α, how many seeds
    learned an arm at the second, and over the runs with α ≥ ``step_size``: the most arms learned, how many
    learned an arm that is not the pool's dominant one, the smallest accuracy of the learned-arm rule, the
    largest spread over α of a seed's converged share among runs that learned the dominant arm, the
    smallest share of steps that fell back, the range of the R² of both readings; the slope of the signed
    regression at the largest α; and :func:`overshoot_text`."""
    grid = np.sort(table["step_size"].unique())
    above, largest = at_least(table, step_size), table[table["step_size"] == grid[-1]]
    dominant = above[above["learned_arm_is_dominant"] == 1]
    spread = dominant.groupby("seed")["converged"].agg(lambda c: c.max() - c.min())
    return {
        "sweep_first_final_J_max": float(table.loc[table["step_size"] == grid[0], "final_J"].max()),
        "sweep_second_alpha": float(grid[1]) if len(grid) > 1 else float("nan"),
        "sweep_second_took_off": int((table.loc[table["step_size"] == grid[1], "learned_arms"] > 0).sum())
        if len(grid) > 1 else 0,
        "sweep_seeds": int(table["seed"].nunique()), "sweep_runs_above": len(above),
        "sweep_max_learned_arms": int(above["learned_arms"].max()),
        "sweep_not_dominant": int((above["learned_arm_is_dominant"] < 1).sum()),
        "sweep_accuracy_min": float(above["learned_arm_predicts_convergence"].min()),
        "sweep_rule_below": int((above["learned_arm_predicts_convergence"] < ARM_ACCURACY).sum()),
        "sweep_two_arm_runs": int((above["learned_arms"] > 1).sum()),
        "sweep_dominant_spread_max": float(spread.max()) if len(spread) else float("nan"),
        "sweep_fell_back_min": float(above["fell_back"].min()),
        "sweep_r2_effective_min": float(above["r2_effective"].min()),
        "sweep_r2_effective_max": float(above["r2_effective"].max()),
        "sweep_r2_nominal_min": float(above["r2_nominal"].min()),
        "sweep_r2_nominal_max": float(above["r2_nominal"].max()),
        "sweep_largest_alpha": float(grid[-1]),
        "sweep_slope_signed_largest_min": float(largest["slope_signed"].min()),
        "sweep_slope_signed_largest_max": float(largest["slope_signed"].max()),
        "sweep_overshoot_text": overshoot_text(table),
    }


def describe_sensitivity(summary: pd.DataFrame) -> str:
    """:func:`sensitivity_summary` as printed text (3 significant digits)."""
    with pd.option_context("display.float_format", "{:.3g}".format, "display.width", 200):
        return summary.to_string()


R2_READINGS = {"r2_effective": "M read with the effective step η", "r2_nominal": "M read with the nominal step α"}
"""How the sweep's figure names the two readings of the cumulative gap M (columns of :func:`sensitivity_table`)."""


def sensitivity_frames(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long frames of :func:`sensitivity_table` for the sweep's first two panels: (seed, step_size,
    quantity, value) for the final value, the converged share and the learned arm's share; and
    (seed, step_size, reading, R²) for both η readings."""
    long = table.rename(columns={"final_J": "mean final J", "converged": "share converged",
                                 "learned_arm_share": "learned arm's share"}).melt(
        id_vars=["seed", "step_size"], value_vars=["mean final J", "share converged", "learned arm's share"],
        var_name="quantity")
    fits_long = table.rename(columns=R2_READINGS).melt(
        id_vars=["seed", "step_size"], value_vars=list(R2_READINGS.values()), var_name="reading", value_name="R²")
    return long, fits_long


def draw_band_and_arms(ax, table: pd.DataFrame) -> None:
    """The sweep's third panel: the share of steps with an empty band (left axis) and the number of
    learned arms (right axis, whole numbers) against α, each a mean over seeds with the seed range as band."""
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    sns.lineplot(data=table, x="step_size", y="fell_back", errorbar=("pi", 100), marker="o", ax=ax,
                 label="share of steps with an empty band", legend=False)
    right = ax.twinx()
    sns.lineplot(data=table, x="step_size", y="learned_arms", errorbar=("pi", 100), marker="s", ax=right,
                 color="crimson", label="arms learned (right axis)", legend=False)
    right.set(ylabel="arms learned", ylim=(-0.05, max(2, table["learned_arms"].max()) + 0.05))
    right.yaxis.set_major_locator(MaxNLocator(integer=True))  # a count: whole arms only
    right.grid(False)
    handles = ax.get_lines()[:1] + right.get_lines()[:1]
    ax.legend(handles, [h.get_label() for h in handles], loc="lower right")
    ax.set(xscale="log", xlabel="step size α", ylabel="share of steps with an empty band",
           title="Curriculum band and learned arms")
