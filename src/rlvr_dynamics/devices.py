"""Device handling: ``"auto"`` means CUDA when present, else CPU. Library code never picks
a device silently: every function takes the device it was given."""

from __future__ import annotations

import re

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")
_DEVICE_SPELLING = re.compile(r"auto|cpu|cuda(:[0-9]+)?")


def resolve_device(device: str) -> torch.device:
    """Map a device parameter to a :class:`torch.device`.

    ``"auto"`` → ``cuda`` if available else ``cpu``; ``"cuda"`` without a GPU raises.
    Indexed CUDA devices (``"cuda:1"``) are accepted. Spelling is exact (no case folding, no
    surrounding whitespace), so what a run records as its device is what torch was given.
    """
    if not isinstance(device, str):
        raise ValueError(f"parameter 'device' = {device!r} must be a string, one of {DEVICE_CHOICES}")
    name = device
    if not _DEVICE_SPELLING.fullmatch(name):
        raise ValueError(f"parameter 'device' = {device!r} is unknown: allowed {DEVICE_CHOICES} or 'cuda:N' "
                         "(lower case, no spaces)")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"parameter 'device' = {device!r}: CUDA is not available on this machine")
    index = int(name.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ValueError(f"parameter 'device' = {device!r}: this machine has {torch.cuda.device_count()} CUDA "
                         f"device(s), cuda:0 … cuda:{torch.cuda.device_count() - 1}")
    return torch.device(name)
