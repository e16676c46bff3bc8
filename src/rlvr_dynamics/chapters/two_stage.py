"""The chapter *Two-stage dynamics and negative-only gradients* (Yao et al.): its parameters and
the summaries of its runs (when the exploitation stage ends, when the better action takes over).

The engine is :mod:`rlvr_dynamics.engines.softmax_bandit`; Lemma 1 and the time scales are in
:mod:`rlvr_dynamics.theory.logit_dynamics`; the language-model comparison reuses the Figure-2
experiment (:mod:`rlvr_dynamics.lm.experiment`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from rlvr_dynamics.config import parameter, split_list
from rlvr_dynamics.engines.softmax_bandit import REWARD_MODELS, SoftmaxBandit
from rlvr_dynamics.lm import experiment
from rlvr_dynamics.theory.logit_dynamics import SCALES


def switch_steps(high_mass: torch.Tensor, steps: torch.Tensor, drop: float = 0.1) -> np.ndarray:
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
    # ≈ 80 s on 2 CPU cores (≈ 45 s of it the two language-model runs, after the Figure-2 chapter's
    # cached warm-up).
    "ci": dict(actions=10, high_actions=3, optimal_reward=1.0, high_reward=0.5, low_reward=0.0,
               reward_model="deterministic", scale_rewards="group", initial_optimal=0.02, initial_high=0.4,
               initial_optimal_grid="0.01,0.02,0.03,0.05", high_reward_grid="0.3,0.5,0.8", group_size=8,
               group_size_grid="2,3,5,10", step_size=0.3, steps=3000, seeds=64, record_every=5,
               monte_carlo_groups=100_000, lm_steps=90, lm_eval_every=30),
    # More seeds, a finer and lower grid of π_O(0), longer runs, a ten-fold Monte-Carlo check and
    # 500 GRPO steps on the language model.
    "paper": dict(actions=10, high_actions=3, optimal_reward=1.0, high_reward=0.5, low_reward=0.0,
                  reward_model="deterministic", scale_rewards="group", initial_optimal=0.02, initial_high=0.4,
                  initial_optimal_grid="0.005,0.01,0.015,0.02,0.03,0.05", high_reward_grid="0.3,0.5,0.8",
                  group_size=8, group_size_grid="2,3,5,10", step_size=0.3, steps=10_000, seeds=512,
                  record_every=10, monte_carlo_groups=1_000_000, lm_steps=500, lm_eval_every=50),
}
