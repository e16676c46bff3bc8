"""The chapter *Trajectory-level theory*: parameters, the runs behind each check, their margins,
tables, headline numbers and figure panels.

Instances: the three-response softmax of :mod:`rlvr_dynamics.engines.three_response` (Theorem 2's
construction, its critical step, and the Theorem-1 / Corollary-1 runs) and the Section-5.1 bandit of
:mod:`rlvr_dynamics.engines.bandit` (Lemma 1 at every step; the threshold sweep with constant steps).
The random linear-softmax bandits of the Assumption-1 and expansion checks
(:func:`rlvr_dynamics.theory.policies.random_bandits`) are drawn by the notebook and passed in. The
expansion's Hessian terms are computed by autograd on any policy (:func:`second_order_terms`), for the
log-linear families and for a softmax with non-linear logits (:class:`TwoLayerPolicies`).

Every margin is ≥ 0 exactly when its claim holds (one entry per case).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from rlvr_dynamics.chapters import statistics
from rlvr_dynamics.config import parameter
from rlvr_dynamics.engines import bandit, three_response
from rlvr_dynamics.engines.three_response import DIRECTION_RULES, Trajectories
from rlvr_dynamics.theory import DTYPE, bounds, gaps
from rlvr_dynamics.theory.bounds import CURVATURE, LEMMA_CONSTANT, SCORE_BOUND, SMOOTHNESS
from rlvr_dynamics.theory.policies import bandit_log_policy, bandit_scores

SETUP_NUMBERS: dict[str, float] = {}
"""Decimals the prose may type: none (every measured number is glued from the run, constants are in maths)."""
SWEEP_RANGE = (1e-4, 1.0)
PHASES = ("converges", "stagnates", "collapses")
FLOAT_SLACK = 1e-12
"""Rounding of a difference of two log-odds (|f| ≲ 100) in float64."""
MEASURABLE = 1e-9
"""Second-order terms below this are rounding: the Lemma-1 ratio is taken only where (L_o + G_o²/2)η² exceeds it."""
SHARP_CONSTANT = SMOOTHNESS + SCORE_BOUND**2 / 2
"""L_o + G_o²/2, the constant of Lemma 1 that the chapter's proof gives (sharper than L_o + 8G_o²)."""
UNIFORM_GAP = math.sqrt(1.5)
"""The gap direction's alignment on the three-response softmax is √(1 + ‖π⁻‖²) ≥ √(3/2) (Corollary 1)."""
LEMMA1_BANDIT_UPDATES = (("reinforce", [0.1, 1.0, 10.0]), ("normalized", [0.01, 0.1, 1.0]))
"""The Section-5.1 updates of the Lemma-1 check and their step sizes (α for REINFORCE, η for constant length)."""


@dataclass(frozen=True)
class TrajectoryConfig:
    """Parameters of the chapter *Trajectory-level theory*."""

    alignment: float = parameter("Δμ of the Theorem-2 instance (0 < Δμ ≤ √(L_o+G_o²)/120 ≈ 0.0132)", "float",
                                 low=1e-6, high=math.sqrt(CURVATURE) / 120)
    initial_value: float = parameter("J₀ of the Theorem-2 instance", "float", low=0.01, high=0.99)
    steps: int = parameter("steps K of the three-response runs and the threshold sweep", "int", low=10,
                           high=100_000)
    sweep_points: int = parameter("constant step sizes on the log grid 1e-4 … 1 (at least 60)", "int", low=60,
                                  high=2_000)
    phase_points: int = parameter("initial values J₀ (and alignments Δμ) of the phase diagrams", "int", low=3,
                                  high=200)
    bandit_seeds: int = parameter("Section-5.1 problems for Lemma 1 and the bandit sweep", "int", low=1, high=100)
    bandit_steps: int = parameter("steps of the Section-5.1 runs", "int", low=10, high=100_000)
    bandit_eval_size: int = parameter("evaluation contexts of the Section-5.1 runs", "int", low=1, high=10_000)
    expansion_states: int = parameter("random states for the second-order expansion (17)", "int", low=2, high=10_000)
    critical_instances: int = parameter("random instances of the critical-step prediction (besides the chapter's)",
                                        "int", low=1, high=1_000)

    def estimated_peak_bytes(self) -> int:
        """The run's peak memory in bytes from its largest float64 tensors (the interpreter and its
        libraries, ≈ 0.4 GB, not included): the instance sweep's three-response runs, kept for the threshold
        sweep, plus the largest of the other checks, which run one after another. Measured runs of 0.4–2 GB
        came within ×1.5 of it."""
        steps, grid = self.steps, self.sweep_points

        def kept(runs: int, steps: int) -> int:
            """A three-response run's record: six (K, B) float64 tensors."""
            return 6 * 8 * steps * runs

        def running(runs: int, steps: int) -> int:
            """A three-response run while it steps: six lists of K tensors (B,) (≈ 500 bytes of bookkeeping
            each), stacked at the end, with the allocator's slack: about three times the record."""
            return 6 * steps * (3 * 8 * runs + 500)

        bandit_runs, evaluation = 3 * self.bandit_seeds, min(100, self.bandit_eval_size)  # Lemma 1's runs
        sweep_runs, contexts = self.bandit_seeds * grid, bandit.BanditSpec().pool_size + self.bandit_eval_size
        dim, arms = bandit.BanditSpec().dim, bandit.BanditSpec().arms  # the Section-5.1 problem, d = 10, N = 100
        checks = {
            "instance sweep": running(grid, steps),
            "corollary 1": running(len(theorem1_starts()), 4 * steps),
            "phase diagrams": kept(self.phase_points * grid, steps) + running(self.phase_points * grid, steps),
            "critical steps": running((self.critical_instances + 1) * CRITICAL_POINTS, steps),
            # every step recorded, (K, 8, B, E) and (K, B, P), for two updates, and ~6 (K, B, E) differences
            "lemma 1, bandit": 8 * (self.bandit_steps + 1) * bandit_runs
                               * (2 * (8 * evaluation + bandit.BanditSpec().pool_size) + 6 * evaluation),
            # float64 uniforms (B, K), contexts, β and θ₀ of every run, and the state (B, C, N) of a group
            "threshold sweep": 8 * sweep_runs * (self.bandit_steps + contexts * (dim + 1) + 2 * dim * arms)
                               + 3 * 8 * min(sweep_runs, bandit.GROUP_RUNS) * contexts * arms,
            # dense bandit scores (n, N, d·N) and the autograd graph of the Hessian terms, about as large
            "expansion": 2 * 8 * self.expansion_states * arms * dim * arms,
            # Assumption 1 on 500 random bandits (d = 10, N = 100): their dense scores
            "assumption 1": 8 * 500 * dim * arms * (arms + 7),
        }
        return 3 * kept(grid, steps) + max(checks.values())


PRESETS = {
    "ci": dict(alignment=0.01, initial_value=0.3, steps=400, sweep_points=61, phase_points=15, bandit_seeds=2,
               bandit_steps=300, bandit_eval_size=100, expansion_states=16, critical_instances=16),
    "paper": dict(alignment=0.01, initial_value=0.3, steps=2000, sweep_points=121, phase_points=41, bandit_seeds=5,
                  bandit_steps=2000, bandit_eval_size=500, expansion_states=64, critical_instances=64),
}


def sweep_grid(points: int) -> np.ndarray:
    """The constant step sizes of the threshold sweep: ``points`` on a log grid over :data:`SWEEP_RANGE`."""
    return np.geomspace(*SWEEP_RANGE, points)


def classify(values: torch.Tensor, tolerance: float = 0.02) -> np.ndarray:
    """Phase of each run from its values (K + 1, B): ``collapses`` if J decreased at every step,
    ``converges`` if J_K ≥ J₀ + tolerance, else ``stagnates``."""
    decreasing = (values[1:] < values[:-1]).all(0)
    rising = values[-1] >= values[0] + tolerance
    return np.where(decreasing.numpy(), "collapses", np.where(rising.numpy(), "converges", "stagnates"))


def critical_step(step_sizes: np.ndarray, collapsed: np.ndarray) -> float:
    """The smallest step of the grid from which every larger step collapses (NaN if none)."""
    if not collapsed[-1]:
        return math.nan
    first = len(collapsed) - np.argmin(collapsed[::-1]) if not collapsed.all() else 0
    return float(step_sizes[first])




# ----------------------------------------------------------------------------------------------
# Assumption 1: the constants G_o and L_o of the two families
# ----------------------------------------------------------------------------------------------


