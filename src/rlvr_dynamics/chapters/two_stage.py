"""The chapter *Two-stage dynamics and negative-only gradients* (Yao et al.): its parameters, its
runs, and every table, margin and figure panel it reports.

The engine is :mod:`rlvr_dynamics.engines.softmax_bandit`; Lemma 1 and the time scales are in
:mod:`rlvr_dynamics.theory.logit_dynamics`; the language-model comparison reuses the Figure-2
experiment (:mod:`rlvr_dynamics.lm.experiment`). Equation labels (TS1)–(TS7) are the chapter's:
(TS1) the logit update of one sample (Lemma 1), (TS2) its first-order probability change, (TS3)
the group update, (TS4) the expected update (their Theorem 1), (TS5) its Dr. GRPO closed form,
(TS6) the exploration rate κ and (TS7) the onset of exploration.

A *margin* is one number per checked case, ≥ 0 when the chapter's claim holds on that case. The
drawing functions take matplotlib Axes and import matplotlib and seaborn when called.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from rlvr_dynamics.chapters import statistics
from rlvr_dynamics.config import parameter, split_list
from rlvr_dynamics.engines.softmax_bandit import (
    CLASSES,
    REWARD_MODELS,
    SIGN_VARIANTS,
    SoftmaxBandit,
    Trajectories,
    conditional_advantages,
    dr_grpo_expected_update,
    expected_logit_update,
    filtered_advantages,
    sampled_logit_update,
    simulate,
)
from rlvr_dynamics.lm import experiment
from rlvr_dynamics.theory import DTYPE, logit_dynamics
from rlvr_dynamics.theory.logit_dynamics import SCALES

SWITCH_DROP = 0.1
"""The switch is counted once π_H has fallen this share below its running maximum (so noise cannot fake it)."""

LM_INTERVAL_LEVEL = 0.95
"""Level of the Student-t intervals over the GRPO seeds of the language-model comparison."""

SETUP_NUMBERS = {"10%": SWITCH_DROP, "95%": LM_INTERVAL_LEVEL}
"""Every decimal typed in the chapter's prose: a constant of the set-up (the tests check its value)."""


def switch_steps(high_mass: torch.Tensor, steps: torch.Tensor, drop: float = SWITCH_DROP) -> np.ndarray:
    """End of the exploitation stage: the step at which the explored high-reward mass π_H peaks,
    counted once π_H has fallen to (1 − drop) × its running maximum. NaN (censored) when it never
    falls that far. high_mass (S, B), steps (S,) → (B,)."""
    running_max = torch.cummax(high_mass, dim=0).values
    dropped = high_mass <= (1 - drop) * running_max
    first_drop = dropped.double().argmax(0)  # (B,)
    result = np.full(high_mass.shape[1], np.nan)
    for run in torch.nonzero(dropped.any(0)).flatten().tolist():
        peak = int(high_mass[: first_drop[run] + 1, run].argmax())
        result[run] = float(steps[peak])
    return result


def takeover_steps(optimal_mass: torch.Tensor, steps: torch.Tensor, level: float = 0.5) -> np.ndarray:
    """First recorded step with π_O ≥ ``level`` (the better action holds the majority); NaN when
    never. optimal_mass (S, B) → (B,)."""
    reached = optimal_mass >= level
    first = reached.double().argmax(0)
    return torch.where(reached.any(0), steps[first].double(), torch.nan).numpy()


@dataclass(frozen=True)
class TwoStageConfig:
    """Parameters of the chapter *Two-stage dynamics and negative-only gradients* (Yao et al.)."""

    actions: int = parameter("actions V of the softmax bandit", "int", low=3, high=10_000)
    high_actions: int = parameter("explored high-reward actions n_H", "int", low=1, high=9_998)
    optimal_reward: float = parameter("reward r_O of the rarely sampled better action", "float", low=0.0, high=1.0)
    high_reward: float = parameter("reward r_H of the explored high-reward actions", "float", low=0.0, high=1.0)
    low_reward: float = parameter("reward r_L of the low-reward actions", "float", low=0.0, high=1.0)
    reward_model: str = parameter("'deterministic' (action v pays r_v) or 'bernoulli' (pays 1 w.p. r_v)", "str",
                                  choices=REWARD_MODELS)
    scale_rewards: str = parameter("advantage scaling: 'group' (GRPO, ÷ group std) or 'none' (Dr. GRPO)", "str",
                                   choices=SCALES)
    initial_optimal: float = parameter("initial probability π_O(0) of the better action (main runs)", "float",
                                       low=1e-6, high=0.5)
    initial_high: float = parameter("initial mass π_H(0) of the explored high-reward actions", "float",
                                    low=1e-6, high=0.99)
    initial_optimal_grid: str = parameter("comma list of π_O(0) for the Figure-1 row and the switch-time study",
                                          "str")
    high_reward_grid: str = parameter("comma list of r_H for the Figure-1 reward row", "str")
    group_size: int = parameter("rollouts per prompt G of the main runs", "int", low=2, high=64)
    group_size_grid: str = parameter("comma list of G for the Figure-5 study", "str")
    step_size: float = parameter("step size η on the logits", "float", low=1e-6, high=100.0)
    steps: int = parameter("policy-gradient steps per run", "int", low=1, high=10_000_000)
    seeds: int = parameter("independent sampled runs per setting (intervals are over these)", "int",
                           low=2, high=100_000)
    record_every: int = parameter("steps between recorded points", "int", low=1, high=1_000_000)
    monte_carlo_groups: int = parameter("sampled groups per state in the Theorem-1 check", "int",
                                        low=1_000, high=100_000_000)
    lm_steps: int = parameter("GRPO steps of the language-model comparison (GRPO vs GRPO-N)", "int",
                              low=1, high=1_000_000)
    lm_eval_every: int = parameter("steps between validation accuracy / entropy checks of the LM runs", "int",
                                   low=1, high=1_000_000)
    lm_seeds: int = parameter("GRPO seeds of the language-model comparison (each runs GRPO and GRPO-N from the "
                              "same warm start; intervals are over these)", "int", low=2, high=1_000)

    def check(self) -> None:
        if self.high_actions > self.actions - 2:
            raise ValueError(f"parameter 'high_actions' = {self.high_actions} is out of range: allowed "
                             f"high_actions ≤ actions − 2 = {self.actions - 2}")
        if not self.low_reward < self.high_reward < self.optimal_reward:
            raise ValueError(f"rewards must satisfy low_reward < high_reward < optimal_reward, got "
                             f"{self.low_reward}, {self.high_reward}, {self.optimal_reward}")
        for name, p_o in [("initial_optimal", self.initial_optimal)] + [("initial_optimal_grid", p)
                                                                        for p in self.optimal_grid]:
            if p_o + self.initial_high >= 1:
                raise ValueError(f"parameter '{name}': π_O(0) = {p_o} with initial_high = {self.initial_high} "
                                 "leaves no mass for the low-reward actions")
        for r_h in self.reward_grid:
            if not self.low_reward < r_h < self.optimal_reward:
                raise ValueError(f"parameter 'high_reward_grid' = {self.high_reward_grid!r}: {r_h} is out of range: "
                                 f"allowed low_reward < r_H < optimal_reward")
        for g in self.group_grid:
            if not 2 <= g <= 64:
                raise ValueError(f"parameter 'group_size_grid' = {self.group_size_grid!r}: {g} is out of range: "
                                 "allowed 2 ≤ G ≤ 64")
        self.lm_config()

    @property
    def optimal_grid(self) -> list[float]:
        values = split_list("initial_optimal_grid", self.initial_optimal_grid, float)
        for p_o in values:
            if not 0 < p_o <= 0.5:
                raise ValueError(f"parameter 'initial_optimal_grid' = {self.initial_optimal_grid!r}: {p_o} is out "
                                 "of range: allowed 0 < π_O(0) ≤ 0.5")
        return values

    @property
    def reward_grid(self) -> list[float]:
        return split_list("high_reward_grid", self.high_reward_grid, float)

    @property
    def group_grid(self) -> list[int]:
        return split_list("group_size_grid", self.group_size_grid, int)

    def estimated_peak_bytes(self) -> int:
        """The run's peak memory in bytes from its largest float64 tensors (the interpreter and its
        libraries, ≈ 0.4 GB, and the language-model comparison, bounded by its model as in the Figure-2
        chapter, not included): the Monte-Carlo check of Theorem 1, then the bandit runs, whose records
        are kept. Measured runs of 0.1–1.5 GB came within ×1.5 of it."""
        records = self.steps // self.record_every + 1 + (self.steps % self.record_every > 0)  # S
        settings, grid = len(self.optimal_grid) + len(self.reward_grid), len(self.optimal_grid)

        def kept(runs: int) -> int:
            """A run's record: class masses (S, B, 3) and eight (S, B) series."""
            return 11 * 8 * records * runs

        def running(runs: int, group: int) -> int:
            """A run while it steps: its nine lists of S tensors (≈ 500 bytes of bookkeeping each), stacked at
            the end, with the allocator's slack; ~9 (B, V) tensors and the group's draws (B, G) per step."""
            return records * (2.5 * 11 * 8 * runs + 9 * 500) + 8 * runs * (9 * self.actions + 3 * group)

        figure1 = kept(settings * (self.seeds + 1))  # sampled and mean-field runs, kept to the end
        checks = {
            # the sampled groups' actions and rewards (n, G) and their updates (n, V) with ~4 copies
            "theorem 1": 8 * self.monte_carlo_groups * (5 * self.actions + 3 * self.group_size),
            "figure 1": running(settings * self.seeds, self.group_size),
            # each G's runs while the previous G's are still held
            "group study": figure1 + kept(grid * self.seeds) + running(grid * self.seeds, max(self.group_grid)),
            # three filters × seeds per reward model, the first model's runs held
            "variants": figure1 + kept(3 * self.seeds) + running(3 * self.seeds, self.group_size),
        }
        return round(max(checks.values()))

    def bandit(self, high_reward: float | None = None) -> SoftmaxBandit:
        r_h = self.high_reward if high_reward is None else high_reward
        rewards = torch.tensor([[self.optimal_reward, r_h, self.low_reward]], dtype=torch.float64)
        return SoftmaxBandit(self.actions, self.high_actions, rewards)

    def lm_config(self, preset: str = "ci"):
        """The language-model comparison: the Figure-2 chapter's setting of ``preset`` (same
        warm-up, so its cached checkpoint is reused), GRPO against GRPO-N for ``lm_steps``."""
        base = experiment.LMExperimentConfig(**experiment.PRESETS[preset])
        config = dataclasses.replace(base, loss_types="grpo", scale_rewards="group", learning_rates=
                                     base.learning_rates.split(",")[0], advantage_filters="all,negative",
                                     steps=self.lm_steps, eval_every=self.lm_eval_every,
                                     eval_problems=min(base.eval_problems, 128 if preset == "ci" else 512))
        config.check()
        return config


