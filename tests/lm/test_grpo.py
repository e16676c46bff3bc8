"""Tests of rlvr_dynamics.lm.grpo: the gap quantities by hand, the group-direction identity, and GRPO
through TRL with tracking."""

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from rlvr_dynamics.lm import grpo, scoring
from rlvr_dynamics.lm import model as lm_model


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
def test_group_direction_identity(sample_batch, tiny_model, tokenizer, scale):
    prompts = ["12+30="] * 6
    encoded, ids, mask = sample_batch(tiny_model, tokenizer, prompts, seed=1)
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
    (dict(prompt_weighting="hard_first"), "prompt_weighting 'hard_first' is unknown"),
    (dict(prompt_weighting="safe_step"), "it needs scale_rewards 'none', got 'group'"),
    (dict(lr_schedule="linear"), "lr_schedule 'linear' is unknown: allowed 'constant', 'cosine'"),
    (dict(tracked_prompts=-1), "tracked_prompts = -1, tracked_samples = 32: need tracked_prompts ≥ 0"),
    (dict(tracked_prompts=2, tracked_samples=1), "tracked_prompts = 2, tracked_samples = 1: .* tracked_samples ≥ 2"),
    (dict(tracked_prompts=2, tracking="estimate"), "tracked_prompts needs tracking 'measured'.*got 'estimate'"),
    (dict(importance_sampling_level="episode"),
     "importance_sampling_level 'episode' is unknown: allowed 'token', 'sequence'"),
    (dict(num_iterations=0), "num_iterations = 0: must be ≥ 1"),
    (dict(num_iterations=2), "num_iterations = 2 re-uses .* tracking 'off' \\(got 'measured'\\) and tracked_prompts 0"),
    (dict(num_iterations=2, tracking="off", tracked_prompts=2), "tracking 'off' .* tracked_prompts 0 \\(got 2\\)"),
    (dict(epsilon=0.0), "epsilon = 0.0: .* needs 0 < epsilon < 1"),
    (dict(epsilon=1.0), "epsilon = 1.0: .* needs 0 < epsilon < 1"),
    (dict(epsilon_high=0.0), "epsilon_high = 0.0: must be > 0"),
    (dict(pass_problems=-1), "pass_problems = -1, pass_samples = 256: need pass_problems ≥ 0"),
    (dict(pass_problems=4, pass_samples=0), "pass_problems = 4, pass_samples = 0: .* pass_samples ≥ 1"),
])
def test_run_config_rejects_bad_settings(change, message):
    with pytest.raises(ValueError, match=message):
        replace(grpo.GRPORunConfig(), **change).check()


def test_untracked_runs_accept_any_tracked_samples():
    replace(grpo.GRPORunConfig(), tracked_prompts=0, tracked_samples=1).check()  # no prompts: samples unused
    replace(grpo.GRPORunConfig(), pass_problems=0, pass_samples=0).check()  # no pass counts: samples unused
    replace(grpo.GRPORunConfig(), num_iterations=4, tracking="off", importance_sampling_level="sequence",
            epsilon=3e-4, epsilon_high=4e-4).check()  # GSPO's own clip range
    assert grpo.IMPORTANCE_LEVELS == ("token", "sequence")
    replace(grpo.GRPORunConfig(), tracked_prompts=4, tracked_samples=2, lr_schedule="cosine").check()


