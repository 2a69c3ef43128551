"""Numeric precision: use the fastest one the hardware runs natively, and say which.

``"auto"`` picks bfloat16 autocast on CPUs with native bfloat16 arithmetic (AMX or
AVX-512 BF16, detected through PyTorch's own CPU capability checks, never guessed),
bfloat16 on CUDA devices that support it (float16 on older ones), and float32
elsewhere. Autocast runs convolutions and matrix products in the low precision and
keeps reductions and the outputs' accumulation in float32; microsr always returns and
writes float32.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch

from microsr.errors import InputError

__all__ = ["PRECISIONS", "autocast", "cpu_has_native_bf16", "resolve_precision"]

PRECISIONS: dict[str, torch.dtype | None] = {
    "auto": None,
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
"""Precision names accepted by ``--precision`` and the dtype each one computes in."""


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX tiles or AVX-512 BF16).

    Examples
    --------
    >>> isinstance(cpu_has_native_bf16(), bool)
    True
    """
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def resolve_precision(precision: str, device: str | torch.device) -> torch.dtype:
    """The dtype that ``precision`` means on ``device``.

    Parameters
    ----------
    precision : {"auto", "fp32", "bf16", "fp16"}
        ``"auto"`` chooses bfloat16 where the device computes it natively (see the
        module docstring), else float32.
    device : str or torch.device
        Where the model runs.

    Returns
    -------
    torch.dtype

    Raises
    ------
    InputError
        For an unknown name, or bf16 on a CUDA device without bfloat16 support.

    Examples
    --------
    >>> resolve_precision("fp32", "cpu")
    torch.float32
    >>> resolve_precision("auto", "cpu") in (torch.float32, torch.bfloat16)
    True
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r} is unknown; choose one of: {', '.join(PRECISIONS)}.")
    device = torch.device(device)
    if precision != "auto":
        dtype = PRECISIONS[precision]
        if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise InputError(f"{device} does not support bfloat16; use --precision fp16 or fp32.")
        return dtype
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def autocast(device: str | torch.device, dtype: torch.dtype) -> AbstractContextManager:
    """Autocast to ``dtype`` on ``device``'s type; a no-op for float32.

    Examples
    --------
    >>> with autocast("cpu", torch.bfloat16):
    ...     y = torch.nn.functional.conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3))
    >>> y.dtype
    torch.bfloat16
    """
    device = torch.device(device)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
