"""The chapter *Token-level theory* (Section 4): its parameters and every study, margin, table and
figure frame of the notebook.

The paper's bounds live in :mod:`rlvr_dynamics.theory.bounds` ((18a), (19), (20)–(22)), the token
chain's instances and exact runs in :mod:`rlvr_dynamics.engines.token_chain`, the sampled training
in :mod:`rlvr_dynamics.engines.token_training`; this module runs them at the chapter's settings and
turns the results into the claims' margins (≥ 0 when a claim holds), headline numbers and tables.

The studies, in the notebook's order (each draws from its own seeds, except where a ``generator`` is
passed: then in the order of the notebook's cells):

1. exactness of the forward algorithm against enumeration (:func:`forward_algorithm_errors`);
2. Assumptions 2 and 3, measured (:func:`measured_constants`, :func:`assumption3_table`);
3. inequality (22) and Theorem 3 on exact runs (:func:`theorem3_study`);
4. an explicit instance of Theorem 4 (:func:`theorem4_instance`);
5. the length law of the critical step (:func:`length_law`);
6. the effective steps (20) over the safe step (18a) (:func:`step_ratios`);
7. sampled training with fixed learning rates (:func:`sampled_training`, :func:`training_outcome`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import stats

from rlvr_dynamics.chapters import statistics
from rlvr_dynamics.config import parameter
from rlvr_dynamics.engines import token_chain, token_training
from rlvr_dynamics.theory import DTYPE, bounds, estimators, gaps, markov
from rlvr_dynamics.theory.policies import TokenPolicy

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
    """Assumption 2, measured: the largest token-score norm ‖e_v − π(· | p)‖ and largest
    λ_max(diag π − ππᵀ) over random softmax rows of growing scale (logits × 1 … 30), which approach
    the suprema G_p = √2 and L_p = ½."""
    scales = torch.logspace(0, math.log10(30), states, dtype=DTYPE).unsqueeze(-1)
    probs = torch.softmax(scales * torch.randn(states, vocab_size, generator=generator, dtype=DTYPE), dim=-1)
    eye = torch.eye(vocab_size, dtype=DTYPE)
    score_norm = torch.linalg.vector_norm(eye.unsqueeze(0) - probs.unsqueeze(1), dim=-1).max()  # over rows, tokens
    fisher = torch.diag_embed(probs) - probs.unsqueeze(-1) * probs.unsqueeze(-2)
    return float(score_norm), float(torch.linalg.eigvalsh(fisher)[..., -1].max())


def lengths_grid(longest: int, shortest: int = 4) -> list[int]:
    """T = 4, 8, 16, …, up to ``longest`` (doubling)."""
    out, length = [], shortest
    while length <= longest:
        out.append(length)
        length *= 2
    return out


def instance_seeds(seed: int, count: int, offset: int = 0) -> list[int]:
    """The seeds of ``count`` instances: seed · 1000 + offset + i (offset 0: the exact studies; 500: the training)."""
    return [seed * 1000 + offset + i for i in range(count)]


# ----------------------------------------------------------------------------------------------
# Exactness of the forward algorithm; Assumptions 2 and 3
# ----------------------------------------------------------------------------------------------

EXACTNESS_TOLERANCE = 1e-12
"""Largest difference between the forward algorithm and the enumeration of every response."""


def forward_algorithm_errors(group_size: int, generator: torch.Generator) -> tuple[int, list[float]]:
    """The forward algorithm of :mod:`rlvr_dynamics.theory.markov` against enumerating every response of
    a small chain (V = 4, T = 6, five random θ drawn from ``generator``): for each verifier, the largest
    differences of the log-odds f, of ∇f = g⁺ − g⁻ and of the three population updates.

    Returns the number of responses enumerated and the 3 · (2 + 3) largest absolute differences."""
    small = TokenPolicy(4, 6, position_bias=False)
    tokens, lengths = small.enumerate_responses()  # (R, T), (R,)
    theta_small = torch.randn(5, small.n_params, generator=generator, dtype=DTYPE)
    log_prob, score = small.log_prob_and_score(theta_small, tokens, lengths)  # (5, R), (5, R, D)
    errors = []
    for kind in markov.VERIFIERS:
        check = markov.Verifier(kind, 4, 2)
        reward = check.reward(tokens, lengths).expand_as(log_prob)  # (5, R)
        result, gap = markov.log_odds_and_gradient_gap(small, theta_small, check)
        errors.append((result.log_odds - gaps.log_odds(log_prob, reward)).abs().max().item())
        errors.append((gap - gaps.gradient_gap(log_prob, score, reward)).abs().max().item())
        for variant in estimators.VARIANTS:
            exact = markov.expected_update(small, theta_small, check, variant, group_size)
            listed = estimators.expected_direction(log_prob, score, reward, lengths.expand_as(log_prob), variant,
                                                   group_size)
            errors.append((exact - listed).abs().max().item())
    return small.n_responses, errors


def exactness_margins(errors: list[float]) -> list[float]:
    """EXACTNESS_TOLERANCE − each difference of :func:`forward_algorithm_errors`."""
    return [EXACTNESS_TOLERANCE - e for e in errors]


def assumption2_margins(score_max: float, fisher_max: float) -> list[float]:
    """The measured suprema of :func:`measured_constants` reach ≥ 0.99 G_p and ≥ 0.95 L_p, and never
    exceed G_p = √2 and L_p = ½ (up to 1e-12): [G_p − score, score − 0.99 G_p, L_p − fisher, fisher − 0.95 L_p]."""
    score_bound, smoothness = bounds.SCORE_BOUND, bounds.SMOOTHNESS
    return [score_bound - score_max + 1e-12, score_max - 0.99 * score_bound, smoothness - fisher_max + 1e-12,
            fisher_max - 0.95 * smoothness]


def assumption3_table(config: TokenConfig, seeds: list[int], generator: torch.Generator, device: torch.device | str,
                      samples: int = 4000, resamples: int = 200) -> pd.DataFrame:
    """Assumption 3 at every length of :func:`lengths_grid`, on the first instance of ``seeds``: the mean
    length E|o|, the ψ₁ norm of the exact length distribution, its estimate from ``samples`` sampled
    responses with a 99% bootstrap interval (``resamples`` resamples, drawn from ``generator`` after the
    samples), and the bound T/log 2. One row per T."""
    rows = []
    for length in lengths_grid(config.longest_length):
        policy, check, theta0 = token_chain.make_instances(config.vocab_size, length, config.verifier,
                                                           config.initial_value, seeds[:1], device)
        result = markov.outcomes(policy, theta0, check)
        exact, mean = markov.length_psi1_norm(result).item(), markov.mean_length(result).item()
        _, sampled = markov.sample(policy, theta0, samples, generator)  # lengths (1, n)
        support = torch.arange(1, length + 1, dtype=DTYPE)
        draws = sampled[0][torch.randint(sampled.shape[1], (resamples, sampled.shape[1]), generator=generator)]
        counts = torch.stack([torch.bincount(sampled[0] - 1, minlength=length)]
                             + [torch.bincount(row - 1, minlength=length) for row in draws]).to(DTYPE)  # (1 + B, T)
        log_weights = torch.log(counts / counts.sum(-1, keepdim=True))  # the sample's, then each resample's
        norms = markov.psi1_norm(support, log_weights)  # (1 + B,)
        estimate = norms[0].item()
        low, high = torch.quantile(norms[1:], torch.tensor([0.005, 0.995], dtype=DTYPE)).tolist()
        rows.append(dict(T=length, mean_length=mean, psi1_exact=exact, psi1_samples=estimate, ci_low=low, ci_high=high,
                         bound=length / math.log(2)))
    return pd.DataFrame(rows)


def assumption3_margins(table: pd.DataFrame) -> list[float]:
    """E|o| ≤ ‖|o|‖_ψ₁ ≤ T/log 2 at every length: [ψ₁ − E|o|, T/log 2 − ψ₁] per row of :func:`assumption3_table`."""
    margins = []
    for row in table.itertuples():
        margins += [row.psi1_exact - row.mean_length, row.bound - row.psi1_exact]
    return margins


def bootstrap_margins(table: pd.DataFrame, slack: float = 0.02) -> list[float]:
    """The exact ψ₁ norm lies in the bootstrap interval, up to ``slack`` of it: the distance to the
    nearer end of the interval over the norm, plus the slack, per row of :func:`assumption3_table`."""
    return [min(row.psi1_exact - row.ci_low, row.ci_high - row.psi1_exact) / row.psi1_exact + slack
            for row in table.itertuples()]


# ----------------------------------------------------------------------------------------------
# Inequality (22) and Theorem 3
# ----------------------------------------------------------------------------------------------

RUN_LENGTHS = (4, 16, 64, 256)
"""The lengths of the exact runs of (22) and Theorem 3 (those up to ``longest_length``)."""
ADVERSARY_LONGEST = 16
"""The longest T at which the exact runs include the Theorem-4 adversary (it needs a Hessian per step)."""
CONSTANT_STEPS = (0.01, 0.1, 1.0)
"""The constant step sizes of the exact runs (and the initial sizes of the Theorem-3 step rule)."""


@dataclass(frozen=True)
class Theorem3Study:
    """Inequality (22) at every step and Theorem 3's guarantee (18b) under the step (18a), over exact runs.

    Attributes:
        margins22: log-odds change − the right-hand side of (22), every step of every run. (N₂₂,)
        margins3: J_K − the bound (18b), every K of every run under (18a). (N₃,)
        tightness: per (length, rule) under (18a), the smallest log-odds gain over M(K)/2.
        runs: one row per (T, rule, step rule): the mean final J and the worst margin of (22).
    """

    margins22: torch.Tensor
    margins3: torch.Tensor
    tightness: list[float]
    runs: pd.DataFrame

    def ineq22_margins(self) -> torch.Tensor:
        """(22) holds at every step, up to 1e-12 of rounding. (N₂₂,)"""
        return self.margins22 + 1e-12

    def theorem3_margins(self) -> torch.Tensor:
        """J_K ≥ (18b) at every K, up to 1e-12 of rounding. (N₃,)"""
        return self.margins3 + 1e-12

    def final_values(self) -> pd.DataFrame:
        """The mean final J per (T, direction rule) and step rule."""
        return self.runs.pivot_table(index=["T", "rule"], columns="step_rule", values="final_J")

    def summary(self) -> str:
        """How many steps and (K, run) pairs were checked, the worst margins and the tightness of (18b)."""
        return (f"(22): {self.margins22.numel()} steps, worst margin {self.margins22.min().item():.2e}; "
                f"Theorem 3: {self.margins3.numel()} (K, run) pairs, worst margin {self.margins3.min().item():.2e}; "
                f"log-odds gain / (M/2) ≥ {min(self.tightness):.2f}")

    def headline(self) -> dict[str, object]:
        """The worst margins of (22) and (18b), the number of steps checked and the tightness of (18b)."""
        return dict(ineq22_worst_margin=self.margins22.min().item(), ineq22_steps=self.margins22.numel(),
                    theorem3_worst_margin=self.margins3.min().item(), theorem3_gain_over_bound_min=min(self.tightness))


def theorem3_study(config: TokenConfig, seeds: list[int], device: torch.device | str) -> Theorem3Study:
    """Exact runs on the first two instances of ``seeds`` at every length of RUN_LENGTHS up to
    ``longest_length``: directions ``gap``, ``grpo`` (and ``overshoot`` up to ADVERSARY_LONGEST), each
    with the step rules of :data:`token_chain.STEP_RULES` from the CONSTANT_STEPS, ``steps`` steps.
    Checks (22) (:func:`bounds.log_odds_change_bound`, constants at θ_k) at every step and, under the
    step (18a), Theorem 3's bound (18b) (:func:`bounds.convergence_lower_bound`) at every K."""
    margins22, margins3, tightness, run_rows = [], [], [], []
    for length in [t for t in RUN_LENGTHS if t <= config.longest_length]:
        policy, check, theta0 = token_chain.make_instances(config.vocab_size, length, config.verifier,
                                                           config.initial_value, seeds[:2], device)
        rules = ("gap", "grpo", "overshoot") if length <= ADVERSARY_LONGEST else ("gap", "grpo")
        for rule in rules:
            for step_rule in token_chain.STEP_RULES:
                sizes = torch.tensor(CONSTANT_STEPS, dtype=DTYPE, device=device).repeat(len(theta0))  # (B,)
                start = theta0.repeat_interleave(len(CONSTANT_STEPS), 0)  # (B, D), B = instances × sizes
                target = torch.full((len(start),), config.alignment, dtype=DTYPE, device=device)
                run = token_chain.simulate(policy, check, start, config.steps, rule, step_rule, sizes, target)
                bound = bounds.log_odds_change_bound(run.alignment, run.step, run.log_failure[:-1], length,
                                                     run.psi1[:-1])  # (K, B)
                margins22.append((run.log_odds_change - bound).flatten())
                if step_rule == "theorem3":
                    cumulative = (run.alignment * run.step).cumsum(0)  # M(K), (K, B)
                    lower = bounds.convergence_lower_bound(run.value[0], cumulative)
                    margins3.append((run.value[1:] - lower).flatten())
                    gain = run.log_odds[-1] - run.log_odds[0]
                    tightness.append((gain / (cumulative[-1] / 2)).min().item())
                run_rows.append(dict(T=length, rule=rule, step_rule=step_rule, final_J=run.value[-1].mean().item(),
                                     worst_margin_22=(run.log_odds_change - bound).min().item()))
    return Theorem3Study(torch.cat(margins22), torch.cat(margins3), tightness, pd.DataFrame(run_rows))


