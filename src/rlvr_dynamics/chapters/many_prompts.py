"""The chapter *Many prompts*: its parameters, runs, and every table, margin and figure panel it reports.

The engine is :mod:`rlvr_dynamics.engines.multi_prompt` (the prompted bigram chain; the Figure-1 bandit is
its one-token case); the per-prompt theory (Propositions B10–B12) is :mod:`rlvr_dynamics.theory.many_prompts`;
the language-model comparison reuses the Figure-2 experiment (:mod:`rlvr_dynamics.lm.experiment`) with the
runner's ``prompt_weightings`` option.

A *margin* is one number per checked case, ≥ 0 when the chapter's claim holds on that case. The drawing
functions take matplotlib Axes and import matplotlib and seaborn when called.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rlvr_dynamics.chapters import statistics
from rlvr_dynamics.config import parameter, split_list
from rlvr_dynamics.engines import multi_prompt as mp
from rlvr_dynamics.lm import experiment
from rlvr_dynamics.theory import many_prompts as theory

SOLVED_LEVEL = 0.5
"""A prompt counts as unsolved while J_q < 0.5, and as *stuck* when it is unsolved at the end and its J_q did
not rise over the second half of the run."""
BATCH_TARGET = 0.9
"""Steps to 90%: the first recorded step at which the batch success (1/Q) Σ_q J_q reaches 0.9."""
INTERVAL_LEVEL = 0.95
"""Level of the Student-t intervals over seeds."""
IDENTITY_TOLERANCE = 1e-10
"""Relative tolerance of the identity of Proposition B11 in float64."""

FULL_SUCCESS = 1.0
"""The stagnation hypothesis's "100%": every prompt solved."""

SETUP_NUMBERS = {"0.5": SOLVED_LEVEL, "90%": BATCH_TARGET, "0.9": BATCH_TARGET, "95%": INTERVAL_LEVEL,
                 "1e-10": IDENTITY_TOLERANCE, "100%": FULL_SUCCESS}
"""The decimals the prose types: constants of the set-up (every measured number is glued)."""

ROBUSTNESS_RECORD = Path("data") / "robustness" / "many_prompts.json"
"""The committed record of this chapter's claims at seeds 0–9 (``rlvr-book robustness many_prompts``)."""

RULES: tuple[tuple[str, str, str], ...] = (
    ("GRPO", "grpo", "all"),
    ("Dr. GRPO", "dr_grpo", "all"),
    ("safe step", "safe_step", "all"),
    ("PCGrad", "pcgrad", "all"),
    ("Dr. GRPO + band", "dr_grpo", "band"),
    ("Dr. GRPO + uniform", "dr_grpo", "uniform"),
)
"""The compared update rules: (name, engine rule, prompt selection). The last two draw ``prompts_per_step``
prompts per step (band curriculum of Section 5.1 against a uniform draw of the same size)."""
BASELINES = ("GRPO", "Dr. GRPO")
REGIMES = {"linear": "every prompt solvable (answers linear in x)",
           "random": "answers random (with Q > d no θ solves every prompt)"}


@dataclass(frozen=True)
class ManyPromptsConfig:
    """Parameters of the chapter *Many prompts*."""

    bandit_prompts: int = parameter("contexts (prompts) of the Figure-1 bandit, trained all at once", "int",
                                    low=2, high=10_000)
    bandit_dim: int = parameter("context dimension d of the bandit", "int", low=1, high=1_000)
    bandit_arms: int = parameter("arms N of the bandit", "int", low=2, high=10_000)
    bandit_step_size: float = parameter("step size α of the bandit's full-batch runs", "float", low=1e-6, high=1e6)
    bandit_steps: int = parameter("steps of the bandit runs", "int", low=1, high=1_000_000)
    chain_prompts: int = parameter("prompts Q of the prompted chain", "int", low=2, high=1_000)
    vocab_size: int = parameter("tokens V of the chain, EOS included", "int", low=3, high=64)
    feature_dim: int = parameter("prompt features d of the chain", "int", low=1, high=1_000)
    lengths: str = parameter("longest lengths T_q of the chain's prompts, cycled over the prompts (each ≥ 2)",
                             "str")
    steps: int = parameter("steps of each compared run", "int", low=1, high=1_000_000)
    long_steps: int = parameter("steps of the long GRPO / Dr. GRPO runs of the stagnation test", "int",
                                low=2, high=10_000_000)
    seeds: int = parameter("problems (seeds) every rule is evaluated on; intervals are over these", "int",
                           low=2, high=10_000)
    tuning_seeds: int = parameter("other problems on which each rule's step size is chosen", "int",
                                  low=1, high=10_000)
    step_size_grid: str = parameter("step sizes α tried for every rule (the same grid for all)", "str")
    prompts_per_step: int = parameter("prompts per step of the band and uniform selections", "int",
                                      low=1, high=1_000)
    band_low: float = parameter("lower end of the curriculum band on J_q", "float", low=0.0, high=1.0)
    band_high: float = parameter("upper end of the curriculum band on J_q", "float", low=0.0, high=1.0)
    group_size: int = parameter("G of Dr. GRPO's factor (1 − 1/G)", "int", low=2, high=4096)
    record_every: int = parameter("steps between recorded values", "int", low=1, high=1_000_000)
    lm_steps: int = parameter("GRPO steps of each language-model run", "int", low=1, high=1_000_000)
    lm_eval_every: int = parameter("steps between validation checks of the language-model runs", "int", low=1,
                                   high=1_000_000)
    lm_seeds: int = parameter("GRPO seeds of the language-model comparison", "int", low=1, high=1_000)

    def check(self) -> None:
        if self.band_low > self.band_high:
            raise ValueError(f"parameter 'band' = ({self.band_low}, {self.band_high}): band_low must not exceed "
                             "band_high")
        if self.prompts_per_step > self.chain_prompts:
            raise ValueError(f"parameter 'prompts_per_step' = {self.prompts_per_step} is out of range: allowed "
                             f"prompts_per_step ≤ chain_prompts = {self.chain_prompts}")
        self.length_list  # noqa: B018 (validates)
        self.grid  # noqa: B018
        if self.record_every > self.steps:
            raise ValueError(f"parameter 'record_every' = {self.record_every} is out of range: allowed "
                             f"record_every ≤ steps = {self.steps}")
        self.lm_config()

    @property
    def length_list(self) -> tuple[int, ...]:
        return tuple(split_list("lengths", self.lengths, int, within=mp.CHAIN_LENGTHS))

    @property
    def grid(self) -> list[float]:
        values = split_list("step_size_grid", self.step_size_grid, float)
        for value in values:
            if not (math.isfinite(value) and 0 < value <= 1e6):
                raise ValueError(f"parameter 'step_size_grid' = {self.step_size_grid!r}: {value} is out of range: "
                                 "allowed 0 < α ≤ 1e6")
        return values

    def lm_config(self, preset: str = "ci"):
        """The language-model comparison: the Figure-2 chapter's setting of ``preset`` (same warm-up, so its
        cached checkpoint is reused), Dr. GRPO with and without the safe-step weights, ``lm_steps`` each."""
        base = experiment.LMExperimentConfig(**experiment.PRESETS[preset])
        config = dataclasses.replace(base, loss_types="dr_grpo", scale_rewards="none",
                                     learning_rates=base.learning_rates.split(",")[0], advantage_filters="all",
                                     prompt_weightings="none,safe_step", steps=self.lm_steps,
                                     eval_every=self.lm_eval_every, per_prompt_every=min(base.per_prompt_every,
                                                                                         self.lm_steps))
        config.check()
        return config


