"""Fixtures of the language-model tests: the byte tokenizer, a tiny model, an arithmetic task and a
warmed-up checkpoint."""

import pytest
import torch

from rlvr_dynamics.lm import model as lm_model
from rlvr_dynamics.lm import scoring
from rlvr_dynamics.lm import task as lm_task
from rlvr_dynamics.lm.warmup import WarmupConfig, supervised_warmup


@pytest.fixture(scope="module")
def tokenizer():
    return lm_model.byte_tokenizer()


@pytest.fixture(scope="module")
def tiny_model(tokenizer):
    return lm_model.build_model("ci", tokenizer, seed=0)


@pytest.fixture(scope="module")
def arithmetic():
    problems = lm_task.generate_problems("arithmetic", 50, seed=0, digits=1)  # one-digit sums: learnt fast
    return lm_task.train_validation_split(problems, 16)


@pytest.fixture(scope="module")
def warm_folder(tmp_path_factory, arithmetic, tokenizer):
    """A tiny model taught the answer format (a short warm-up: mixed groups, not accuracy)."""
    train, validation = arithmetic
    model = lm_model.build_model("ci", tokenizer, seed=0)
    result = supervised_warmup(model, tokenizer, train, validation,
                               WarmupConfig(target_accuracy=0.15, max_steps=400, batch_size=64, eval_every=25,
                                            eval_problems=16, eval_samples=4), torch.Generator().manual_seed(0))
    assert result.reached_target and result.history[-1][1] >= 0.15 > result.history[-2][1]
    assert [s for s, _ in result.history] == list(range(25, result.steps + 1, 25))
    return lm_model.save_model(model, tokenizer, tmp_path_factory.mktemp("warm") / "model")


def _sample_batch(model, tokenizer, prompts, seed=0, length=6):
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    generator = torch.Generator().manual_seed(seed)
    ids, mask = scoring.sample_completions(model, encoded["input_ids"], encoded["attention_mask"], length,
                                           tokenizer.eos_token_id, tokenizer.pad_token_id, generator)
    return encoded, ids, mask


@pytest.fixture
def sample_batch():
    """Left-padded prompts with seeded sampled completions:
    ``sample_batch(model, tokenizer, prompts, seed, length)``."""
    return _sample_batch
