"""Device handling: ``"auto"`` means CUDA when present, else CPU. Library code never picks
a device silently: every function takes the device it was given."""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> torch.device:
    """Map a device parameter to a :class:`torch.device`.

    ``"auto"`` → ``cuda`` if available else ``cpu``; ``"cuda"`` without a GPU raises.
    Indexed CUDA devices (``"cuda:1"``) are accepted.
    """
    if not isinstance(device, str):
        raise ValueError(f"parameter 'device' = {device!r} must be a string, one of {DEVICE_CHOICES}")
    name = device.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"parameter 'device' = {device!r}: CUDA is not available on this machine")
        try:
            return torch.device(name)
        except RuntimeError:
            raise ValueError(
                f"parameter 'device' = {device!r} is not a valid CUDA device ('cuda' or 'cuda:N')") from None
    raise ValueError(f"parameter 'device' = {device!r} is unknown: allowed {DEVICE_CHOICES} or 'cuda:N'")
