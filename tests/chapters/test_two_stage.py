"""Tests of rlvr_dynamics.chapters.two_stage: the switch and takeover times and the presets."""

import numpy as np
import pytest
import torch

from rlvr_dynamics.chapters import two_stage as ts

F64 = torch.float64


@pytest.fixture
def bandit():
    return ts.SoftmaxBandit(6, 2, torch.tensor([[1.0, 0.6, 0.1]], dtype=F64))


def test_switch_and_takeover_detection():
    steps = torch.arange(6)
    high = torch.tensor([[0.4, 0.4], [0.6, 0.5], [0.8, 0.6], [0.7, 0.7], [0.5, 0.8], [0.3, 0.9]], dtype=F64)
    assert np.array_equal(ts.switch_steps(high, steps), [2.0, np.nan], equal_nan=True)
    optimal = torch.tensor([[0.1, 0.1], [0.2, 0.1], [0.6, 0.2], [0.9, 0.3], [0.9, 0.3], [0.9, 0.4]], dtype=F64)
    assert np.array_equal(ts.takeover_steps(optimal, steps), [2.0, np.nan], equal_nan=True)


@pytest.mark.parametrize("preset", ["ci", "paper"])
def test_presets_set_every_field_and_pass_their_checks(preset):
    import dataclasses

    names = {f.name for f in dataclasses.fields(ts.TwoStageConfig)}
    assert set(ts.PRESETS[preset]) == names
    config = ts.TwoStageConfig(**ts.PRESETS[preset])
    config.check()
    lm = config.lm_config(preset)
    assert [c.advantage_filter for c in lm.run_configs()] == ["all", "negative"]
