"""Shared test helpers: float64 tensors, a strict closeness assertion, and small bigram token policies
with every response enumerated (the exact reference of the token-level tests)."""

import torch

from rlvr_dynamics.theory.policies import TokenPolicy

F64 = torch.float64


def t(values):
    return torch.tensor(values, dtype=F64)


def assert_close(actual, expected, rtol=1e-12, atol=1e-14):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=F64), rtol=rtol, atol=atol)


V = 4  # the vocabulary of the token-level tests, EOS included


def bigram(length, vocab=V):
    """The shared-parameter bigram chain of Section 4 (no position bias)."""
    return TokenPolicy(vocab, length, position_bias=False)


def random_theta(policy, seed, batch=(), scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*batch, policy.n_params, generator=generator, dtype=F64)


def enumerated(policy, verifier, theta):
    """log π (..., R), scores (..., R, D), reward (R,), lengths (R,), tokens (R, T) over every response."""
    tokens, lengths = policy.enumerate_responses()
    log_prob, score = policy.log_prob_and_score(theta, tokens, lengths)
    return log_prob, score, verifier.reward(tokens, lengths), lengths, tokens