# ----------------------------------------------------------------------------------------------
# Theorem 4: an explicit instance
# ----------------------------------------------------------------------------------------------

THEOREM4_LENGTH = 8
"""T of the explicit Theorem-4 instance (short enough that window (19) lies above the critical step)."""
THEOREM4_INITIAL_VALUE = 0.5
THEOREM4_SEEDS = 4
THEOREM4_STEPS = 4
"""Constant steps tried, geometrically spaced across window (19)."""


@dataclass(frozen=True)
class Theorem4Instance:
    """The Theorem-4 adversary at alignment Δμ, run with constant steps across window (19).

    Attributes:
        length: T = T_∞ of the instance.
        alignment: the target Δμ.
        low, high: window (19) at Δμ and T.
        window_steps: the constant steps tried. (S,)
        run: the exact runs, one per (seed, step): run b has seed b // S and step window_steps[b % S].
    """

    length: int
    alignment: float
    low: float
    high: float
    window_steps: torch.Tensor
    run: token_chain.ExactRun

    def hypothesis_margins(self) -> list[float]:
        """Δμ ≤ √((L_p + G_p²)T)/240 (Theorem 4's hypothesis) and the window non-empty."""
        return [bounds.theorem4_largest_alignment(self.length) - self.alignment, self.high - self.low]

    def alignment_margins(self) -> list[float]:
        """Δμ_k = Δμ at every step, to 1e-12."""
        return [1e-12 - (self.run.alignment - self.alignment).abs().max().item()]

    def decrease_margins(self) -> torch.Tensor:
        """J_k − J_{k+1} at every step of every run: > 0 when J decreased. (K, B)"""
        return self.run.value[:-1] - self.run.value[1:]

    def summary(self, steps: int) -> str:
        """The window, the hypothesis on Δμ and the range of the final J after ``steps`` steps."""
        return (f"window (19): [{self.low:.4f}, {self.high:.4f}] at Δμ = {self.alignment} "
                f"(Δμ ≤ {bounds.theorem4_largest_alignment(self.length):.4f} required); J_K from "
                f"{self.run.value[-1].min().item():.4f} to {self.run.value[-1].max().item():.4f} after {steps} steps")

    def headline(self) -> dict[str, object]:
        """The window (19) and every run's final J."""
        return dict(theorem4_window=[self.low, self.high], theorem4_final_values=self.run.value[-1].tolist())


