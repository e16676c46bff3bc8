"""Tests of rlvr_dynamics.lm.warmup: the supervised warm-up (the warm_folder fixture of conftest.py
also asserts that it stops exactly when the sampled accuracy first reaches its target)."""

from __future__ import annotations

import torch

from rlvr_dynamics.lm import model as lm_model
from rlvr_dynamics.lm.warmup import WarmupConfig, encode_supervised, supervised_warmup


def test_targets_are_the_reference_completion_then_end_of_text(tokenizer, arithmetic):
    train, _ = arithmetic
    prompts, prompt_mask, targets, target_mask = encode_supervised(tokenizer, train[:3], "cpu")
    for row in range(3):
        target = tokenizer.decode(targets[row][target_mask[row].bool()])
        assert target == train[row].solution + tokenizer.eos_token
        assert tokenizer.decode(prompts[row][prompt_mask[row].bool()]) == train[row].prompt


def test_an_unreachable_target_stops_at_max_steps_and_says_so(tokenizer, arithmetic):
    train, validation = arithmetic
    config = WarmupConfig(target_accuracy=0.95, max_steps=4, batch_size=8, eval_every=2, eval_problems=4,
                          eval_samples=1)
    runs = []
    for _ in range(2):
        model = lm_model.build_model("ci", tokenizer, seed=1)
        runs.append((supervised_warmup(model, tokenizer, train, validation, config, torch.Generator().manual_seed(0)),
                     [p.detach().clone() for p in model.parameters()]))
    (result, weights), (again, weights_again) = runs
    assert (result.steps, result.reached_target) == (4, False) and [s for s, _ in result.history] == [2, 4]
    assert result.final_accuracy == result.history[-1][1]
    assert result.history == again.history and all(torch.equal(a, b) for a, b in zip(weights, weights_again,
                                                                                        strict=True))