@pytest.mark.parametrize("schedule", grpo.LR_SCHEDULES)
def test_the_trainer_follows_the_lr_schedule(tokenizer, arithmetic, tmp_path, schedule):
    """Linear warm-up over 2 of 10 steps, then constant, or a cosine to 0 at the last step:
    cos(π·(k − 2)/8) halved and shifted, 1/2 at k = 6."""
    train, validation = arithmetic
    config = grpo.GRPORunConfig(steps=10, lr_warmup_steps=2, lr_schedule=schedule, learning_rate=1e-3,
                                completions_per_step=16, num_generations=4, max_completion_length=4)
    model = lm_model.build_model("ci", tokenizer, seed=0)
    trainer = grpo.build_trainer(model, tokenizer, train, validation, config, 0, "cpu", str(tmp_path))
    assert trainer.args.lr_scheduler_type == grpo.LR_SCHEDULES[schedule] == {"constant": "constant_with_warmup",
                                                                             "cosine": "cosine"}[schedule]
    trainer.create_optimizer_and_scheduler(num_training_steps=config.steps)
    factors = [trainer.lr_scheduler.lr_lambdas[0](k) for k in range(11)]
    after_warmup = [1.0] * 9 if schedule == "constant" else [0.5 * (1 + math.cos(math.pi * (k - 2) / 8))
                                                              for k in range(2, 11)]
    assert factors == pytest.approx([0.0, 0.5] + after_warmup, abs=1e-12)
    assert trainer.prompt_tracker is None
    with pytest.raises(ValueError, match="tracked_prompts = 17: the validation split has only 16 problems"):
        grpo.build_trainer(model, tokenizer, train, validation, replace(config, tracked_prompts=17), 0, "cpu",
                           str(tmp_path))


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
    for column in ("grad_norm", "gap_estimate", "gap_norm", "step_length",
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
    assert cumulative["path"].tolist() == pytest.approx([0, steps["step_length"][:2].sum(), steps["step_length"].sum()])
    # The standard error of each evaluation point, Q = 16 problems × S = 2 samples: Ĵ_q ∈ {0, ½, 1}, so
    # SE = √(n · ¼ / 1)/16 = √n/32 with n the problems of one success in two, and 32·accuracy − n is even.
    halves = (run.evals["accuracy_se"] * 32) ** 2  # n
    assert np.allclose(halves, halves.round(), atol=1e-9) and halves.between(0, 16).all()
    assert (((run.evals["accuracy"] * 32).round() - halves.round()) % 2 == 0).all()


def test_cumulative_readings_by_hand():
    """η_k = step_length; [Δμ_k]₊ drops the negative alignment; NaN readings add 0; ``path`` = Σ η_k."""
    steps = pd.DataFrame({"step": [1, 2, 3, 4], "step_length": [0.1, 0.2, 0.3, 0.4],
                          "gap_estimate": [1.0, 2.0, np.nan, 1.0], "gap_norm": [2.0, 2.0, 1.0, 1.0],
                          "alignment": [1.0, -1.0, 0.5, np.nan]})
    evals = pd.DataFrame({"step": [0, 2, 4], "accuracy": [0.1, 0.2, 0.3]})
    run = grpo.GRPORun(grpo.GRPORunConfig(learning_rate=7.0), steps, evals, seconds=0.0)
    frame = run.cumulative()
    assert list(frame.columns) == ["step", "accuracy", "estimate", "measured_magnitude", "measured", "path"]
    expected = {"estimate": [0, 0.1 + 0.4, 0.1 + 0.4 + 0 + 0.4], "measured_magnitude": [0, 0.6, 0.6 + 0.3 + 0.4],
                "measured": [0, 0.1, 0.1 + 0.15], "path": [0, 0.3, 1.0]}
    for column, values in expected.items():
        assert frame[column].tolist() == pytest.approx(values, abs=1e-12), column
    assert run.prompts.empty  # no prompts were tracked
    # without measured step lengths (tracking "estimate"): η_k = the learning rate, and no path
    estimate_only = grpo.GRPORun(grpo.GRPORunConfig(learning_rate=0.5), steps[["step", "gap_estimate"]], evals, 0.0)
    frame = estimate_only.cumulative()
    assert "path" not in frame and frame["estimate"].tolist() == pytest.approx([0, 1.5, 2.0])


def test_tracked_prompts_record_every_step_and_do_not_change_training(warm_folder, arithmetic):
    """Two prompts × 4 samples tracked in a 2-step cosine run: a row per prompt at θ_0, θ_1 and θ_2, the step
    lengths of the updates u_0 and u_1 (as logged at steps 1 and 2), and the same training as an untracked
    constant-rate run: the same rewards and first step, and a second step of half the length (the cosine is
    at 1/2 and Adam's direction is the same)."""
    plain = _short_run(warm_folder, arithmetic, steps=2)
    tracked = _short_run(warm_folder, arithmetic, steps=2, lr_schedule="cosine", tracked_prompts=2, tracked_samples=4)
    assert tracked.steps["reward"].tolist() == plain.steps["reward"].tolist()
    lengths, plain_lengths = tracked.steps["step_length"].tolist(), plain.steps["step_length"].tolist()
    assert lengths[0] == pytest.approx(plain_lengths[0], rel=1e-6)
    assert lengths[1] == pytest.approx(plain_lengths[1] / 2, rel=1e-4)
    prompts = tracked.prompts
    assert list(prompts.columns) == ["step", "prompt", "successes", "inner", "step_length", "value"]
    assert prompts["step"].tolist() == [0, 0, 1, 1, 2, 2] and prompts["prompt"].tolist() == [0, 1] * 3
    assert prompts["successes"].between(0, 4).all() and (prompts["value"] == prompts["successes"] / 4).all()
    taken = prompts[prompts["step"] < 2]
    assert taken["step_length"].tolist() == pytest.approx([lengths[0]] * 2 + [lengths[1]] * 2, rel=1e-12)
    mixed = taken["successes"].between(1, 3)
    assert np.isfinite(taken.loc[mixed, "inner"]).all() and taken.loc[~mixed, "inner"].isna().all()
    assert prompts.loc[prompts["step"] == 2, ["inner", "step_length"]].isna().all().all()  # Ĵ_q(K) only
    assert plain.prompts.empty and tracked.meta["config"]["tracked_prompts"] == 2


def test_grpo_run_is_deterministic_and_tracking_does_not_change_training(warm_folder, arithmetic):
    measured = _short_run(warm_folder, arithmetic, steps=3)
    again = _short_run(warm_folder, arithmetic, steps=3)
    untracked = _short_run(warm_folder, arithmetic, steps=3, tracking="off")
    columns = ["reward", "grad_norm", "gap_norm", "alignment"]
    pd.testing.assert_frame_equal(measured.steps[columns], again.steps[columns])
    assert measured.steps["reward"].tolist() == untracked.steps["reward"].tolist()
    pd.testing.assert_frame_equal(measured.evals, untracked.evals)
    assert "gap_estimate" not in untracked.steps and "gap_norm" not in untracked.steps


def test_a_run_in_a_spawned_worker_is_the_run_of_this_process(warm_folder, arithmetic):
    """The book trains in spawned worker processes and serves its second execution from the run cache
    (:func:`rlvr_dynamics.lm.experiment.run_seeds`): that is sound only if a worker's run is bit for bit the run
    this process makes from the same checkpoint, problems, settings and seed."""
    import concurrent.futures
    import multiprocessing

    from rlvr_dynamics.lm import experiment

    train, validation = arithmetic
    config = grpo.GRPORunConfig(steps=3, completions_per_step=32, num_generations=4, max_completion_length=4,
                                per_prompt_every=2, eval_every=2, eval_problems=16, eval_samples=2)
    job = (str(warm_folder), train, validation, config, 3, "cpu", 1, False)
    threads = torch.get_num_threads()
    try:
        here = experiment._run_one(job)  # sets this process's threads to the worker's
    finally:
        torch.set_num_threads(threads)
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        there = pool.submit(experiment._run_one, job).result()
    timing = [column for column in here.steps if column == "seconds"]
    pd.testing.assert_frame_equal(here.steps.drop(columns=timing), there.steps.drop(columns=timing))
    pd.testing.assert_frame_equal(here.evals, there.evals)
    assert here.steps["alignment"].notna().all()  # the tracked readings are compared too


@pytest.mark.parametrize("loss_type, scale", [("dr_grpo", "none"), ("dapo", "batch"), ("bnpo", "group")])
def test_every_loss_type_and_scaling_runs(warm_folder, arithmetic, loss_type, scale):
    run = _short_run(warm_folder, arithmetic, steps=2, loss_type=loss_type, scale_rewards=scale, tracking="estimate")
    assert run.steps["gap_estimate"].notna().all() and run.meta["config"]["loss_type"] == loss_type


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


def test_one_backward_gives_the_gap_of_the_two_it_replaces(warm_folder, arithmetic, sample_batch):
    """ḡ⁺ − ḡ⁻ from one backward through the signed weights equals ḡ⁺ and ḡ⁻ from a backward each."""
    model, tokenizer = lm_model.load_model(warm_folder)
    train, _ = arithmetic
    prompts = [problem.prompt for problem in train[:6] for _ in range(4)]  # 6 groups of G = 4
    encoded, completion_ids, completion_mask = sample_batch(model, tokenizer, prompts, seed=1, length=5)
    batch = {"prompt_ids": encoded["input_ids"], "prompt_mask": encoded["attention_mask"],
             "completion_ids": completion_ids, "completion_mask": completion_mask}
    groups = torch.arange(24) // 4
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0] * 3 + [1.0, 1.0, 1.0, 1.0] + [0.0, 1.0, 0.0, 0.0] * 2)
    w_plus, w_minus, mixed = grpo.outcome_weights(rewards, groups)
    assert len(mixed) == 5
    params = [p for p in model.parameters() if p.requires_grad]
    one = grpo.batch_gap(model, batch, w_plus - w_minus, params)
    scores = scoring.sequence_log_probs(model, batch["prompt_ids"], batch["prompt_mask"], completion_ids,
                                        completion_mask)
    g_plus = grpo._flat(torch.autograd.grad((w_plus.to(scores) * scores).sum(), params, retain_graph=True,
                                            allow_unused=True), params)
    g_minus = grpo._flat(torch.autograd.grad((w_minus.to(scores) * scores).sum(), params, allow_unused=True), params)
    assert one.norm() > 0
    torch.testing.assert_close(one, g_plus - g_minus, rtol=1e-5, atol=1e-7)


