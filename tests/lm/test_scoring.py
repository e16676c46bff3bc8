"""Tests of rlvr_dynamics.lm.scoring: padded log-probabilities, seeded sampling and entropy."""

import math

import pytest
import torch

from rlvr_dynamics.lm import scoring
from rlvr_dynamics.lm import task as lm_task


def test_padded_batch_log_probs_match_each_prompt_alone(sample_batch, tiny_model, tokenizer):
    prompts = ["1+2=", "123+456=", "Q: Ava has 3 pens.\nA: "]
    encoded, ids, mask = sample_batch(tiny_model, tokenizer, prompts)
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


def test_sequence_log_prob_equals_a_token_by_token_loop(sample_batch, tiny_model, tokenizer):
    encoded, ids, mask = sample_batch(tiny_model, tokenizer, ["5+5="])
    with torch.no_grad():
        total = scoring.sequence_log_probs(tiny_model, encoded["input_ids"], encoded["attention_mask"], ids, mask)
        context, expected = encoded["input_ids"][0].tolist(), 0.0
        for token in ids[0, :int(mask[0].sum())].tolist():
            logits = tiny_model(torch.tensor([context])).logits[0, -1].double()
            expected += float(torch.log_softmax(logits, -1)[token])
            context.append(token)
    assert math.isclose(float(total), expected, rel_tol=1e-5)


def test_sampling_is_seeded_and_masks_after_the_first_eos(sample_batch, tiny_model, tokenizer):
    prompts = ["1+1="] * 64
    _, ids, mask = sample_batch(tiny_model, tokenizer, prompts, seed=7, length=5)
    _, ids_again, _ = sample_batch(tiny_model, tokenizer, prompts, seed=7, length=5)
    assert torch.equal(ids, ids_again)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    for row, row_mask in zip(ids.tolist(), mask.tolist(), strict=True):
        if eos in row:
            end = row.index(eos)
            assert row_mask == [1] * (end + 1) + [0] * (len(row) - end - 1)
            assert all(t == pad for t in row[end + 1:])
        else:
            assert row_mask == [1] * len(row)  # truncated: every token counts
    with pytest.raises(ValueError, match="temperature"):
        scoring.sample_completions(tiny_model, ids, mask, 2, eos, pad, torch.Generator(), temperature=0)


def test_sampled_entropy_is_the_mean_token_entropy(tiny_model, tokenizer):
    problems = lm_task.generate_problems("arithmetic", 4, seed=1, digits=1)
    accuracy, entropy = scoring.sampled_accuracy_and_entropy(tiny_model, tokenizer, problems, 2, 3,
                                                             torch.Generator().manual_seed(0))
    again = scoring.sampled_accuracy(tiny_model, tokenizer, problems, 2, 3, torch.Generator().manual_seed(0))
    assert torch.equal(accuracy, again) and entropy.shape == (4,)
    assert (entropy > 0).all() and (entropy <= math.log(258) + 1e-9).all()


def test_correct_counts_are_the_sampled_accuracys_draws(tiny_model, tokenizer):
    """c_q / S is sampled_accuracy's Ĵ_q from the same generator (the same sampler and draws); a fixed generator
    gives the same counts. (Within binomial error on a warmed-up model: tests/lm/test_grpo.py.)"""
    problems = lm_task.generate_problems("arithmetic", 4, seed=1, digits=1)
    counts = scoring.correct_counts(tiny_model, tokenizer, problems, 6, 1.0, torch.Generator().manual_seed(0), 3)
    assert counts.dtype == torch.long and counts.shape == (4,) and ((counts >= 0) & (counts <= 6)).all()
    accuracy = scoring.sampled_accuracy(tiny_model, tokenizer, problems, 6, 3, torch.Generator().manual_seed(0))
    assert torch.equal(counts.double() / 6, accuracy)
    assert torch.equal(counts, scoring.correct_counts(tiny_model, tokenizer, problems, 6, 1.0,
                                                      torch.Generator().manual_seed(0), 3))


@pytest.mark.parametrize("change, message", [
    (dict(samples=0), "samples_per_problem = 0: must be ≥ 1"),
    (dict(problems=[]), "problems is empty"),
    (dict(batch_size=0), "batch_size = 0: must be ≥ 1"),
])
def test_correct_counts_rejects_bad_inputs(tiny_model, tokenizer, change, message):
    arguments = dict(problems=lm_task.generate_problems("arithmetic", 2, seed=1, digits=1), samples=2, batch_size=8)
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        scoring.correct_counts(tiny_model, tokenizer, arguments["problems"], arguments["samples"], 1.0,
                               torch.Generator(), 3, batch_size=arguments["batch_size"])


