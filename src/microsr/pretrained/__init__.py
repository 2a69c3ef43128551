"""Models shipped with microsr: safetensors checkpoints with their JSON description inside.

Each ``NAME.safetensors`` is a :mod:`microsr.checkpoint` file (read it with
:func:`microsr.checkpoint.load_checkpoint`, never unpickled); ``configs/`` in the
repository holds the configuration and command that trained it.

- ``smlm``: SMLM reconstruction (``smlm_unet``, x8) trained on frames simulated over the
  ``broad`` range of acquisitions (``configs/smlm_pretrained.yaml``); the default of
  ``microsr smlm reconstruct``.
- ``sim_lowlight``: low-light 2D SIM (``resunet_small``, x2): 15 raw frames (3 angles x
  5 phases, 60 nm pixels, NA 1.2, 525 nm) of 3-12 photons to the normal-light SIM
  image at 30 nm, trained on fields simulated with the ``dlsim-low`` preset
  (``configs/sim15.yaml``, then ``configs/sim_lowlight.yaml``).
- ``srrf5``: 5 frames of a dense blinking stack (64 x 64 frames of 100 nm, EMCCD) to the
  eSRRF image (x2) of 361 frames, trained on ``deepstorm-test`` simulations
  (``configs/srrf5.yaml``; that preset was fitted with the ground truth of Deep-STORM's test stack).
- ``tirf9``: TIRF-SIM (``resunet_small``, x2): 9 raw frames (3 angles x 3 phases, 62.6 nm
  pixels, a 180 nm pattern) to the SIM image at 31.3 nm, trained on fields simulated
  through the measured 488 nm OTF of rDL-SIM's microscope (``configs/tirf9.yaml``).

Any command or function that takes a model accepts these names, e.g.
``microsr sim evaluate ... --model sim_lowlight``.

Examples
--------
>>> pretrained_path("smlm").name
'smlm.safetensors'
"""

from __future__ import annotations

from pathlib import Path

from microsr.errors import InputError

__all__ = ["PRETRAINED", "pretrained_path"]

PRETRAINED = ("smlm", "sim_lowlight", "srrf5", "tirf9")
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