PRESETS = {
    # ≈ 2.5 min on 2 CPU cores (≈ 2 min of it the six language-model runs — GRPO and GRPO-N at three
    # GRPO seeds — after the cached warm-up).
    "ci": dict(actions=10, high_actions=3, optimal_reward=1.0, high_reward=0.5, low_reward=0.0,
               reward_model="deterministic", scale_rewards="group", initial_optimal=0.02, initial_high=0.4,
               initial_optimal_grid="0.01,0.02,0.03,0.05", high_reward_grid="0.3,0.5,0.8", group_size=8,
               group_size_grid="2,3,5,10", step_size=0.3, steps=3000, seeds=64, record_every=5,
               monte_carlo_groups=100_000, lm_steps=90, lm_eval_every=30, lm_seeds=3),
    # More seeds, a finer and lower grid of π_O(0), longer runs, a ten-fold Monte-Carlo check and
    # 500 GRPO steps on the language model.
    "paper": dict(actions=10, high_actions=3, optimal_reward=1.0, high_reward=0.5, low_reward=0.0,
                  reward_model="deterministic", scale_rewards="group", initial_optimal=0.02, initial_high=0.4,
                  initial_optimal_grid="0.005,0.01,0.015,0.02,0.03,0.05", high_reward_grid="0.3,0.5,0.8",
                  group_size=8, group_size_grid="2,3,5,10", step_size=0.3, steps=10_000, seeds=512,
                  record_every=10, monte_carlo_groups=1_000_000, lm_steps=500, lm_eval_every=50,
                  lm_seeds=3),
}


# ----------------------------------------------------------------------------------------------
# Lemma 1: the logit update of one sample, (TS1) and (TS2)
# ----------------------------------------------------------------------------------------------

LEMMA_CASES = 4096
"""Random (logits, action, advantage) cases of the Lemma-1 check."""
LEMMA_TOLERANCE = 1e-12
"""Largest |formula − autograd| of (TS1) that counts as equal (float64)."""
FIRST_ORDER_STEPS = (0.1, 0.05, 0.025)
"""Step sizes η of the first-order check of (TS2): each half the previous."""
FIRST_ORDER_RATIO_RANGE = (3.5, 4.5)
"""A second-order error falls 4× when η halves: the measured ratios must lie here."""
PROPORTIONALITY_TOLERANCE = 1e-9
"""Largest |Δz_v / (−ηAπ_v) − 1| off the sampled action (the Remark)."""


@dataclass(frozen=True)
class Lemma1Study:
    """Lemma 1 on random cases: (TS1) against autograd, the η² error of (TS2), and the Remark's
    signs and proportionality."""

    cases: int
    error: float  # max |(TS1) − autograd| over every case and logit
    first_order_errors: list[float]  # max |exact Δπ − (TS2)| at each of FIRST_ORDER_STEPS
    sign_margin: float  # min over cases of Δz_a · A (≥ 0: the sampled logit moves with sign(A))
    ratio_spread: float  # max |Δz_v / (−ηAπ_v) − 1| over v ≠ a

    @property
    def ratios(self) -> list[float]:
        """Error at η over error at η/2, for each consecutive pair of FIRST_ORDER_STEPS."""
        errors = self.first_order_errors
        return [errors[i] / errors[i + 1] for i in range(len(errors) - 1)]

    def exactness_margins(self) -> list[float]:
        """(TS1) equals autograd's step: LEMMA_TOLERANCE − max error."""
        return [LEMMA_TOLERANCE - self.error]

    def first_order_margins(self) -> list[float]:
        """(TS2) is first-order exact: each ratio within FIRST_ORDER_RATIO_RANGE (distance to its nearer end)."""
        low, high = FIRST_ORDER_RATIO_RANGE
        return [min(r - low, high - r) for r in self.ratios]

    def bidirectional_margins(self) -> list[float]:
        """The Remark: the sampled logit moves with sign(A); the others by −ηAπ_v exactly."""
        return [self.sign_margin, PROPORTIONALITY_TOLERANCE - self.ratio_spread]

    def summary(self) -> str:
        return "\n".join([
            f"largest |formula − autograd| over {self.cases} cases: {self.error:.1e}",
            f"first-order error at η = {', '.join(map(str, FIRST_ORDER_STEPS))}: "
            f"{[f'{e:.2e}' for e in self.first_order_errors]} ratios {np.round(self.ratios, 2)}",
        ])


