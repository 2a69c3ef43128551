"""Trained multi-frame models (SIM raw frames, SRRF fluctuation frames as input channels) applied
to one acquisition's frames in memory: a short name for the engine's
:meth:`Restorer.predict <microsr.predict.restorer.Restorer.predict>`, which streams them tile by tile
like any model (files of any size: ``Restorer.predict_file`` or ``microsr predict``).
"""

from __future__ import annotations

import numpy as np
import torch

from microsr.errors import InputError
from microsr.io import PathLike
from microsr.predict.restorer import Restorer, load_model

__all__ = ["predict_sim"]


def predict_sim(model: Restorer | PathLike, raw: np.ndarray, *, device: str | torch.device = "cpu",
                precision: str = "auto") -> np.ndarray:
    """Apply a trained frames-as-channels model (SIM or SRRF) to one acquisition's raw frames.

    The model's input channels are the frames listed in its training configuration
    (``data.channels``); the frames are normalised together, as in training, and the
    output is mapped back to their intensity units.

    Parameters
    ----------
    model
        A :class:`~microsr.predict.restorer.Restorer`, or a model folder / checkpoint path / shipped name.
    raw : numpy.ndarray
        ``(frames, Y, X)``: all frames of the acquisition, in acquisition order.
    device, precision
        Torch device and precision (see :mod:`microsr.runtime.precision`).

    Returns
    -------
    numpy.ndarray
        ``(Y * scale, X * scale)`` float32.

    Examples
    --------
    >>> predict_sim("sim_model", raw_frames).shape  # doctest: +SKIP
    (256, 256)
    """
    restorer = model if isinstance(model, Restorer) else load_model(model)
    if restorer.description.layout != "channels":
        raise InputError(
            f"{restorer.path}: this model was not trained on frames as channels (data.channels); "
            "use `microsr predict` for it."
        )
    if np.ndim(raw) != 3:
        raise InputError(f"raw frames of shape {np.shape(raw)}: give (frames, Y, X), all frames of one acquisition.")
    return restorer.predict(np.asarray(raw), axes="CYX", device=device, precision=precision)