def test_accuracy_standard_error_by_hand():
    # Ĵ = 1/2 and 1/4 from S = 4 draws each: within-problem variances Ĵ(1 − Ĵ)/(S − 1) = 0.25/3 and 0.1875/3;
    # the mean of Q = 2 problems has their sum over Q².
    values = torch.tensor([0.5, 0.25])
    assert scoring.accuracy_standard_error(values, 4) == pytest.approx(math.sqrt((0.25 + 0.1875) / 3) / 2, rel=1e-12)
    assert scoring.accuracy_standard_error(torch.tensor([0.0, 1.0, 1.0]), 8) == 0.0  # every draw agrees
    assert scoring.accuracy_standard_error(torch.tensor([0.5, 0.5, 0.0, 1.0]), 2) == pytest.approx(
        math.sqrt(2 * 0.25 / 1) / 4, rel=1e-12)
    assert math.isnan(scoring.accuracy_standard_error(values, 1))  # one draw: no within-problem variance


def test_accuracy_standard_error_is_largest_at_one_half_and_bounds_the_paper_preset():
    """Ĵ(1 − Ĵ) ≤ 1/4: with S = 8 draws of Q = 256 problems the SE is at most √(Q/4/7)/Q ≈ 0.0118."""
    worst = scoring.accuracy_standard_error(torch.full((256,), 0.5), 8)
    assert worst == pytest.approx(math.sqrt(256 * 0.25 / 7) / 256, rel=1e-12) and worst <= 0.0119
    values = torch.rand(256, generator=torch.Generator().manual_seed(0))
    assert scoring.accuracy_standard_error(values, 8) < worst
    # against the spread of many simulated evaluations: Ĵ_q ~ Binomial(S, p_q)/S on fixed problems
    generator = torch.Generator().manual_seed(1)
    p = torch.rand(64, generator=generator, dtype=torch.float64)  # (Q,)
    draws = torch.bernoulli(p.expand(4000, 8, 64).permute(0, 2, 1), generator=generator).mean(-1)  # (R, Q)
    estimates = torch.tensor([scoring.accuracy_standard_error(row, 8) for row in draws[:200]])
    spread = float(draws.mean(-1).std())
    assert float(estimates.mean()) == pytest.approx(spread, rel=0.05)


def test_temperature_for_accuracy_bisects_to_the_target(monkeypatch):
    # A model whose sampled accuracy is 1/T: the bisection must land on T = 1/target.
    calls = []

    def accuracy(model, tokenizer, problems, samples, max_new_tokens, generator, temperature=1.0):
        calls.append(temperature)
        return torch.full((len(problems),), 1 / temperature, dtype=torch.float64)

    monkeypatch.setattr(scoring, "sampled_accuracy", accuracy)
    temperature, value = scoring.temperature_for_accuracy(None, None, [None] * 4, 0.25, 8, 8, None)
    assert temperature == pytest.approx(4, abs=8 / 2 ** 10) and value == pytest.approx(1 / temperature)
    assert calls[:2] == [1.0, 8.0] and len(calls) == 12  # both ends, then ten halvings
    assert scoring.temperature_for_accuracy(None, None, [None], 0.125, 8, 8, None) == (8.0, 0.125)  # an end wins
    for target, message in ((0.05, "not between"), (1.0, "strictly between"), (0.0, "strictly between")):
        with pytest.raises(ValueError, match=message):
            scoring.temperature_for_accuracy(None, None, [None], target, 8, 8, None)


def test_log_probs_are_the_policy_at_its_temperature(sample_batch, tiny_model, tokenizer):
    # The trained policy is softmax(logits / T) (TRL's loss divides by the temperature): so are the scores.
    encoded, ids, mask = sample_batch(tiny_model, tokenizer, ["1+2=", "34+5="])
    with torch.no_grad():
        plain = scoring.completion_token_log_probs(tiny_model, encoded["input_ids"], encoded["attention_mask"], ids,
                                                   mask)
        hot = scoring.completion_token_log_probs(tiny_model, encoded["input_ids"], encoded["attention_mask"], ids,
                                                 mask, temperature=2.0)
        full_ids = torch.cat([encoded["input_ids"], ids], 1)
        full_mask = torch.cat([encoded["attention_mask"], mask], 1)
        logits = tiny_model(input_ids=full_ids, attention_mask=full_mask,
                            position_ids=scoring.positions_from_mask(full_mask)).logits[:, -ids.shape[1] - 1:-1]
    expected = torch.log_softmax(logits / 2.0, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1) * mask
    torch.testing.assert_close(hot, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(hot, plain)
    total = scoring.sequence_log_probs(tiny_model, encoded["input_ids"], encoded["attention_mask"], ids, mask, 2.0)
    torch.testing.assert_close(total, hot.sum(-1))