def lemma1_study(actions: int, step_size: float, generator: torch.Generator, cases: int = LEMMA_CASES) -> Lemma1Study:
    """Lemma 1 on ``cases`` random cases drawn from ``generator`` (CPU): logits of spread 3 (cases, V),
    a uniform action (cases,) and a standard normal advantage (cases,), in that order."""
    logits = 3 * torch.randn(cases, actions, generator=generator, dtype=DTYPE)  # (n, V)
    action = torch.randint(actions, (cases,), generator=generator)  # (n,)
    advantage = torch.randn(cases, generator=generator, dtype=DTYPE)  # (n,)
    formula = logit_dynamics.logit_update(logits, action, advantage, step_size)  # (n, V)
    autograd = logit_dynamics.logit_update_autograd(logits, action, advantage, step_size)
    error = (formula - autograd).abs().max().item()
    # (TS2): its error must shrink like η² (halving η → ÷4).
    probs = torch.softmax(logits, -1)  # (n, V)
    errors = []
    for eta in FIRST_ORDER_STEPS:
        delta = logit_dynamics.logit_update(logits, action, advantage, eta)
        exact = torch.softmax(logits + delta, -1) - probs
        errors.append((exact - logit_dynamics.first_order_probability_change(probs, delta)).abs().max().item())
    # The bidirectional rule: signs of Δz by the sign of A, magnitudes ∝ π_v off the sampled action.
    others = torch.ones_like(formula, dtype=torch.bool).scatter_(1, action.unsqueeze(1), False)  # (n, V)
    sign_margin = (formula.gather(1, action.unsqueeze(1)).squeeze(1) * advantage).min().item()
    ratio_spread = (formula / (-step_size * advantage.unsqueeze(1) * probs))[others].sub(1).abs().max().item()
    return Lemma1Study(cases, error, errors, sign_margin, ratio_spread)


# ----------------------------------------------------------------------------------------------
# Their Theorem 1: the expected update (TS4), against Monte-Carlo
# ----------------------------------------------------------------------------------------------

Z_LIMIT = 5.0
"""|z| ≤ 5 on every coordinate: a Bonferroni level of ≈ 4e-4 over the chapter's 360 coordinates."""
CLOSED_FORM_TOLERANCE = 1e-12
"""Largest error of the closed forms (i) ⟨π, m⟩ = 0 and (ii) Dr. GRPO's (1 − 1/G)∇J."""
THEOREM1_STATES = 3
"""Random states (logits of spread STATE_SPREAD) at which Theorem 1 is checked."""
STATE_SPREAD = 1.5


@dataclass(frozen=True, eq=False)  # holds DataFrames: compared by identity
class Theorem1Study:
    """Yao et al.'s Theorem 1, (TS4), against the Monte-Carlo mean of sampled group updates, for every reward
    model, scaling and filter, and its closed forms (i) and (ii)."""

    table: pd.DataFrame  # one row per (reward_model, scale, variant, state): max_abs_z, max_abs_diff
    z_scores: list[float]  # max |z| over the logits, per row of the table
    closed_form_errors: list[float]  # (i) per reward model and scaling, (ii) per reward model
    actions: int
    groups: int

    def z_margins(self) -> list[float]:
        return [Z_LIMIT - z for z in self.z_scores]

    def closed_form_margins(self) -> list[float]:
        return [CLOSED_FORM_TOLERANCE - e for e in self.closed_form_errors]

    def headline(self) -> dict[str, float]:
        return {"theorem1_max_abs_z": max(self.z_scores)}

    def summary(self) -> str:
        worst = self.table.groupby(["reward_model", "scale", "variant"])[["max_abs_z"]].max()
        return "\n".join([
            f"{len(self.table)} (model, scaling, filter, state) cells × {self.actions} logits, "
            f"{self.groups:,} groups each",
            str(worst.round(2).unstack("variant")),
            f"closed forms (i), (ii): largest error {max(self.closed_form_errors):.1e}",
        ])


def theorem1_study(bandit: SoftmaxBandit, group_size: int, groups: int, generator: torch.Generator) -> Theorem1Study:
    """Theorem 1 at THEOREM1_STATES random states of ``bandit`` (one reward row), on the CPU.

    Draws from ``generator``: the states (3, V), then per (reward model, scaling, filter, state) the
    ``groups`` sampled groups of G actions (and, for a Bernoulli verifier, their uniforms)."""
    states = STATE_SPREAD * torch.randn(THEOREM1_STATES, bandit.actions, generator=generator, dtype=DTYPE)  # (3, V)
    G, N = group_size, groups
    rows, z_scores, closed_form_errors = [], [], []
    for reward_model in REWARD_MODELS:
        for scale in SCALES:
            for variant in SIGN_VARIANTS:
                exact = expected_logit_update(states, bandit.repeat(3), G, 1.0, scale, variant, reward_model)  # (3, V)
                for s in range(THEOREM1_STATES):
                    probs_s = torch.softmax(states[s], -1).expand(N, -1)  # (N, V)
                    actions_mc = torch.multinomial(probs_s, G, replacement=True, generator=generator)  # (N, G)
                    paid = bandit.rewards[0][actions_mc]
                    if reward_model == "bernoulli":
                        paid = (torch.rand(paid.shape, generator=generator, dtype=DTYPE) < paid).to(DTYPE)
                    updates = sampled_logit_update(probs_s, actions_mc, filtered_advantages(paid, scale, variant),
                                                   torch.ones(N, dtype=DTYPE))  # (N, V)
                    mean, standard_error = updates.mean(0), updates.std(0) / N**0.5
                    z = ((mean - exact[s]) / standard_error.clamp(min=1e-15)).abs()  # (V,)
                    z_scores.append(z.max().item())
                    rows.append(dict(reward_model=reward_model, scale=scale, variant=variant, state=s,
                                     max_abs_z=z.max().item(), max_abs_diff=(mean - exact[s]).abs().max().item()))
                if variant == "grpo":  # (i): ⟨π, m⟩ = 0 exactly without a filter
                    m = conditional_advantages(states, bandit.repeat(3), G, scale, variant, reward_model)  # (3, V)
                    closed_form_errors.append((torch.softmax(states, -1) * m).sum(-1).abs().max().item())
                    if scale == "none":  # (ii): Dr. GRPO is (1 − 1/G)∇J
                        closed = dr_grpo_expected_update(states, bandit.repeat(3), G, 1.0)
                        closed_form_errors.append((closed - exact).abs().max().item())
    return Theorem1Study(pd.DataFrame(rows), z_scores, closed_form_errors, bandit.actions, N)


# ----------------------------------------------------------------------------------------------
# The two-stage dynamic: Figure 1 of the paper, switch and takeover times
# ----------------------------------------------------------------------------------------------

FIGURE1_COLUMNS = ["pi_O0", "r_H", "switch_median", "switch_low", "switch_high", "takeover_median",
                   "takeover_rate", "mean_field_switch", "mean_field_takeover"]
"""The columns of the Figure-1 table the chapter prints."""
STUDY_COLUMNS = ["G", "pi_O0", "switch_median", "switch_low", "switch_high", "takeover_median", "takeover_low",
                 "takeover_high", "takeover_rate", "mean_field_takeover"]
"""The columns of the Figure-5 study the chapter prints."""


