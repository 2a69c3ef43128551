"""Trained multi-frame models (SIM raw frames, SRRF fluctuation frames as input channels) applied
to one acquisition's frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from microsr.data.normalize import PercentileNormalizer
from microsr.errors import InputError
from microsr.io import check_finite
from microsr.predict.restorer import Restorer, load_model

__all__ = ["predict_sim"]


def predict_sim(model: Any, raw: np.ndarray, *, device: str | torch.device = "cpu") -> np.ndarray:
    """Apply a trained multi-frame SIM model (or SRRF model) to one acquisition's raw frames.

    The model's input channels are the frames listed in its training configuration
    (``data.channels``); the frames are normalised together, as in training, and the
    output is mapped back to their intensity units.

    Parameters
    ----------
    model
        A :class:`~microsr.predict.restorer.Restorer`, or a model folder / checkpoint path.
    raw : numpy.ndarray
        ``(frames, Y, X)``: all frames of the acquisition, in acquisition order.
    device
        Torch device.

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
    channels = _channels(restorer)
    raw = np.asarray(raw, dtype=np.float32)
    if raw.ndim != 3 or max(channels) >= raw.shape[0]:
        raise InputError(
            f"raw frames of shape {raw.shape}: the model {restorer.path} reads frames {list(channels)} of "
            "(frames, Y, X) stacks; give all frames of one acquisition."
        )
    check_finite(raw, "raw frames")
    normalizer = PercentileNormalizer.from_dict(restorer.info["normalization"])
    if not normalizer.fitted:
        normalizer = normalizer.fit(raw)
    inputs = torch.from_numpy(normalizer(raw[list(channels)]))[None].to(device)
    module = restorer.module.to(device)
    with torch.inference_mode():
        output = module(inputs)[0, 0].float().cpu().numpy()
    return normalizer.denormalize(output)


def _channels(restorer: Any) -> Sequence[int]:
    channels = restorer.info.get("run", {}).get("data", {}).get("channels")
    if channels is None:
        raise InputError(
            f"{restorer.path}: this model was not trained on frames as channels (data.channels); "
            "use `microsr predict` for it."
        )
    return channels
