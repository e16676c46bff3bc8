"""Language-model pipeline (Section 5.2): task, reward, tokenizer, model loading, scoring, GRPO
tracking and the Figure-2 analysis. Expected values are computed by hand or by a simpler route."""

import json
import math
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import special

from rlvr_dynamics import figure2
from rlvr_dynamics.lm import grpo, model as lm_model, scoring, task as lm_task
from rlvr_dynamics.lm.warmup import WarmupConfig, supervised_warmup

# ------------------------------------------------------------------ task, extractor, reward, jsonl


@pytest.mark.parametrize("text, expected", [
    ("#### 72", 72), ("Natalia sold 48/2 = 24 clips.\n#### 72", 72), ("#### 1,234", 1234),
    ("so 12+7=19\n#### 19", 19), ("The answer is $42.", 42), ("-7", -7), ("3.50 dollars", Fraction(7, 2)),
    ("first 3 then #### 5 and #### 6", 6), ("82", 82), ("8 2", 2), ("no number", None), ("", None),
    ("#### -3", -3),
])
def test_extract_answer(text, expected):
    assert lm_task.extract_answer(text) == (None if expected is None else Fraction(expected))


def test_correctness_reward_compares_numbers_exactly():
    rewards = lm_task.correctness_reward(["82", " 82<junk", "#### 1,000", "81", "", "7/2"], ["82", "82", "1000", "82",
                                                                                            "0", "3.5"])
    assert rewards == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]  # "7/2" reads as the last number 2
    with pytest.raises(ValueError, match="2 completions but 1 reference"):
        lm_task.correctness_reward(["1", "2"], ["1"])


@pytest.mark.parametrize("task", lm_task.TASKS)
def test_generated_problems_are_seeded_distinct_and_correct(task):
    first = lm_task.generate_problems(task, 300, seed=3)
    assert first == lm_task.generate_problems(task, 300, seed=3)
    assert first != lm_task.generate_problems(task, 300, seed=4)
    assert len({p.question for p in first}) == 300
    assert all(lm_task.extract_answer(p.solution) == p.answer for p in first)
    if task == "arithmetic":
        assert all(sum(int(x) for x in p.question[:-1].split("+")) == p.answer for p in first)
        assert all(p.prompt == p.question for p in first)
    else:
        assert all(p.solution.splitlines()[-1] == f"#### {p.answer}" for p in first)
        assert all(p.prompt.startswith("Q: ") and p.prompt.endswith("\nA: ") for p in first)
    train, validation = lm_task.train_validation_split(first, 50)
    assert len(train) == 250 and len(validation) == 50
    assert not {p.question for p in train} & {p.question for p in validation}


def test_bad_task_arguments():
    with pytest.raises(ValueError, match="task 'algebra' is unknown"):
        lm_task.generate_problems("algebra", 10, 0)
    with pytest.raises(ValueError, match="at most 50"):
        lm_task.generate_problems("arithmetic", 51, 0, digits=1)
    with pytest.raises(ValueError, match="validation_size = 10 is out of range"):
        lm_task.train_validation_split(lm_task.generate_problems("arithmetic", 10, 0), 10)


def test_gsm8k_jsonl_round_trip(tmp_path):
    problems = lm_task.generate_problems("word", 20, seed=1)
    path = lm_task.write_gsm8k_jsonl(problems, tmp_path / "gsm8k.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert set(records[0]) == {"question", "answer"}
    assert lm_task.read_gsm8k_jsonl(path) == problems


@pytest.mark.parametrize("lines, message", [
    (['{"question": "q", "answer": "#### 1"}', "{not json", ""], ":2: not valid JSON"),
    (['{"question": "q", "answer": "#### 1"}', "", '["a list"]'], ":3: expected a JSON object"),
    (['{"question": "q"}'], ":1: field 'answer' is missing"),
    (['{"question": "", "answer": "#### 1"}'], ":1: field 'question' is missing or not a non-empty string"),
    (['{"question": "q", "answer": 5}'], ":1: field 'answer'"),
    (['{"question": "q", "answer": "#### 1"}', '{"question": "q", "answer": "the answer is 3"}'],
     ":2: the answer has no final '#### <number>' line"),
    (["", "  "], "no problems in the file"),
])
def test_malformed_jsonl_names_the_line(tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=message):
        lm_task.read_gsm8k_jsonl(path)


def test_missing_jsonl_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset_path .* is not a file"):
        lm_task.read_gsm8k_jsonl(tmp_path / "absent.jsonl")


# ------------------------------------------------------------------ tokenizer and model


@pytest.fixture(scope="module")
def tokenizer():
    return lm_model.byte_tokenizer()


@pytest.fixture(scope="module")
def tiny_model(tokenizer):
    return lm_model.build_model("ci", tokenizer, seed=0)


def test_byte_tokenizer_round_trips_and_pads_left(tokenizer):
    text = "37+45=82 Ünï €\n#### 9"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids == list(text.encode("utf-8"))  # token id = byte value
    assert tokenizer.decode(ids) == text
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, len(tokenizer)) == (256, 257, 258)
    batch = tokenizer(["1+2=", "123+45="], padding=True, add_special_tokens=False)
    assert batch["input_ids"][0][:3] == [256] * 3 and batch["attention_mask"][0] == [0, 0, 0, 1, 1, 1, 1]