def figure1_settings(config: TwoStageConfig) -> list[tuple[float, float]]:
    """(π_O(0), r_H) of every Figure-1 panel: the π_O(0) row (at r_H), then the r_H row (at π_O(0))."""
    settings = [(p, config.high_reward) for p in config.optimal_grid]
    return settings + [(config.initial_optimal, r) for r in config.reward_grid]


def figure1_panels(config: TwoStageConfig) -> list[tuple[int, int, str]]:
    """(row, column, title) of every Figure-1 panel, in the order of :func:`figure1_settings`."""
    first_row = len(config.optimal_grid)
    return [((0, index) if index < first_row else (1, index - first_row)) + (f"$\\pi_O(0)$ = {p:g}, $r_H$ = {r:g}",)
            for index, (p, r) in enumerate(figure1_settings(config))]


def run_figure1(config: TwoStageConfig, generator: torch.Generator, device) -> tuple[Trajectories, Trajectories]:
    """GRPO with G rollouts at every Figure-1 setting: ``seeds`` sampled runs per setting (drawn from
    ``generator``; runs of one setting are consecutive) and one mean-field path per setting."""
    settings, S = figure1_settings(config), config.seeds
    runs_p = torch.tensor([p for p, _ in settings], dtype=DTYPE).repeat_interleave(S)  # (settings · S,)
    runs_r = torch.tensor([[config.optimal_reward, r, config.low_reward] for _, r in settings], dtype=DTYPE)  # (k, 3)
    sampled_bandit = SoftmaxBandit(config.actions, config.high_actions, runs_r.repeat_interleave(S, 0))
    sampled_start = sampled_bandit.initial_logits(runs_p, config.initial_high)
    sampled = simulate(sampled_bandit, sampled_start, config.steps, config.group_size, config.step_size,
                       config.scale_rewards, "grpo", config.reward_model, generator=generator,
                       record_every=config.record_every, device=device)
    mf_bandit = SoftmaxBandit(config.actions, config.high_actions, runs_r)
    mean_field = simulate(mf_bandit, mf_bandit.initial_logits(runs_p[::S], config.initial_high), config.steps,
                          config.group_size, config.step_size, config.scale_rewards, "grpo", config.reward_model,
                          dynamics="expected", record_every=config.record_every, device=device)
    return sampled, mean_field


