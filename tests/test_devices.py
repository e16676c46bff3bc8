"""Tests of rlvr_dynamics.devices: "auto" is CUDA when present, else CPU; nothing is picked silently."""

from __future__ import annotations

import pytest
import torch

from rlvr_dynamics.devices import resolve_device


def test_auto_and_cpu():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", [" cpu", "CPU", " CPU\n", "cpu ", "Cuda", "cuda: 0", "cuda:-1", "tpu", ""])
def test_the_spelling_is_exact_so_the_record_is_what_torch_got(name):
    with pytest.raises(ValueError, match="is unknown: allowed"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_a_clear_error(name):
    with pytest.raises(ValueError, match=f"parameter 'device' = '{name}': CUDA is not available"):
        resolve_device(name)


@pytest.mark.parametrize("name, message", [("tpu", "is unknown"), (3, "must be a string")])
def test_unknown_devices_are_rejected(name, message):
    with pytest.raises(ValueError, match=message):
        resolve_device(name)
