"""Shared test helpers: float64 tensors, a strict closeness assertion, small bigram token policies with
every response enumerated (the exact reference of the token-level tests), and the peak memory of a run in a
fresh interpreter (the memory estimates of the chapter configs are checked against it)."""

import os
import subprocess
import sys

import pytest
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


measures_memory = pytest.mark.skipif(not os.path.exists("/proc/self/statm"),
                                     reason="the peak-memory measurement reads Linux's /proc")
"""Marks a test that calls :func:`peak_rss_bytes`."""

_PEAK_SCRIPT = """
import resource, sys
def resident():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()
exec(sys.argv[1])
before = resident()
exec(sys.argv[2])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)
"""


def peak_rss_bytes(setup: str, run: str) -> int:
    """The peak resident memory that ``run`` adds, in a fresh interpreter (Linux only: it reads /proc):
    ``setup`` imports and warms up (a tiny run, so that first-use allocations of the libraries are not
    counted), then ``run`` executes in the same namespace. Returns ru_maxrss at the end minus the resident
    size just before ``run``."""
    result = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, setup, run], capture_output=True, text=True,
                            timeout=300, check=False)
    if result.returncode:
        raise AssertionError(f"the measured run failed:\n{result.stderr[-3000:]}")
    return int(result.stdout.split()[-1])
