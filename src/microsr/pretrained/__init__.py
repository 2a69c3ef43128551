"""Models shipped with microsr: safetensors checkpoints with their JSON description inside.

Each ``NAME.safetensors`` is a :mod:`microsr.checkpoint` file (read it with
:func:`microsr.checkpoint.load_checkpoint`, never unpickled); ``configs/`` in the
repository holds the configuration and command that trained it.

- ``smlm``: SMLM reconstruction (``smlm_unet``, x8) trained on frames simulated with
  the ``deepstorm-test`` preset; the default of ``microsr smlm reconstruct``.

Examples
--------
>>> pretrained_path("smlm").name
'smlm.safetensors'
"""

from __future__ import annotations

from pathlib import Path

from microsr.errors import InputError

__all__ = ["PRETRAINED", "pretrained_path"]

PRETRAINED = ("smlm",)
"""Names of the shipped models."""


def pretrained_path(name: str) -> Path:
    """The checkpoint file of the shipped model ``name``.

    Raises
    ------
    InputError
        For an unknown name, or a model missing from this installation.
    """
    if name not in PRETRAINED:
        raise InputError(f"unknown pretrained model {name!r}; choose one of {', '.join(PRETRAINED)}.")
    path = Path(__file__).with_name(f"{name}.safetensors")
    if not path.is_file():
        raise InputError(f"{path}: the shipped model is missing from this installation; reinstall microsr.")
    return path