def test_the_trainer_takes_the_gap_from_trls_forward_and_it_equals_the_stand_alone_one(
        warm_folder, arithmetic, sample_batch, tmp_path):
    """(b) from the loss's own forward (TRL's log-probabilities, no position ids) equals batch_gap (its
    own forward, positions from the mask) on a left-padded batch: the rotary embedding sees only
    relative positions, so left padding changes nothing beyond rounding."""
    model, tokenizer = lm_model.load_model(warm_folder)
    train, validation = arithmetic
    prompts = [train[q].prompt + " " * q for q in range(4) for _ in range(4)]  # 4 groups of G = 4, lengths differ
    encoded, completion_ids, completion_mask = sample_batch(model, tokenizer, prompts, seed=2, length=5)
    assert (encoded["attention_mask"] == 0).any()  # really left padded
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    groups = torch.arange(16) // 4
    inputs = {"prompt_ids": encoded["input_ids"], "prompt_mask": encoded["attention_mask"],
              "completion_ids": completion_ids, "completion_mask": completion_mask,
              "advantages": torch.randn(16, generator=torch.Generator().manual_seed(0)),
              "gap_rewards": rewards, "gap_groups": groups}
    config = grpo.GRPORunConfig(steps=1, completions_per_step=16, num_generations=4, max_completion_length=5)
    trainer = grpo.build_trainer(model, tokenizer, train, validation, config, 0, "cpu", str(tmp_path))
    loss = trainer.compute_loss(model, inputs)
    shared = trainer._shared_gap
    loss.backward()  # the graph was kept for the loss's backward
    params = [p for p in model.parameters() if p.requires_grad]
    w_plus, w_minus, mixed = grpo.outcome_weights(rewards, groups)
    assert len(mixed) == 3 and shared is not None and shared.norm() > 0
    torch.testing.assert_close(shared, grpo.batch_gap(model, inputs, w_plus - w_minus, params), rtol=1e-4, atol=1e-6)
    # and tracking leaves the loss's gradient alone
    with_tracking = grpo._flat([p.grad for p in params], params)
    model.zero_grad()
    trainer.run_config = replace(config, tracking="off")
    trainer.compute_loss(model, inputs).backward()
    torch.testing.assert_close(grpo._flat([p.grad for p in params], params), with_tracking)