def softmax_constant_ratios(generator: torch.Generator, n: int = 4000, scale: float = 4,
                            perturbation: float = 0.05) -> tuple[float, float]:
    """Largest score norm over G_o and largest Lipschitz ratio of the score over L_o, on ``n`` random
    three-response logits (entries N(0, scale²)) and nearby pairs (perturbed by N(0, perturbation²)).

    Consumes two (n, 3) normal draws of ``generator``. Returns (max ‖e_o − π‖ / G_o, max ratio / L_o),
    both ≤ 1 under Assumption 1 (eqs. 12–13).
    """
    logits = scale * torch.randn(n, 3, generator=generator, dtype=DTYPE)  # (n, 3)
    scores = torch.eye(3, dtype=DTYPE) - torch.softmax(logits, -1)[:, None, :]  # (n, o, 3): row o is e_o − π
    score_ratio = torch.linalg.vector_norm(scores, dim=-1).max() / SCORE_BOUND
    other = logits + perturbation * torch.randn(n, 3, generator=generator, dtype=DTYPE)
    scores_other = torch.eye(3, dtype=DTYPE) - torch.softmax(other, -1)[:, None, :]
    lipschitz_ratio = (torch.linalg.vector_norm(scores - scores_other, dim=-1).amax(-1)  # (n,)
                       / torch.linalg.vector_norm(logits - other, dim=-1)).max() / SMOOTHNESS
    return score_ratio.item(), lipschitz_ratio.item()


def bandit_score_ratio(problems) -> float:
    """Largest ‖x ⊗ (e_y − π)‖ / (√2 ‖x‖) over the arms and problems (theta (n, d, N), context (n, d)):
    ≤ 1 by eq. (12) for linear-softmax bandits."""
    bandit_score = torch.linalg.vector_norm(bandit_scores(problems.theta, problems.context), dim=-1).amax(-1)  # (n,)
    return (bandit_score / bounds.bandit_score_bound(torch.linalg.vector_norm(problems.context, dim=-1))).max().item()


@dataclass(frozen=True)
class Assumption1Ratios:
    """The measured constants over the claimed ones: score (three responses), bandit score, Lipschitz."""

    score: float
    bandit_score: float
    lipschitz: float

    def margins(self) -> list[float]:
        """1 − ratio for each constant: < 0 where a measured value exceeds its constant."""
        return [1 - self.score, 1 - self.bandit_score, 1 - self.lipschitz]

    def headline(self) -> dict[str, dict[str, float]]:
        return {"assumption1_ratios": dict(score=self.score, bandit_score=self.bandit_score, lipschitz=self.lipschitz)}

    def summary(self) -> str:
        return (f"max ‖score‖ / G_o: three responses {self.score:.4f}, bandits {self.bandit_score:.4f}\n"
                f"max Lipschitz ratio / L_o (three responses, nearby pairs): {self.lipschitz:.4f}")


# ----------------------------------------------------------------------------------------------
# Lemma 1, inequality (16), at every step
# ----------------------------------------------------------------------------------------------


def instance_sweep(grid: np.ndarray, initial_value: float, alignment: float, steps: int) -> dict[str, Trajectories]:
    """The Theorem-2 instance (J₀ = ``initial_value``, target Δμ = ``alignment``) run ``steps`` steps at
    every constant step of ``grid`` (B,), once per direction rule: {rule: trajectories (K + 1 or K, B)}."""
    n = len(grid)
    return {rule: three_response.simulate(three_response.instance_logits(initial_value, n), steps, rule,
                                          torch.tensor(grid, dtype=DTYPE), torch.full((n,), alignment, dtype=DTYPE))
            for rule in DIRECTION_RULES}


@dataclass(frozen=True)
class Lemma1Case:
    """Lemma 1 on one family of runs.

    Attributes:
        label: the direction rule or the bandit update.
        paper_margin: min of (L_o + 8G_o²)η² − |Δf − Δμη| over every step (eq. 16).
        sharp_margin: min of (L_o + G_o²/2)η² + :data:`FLOAT_SLACK` − |Δf − Δμη|.
        sharp_ratio: max of |Δf − Δμη| / ((L_o + G_o²/2)η²) where the denominator exceeds :data:`MEASURABLE`.
        steps_checked: the number of (step, run, context) entries.
        step_sizes: the step sizes of the runs (bandit cases; empty for the instance).
    """

    label: str
    paper_margin: float
    sharp_margin: float
    sharp_ratio: float
    steps_checked: int
    step_sizes: list[float] | None = None


def lemma1_case(label: str, residual: torch.Tensor, paper_bound: torch.Tensor, sharp_constant, eta2: torch.Tensor,
                step_sizes: list[float] | None = None) -> Lemma1Case:
    """Lemma 1's margins from the residuals |Δf − Δμη|, the paper's bound (L_o + 8G_o²)η²
    (:func:`~rlvr_dynamics.theory.bounds.lemma1_remainder_bound`) and the squared steps η², all
    broadcasting against each other; the proof's sharper constant is a number or a tensor that
    broadcasts too (the bandit's depend on ‖x‖)."""
    paper_margin = (paper_bound - residual).min().item()
    sharp_margin = (sharp_constant * eta2 + FLOAT_SLACK - residual).min().item()
    measurable = sharp_constant * eta2 > MEASURABLE  # elsewhere the residual is rounding
    sharp_ratio = (residual / (sharp_constant * eta2))[measurable].max().item()
    return Lemma1Case(label, paper_margin, sharp_margin, sharp_ratio, residual.numel(), step_sizes)


def lemma1_instance_case(rule: str, runs: Trajectories) -> Lemma1Case:
    """Lemma 1 at every step of three-response runs (K, B), with G_o = √2 and L_o = ½."""
    residual = (runs.log_odds_change - runs.alignment * runs.step).abs()  # (K, B)
    return lemma1_case(rule, residual, bounds.lemma1_remainder_bound(runs.step), SHARP_CONSTANT, runs.step**2)


def lemma1_bandit_cases(config: TrajectoryConfig, seed: int, device: torch.device | str) -> list[Lemma1Case]:
    """Lemma 1 at every step and every evaluation context (at most 100, every step recorded) of the
    Section-5.1 bandit, seeds ``seed`` … ``seed + bandit_seeds − 1``, for each of
    :data:`LEMMA1_BANDIT_UPDATES`; the constants are those of context x, G_o = √2‖x‖ and L_o = ‖x‖²/2."""
    problems = bandit.make_bandits(bandit.BanditSpec(eval_size=min(100, config.bandit_eval_size)),
                                   range(seed, seed + config.bandit_seeds), config.bandit_steps, device=device)
    cases = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bandit.EmptyBandWarning)  # the band is empty at the start, by design
        for update, sizes in LEMMA1_BANDIT_UPDATES:
            batch = problems.repeat(len(sizes))
            result = bandit.simulate(batch, np.tile(sizes, config.bandit_seeds), config.bandit_steps, update=update)
            norm = torch.linalg.vector_norm(batch.contexts[:, batch.evaluation].cpu().double(), dim=-1)  # (B, E)
            step_alignment = result.signed_cumulative_alignment.diff(dim=0)  # Δμ_x(k) η_k, (K, B, E)
            residual = (result.log_odds.diff(dim=0) - step_alignment).abs().double()
            step = result.step.double()[:, :, None]  # (K, B, 1)
            paper = bounds.lemma1_remainder_bound(step, bounds.bandit_smoothness_bound(norm),
                                                  bounds.bandit_score_bound(norm))  # (K, B, E)
            sharp = bounds.bandit_smoothness_bound(norm) + bounds.bandit_score_bound(norm) ** 2 / 2
            cases.append(lemma1_case(update, residual, paper, sharp, step**2, sizes))
    return cases


@dataclass(frozen=True)
class Lemma1Check:
    """Lemma 1 on the three-response runs (one case per rule) and the Section-5.1 bandits (one per update)."""

    instance: list[Lemma1Case]
    bandit: list[Lemma1Case]

    @property
    def cases(self) -> list[Lemma1Case]:
        return self.instance + self.bandit

    def paper_margins(self) -> np.ndarray:
        """(16) with the paper's constant, up to :data:`FLOAT_SLACK`, one per case."""
        return np.array([case.paper_margin for case in self.cases]) + FLOAT_SLACK

    def sharp_margins(self) -> list[float]:
        """(16) with the proof's constant L_o + G_o²/2 (slack already included), one per case."""
        return [case.sharp_margin for case in self.cases]

    def headline(self) -> dict[str, float]:
        return dict(lemma1_worst_margin=min(case.paper_margin for case in self.cases),
                    lemma1_worst_sharp_ratio=max(case.sharp_ratio for case in self.cases))

    def bandit_table(self) -> pd.DataFrame:
        return pd.DataFrame([{"update": case.label, "step sizes": case.step_sizes, "steps checked": case.steps_checked,
                              "worst residual / (L+G²/2)η² (where > 1e-9)": case.sharp_ratio} for case in self.bandit])

    def note(self) -> str:
        """The worst margin of (16) and the worst sharp ratio, as one line (printed under :meth:`bandit_table`)."""
        headline = self.headline()
        return (f"worst margin of (16): {headline['lemma1_worst_margin']:.3e}; worst residual / ((L_o + G_o²/2) η²)"
                f" where that exceeds 1e-9: {headline['lemma1_worst_sharp_ratio']:.3f}")

    def summary(self) -> str:
        return self.bandit_table().to_string(index=False) + "\n" + self.note()


# ----------------------------------------------------------------------------------------------
# Theorem 1 and Corollary 1
# ----------------------------------------------------------------------------------------------


def theorem1_starts() -> torch.Tensor:
    """The seven starting values J₀ = 0.05 … 0.95 of the Theorem-1 and Corollary-1 runs. (7,)"""
    return torch.linspace(0.05, 0.95, 7, dtype=DTYPE)