PRESETS = {
    # ≈ 4 min on 2 CPU cores (3.7 min median over seeds 0–9 with two chapters at a time): the exact runs ≈ 2 min,
    # four language-model runs of 60 steps ≈ 2 min.
    "ci": dict(bandit_prompts=100, bandit_dim=10, bandit_arms=100, bandit_step_size=0.5, bandit_steps=300,
               chain_prompts=16, vocab_size=6, feature_dim=3, lengths="2,4,8", steps=400, long_steps=3000, seeds=10,
               tuning_seeds=4, step_size_grid="3,10,30,100,300,1000,3000,10000", prompts_per_step=4, band_low=0.2,
               band_high=0.8, group_size=8, record_every=10, lm_steps=60, lm_eval_every=20, lm_seeds=2),
    "paper": dict(bandit_prompts=100, bandit_dim=10, bandit_arms=100, bandit_step_size=0.5, bandit_steps=2000,
                  chain_prompts=32, vocab_size=6, feature_dim=3, lengths="2,4,8,16", steps=2000, long_steps=20_000,
                  seeds=32, tuning_seeds=8, step_size_grid="1,3,10,30,100,300,1000,3000,10000,30000",
                  prompts_per_step=8, band_low=0.2, band_high=0.8, group_size=8, record_every=10, lm_steps=300,
                  lm_eval_every=30, lm_seeds=3),
}


# ----------------------------------------------------------------------------------------------
# Problems and runs
# ----------------------------------------------------------------------------------------------


def problem_seeds(seed: int, count: int, offset: int = 0) -> list[int]:
    """The problems of the book's ``seed``: seed·10⁶ + offset + i, i < count (disjoint across book seeds;
    ``offset`` keeps the tuning problems apart from the evaluation ones)."""
    return [seed * 1_000_000 + offset + index for index in range(count)]


TUNING_OFFSET = 500_000


def bandit_family(config: ManyPromptsConfig, seeds: Sequence[int], device="cpu") -> mp.PromptFamily:
    """The Figure-1 problem (Section 5.1): ``bandit_prompts`` pool contexts, d, N, θ₀ ~ N(0, 0.01²)."""
    return mp.make_family("bandit", list(seeds), config.bandit_prompts, config.bandit_arms + 1, config.bandit_dim,
                          device=device)


def chain_family(config: ManyPromptsConfig, seeds: Sequence[int], answer_rule: str = "linear",
                 device="cpu") -> mp.PromptFamily:
    """The prompted chain: ``chain_prompts`` prompts of lengths cycled from ``lengths``."""
    return mp.make_family("chain", list(seeds), config.chain_prompts, config.vocab_size, config.feature_dim,
                          config.length_list, answer_rule, device=device)


def repeat_family(family: mp.PromptFamily, times: int) -> mp.PromptFamily:
    """The runs of ``family`` repeated ``times`` times, block after block (run b → rows b, b + B, …)."""
    return dataclasses.replace(family, features=family.features.repeat(times, 1, 1),
                               answers=family.answers.repeat(times, 1), theta0=family.theta0.repeat(times, 1))


def train_rule(config: ManyPromptsConfig, family: mp.PromptFamily, rule: str, selection: str, step_sizes,
               steps: int, generator: torch.Generator) -> mp.PromptRun:
    """One rule (:data:`RULES`) on every run of ``family``."""
    count = config.prompts_per_step if selection != "all" else None
    return mp.train(family, rule, step_sizes, steps, generator, selection=selection, prompts_per_step=count,
                    band=(config.band_low, config.band_high), group_size=config.group_size,
                    record_every=config.record_every)


# ----------------------------------------------------------------------------------------------
# Per-prompt measurements
# ----------------------------------------------------------------------------------------------


def negative_share(run: mp.PromptRun) -> np.ndarray:
    """Share of prompts with Δμ_q(k) < 0 at every step, per run.   (K, B)"""
    return (run.alignment < 0).double().mean(-1).numpy()


def alignment_frame(runs: dict[str, mp.PromptRun], every: int = 1) -> pd.DataFrame:
    """Long frame of the share of prompts with Δμ_q < 0: columns rule, run, step, share."""
    rows = []
    for name, run in runs.items():
        share = negative_share(run)[::every]
        steps = np.arange(share.shape[0]) * every
        for b in range(share.shape[1]):
            rows.append(pd.DataFrame({"rule": name, "run": b, "step": steps, "share": share[:, b]}))
    return pd.concat(rows, ignore_index=True)


