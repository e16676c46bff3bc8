"""Tests of rlvr_dynamics.chapters.token_theory: the measured constants of Assumption 2."""

from __future__ import annotations

import math

import torch

from rlvr_dynamics.chapters import token_theory as tt
from rlvr_dynamics.theory import bounds


def test_measured_constants_approach_the_suprema_from_below():
    assert math.sqrt(2.0) == bounds.SCORE_BOUND and bounds.SMOOTHNESS == 0.5
    score, smooth = tt.measured_constants(6, 2000, torch.Generator().manual_seed(0))
    assert 0.95 * math.sqrt(2.0) <= score <= math.sqrt(2.0) + 1e-12
    assert 0.95 * 0.5 <= smooth <= 0.5 + 1e-12
    again = tt.measured_constants(6, 2000, torch.Generator().manual_seed(0))
    assert again == (score, smooth)