def test_build_model_is_seeded_and_leaves_the_global_rng_alone(tokenizer):
    state = torch.random.get_rng_state()
    a, b = (lm_model.build_model("ci", tokenizer, seed=5) for _ in range(2))
    c = lm_model.build_model("ci", tokenizer, seed=6)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(next(a.parameters()), next(c.parameters()))
    assert a.config.model_type == "qwen2" and 100_000 < lm_model.parameter_count(a) < 200_000
    with pytest.raises(ValueError, match="model preset 'huge' is unknown"):
        lm_model.build_model("huge", tokenizer, seed=0)


def test_saved_model_loads_from_a_local_folder_with_identical_outputs(tiny_model, tokenizer, tmp_path):
    folder = lm_model.save_model(tiny_model, tokenizer, tmp_path / "model")
    loaded, loaded_tokenizer = lm_model.load_model(folder)
    ids = torch.tensor([list(b"12+34=")])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, tiny_model(ids).logits)
    assert loaded_tokenizer("7+8=")["input_ids"] == tokenizer("7+8=")["input_ids"]
    assert loaded_tokenizer.padding_side == "left"


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a local model folder"):
        lm_model.load_model(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        lm_model.load_model(tmp_path / "empty")


# ------------------------------------------------------------------ scoring


def _sample_batch(model, tokenizer, prompts, seed=0, length=6):
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    generator = torch.Generator().manual_seed(seed)
    ids, mask = scoring.sample_completions(model, encoded["input_ids"], encoded["attention_mask"], length,
                                           tokenizer.eos_token_id, tokenizer.pad_token_id, generator)
    return encoded, ids, mask


def test_padded_batch_log_probs_match_each_prompt_alone(tiny_model, tokenizer):
    prompts = ["1+2=", "123+456=", "Q: Ava has 3 pens.\nA: "]
    encoded, ids, mask = _sample_batch(tiny_model, tokenizer, prompts)
    with torch.no_grad():
        batched = scoring.completion_token_log_probs(tiny_model, encoded["input_ids"], encoded["attention_mask"], ids,
                                                     mask)
        for row, prompt in enumerate(prompts):
            alone = tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
            length = int(mask[row].sum())
            single = scoring.completion_token_log_probs(tiny_model, alone["input_ids"], alone["attention_mask"],
                                                        ids[row:row + 1, :length], mask[row:row + 1, :length])
            torch.testing.assert_close(batched[row, :length], single[0], rtol=1e-5, atol=1e-5)
            assert torch.all(batched[row, length:] == 0)
            # TRL scores with input_ids + attention_mask only (no position ids): rotary positions are
            # relative, so the left padding does not change the completion's log-probs either.
            full_ids = torch.cat([encoded["input_ids"][row:row + 1], ids[row:row + 1]], 1)
            full_mask = torch.cat([encoded["attention_mask"][row:row + 1], mask[row:row + 1]], 1)
            logits = tiny_model(input_ids=full_ids, attention_mask=full_mask).logits[0, -ids.shape[1] - 1:-1]
            trl_style = torch.log_softmax(logits, -1).gather(-1, ids[row].unsqueeze(-1)).squeeze(-1)
            torch.testing.assert_close(trl_style[:length], single[0], rtol=1e-5, atol=1e-5)


def test_sequence_log_prob_equals_a_token_by_token_loop(tiny_model, tokenizer):
    encoded, ids, mask = _sample_batch(tiny_model, tokenizer, ["5+5="])
    with torch.no_grad():
        total = scoring.sequence_log_probs(tiny_model, encoded["input_ids"], encoded["attention_mask"], ids, mask)
        context, expected = encoded["input_ids"][0].tolist(), 0.0
        for token in ids[0, :int(mask[0].sum())].tolist():
            logits = tiny_model(torch.tensor([context])).logits[0, -1].double()
            expected += float(torch.log_softmax(logits, -1)[token])
            context.append(token)
    assert math.isclose(float(total), expected, rel_tol=1e-5)


def test_sampling_is_seeded_and_masks_after_the_first_eos(tiny_model, tokenizer):
    prompts = ["1+1="] * 64
    _, ids, mask = _sample_batch(tiny_model, tokenizer, prompts, seed=7, length=5)
    _, ids_again, _ = _sample_batch(tiny_model, tokenizer, prompts, seed=7, length=5)
    assert torch.equal(ids, ids_again)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    for row, row_mask in zip(ids.tolist(), mask.tolist()):
        if eos in row:
            end = row.index(eos)
            assert row_mask == [1] * (end + 1) + [0] * (len(row) - end - 1)
            assert all(t == pad for t in row[end + 1:])
        else:
            assert row_mask == [1] * len(row)  # truncated: every token counts
    with pytest.raises(ValueError, match="temperature"):
        scoring.sample_completions(tiny_model, ids, mask, 2, eos, pad, torch.Generator(), temperature=0)


# ------------------------------------------------------------------ the gap quantities


def test_reward_scale_factors_by_hand():
    rewards = torch.tensor([[1.0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    group_std = torch.tensor([0.5, 1 / math.sqrt(3), 0.0])  # unbiased: J(1−J)·G/(G−1), square-rooted
    group_std = torch.tensor([math.sqrt(0.25 * 0.75 * 4 / 3), math.sqrt(0.25 * 4 / 3), 0.0])
    cov = torch.tensor([0.1875, 0.25, 0.0], dtype=torch.float64)
    torch.testing.assert_close(grpo.reward_scale_factors(rewards, "none"), cov)
    torch.testing.assert_close(grpo.reward_scale_factors(rewards, "group"), cov / (group_std.double() + 1e-4))
    batch_std = rewards.double().flatten().std()
    torch.testing.assert_close(grpo.reward_scale_factors(rewards, "batch"), cov / (batch_std + 1e-4))
    with pytest.raises(ValueError, match="scale_rewards 'std' is unknown"):
        grpo.reward_scale_factors(rewards, "std")


def test_length_factor_by_hand():
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert grpo.length_factor(mask, "grpo", 8) == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert grpo.length_factor(mask, "dr_grpo", 8) == pytest.approx(1 / 8)
    assert grpo.length_factor(mask, "dapo", 8) == grpo.length_factor(mask, "bnpo", 8) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="loss_type 'ppo' is unknown"):
        grpo.length_factor(mask, "ppo", 8)


def test_outcome_weights_by_hand():
    rewards = torch.tensor([1.0, 0, 0, 1, 1, 1, 0, 0, 0])
    groups = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])  # prompt 0 mixed (1 of 3), 1 all right, 2 all wrong
    w_plus, w_minus, mixed = grpo.outcome_weights(rewards, groups)
    assert mixed.tolist() == [0]
    assert w_plus.tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert w_minus.tolist() == [0, 0.5, 0.5, 0, 0, 0, 0, 0, 0]
    rewards = torch.tensor([1.0, 0, 1, 1, 0, 0])
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    w_plus, w_minus, mixed = grpo.outcome_weights(rewards, groups)
    assert w_plus.tolist() == pytest.approx([0.25, 0, 0.25, 0.5, 0, 0])  # (1/2 per row)/2 prompts; (1/1)/2
    assert w_minus.tolist() == pytest.approx([0, 0.5, 0, 0, 0.25, 0.25])


@pytest.mark.parametrize("scale", grpo.SCALE_REWARDS)
def test_group_direction_identity(tiny_model, tokenizer, scale):
    prompts = ["12+30="] * 6
    encoded, ids, mask = _sample_batch(tiny_model, tokenizer, prompts, seed=1)
    rewards = torch.tensor([1.0, 0, 0, 1, 0, 0])  # any labelling with both outcomes: the identity is algebra
    left, right = grpo.group_identity_sides(tiny_model, encoded["input_ids"], encoded["attention_mask"], ids, mask,
                                            rewards, scale)
    assert float((left - right).norm() / right.norm()) < 1e-5
    with pytest.raises(ValueError, match="both a correct and an incorrect"):
        grpo.group_identity_sides(tiny_model, encoded["input_ids"], encoded["attention_mask"], ids, mask,
                                  torch.ones(6), scale)


@pytest.mark.parametrize("change, message", [
    (dict(num_generations=1), "num_generations = 1: GRPO needs at least 2"),
    (dict(num_generations=3), "num_generations = 3 does not divide completions_per_step = 256"),
    (dict(loss_type="ppo"), "loss_type 'ppo' is unknown"),
    (dict(scale_rewards="std"), "scale_rewards 'std' is unknown"),
    (dict(optimizer="lion"), "optimizer 'lion' is unknown"),
    (dict(tracking="all"), "tracking 'all' is unknown"),
    (dict(steps=0), "steps = 0: must be ≥ 1"),
    (dict(lr_warmup_steps=-1), "lr_warmup_steps = -1"),
    (dict(learning_rate=0.0), "learning_rate and temperature must be > 0"),
    (dict(advantage_filter="sideways"), "advantage_filter 'sideways' is unknown"),
])
def test_run_config_rejects_bad_settings(change, message):
    with pytest.raises(ValueError, match=message):
        replace(grpo.GRPORunConfig(), **change).check()


# ------------------------------------------------------------------ GRPO through TRL, with tracking


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


def _short_run(folder, arithmetic, **change):
    train, validation = arithmetic
    config = replace(grpo.GRPORunConfig(steps=4, completions_per_step=32, num_generations=4, max_completion_length=4,
                                        per_prompt_every=2, eval_every=2, eval_problems=16, eval_samples=2), **change)
    model, tokenizer = lm_model.load_model(folder)
    return grpo.run_grpo(model, tokenizer, train, validation, config, seed=3)


def test_grpo_run_records_every_step_and_the_gap_readings_agree(warm_folder, arithmetic):
    run = _short_run(warm_folder, arithmetic)
    steps = run.steps
    assert steps["step"].tolist() == [1, 2, 3, 4]
    assert run.evals["step"].tolist() == [0, 2, 4]
    for column in ("grad_norm", "gap_estimate", "gap_norm", "g_plus_norm", "g_minus_norm", "step_length",
                   "alignment", "alignment_cosine", "gradient_gap_cosine", "seconds"):
        assert steps[column].notna().all(), column
    assert steps["prompt_alignment_mean"].notna().tolist() == [False, True, False, True]
    # (a) inverts the batch relation, so it lands near the measured ‖g⁺ − g⁻‖ (not equal: token normalization).
    assert ((steps["gap_estimate"] / steps["gap_norm"]).between(0.5, 2)).all()
    assert (steps["alignment_cosine"].abs() <= 1 + 1e-9).all() and (steps["gradient_gap_cosine"] > 0.5).all()
    assert np.allclose(steps["alignment"], steps["alignment_cosine"] * steps["gap_norm"])
    # The step length is the size of the actual update: AdamW's first step moves each weight by ≈ lr.
    cumulative = run.cumulative()
    assert cumulative["step"].tolist() == [0, 2, 4] and (cumulative.iloc[0][["estimate", "measured"]] == 0).all()
    assert (cumulative["estimate"].diff().dropna() > 0).all()


def test_grpo_run_is_deterministic_and_tracking_does_not_change_training(warm_folder, arithmetic):
    measured = _short_run(warm_folder, arithmetic, steps=3)
    again = _short_run(warm_folder, arithmetic, steps=3)
    untracked = _short_run(warm_folder, arithmetic, steps=3, tracking="off")
    columns = ["reward", "grad_norm", "gap_norm", "alignment"]
    pd.testing.assert_frame_equal(measured.steps[columns], again.steps[columns])
    assert measured.steps["reward"].tolist() == untracked.steps["reward"].tolist()
    pd.testing.assert_frame_equal(measured.evals, untracked.evals)
    assert "gap_estimate" not in untracked.steps and "gap_norm" not in untracked.steps


@pytest.mark.parametrize("loss_type, scale", [("dr_grpo", "none"), ("dapo", "batch"), ("bnpo", "group")])
def test_every_loss_type_and_scaling_runs(warm_folder, arithmetic, loss_type, scale):
    run = _short_run(warm_folder, arithmetic, steps=2, loss_type=loss_type, scale_rewards=scale, tracking="estimate")
    assert run.steps["gap_estimate"].notna().all() and run.meta["config"]["loss_type"] == loss_type


# ------------------------------------------------------------------ the chapter: config, local paths, analysis


def _config(**change):
    return replace(figure2.Figure2Config(**figure2.PRESETS["ci"]), **change)


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
def test_chapter_config_rejects_bad_settings(change, message):
    with pytest.raises(ValueError, match=message):
        _config(**change).check()


def test_run_lists_broadcast():
    runs = _config(loss_types="grpo,dr_grpo,dapo", scale_rewards="group", learning_rates="1e-4,2e-4,3e-4").run_configs()
    assert [(r.loss_type, r.scale_rewards, r.learning_rate) for r in runs] == [
        ("grpo", "group", 1e-4), ("dr_grpo", "group", 2e-4), ("dapo", "group", 3e-4)]


def test_chapter_reads_a_local_jsonl_and_a_local_model_folder(tmp_path, tiny_model, tokenizer):
    path = lm_task.write_gsm8k_jsonl(lm_task.generate_problems("word", 40, seed=2), tmp_path / "train.jsonl")
    source = lm_model.save_model(tiny_model, tokenizer, tmp_path / "source")
    config = _config(dataset_path=str(path), model_name_or_path=str(source), validation_size=10, eval_problems=8,
                     warmup_target=0.0)
    config.check()
    train, validation = figure2.load_problems(config, seed=0)
    assert (len(train), len(validation)) == (30, 10) and train[0].prompt.startswith("Q: ")
    folder, warmup, count = figure2.prepare_model(config, train, validation, 0, "cpu", tmp_path / "start")
    assert warmup is None and count == lm_model.parameter_count(tiny_model)
    loaded, _ = lm_model.load_model(folder)
    assert all(torch.equal(p, q) for p, q in zip(loaded.parameters(), tiny_model.parameters()))
    with pytest.raises(ValueError, match="has only 40 problems"):
        figure2.load_problems(replace(config, validation_size=40, problems=100_000), seed=0)


def test_logistic_fit_recovers_known_parameters():
    gap = np.linspace(0, 10, 30)
    fit = figure2.logistic_fit(gap, special.expit(-1.5 + 0.4 * gap))
    assert fit["intercept"] == pytest.approx(-1.5, abs=1e-4) and fit["slope"] == pytest.approx(0.4, abs=1e-5)
    assert fit["r2"] == pytest.approx(1.0)


def test_relation_shape_verdicts():
    x = np.linspace(0, 1, 25)
    noise = np.random.default_rng(1).normal(0, 0.002, x.size)
    logistic_shape = figure2.relation_shape(x, special.expit(-4 + 8 * x) + noise)
    assert logistic_shape["verdict"] == "logistic"  # symmetric: zero quadratic term, but not a line
    assert logistic_shape["accuracy_curvature"][1] < 0 < logistic_shape["accuracy_curvature"][2]
    assert figure2.relation_shape(x, special.expit(-4 + 16 * np.sqrt(x)) + noise)["verdict"] == "concave"
    assert figure2.relation_shape(x, 0.3 + 0.4 * np.sqrt(x) + noise)["verdict"] == "concave"
    assert figure2.relation_shape(x, 0.4 + 0.1 * x + 20 * noise)["verdict"] == "linear within noise"
    c, low, high = figure2.curvature(x, 1 + 2 * x + 3 * x ** 2)
    assert c == pytest.approx(3) and low - 1e-9 <= 3 <= high + 1e-9
    assert figure2.nonlinearity_pvalue(x, 1 + 2 * x) == 1.0  # exact line: nothing to explain
    assert figure2.nonlinearity_pvalue(x, x ** 3 + noise) < 1e-6


def _fake_run(step_lengths, gaps, accuracy_every=2):
    steps = np.arange(1, len(step_lengths) + 1)
    frame = pd.DataFrame({"step": steps, "step_length": step_lengths, "gap_estimate": gaps, "gap_norm": gaps,
                          "alignment": 0.5 * np.asarray(gaps)})
    evals = pd.DataFrame({"step": np.arange(0, len(steps) + 1, accuracy_every)})
    evals["accuracy"] = np.linspace(0.3, 0.6, len(evals))
    return grpo.GRPORun(grpo.GRPORunConfig(steps=len(steps)), frame, evals, 0.0)


def test_cumulative_gap_and_relabelling_by_hand():
    run = _fake_run([1.0, 2.0, 1.0, 2.0], [1.0, 1.0, 3.0, 3.0])
    cumulative = run.cumulative()
    assert cumulative["estimate"].tolist() == [0, 3, 12]  # 1·1 + 2·1, then + 1·3 + 2·3
    assert cumulative["measured"].tolist() == [0, 1.5, 6]
    constant = figure2.step_relabelling(_fake_run([1.0] * 20, [2.0] * 20))
    assert constant["step_length_cv"] == 0 and constant["estimate_vs_step_r2"] == pytest.approx(1)
    growing = figure2.step_relabelling(_fake_run([1.0] * 20, list(np.geomspace(1, 1e4, 20))))
    assert growing["estimate_vs_step_r2"] < 0.8


@pytest.mark.parametrize("advantage_filter", grpo.ADVANTAGE_FILTERS)
def test_advantage_filter_keeps_only_its_sign_and_evaluates_entropy(warm_folder, arithmetic, advantage_filter):
    """GRPO-N ("negative") trains on negative advantages only; "positive" on positive ones."""
    run = _short_run(warm_folder, arithmetic, steps=3, advantage_filter=advantage_filter)
    steps = run.steps
    mixed = steps["mixed_prompts"] > 0
    assert mixed.any()
    if advantage_filter == "negative":
        assert (steps["advantage_max"] <= 0).all() and (steps.loc[mixed, "advantage_min"] < 0).all()
        assert steps["gap_estimate"].isna().all()  # (a) assumes every completion updates
    elif advantage_filter == "positive":
        assert (steps["advantage_min"] >= 0).all() and (steps.loc[mixed, "advantage_max"] > 0).all()
    else:
        assert (steps.loc[mixed, "advantage_min"] < 0).all() and (steps.loc[mixed, "advantage_max"] > 0).all()
        assert steps["gap_estimate"].notna().all()
    assert (steps["updating_fraction"] <= 1).all()
    assert run.evals["entropy"].between(0, math.log(258)).all()


def test_sampled_entropy_is_the_mean_token_entropy(tiny_model, tokenizer):
    problems = lm_task.generate_problems("arithmetic", 4, seed=1, digits=1)
    accuracy, entropy = scoring.sampled_accuracy_and_entropy(tiny_model, tokenizer, problems, 2, 3,
                                                             torch.Generator().manual_seed(0))
    again = scoring.sampled_accuracy(tiny_model, tokenizer, problems, 2, 3, torch.Generator().manual_seed(0))
    assert torch.equal(accuracy, again) and entropy.shape == (4,)
    assert (entropy > 0).all() and (entropy <= math.log(258) + 1e-9).all()


def test_warmup_checkpoint_is_cached_by_key(tmp_path, monkeypatch):
    monkeypatch.setenv(figure2.WARMUP_CACHE_ENV, str(tmp_path / "cache"))
    config = replace(figure2.Figure2Config(**figure2.PRESETS["ci"]), problems=120, validation_size=20,
                     warmup_target=0.01, warmup_max_steps=25, eval_problems=16)
    train, validation = figure2.load_problems(config, 0)
    folder, first, count = figure2.prepare_model(config, train, validation, 0, "cpu", tmp_path / "a")
    assert len(list((tmp_path / "cache" / "lm-warmup").iterdir())) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("the cached checkpoint should have been used")

    monkeypatch.setattr(figure2, "supervised_warmup", no_training)
    again, second, count_again = figure2.prepare_model(config, train, validation, 0, "cpu", tmp_path / "b")
    assert (second.steps, second.history, count_again) == (first.steps, first.history, count)
    assert (again / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    # another seed is another key; a local model or dataset is never cached (its content is not hashed)
    assert figure2.warmup_cache_key(config, 1, "cpu") != figure2.warmup_cache_key(config, 0, "cpu")
    assert figure2.warmup_cache_key(replace(config, dataset_path="x.jsonl"), 0, "cpu") is None