def theorem4_instance(config: TokenConfig, seeds: list[int], device: torch.device | str) -> Theorem4Instance:
    """The explicit instance of Theorem 4: T = THEOREM4_LENGTH, verifier ``final_token``, J₀ = ½, the first
    THEOREM4_SEEDS of ``seeds``; the adversary ``overshoot`` at alignment ``config.alignment`` with
    THEOREM4_STEPS constant steps geometrically spaced across window (19), ``config.steps`` steps."""
    low, high = bounds.theorem4_window(config.alignment, THEOREM4_LENGTH)
    policy, check, theta = token_chain.make_instances(config.vocab_size, THEOREM4_LENGTH, "final_token",
                                                      THEOREM4_INITIAL_VALUE, seeds[:THEOREM4_SEEDS], device)
    window_steps = torch.tensor(np.geomspace(low, high, THEOREM4_STEPS), dtype=DTYPE, device=device)  # (S,)
    start = theta.repeat_interleave(len(window_steps), 0)  # (B, D), B = seeds × S
    steps = window_steps.repeat(len(theta))  # (B,)
    run = token_chain.simulate(policy, check, start, config.steps, "overshoot", "constant", steps,
                               torch.full((len(start),), config.alignment, dtype=DTYPE, device=device))
    return Theorem4Instance(THEOREM4_LENGTH, config.alignment, low, high, window_steps, run)


