"""Tests of rlvr_dynamics.lm.experiment: the experiment config, local data and models, the warm-up cache."""

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from rlvr_dynamics import files
from rlvr_dynamics.lm import experiment
from rlvr_dynamics.lm import model as lm_model
from rlvr_dynamics.lm import task as lm_task
from rlvr_dynamics.lm.warmup import WarmupResult


def _config(**change):
    return replace(experiment.LMExperimentConfig(**experiment.PRESETS["ci"]), **change)


@pytest.mark.parametrize("change, message", [
    (dict(loss_types="grpo,ppo"), "'ppo' is unknown"),
    (dict(loss_types=" , "), "parameter 'loss_types' = ' , ': item 1 of 2 is empty"),
    (dict(loss_types="grpo,"), "parameter 'loss_types' = 'grpo,': item 2 of 2 is empty"),
    (dict(scale_rewards="group,none,batch"), "parameter 'loss_types' has 2 values for 3 runs"),
    (dict(learning_rates="3e-4,x"), "'x' is not a float"),
    (dict(learning_rates="2"), "2.0 is out of range"),
    (dict(num_generations=1), "run 1: num_generations = 1"),
    (dict(completions_per_step=100), "run 1: num_generations = 8 does not divide completions_per_step = 100"),
    (dict(validation_size=4500), "validation_size"),
    (dict(eval_problems=501), "eval_problems"),
    (dict(model_name_or_path="/nope"), "model_name_or_path"),
    (dict(dataset_path="/nope.jsonl"), "dataset_path"),
    (dict(prompt_weightings="none,hardest"), "'hardest' is unknown"),
    (dict(prompt_weightings="safe_step"), "run 1: prompt_weighting 'safe_step' weighs Dr. GRPO's advantages"),
    (dict(optimizer="adamw,lion"), "parameter 'optimizer' = 'adamw,lion': 'lion' is unknown"),
    (dict(lr_schedules="cosine,linear"), "parameter 'lr_schedules' = 'cosine,linear': 'linear' is unknown"),
    (dict(run_steps="100,0"), r"parameter 'run_steps' = '100,0': 0 is out of range: allowed 1 ≤ steps"),
    (dict(run_steps="100,x"), "parameter 'run_steps' = '100,x': 'x' is not a int"),
    (dict(loss_types="grpo", scale_rewards="group", learning_rates="1e-4,2e-4,3e-4", run_steps="10,20"),
     "parameter 'run_steps' has 2 values for 3 runs: give 1 or 3"),
    (dict(loss_types="grpo", scale_rewards="group", optimizer="adamw,sgd", lr_schedules="constant,cosine,cosine"),
     "parameter 'optimizer' has 2 values for 3 runs"),
    (dict(tracked_prompts=8, tracked_runs="3"), "parameter 'tracked_runs' = '3': there are only 2 runs"),
    (dict(tracked_prompts=8, tracked_runs="1,0"), "parameter 'tracked_runs' = '1,0': runs are numbered from 1"),
    (dict(tracked_prompts=8, tracked_runs="first"), "parameter 'tracked_runs' = 'first': 'first' is not a int"),
    (dict(tracked_prompts=501, tracked_runs="1"),
     "parameter 'tracked_prompts' = 501 is out of range: allowed tracked_prompts ≤ validation_size = 500"),
    (dict(tracked_prompts=8, tracked_samples=1, tracked_runs="1"), r"run 1: tracked_prompts = 8, tracked_samples = 1"),
    (dict(importance_sampling_levels="token,episode"),
     "parameter 'importance_sampling_levels' = 'token,episode': 'episode' is unknown: allowed 'token', 'sequence'"),
    (dict(importance_sampling_levels="token,sequence,token"),
     "parameter 'loss_types' has 2 values for 3 runs"),
    (dict(num_iterations=2, tracked_prompts=8, tracked_runs="1"),
     r"run 1: num_iterations = 2 re-uses each batch.*tracked_prompts 0 \(got 8\)"),
    (dict(epsilon=1.0), "run 1: epsilon = 1.0"),
    (dict(pass_problems=501),
     "parameter 'pass_problems' = 501 is out of range: allowed pass_problems ≤ validation_size = 500"),
])
def test_experiment_config_rejects_bad_settings(change, message):
    with pytest.raises(ValueError, match=message):
        _config(**change).check()


GOOD_LINE = b'{"question": "q", "answer": "#### 1"}\n'


