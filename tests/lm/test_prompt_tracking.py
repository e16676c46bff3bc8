"""Tests of rlvr_dynamics.lm.prompt_tracking: forward-mode derivatives against autograd and a finite
difference, the per-outcome means by hand, and the tracker's records against autograd."""

import math
from dataclasses import replace
from fractions import Fraction

import pytest
import torch

from rlvr_dynamics.lm import model as lm_model
from rlvr_dynamics.lm import prompt_tracking, scoring
from rlvr_dynamics.lm import task as lm_task
from rlvr_dynamics.lm.prompt_tracking import PromptTracker, log_prob_derivatives, outcome_inner_products

PROMPTS = ["1+2=", "123+456=", "7+8=", "Q: Ava has 3 pens.\nA: ", "9+9="]  # lengths differ: left padding


def _flat_parameters(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])  # (P,)


def _unit_direction(size: int, seed: int) -> torch.Tensor:
    direction = torch.randn(size, generator=torch.Generator().manual_seed(seed))
    return direction / direction.norm()  # (P,)


def _autograd_derivatives(model, prompt_ids, prompt_mask, completion_ids, completion_mask, direction):
    """⟨v, ∇_θ log π(o_i | q_i)⟩ by one backward per row (the definition the forward mode replaces).  # (B,)"""
    params = list(model.parameters())
    out = []
    for i in range(prompt_ids.shape[0]):
        rows = slice(i, i + 1)
        score = scoring.sequence_log_probs(model, prompt_ids[rows], prompt_mask[rows], completion_ids[rows],
                                           completion_mask[rows]).sum()
        gradient = torch.cat([g.flatten() for g in torch.autograd.grad(score, params)])
        out.append(float(gradient.double() @ direction.double()))
    return torch.tensor(out, dtype=torch.float64)


@pytest.fixture(scope="module")
def batch(tiny_model, tokenizer):
    """Five left-padded prompts with seeded sampled completions of 6 tokens; rows 0 and 2 are cut by an
    end-of-text token (the untrained model rarely samples one), right padded as sampling pads them."""
    encoded = tokenizer(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)
    ids, mask = scoring.sample_completions(tiny_model, encoded["input_ids"], encoded["attention_mask"], 6,
                                           tokenizer.eos_token_id, tokenizer.pad_token_id,
                                           torch.Generator().manual_seed(0))
    for row, length in ((0, 3), (2, 5)):
        ids[row, length - 1], ids[row, length:], mask[row, length:] = tokenizer.eos_token_id, tokenizer.pad_token_id, 0
    return encoded["input_ids"], encoded["attention_mask"], ids, mask


def test_log_prob_derivatives_equal_autograd_and_a_central_difference(tiny_model, batch):
    prompt_ids, prompt_mask, ids, mask = batch
    assert (prompt_mask == 0).any() and (mask == 0).any()  # padded on both sides
    before = [p.detach().clone() for p in tiny_model.parameters()]
    attention = tiny_model.config._attn_implementation
    theta = _flat_parameters(tiny_model)
    direction = _unit_direction(theta.numel(), seed=1)
    # batch_size 2: 5 rows in three chunks, the last one short
    forward = log_prob_derivatives(tiny_model, theta, direction, prompt_ids, prompt_mask, ids, mask, batch_size=2)
    assert forward.shape == (5,) and forward.dtype == torch.float64
    # the model is left as it was: same parameters, same attention kernel
    assert all(torch.equal(p, q) for p, q in zip(tiny_model.parameters(), before, strict=True))
    assert tiny_model.config._attn_implementation == attention == "sdpa"

    backward = _autograd_derivatives(tiny_model, prompt_ids, prompt_mask, ids, mask, direction)
    scale = float(backward.abs().max())
    assert scale > 0
    torch.testing.assert_close(forward, backward, rtol=1e-4, atol=1e-4 * scale)

    # a central difference (log π in float32: ε = 0.03 along the unit direction balances rounding and curvature)
    epsilon = 0.03

    def scores_at(flat):
        with torch.no_grad():
            for p, value in zip(tiny_model.parameters(), flat.split([p.numel() for p in before]), strict=True):
                p.copy_(value.view_as(p))
            return scoring.sequence_log_probs(tiny_model, prompt_ids, prompt_mask, ids, mask).double()

    try:
        difference = (scores_at(theta + epsilon * direction) - scores_at(theta - epsilon * direction)) / (2 * epsilon)
    finally:
        scores_at(theta)
    torch.testing.assert_close(forward, difference, rtol=2e-2, atol=1e-3 * scale)
    assert all(torch.equal(p, q) for p, q in zip(tiny_model.parameters(), before, strict=True))


