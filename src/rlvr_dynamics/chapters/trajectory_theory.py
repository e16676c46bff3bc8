"""The chapter *Trajectory-level theory*: parameters, the runs behind each check, and summaries.

Instances: the three-response softmax of :mod:`rlvr_dynamics.engines.three_response` (Theorem 2's
construction and the Theorem-1 / Corollary-1 runs) and the Section-5.1 bandit of
:mod:`rlvr_dynamics.engines.bandit` (Lemma 1 at every step; the threshold sweep with constant steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from rlvr_dynamics.config import parameter
from rlvr_dynamics.theory.bounds import CURVATURE

SWEEP_RANGE = (1e-4, 1.0)
PHASES = ("converges", "stagnates", "collapses")


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


PRESETS = {
    "ci": dict(alignment=0.01, initial_value=0.3, steps=400, sweep_points=61, phase_points=15, bandit_seeds=2,
               bandit_steps=300, bandit_eval_size=100, expansion_states=16),
    "paper": dict(alignment=0.01, initial_value=0.3, steps=2000, sweep_points=121, phase_points=41, bandit_seeds=5,
                  bandit_steps=2000, bandit_eval_size=500, expansion_states=64),
}


def sweep_grid(points: int) -> np.ndarray:
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


