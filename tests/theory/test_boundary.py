"""pass@k (BD1, BD2) and the importance ratios of GRPO and GSPO (BD3, BD4)."""

import math

import pytest
import torch

from rlvr_dynamics.theory import boundary

DTYPE = torch.float64


def test_pass_at_k_is_one_minus_the_chance_that_every_sample_fails():
    # J = 1/2: pass@1 = 1/2, pass@2 = 3/4, pass@3 = 7/8; J = 0: 0 for every k; J = 1: 1.
    log_failure = torch.log(torch.tensor([0.5, 1.0, 0.0], dtype=DTYPE))
    got = boundary.pass_at_k(log_failure, torch.tensor([1, 2, 3]))
    assert torch.allclose(got, torch.tensor([[0.5, 0.75, 0.875], [0, 0, 0], [1, 1, 1]], dtype=DTYPE))


def test_pass_at_k_keeps_its_digits_for_tiny_success_probabilities():
    # J = 1e-12, k = 4: pass@4 = 1 − (1 − J)^4 = 4J − 6J² + … = 4e-12 to 12 digits; formed directly it is 0 or noise.
    success = 1e-12
    got = boundary.pass_at_k(torch.tensor(math.log1p(-success), dtype=DTYPE), torch.tensor([4]))
    assert got.item() == pytest.approx(4e-12, rel=1e-9)


def test_pass_at_k_rejects_impossible_inputs():
    with pytest.raises(ValueError, match="log_failure"):
        boundary.pass_at_k(torch.tensor([0.1], dtype=DTYPE), torch.tensor([1]))
    with pytest.raises(ValueError, match="ks"):
        boundary.pass_at_k(torch.tensor([-0.1], dtype=DTYPE), torch.tensor([0, 1]))


def test_unbiased_estimator_by_hand():
    # n = 4, c = 1: pass@1 = 1/4; pass@2 = 1 − C(3,2)/C(4,2) = 1 − 3/6 = 1/2; pass@4 = 1 (C(3,4) = 0).
    # c = 0: 0 for every k; c = 4: 1 for every k.
    got = boundary.pass_at_k_unbiased(torch.tensor([1, 0, 4]), 4, torch.tensor([1, 2, 4]))
    assert torch.allclose(got, torch.tensor([[0.25, 0.5, 1.0], [0, 0, 0], [1, 1, 1]], dtype=DTYPE))


def test_unbiased_estimator_has_the_exact_pass_at_k_as_its_mean():
    # E over c ~ Binomial(n, J) of (BD2) is (BD1), for every k ≤ n: summed exactly over c.
    n, ks = 20, torch.tensor([1, 3, 7, 20])
    counts = torch.arange(n + 1)
    for success in (0.01, 0.3, 0.9):
        binomial = torch.distributions.Binomial(n, torch.tensor(success, dtype=DTYPE))
        weights = binomial.log_prob(counts.to(DTYPE)).exp()  # (n + 1,)
        mean = (weights.unsqueeze(-1) * boundary.pass_at_k_unbiased(counts, n, ks)).sum(0)
        exact = boundary.pass_at_k(torch.tensor(math.log1p(-success), dtype=DTYPE), ks)
        assert torch.allclose(mean, exact, atol=1e-12)


def test_a_plug_in_estimate_is_biased_where_the_unbiased_one_is_not():
    # The naive 1 − (1 − c/n)^k is biased down at k > 1 (Jensen): the test above would fail with it.
    n, k, success = 10, 5, 0.2
    counts = torch.arange(n + 1)
    weights = torch.distributions.Binomial(n, torch.tensor(success, dtype=DTYPE)).log_prob(counts.to(DTYPE)).exp()
    plug_in = (weights * (1 - (1 - counts / n) ** k)).sum()
    exact = 1 - (1 - success) ** k
    assert exact - plug_in > 0.01


def test_unbiased_estimator_rejects_k_above_n_and_bad_counts():
    with pytest.raises(ValueError, match="n ≥ k"):
        boundary.pass_at_k_unbiased(torch.tensor([1]), 4, torch.tensor([5]))
    with pytest.raises(ValueError, match="correct counts"):
        boundary.pass_at_k_unbiased(torch.tensor([5]), 4, torch.tensor([1]))
    with pytest.raises(ValueError, match="samples"):
        boundary.pass_at_k_unbiased(torch.tensor([0]), 0, torch.tensor([1]))


def test_sequence_ratio_is_the_geometric_mean_of_the_token_ratios():
    # Token ratios 2 and 8 (then padding): the sequence ratio is √16 = 4 on both tokens, 0 (log) on the padding.
    old = torch.zeros(1, 3, dtype=DTYPE)
    new = torch.log(torch.tensor([[2.0, 8.0, 5.0]], dtype=DTYPE))
    mask = torch.tensor([[True, True, False]])
    sequence = boundary.log_importance_ratios(new, old, mask, "sequence").exp()
    token = boundary.log_importance_ratios(new, old, mask, "token").exp()
    assert torch.allclose(sequence, torch.tensor([[4.0, 4.0, 1.0]], dtype=DTYPE))
    assert torch.allclose(token, torch.tensor([[2.0, 8.0, 1.0]], dtype=DTYPE))


