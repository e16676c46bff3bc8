"""Tests of rlvr_dynamics.chapters.trajectory_theory: phases and the critical step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlvr_dynamics.chapters import statistics
from rlvr_dynamics.chapters import trajectory_theory as theory

from _helpers import F64


def test_classify_and_critical_step():
    values = torch.tensor([[0.3, 0.3, 0.3], [0.2, 0.31, 0.5], [0.1, 0.29, 0.7]], dtype=F64)  # (K+1, B)
    assert theory.classify(values).tolist() == ["collapses", "stagnates", "converges"]
    grid = np.array([0.1, 0.2, 0.3, 0.4])
    assert theory.critical_step(grid, np.array([False, True, False, True])) == 0.4
    assert theory.critical_step(grid, np.array([False, False, True, True])) == 0.3
    assert theory.critical_step(grid, np.array([True, True, True, True])) == 0.1
    assert math.isnan(theory.critical_step(grid, np.array([True, False, False, False])))
    assert statistics.loglog_slope(np.array([1.0, 10.0, 100.0]), np.array([2.0, 2e3, 2e6])) == pytest.approx(3.0)
