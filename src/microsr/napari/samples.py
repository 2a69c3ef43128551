"""Sample data for napari's File > Open Sample menu."""

from __future__ import annotations

from typing import Any

import numpy as np

from microsr.io import read_image
from microsr.samples import sample_path
from microsr.simulate.smlm import preset, simulate_stack

__all__ = ["filaments_sample", "smlm_sample"]

SMLM_FRAMES = 200
"""Frames of the simulated SMLM stack (about a quarter of a second to simulate)."""


def filaments_sample() -> list[tuple[np.ndarray, dict[str, Any], str]]:
    """The image shipped with microsr: 512 x 512 synthetic filaments, 16-bit, 20 nm pixels.

    Examples
    --------
    >>> data, meta, kind = filaments_sample()[0]
    >>> data.shape, meta["scale"], meta["units"], kind
    ((512, 512), (20.0, 20.0), ('nm', 'nm'), 'image')
    """
    image = read_image(sample_path())
    size = image.pixel_size
    meta = {"name": "filaments", "scale": (size, size), "units": ("nm", "nm"), "axis_labels": ("y", "x")}
    return [(np.asarray(image.data), meta, "image")]


def smlm_sample() -> list[tuple[np.ndarray, dict[str, Any], str]]:
    """A simulated SMLM stack: blinking emitters on filaments with Deep-STORM's test camera, 100 nm pixels.

    Made by :func:`microsr.simulate.smlm.simulate_stack` with the ``deepstorm-test``
    settings (64 x 64 pixels, :data:`SMLM_FRAMES` frames, seed 0).

    Examples
    --------
    >>> data, meta, _ = smlm_sample()[0]
    >>> data.shape, data.dtype.name, meta["axis_labels"]
    ((200, 64, 64), 'uint16', ('t', 'y', 'x'))
    """
    config = preset("deepstorm-test")
    stack, _ = simulate_stack(config, SMLM_FRAMES, seed=0)
    size = config.pixel_size
    meta = {"name": "SMLM simulation", "scale": (1.0, size, size), "units": ("pixel", "nm", "nm"),
            "axis_labels": ("t", "y", "x")}
    return [(stack, meta, "image")]