def test_a_run_shows_no_deprecation_warning_of_trls_config(warm_folder, arithmetic):
    """transformers 5 deprecates gradient_checkpointing, which TRL reads every step: nothing reaches the reader."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _short_run(warm_folder, arithmetic, steps=1, tracking="off")
    assert not [w for w in caught if "gradient_checkpointing" in str(w.message)]


def test_safe_step_weights_by_hand():
    # groups of 4: Ĵ = 1/4 and 3/4 with mean lengths 2 and 4 → raw 1/(Ĵ L̄) = 2 and 1/3, normalised to mean 1;
    # an all-wrong group (no gap: advantages 0) gets weight 1.
    rewards = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.float32)
    lengths = torch.tensor([[2, 2, 2, 2], [4, 4, 4, 4], [3, 3, 3, 3]])
    weights = grpo.safe_step_weights(rewards, lengths)
    assert torch.allclose(weights, torch.tensor([2 / (7 / 6), (1 / 3) / (7 / 6), 1.0], dtype=torch.float64))
    assert torch.equal(grpo.safe_step_weights(torch.ones(2, 4), lengths[:2]), torch.ones(2, dtype=torch.float64))


def test_safe_step_weighting_rescales_each_groups_advantages(warm_folder, arithmetic):
    """Same seed, same first batch: the weighted run's advantages are the plain run's times w_q, so its
    extremes change while the rewards do not; the weights' mean over mixed prompts is 1 (min ≤ 1 ≤ max)."""
    change = dict(steps=1, loss_type="dr_grpo", scale_rewards="none", tracking="estimate")
    plain = _short_run(warm_folder, arithmetic, **change)
    weighted = _short_run(warm_folder, arithmetic, prompt_weighting="safe_step", **change)
    assert weighted.steps["reward"].tolist() == plain.steps["reward"].tolist()
    row = weighted.steps.iloc[0]
    assert row["prompt_weight_min"] <= 1 <= row["prompt_weight_max"] and row["prompt_weight_max"] > 1
    assert (row["advantage_min"], row["advantage_max"]) != (plain.steps.iloc[0]["advantage_min"],
                                                            plain.steps.iloc[0]["advantage_max"])
    assert "prompt_weight_min" not in plain.steps


