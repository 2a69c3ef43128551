"""The torch device a run uses: named by the user, or the best this machine has."""

from __future__ import annotations

import torch

from microsr.errors import InputError

__all__ = ["pick_device"]


def pick_device(name: str = "auto") -> torch.device:
    """The torch device for `name`: ``auto`` picks cuda, then mps, then cpu.

    Examples
    --------
    >>> pick_device("cpu")
    device(type='cpu')

    Raises
    ------
    InputError
        If ``name`` is not a device, or one this machine does not have (e.g. ``cuda`` with a
        CPU-only PyTorch), rather than failing later, deep inside the first tensor's move.
    """
    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError:
            raise InputError(f"device: {name!r} is not a device; use auto, cpu, cuda, cuda:N or mps.") from None
        available = {
            "cpu": lambda: True,
            "cuda": lambda: torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count(),
            "mps": lambda: getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
        }.get(device.type, lambda: False)
        if not available():
            raise InputError(f"device: {name!r} is not available on this machine (this PyTorch: {torch.__version__}); "
                             "use --device auto or cpu.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