# ----------------------------------------------------------------------------------------------
# The length law of the critical step
# ----------------------------------------------------------------------------------------------

NAIVE_SLOPE_LIMIT = -1.5
"""The naive slope −2 is excluded when the 95% interval's low end is above this."""
PAPER_SLOPE = -1.0
"""The paper's slope of the critical step in T: no verifier should be steeper (interval's high end above)."""
FLAT_SLOPE_LIMIT = -0.5
"""``final_token``: the critical step flattens when the interval's low end is above this."""
MAJORITY_SLOPE_RANGE = (-0.85, -0.2)
"""``majority``: the interval lies within this range (slope near −½)."""


@dataclass(frozen=True)
class LengthLaw:
    """The critical step η*(T) of one step of the Theorem-4 adversary, per verifier, length and instance.

    Attributes:
        table: one row per (verifier, T, instance): η* and the gap norm ‖∇f‖ at θ₀.
        fits: per verifier, :func:`statistics.slope_interval` of log η* on log T (slope, low, high, …).
    """

    table: pd.DataFrame
    fits: dict[str, dict[str, float]]

    def fit_table(self) -> pd.DataFrame:
        """The fits, one row per verifier."""
        return pd.DataFrame(self.fits).T

    def exists_margins(self) -> np.ndarray:
        """½ where a critical step was found, −½ where none was (η* = NaN). (rows,)"""
        return np.isfinite(self.table.eta_star.to_numpy()).astype(float) - 0.5

    def naive_excluded_margins(self) -> list[float]:
        """Per verifier, the interval's low end − NAIVE_SLOPE_LIMIT."""
        fits = self.fit_table()
        return [fits.loc[k, "low"] - NAIVE_SLOPE_LIMIT for k in markov.VERIFIERS]

    def not_steeper_margins(self) -> list[float]:
        """Per verifier, the interval's high end − PAPER_SLOPE."""
        fits = self.fit_table()
        return [fits.loc[k, "high"] - PAPER_SLOPE for k in markov.VERIFIERS]

    def flattening_margins(self) -> list[float]:
        """``final_token``: the interval's low end − FLAT_SLOPE_LIMIT."""
        return [self.fit_table().loc["final_token", "low"] - FLAT_SLOPE_LIMIT]

    def majority_margins(self) -> list[float]:
        """``majority``: the interval within MAJORITY_SLOPE_RANGE, both ends."""
        fits = self.fit_table()
        low, high = MAJORITY_SLOPE_RANGE
        return [fits.loc["majority", "low"] - low, high - fits.loc["majority", "high"]]

    def headline(self) -> dict[str, object]:
        """Every verifier's fit."""
        return {"length_law": {kind: self.fits[kind] for kind in markov.VERIFIERS}}

    def reference_lines(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the figure: T at the ends of the plotted range, and lines of slope −1 and −2 through the
        largest mean η* at T = 4."""
        law = self.table
        anchor = law[(law["T"] == 4)].groupby("verifier").eta_star.mean().max()
        grid_t = np.array([4, max(law["T"])])
        return grid_t, anchor * (grid_t / 4) ** -1.0, anchor * (grid_t / 4) ** -2.0

    def legend_labels(self, names: list[str]) -> list[str]:
        """For the figure: each verifier's legend entry with its slope and interval; other entries unchanged."""
        labels = [f"{kind}: slope {self.fits[kind]['slope']:.2f} [{self.fits[kind]['low']:.2f}, "
                  f"{self.fits[kind]['high']:.2f}]" for kind in markov.VERIFIERS]
        return [labels[markov.VERIFIERS.index(n)] if n in markov.VERIFIERS else n for n in names]


def length_law(config: TokenConfig, seeds: list[int], device: torch.device | str) -> LengthLaw:
    """η*(T) for every verifier (lengths up to ``longest_length``, ``majority_longest_length`` for
    ``majority``) and every instance of ``seeds`` at J₀ = ``initial_value``: the smallest step from which
    one step of the Theorem-4 adversary at alignment ``config.alignment`` lowers J
    (:func:`token_chain.one_step_threshold`, smallest over both signs of the adversary)."""
    law_rows, law_fits = [], {}
    for kind in markov.VERIFIERS:
        longest = config.majority_longest_length if kind == "majority" else config.longest_length
        kind_lengths = lengths_grid(longest)
        thresholds = np.zeros((len(seeds), len(kind_lengths)))  # (instances, lengths)
        for column, length in enumerate(kind_lengths):
            policy, check, theta0 = token_chain.make_instances(config.vocab_size, length, kind, config.initial_value,
                                                               seeds, device)
            result, gap = markov.log_odds_and_gradient_gap(policy, theta0, check)  # gap (n, D)
            hessian = markov.log_odds_hessian(policy, theta0, check)  # (n, D, D)
            target = torch.full((len(seeds),), config.alignment, dtype=DTYPE, device=device)
            candidates = token_chain.overshoot_candidates(gap, hessian, target)  # (n, 2, D)
            eta_star = token_chain.one_step_threshold(policy, check, theta0, candidates, target).min(-1).values
            thresholds[:, column] = eta_star.cpu().numpy()
            for index, value in enumerate(thresholds[:, column]):
                law_rows.append(dict(verifier=kind, T=length, instance=index, eta_star=value,
                                     gap_norm=torch.linalg.vector_norm(gap[index]).item()))
        law_fits[kind] = statistics.slope_interval(np.array(kind_lengths), thresholds)
    return LengthLaw(pd.DataFrame(law_rows), law_fits)


# ----------------------------------------------------------------------------------------------
# Effective steps (20) against the safe step (18a)
# ----------------------------------------------------------------------------------------------

DR_GRPO_SLOPE_RANGE = (0.8, 1.2)
"""Dr. GRPO and REINFORCE: the T-slope of η_eff/η_safe lies here at every J (theory: 1)."""
NORMALIZATION_GAIN = 0.4
"""GRPO's T-slope is below Dr. GRPO's by at least this at every J."""
GRPO_VALUE_GROWTH = 5.0
"""GRPO's ratio grows at least this many times from the smallest to the largest J, at every T."""
HEATMAP_VARIANTS = ("grpo", "dr_grpo", "reinforce")
"""The panels of the heatmap, left to right."""


@dataclass(frozen=True)
class StepRatios:
    """η_eff/η_safe of the exact population updates on a (J, T) grid (:func:`token_chain.step_ratio_grid`).

    Attributes:
        values: the J axis. (P,)
        lengths: the T axis. (L,)
        ratio: variant → η_eff/η_safe. (P, L) each.
        t_slopes: variant → log-log slope in T, per J. (P,) each.
        j_slopes: GRPO's slope of log ratio on log √(J/(1 − J)), per T. (L,)
    """

    values: np.ndarray
    lengths: list[int]
    ratio: dict[str, np.ndarray]
    t_slopes: dict[str, np.ndarray]
    j_slopes: np.ndarray

    def linear_growth_margins(self) -> np.ndarray:
        """Dr. GRPO then REINFORCE: distance of the T-slope inside DR_GRPO_SLOPE_RANGE, per J. (2P,)"""
        low, high = DR_GRPO_SLOPE_RANGE
        return np.concatenate([np.minimum(self.t_slopes[v] - low, high - self.t_slopes[v])
                               for v in ("dr_grpo", "reinforce")])

    def normalization_margins(self) -> np.ndarray:
        """Dr. GRPO's T-slope − GRPO's − NORMALIZATION_GAIN, per J. (P,)"""
        return self.t_slopes["dr_grpo"] - self.t_slopes["grpo"] - NORMALIZATION_GAIN

    def value_growth_margins(self) -> np.ndarray:
        """GRPO's ratio at the largest J over that at the smallest − GRPO_VALUE_GROWTH, per T. (L,)"""
        return self.ratio["grpo"][-1] / self.ratio["grpo"][0] - GRPO_VALUE_GROWTH

    def slope_table(self) -> pd.DataFrame:
        """The T-slopes, one row per variant, one column per J."""
        return pd.DataFrame(self.t_slopes, index=self.values).T

    def headline(self) -> dict[str, object]:
        """The T-slopes per variant and J, the J axis, and GRPO's slopes in √(J/(1 − J)) per T."""
        return dict(step_ratio_t_slopes={v: self.t_slopes[v].tolist() for v in self.t_slopes},
                    step_ratio_values=self.values.tolist(), grpo_ratio_j_slopes=self.j_slopes.tolist())

    def log_frames(self) -> dict[str, pd.DataFrame]:
        """For the heatmap: log₁₀ of each variant's ratio, J down the rows and T across the columns."""
        return {variant: pd.DataFrame(np.log10(self.ratio[variant]), index=self.values, columns=self.lengths)
                for variant in HEATMAP_VARIANTS}

    def color_range(self) -> dict[str, float]:
        """For the heatmap: one colour scale (vmin, vmax of log₁₀ ratio) shared by the panels."""
        return dict(vmin=np.log10(min(self.ratio[v].min() for v in estimators.VARIANTS)),
                    vmax=np.log10(max(self.ratio[v].max() for v in estimators.VARIANTS)))


def ratio_study(values: np.ndarray, lengths: list[int], ratio: dict[str, np.ndarray]) -> StepRatios:
    """The least-squares log-log slopes of η_eff/η_safe (variant → (P, L) on the grid ``values`` × ``lengths``):
    in T per J for every variant, and for GRPO in √(J/(1 − J)) per T."""
    log_t = np.log(lengths)
    t_slopes = {variant: np.array([np.polyfit(log_t, np.log(row), 1)[0] for row in ratio[variant]])
                for variant in estimators.VARIANTS}
    formula = np.sqrt(values / (1 - values))
    j_slopes = np.array([np.polyfit(np.log(formula), np.log(col), 1)[0] for col in ratio["grpo"].T])
    return StepRatios(values, lengths, ratio, t_slopes, j_slopes)


def step_ratios(config: TokenConfig, seed: int, device: torch.device | str) -> StepRatios:
    """The ratio on ``value_points`` values of J in [0.05, 0.95] and the lengths of :func:`lengths_grid`,
    instance ``seed`` (:func:`token_chain.step_ratio_grid`), with its slopes (:func:`ratio_study`)."""
    values = np.round(np.linspace(0.05, 0.95, config.value_points), 4)
    lengths = lengths_grid(config.longest_length)
    heat = token_chain.step_ratio_grid(values, lengths, seed, config.vocab_size, config.verifier, config.group_size,
                                       device)
    return ratio_study(values, lengths, heat)


# ----------------------------------------------------------------------------------------------
# Sampled training with a fixed learning rate
# ----------------------------------------------------------------------------------------------

TRAINING_LENGTHS = (4, 16, 64, 256, 1024)
"""The lengths of the sampled training (those up to ``training_longest_length``)."""
TRAINING_SEED_OFFSET = 500
"""The training instances' seeds are seed · 1000 + 500 + i."""
WORKING_VALUE = 0.9
"""A learning rate works at (variant, T) when the mean final J is at least this and no run collapsed."""
PLATEAU_VALUE = 0.99
"""GRPO reaches 100% when its tail-J interval is above this; it stagnates below 100% when under it."""
PLATEAU_RATES = 10.0
"""The paper's stagnation hypothesis is tested at the learning rates from this one up."""


@dataclass(frozen=True)
class SampledTraining:
    """Runs of (variant, learning rate, instance) at each length, advancing together.

    Attributes:
        lengths: the lengths trained at, shortest first.
        curves: one row per (T, variant, learning rate, instance, recorded step): the exact J.
        finals: one row per (T, variant, learning rate, instance): the final J, the mean J over the last
            fifth of the run (tail_J) and whether the run collapsed (final J < J₀/2).
    """

    lengths: list[int]
    curves: pd.DataFrame
    finals: pd.DataFrame

    def curve_frame(self) -> pd.DataFrame:
        """For the figure: the curves with the learning rate as a label ("learning rate")."""
        return self.curves.assign(**{"learning rate": self.curves.learning_rate.map("{:g}".format)})


def sampled_training(config: TokenConfig, seed: int, device: torch.device | str) -> SampledTraining:
    """Sampled training at every length of TRAINING_LENGTHS up to ``training_longest_length``, from the
    ``training_seeds`` instances (seeds :func:`instance_seeds` with offset TRAINING_SEED_OFFSET) at
    J₀ = ``training_initial_value``: every (variant, learning rate of LEARNING_RATES, instance) for
    ``training_steps`` SGD steps with groups of ``group_size`` (:func:`token_training.train`; the
    samples at length T are drawn from a generator on ``device`` seeded seed + T). J is recorded
    about 50 times per run."""
    train_seeds = instance_seeds(seed, config.training_seeds, TRAINING_SEED_OFFSET)
    lengths = [t for t in TRAINING_LENGTHS if t <= config.training_longest_length]
    variants = list(estimators.VARIANTS)
    curves, finals = [], []
    for length in lengths:
        policy, check, theta0 = token_chain.make_instances(config.vocab_size, length, config.verifier,
                                                           config.training_initial_value, train_seeds, device)
        layout = [(v, lr, i) for v in variants for lr in LEARNING_RATES for i in range(len(train_seeds))]
        start = torch.stack([theta0[i] for _, _, i in layout])  # (B, D)
        rates = torch.tensor([lr for _, lr, _ in layout], dtype=DTYPE, device=device)  # (B,)
        run = token_training.train(policy, check, start, [v for v, _, _ in layout], rates, config.training_steps,
                                   config.group_size, torch.Generator(device).manual_seed(seed + length),
                                   record_every=max(1, config.training_steps // 50))
        tail = run.value[-max(2, len(run.value) // 5):].mean(0)  # mean J over the last fifth of the run, (B,)
        for index, (variant, rate, instance) in enumerate(layout):
            finals.append(dict(T=length, variant=variant, learning_rate=rate, instance=instance,
                               final_J=run.value[-1, index].item(), tail_J=tail[index].item()))
            for step, value in zip(run.recorded_steps.tolist(), run.value[:, index].tolist(), strict=True):
                curves.append(dict(T=length, variant=variant, learning_rate=rate, instance=instance, step=step,
                                   J=value))
    curves, finals = pd.DataFrame(curves), pd.DataFrame(finals)
    finals["collapsed"] = finals.final_J < config.training_initial_value / 2
    return SampledTraining(lengths, curves, finals)


def t_interval(values) -> pd.Series:
    """Mean and 95% Student-t interval (mean, low, high) of ``values``."""
    values = np.asarray(values)
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return pd.Series({"mean": values.mean(), "low": values.mean() - half, "high": values.mean() + half})


@dataclass(frozen=True)
class TrainingOutcome:
    """What the sampled training shows, per (variant, learning rate, T).

    Attributes:
        summary: the final J's mean and 95% interval (columns mean, low, high; index variant, rate, T).
        collapse: the share of runs that collapsed (index variant, rate; one column per T).
        works: whether the learning rate works: mean final J ≥ WORKING_VALUE and no run collapsed.
        largest_working: the largest working learning rate (index variant; one column per T).
        short, long: the shortest and longest T trained at.
        lost_rates: the learning rates that work for Dr. GRPO at the shortest T and fail at the longest.
        plateau: GRPO at the longest T: the tail J's mean and interval per learning rate.
    """

    summary: pd.DataFrame
    collapse: pd.DataFrame
    works: pd.Series
    largest_working: pd.DataFrame
    short: int
    long: int
    lost_rates: list[float]
    plateau: pd.DataFrame

    def length_failure_margins(self) -> list[float]:
        """Some learning rate works for Dr. GRPO at the shortest T and fails at the longest: count − ½."""
        return [len(self.lost_rates) - 0.5]

    def grpo_range_margins(self) -> list[float]:
        """GRPO's largest working learning rate at the longest T over that at the shortest, in decades."""
        largest = self.largest_working
        return [math.log10(largest.loc["grpo", self.long]) - math.log10(largest.loc["grpo", self.short])]

    def grpo_reaches_one_margins(self) -> list[float]:
        """GRPO at the largest learning rate and the longest T: the tail-J interval's low end − PLATEAU_VALUE."""
        return [self.plateau.loc[max(LEARNING_RATES), "low"] - PLATEAU_VALUE]

    def stagnation_margins(self) -> list[float]:
        """The paper's hypothesis, GRPO stagnates below 100%: PLATEAU_VALUE − the largest tail-J interval's
        high end over the learning rates ≥ PLATEAU_RATES."""
        return [PLATEAU_VALUE - self.plateau.loc[self.plateau.index >= PLATEAU_RATES, "high"].max()]

    def headline(self) -> dict[str, object]:
        """The tables as records: final J, collapse share, largest working learning rate, GRPO's plateau."""
        return dict(training_final=self.summary.reset_index().to_dict("records"),
                    training_collapse_share=self.collapse.stack().rename("share").reset_index().to_dict("records"),
                    largest_working_learning_rate=self.largest_working.stack().rename("rate").reset_index()
                    .to_dict("records"),
                    grpo_plateau=self.plateau.reset_index().to_dict("records"))


def training_outcome(training: SampledTraining) -> TrainingOutcome:
    """The tables of :class:`TrainingOutcome` from the runs' final and tail values."""
    finals, keys = training.finals, ["variant", "learning_rate", "T"]
    summary = finals.groupby(keys).final_J.apply(t_interval).unstack()
    collapse = finals.groupby(keys).collapsed.mean().unstack("T")
    works = (summary["mean"] >= WORKING_VALUE) & (finals.groupby(keys).collapsed.sum() == 0)
    largest_working = works[works].reset_index().groupby(["variant", "T"]).learning_rate.max().unstack("T")
    short, long = training.lengths[0], training.lengths[-1]
    lost_rates = [float(rate) for rate in LEARNING_RATES
                  if all(works.get((v, rate, short), False) and not works.get((v, rate, long), False)
                         for v in ("dr_grpo",))]
    grpo_long = finals[(finals.variant == "grpo") & (finals["T"] == long)]
    plateau = grpo_long.groupby("learning_rate").tail_J.apply(t_interval).unstack()
    return TrainingOutcome(summary, collapse, works, largest_working, short, long, lost_rates, plateau)