def _parameters_after(folder, arithmetic, **change):
    """The flat parameters after a short untracked run, and the maximum advantage of every loss computation (the
    batch each optimizer step trains on). Plain SGD at a large rate: the update is the gradient (AdamW's g/√v would
    magnify float rounding in near-zero gradient entries), and a re-used batch's ratios move far from 1."""
    train, validation = arithmetic
    config = replace(grpo.GRPORunConfig(steps=2, completions_per_step=32, num_generations=4, max_completion_length=4,
                                        optimizer="sgd", learning_rate=0.5, tracking="off", eval_every=2,
                                        eval_problems=4, eval_samples=1), **change)
    model, tokenizer = lm_model.load_model(folder)
    advantage_max = []

    def configure(trainer):
        compute_loss = trainer.compute_loss

        def recording(model, inputs, *args, **kwargs):
            advantage_max.append(float(inputs["advantages"].max()))
            return compute_loss(model, inputs, *args, **kwargs)

        trainer.compute_loss = recording

    run = grpo.run_grpo(model, tokenizer, train, validation, config, seed=5, configure=configure)
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]), run, advantage_max


def test_gspo_is_grpo_on_policy_and_differs_on_a_reused_batch(warm_folder, arithmetic):
    """BD4: with one update per batch GSPO's sequence ratio and GRPO's token ratios (loss "grpo") are both 1 and
    give the same gradient, hence the same parameters after 2 steps (float32 rounding only); with each batch
    trained on twice (num_iterations 2) the second update sees ratios ≠ 1, and the two differ. max_steps counts
    optimizer steps either way; with μ = 2 the two steps share one batch (one reward, one generation)."""
    grpo_1, grpo_run, _ = _parameters_after(warm_folder, arithmetic)
    gspo_1, gspo_run, _ = _parameters_after(warm_folder, arithmetic, importance_sampling_level="sequence")
    assert grpo_run.steps["step"].tolist() == [1, 2] and gspo_run.steps["reward"].tolist() == \
        grpo_run.steps["reward"].tolist()
    torch.testing.assert_close(gspo_1, grpo_1, rtol=0, atol=1e-6)  # measured: 1.2e-7
    grpo_2, grpo_run2, _ = _parameters_after(warm_folder, arithmetic, num_iterations=2)
    gspo_2, gspo_run2, _ = _parameters_after(warm_folder, arithmetic, num_iterations=2,
                                             importance_sampling_level="sequence")
    assert grpo_run2.steps["step"].tolist() == [1, 2]
    assert grpo_run2.steps["reward"].nunique() == 1  # the second step re-uses the first step's batch
    assert grpo_run2.steps["reward"].iloc[0] == grpo_run.steps["reward"].iloc[0]  # the same first batch
    assert float((gspo_2 - grpo_2).abs().max()) > 1e-4  # measured: 7.6e-3
    assert float((grpo_2 - grpo_1).abs().max()) > 1e-4  # a re-used batch is not a fresh one


