"""Tests of rlvr_dynamics.engines.records: every engine's record speaks the one vocabulary."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rlvr_dynamics.engines import bandit, records, softmax_bandit, three_response, token_chain, token_training

RECORDS = (bandit.BanditTrajectories, three_response.Trajectories, token_chain.ExactRun,
           token_training.TrainingRun, softmax_bandit.Trajectories)


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: f"{r.__module__}.{r.__name__}")
def test_every_record_is_a_frozen_record_of_the_vocabulary(record):
    assert issubclass(record, records.Record) and record.__dataclass_params__.frozen
    assert {field.name for field in dataclasses.fields(record)} <= set(records.VOCABULARY)


def test_a_field_outside_the_vocabulary_is_refused():
    with pytest.raises(TypeError, match=r"\['effective_step'\] are not in the engines' vocabulary"):
        @dataclasses.dataclass(frozen=True)
        class Drifted(records.Record):
            value: torch.Tensor
            effective_step: torch.Tensor  # the drift this module exists to prevent: η_k is `step`


def test_to_moves_every_tensor_also_inside_dicts():
    @dataclasses.dataclass(frozen=True)
    class Small(records.Record):
        value: torch.Tensor
        cumulative_gap: dict
        band: tuple

    moved = Small(torch.ones(2), {"effective": torch.zeros(1)}, (0.2, 0.8)).to("cpu")
    assert moved.value.device.type == "cpu" and moved.cumulative_gap["effective"].device.type == "cpu"
    assert moved.band == (0.2, 0.8)