def times_table(trajectories: Trajectories, labels: Sequence[dict], runs_per_setting: int
                ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Median switch / takeover with 95% order-statistic intervals (censored runs count as ∞) and the
    share of runs that reach the takeover, per setting; ``labels`` are the settings' columns and the
    runs of setting i are rows i·runs_per_setting … (i + 1)·runs_per_setting − 1 of the trajectories.

    Returns the table and every run's switch and takeover step (B,) (NaN: censored)."""
    switch = switch_steps(trajectories.class_mass[..., 1], trajectories.recorded_steps)
    takeover = takeover_steps(trajectories.class_mass[..., 0], trajectories.recorded_steps)
    out, parts = [], ("median", "low", "high")
    for index, label in enumerate(labels):
        rows_ = slice(index * runs_per_setting, (index + 1) * runs_per_setting)
        switch_interval = statistics.median_interval(switch[rows_])
        takeover_interval = statistics.median_interval(takeover[rows_])
        out.append(dict(label, **{f"switch_{k}": v for k, v in zip(parts, switch_interval, strict=True)},
                        **{f"takeover_{k}": v for k, v in zip(parts, takeover_interval, strict=True)},
                        takeover_rate=float(np.isfinite(takeover[rows_]).mean())))
    return pd.DataFrame(out), switch, takeover


def figure1_table(config: TwoStageConfig, sampled: Trajectories, mean_field: Trajectories) -> pd.DataFrame:
    """The times of :func:`run_figure1`: per setting (pi_O0, r_H) the sampled medians and intervals
    and the mean-field switch and takeover."""
    labels = [dict(pi_O0=p, r_H=r) for p, r in figure1_settings(config)]
    table, _, _ = times_table(sampled, labels, config.seeds)
    _, mf_switch, mf_takeover = times_table(mean_field, labels, 1)
    table["mean_field_switch"] = mf_switch
    table["mean_field_takeover"] = mf_takeover
    return table


def mass_frame(trajectories: Trajectories, run_slices: Sequence[slice], names: Sequence) -> pd.DataFrame:
    """Mean class masses over the runs of each setting and the 10–90% band of every class: one row
    per (setting, class, recorded step) with columns step, mass, low, high, action, setting."""
    frames = []
    for name, rows_ in zip(names, run_slices, strict=True):
        mass = trajectories.class_mass[:, rows_].numpy()  # (S, runs, 3)
        for c, cls in enumerate(CLASSES):
            frames.append(pd.DataFrame(dict(step=trajectories.recorded_steps.numpy(), mass=mass[:, :, c].mean(1),
                                            low=np.quantile(mass[:, :, c], 0.1, axis=1),
                                            high=np.quantile(mass[:, :, c], 0.9, axis=1), action=cls,
                                            setting=name)))
    return pd.concat(frames, ignore_index=True)


def figure1_frames(sampled: Trajectories, mean_field: Trajectories, settings: int, seeds: int
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`mass_frame` of the sampled runs and of the mean-field paths of Figure 1, keyed by the
    setting's position (the main setting appears in both rows of the figure)."""
    keys = list(range(settings))
    return (mass_frame(sampled, [slice(i * seeds, (i + 1) * seeds) for i in keys], keys),
            mass_frame(mean_field, [slice(i, i + 1) for i in keys], keys))


def class_colors() -> dict[str, tuple]:
    """One colour per action class (seaborn's colour-blind palette)."""
    import seaborn as sns

    return dict(zip(CLASSES, sns.color_palette("colorblind", 3), strict=True))


def draw_masses(ax, sampled: pd.DataFrame, mean_field: pd.DataFrame, title: str) -> None:
    """One panel of class masses: the sampled means (solid, with π_O's 10–90% band) and the mean
    field (dashed), from :func:`mass_frame` rows of one setting."""
    import seaborn as sns

    colors = class_colors()
    # The frames hold one row per (step, class): no aggregation, so no bootstrap (errorbar=None).
    sns.lineplot(sampled, x="step", y="mass", hue="action", palette=colors, ax=ax, legend=False,
                 errorbar=None, estimator=None)
    band = sampled[sampled.action == "optimal"]
    ax.fill_between(band.step, band.low, band.high, color=colors["optimal"], alpha=0.2, lw=0)
    sns.lineplot(mean_field, x="step", y="mass", hue="action", palette=colors, ax=ax, legend=False,
                 linestyle="--", lw=1, errorbar=None, estimator=None)
    ax.set(title=title, ylim=(-0.02, 1.02), ylabel="probability mass")


def mass_legend_handles(seeds: int) -> list:
    """Legend entries of the mass panels: the three classes, sampled mean and mean field."""
    import matplotlib.pyplot as plt

    colors = class_colors()
    handles = [plt.Line2D([], [], color=colors[c], label=f"$\\pi_{c[0].upper()}$ ({c})") for c in CLASSES]
    return handles + [plt.Line2D([], [], color="grey", label=f"sampled mean ({seeds} runs)"),
                      plt.Line2D([], [], color="grey", ls="--", label="mean field (exact E[Δz])")]


# ----------------------------------------------------------------------------------------------
# The onset of exploration (TS7)
# ----------------------------------------------------------------------------------------------

ONSET_RATIO_RANGE = (0.8, 1.25)
"""At the bottom of a dip of π_O, π_L / ((n_H + 1) π_O) must lie here (theory: 1)."""
ONSET_HIGH_MASS = 0.9
"""The Proposition assumes π_H ≈ 1: it is tested on the dips whose bottom has π_H ≥ this."""
DIP_LEVEL = 0.5
"""'Not largely unchanged': at the smallest π_O(0) the better action keeps less than this share."""


def onset_table(mean_field: Trajectories, settings: Sequence[tuple[float, float]], high_actions: int) -> pd.DataFrame:
    """Where π_O bottoms out on each mean-field path (one path per setting (π_O(0), r_H)): whether it
    dips at all, the step and depth (π_O there / π_O(0)) of the bottom, π_H there, and the onset
    ratio (TS7) π_L / ((n_H + 1) π_O) there."""
    optimal = mean_field.class_mass[..., 0]  # (S, settings)
    rows = []
    for run, (p0, r_h) in enumerate(settings):
        onset = int(optimal[:, run].argmin())
        dipped = bool(optimal[onset, run] < optimal[0, run] * (1 - 1e-9))
        rows.append(dict(pi_O0=p0, r_H=r_h, dips=dipped, onset_step=float(mean_field.recorded_steps[onset]),
                         dip_ratio=float(optimal[onset, run] / optimal[0, run]),
                         high_mass_at_onset=float(mean_field.class_mass[onset, run, 1]),
                         onset_ratio=float(logit_dynamics.exploration_onset_ratio(mean_field.class_mass[onset, run],
                                                                                  high_actions))))
    return pd.DataFrame(rows)


def onset_regime(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`onset_table` the Proposition covers: a dip whose bottom has π_H ≥ ONSET_HIGH_MASS."""
    return table[table.dips & (table.high_mass_at_onset >= ONSET_HIGH_MASS)]


def onset_margins(in_regime: pd.DataFrame) -> list[float]:
    """(TS7): the onset ratio within ONSET_RATIO_RANGE at every covered dip (distance to its nearer end)."""
    low, high = ONSET_RATIO_RANGE
    return [min(r - low, high - r) for r in in_regime.onset_ratio]


def deepest_dip(table: pd.DataFrame, smallest: float) -> float:
    """The share of π_O(0) kept at the bottom of the deepest dip among the rows with π_O(0) = ``smallest``."""
    return float(table[table.pi_O0 == smallest].dip_ratio.min())


def dip_margins(table: pd.DataFrame, smallest: float) -> list[float]:
    """At π_O(0) = ``smallest`` the deepest dip keeps less than DIP_LEVEL of the mass: DIP_LEVEL − its ratio."""
    return [DIP_LEVEL - deepest_dip(table, smallest)]


# ----------------------------------------------------------------------------------------------
# More rollouts per prompt (their Figure 5) and the time scales (TS6)
# ----------------------------------------------------------------------------------------------

KAPPA_SPREAD_LIMIT = 1.5
"""(TS6): exploration-stage length × κ may vary across G by at most this factor."""


def main_index(config: TwoStageConfig) -> int:
    """Position of the main π_O(0) in the grid (the first when it is not on the grid)."""
    return config.optimal_grid.index(config.initial_optimal) if config.initial_optimal in config.optimal_grid else 0


@dataclass(frozen=True, eq=False)  # holds DataFrames: compared by identity
class GroupStudy:
    """Every G of the grid × every π_O(0) of the grid, GRPO: sampled and mean field."""

    table: pd.DataFrame  # per (G, pi_O0): times_table columns, mean_field_switch, mean_field_takeover
    masses: dict[int, tuple[pd.DataFrame, pd.DataFrame]]  # G → mass frames (sampled, mean field) at the main π_O(0)
    main: int  # position of the main π_O(0) in the grid


def group_study(config: TwoStageConfig, generators: Sequence[torch.Generator], device) -> GroupStudy:
    """Run the Figure-5 study: for the i-th G of the grid, ``seeds`` sampled runs per π_O(0) drawn from
    ``generators[i]`` and one mean-field path per π_O(0), on the main bandit (r_H = high_reward)."""
    bandit, S = config.bandit(), config.seeds
    rows, masses = [], {}
    grid_p = torch.tensor(config.optimal_grid, dtype=DTYPE)  # (P,)
    main = main_index(config)
    for g_index, G_ in enumerate(config.group_grid):
        start = bandit.initial_logits(grid_p, config.initial_high)  # (P, V)
        sampled = simulate(bandit, start.repeat_interleave(S, 0), config.steps, G_, config.step_size,
                           config.scale_rewards, "grpo", config.reward_model, generator=generators[g_index],
                           record_every=config.record_every, device=device)
        mean_field = simulate(bandit, start, config.steps, G_, config.step_size, config.scale_rewards, "grpo",
                              config.reward_model, dynamics="expected", record_every=config.record_every,
                              device=device)
        table, _, _ = times_table(sampled, [dict(G=G_, pi_O0=p) for p in config.optimal_grid], S)
        table["mean_field_switch"] = switch_steps(mean_field.class_mass[..., 1], mean_field.recorded_steps)
        table["mean_field_takeover"] = takeover_steps(mean_field.class_mass[..., 0], mean_field.recorded_steps)
        rows.append(table)
        masses[G_] = (mass_frame(sampled, [slice(main * S, (main + 1) * S)], ["s"]),
                      mass_frame(mean_field, [slice(main, main + 1)], ["m"]))
    return GroupStudy(pd.concat(rows, ignore_index=True), masses, main)


def draw_times(ax, study: pd.DataFrame, which: str, groups: Sequence[int], steps: int) -> None:
    """One panel of the ``which`` ("switch" or "takeover") step against π_O(0), log-log, per G: the
    sampled medians with their 95% intervals (capped at 10 × steps) and the mean field (×)."""
    import seaborn as sns

    palette = dict(zip(groups, sns.color_palette("viridis", len(groups)), strict=True))
    for G_, part in study.groupby("G"):
        finite = part[np.isfinite(part[f"{which}_median"])]
        ax.errorbar(finite.pi_O0, finite[f"{which}_median"], fmt="o-", color=palette[G_], label=f"G = {G_}",
                    yerr=[finite[f"{which}_median"] - finite[f"{which}_low"],
                          np.minimum(finite[f"{which}_high"], 10 * steps) - finite[f"{which}_median"]])
        ax.plot(part.pi_O0, part[f"mean_field_{which}"], "x--", color=palette[G_], lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel=r"$\pi_O(0)$", ylabel="step",
           title=f"{which.capitalize()} step (median, 95% CI; × mean field)")


def monotone_margin(values) -> list[float]:
    """(previous − next) / previous over consecutive pairs: all ≥ 0 iff non-increasing ([0.0] for one value)."""
    values = np.asarray(values, dtype=float)
    return [(a - b) / a for a, b in zip(values[:-1], values[1:], strict=True)] if len(values) > 1 else [0.0]


def reached_takeover(study: pd.DataFrame) -> pd.DataFrame:
    """The settings of the study whose median run reaches the takeover."""
    return study[np.isfinite(study.takeover_median)]


def takeover_dependence(study: pd.DataFrame) -> pd.DataFrame:
    """takeover ∝ π_O(0)^slope per G: the least-squares log-log slope of the sampled median over the
    settings that reach it (G with at least two such settings)."""
    dependence = []
    for G_, part in reached_takeover(study).groupby("G"):
        if len(part) >= 2:
            slope = np.polyfit(np.log(part.pi_O0), np.log(part.takeover_median), 1)[0]
            dependence.append(dict(G=G_, settings_reached=len(part), log_log_slope=slope))
    return pd.DataFrame(dependence, columns=["G", "settings_reached", "log_log_slope"])


def steeper_than_inverse_margins(dependence: pd.DataFrame) -> list[float]:
    """The takeover grows faster than 1/π_O(0): −1 − the log-log slope of :func:`takeover_dependence`, per G."""
    return [-1.0 - slope for slope in dependence.log_log_slope]


def later_when_rarer_margins(study: pd.DataFrame) -> list[float]:
    """The takeover comes later for a smaller π_O(0): :func:`monotone_margin` over π_O(0), every G."""
    return sum([monotone_margin(part.sort_values("pi_O0").takeover_median)
                for _, part in reached_takeover(study).groupby("G")], [])


def earlier_with_more_rollouts_margins(study: pd.DataFrame) -> list[float]:
    """The takeover comes earlier with more rollouts: :func:`monotone_margin` over G, every π_O(0)."""
    return sum([monotone_margin(part.sort_values("G").takeover_median)
                for _, part in reached_takeover(study).groupby("pi_O0")], [])


def exploration_table(study: pd.DataFrame, config: TwoStageConfig, main: int) -> pd.DataFrame:
    """(TS6) at the main π_O(0): the mean-field exploration stage (takeover − switch), the rate κ of
    (TS6) (∝ a_G = (G − 1)/√G at fixed η, n_H) and their product, per G."""
    table = study[study.pi_O0 == config.optimal_grid[main]].copy()
    table["exploration"] = table.mean_field_takeover - table.mean_field_switch
    reward_gap = config.optimal_reward - config.high_reward
    table["rate_kappa"] = [logit_dynamics.exploration_rate(int(G_), config.step_size, config.scale_rewards,
                                                           reward_gap, config.high_actions) for G_ in table.G]
    table["exploration_x_kappa"] = table.exploration * table.rate_kappa
    return table


def kappa_spread(table: pd.DataFrame) -> float:
    """max / min of exploration × κ across G (1 when the stage length is exactly ∝ 1/κ)."""
    return table.exploration_x_kappa.max() / table.exploration_x_kappa.min()


def kappa_spread_margins(spread: float) -> list[float]:
    """(TS6): KAPPA_SPREAD_LIMIT − the spread of exploration × κ."""
    return [KAPPA_SPREAD_LIMIT - spread]


def reward_row(fig1_table: pd.DataFrame, config: TwoStageConfig) -> pd.DataFrame:
    """The r_H row of Figure 1 (π_O(0) = initial_optimal, one row per r_H of the grid)."""
    return fig1_table.iloc[len(config.optimal_grid):]


def reward_gap_spread(fig1_table: pd.DataFrame, config: TwoStageConfig) -> float:
    """max / min of the mean-field takeover across the r_H row (std scaling: 1 to leading order)."""
    takeovers = reward_row(fig1_table, config).mean_field_takeover
    return takeovers.max() / takeovers.min()


# ----------------------------------------------------------------------------------------------
# Negative-only gradients: GRPO, GRPO-N and GRPO-P
# ----------------------------------------------------------------------------------------------

SUCCESS_LEVEL = 0.5
"""A run *finds* the better action when π_O ≥ this at the end."""
REBOUND = 0.05
"""An entropy *rises again* when it ends more than this (nats) above its minimum."""
STARVATION_RATE = 0.05
"""GRPO-N *starves* the better action when it succeeds in at most this share of runs."""
R2_LEVEL = 0.9
"""The log-odds of J must follow the cumulative projected gap with R² at least this."""


def variant_rows(index: int, seeds: int) -> slice:
    """The runs of the ``index``-th variant of SIGN_VARIANTS in :func:`run_variants`' trajectories."""
    return slice(index * seeds, (index + 1) * seeds)


def run_variants(config: TwoStageConfig, generators: Sequence[torch.Generator], device) -> dict[str, Trajectories]:
    """Every variant of SIGN_VARIANTS, ``seeds`` runs each (consecutive), on the main setting, under
    each reward model of REWARD_MODELS (the i-th drawn from ``generators[i]``)."""
    bandit, S = config.bandit(), config.seeds
    runs = {}
    for m_index, reward_model_ in enumerate(REWARD_MODELS):
        start = bandit.initial_logits(config.initial_optimal, config.initial_high).expand(len(SIGN_VARIANTS) * S, -1)
        runs[reward_model_] = simulate(
            bandit, start, config.steps, config.group_size, config.step_size, config.scale_rewards,
            [v for v in SIGN_VARIANTS for _ in range(S)], reward_model_, generator=generators[m_index],
            record_every=config.record_every, device=device)
    return runs


def variant_metrics(runs: dict[str, Trajectories], seeds: int) -> dict[str, dict]:
    """Per "reward_model/variant": median switch and takeover (with intervals), the entropy (initial,
    minimum, step of the minimum, final; means with intervals), the share of runs whose entropy rises
    again by more than REBOUND, the success rate (Wilson interval), the final J and the share of moving
    steps with Δμ < 0."""
    metrics = {}
    for reward_model_, trajectories in runs.items():
        switch = switch_steps(trajectories.class_mass[..., 1], trajectories.recorded_steps)
        takeover = takeover_steps(trajectories.class_mass[..., 0], trajectories.recorded_steps)
        for v_index, variant in enumerate(SIGN_VARIANTS):
            rows_ = variant_rows(v_index, seeds)
            entropy = trajectories.entropy[:, rows_]  # (S, seeds)
            final_optimal = trajectories.class_mass[-1, rows_, 0].numpy()
            successes = int((final_optimal >= SUCCESS_LEVEL).sum())
            minimum = entropy.min(0)
            moving = trajectories.moving_steps[-1, rows_]
            metrics[f"{reward_model_}/{variant}"] = dict(
                reward_model=reward_model_, variant=variant,
                switch=statistics.median_interval(switch[rows_]),
                takeover=statistics.median_interval(takeover[rows_]),
                entropy_initial=float(entropy[0, 0]), entropy_min=statistics.mean_interval(minimum.values.numpy()),
                entropy_min_step=statistics.median_interval(trajectories.recorded_steps[minimum.indices].double().numpy()),
                entropy_final=statistics.mean_interval(entropy[-1].numpy()),
                rises_after_min=float(((entropy[-1] - minimum.values) > REBOUND).double().mean()),
                success=statistics.wilson_interval(successes, seeds),
                final_value=statistics.mean_interval(trajectories.value[-1, rows_].numpy()),
                misaligned_share=float((trajectories.misaligned_steps[-1, rows_] / moving.clamp(min=1)).mean()))
    return metrics


def variant_summary(metrics: dict[str, dict]) -> pd.DataFrame:
    """The printed table of :func:`variant_metrics`: one row per reward model and variant."""
    rows = []
    for record in metrics.values():
        rows.append({
            "reward model": record["reward_model"], "variant": record["variant"],
            "takeover (median)": record["takeover"][0], "success [95% CI]":
                f"{record['success'][0]:.2f} [{record['success'][1]:.2f}, {record['success'][2]:.2f}]",
            "entropy min": round(record["entropy_min"][0], 3), "entropy final": round(record["entropy_final"][0], 3),
            "entropy initial": round(record["entropy_initial"], 3), "final J": round(record["final_value"][0], 3),
            "Δμ<0 share": round(record["misaligned_share"], 3)})
    return pd.DataFrame(rows)


SIGN_VARIANT_NAMES = {"grpo": "GRPO", "grpo_n": "GRPO-N (negative only)", "grpo_p": "GRPO-P (positive only)"}
"""How the figures name the engine's sign variants (``softmax_bandit.SIGN_VARIANTS``)."""


def draw_variant_row(axes, trajectories: Trajectories, reward_model: str, seeds: int) -> None:
    """One row of the variants figure (three Axes): π_O and the entropy over the steps (means, 10–90%
    bands), and the change of logit J against its first-order prediction Σ_k ⟨Δz_k, g⁺ − g⁻⟩."""
    import seaborn as sns

    variant_palette = dict(zip(SIGN_VARIANTS, [sns.color_palette("colorblind")[i] for i in (0, 4, 3)], strict=True))
    steps_axis = trajectories.recorded_steps.numpy()
    for v_index, variant in enumerate(SIGN_VARIANTS):
        rows_ = variant_rows(v_index, seeds)
        color = variant_palette[variant]
        optimal_mass = trajectories.class_mass[:, rows_, 0].numpy()  # (S, seeds)
        axes[0].plot(steps_axis, optimal_mass.mean(1), color=color, label=SIGN_VARIANT_NAMES[variant])
        axes[0].fill_between(steps_axis, *np.quantile(optimal_mass, [0.1, 0.9], axis=1), color=color, alpha=0.15,
                             lw=0)
        entropy = trajectories.entropy[:, rows_].numpy()
        axes[1].plot(steps_axis, entropy.mean(1), color=color, label=SIGN_VARIANT_NAMES[variant])
        axes[1].fill_between(steps_axis, *np.quantile(entropy, [0.1, 0.9], axis=1), color=color, alpha=0.15, lw=0)
        change = (trajectories.log_odds[:, rows_] - trajectories.log_odds[0, rows_]).numpy()
        first_order = trajectories.signed_cumulative_alignment[:, rows_].numpy()
        axes[2].plot(first_order.mean(1), change.mean(1), color=color, label=SIGN_VARIANT_NAMES[variant])
    axes[1].axhline(trajectories.entropy[0, 0], color="grey", ls=":", lw=1, label="initial entropy")
    axes[0].set(title=f"{reward_model.capitalize()} reward", xlabel="step", ylabel=r"$\pi_O$ (mean, 10–90%)")
    axes[1].set(xlabel="step", ylabel="entropy (nats)")
    axes[2].set(xlabel=r"$\sum_k \langle \Delta z_k, g^+ - g^- \rangle = \sum_k \eta_k \Delta\mu_k$",
                ylabel="logit $J(k)$ − logit $J(0)$")
    lims = axes[2].get_xlim()
    axes[2].plot(lims, lims, color="grey", ls=":", lw=1)


def variant_glue(metrics: dict[str, dict]) -> dict[str, float]:
    """The numbers of :func:`variant_metrics` the prose quotes: per reward model ("det", "ber") and
    variant ("grpo", "grpo_n", "grpo_p") the success rate (``success_det_grpo``), the median takeover
    step (``takeover_det_grpo``, inf when censored) and the mean final entropy (``entropy_det_grpo``);
    and the initial entropy (``entropy_initial``)."""
    values = {"entropy_initial": next(iter(metrics.values()))["entropy_initial"]}
    for record in metrics.values():
        suffix = f"{record['reward_model'][:3]}_{record['variant']}"
        values.update({f"success_{suffix}": record["success"][0], f"takeover_{suffix}": record["takeover"][0],
                       f"entropy_{suffix}": record["entropy_final"][0]})
    return values


def diversity_margins(metrics: dict[str, dict]) -> list[float]:
    """GRPO-N ends with a higher entropy than GRPO (deterministic rewards): the lower end of GRPO-N's
    interval minus the upper end of GRPO's."""
    return [metrics["deterministic/grpo_n"]["entropy_final"][1] - metrics["deterministic/grpo"]["entropy_final"][2]]


def starvation_margins(metrics: dict[str, dict]) -> list[float]:
    """GRPO-N starves the better action (deterministic rewards): STARVATION_RATE − its success rate."""
    return [STARVATION_RATE - metrics["deterministic/grpo_n"]["success"][0]]


def positive_only_margins(metrics: dict[str, dict]) -> list[float]:
    """Deterministic rewards: GRPO-P's success rate minus GRPO's."""
    return [metrics["deterministic/grpo_p"]["success"][0] - metrics["deterministic/grpo"]["success"][0]]


def bernoulli_negative_only_margins(metrics: dict[str, dict]) -> list[float]:
    """Bernoulli verifier: GRPO-N's success rate minus GRPO's, and minus GRPO-P's."""
    return [metrics["bernoulli/grpo_n"]["success"][0] - metrics[f"bernoulli/{v}"]["success"][0]
            for v in ("grpo", "grpo_p")]


def no_rebound_margins(metrics: dict[str, dict]) -> list[float]:
    """GRPO-N's entropy does not rise again in most runs: ½ − the share that does, per reward model."""
    return [0.5 - metrics[f"{r}/grpo_n"]["rises_after_min"] for r in REWARD_MODELS]


def below_base_margins(metrics: dict[str, dict]) -> list[float]:
    """No variant's mean entropy ends above the initial entropy: initial − final mean, per entry."""
    return [metrics[k]["entropy_initial"] - metrics[k]["entropy_final"][0] for k in metrics]


def first_order_r2(runs: dict[str, Trajectories], seeds: int) -> dict[str, float]:
    """The Gradient-Gap view (Suk & Duan, Lemma 1): R² of logit J(k) − logit J(0) against its
    first-order change Σ_k ⟨Δz_k, g⁺ − g⁻⟩ = Σ_k η_k Δμ_k, over every recorded point of every run,
    per "reward_model/variant"."""
    r2 = {}
    for name, trajectories in runs.items():
        for v_index, variant in enumerate(SIGN_VARIANTS):
            rows_ = variant_rows(v_index, seeds)
            change = (trajectories.log_odds[:, rows_] - trajectories.log_odds[0, rows_]).flatten().numpy()
            predicted = trajectories.signed_cumulative_alignment[:, rows_].flatten().numpy()
            r2[f"{name}/{variant}"] = float(1 - np.var(change - predicted) / np.var(change))
    return r2


def r2_margins(r2: dict[str, float]) -> list[float]:
    """R² − R2_LEVEL, per entry of :func:`first_order_r2`."""
    return [r - R2_LEVEL for r in r2.values()]


# ----------------------------------------------------------------------------------------------
# GRPO-N on the language model
# ----------------------------------------------------------------------------------------------


def run_lm_comparison(config, folder, train, validation, grpo_seeds: Sequence[int], device) -> dict[int, list]:
    """GRPO and GRPO-N (the runs of ``config``) from the checkpoint in ``folder``, once per GRPO seed:
    :func:`rlvr_dynamics.lm.experiment.run_all` per seed (its worker processes). GRPO seed → runs."""
    return {s: experiment.run_all(config, folder, train, validation, s, device) for s in grpo_seeds}


def lm_frame(runs: dict[int, list]) -> pd.DataFrame:
    """Every validation point of every LM run (``GRPORun.evals`` rows) with its variant ("GRPO",
    "GRPO-N", "GRPO-P" by the advantage filter) and its GRPO seed."""
    names = {"all": "GRPO", "negative": "GRPO-N", "positive": "GRPO-P"}
    return pd.concat([run.evals.assign(variant=names[run.config.advantage_filter], grpo_seed=s)
                      for s, seed_runs in runs.items() for run in seed_runs], ignore_index=True)


def lm_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy and entropy over the GRPO seeds per step (rows) and variant (columns: ``(quantity,
    variant)``)."""
    return frame.groupby(["step", "variant"])[["accuracy", "entropy"]].mean().unstack("variant")


def lm_summary(runs) -> dict[str, dict[str, float]]:
    """Per advantage filter ("all", "negative") of the runs of one GRPO seed: validation accuracy and
    entropy at the first and last evaluation, and the smallest entropy."""
    summary = {}
    for run in runs:
        first, last = run.evals.iloc[0], run.evals.iloc[-1]
        summary[run.config.advantage_filter] = dict(
            accuracy_start=float(first.accuracy), accuracy_end=float(last.accuracy),
            entropy_start=float(first.entropy), entropy_end=float(last.entropy),
            entropy_min=float(run.evals.entropy.min()))
    return summary


@dataclass(frozen=True)
class LMComparison:
    """GRPO ("all") against GRPO-N ("negative") on the language model over several GRPO seeds from
    one warm start: :func:`lm_summary` per seed, and intervals over the seeds."""

    seeds: list[int]
    summaries: list[dict[str, dict[str, float]]]  # lm_summary, one per GRPO seed

    @classmethod
    def from_runs(cls, runs: dict[int, list]) -> LMComparison:
        return cls(list(runs), [lm_summary(seed_runs) for seed_runs in runs.values()])

    def values(self, advantage_filter: str, key: str) -> np.ndarray:
        """``key`` of ``advantage_filter``'s summary, per GRPO seed."""
        return np.array([summary[advantage_filter][key] for summary in self.summaries])

    def gains(self, advantage_filter: str) -> np.ndarray:
        """Validation-accuracy gain (last − first evaluation), per GRPO seed."""
        return self.values(advantage_filter, "accuracy_end") - self.values(advantage_filter, "accuracy_start")

    def entropy_differences(self) -> np.ndarray:
        """GRPO-N's final entropy minus GRPO's, per GRPO seed (> 0: GRPO-N keeps more)."""
        return self.values("negative", "entropy_end") - self.values("all", "entropy_end")

    def gain_differences(self) -> np.ndarray:
        """GRPO's accuracy gain minus GRPO-N's, per GRPO seed (> 0: GRPO gains more)."""
        return self.gains("all") - self.gains("negative")

    def entropy_drops(self, advantage_filter: str) -> np.ndarray:
        """First minus last evaluation's token entropy, per GRPO seed (> 0: the entropy fell)."""
        return self.values(advantage_filter, "entropy_start") - self.values(advantage_filter, "entropy_end")

    def entropy_share(self) -> float:
        """The share of GRPO seeds in which GRPO-N ends with the higher entropy."""
        return float((self.entropy_differences() > 0).mean())

    def headline(self) -> dict:
        """Per-seed summaries and the means with Student-t intervals (LM_INTERVAL_LEVEL) over the GRPO seeds."""
        interval = lambda values: statistics.mean_interval(values, LM_INTERVAL_LEVEL)  # noqa: E731
        return dict(grpo_seeds=self.seeds, per_seed=self.summaries,
                    gain_grpo=interval(self.gains("all")), gain_grpo_n=interval(self.gains("negative")),
                    entropy_end_grpo=interval(self.values("all", "entropy_end")),
                    entropy_end_grpo_n=interval(self.values("negative", "entropy_end")),
                    entropy_difference=interval(self.entropy_differences()),
                    gain_difference=interval(self.gain_differences()), entropy_share=self.entropy_share())

    def glue(self) -> dict[str, float]:
        """The numbers the prose quotes: ``lm_runs`` (GRPO seeds), ``lm_higher_entropy`` (seeds in which
        GRPO-N ends with the higher entropy), ``lm_grpo_n_gains`` (seeds in which GRPO-N's accuracy rises),
        and the mean with its interval (``_low``, ``_high``) of ``lm_gain_grpo``, ``lm_gain_grpo_n``,
        ``lm_gain_difference`` (GRPO − GRPO-N), ``lm_entropy_grpo``, ``lm_entropy_grpo_n`` (final
        entropies) and ``lm_entropy_difference`` (GRPO-N − GRPO)."""
        headline = self.headline()
        values = {"lm_runs": len(self.seeds), "lm_higher_entropy": int((self.entropy_differences() > 0).sum()),
                  "lm_grpo_n_gains": int((self.gains("negative") > 0).sum())}
        for name, key in (("gain_grpo", "gain_grpo"), ("gain_grpo_n", "gain_grpo_n"),
                          ("gain_difference", "gain_difference"), ("entropy_grpo", "entropy_end_grpo"),
                          ("entropy_grpo_n", "entropy_end_grpo_n"), ("entropy_difference", "entropy_difference")):
            values.update(zip((f"lm_{name}", f"lm_{name}_low", f"lm_{name}_high"), headline[key], strict=True))
        return values

    def table(self) -> pd.DataFrame:
        """Accuracy gain and final entropy (rows) per variant and GRPO-N − GRPO (columns): mean [interval at
        LM_INTERVAL_LEVEL] over the GRPO seeds, and the per-seed values, as texts to 3 decimals."""
        rows = {"GRPO": (self.gains("all"), self.values("all", "entropy_end")),
                "GRPO-N": (self.gains("negative"), self.values("negative", "entropy_end")),
                "GRPO-N − GRPO": (-self.gain_differences(), self.entropy_differences())}
        cell = lambda v: "{:.3f} [{:.3f}, {:.3f}]".format(*statistics.mean_interval(v, LM_INTERVAL_LEVEL))  # noqa: E731
        per_seed = lambda v: " ".join(f"{x:+.3f}" for x in v)  # noqa: E731
        return pd.DataFrame({name: {"accuracy gain": cell(g), "gain per seed": per_seed(g), "final entropy": cell(e),
                                    "final entropy per seed": per_seed(e)}
                             for name, (g, e) in rows.items()})


def lm_gain_margins(comparison: LMComparison, advantage_filter: str) -> list[float]:
    """``advantage_filter``'s runs raise validation accuracy on average over the GRPO seeds: the mean gain."""
    return [float(comparison.gains(advantage_filter).mean())]


def lm_gain_order_margins(comparison: LMComparison) -> list[float]:
    """GRPO gains more accuracy than GRPO-N on average over the GRPO seeds: the mean difference."""
    return [float(comparison.gain_differences().mean())]


def lm_entropy_margins(comparison: LMComparison) -> list[float]:
    """GRPO-N ends with a higher token entropy than GRPO on average over the GRPO seeds: the mean difference."""
    return [float(comparison.entropy_differences().mean())]


def lm_entropy_fall_margins(comparison: LMComparison) -> list[float]:
    """Both GRPO's and GRPO-N's token entropy end below their start on average over the GRPO seeds (GRPO-N's
    does not rise above the base model's): the mean of start − end, per variant."""
    return [float(comparison.entropy_drops(f).mean()) for f in ("all", "negative")]


def draw_lm(axes, frame: pd.DataFrame) -> None:
    """Two Axes: validation accuracy and token entropy against the step, per variant: the mean over the
    GRPO seeds and the band from their smallest to their largest value."""
    import seaborn as sns

    for ax, y in zip(axes, ("accuracy", "entropy"), strict=True):
        sns.lineplot(frame, x="step", y=y, hue="variant", errorbar=("pi", 100), marker="o", ax=ax,
                     legend=ax is axes[0])
    axes[0].set(ylabel="sampled validation accuracy")
    axes[1].set(ylabel="mean token entropy (nats)")