@pytest.mark.parametrize("content, message", [
    (b"\x7fELF\x02\x01\x01\x00\xff\xfe\x00\x00", ":1: not valid UTF-8 (byte 0xff"),  # a binary file
    (GOOD_LINE * 2 + b'{"question": "caf\xe9", "answer": "#### 1"}\n', ":3: not valid UTF-8 (byte 0xe9"),
    (b"", ": no problems in the file"),
    (GOOD_LINE + b"{not json\n", ":2: not valid JSON"),
])
def test_check_reads_the_whole_dataset(tmp_path, content, message):
    """A bad jsonl is refused before the notebook's kernel starts, in one line naming parameter, file and line."""
    path = tmp_path / "data.jsonl"
    path.write_bytes(content)
    with pytest.raises(ValueError) as error:
        _config(dataset_path=str(path)).check()
    assert str(error.value).startswith(f"parameter 'dataset_path' = {str(path)!r}: {path}{message}")
    assert "\n" not in str(error.value)


def test_check_counts_the_dataset_problems(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(GOOD_LINE * 3)
    with pytest.raises(ValueError, match="'validation_size' = 500: the dataset .* has only 3 problems"):
        _config(dataset_path=str(path)).check()


@pytest.mark.parametrize("config, message", [
    ({"model_type": "t5"}, "config.json names model_type 't5', which transformers .* cannot load as a causal"),
    ({"model_type": "no-such-arch"}, "config.json names model_type 'no-such-arch', which transformers .* does not"),
    ('{"model_type": ', r"config.json: not valid JSON \(Expecting value, line 1\)"),
    ({"vocab_size": 258}, "config.json: no 'model_type'"),
])
def test_check_refuses_a_model_folder_transformers_cannot_load(tmp_path, tiny_model, tokenizer, config, message):
    folder = lm_model.save_model(tiny_model, tokenizer, tmp_path / "model")
    _config(model_name_or_path=str(folder)).check()  # the folder as saved passes
    (folder / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    prefix = re.escape(f"parameter 'model_name_or_path' = {str(folder)!r}: {folder}/")
    with pytest.raises(ValueError, match=prefix + message):
        _config(model_name_or_path=str(folder)).check()


def test_run_lists_broadcast():
    runs = _config(loss_types="grpo,dr_grpo,dapo", scale_rewards="group", learning_rates="1e-4,2e-4,3e-4").run_configs()
    assert [(r.loss_type, r.scale_rewards, r.learning_rate) for r in runs] == [
        ("grpo", "group", 1e-4), ("dr_grpo", "group", 2e-4), ("dapo", "group", 3e-4)]
    weighted = _config(loss_types="dr_grpo", scale_rewards="none", prompt_weightings="none,safe_step").run_configs()
    assert [r.prompt_weighting for r in weighted] == ["none", "safe_step"]
    assert experiment.run_label(SimpleNamespace(config=weighted[1])).endswith("/ safe_step weights")


def test_run_configs_give_each_run_its_optimizer_schedule_length_and_tracking():
    config = _config(loss_types="dr_grpo", scale_rewards="none", learning_rates="2e-3,5e-4,0.3",
                     optimizer="adamw,adamw,sgd", lr_schedules="cosine,constant,cosine", lr_warmup_steps=10,
                     run_steps="100,80,100", tracked_prompts=32, tracked_samples=16, tracked_runs="3")
    runs = config.run_configs()
    assert [(r.optimizer, r.lr_schedule, r.steps, r.learning_rate, r.tracked_prompts) for r in runs] == [
        ("adamw", "cosine", 100, 2e-3, 0), ("adamw", "constant", 80, 5e-4, 0), ("sgd", "cosine", 100, 0.3, 32)]
    assert all((r.lr_warmup_steps, r.tracked_samples, r.loss_type, r.scale_rewards, r.tracking) ==
               (10, 16, "dr_grpo", "none", "measured") for r in runs)
    assert config.tracked_run_numbers() == [3]
    # one value broadcasts; no run_steps: every run takes 'steps'; tracked_runs picks several runs
    runs = _config(optimizer="sgd", lr_schedules="cosine", steps=7, tracked_prompts=4, tracked_runs="2,1").run_configs()
    assert [(r.optimizer, r.lr_schedule, r.steps, r.tracked_prompts) for r in runs] == [("sgd", "cosine", 7, 4)] * 2
    # no tracked prompts, or no tracked runs: nothing is tracked (and tracked_runs is not read)
    for change in (dict(tracked_prompts=0, tracked_runs="1,2"), dict(tracked_prompts=8, tracked_runs=""),
                   dict(tracked_prompts=0, tracked_runs="9")):
        config = _config(**change)
        assert config.tracked_run_numbers() == [] and [r.tracked_prompts for r in config.run_configs()] == [0, 0]


def test_run_configs_carry_the_ratio_settings_and_the_pass_counts():
    """The defaults keep the earlier runs (token ratio, one update per batch, measured tracking, no pass counts);
    a comma list gives each run its level (GRPO, GSPO, GSPO-N); num_iterations > 1 turns the tracking off;
    epsilon_high 0 is TRL's None (the same as epsilon); sequence-level runs take the sequence clip range."""
    default = _config().run_configs()
    assert all((r.importance_sampling_level, r.num_iterations, r.epsilon, r.epsilon_high, r.tracking,
                r.pass_problems) == ("token", 1, 0.2, None, "measured", 0) for r in default)
    config = _config(loss_types="grpo", scale_rewards="group", importance_sampling_levels="token,sequence,sequence",
                     advantage_filters="all,all,negative", num_iterations=2, epsilon=0.1, epsilon_high=0.3,
                     sequence_epsilon=3e-4, sequence_epsilon_high=0.0, pass_problems=32, pass_samples=256)
    config.check()
    runs = config.run_configs()
    assert [(r.importance_sampling_level, r.advantage_filter) for r in runs] == [
        ("token", "all"), ("sequence", "all"), ("sequence", "negative")]
    assert all((r.num_iterations, r.tracking, r.pass_problems, r.pass_samples) == (2, "off", 32, 256) for r in runs)
    assert [(r.epsilon, r.epsilon_high) for r in runs] == [(0.1, 0.3), (3e-4, None), (3e-4, None)]
    labels = [experiment.run_label(SimpleNamespace(config=r)) for r in runs]
    assert labels == ["grpo / group / lr 0.0003", "grpo / group / lr 0.0003 / GSPO",
                      "grpo / group / lr 0.0003 / GSPO / negative only"]


def test_grpo_seed_list_is_disjoint_across_book_seeds():
    assert experiment.grpo_seed_list(0, 3) == [0, 1, 2] and experiment.grpo_seed_list(2, 3) == [6, 7, 8]
    assert experiment.grpo_seed_list(5, 1) == [5]  # one GRPO seed: the book's seed itself
    seen = [s for seed in range(10) for s in experiment.grpo_seed_list(seed, 4)]
    assert sorted(seen) == list(range(40))


def test_run_label_names_only_what_differs_from_the_papers_runs():
    base = replace(_config().run_configs()[0], learning_rate=3e-4)
    label = lambda **change: experiment.run_label(SimpleNamespace(config=replace(base, **change)))  # noqa: E731
    assert label() == "grpo / group / lr 0.0003"
    assert label(optimizer="sgd") == "grpo / group / lr 0.0003 / sgd"
    assert label(lr_schedule="cosine") == "grpo / group / lr 0.0003 / cosine"
    assert label(loss_type="dr_grpo", scale_rewards="none", learning_rate=0.3, optimizer="sgd", lr_schedule="cosine",
                 prompt_weighting="safe_step", advantage_filter="negative") == (
        "dr_grpo / none / lr 0.3 / sgd / cosine / safe_step weights / negative only")


def test_run_seeds_runs_every_run_per_seed_tracked_first_and_assembles_them_in_run_order(monkeypatch):
    """Without training: each job's run is a marker of its (seed, config); the calls come in job order."""
    calls = []

    def fake_run_one(job):
        folder, train, validation, run_config, seed, device, threads, progress = job
        calls.append((seed, run_config.learning_rate, run_config.tracked_prompts))
        return SimpleNamespace(config=run_config, seed=seed, threads=threads, folder=folder)

    monkeypatch.setattr(experiment, "_run_one", fake_run_one)
    config = _config(loss_types="grpo", scale_rewards="group", learning_rates="1e-4,2e-4,3e-4", tracked_prompts=4,
                     tracked_runs="3,2", workers=1)
    runs = experiment.run_seeds(config, "start", [], [], [6, 7], "cpu")
    # the tracked runs of the first seed start first; then the rest in (seed, run) order
    assert calls == [(6, 2e-4, 4), (6, 3e-4, 4), (6, 1e-4, 0), (7, 1e-4, 0), (7, 2e-4, 0), (7, 3e-4, 0)]
    assert list(runs) == [6, 7]
    for seed, seed_runs in runs.items():
        assert [r.seed for r in seed_runs] == [seed] * 3 and [r.folder for r in seed_runs] == ["start"] * 3
        assert [r.config.learning_rate for r in seed_runs] == [1e-4, 2e-4, 3e-4]  # run order
        assert all(r.threads == 0 for r in seed_runs)  # one worker: the caller's threads
    # the second seed is the first's runs, untracked
    assert [replace(r.config, tracked_prompts=0) for r in runs[6]] == [r.config for r in runs[7]]
    assert [r.config.tracked_prompts for r in runs[6]] == [0, 4, 4]
    # run_all: the runs of one seed, in run order, tracked as the first seed
    calls.clear()
    single = experiment.run_all(config, "start", [], [], 3, "cpu")
    assert [(r.seed, r.config.learning_rate, r.config.tracked_prompts) for r in single] == [
        (3, 1e-4, 0), (3, 2e-4, 4), (3, 3e-4, 4)]
    assert [c[1] for c in calls] == [2e-4, 3e-4, 1e-4]


def test_a_finished_run_is_served_from_the_cache_until_what_determines_it_changes(monkeypatch, tmp_path, capsys):
    """The book's second execution reads its GRPO runs instead of training again: the same checkpoint, problems,
    settings and seed give the cached run; a changed seed, setting, problem or checkpoint file trains again; a
    damaged entry is reported and trained again; ``cache=False`` always trains."""
    import pandas as pd

    from rlvr_dynamics.lm import grpo

    monkeypatch.setenv(files.CACHE_ENV, str(tmp_path / "cache"))
    calls = []

    def fake_run_one(job):
        folder, train, validation, run_config, seed, device, threads, progress = job
        calls.append((seed, run_config.learning_rate))
        return grpo.GRPORun(run_config, pd.DataFrame({"step": [1], "reward": [seed / 10]}),
                            pd.DataFrame({"step": [0], "accuracy": [run_config.learning_rate]}), seconds=1.5)

    monkeypatch.setattr(experiment, "_run_one", fake_run_one)
    checkpoint = tmp_path / "warm_model"
    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    config = _config(loss_types="grpo", scale_rewards="group", learning_rates="1e-4,3e-4", workers=1)
    train, validation = lm_task.generate_problems("arithmetic", 6, seed=0), lm_task.generate_problems("arithmetic", 3,
                                                                                                    seed=1)
    first = experiment.run_seeds(config, checkpoint, train, validation, [0, 1], "cpu")
    assert len(calls) == 4 and len(list((tmp_path / "cache" / "lm-runs").glob("*.pkl"))) == 4
    again = experiment.run_seeds(config, checkpoint, train, validation, [0, 1], "cpu")
    assert len(calls) == 4  # nothing trained
    for seed in (0, 1):
        for cached, fresh in zip(again[seed], first[seed], strict=True):
            assert cached.config == fresh.config and cached.steps.equals(fresh.steps) and cached.seconds == 1.5
    experiment.run_seeds(config, checkpoint, train, validation, [2], "cpu")  # a new seed
    assert calls[4:] == [(2, 1e-4), (2, 3e-4)]
    experiment.run_seeds(replace(config, learning_rates="1e-4,2e-4"), checkpoint, train, validation, [0], "cpu")
    assert calls[6:] == [(0, 2e-4)]  # only the changed run
    experiment.run_seeds(config, checkpoint, train[:5], validation, [0], "cpu")  # other problems
    (checkpoint / "model.safetensors").write_bytes(b"other weights")
    experiment.run_seeds(config, checkpoint, train, validation, [0], "cpu")  # another checkpoint
    assert len(calls) == 11
    key, = experiment.run_cache_keys(checkpoint, train, validation, [(config.run_configs()[0], 0)], "cpu",
                                     torch.get_num_threads())
    entry = tmp_path / "cache" / "lm-runs" / f"{key}.pkl"
    entry.write_bytes(b"not a pickle")  # the first run of seed 0 from the new checkpoint
    for _ in range(2):
        experiment.run_seeds(config, checkpoint, train, validation, [0], "cpu")
        experiment.run_seeds(config, checkpoint, train, validation, [1], "cpu")
    assert "is damaged" in capsys.readouterr().err
    assert calls[11:] == [(0, 1e-4), (1, 1e-4), (1, 3e-4)]  # the damaged one once, seed 1 anew
    experiment.run_seeds(config, checkpoint, train, validation, [0], "cpu", cache=False)
    assert len(calls) == 16


def test_with_workers_a_single_missing_run_still_trains_in_a_worker(monkeypatch, tmp_path):
    """_run_one sets the CPU threads of its process: with ``workers`` > 1 a run the cache lacks trains in the
    pool even when it is the only one, never in the caller (whose threads it would change)."""
    import concurrent.futures

    import pandas as pd

    from rlvr_dynamics.lm import grpo

    monkeypatch.setenv(files.CACHE_ENV, str(tmp_path / "cache"))
    pooled = []

    class InlinePool:  # the pool's interface, run here, so that the fake run needs no pickling
        def __init__(self, workers, mp_context=None):
            pooled.append(workers)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def map(self, function, jobs):
            return [function(job) for job in jobs]

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", InlinePool)
    monkeypatch.setattr(experiment, "_run_one", lambda job: grpo.GRPORun(job[3], pd.DataFrame(), pd.DataFrame(), 1.0))
    checkpoint = tmp_path / "warm_model"
    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    config = _config(loss_types="grpo", scale_rewards="group", learning_rates="1e-4,3e-4", workers=2)
    problems = lm_task.generate_problems("arithmetic", 4, seed=0)
    threads = torch.get_num_threads()
    experiment.run_seeds(config, checkpoint, problems, problems, [0], "cpu")
    experiment.run_seeds(replace(config, learning_rates="1e-4,2e-4"), checkpoint, problems, problems, [0], "cpu")
    assert pooled == [2, 2] and torch.get_num_threads() == threads


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


def _fake_warmup(calls):
    """A warm-up that trains nothing: the cache logic is what is tested, in a fraction of a second."""
    def warmup(*args):
        calls.append(args)
        return WarmupResult(steps=25, reached_target=True, history=[(25, 0.5)])
    return warmup


def _truncate(path):
    path.write_bytes(path.read_bytes()[:1000])


def _drop_field(path, name):
    record = json.loads(path.read_text())
    del record[name]
    path.write_text(json.dumps(record))


@pytest.mark.parametrize("damage, what", [
    (lambda entry: (entry / "warmup.json").write_text('{"steps": 2'), "warmup.json is not valid JSON: "),
    (lambda entry: _drop_field(entry / "warmup.json", "steps"),
     "warmup.json: field 'steps' is missing or not of type int"),
    (lambda entry: _drop_field(entry / "warmup.json", "digests"), "warmup.json: field 'digests' is missing"),
    (lambda entry: (entry / "warmup.json").unlink(), "warmup.json is missing"),
    (lambda entry: shutil.rmtree(entry / "model"), "model/ is missing"),
    (lambda entry: (entry / "model" / "config.json").unlink(), "model/config.json is missing"),
    (lambda entry: _truncate(entry / "model" / "model.safetensors"),
     "model/model.safetensors differs from its sha256 in warmup.json"),
])
def test_a_damaged_warmup_cache_entry_is_reported_and_computed_again(tmp_path, monkeypatch, capsys, damage, what):
    monkeypatch.setenv(files.CACHE_ENV, str(tmp_path / "cache"))
    calls = []
    monkeypatch.setattr(experiment, "supervised_warmup", _fake_warmup(calls))
    config = _config(problems=120, validation_size=20, eval_problems=16)
    train, validation = experiment.load_problems(config, 0)
    experiment.prepare_model(config, train, validation, 0, "cpu", tmp_path / "a")
    (entry,) = (tmp_path / "cache" / "lm-warmup").iterdir()
    damage(entry)
    folder, result, count = experiment.prepare_model(config, train, validation, 0, "cpu", tmp_path / "b")
    assert len(calls) == 2  # warmed up again
    err = capsys.readouterr().err
    assert err.startswith(f"warm-up cache entry {entry} is damaged ({what}") and err.count("\n") == 1
    assert err.endswith("): discarding it and warming up again\n")
    assert experiment.read_warmup_entry(entry) == (result, count)  # rewritten whole
    experiment.prepare_model(config, train, validation, 0, "cpu", tmp_path / "c")
    assert len(calls) == 2 and capsys.readouterr().err == ""  # and used from then on