def test_log_prob_derivatives_are_taken_at_the_point_not_at_the_models_parameters(tiny_model, tokenizer, batch):
    """The tracker calls it after the optimizer step, with θ_k while the model already holds θ_{k+1}."""
    prompt_ids, prompt_mask, ids, mask = batch
    other = lm_model.build_model("ci", tokenizer, seed=1)
    direction = _unit_direction(_flat_parameters(tiny_model).numel(), seed=2)
    at_tiny = log_prob_derivatives(other, _flat_parameters(tiny_model), direction, prompt_ids, prompt_mask, ids, mask)
    expected = _autograd_derivatives(tiny_model, prompt_ids, prompt_mask, ids, mask, direction)
    torch.testing.assert_close(at_tiny, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_log_prob_derivatives_restore_the_attention_after_an_error(tokenizer, batch):
    prompt_ids, prompt_mask, ids, mask = batch
    model = lm_model.build_model("ci", tokenizer, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    theta = _flat_parameters(model)
    with pytest.raises(RuntimeError):  # completions of 4 rows for 5 prompts: the forward fails inside the block
        log_prob_derivatives(model, theta, theta, prompt_ids, prompt_mask, ids[:4], mask[:4])
    assert model.config._attn_implementation == "sdpa"
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
    with pytest.raises(ValueError, match=r"a flat vector of shape \(3,\) does not match 139968 parameters"):
        log_prob_derivatives(model, theta, torch.zeros(3), prompt_ids, prompt_mask, ids, mask)


def test_outcome_inner_products_by_hand():
    derivatives = torch.tensor([[1.0, 2, 3, 5],  # correct 1 and 5, incorrect 2 and 3: 3 − 2.5
                                [1.0, 2, 3, 4],  # all correct: no ḡ⁻ estimate
                                [1.0, 2, 3, 4],  # all wrong: no ḡ⁺ estimate
                                [0.0, -1, 4, 2]], dtype=torch.float64)  # one correct, 4: 4 − (0 − 1 + 2)/3
    correct = torch.tensor([[1, 0, 0, 1], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 1, 0]], dtype=torch.bool)
    inner = outcome_inner_products(derivatives, correct)
    assert inner.shape == (4,) and inner.dtype == torch.float64
    assert inner[0] == 0.5 and inner[3] == pytest.approx(11 / 3, rel=1e-15)
    assert math.isnan(inner[1]) and math.isnan(inner[2])
    # an integer 0/1 mask reads as booleans; a single prompt of two samples
    assert outcome_inner_products(derivatives[:1], correct[:1].long()).tolist() == [0.5]
    assert outcome_inner_products(torch.tensor([[2.0, -3.0]]), torch.tensor([[False, True]])).tolist() == [-5.0]


def _parity_reward(texts, answers):
    """A stand-in verifier that gives mixed outcomes on an untrained model: an even byte sum is 'correct',
    except that the answer 0 is never reached (its prompt has no correct sample)."""
    assert len(texts) == len(answers)
    return [float(sum(map(ord, text)) % 2 == 0 and answer != "0") for text, answer in zip(texts, answers, strict=True)]


def _tracker(model, tokenizer, problems, samples=6, seed=0):
    return PromptTracker(model, tokenizer, problems, samples, max_new_tokens=5, temperature=1.0,
                         generator=torch.Generator().manual_seed(seed))


def test_prompt_tracker_records_successes_and_the_inner_products_autograd_gives(tokenizer, monkeypatch):
    """One tracked step as GRPO runs it: sample at θ_k, the optimizer moves the model to θ_k + u, then
    ``inner`` of each prompt = mean over its correct samples of ⟨u, ∇log π⟩ at θ_k − the mean over its
    incorrect ones (per-row backward here), NaN for a prompt with one outcome; ``step_length`` = ‖u‖."""
    monkeypatch.setattr(prompt_tracking, "correctness_reward", _parity_reward)
    problems = lm_task.generate_problems("arithmetic", 4, seed=3, digits=1)
    problems[1] = replace(problems[1], answer=Fraction(0))  # all wrong: its inner product is NaN
    model = lm_model.build_model("ci", tokenizer, seed=0)
    model.train()
    tracker = _tracker(model, tokenizer, problems)

    # the same draws, independently: prompt-major rows, S = 6 per prompt
    encoded = tokenizer([p.prompt for p in problems for _ in range(6)], return_tensors="pt", padding=True,
                        add_special_tokens=False)
    ids, mask = scoring.sample_completions(model, encoded["input_ids"], encoded["attention_mask"], 5,
                                           tokenizer.eos_token_id, tokenizer.pad_token_id,
                                           torch.Generator().manual_seed(0))
    texts = tokenizer.batch_decode(ids * mask + tokenizer.pad_token_id * (1 - mask), skip_special_tokens=True)
    answers = [str(p.answer) for p in problems for _ in range(6)]
    correct = torch.tensor(_parity_reward(texts, answers)).view(4, 6) > 0.5  # (Q, S)

    tracker.sample(step=0)
    assert model.training  # sampling switches to eval and back
    assert tracker.records == [{"step": 0, "prompt": q, "successes": int(correct[q].sum())} for q in range(4)]
    mixed = (correct.any(-1) & ~correct.all(-1)).tolist()
    assert correct[1].sum() == 0 and sum(mixed) >= 2  # both cases are exercised (mixed ones at this seed)

    theta = _flat_parameters(model)
    update = 1e-3 * _unit_direction(theta.numel(), seed=4)  # (P,)
    with torch.no_grad():  # the optimizer's step: the model now holds θ + u
        for p, u in zip(model.parameters(), update.split([p.numel() for p in model.parameters()]), strict=True):
            p.add_(u.view_as(p))
    moved = _flat_parameters(model)
    tracker.inner_products(theta, update)
    assert torch.equal(_flat_parameters(model), moved)

    with torch.no_grad():  # back to θ_k for the reference: ⟨u, ∇(mean over correct − mean over incorrect of log π)⟩,
        for p, value in zip(model.parameters(), theta.split([p.numel() for p in model.parameters()]), strict=True):
            p.copy_(value.view_as(p))  # one backward per prompt (the mean of ⟨u, ∇log π⟩ by linearity)
    params = list(model.parameters())
    for record in tracker.records:
        q = record["prompt"]
        assert record["step_length"] == pytest.approx(float(update.norm()), rel=1e-6)
        if not mixed[q]:
            assert math.isnan(record["inner"])
            continue
        rows = slice(6 * q, 6 * q + 6)
        scores = scoring.sequence_log_probs(model, encoded["input_ids"][rows], encoded["attention_mask"][rows],
                                            ids[rows], mask[rows])  # (S,)
        objective = scores[correct[q]].mean() - scores[~correct[q]].mean()
        gradient = torch.cat([g.flatten() for g in torch.autograd.grad(objective, params)])
        expected = float(gradient.double() @ update.double())
        assert record["inner"] == pytest.approx(expected, rel=1e-3), q

    with pytest.raises(RuntimeError, match="needs the completions of a sample"):  # one update per sample
        tracker.inner_products(theta, update)
    tracker.sample(step=1)  # Ĵ_q(K): sampled, never stepped
    frame = tracker.frame()
    assert list(frame.columns) == ["step", "prompt", "successes", "inner", "step_length", "value"]
    assert frame["step"].tolist() == [0] * 4 + [1] * 4 and frame["prompt"].tolist() == [0, 1, 2, 3] * 2
    assert (frame["value"] == frame["successes"] / 6).all() and frame["value"].between(0, 1).all()
    assert frame.loc[frame["step"] == 1, ["inner", "step_length"]].isna().all().all()


def test_prompt_tracker_rejects_bad_use(tiny_model, tokenizer):
    problems = lm_task.generate_problems("arithmetic", 2, seed=0, digits=1)
    with pytest.raises(ValueError, match="tracked samples = 1: a prompt's gap needs at least 2"):
        _tracker(tiny_model, tokenizer, problems, samples=1)
    with pytest.raises(ValueError, match="no prompts to track"):
        _tracker(tiny_model, tokenizer, [])
    tracker = _tracker(tiny_model, tokenizer, problems)
    theta = _flat_parameters(tiny_model)
    with pytest.raises(RuntimeError, match="inner_products needs the completions of a sample"):
        tracker.inner_products(theta, torch.zeros_like(theta))
    assert tracker.frame().empty and "value" in tracker.frame()