def test_clipped_objective_by_hand():
    # One response of two tokens, A = 1, ε = 0.2. Token level: ratios 2 and 0.5 → min(2, 1.2) = 1.2 and
    # min(0.5, 0.8) = 0.5, mean 0.85. Sequence level: ratio 1 on both → 1. With A = −1: token −2 (min(−2, −1.2))
    # and −0.8 (min(−0.5, −0.8)), mean −1.4.
    old = torch.zeros(1, 2, dtype=DTYPE)
    new = torch.log(torch.tensor([[2.0, 0.5]], dtype=DTYPE))
    mask = torch.ones(1, 2, dtype=torch.bool)
    for advantage, level, expected in ((1.0, "token", 0.85), (1.0, "sequence", 1.0), (-1.0, "token", -1.4)):
        got = boundary.clipped_objective(new, old, mask, torch.tensor([advantage], dtype=DTYPE), level, 0.2, 0.2)
        assert got.item() == pytest.approx(expected)


def _random_responses(generator, groups=3, size=4, longest=5, vocab=6):
    """Random token logits and sampled responses of random lengths: logits (n, G, T, V) leaf, tokens, mask."""
    logits = torch.randn(groups, size, longest, vocab, generator=generator, dtype=DTYPE).requires_grad_(True)
    tokens = torch.randint(0, vocab, (groups, size, longest), generator=generator)
    lengths = torch.randint(1, longest + 1, (groups, size), generator=generator)
    mask = torch.arange(longest) < lengths.unsqueeze(-1)
    return logits, tokens, mask


def test_on_policy_gspo_and_grpo_have_the_same_gradient_BD4():
    # At θ = θ_old both ratios are 1: ∇ of either objective is (1/G) Σ_i A_i (1/|o_i|) Σ_t ∇log π(o_i,t).
    generator = torch.Generator().manual_seed(0)
    logits, tokens, mask = _random_responses(generator)
    advantages = torch.randn(tokens.shape[:-1], generator=generator, dtype=DTYPE)
    token_log_probs = torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (n, G, T)
    old = token_log_probs.detach()
    gradients = {}
    for level in boundary.IMPORTANCE_LEVELS:
        objective = boundary.clipped_objective(token_log_probs, old, mask, advantages, level, 3e-4, 4e-4).mean(-1).sum()
        gradients[level] = torch.autograd.grad(objective, logits, retain_graph=True)[0]
    lengths = mask.sum(-1, keepdim=True).to(DTYPE)
    closed_form = torch.autograd.grad((torch.where(mask, token_log_probs, 0.0) / lengths * advantages.unsqueeze(-1)
                                       ).sum(-1).mean(-1).sum(), logits)[0]
    assert torch.allclose(gradients["token"], gradients["sequence"], atol=1e-14)
    assert torch.allclose(gradients["sequence"], closed_form, atol=1e-14)


def test_off_policy_gspo_and_grpo_differ():
    # Away from θ_old the ratios differ per token, so the objectives (and gradients) differ: BD4 is on-policy only.
    generator = torch.Generator().manual_seed(1)
    logits, tokens, mask = _random_responses(generator)
    advantages = torch.randn(tokens.shape[:-1], generator=generator, dtype=DTYPE)
    token_log_probs = torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    old = token_log_probs.detach() + 0.3 * torch.randn(token_log_probs.shape, generator=generator, dtype=DTYPE)
    values = [boundary.clipped_objective(token_log_probs, old, mask, advantages, level, 0.2, 0.2)
              for level in boundary.IMPORTANCE_LEVELS]
    assert not torch.allclose(values[0], values[1])


def test_ratio_and_objective_reject_bad_inputs():
    old = torch.zeros(1, 2, dtype=DTYPE)
    mask = torch.ones(1, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="level"):
        boundary.log_importance_ratios(old, old, mask, "group")
    with pytest.raises(ValueError, match="shapes"):
        boundary.log_importance_ratios(old, old[:, :1], mask, "token")
    with pytest.raises(ValueError, match="at least one token"):
        boundary.log_importance_ratios(old, old, torch.zeros(1, 2, dtype=torch.bool), "token")
    with pytest.raises(ValueError, match="clip range"):
        boundary.clipped_objective(old, old, mask, torch.ones(1, dtype=DTYPE), "token", 1.5, 0.2)
    with pytest.raises(ValueError, match="advantages"):
        boundary.clipped_objective(old, old, mask, torch.ones(2, dtype=DTYPE), "token", 0.2, 0.2)
