"""Tests of rlvr_dynamics.lm.experiment: the experiment config, local data and models, the warm-up cache."""

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from rlvr_dynamics import files
from rlvr_dynamics.lm import experiment
from rlvr_dynamics.lm import model as lm_model
from rlvr_dynamics.lm import task as lm_task


def _config(**change):
    return replace(experiment.LMExperimentConfig(**experiment.PRESETS["ci"]), **change)


@pytest.mark.parametrize("change, message", [
    (dict(loss_types="grpo,ppo"), "'ppo' is unknown"),
    (dict(loss_types=" , "), "parameter 'loss_types' = ' , ' is empty"),
    (dict(scale_rewards="group,none,batch"), "parameter 'loss_types' has 2 values for 3 runs"),
    (dict(learning_rates="3e-4,x"), "'x' is not a float"),
    (dict(learning_rates="2"), "2.0 is out of range"),
    (dict(num_generations=1), "run 1: num_generations = 1"),
    (dict(completions_per_step=100), "run 1: num_generations = 8 does not divide completions_per_step = 100"),
    (dict(validation_size=4500), "validation_size"),
    (dict(eval_problems=501), "eval_problems"),
    (dict(model_name_or_path="/nope"), "model_name_or_path"),
    (dict(dataset_path="/nope.jsonl"), "dataset_path"),
])
def test_experiment_config_rejects_bad_settings(change, message):
    with pytest.raises(ValueError, match=message):
        _config(**change).check()


def test_run_lists_broadcast():
    runs = _config(loss_types="grpo,dr_grpo,dapo", scale_rewards="group", learning_rates="1e-4,2e-4,3e-4").run_configs()
    assert [(r.loss_type, r.scale_rewards, r.learning_rate) for r in runs] == [
        ("grpo", "group", 1e-4), ("dr_grpo", "group", 2e-4), ("dapo", "group", 3e-4)]


def test_experiment_reads_a_local_jsonl_and_a_local_model_folder(tmp_path, tiny_model, tokenizer):
    path = lm_task.write_gsm8k_jsonl(lm_task.generate_problems("word", 40, seed=2), tmp_path / "train.jsonl")
    source = lm_model.save_model(tiny_model, tokenizer, tmp_path / "source")
    config = _config(dataset_path=str(path), model_name_or_path=str(source), validation_size=10, eval_problems=8,
                     warmup_target=0.0)
    config.check()
    train, validation = experiment.load_problems(config, seed=0)
    assert (len(train), len(validation)) == (30, 10) and train[0].prompt.startswith("Q: ")
    folder, warmup, count = experiment.prepare_model(config, train, validation, 0, "cpu", tmp_path / "start")
    assert warmup is None and count == lm_model.parameter_count(tiny_model)
    loaded, _ = lm_model.load_model(folder)
    assert all(torch.equal(p, q) for p, q in zip(loaded.parameters(), tiny_model.parameters(), strict=True))
    with pytest.raises(ValueError, match="has only 40 problems"):
        experiment.load_problems(replace(config, validation_size=40, problems=100_000), seed=0)


def test_warmup_checkpoint_is_cached_by_key(tmp_path, monkeypatch):
    monkeypatch.setenv(files.CACHE_ENV, str(tmp_path / "cache"))
    config = replace(experiment.LMExperimentConfig(**experiment.PRESETS["ci"]), problems=120, validation_size=20,
                     warmup_target=0.01, warmup_max_steps=25, eval_problems=16)
    train, validation = experiment.load_problems(config, 0)
    folder, first, count = experiment.prepare_model(config, train, validation, 0, "cpu", tmp_path / "a")
    assert len(list((tmp_path / "cache" / "lm-warmup").iterdir())) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("the cached checkpoint should have been used")

    monkeypatch.setattr(experiment, "supervised_warmup", no_training)
    again, second, count_again = experiment.prepare_model(config, train, validation, 0, "cpu", tmp_path / "b")
    assert (second.steps, second.history, count_again) == (first.steps, first.history, count)
    assert (again / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    # another seed is another key; a local model or dataset is never cached (its content is not hashed)
    assert experiment.warmup_cache_key(config, 1, "cpu") != experiment.warmup_cache_key(config, 0, "cpu")
    assert experiment.warmup_cache_key(replace(config, dataset_path="x.jsonl"), 0, "cpu") is None


def test_the_warmup_key_follows_the_lm_source(tmp_path, monkeypatch):
    """An edit anywhere in the lm package changes the key: a stale checkpoint is never reused."""
    copy = shutil.copytree(Path(experiment.__file__).parent, tmp_path / "lm",
                           ignore=shutil.ignore_patterns("__pycache__"))
    before = experiment.lm_source_digest(copy)
    assert before == experiment.lm_source_digest()
    (copy / "warmup.py").write_text((copy / "warmup.py").read_text() + "\n# an edit\n")
    assert experiment.lm_source_digest(copy) != before
    config = _config()
    key = experiment.warmup_cache_key(config, 0, "cpu")
    monkeypatch.setattr(experiment, "lm_source_digest", lambda: "edited")
    assert experiment.warmup_cache_key(config, 0, "cpu") != key
