"""What every ``microsr`` command shares: its consoles, the common options, and the thread setting."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

__all__ = ["AxesOption", "PixelSizeOption", "PrecisionOption", "ThreadsOption", "err", "out", "set_threads"]

# Resolved at print time so output follows sys.stdout/sys.stderr even when they are swapped (tests, notebooks).
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

AxesOption = Annotated[
    str | None,
    typer.Option(help="Axes of the data as stored, e.g. YX, ZYX, TYX, YXC; overrides the file's metadata."),
]
PixelSizeOption = Annotated[
    float | None,
    typer.Option("--pixel-size", help="Pixel size in nm; overrides the file's metadata."),
]
PrecisionOption = Annotated[
    str | None,
    typer.Option(help="auto (the fastest of fp32 and bf16, measured once on this machine: `microsr system`), "
                      "fp32, bf16 or fp16."),
]
ThreadsOption = Annotated[
    int | None, typer.Option(min=1, help="CPU threads for PyTorch (default: one per physical core).")
]


def set_threads(threads: int | None) -> None:
    """Use `threads` CPU threads in PyTorch (``None``: leave its default)."""
    if threads is not None:
        import torch  # on use, so that `microsr --help` and bad-input errors need no PyTorch import

        torch.set_num_threads(threads)