def stuck_prompts(run: mp.PromptRun) -> torch.Tensor:
    """Unsolved at the end (J_q < 0.5) and no higher than at the middle recorded step.   (B, Q) bool"""
    final, middle = run.value[-1], run.value[run.value.shape[0] // 2]
    return (final < SOLVED_LEVEL) & (final <= middle)


def always_opposed(run: mp.PromptRun, fraction: float = 0.5) -> torch.Tensor:
    """Prompts with Δμ_q(k) ≤ 0 at every step of the last ``fraction`` of the run.   (B, Q) bool"""
    tail = run.alignment[int(run.alignment.shape[0] * (1 - fraction)):]
    return (tail <= 0).all(0)


def overshoot_share(run: mp.PromptRun) -> float:
    """Share of (step, run, prompt) cases where an aligned prompt (Δμ_q(k) > 0) lost log-odds (Δf_q < 0): an
    overshoot in the sense of the paper's step-size thresholds."""
    return float(((run.alignment > 0) & (run.log_odds_change < 0)).double().mean())


def run_metrics(run: mp.PromptRun) -> pd.DataFrame:
    """Per run: final batch success, share of stuck prompts, worst prompt's success, steps to 90% (NaN when
    not reached), share of prompts with Δμ_q < 0 at the last step."""
    batch = run.value.mean(-1)  # (S, B)
    reached = batch >= BATCH_TARGET
    first = reached.double().argmax(0)
    steps_to = torch.where(reached.any(0), run.recorded_steps[first].double(), torch.nan)
    return pd.DataFrame({"batch_success": batch[-1].numpy(), "stuck_share": stuck_prompts(run).double().mean(-1)
                         .numpy(), "worst_success": run.value[-1].min(-1).values.numpy(),
                         "steps_to_90": steps_to.numpy(),
                         "opposed_share": (run.alignment[-1] < 0).double().mean(-1).numpy()})


def alignment_table(runs: dict[str, mp.PromptRun]) -> pd.DataFrame:
    """Per rule: the mean share of prompts with Δμ_q < 0 over the run and at its end, the stuck share, and the
    share of stuck prompts whose alignment stayed ≤ 0 over the second half (means over runs)."""
    rows = []
    for name, run in runs.items():
        share, stuck, opposed = negative_share(run), stuck_prompts(run), always_opposed(run)
        rows.append({"rule": name, "opposed, mean over steps": share.mean(), "opposed at the end": share[-1].mean(),
                     "stuck": stuck.double().mean().item(),
                     "stuck and opposed": (stuck & opposed).double().sum().item() / max(stuck.sum().item(), 1),
                     "batch success": run.value[-1].mean().item()})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# The checks of Propositions B10–B12
# ----------------------------------------------------------------------------------------------


ROUNDING_ULPS = 8
"""The float64 rounding allowance of the per-step checks: 8 units in the last place of max(|f_q|, 1). A step
whose second-order bound C_qη_k² lies below the resolution of f_q (η_k ≈ 1e-80 once J_q(1 − J_q) underflows)
cannot be checked more finely than that."""


def lemma1_margins(run: mp.PromptRun, constants: torch.Tensor) -> np.ndarray:
    """B10 at every step, run and prompt: 1 − |Δf_q − η_kΔμ_q| / (C_q η_k² + rounding) (≥ 0 when Lemma 1
    holds; steps with η_k = 0 are skipped; rounding: :data:`ROUNDING_ULPS` of max(|f_q(k)|, |f_q(k+1)|, 1),
    f_q(k) rebuilt from the recorded changes).   → (cases,)"""
    step = run.step.unsqueeze(-1)  # (K, B, 1)
    remainder = (run.log_odds_change - step * run.alignment).abs()
    path = run.log_odds[0] + torch.cat([torch.zeros_like(run.log_odds_change[:1]), run.log_odds_change]).cumsum(0)
    scale = torch.maximum(path[:-1].abs(), path[1:].abs()).clamp_min(1)  # (K, B, Q)
    bound = constants * step**2 + ROUNDING_ULPS * torch.finfo(scale.dtype).eps * scale
    moving = (step > 0).expand_as(remainder)
    return (1 - remainder / bound)[moving].numpy()


def ceiling_margins(run: mp.PromptRun, constants: torch.Tensor, initial_log_odds: torch.Tensor) -> np.ndarray:
    """B12 (Theorem 1(a) per prompt) at every recorded step: ceiling_q(k) − f_q(k) ≥ 0, with the ceiling
    f_q(0) + Σ η[Δμ_q]₊ + C_q Σ η².   → (cases,)"""
    ceiling = theory.stuck_log_odds_ceiling(initial_log_odds, run.step, run.alignment, constants)  # (K + 1, B, Q)
    return (ceiling[run.recorded_steps] - run.log_odds).flatten().numpy()


def identity_margins(family: mp.PromptFamily, thetas: Sequence[torch.Tensor], group_size: int) -> dict[str, np.ndarray]:
    """B11 at each θ of ``thetas`` for Dr. GRPO's weights c_q = (1 − 1/G)J_q(1 − J_q): the identity
    Σ c_qΔμ_q = ‖u‖ (relative error ≤ 1e-10) and the criterion (opposed ⇔ Δμ_q < 0, per prompt)."""
    identity, criterion = [], []
    for theta in thetas:
        state = mp.prompt_state(family, theta)
        weights = mp.dr_grpo_weights(state, group_size)
        left, right = theory.weighted_alignment_identity(weights, state.gaps)
        identity.append((IDENTITY_TOLERANCE - (left - right).abs() / right).numpy())
        update = torch.einsum("bq,bqd->bd", weights, state.gaps)
        opposed = theory.opposed_prompts(weights, state.gaps)
        criterion.append(np.where((opposed == (theory.prompt_alignments(update, state.gaps) < 0)).numpy(), 1.0, -1.0)
                         .ravel())
    return {"identity": np.concatenate(identity), "criterion": np.concatenate(criterion)}


def threshold_margins(family: mp.PromptFamily, theta: torch.Tensor, group_size: int, constant: str = "sharp"
                      ) -> dict[str, np.ndarray]:
    """B10(a)–(b) stepped exactly from θ along Dr. GRPO's direction w:

    - ``improve``: at η = 0.99·min_q Δμ_q/C_q (runs where every Δμ_q > 0), every prompt's f_q rises:
      Δf_q/(ηΔμ_q) > 0;
    - ``half``: at η_all = min_q Δμ_q/(2C_q), each prompt gains at least η_allΔμ_q/2: Δf_q/(η_allΔμ_q/2) − 1 ≥ 0;
    - ``opposed``: at η = 0.99·max_q(−Δμ_q/C_q), each prompt with Δμ_q < −C_qη falls: −Δf_q/(η|Δμ_q|) > 0.
    """
    state = mp.prompt_state(family, theta)
    update = torch.einsum("bq,bqd->bd", mp.dr_grpo_weights(state, group_size), state.gaps)
    direction = update / torch.linalg.vector_norm(update, dim=-1, keepdim=True)
    alignments = theory.prompt_alignments(update, state.gaps)
    constants = family.constants(constant)

    def change(step: torch.Tensor) -> torch.Tensor:
        return mp.prompt_state(family, theta + step.unsqueeze(-1) * direction).log_odds - state.log_odds

    aligned = (alignments > 0).all(-1)  # (B,)
    below = 0.99 * theory.every_prompt_improves_below(alignments, constants)
    safe = theory.shared_safe_step(alignments, constants)
    first_order = below.unsqueeze(-1) * alignments
    margins = {"improve": (change(below) / first_order)[aligned].flatten().numpy(),
               "half": (2 * change(safe) / (safe.unsqueeze(-1) * alignments) - 1)[aligned].flatten().numpy()}
    opposed_ratio = torch.where(alignments < 0, -alignments / constants, 0.0)
    step = 0.99 * opposed_ratio.amax(-1).clamp_min(torch.finfo(theta.dtype).tiny)  # (B,)
    falling = alignments < -constants * step.unsqueeze(-1)
    margins["opposed"] = (-change(step) / (step.unsqueeze(-1) * alignments.abs()))[falling].numpy()
    return margins


def threshold_margins_at(family: mp.PromptFamily, thetas: Sequence[torch.Tensor], group_size: int
                         ) -> dict[str, np.ndarray]:
    """:func:`threshold_margins` at each θ of ``thetas`` (e.g. the start, where every prompt is usually aligned,
    and the end of a run, where some are opposed), concatenated."""
    parts = [threshold_margins(family, theta, group_size) for theta in thetas]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def spread_frame(family: mp.PromptFamily, theta: torch.Tensor, group_size: int) -> pd.DataFrame:
    """Per run at θ: B10's η_all = min_q Δμ_q/(2C_q) along Dr. GRPO's direction, the mean of the prompts' own
    (15a) steps, their ratio (:func:`~rlvr_dynamics.theory.many_prompts.safe_step_spread`) and the coefficient
    of variation of Δμ_q/C_q."""
    state = mp.prompt_state(family, theta)
    update = torch.einsum("bq,bqd->bd", mp.dr_grpo_weights(state, group_size), state.gaps)
    alignments, constants = theory.prompt_alignments(update, state.gaps), family.constants()
    ratios = alignments.clamp_min(0) / constants
    return pd.DataFrame({"shared": theory.shared_safe_step(alignments, constants).numpy(),
                         "mean own": (ratios / 2).mean(-1).numpy(),
                         "ratio": theory.safe_step_spread(alignments, constants).numpy(),
                         "cv": (ratios.std(-1) / ratios.mean(-1)).numpy(),
                         "opposed": (alignments <= 0).double().mean(-1).numpy()})


# ----------------------------------------------------------------------------------------------
# The comparison of update rules
# ----------------------------------------------------------------------------------------------


@dataclass
class RuleResult:
    """One rule in one regime: the chosen α, the tuning scores (mean final batch success per α on the tuning
    problems), the evaluation runs' metrics (one row per problem) and the evaluation run."""

    name: str
    regime: str
    step_size: float
    tuning: dict[float, float]
    metrics: pd.DataFrame
    run: mp.PromptRun


def compare_rules(config: ManyPromptsConfig, seed: int, regime: str, rules=RULES) -> dict[str, RuleResult]:
    """Every rule of :data:`RULES` in ``regime`` (:data:`REGIMES`): its α chosen from the same grid on the same
    tuning problems by the mean final batch success, then run on the evaluation problems with the same number
    of steps. Selections and PCGrad's orders come from generators seeded by the book's ``seed``."""
    tuning = chain_family(config, problem_seeds(seed, config.tuning_seeds, TUNING_OFFSET), regime)
    evaluation = chain_family(config, problem_seeds(seed, config.seeds), regime)
    grid = config.grid
    alphas = torch.tensor(grid, dtype=torch.float64).repeat_interleave(config.tuning_seeds)
    results = {}
    for index, (name, rule, selection) in enumerate(rules):
        generator = torch.Generator().manual_seed(seed * 1_000 + index)
        tuned = train_rule(config, repeat_family(tuning, len(grid)), rule, selection, alphas, config.steps, generator)
        scores = tuned.value[-1].mean(-1).view(len(grid), config.tuning_seeds).mean(-1)
        best = grid[int(torch.nan_to_num(scores, nan=-math.inf).argmax())]  # a step size that broke a run loses
        run = train_rule(config, evaluation, rule, selection, best, config.steps, generator)
        results[name] = RuleResult(name, regime, best, dict(zip(grid, scores.tolist(), strict=True)),
                                   run_metrics(run), run)
    return results


METRICS = {"batch_success": "final batch success", "worst_success": "worst prompt's success",
           "stuck_share": "stuck prompts", "steps_to_90": "steps to 90%"}


def comparison_table(results: dict[str, RuleResult]) -> pd.DataFrame:
    """Per rule: α, then each metric's mean and 95% Student-t interval over the problems (steps to 90%: the
    median over the problems that reached it, and how many did)."""
    rows = []
    for name, result in results.items():
        row = {"rule": name, "α": result.step_size}
        for key in ("batch_success", "worst_success", "stuck_share"):
            mean, low, high = statistics.mean_interval(result.metrics[key].to_numpy())
            row[METRICS[key]] = f"{mean:.3f} [{low:.3f}, {high:.3f}]"
        reached = result.metrics["steps_to_90"].dropna()
        row["steps to 90%"] = (f"{reached.median():.0f} ({len(reached)}/{len(result.metrics)})" if len(reached)
                               else f"never (0/{len(result.metrics)})")
        rows.append(row)
    return pd.DataFrame(rows)


def paired_differences(results: dict[str, RuleResult], baseline: str, key: str) -> pd.DataFrame:
    """Each rule minus ``baseline`` on metric ``key``, paired by problem: mean and 95% interval."""
    base = results[baseline].metrics[key].to_numpy()
    rows = []
    for name, result in results.items():
        if name == baseline:
            continue
        mean, low, high = statistics.mean_interval(result.metrics[key].to_numpy() - base)
        rows.append({"rule": name, "baseline": baseline, "metric": METRICS[key], "difference": mean, "low": low,
                     "high": high})
    return pd.DataFrame(rows)


def difference_margins(results: dict[str, RuleResult], rule: str, baseline: str, key: str, sign: int = 1
                       ) -> list[float]:
    """One margin: the lower end of the 95% interval of sign·(rule − baseline) on ``key`` (≥ 0: the rule is
    better with 95% confidence, paired over the problems)."""
    difference = sign * (results[rule].metrics[key].to_numpy() - results[baseline].metrics[key].to_numpy())
    return [statistics.mean_interval(difference)[1]]


def winners(results: dict[str, RuleResult], key: str, larger: bool = True) -> list[str]:
    """The rules whose mean on ``key`` is within the 95% interval of the best mean."""
    means = {name: r.metrics[key].mean() for name, r in results.items()}
    best = (max if larger else min)(means, key=means.get)
    low, high = statistics.mean_interval(results[best].metrics[key].to_numpy())[1:]
    return [name for name, value in means.items() if (value >= low if larger else value <= high)]


def tuning_edge_margins(results: dict[str, RuleResult], grid: Sequence[float]) -> list[float]:
    """Per rule: 1 when its chosen α is inside the grid, −1 at an end (the grid may cut its tuning short)."""
    return [1.0 if grid[0] < r.step_size < grid[-1] else -1.0 for r in results.values()]


# ----------------------------------------------------------------------------------------------
# Stagnation
# ----------------------------------------------------------------------------------------------


def stagnation_frame(runs: dict[str, mp.PromptRun]) -> pd.DataFrame:
    """Per rule and run of the long runs: final batch success, stuck and solved shares, the batch failure at
    the end over the failure at mid-run (≈ 1 on a plateau, → 0 under convergence) and the stuck prompts'
    share of the final failure."""
    rows = []
    for name, run in runs.items():
        failure = 1 - run.value.mean(-1)  # (S, B)
        stuck = stuck_prompts(run)
        final = run.value[-1]
        stuck_failure = ((1 - final) * stuck).sum(-1) / (1 - final).sum(-1)
        opposed = always_opposed(run)
        for b in range(final.shape[0]):
            rows.append({"rule": name, "run": b, "batch success": final[b].mean().item(),
                         "stuck": stuck[b].double().mean().item(),
                         "solved": (final[b] >= SOLVED_LEVEL).double().mean().item(),
                         "failure ratio": (failure[-1, b] / failure[failure.shape[0] // 2, b]).item(),
                         "stuck share of failure": stuck_failure[b].item(),
                         "stuck and opposed": (stuck[b] & opposed[b]).double().sum().item()
                         / max(stuck[b].sum().item(), 1)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# The language model
# ----------------------------------------------------------------------------------------------


def lm_frames(runs: dict[int, list]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(validation points, per-prompt alignment points) of every LM run, with its variant and GRPO seed."""
    evals, steps = [], []
    for seed, pair in runs.items():
        for run in pair:
            variant = "safe-step weights" if run.config.prompt_weighting == "safe_step" else "Dr. GRPO"
            evals.append(run.evals.assign(variant=variant, grpo_seed=seed))
            if "prompt_alignment_positive" in run.steps:
                measured = run.steps.dropna(subset=["prompt_alignment_positive"])
                steps.append(measured[["step", "prompt_alignment_positive", "prompt_alignment_mean"]]
                             .assign(variant=variant, grpo_seed=seed))
    return pd.concat(evals, ignore_index=True), (pd.concat(steps, ignore_index=True) if steps else pd.DataFrame())


def lm_table(evals: pd.DataFrame, prompts: pd.DataFrame) -> pd.DataFrame:
    """Per variant: accuracy at the start and the end (means over the GRPO seeds), its gain, and the mean share
    of prompts with Δμ_q > 0 over the per-prompt measurements."""
    rows = []
    for variant, group in evals.groupby("variant", sort=False):
        first = group[group.step == group.step.min()].accuracy.mean()
        last = group[group.step == group.step.max()].accuracy.mean()
        aligned = prompts[prompts.variant == variant].prompt_alignment_positive if len(prompts) else pd.Series([])
        rows.append({"variant": variant, "accuracy at start": first, "accuracy at end": last, "gain": last - first,
                     "prompts with Δμ_q > 0": aligned.mean() if len(aligned) else math.nan})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------


def draw_alignment(axes, frames: dict[str, pd.DataFrame]) -> None:
    """One panel per model: the share of prompts with Δμ_q < 0 over the steps, per rule (mean over runs and
    the range)."""
    import seaborn as sns

    for ax, (title, frame) in zip(axes, frames.items(), strict=True):
        sns.lineplot(frame, x="step", y="share", hue="rule", errorbar=("pi", 100), ax=ax)
        ax.set(title=title, xlabel="step k (symmetric log scale)", ylabel="share with Δμ_q < 0", ylim=(0, 1))
        ax.set_xscale("symlog", linthresh=10)
        ax.legend(title=None)


def draw_trajectories(ax, run: mp.PromptRun, index: int, title: str) -> None:
    """Every prompt's J_q(k) in run ``index`` (stuck prompts dashed) and the batch success (thick)."""
    stuck = stuck_prompts(run)[index]
    steps = run.recorded_steps.numpy()
    for q in range(run.value.shape[-1]):
        ax.plot(steps, run.value[:, index, q].numpy(), lw=1, ls="--" if stuck[q] else "-",
                color="tab:red" if stuck[q] else "tab:gray", alpha=0.8)
    ax.plot(steps, run.value[:, index].mean(-1).numpy(), lw=3, color="black", label="batch success")
    ax.set(title=title, xlabel="step k (symmetric log scale)", ylabel="J_q(k)", ylim=(0, 1))
    ax.set_xscale("symlog", linthresh=10)
    ax.legend(loc="lower right")


def draw_comparison(axes, results: dict[str, dict[str, RuleResult]]) -> None:
    """Per regime (columns) and metric (rows): each rule's mean and 95% interval over the problems."""
    keys = ("batch_success", "worst_success", "stuck_share")
    for column, (regime, regime_results) in enumerate(results.items()):
        for row, key in enumerate(keys):
            ax = axes[row][column]
            names = list(regime_results)
            stats_ = [statistics.mean_interval(regime_results[n].metrics[key].to_numpy()) for n in names]
            means = np.array([s[0] for s in stats_])
            errors = np.array([[s[0] - s[1] for s in stats_], [s[2] - s[0] for s in stats_]])
            ax.errorbar(means, np.arange(len(names)), xerr=errors, fmt="o", capsize=3)
            ax.set_yticks(np.arange(len(names)), names if column == 0 else [""] * len(names))
            ax.invert_yaxis()
            ax.set(xlabel=METRICS[key], title=f"{regime} answers" if row == 0 else None)


def draw_lm(axes, evals: pd.DataFrame, prompts: pd.DataFrame) -> None:
    """Validation accuracy (left) and the share of prompts with Δμ_q > 0 (right) over the steps, per variant."""
    import seaborn as sns

    sns.lineplot(evals, x="step", y="accuracy", hue="variant", errorbar=("pi", 100), ax=axes[0])
    axes[0].set(xlabel="GRPO step", ylabel="validation accuracy")
    if len(prompts):
        sns.lineplot(prompts, x="step", y="prompt_alignment_positive", hue="variant", errorbar=("pi", 100),
                     marker="o", ax=axes[1])
    axes[1].set(xlabel="GRPO step", ylabel="share of prompts with Δμ_q > 0", ylim=(0, 1))


# ----------------------------------------------------------------------------------------------
# The notebook's runs and summaries
# ----------------------------------------------------------------------------------------------


INIT_SCALE = 0.01
"""The bandit's θ₀ entries are N(0, 0.01²) (Section 5.1, the Figure-1 generator's default)."""
SETUP_NUMBERS["0.01"] = INIT_SCALE
ALIGNMENT_RULES = (("GRPO", "grpo"), ("Dr. GRPO", "dr_grpo"), ("safe step", "safe_step"))
"""The rules whose per-prompt alignment is measured on the bandit (at one step size)."""


def forward_algorithm_margins(family: mp.PromptFamily, prompts: int = 4) -> np.ndarray:
    """Per prompt of the first run (the first ``prompts``): 1e-12 − |log J − log J of
    :func:`rlvr_dynamics.theory.markov.outcomes`| on the prompt's own bigram table, and the same for log(1 − J)."""
    from rlvr_dynamics.theory import markov
    from rlvr_dynamics.theory.policies import TokenPolicy

    state = mp.prompt_state(family, family.theta0)
    start, table = family.split(family.theta0[0])
    margins = []
    for q in range(min(prompts, family.n_prompts)):
        v, length = family.vocab_size, int(family.max_lengths[q])
        rows = torch.zeros(v + 1, v, dtype=start.dtype)
        rows[v] = family.features[0, q] @ start
        rows[v, 0] += mp.EMPTY_LOGIT
        if table is not None:
            rows[1:v] = table
        reference = markov.outcomes(TokenPolicy(v, length, position_bias=False), rows.flatten(),
                                    markov.Verifier("final_token", v, int(family.answers[0, q])))
        margins += [1e-12 - abs(float(reference.log_success - state.outcomes.log_success[0, q])),
                    1e-12 - abs(float(reference.log_failure - state.outcomes.log_failure[0, q]))]
    return np.array(margins)


def describe_families(families: dict[str, mp.PromptFamily]) -> pd.DataFrame:
    """Per model: prompts, tokens, features, lengths, parameters and J at the start (mean, min, max over runs
    and prompts)."""
    rows = []
    for name, family in families.items():
        value = mp.prompt_state(family, family.theta0).value
        rows.append({"model": name, "prompts Q": family.n_prompts, "tokens V": family.vocab_size,
                     "features d": family.feature_dim,
                     "lengths T_q": ", ".join(str(t) for t in sorted(set(family.max_lengths.tolist()))),
                     "parameters D": family.n_params, "J at start (mean)": value.mean().item(),
                     "(min)": value.min().item(), "(max)": value.max().item()})
    return pd.DataFrame(rows)


def alignment_runs(config: ManyPromptsConfig, family: mp.PromptFamily, generator: torch.Generator
                   ) -> dict[str, mp.PromptRun]:
    """The bandit's measurement runs: :data:`ALIGNMENT_RULES` at ``bandit_step_size`` for ``bandit_steps``,
    every prompt every step."""
    return {name: mp.train(family, rule, config.bandit_step_size, config.bandit_steps, generator,
                           group_size=config.group_size, record_every=config.record_every)
            for name, rule in ALIGNMENT_RULES}


def long_runs(config: ManyPromptsConfig, family: mp.PromptFamily, linear: dict[str, RuleResult],
              generator: torch.Generator) -> dict[str, mp.PromptRun]:
    """GRPO and Dr. GRPO on ``family`` for ``long_steps`` at the step sizes tuned for them (``linear``)."""
    return {name: train_rule(config, family, rule, "all", linear[name].step_size, config.long_steps, generator)
            for name, rule, _ in RULES if name in BASELINES}


def bandit_summary(runs: dict[str, mp.PromptRun]) -> dict[str, np.ndarray]:
    """The bandit's findings as margins: ``opposed_end_dr`` — per run, (number of contexts Dr. GRPO opposes at
    the end) − ½ (≥ 0 when some is opposed); ``fewer_opposed`` / ``fewer_stuck`` — the mean share under Dr.
    GRPO and under GRPO minus the safe-step rule's."""
    opposed = {name: (run.alignment[-1] < 0).double() for name, run in runs.items()}
    stuck = {name: stuck_prompts(run).double() for name, run in runs.items()}
    return {"opposed_end_dr": (opposed["Dr. GRPO"].sum(-1) - 0.5).numpy(),
            "fewer_opposed": np.array([(opposed[b].mean() - opposed["safe step"].mean()).item() for b in BASELINES]),
            "fewer_stuck": np.array([(stuck[b].mean() - stuck["safe step"].mean()).item() for b in BASELINES])}


def bandit_glue(config: ManyPromptsConfig, runs: dict[str, mp.PromptRun], summary: dict[str, np.ndarray]) -> dict:
    """The bandit section's numbers for the prose."""
    dr, safe = runs["Dr. GRPO"], runs["safe step"]
    return {"bandit_prompts": config.bandit_prompts, "bandit_dim": config.bandit_dim,
            "bandit_arms": config.bandit_arms, "bandit_alpha": config.bandit_step_size,
            "bandit_steps": config.bandit_steps,
            "bandit_opposed_start": float(np.mean([negative_share(r)[0].mean() for r in runs.values()])),
            "bandit_opposed_end_dr": float(negative_share(dr)[-1].mean()),
            "bandit_opposed_end_dr_min": float(negative_share(dr)[-1].min()),
            "bandit_stuck_dr": stuck_prompts(dr).double().mean().item(),
            "bandit_opposed_end_safe": float(negative_share(safe)[-1].mean()),
            "bandit_stuck_safe": stuck_prompts(safe).double().mean().item(),
            "bandit_overshoot_max": max(overshoot_share(r) for r in runs.values())}


LEMMA1_CLAIM = ("B10: |Δf_q − η_kΔμ_q| ≤ C_q η_k² (to float64 rounding) for every prompt at every step (both "
                "models, every rule and run)")


def proposition_margins(models: dict[str, tuple[mp.PromptFamily, dict[str, mp.PromptRun]]], group_size: int
                        ) -> dict[str, np.ndarray]:
    """Every check of Propositions B10–B12 over ``models`` (name → (family, runs)), by claim text."""
    lemma, ceiling, identity, criterion, improve, half, opposed = [], [], [], [], [], [], []
    for family, runs in models.values():
        constants = family.constants()
        for run in runs.values():
            lemma.append(lemma1_margins(run, constants))
            ceiling.append(ceiling_margins(run, constants, run.log_odds[0]))
        final = runs["Dr. GRPO"].final_theta
        b11 = identity_margins(family, [family.theta0, final], group_size)
        identity.append(b11["identity"])
        criterion.append(b11["criterion"])
        b10 = threshold_margins_at(family, [family.theta0, final], group_size)
        improve.append(b10["improve"])
        half.append(b10["half"])
        opposed.append(b10["opposed"])
    join = np.concatenate
    return {
        LEMMA1_CLAIM: join(lemma),
        "B10(a): below min_q Δμ_q/C_q every prompt's log-odds rises (stepped exactly along Dr. GRPO's direction)":
            join(improve),
        "B10(b): at η_all = min_q Δμ_q/(2C_q) every prompt gains at least η_allΔμ_q/2": join(half),
        "B10(c): a prompt with Δμ_q < −C_qη loses log-odds at that step": join(opposed),
        "B11: Σ_q c_qΔμ_q = ‖u‖ for Dr. GRPO's weights c_q (relative error ≤ 1e-10; start and end)": join(identity),
        "B11: opposed (Δμ_q < 0) ⇔ ⟨u_q, Σ_{p≠q} u_p⟩ < −‖u_q‖², prompt by prompt": join(criterion),
        "B12: f_q(k) ≤ f_q(0) + Σ η[Δμ_q]₊ + C_q Σ η² at every recorded step (every rule and run)": join(ceiling),
    }


def spread_glue(chain: pd.DataFrame, bandit: pd.DataFrame) -> dict:
    """The spread numbers of B10 at the first step (medians over the problems)."""
    ratio = float(chain["ratio"].median())
    return {"spread_chain_ratio": ratio, "spread_chain_cv": float(chain["cv"].median()),
            "spread_bandit_ratio": float(bandit["ratio"].median()),
            "spread_chain_factor": 1 / ratio if ratio > 0 else math.inf}


def lemma1_glue(checks: dict[str, np.ndarray]) -> dict:
    """The largest share of its bound that the Lemma-1 remainder used, from :func:`proposition_margins`."""
    return {"lemma1_used": 1 - float(checks[LEMMA1_CLAIM].min())}


def stagnation_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per rule: problems with a stuck prompt, mean final batch success, mean stuck share, median failure ratio
    (stalled problems and the others), the stuck prompts' median share of the final failure."""
    rows = []
    for rule, group in frame.groupby("rule", sort=False):
        stalled = group[group["stuck"] > 0]
        clean = group[group["stuck"] == 0]
        rows.append({"rule": rule, "problems with a stuck prompt": f"{len(stalled)}/{len(group)}",
                     "batch success": group["batch success"].mean(), "stuck": group["stuck"].mean(),
                     "failure ratio (stalled)": stalled["failure ratio"].median() if len(stalled) else math.nan,
                     "failure ratio (others)": clean["failure ratio"].median() if len(clean) else math.nan,
                     "stuck share of failure": stalled["stuck share of failure"].median() if len(stalled)
                     else math.nan})
    return pd.DataFrame(rows)


def stagnation_glue(frame: pd.DataFrame, runs: dict[str, mp.PromptRun]) -> dict:
    """The stagnation section's numbers (NaN where no problem stalled or none converged)."""
    dr = frame[frame.rule == "Dr. GRPO"]
    stalled, clean = dr[dr["stuck"] > 0], dr[dr["stuck"] == 0]
    stuck = sum(stuck_prompts(run).sum().item() for run in runs.values())
    opposed = sum((stuck_prompts(run) & always_opposed(run)).sum().item() for run in runs.values())
    return {"stall_runs_dr": len(stalled), "stall_runs_grpo": int((frame[frame.rule == "GRPO"]["stuck"] > 0).sum()),
            "problems": int(len(dr)),
            "stall_ratio_dr": float(stalled["failure ratio"].median()) if len(stalled) else math.nan,
            "stall_share_dr": float(stalled["stuck share of failure"].median()) if len(stalled) else math.nan,
            "clean_ratio_dr": float(clean["failure ratio"].median()) if len(clean) else math.nan,
            "stuck_opposed_share": opposed / stuck if stuck else math.nan,
            "long_overshoot_max": max(overshoot_share(run) for run in runs.values())}


def stall_margins(frame: pd.DataFrame) -> list[float]:
    """One margin: (problems with a stuck prompt under GRPO or Dr. GRPO) − ½."""
    return [float((frame["stuck"] > 0).sum()) - 0.5]


def example_runs(run: mp.PromptRun) -> tuple[int, int]:
    """(the run with the most stuck prompts, the run with the fewest — the first of each)."""
    counts = stuck_prompts(run).sum(-1)
    return int(counts.argmax()), int(counts.argmin())


def differences_table(comparison: dict[str, dict[str, RuleResult]]) -> pd.DataFrame:
    """Paired differences of every rule against both baselines, on batch success and the worst prompt, in
    both regimes."""
    frames = [paired_differences(results, baseline, key).assign(regime=regime)
              for regime, results in comparison.items() for baseline in BASELINES
              for key in ("batch_success", "worst_success")]
    frame = pd.concat(frames, ignore_index=True)
    return frame[["regime", "metric", "baseline", "rule", "difference", "low", "high"]]


def comparison_glue(comparison: dict[str, dict[str, RuleResult]]) -> dict:
    """The comparison's numbers and texts for the prose."""
    values = {}
    for regime, results in comparison.items():
        means = {name: r.metrics["batch_success"].mean() for name, r in results.items()}
        values[f"best_batch_{regime}"] = max(means, key=means.get)
        values[f"tied_batch_{regime}"] = ", ".join(winners(results, "batch_success"))
        values[f"tied_worst_{regime}"] = ", ".join(winners(results, "worst_success"))
    linear = comparison["linear"]
    for key, rule, baseline, metric in (("safe_worst_vs_dr", "safe step", "Dr. GRPO", "worst_success"),
                                        ("pcgrad_worst_vs_dr", "PCGrad", "Dr. GRPO", "worst_success"),
                                        ("band_vs_uniform", "Dr. GRPO + band", "Dr. GRPO + uniform",
                                         "batch_success")):
        difference = linear[rule].metrics[metric].to_numpy() - linear[baseline].metrics[metric].to_numpy()
        mean, low, high = statistics.mean_interval(difference)
        values.update({key: mean, f"{key}_low": low, f"{key}_high": high})
    return values


def comparison_records(comparison: dict[str, dict[str, RuleResult]], grid: Sequence[float]) -> dict[str, list]:
    """The comparison's statements, recorded (not enforced: at this many problems they change with the seed)."""
    records = {}
    for regime, results in comparison.items():
        for rule in ("safe step", "PCGrad"):
            for baseline in BASELINES:
                records[f"{regime} answers: {rule} beats {baseline} on the worst prompt's success (paired, lower "
                        "end of the 95% interval)"] = difference_margins(results, rule, baseline, "worst_success")
                records[f"{regime} answers: {rule} beats {baseline} on final batch success (paired, lower end of "
                        "the 95% interval)"] = difference_margins(results, rule, baseline, "batch_success")
        records[f"{regime} answers: the band curriculum beats a uniform draw of the same size (final batch success, "
                "paired)"] = difference_margins(results, "Dr. GRPO + band", "Dr. GRPO + uniform", "batch_success")
        records[f"{regime} answers: every rule's tuned α lies inside the grid"] = tuning_edge_margins(results, grid)
    return records


def lm_glue(evals: pd.DataFrame, prompts: pd.DataFrame) -> dict:
    """The language-model section's numbers (means over the GRPO seeds)."""
    table = lm_table(evals, prompts).set_index("variant")
    return {"lm_gain_dr": float(table.loc["Dr. GRPO", "gain"]),
            "lm_gain_safe": float(table.loc["safe-step weights", "gain"]),
            "lm_aligned_dr": float(table.loc["Dr. GRPO", "prompts with Δμ_q > 0"]),
            "lm_aligned_safe": float(table.loc["safe-step weights", "prompts with Δμ_q > 0"])}


def lm_gain_margins(evals: pd.DataFrame) -> list[float]:
    """One margin: the safe-step weights' mean gain minus plain Dr. GRPO's."""
    table = lm_table(evals, pd.DataFrame()).set_index("variant")
    return [float(table.loc["safe-step weights", "gain"] - table.loc["Dr. GRPO", "gain"])]


def lm_opposed_margins(prompts: pd.DataFrame) -> np.ndarray:
    """Per per-prompt measurement: 1 − (share of prompts with Δμ_q > 0) (> 0 when some prompt is opposed)."""
    return (1 - prompts["prompt_alignment_positive"]).to_numpy() - 1e-12 if len(prompts) else np.array([-1.0])


def headline(bandit_runs: dict[str, mp.PromptRun], long: dict[str, mp.PromptRun],
             comparison: dict[str, dict[str, RuleResult]], stagnation: pd.DataFrame) -> dict:
    """The chapter's headline numbers for ``metrics.json`` (and the reference data)."""
    return {"bandit": alignment_table(bandit_runs).to_dict(orient="records"),
            "chain_long": alignment_table(long).to_dict(orient="records"),
            "stagnation": stagnation_table(stagnation).to_dict(orient="records"),
            "comparison": {regime: {name: {"step_size": r.step_size,
                                           **{key: float(r.metrics[key].mean()) for key in
                                              ("batch_success", "worst_success", "stuck_share")}}
                                    for name, r in results.items()} for regime, results in comparison.items()}}


def setup_glue(config: ManyPromptsConfig, comparison: dict[str, dict[str, RuleResult]]) -> dict:
    """The run's settings the prose names (sizes, grid, the step sizes tuned for the long runs)."""
    linear = comparison["linear"]
    return {"chain_prompts": config.chain_prompts, "chain_lengths": ", ".join(map(str, config.length_list)),
            "vocab_size": config.vocab_size, "feature_dim": config.feature_dim, "long_steps": config.long_steps,
            "long_alpha_grpo": linear["GRPO"].step_size, "long_alpha_dr_grpo": linear["Dr. GRPO"].step_size,
            "steps": config.steps, "prompts_per_step": config.prompts_per_step,
            "grid": ", ".join(f"{value:g}" for value in config.grid), "tuning_seeds": config.tuning_seeds,
            "lm_seeds": config.lm_seeds}