def cumulative_alignment(alignment: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """M(K) = Σ_{k<K} [Δμ_k]₊ η_k (eq. 14) for K = 0 … steps. alignment, step (K, B) → (K + 1, B)."""
    return torch.cat([torch.zeros(1, alignment.shape[1], dtype=DTYPE), (alignment.clamp_min(0) * step).cumsum(0)])


@dataclass(frozen=True)
class ConvergenceMargin:
    """Theorem 1(b) on runs (K + 1, B), at K ≥ 1 (at K = 0 the bound is J₀ itself, an equality).

    (15b) is J_K ≥ sigmoid(f₀ + M(K)/2), i.e. f_K − f₀ ≥ M(K)/2 in the log-odds f, which do not saturate
    in float64 as J → 1 (J_K − (15b) does).

    Attributes:
        margin: min over K ≥ 1 and runs of f_K − f₀ − M(K)/2.
        step: the K where it is attained (on the three-response runs the log-odds path does not depend
            on J₀, so the runs tie up to rounding).
        gain_ratio: min over K ≥ 1 and runs of (f_K − f₀)/(M(K)/2), the log-odds gain over the bound's
            (≥ 1 iff (15b) holds; 2 is the full first-order gain M(K)).
    """

    margin: float
    step: int
    gain_ratio: float


def convergence_margin(runs: Trajectories) -> ConvergenceMargin:
    """Theorem 1(b) (eq. 15b) at every K ≥ 1 of ``runs``, in the log-odds (:class:`ConvergenceMargin`)."""
    half = cumulative_alignment(runs.alignment, runs.step)[1:] / 2  # M(K)/2, K = 1 … (K, B)
    gain = runs.log_odds[1:] - runs.log_odds[:1]  # f_K − f₀
    excess = gain - half
    step = int(excess.argmin()) // excess.shape[1]
    ratio = (gain / half)[half > 0]
    return ConvergenceMargin(excess.min().item(), step + 1, ratio.min().item() if ratio.numel() else math.nan)


def stagnation_margin(runs: Trajectories) -> float:
    """Theorem 1(a) with C₀ = M(K) and C₀′ = (L_o + 8G_o²)Σ η²: min over k and runs of
    J₀/(J₀ + e^{−(C₀ + C₀′)}(1 − J₀)) − J_k."""
    c0 = (runs.alignment.clamp_min(0) * runs.step).sum(0)  # (B,)
    c0_prime = LEMMA_CONSTANT * (runs.step**2).sum(0)
    cap = bounds.stagnation_upper_bound(runs.value[0], c0, c0_prime)
    return (cap - runs.value).min().item()


def theorem1b_runs(starts: torch.Tensor, steps: int, rule: str, alignment: float) -> Trajectories:
    """Runs from J₀ = ``starts`` (B,) with the step of (15a) taken with equality, η_k = [Δμ_k]₊/(2(L + 8G²));
    the overshoot/benign rules aim at Δμ = 20 · ``alignment``."""
    n = len(starts)
    return three_response.simulate(three_response.instance_logits(starts), steps, rule, torch.zeros(n, dtype=DTYPE),
                                   torch.full((n,), alignment * 20, dtype=DTYPE), step_rule="theorem1b")


def theorem1a_runs(starts: torch.Tensor, rule: str, steps: int = 200) -> Trajectories:
    """Runs from J₀ = ``starts`` (B,) with a geometrically decaying alignment Δμ_k = 0.05 · 0.9^k and
    square-summable steps η_k = 0.3 · 0.9^k, so that M and Σ η² stay bounded."""
    n = len(starts)
    return three_response.simulate(three_response.instance_logits(starts), steps, rule,
                                   torch.full((n,), 0.3, dtype=DTYPE), torch.full((n,), 0.05, dtype=DTYPE),
                                   step_rule="decaying", alignment_decay=0.9)


@dataclass(frozen=True)
class Theorem1Check:
    """Theorem 1's margins, one per direction rule (:data:`DIRECTION_RULES`), and the (b) runs' table rows."""

    convergence: list[ConvergenceMargin]
    stagnation: list[float]
    rows: list[dict]

    def convergence_margins(self) -> np.ndarray:
        """(15b) at K ≥ 1 in the log-odds, f_K − f₀ − M(K)/2, one per rule (no slack: the margins are far
        above rounding)."""
        return np.array([case.margin for case in self.convergence])

    def stagnation_margins(self) -> np.ndarray:
        """Theorem 1(a)'s cap up to :data:`FLOAT_SLACK`."""
        return np.array(self.stagnation) + FLOAT_SLACK

    @property
    def worst_convergence(self) -> tuple[str, ConvergenceMargin]:
        """The rule and case of the smallest (15b) margin over K ≥ 1."""
        index = int(np.argmin(self.convergence_margins()))
        return DIRECTION_RULES[index], self.convergence[index]

    def headline(self) -> dict[str, object]:
        rule, worst = self.worst_convergence
        return dict(theorem1b_worst_margin=worst.margin, theorem1b_worst_rule=rule, theorem1b_worst_step=worst.step,
                    theorem1b_min_gain_ratio=min(case.gain_ratio for case in self.convergence),
                    theorem1a_worst_margin=min(self.stagnation))

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def note(self) -> str:
        """The smallest (15b) margin and gain ratio, as one line (printed under :meth:`table`)."""
        rule, worst = self.worst_convergence
        return (f"(15b) over K ≥ 1: smallest margin f_K − f0 − M(K)/2 = {worst.margin:.3e} ({rule} rule, "
                f"K = {worst.step}); smallest gain ratio (f_K − f0)/(M(K)/2) = "
                f"{self.headline()['theorem1b_min_gain_ratio']:.4f}")

    def summary(self) -> str:
        return self.table().to_string(index=False) + "\n" + self.note()


def theorem1_row(rule: str, runs: Trajectories, convergence: ConvergenceMargin | None = None) -> dict:
    """The final values of (b) runs, their largest step in units of 1/(2√L_o) (≤ 1 is Theorem 1's
    condition) and, given, the smallest (15b) margin over K ≥ 1 and gain ratio."""
    row = {"rule": rule, "final J (J0 = 0.05 … 0.95)": np.round(runs.value[-1].numpy(), 3).tolist(),
           "max η_k · 2√L_o": (runs.step.max() * 2 * math.sqrt(SMOOTHNESS)).item()}
    if convergence is not None:
        row.update({"min f_K − f0 − M/2 (K ≥ 1)": convergence.margin, "at K": convergence.step,
                    "min (f_K − f0)/(M/2)": convergence.gain_ratio})
    return row


def theorem1_check(starts: torch.Tensor, steps: int, alignment: float, stagnation_steps: int = 200) -> Theorem1Check:
    """Theorem 1(b) (``steps`` steps) and (a) (``stagnation_steps`` steps) for every direction rule from
    the starting values ``starts``."""
    convergence, stagnation, rows = [], [], []
    for rule in DIRECTION_RULES:
        runs = theorem1b_runs(starts, steps, rule, alignment)
        convergence.append(convergence_margin(runs))
        rows.append(theorem1_row(rule, runs, convergence[-1]))
        stagnation.append(stagnation_margin(theorem1a_runs(starts, rule, stagnation_steps)))
    return Theorem1Check(convergence, stagnation, rows)


@dataclass(frozen=True)
class Corollary1Run:
    """The gap direction at Corollary 1's largest constant step under the uniform gap ``alignment``."""

    alignment: float
    step: float
    runs: Trajectories

    @property
    def steps(self) -> int:
        return self.runs.value.shape[0] - 1

    @property
    def log_failure(self) -> torch.Tensor:
        """log(1 − J_K) from the log-odds, exact as J → 1. (K + 1, B)"""
        return -torch.nn.functional.softplus(self.runs.log_odds)

    @property
    def log_bound(self) -> torch.Tensor:
        """log of (1 − J₀)/J₀ · exp(−ΔμηK/2), Corollary 1's bound. (K + 1, B)"""
        K = torch.arange(self.steps + 1, dtype=DTYPE)[:, None]
        return bounds.corollary1_log_failure_bound(self.runs.log_odds[0], self.alignment, self.step, K)

    @property
    def bound_slope(self) -> float:
        """The bound's slope −Δμη/2 of log(1 − J_K) in K."""
        return -0.5 * self.alignment * self.step

    @property
    def slopes(self) -> np.ndarray:
        """The measured slope of log(1 − J_K) over the second half of the run, per start. (B,)"""
        half = self.steps // 2
        return ((self.log_failure[-1] - self.log_failure[half]) / (self.steps - half)).numpy()

    def bound_margins(self) -> list[float]:
        """Corollary 1 at every K and start: min of log bound − log(1 − J_K), up to :data:`FLOAT_SLACK`."""
        return [(self.log_bound - self.log_failure).min().item() + FLOAT_SLACK]

    def rate_margins(self) -> np.ndarray:
        """−Δμη/2 − measured slope, per start."""
        return -0.5 * self.alignment * self.step - self.slopes

    @property
    def rate_ratios(self) -> np.ndarray:
        """Measured slope over the bound's slope, per start (≥ 1 iff the rate bound holds). (B,)"""
        return self.slopes / self.bound_slope

    def headline(self) -> dict[str, object]:
        return dict(corollary1_eta=self.step, corollary1_measured_slopes=self.slopes.tolist(),
                    corollary1_bound_slope=self.bound_slope, corollary1_min_rate_ratio=float(self.rate_ratios.min()),
                    corollary1_max_rate_ratio=float(self.rate_ratios.max()))

    def summary(self) -> str:
        return (f"η = {self.step:.4f}; alignment min over all steps: {self.runs.alignment.min():.4f} "
                f"(uniform gap {self.alignment:.4f})\nmeasured slope of log(1 − J_K) (second half): "
                f"{np.round(self.slopes, 4)}; bound's slope −Δμη/2 = {self.bound_slope:.4f}")


def corollary1_run(starts: torch.Tensor, steps: int, alignment: float = UNIFORM_GAP) -> Corollary1Run:
    """The gap direction from J₀ = ``starts`` (B,) for ``steps`` steps at Corollary 1's step for ``alignment``."""
    step = bounds.corollary1_step(alignment)
    runs = three_response.simulate(three_response.instance_logits(starts), steps, "gap",
                                   torch.full((len(starts),), step, dtype=DTYPE))
    return Corollary1Run(alignment, step, runs)


# ----------------------------------------------------------------------------------------------
# The second-order expansion (17)
# ----------------------------------------------------------------------------------------------


def expansion_steps() -> np.ndarray:
    """The steps η = 10⁻³ … 10⁻¹ (9, log grid) at which the expansion's residual is measured."""
    return np.geomspace(1e-3, 1e-1, 9)


def expansion_residuals(change: torch.Tensor, delta_mu: torch.Tensor, var_plus: torch.Tensor,
                        var_minus: torch.Tensor, etas: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """|Δf − Δμη − ½(Var⁺ − Var⁻)η²| (the expansion with the ½) and |Δf − Δμη − (Var⁺ − Var⁻)η²| (the
    paper's (17) as printed). change (S, n) at the S steps ``etas``; delta_mu, var_plus, var_minus (n,)."""
    e = torch.tensor(etas)[:, None]  # (S, 1)
    half = (change - delta_mu * e - 0.5 * (var_plus - var_minus) * e**2).abs()
    paper = (change - delta_mu * e - (var_plus - var_minus) * e**2).abs()
    return half, paper


def expansion_states(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` random states of the three-response softmax: J₀ ~ U[0.1, 0.9] and wrong logits (0, 0.3)
    moved by N(0, 1). Consumes a uniform (n,) then a normal (n, 2) draw of ``generator``. (n, 3)"""
    states = three_response.instance_logits(torch.rand(n, generator=generator, dtype=DTYPE) * 0.8 + 0.1)
    states[:, 1:] += torch.randn(n, 2, generator=generator, dtype=DTYPE)
    return states


def instance_expansion(states: torch.Tensor, rule: str, alignment: float, etas: np.ndarray
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The residuals of :func:`expansion_residuals` at three-response ``states`` (n, 3) along the
    direction of ``rule`` (target Δμ = ``alignment``); Var⁺ = 0 (one correct response). (S, n) each."""
    w = three_response.direction(states, rule, torch.full((len(states),), alignment, dtype=DTYPE))  # (n, 3)
    delta_mu = (w * three_response.gradient_gap(states)).sum(-1)
    var_minus = three_response.negative_variance(states, w)
    change = torch.stack([three_response.log_odds(states + eta * w) - three_response.log_odds(states) for eta in etas])
    return expansion_residuals(change, delta_mu, torch.zeros_like(var_minus), var_minus, etas)


def bandit_expansion(problems, etas: np.ndarray, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The residuals of :func:`expansion_residuals` on linear-softmax bandits (several correct arms, so
    Var⁺ ≠ 0) along a random unit direction with positive alignment (one normal draw of ``generator``,
    shaped like the gap (n, d·N)). (S, n) each."""
    theta, context, reward = problems.theta, problems.context, problems.reward
    log_prob = bandit_log_policy(theta, context)  # (n, N)
    score = bandit_scores(theta, context)  # (n, N, d·N)
    gap = gaps.gradient_gap(log_prob, score, reward)  # (n, d·N)
    w = positive_unit_direction(gap, generator)
    delta_mu = (w * gap).sum(-1)
    var_plus, var_minus = gaps.conditional_variances(log_prob, score, reward, w)
    f0 = gaps.log_odds(log_prob, reward)
    change = torch.stack([gaps.log_odds(bandit_log_policy(theta + eta * w.unflatten(-1, theta.shape[-2:]), context),
                                        reward) - f0 for eta in etas])  # (S, n)
    return expansion_residuals(change, delta_mu, var_plus, var_minus, etas)


@dataclass(frozen=True)
class ExpansionStudy:
    """The residuals of both versions of the expansion at every state: etas (S,), residuals (S, n)."""

    etas: np.ndarray
    residual_half: torch.Tensor
    residual_paper: torch.Tensor

    @classmethod
    def from_parts(cls, etas: np.ndarray, parts: list[tuple[torch.Tensor, torch.Tensor]]) -> ExpansionStudy:
        """Join the (half, paper) residuals of several families along the state axis."""
        return cls(etas, torch.cat([half for half, _ in parts], dim=1), torch.cat([paper for _, paper in parts], dim=1))

    @property
    def median_half(self) -> np.ndarray:
        return self.residual_half.median(1).values.numpy()

    @property
    def median_paper(self) -> np.ndarray:
        return self.residual_paper.median(1).values.numpy()

    @property
    def slope_half(self) -> float:
        return statistics.loglog_slope(self.etas, self.median_half)

    @property
    def slope_paper(self) -> float:
        return statistics.loglog_slope(self.etas, self.median_paper)

    @property
    def per_state_slopes(self) -> np.ndarray:
        """Log-log slope of the ½-version residual of every state whose residuals all exceed 1e-14."""
        return np.array([statistics.loglog_slope(self.etas, r.numpy()) for r in self.residual_half.T
                         if (r > 1e-14).all()])

    def cubic_margins(self) -> list[float]:
        """The median residual with the ½ shrinks like η³: 0.2 − |slope − 3|."""
        return [0.2 - abs(self.slope_half - 3)]

    def per_state_margins(self) -> np.ndarray:
        return self.per_state_slopes - 2.5

    def paper_margins(self) -> list[float]:
        """Without the ½ the median residual shrinks only like η²: 2.2 − slope."""
        return [2.2 - self.slope_paper]

    def headline(self) -> dict[str, float]:
        return dict(expansion_slope_half=self.slope_half, expansion_slope_paper=self.slope_paper)

    def summary(self) -> str:
        slopes = self.per_state_slopes
        return (f"median residual slope with ½(Var⁺ − Var⁻)η²: {self.slope_half:.3f}; with the paper's "
                f"(Var⁺ − Var⁻)η²: {self.slope_paper:.3f}\nper-state slopes (½ version): min {slopes.min():.3f}, "
                f"max {slopes.max():.3f} over {len(slopes)} states")


EXPANSION_HALF = r"$\Delta\mu\,\eta + \frac{1}{2}(\mathrm{Var}^+ - \mathrm{Var}^-)\,\eta^2$"
EXPANSION_PRINTED = r"$\Delta\mu\,\eta + (\mathrm{Var}^+ - \mathrm{Var}^-)\,\eta^2$"


def draw_expansion(ax, study: ExpansionStudy) -> None:
    """The median residuals of both versions against η, with an η³ guide."""
    etas, half = study.etas, study.median_half
    ax.loglog(etas, half, "o-", label=f"{EXPANSION_HALF}: slope {study.slope_half:.2f}")
    ax.loglog(etas, study.median_paper, "s-",
              label=f"{EXPANSION_PRINTED} (as printed): slope {study.slope_paper:.2f}")
    ax.loglog(etas, half[-1] * (etas / etas[-1]) ** 3, "k:", lw=1, label=r"$\propto\eta^3$")
    ax.set(xlabel=r"step $\eta$", ylabel="median |residual|\nof the log-odds change",
           title="Second-order expansion (17), log-linear logits")
    ax.legend(loc="upper left")


# ----------------------------------------------------------------------------------------------
# The Hessian terms of the expansion: log-linear against non-linear logits
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecondOrderTerms:
    """The terms of the log-odds' second derivative along a unit direction w at n states, each (n,).

    With s(o) = w · ∇log π(o) and h(o) = wᵀ∇²log π(o) w, φ(t) = f(θ + tw) has φ'(0) = Δμ = E⁺[s] − E⁻[s]
    and φ''(0) = (H⁺ − H⁻) + (Var⁺ − Var⁻) with H± = E_{π±}[h] and Var± = Var_{π±}[s] (the proof of
    Lemma 1). The expansion (17) with ½(Var⁺ − Var⁻) is exact to second order iff H⁺ = H⁻.
    """

    alignment: torch.Tensor
    var_plus: torch.Tensor
    var_minus: torch.Tensor
    hessian_plus: torch.Tensor
    hessian_minus: torch.Tensor

    @property
    def hessian_difference(self) -> torch.Tensor:
        """H⁺ − H⁻ = E_{π⁺}[wᵀ∇²log π w] − E_{π⁻}[wᵀ∇²log π w]. (n,)"""
        return self.hessian_plus - self.hessian_minus

    @property
    def curvature(self) -> torch.Tensor:
        """φ''(0) = (H⁺ − H⁻) + (Var⁺ − Var⁻). (n,)"""
        return self.hessian_difference + self.var_plus - self.var_minus


def directional_derivatives(log_policy, theta: torch.Tensor, direction: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """s(o) = w · ∇log π(o) and h(o) = wᵀ∇²log π(o) w at every state and response, (n, R) each: the first
    and second derivatives in t of log π(θ + tw) at t = 0, with one scalar t per state (``log_policy``
    maps θ (n, D) to log π (n, R) row by row, so the rows do not mix), by reverse-mode autograd: one
    pass per response and order, no Jacobian or Hessian is built."""
    t = torch.zeros(len(theta), dtype=theta.dtype, requires_grad=True)
    with torch.enable_grad():
        log_prob = log_policy(theta + t[:, None] * direction)

        def derivative(value: torch.Tensor, keep: bool) -> torch.Tensor:
            if not value.requires_grad:
                return torch.zeros_like(t)
            (grad,) = torch.autograd.grad(value.sum(), t, create_graph=keep, retain_graph=True, allow_unused=True)
            return torch.zeros_like(t) if grad is None else grad

        first = [derivative(log_prob[:, r], keep=True) for r in range(log_prob.shape[1])]
        second = [derivative(d, keep=False) for d in first]
    return torch.stack(first, -1).detach(), torch.stack(second, -1).detach()


def second_order_terms(log_policy, theta: torch.Tensor, direction: torch.Tensor, reward: torch.Tensor
                       ) -> SecondOrderTerms:
    """:class:`SecondOrderTerms` of any policy, exactly (:func:`directional_derivatives`). ``log_policy``
    maps θ (n, D) to log π (n, R) row by row; ``theta``, ``direction`` (n, D); ``reward`` (R,) or (n, R),
    with both regions non-empty."""
    score, hessian = directional_derivatives(log_policy, theta, direction)  # s(o), h(o): (n, R)
    log_prob = log_policy(theta).detach()
    reward = reward.expand_as(log_prob)
    plus = gaps.conditional_log_policy(log_prob, reward, positive=True).exp()  # (n, R)
    minus = gaps.conditional_log_policy(log_prob, reward, positive=False).exp()
    mean_plus, mean_minus = (plus * score).sum(-1), (minus * score).sum(-1)
    return SecondOrderTerms(mean_plus - mean_minus, (plus * (score - mean_plus[:, None]) ** 2).sum(-1),
                            (minus * (score - mean_minus[:, None]) ** 2).sum(-1), (plus * hessian).sum(-1),
                            (minus * hessian).sum(-1))


def log_softmax_policy(theta: torch.Tensor) -> torch.Tensor:
    """The three-response family: log π = log_softmax(θ). (n, R) → (n, R)"""
    return torch.log_softmax(theta, dim=-1)


def loglinear_hessian_differences(states: torch.Tensor, alignment: float, problems) -> np.ndarray:
    """max |H⁺ − H⁻| on the log-linear families of the expansion check, one entry per family: the
    three-response ``states`` (n, 3) along each direction rule (target Δμ = ``alignment``), then the
    bandit ``problems`` (theta (n, d, N), context (n, d), reward (n, N)) along their unit gap. 0 up to
    rounding: ∇²log π(o) = −∇²log Z is the same for every response."""
    differences = []
    for rule in DIRECTION_RULES:
        w = three_response.direction(states, rule, torch.full((len(states),), alignment, dtype=DTYPE))
        reward = torch.tensor([1.0, 0.0, 0.0], dtype=DTYPE)
        differences.append(second_order_terms(log_softmax_policy, states, w, reward).hessian_difference)
    theta, context = problems.theta, problems.context
    shape = theta.shape[-2:]
    gap = gaps.gradient_gap(bandit_log_policy(theta, context), bandit_scores(theta, context), problems.reward)
    w = gap / torch.linalg.vector_norm(gap, dim=-1, keepdim=True)

    def bandit_policy(parameters):
        return bandit_log_policy(parameters.unflatten(-1, shape), context)

    differences.append(second_order_terms(bandit_policy, theta.flatten(-2), w, problems.reward).hessian_difference)
    return np.array([d.abs().max().item() for d in differences])


NONLINEAR_SHAPE = (5, 3, 4)
"""The non-linear family: R responses, d parameters, h hidden units of the logits z = B tanh(Aθ)."""
NONLINEAR_CORRECT = 2
"""Its first two responses are correct (so Var⁺ ≠ 0 as well)."""


@dataclass(frozen=True)
class TwoLayerPolicies:
    """n softmax policies over R responses whose logits are a two-layer map of θ, z = B tanh(Aθ):
    first A (n, h, d), second B (n, R, h), theta θ (n, d), reward (n, R) (the first :data:`NONLINEAR_CORRECT`
    responses correct)."""

    first: torch.Tensor
    second: torch.Tensor
    theta: torch.Tensor
    reward: torch.Tensor

    def log_policy(self, theta: torch.Tensor) -> torch.Tensor:
        """log π_θ = log_softmax(B tanh(Aθ)), row by row. θ (n, d) → (n, R)"""
        hidden = torch.tanh(torch.einsum("nhd,nd->nh", self.first, theta))
        return torch.log_softmax(torch.einsum("nrh,nh->nr", self.second, hidden), dim=-1)


def random_two_layer(n: int, generator: torch.Generator) -> TwoLayerPolicies:
    """``n`` policies of :data:`NONLINEAR_SHAPE` with A, B and θ standard normal (three normal draws of
    ``generator``: (n, h, d), (n, R, h), (n, d))."""
    responses, dim, hidden = NONLINEAR_SHAPE
    first = torch.randn(n, hidden, dim, generator=generator, dtype=DTYPE)
    second = torch.randn(n, responses, hidden, generator=generator, dtype=DTYPE)
    theta = torch.randn(n, dim, generator=generator, dtype=DTYPE)
    reward = (torch.arange(responses) < NONLINEAR_CORRECT).to(DTYPE).expand(n, responses)
    return TwoLayerPolicies(first, second, theta, reward)


def positive_unit_direction(gap: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random unit direction with positive alignment w · gap > 0: a normal draw shaped like ``gap``
    (n, D), flipped where it points against the gap."""
    w = torch.randn(gap.shape, generator=generator, dtype=DTYPE)
    w = torch.where(((w * gap).sum(-1, keepdim=True) < 0), -w, w)
    return w / torch.linalg.vector_norm(w, dim=-1, keepdim=True)


@dataclass(frozen=True)
class NonlinearExpansion:
    """The expansion on :class:`TwoLayerPolicies` at the steps ``etas`` (S,): the residuals (S, n) of
    the ½(Var⁺ − Var⁻) version (``residual_variance``) and of the full second-order term ½φ''(0)
    (``residual_full``), and the terms at the n states."""

    etas: np.ndarray
    residual_variance: torch.Tensor
    residual_full: torch.Tensor
    terms: SecondOrderTerms

    @property
    def slope_variance(self) -> float:
        """Log-log slope of the median ½(Var⁺ − Var⁻)-version residual."""
        return statistics.loglog_slope(self.etas, self.residual_variance.median(1).values.numpy())

    @property
    def slope_full(self) -> float:
        """Log-log slope of the median residual with the Hessian difference included."""
        return statistics.loglog_slope(self.etas, self.residual_full.median(1).values.numpy())

    @property
    def hessian_ratio(self) -> np.ndarray:
        """|H⁺ − H⁻| / |Var⁺ − Var⁻| at every state. (n,)"""
        return (self.terms.hessian_difference.abs() / (self.terms.var_plus - self.terms.var_minus).abs()).numpy()

    def quadratic_margins(self) -> list[float]:
        """The median ½(Var⁺ − Var⁻)-version residual shrinks like η², not η³: 0.2 − |slope − 2|."""
        return [0.2 - abs(self.slope_variance - 2)]

    def cubic_margins(self) -> list[float]:
        """With ½(H⁺ − H⁻)η² added the median residual shrinks like η³: 0.2 − |slope − 3|."""
        return [0.2 - abs(self.slope_full - 3)]

    def headline(self) -> dict[str, float]:
        return dict(nonlinear_slope_variance_only=self.slope_variance, nonlinear_slope_with_hessian=self.slope_full,
                    nonlinear_median_hessian_difference=float(self.terms.hessian_difference.abs().median()),
                    nonlinear_median_hessian_over_variance=float(np.median(self.hessian_ratio)))

    def summary(self) -> str:
        headline = self.headline()
        return (f"two-layer logits z = B tanh(Aθ), {self.residual_full.shape[1]} random states: median |H⁺ − H⁻| "
                f"{headline['nonlinear_median_hessian_difference']:.3f}, median |H⁺ − H⁻| / |Var⁺ − Var⁻| "
                f"{headline['nonlinear_median_hessian_over_variance']:.2f}\nmedian residual slope with "
                f"½(Var⁺ − Var⁻)η² only: {self.slope_variance:.3f}; with ½(H⁺ − H⁻ + Var⁺ − Var⁻)η²: "
                f"{self.slope_full:.3f}")


def nonlinear_expansion(policies: TwoLayerPolicies, etas: np.ndarray, generator: torch.Generator
                        ) -> NonlinearExpansion:
    """The expansion's residuals on ``policies`` along a random unit direction with positive alignment
    (:func:`positive_unit_direction`, one normal draw (n, d)), every term exact (autograd)."""
    theta = policies.theta.clone().requires_grad_(True)
    with torch.enable_grad():
        (gap,) = torch.autograd.grad(gaps.log_odds(policies.log_policy(theta), policies.reward).sum(), theta)
    w = positive_unit_direction(gap, generator)  # ∇f = g⁺ − g⁻ (n, d): the rows are independent
    terms = second_order_terms(policies.log_policy, policies.theta, w, policies.reward)
    f0 = gaps.log_odds(policies.log_policy(policies.theta), policies.reward)
    change = torch.stack([gaps.log_odds(policies.log_policy(policies.theta + eta * w), policies.reward) - f0
                          for eta in etas])  # (S, n)
    e = torch.tensor(etas)[:, None]
    first_order = change - terms.alignment * e
    return NonlinearExpansion(etas, (first_order - 0.5 * (terms.var_plus - terms.var_minus) * e**2).abs(),
                              (first_order - 0.5 * terms.curvature * e**2).abs(), terms)


def draw_nonlinear_expansion(ax, study: NonlinearExpansion) -> None:
    """The median residuals of both versions on the non-linear family against η, with η² and η³ guides."""
    etas = study.etas
    variance, full = study.residual_variance.median(1).values.numpy(), study.residual_full.median(1).values.numpy()
    ax.loglog(etas, variance, "o-", label=f"{EXPANSION_HALF}: slope {study.slope_variance:.2f}")
    with_hessian = r"$\Delta\mu\,\eta + \frac{1}{2}(H^+ - H^- + \mathrm{Var}^+ - \mathrm{Var}^-)\,\eta^2$"
    ax.loglog(etas, full, "s-", label=f"{with_hessian}: slope {study.slope_full:.2f}")
    ax.loglog(etas, variance[-1] * (etas / etas[-1]) ** 2, "k--", lw=1, label=r"$\propto\eta^2$")
    ax.loglog(etas, full[-1] * (etas / etas[-1]) ** 3, "k:", lw=1, label=r"$\propto\eta^3$")
    ax.set(xlabel=r"step $\eta$", ylabel="median |residual|\nof the log-odds change",
           title=r"Non-linear logits $z = B\tanh(A\theta)$: the Hessian terms")
    ax.legend(loc="upper left")


# ----------------------------------------------------------------------------------------------
# Theorem 2: the overshoot instance
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Theorem2Run:
    """The overshoot instance at the two ends and the middle of Theorem 2's window: trace (K + 1 or K, 3)."""

    alignment: float
    window: tuple[float, float]
    step_sizes: np.ndarray
    trace: Trajectories

    @property
    def steps(self) -> int:
        return self.trace.value.shape[0] - 1

    @property
    def late_slope(self) -> np.ndarray:
        """Log-odds change per step over the second half of the run, per step size. (3,)"""
        half = self.steps // 2
        return ((self.trace.log_odds[-1] - self.trace.log_odds[half]) / (self.steps - half)).numpy()

    def alignment_margins(self) -> np.ndarray:
        """min_k Δμ_k − Δμ, up to :data:`FLOAT_SLACK`, per step size."""
        return (self.trace.alignment.min(0).values - self.alignment + FLOAT_SLACK).numpy()

    def decrease_margins(self) -> np.ndarray:
        """min_k (J_k − J_{k+1}): > 0 iff J strictly decreases at every step, per step size."""
        return (self.trace.value[:-1] - self.trace.value[1:]).min(0).values.numpy()

    def collapse_margins(self) -> np.ndarray:
        """Minus the second-half slope of the log-odds: > 0 iff they fall (J → 0), per step size."""
        return -self.late_slope

    def headline(self) -> dict[str, list[float]]:
        return dict(theorem2_window=list(self.window), theorem2_final_values=self.trace.value[-1].tolist())

    def table(self) -> pd.DataFrame:
        """One row per step size of the window: min Δμ_k, whether J falls at every step, J_K, late log-odds slope."""
        return pd.DataFrame({"η": self.step_sizes, "min Δμ_k": self.trace.alignment.min(0).values.numpy(),
                             "J strictly decreasing": (self.trace.value[1:] < self.trace.value[:-1]).all(0).numpy(),
                             "J_K": self.trace.value[-1].numpy(), "log-odds per step (2nd half)": self.late_slope})

    def note(self) -> str:
        """The window and J₀, as one line (printed above :meth:`table`)."""
        low, high = self.window
        return f"window [60Δμ/(L+G²), 1/(2√(L+G²))] = [{low:.4f}, {high:.4f}]; J0 = {self.trace.value[0, 0]:.4f}"

    def summary(self) -> str:
        return self.note() + "\n" + self.table().to_string(index=False)


def theorem2_run(alignment: float, initial_value: float, steps: int) -> Theorem2Run:
    """The overshoot rule from J₀ = ``initial_value`` at the steps low, (low + high)/2, high of Theorem 2's window."""
    low, high = bounds.theorem2_window(alignment)
    step_sizes = np.array([low, (low + high) / 2, high])
    n = len(step_sizes)
    trace = three_response.simulate(three_response.instance_logits(initial_value, n), steps, "overshoot",
                                    torch.tensor(step_sizes, dtype=DTYPE), torch.full((n,), alignment, dtype=DTYPE))
    return Theorem2Run(alignment, (low, high), step_sizes, trace)


def draw_theorem2_traces(axes, run: Theorem2Run) -> None:
    """Three panels: the alignment Δμ_k, the value J_k (log scale) and Var⁻ along w_k (even steps)."""
    trace = run.trace
    for i, eta in enumerate(run.step_sizes):
        axes[0].plot(trace.alignment[:, i], label=rf"$\eta$ = {eta:.3f}")
        axes[1].semilogy(trace.value[:, i], label=rf"$\eta$ = {eta:.3f}")
        axes[2].plot(np.arange(0, run.steps, 2), trace.negative_variance[::2, i], label=rf"$\eta$ = {eta:.3f}")
    axes[0].axhline(run.alignment, color="k", lw=0.8, ls="--", label=r"$\Delta\mu$ of the instance")
    axes[0].set(xlabel="step $k$", ylabel=r"$\Delta\mu_k$", title="Gap alignment: positive at every step",
                ylim=(0, 2 * run.alignment))
    axes[1].set(xlabel="step $k$", ylabel="$J_k$ (log scale)", title="Value: strictly decreasing to 0")
    axes[2].set(xlabel="step $k$ (even steps; the odd ones alternate)", ylabel=r"$\mathrm{Var}^-$ along $w_k$",
                title="The variance term that wins")
    for ax in axes:
        ax.legend(ncol=2)


# ----------------------------------------------------------------------------------------------
# The threshold sweep and the phase diagrams
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdSweep:
    """The instance's final values against the constant step, and the steps that matter.

    Attributes:
        grid: the constant steps (B,).
        overshoot_final, gap_final: J_K of the overshoot and the gap rule at each step (B,).
        collapsed: whether J fell at every step, per step (B,).
        critical: the measured η*; scale: Δμ/(L_o + G_o²); safe: (15a)'s step Δμ/(2(L_o + 8G_o²)).
        predicted: 2Δμ/Var⁻(θ₀), per step (B,).
        window: Theorem 2's window; initial_value: J₀; steps: K.
    """

    grid: np.ndarray
    overshoot_final: np.ndarray
    gap_final: np.ndarray
    collapsed: np.ndarray
    critical: float
    scale: float
    safe: float
    predicted: np.ndarray
    window: tuple[float, float]
    initial_value: float
    steps: int

    def gap_margins(self) -> np.ndarray:
        """J_K − J₀ of the gap direction at every step: > 0 iff it never loses (the instance's gap rule
        raises the correct logit and lowers both wrong ones, so the log-odds rise for every η). (B,)"""
        return self.gap_final - self.initial_value

    def window_margins(self) -> list[float]:
        """Theorem 2's lower end − η*: > 0 iff the measured critical step lies below the window."""
        return [self.window[0] - self.critical]

    def headline(self) -> dict[str, float]:
        return dict(critical_step=self.critical, critical_over_scale=self.critical / self.scale, safe_step=self.safe,
                    predicted_critical_second_order=float(np.median(self.predicted)),
                    window_over_critical=self.window[0] / self.critical, gap_min_gain=float(self.gap_margins().min()))

    def summary(self) -> str:
        return (f"measured critical step η* = {self.critical:.4g}; η*/(Δμ/(L+G²)) = {self.critical / self.scale:.2f}; "
                f"Theorem 2's lower end is 60× that scale, (15a)'s safe step is {self.safe / self.scale:.3f}×\n"
                f"second-order prediction 2Δμ/Var⁻(θ0) = {np.median(self.predicted):.4g}")


def threshold_sweep(grid: np.ndarray, runs: dict[str, Trajectories], alignment: float, initial_value: float
                    ) -> ThresholdSweep:
    """The threshold of the instance from :func:`instance_sweep`'s runs at the steps ``grid``."""
    sweep = runs["overshoot"]
    collapsed = classify(sweep.value) == "collapses"
    return ThresholdSweep(grid, sweep.value[-1].numpy(), runs["gap"].value[-1].numpy(), collapsed,
                          critical_step(grid, collapsed), alignment / CURVATURE, alignment / (2 * LEMMA_CONSTANT),
                          2 * alignment / sweep.negative_variance[0].numpy(),  # η where Δμη = ½Var⁻η² at the start
                          bounds.theorem2_window(alignment), initial_value, sweep.value.shape[0] - 1)


CRITICAL_TOLERANCE = 0.5
"""|η*/η₀ − 1| ≤ ½η₀ for the second-order prediction η₀ = 2Δμ/Var⁻: on the three-response softmax the
log-odds change along a fixed w is exactly Δμη − Σ_{j≥2} κ_j η^j/j!, with κ_j the cumulants of w_o under
π⁻, so its root moves from η₀ by −κ₃η₀²/(3κ₂) + O(η₀³); for two wrong responses
|κ₃|/κ₂ = |1 − 2π⁻_b| |w_b − w_c| ≤ √2 (w is a unit vector), a relative shift of at most (√2/3)η₀ < ½η₀."""
CRITICAL_POINTS = 61
"""Steps per instance of the local grid η₀(1 + c η₀), c ∈ [−¾, ¾] (1.5 × :data:`CRITICAL_TOLERANCE` each side)."""


def critical_instances(n: int, alignment: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The chapter's instance (wrong logits (0, 0.3), Δμ = ``alignment``) and ``n`` random ones: wrong
    logits (0, δ) with δ ~ U[−2, 2] (π⁻_b between 0.12 and 0.88) and Δμ log-uniform over Theorem 2's
    range [10⁻³, √(L_o + G_o²)/120]. The correct logit is 0: the log-odds path along the overshoot rule
    does not depend on it (neither the gap e_a − π⁻ nor the direction does). Consumes two uniform (n,)
    draws of ``generator``. Returns logits (n + 1, 3) and Δμ (n + 1,)."""
    shift = 4 * torch.rand(n, generator=generator, dtype=DTYPE) - 2
    low, high = math.log(1e-3), math.log(math.sqrt(CURVATURE) / 120)
    drawn = torch.exp(low + (high - low) * torch.rand(n, generator=generator, dtype=DTYPE))
    logits = torch.zeros(n + 1, 3, dtype=DTYPE)
    logits[0, 2] = three_response.instance_logits(0.5)[0, 2]
    logits[1:, 2] = shift
    return logits, torch.cat([torch.tensor([alignment], dtype=DTYPE), drawn])


def second_order_critical(logits: torch.Tensor, alignment: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The overshoot direction's critical step to second and third order at ``logits`` (n, 3) with
    Δμ = ``alignment`` (n,): η₀ = 2Δμ/Var⁻, the root of Δμη − ½Var⁻η² where the expansion (17) turns
    negative, and the third-order coefficient −κ₃/(3κ₂) of the exact root η₀(1 + cη₀ + O(η₀²)), with
    κ_j the cumulants of w_o under π⁻ (κ₂ = Var⁻). Returns (η₀, c₃), each (n,)."""
    w = three_response.direction(logits, "overshoot", alignment)
    wrong = torch.softmax(logits[:, 1:], dim=-1)
    centred = w[:, 1:] - (wrong * w[:, 1:]).sum(-1, keepdim=True)
    second, third = (wrong * centred**2).sum(-1), (wrong * centred**3).sum(-1)
    return 2 * alignment / second, -third / (3 * second)


@dataclass(frozen=True)
class CriticalStepCheck:
    """The measured critical step of the overshoot rule against its second-order prediction, per instance.

    Attributes:
        alignment: Δμ (n,); predicted: η₀ = 2Δμ/Var⁻(θ₀) (n,); third_order: −κ₃/(3κ₂) (n,);
            wrong_share: π⁻_b at the start (n,).
        measured: η*, the smallest step of the local grid η₀(1 + cη₀) from which every larger one collapses
            (J falls at each of the ``steps`` steps); NaN if the largest does not collapse (n,).
        resolution: the grid's spacing in c; steps: K.
    """

    alignment: np.ndarray
    predicted: np.ndarray
    third_order: np.ndarray
    wrong_share: np.ndarray
    measured: np.ndarray
    resolution: float
    steps: int

    @property
    def coefficient(self) -> np.ndarray:
        """c = (η*/η₀ − 1)/η₀, the measured relative deviation in units of η₀. (n,)"""
        return (self.measured / self.predicted - 1) / self.predicted

    def margins(self) -> np.ndarray:
        """:data:`CRITICAL_TOLERANCE` − |c| per instance: ≥ 0 iff |η*/η₀ − 1| ≤ ½η₀; −1 where the grid's
        largest step does not collapse (η* beyond the grid). Every step collapsing gives |c| = ¾ < 0."""
        c = self.coefficient
        return np.where(np.isfinite(c), CRITICAL_TOLERANCE - np.abs(np.nan_to_num(c)), -1.0)

    def headline(self) -> dict[str, float]:
        c = self.coefficient
        worst = int(np.nanargmax(np.abs(c)))
        return dict(critical_instance_predicted=float(self.predicted[0]),
                    critical_instance_measured=float(self.measured[0]),
                    critical_max_relative_deviation=float(np.nanmax(np.abs(self.measured / self.predicted - 1))),
                    critical_max_coefficient=float(abs(c[worst])), critical_worst_wrong_share=float(
                        self.wrong_share[worst]), critical_worst_alignment=float(self.alignment[worst]),
                    critical_max_third_order_error=float(np.nanmax(np.abs(c - self.third_order))),
                    critical_resolution=self.resolution)

    def summary(self) -> str:
        h = self.headline()
        return (f"chapter's instance: η0 = 2Δμ/Var⁻ = {h['critical_instance_predicted']:.5f}, measured η* = "
                f"{h['critical_instance_measured']:.5f}\n{len(self.measured)} instances: max |η*/η0 − 1| = "
                f"{h['critical_max_relative_deviation']:.4f}; max |η*/η0 − 1|/η0 = {h['critical_max_coefficient']:.3f}"
                f" (tolerance {CRITICAL_TOLERANCE}; Δμ = {h['critical_worst_alignment']:.4f}, π⁻_b = "
                f"{h['critical_worst_wrong_share']:.2f}); measured against the third-order −κ3/(3κ2): max difference "
                f"{h['critical_max_third_order_error']:.3f} (grid resolution {self.resolution:.3f})")


def critical_step_check(logits: torch.Tensor, alignment: torch.Tensor, steps: int,
                        points: int = CRITICAL_POINTS) -> CriticalStepCheck:
    """Run the overshoot rule from ``logits`` (n, 3) at Δμ = ``alignment`` (n,) for ``steps`` steps at
    ``points`` constant steps η₀(1 + cη₀), c ∈ [−¾, ¾], around each instance's prediction (one batched run)
    and measure its critical step (:class:`CriticalStepCheck`)."""
    predicted, third_order = second_order_critical(logits, alignment)  # (n,)
    c = np.linspace(-1.5 * CRITICAL_TOLERANCE, 1.5 * CRITICAL_TOLERANCE, points)
    grid = predicted[:, None] * (1 + torch.tensor(c)[None, :] * predicted[:, None])  # (n, P)
    n = len(predicted)
    runs = three_response.simulate(logits.repeat_interleave(points, 0), steps, "overshoot", grid.ravel(),
                                   alignment.repeat_interleave(points))
    collapsed = (classify(runs.value) == "collapses").reshape(n, points)
    measured = np.array([critical_step(grid[i].numpy(), collapsed[i]) for i in range(n)])
    share = torch.softmax(logits[:, 1:], dim=-1)[:, 0]
    return CriticalStepCheck(alignment.numpy(), predicted.numpy(), third_order.numpy(), share.numpy(), measured,
                             float(c[1] - c[0]), steps)


def draw_instance_sweep(ax, sweep: ThresholdSweep) -> None:
    """J_K against the constant step for both rules, with the safe step, the scale, η* and Theorem 2's window."""
    ax.semilogx(sweep.grid, sweep.overshoot_final, "o-", ms=3, label="overshoot direction (Theorem-2 instance)")
    ax.semilogx(sweep.grid, sweep.gap_final, "s-", ms=3, label="gap direction, same instance")
    ax.axhline(sweep.initial_value, color="grey", lw=0.8, ls=":", label="$J_0$")
    ax.axvline(sweep.safe, color="green", lw=1, ls="--", label="safe step (15a)")
    ax.axvline(sweep.scale, color="purple", lw=1, ls="-.", label=r"scale $\Delta\mu/(L+G^2)$")
    ax.axvline(sweep.critical, color="crimson", lw=1.2, label=rf"measured $\eta^*$ = {sweep.critical:.3g}")
    ax.axvspan(*sweep.window, color="crimson", alpha=0.12, label="Theorem 2's window")
    ax.set(xlabel=r"constant step $\eta$", ylabel=f"$J$ after {sweep.steps} steps",
           title="Threshold sweep: Theorem-2 instance")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)


def bandit_threshold_runs(config: TrajectoryConfig, grid: np.ndarray, seed: int, device: torch.device | str
                          ) -> bandit.BanditTrajectories:
    """The Section-5.1 bandit (seeds ``seed`` …) at every constant step of ``grid`` along the normalized
    REINFORCE direction, recording only the start and the end: runs ordered seed-major (seeds · B)."""
    problems = bandit.make_bandits(bandit.BanditSpec(eval_size=config.bandit_eval_size),
                                   range(seed, seed + config.bandit_seeds), config.bandit_steps, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bandit.EmptyBandWarning)
        return bandit.simulate_in_groups(problems.repeat(len(grid)), np.tile(grid, config.bandit_seeds),
                                         config.bandit_steps, update="normalized", record_every=config.bandit_steps)


@dataclass(frozen=True)
class BanditSweep:
    """Per run of the bandit sweep: η, seed index, mean final J and mean J₀ over the evaluation
    contexts, and the number of arms learned (``frame``); ``steps`` K."""

    frame: pd.DataFrame
    steps: int

    @property
    def by_step(self) -> pd.DataFrame:
        """Mean final J and learned arms per step size, averaged over seeds."""
        return self.frame.groupby("η")[["mean final J", "learned arms"]].mean()

    def no_collapse_margins(self) -> np.ndarray:
        """Mean final J − mean J₀ per run (seed × step): ≥ 0 where the run did not lose on its
        evaluation contexts."""
        return (self.frame["mean final J"] - self.frame["mean J0"]).to_numpy()

    def headline(self) -> dict[str, object]:
        best = self.by_step
        final = best["mean final J"]
        return {"bandit_sweep_mean_final_J": final.to_dict(),
                "bandit_sweep_learned_arms": best["learned arms"].to_dict(),
                "bandit_best_step": float(final.idxmax()), "bandit_best_final": float(final.max()),
                "bandit_smallest_step_final": float(final.iloc[0]), "bandit_largest_step_final": float(final.iloc[-1]),
                "bandit_mean_initial": float(self.frame["mean J0"].mean()),
                "bandit_largest_drop": float(max(0.0, -final.diff().min())),
                "bandit_runs_not_losing": int((self.no_collapse_margins() >= 0).sum()), "bandit_runs": len(self.frame),
                "bandit_learned_arms_largest_step": float(best["learned arms"].iloc[-1])}

    def table(self) -> pd.DataFrame:
        """Four rows of :attr:`by_step`: the smallest, the middle, the 80th-percentile and the largest step size."""
        best = self.by_step
        return best.iloc[[0, len(best) // 2, int(0.8 * len(best)), -1]]

    def note(self) -> str:
        """The best mean final J and its step size, as one line (printed above :meth:`table`)."""
        final = self.by_step["mean final J"]
        return f"bandit: best mean final J {final.max():.3f} at η = {final.idxmax():.3g}"

    def summary(self) -> str:
        return self.note() + "\n" + self.table().round(3).to_string()


def bandit_sweep(trajectories: bandit.BanditTrajectories, grid: np.ndarray, learned_arms: list[int]) -> BanditSweep:
    """The table of :class:`BanditSweep` from :func:`bandit_threshold_runs` (runs seed-major over ``grid``)
    and the arms learned in each run."""
    n = len(grid)
    seeds = trajectories.value.shape[1] // n
    frame = pd.DataFrame({"η": np.tile(grid, seeds), "seed": np.repeat(range(seeds), n),
                          "mean final J": trajectories.value[-1].mean(-1).numpy(),
                          "mean J0": trajectories.value[0].mean(-1).numpy(), "learned arms": learned_arms})
    return BanditSweep(frame, int(trajectories.recorded_steps[-1]))


def draw_bandit_sweep(ax, sweep: BanditSweep) -> None:
    """Mean final J against the constant step (band: the range over seeds) and the mean J₀."""
    sns.lineplot(data=sweep.frame, x="η", y="mean final J", errorbar=("pi", 100), marker="o", ms=3, ax=ax,
                 label="mean over evaluation contexts (band: seeds)")
    ax.axhline(sweep.frame["mean J0"].mean(), color="grey", lw=0.8, ls=":", label=r"$J_0 \approx 1/N$")
    ax.set(xscale="log", xlabel=r"constant step $\eta$ (normalized REINFORCE direction)",
           ylabel=f"$J$ after {sweep.steps} steps", title="Threshold sweep: Section-5.1 bandit")
    ax.legend()


@dataclass(frozen=True)
class PhaseDiagrams:
    """The overshoot instance's phase (:data:`PHASES`) after K steps on two grids: step × initial value
    at the instance's Δμ, and step × alignment at the instance's J₀. Maps (points, steps)."""

    grid: np.ndarray
    values: np.ndarray
    alignments: np.ndarray
    phase_value: np.ndarray
    phase_alignment: np.ndarray
    alignment: float
    steps: int

    def safe_margins(self) -> list[float]:
        """0 if no cell with η ≤ Δμ/(2(L_o + 8G_o²)) (the safe step (15a)) collapses, −1 otherwise."""
        eta_grid, align_grid = np.meshgrid(self.grid, self.alignments)
        safe = eta_grid <= align_grid / (2 * LEMMA_CONSTANT)
        return [float(not (self.phase_alignment[safe] == "collapses").any()) - 1]

    def shares(self) -> dict[str, float]:
        """Share of each phase on the step × alignment grid (3 decimals)."""
        return pd.Series(self.phase_alignment.ravel()).value_counts(normalize=True).round(3).to_dict()

    def headline(self) -> dict[str, dict[str, float]]:
        return dict(phase_shares_eta_alignment=self.shares())


def phase_diagrams(grid: np.ndarray, config: TrajectoryConfig) -> PhaseDiagrams:
    """Run the overshoot rule on both grids (``phase_points`` initial values 0.05 … 0.95 and
    alignments 10⁻³ … 1, log-spaced, against the steps ``grid``) and classify each run."""
    values = np.linspace(0.05, 0.95, config.phase_points)
    alignments = np.geomspace(1e-3, 1.0, config.phase_points)
    eta_grid, value_grid = np.meshgrid(grid, values)
    runs = three_response.simulate(three_response.instance_logits(torch.tensor(value_grid.ravel())), config.steps,
                                   "overshoot", torch.tensor(eta_grid.ravel()),
                                   torch.full((eta_grid.size,), config.alignment, dtype=DTYPE))
    phase_value = classify(runs.value).reshape(value_grid.shape)
    eta_grid2, align_grid = np.meshgrid(grid, alignments)
    runs2 = three_response.simulate(three_response.instance_logits(config.initial_value, eta_grid2.size),
                                    config.steps, "overshoot", torch.tensor(eta_grid2.ravel()),
                                    torch.tensor(align_grid.ravel()))
    phase_align = classify(runs2.value).reshape(align_grid.shape)
    return PhaseDiagrams(grid, values, alignments, phase_value, phase_align, config.alignment, config.steps)


def draw_phase_diagrams(axes, phases: PhaseDiagrams, critical: float) -> None:
    """Two panels: the phase over step × J₀ (with η*) and over step × Δμ (with the scale and the safe step)."""
    codes = {name: i for i, name in enumerate(PHASES)}
    cmap = ListedColormap(sns.color_palette("colorblind", 3))
    for ax, phase_map, y, ylabel in ((axes[0], phases.phase_value, phases.values, "initial value $J_0$"),
                                     (axes[1], phases.phase_alignment, phases.alignments, r"alignment $\Delta\mu$")):
        ax.pcolormesh(phases.grid, y, np.vectorize(codes.get)(phase_map), cmap=cmap, vmin=-0.5, vmax=2.5,
                      shading="nearest", rasterized=True)
        ax.set(xscale="log", xlabel=r"constant step $\eta$", ylabel=ylabel)
    axes[0].axvline(critical, color="k", lw=1, label=r"$\eta^*$ at $J_0$ of the instance")
    axes[0].set_title(f"Phase after {phases.steps} steps (Δμ = {phases.alignment})")
    axes[1].set_yscale("log")
    axes[1].plot(phases.grid, phases.grid * CURVATURE, "w--", lw=1, label=r"$\eta = \Delta\mu/(L+G^2)$")
    axes[1].plot(phases.grid, phases.grid * 2 * LEMMA_CONSTANT, "w:", lw=1.2, label="safe step (15a)")
    axes[1].set(ylim=(phases.alignments[0], phases.alignments[-1]),
                title=f"Phase after {phases.steps} steps ($J_0$ of the instance)")
    handles = [Patch(color=cmap(i), label=name) for name, i in codes.items()]
    for ax in axes:
        ax.legend(handles=handles + ax.get_lines(), loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3,
                  facecolor="0.72", framealpha=1)  # grey: the white guide lines show in the legend