def test_gspo_n_keeps_only_negative_advantages_on_every_reuse(warm_folder, arithmetic):
    """GSPO-N = sequence ratio + advantage filter "negative": the filter is applied at generation, so every
    optimizer step on the re-used batch trains on non-positive advantages only."""
    _, run, advantage_max = _parameters_after(warm_folder, arithmetic, steps=4, num_iterations=2,
                                              importance_sampling_level="sequence", advantage_filter="negative")
    assert len(advantage_max) == 4 and max(advantage_max) <= 0
    assert run.steps["reward"].iloc[0] == run.steps["reward"].iloc[1]
    assert run.steps["reward"].iloc[2] == run.steps["reward"].iloc[3]
    assert run.meta["config"]["importance_sampling_level"] == "sequence"


def test_the_trainer_passes_the_ratio_settings_to_trl(tokenizer, arithmetic, tmp_path):
    train, validation = arithmetic
    config = grpo.GRPORunConfig(steps=6, completions_per_step=16, num_generations=4, max_completion_length=4,
                                tracking="off", num_iterations=3, importance_sampling_level="sequence",
                                epsilon=3e-4, epsilon_high=4e-4)
    model = lm_model.build_model("ci", tokenizer, seed=0)
    trainer = grpo.build_trainer(model, tokenizer, train, validation, config, 0, "cpu", str(tmp_path))
    args = trainer.args
    assert (args.num_iterations, args.importance_sampling_level, args.epsilon, args.epsilon_high) == (
        3, "sequence", 3e-4, 4e-4)
    assert (args.max_steps, args.gradient_accumulation_steps, args.steps_per_generation) == (6, 1, 1)
    assert (trainer.epsilon_low, trainer.epsilon_high) == (3e-4, 4e-4)
    on_policy = replace(config, num_iterations=1, tracking="measured", epsilon_high=None)
    plain = grpo.build_trainer(model, tokenizer, train, validation, on_policy, 0, "cpu", str(tmp_path))
    assert (plain.args.num_iterations, plain.epsilon_low, plain.epsilon_high) == (1, 3e-4, 3e-4)
    with pytest.raises(ValueError, match="pass_problems = 17: the validation split has only 16 problems"):
        grpo.build_trainer(model, tokenizer, train, validation, replace(config, pass_problems=17), 0, "cpu",
                           str(tmp_path))


def test_pass_counts_are_recorded_at_every_evaluation_and_change_nothing_else(warm_folder, arithmetic):
    """pass_problems 3 × pass_samples 8 at steps 0, 1 and 2 (every evaluation point, the last included): counts in
    [0, 8]; the same rewards, accuracies and final parameters as a run without them (their own generator)."""
    plain, plain_run, _ = _parameters_after(warm_folder, arithmetic, eval_every=1)
    counted, run, _ = _parameters_after(warm_folder, arithmetic, eval_every=1, pass_problems=3, pass_samples=8)
    assert run.evals["step"].tolist() == [0, 1, 2]
    counts = run.evals["correct_counts"].tolist()
    assert all(len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 8 for v in c) for c in counts)
    pd.testing.assert_frame_equal(run.evals.drop(columns="correct_counts"), plain_run.evals)
    assert run.steps["reward"].tolist() == plain_run.steps["reward"].tolist() and torch.equal(counted, plain)
    assert "correct_counts" not in plain_run.evals


def test_correct_counts_agree_with_sampled_accuracy_within_binomial_error(warm_folder, arithmetic):
    """On a warmed-up model (0 < J_q < 1): the counts of 64 samples from one generator against Ĵ_q of 256 samples
    from another, within 4 standard errors of the difference."""
    model, tokenizer = lm_model.load_model(warm_folder)
    validation, samples = arithmetic[1][:4], 64
    counts = scoring.correct_counts(model, tokenizer, validation, samples, 1.0, torch.Generator().manual_seed(1), 4)
    reference = scoring.sampled_accuracy(model, tokenizer, validation, 256, 4, torch.Generator().manual_seed(2))
    assert reference.min() < 1 and reference.max() > 0  # not a degenerate check
    error = (reference * (1 - reference) * (1 / samples + 1 / 256)).sqrt()
    assert ((counts.double() / samples - reference).abs() <= 4 * error + 1e-9).all()
