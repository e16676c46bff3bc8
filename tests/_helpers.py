"""Shared test helpers: float64 tensors and a strict closeness assertion."""

import torch

F64 = torch.float64


def t(values):
    return torch.tensor(values, dtype=F64)


def assert_close(actual, expected, rtol=1e-12, atol=1e-14):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=F64), rtol=rtol, atol=atol)
