"""A trained model ready to use: :func:`load_model` returns a :class:`Restorer`.

A Restorer joins the network rebuilt from its checkpoint with what it was
trained for (scale, frames, normalisation, pixel size), so applying it takes one
call: ``load_model("my_model").predict(array)`` or ``.predict_file(...)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from microsr.checkpoint import checkpoint_path, load_checkpoint, load_state_into
from microsr.data.normalize import PercentileNormalizer
from microsr.errors import InputError
from microsr.io import Image, read_image
from microsr.models import create_model
from microsr.predict.engine import DEFAULT_TILE, Predictor, check_pixel_size, rescale_image

__all__ = ["Restorer", "load_model"]


@dataclass(frozen=True)
class Restorer:
    """A trained network with the facts needed to apply it correctly.

    Attributes
    ----------
    module : torch.nn.Module
        The network, in eval mode.
    info : dict
        The checkpoint's description (see :mod:`microsr.checkpoint`).
    path : Path
        The checkpoint file it was loaded from.
    """

    module: nn.Module
    info: dict[str, Any]
    path: Path

    @property
    def scale(self) -> int:
        """Upsampling factor."""
        return int(self.info["scale"])

    @property
    def frames(self) -> int:
        """Number of adjacent input frames."""
        return int(self.info.get("frames", 1))

    @property
    def input_pixel_size(self) -> float | None:
        """Pixel size (nm) of the inputs it was trained for, if known."""
        return self.info.get("input_pixel_size")

    def predictor(self, *, device: str | torch.device = "cpu", tile: int = DEFAULT_TILE, batch_size: int | None = None,
                  precision: str = "auto", progress: bool = False) -> Predictor:
        """A :class:`~microsr.predict.engine.Predictor` applying this model as it was trained."""
        channels = (self.info.get("run") or {}).get("data", {}).get("channels")
        if channels:
            raise InputError(
                f"{self.path}: this model reads frames {channels} of each acquisition as channels (a SIM or SRRF "
                "model), not a sliding window of a stack; apply it with `microsr sim predict MODEL RAW -o OUT` "
                "(Python: microsr.sim.network.predict_sim)."
            )
        radius = self.info.get("receptive_field")
        # Recorded at training, the receptive field need not be measured again: tiles that see all of
        # it agree exactly, with nothing to cross-fade.
        exact = {} if radius is None else {"overlap": radius, "blend": 0}
        return Predictor(
            self.module.to(device),
            scale=self.scale,
            frames=self.frames,
            frame_axis=self.info.get("frame_axis", "T"),
            normalizer=PercentileNormalizer.from_dict(self.info["normalization"]),
            tile=tile,
            **exact,
            batch_size=batch_size,
            device=device,
            precision=precision,
            progress=progress,
        )

    def predict(self, image: Image | np.ndarray, *, axes: str | None = None, **options: Any) -> np.ndarray:
        """Restore an in-memory image; returns float32 ``(..., H*scale, W*scale)`` in the input's units.

        `options` go to :meth:`predictor` (device, tile, batch_size, precision, progress).
        """
        return self.predictor(**options).predict(image, axes=axes)

    def predict_file(
        self,
        source: str | os.PathLike[str],
        output: str | os.PathLike[str],
        *,
        axes: str | None = None,
        pixel_size: float | None = None,
        overwrite: bool = False,
        resume: bool = False,
        rescale: bool = False,
        force: bool = False,
        **options: Any,
    ) -> Path:
        """Restore an image file of any size into `output` (OME-Zarr or TIFF), streaming tile by tile.

        The input's pixel size is checked against the model's (see
        :func:`~microsr.predict.engine.check_pixel_size`); `rescale` resamples the input to the
        model's pixel size first, `force` proceeds anyway. The output pixel size is the
        input's divided by the scale.
        """
        image = self.model_input(source, axes=axes, pixel_size=pixel_size, rescale=rescale, force=force)
        return self.predictor(**options).predict_to_file(image, output, overwrite=overwrite, resume=resume,
                                                        inputs=[source])

    def model_input(
        self, source: str | os.PathLike[str], *, axes: str | None = None, pixel_size: float | None = None,
        rescale: bool = False, force: bool = False,
    ) -> Image:
        """`source` read as the model receives it: pixel size checked, resampled when `rescale`."""
        image = read_image(source, axes=axes, pixel_size=pixel_size)
        factor = check_pixel_size(image.pixel_size, self.input_pixel_size, rescale=rescale, force=force)
        return image if factor is None else rescale_image(image, factor)


def load_model(path: str | os.PathLike[str], *, model: nn.Module | None = None) -> Restorer:
    """Load a model folder written by ``microsr train`` (its best checkpoint) or a ``.safetensors`` file.

    Parameters
    ----------
    path
        Model folder or checkpoint file.
    model
        For a custom architecture that is not in the registry: an instance to load
        the weights into.

    Returns
    -------
    Restorer

    Raises
    ------
    InputError
        If the checkpoint is missing, not safetensors, damaged, or does not fit the model.

    Examples
    --------
    >>> restorer = load_model("my_model")  # doctest: +SKIP
    >>> restorer.predict(low_res_array).shape  # doctest: +SKIP
    """
    file = checkpoint_path(path)
    state, info = load_checkpoint(file)
    for key in ("scale", "normalization"):
        if key not in info:
            raise InputError(f"{file}: the checkpoint's description lacks {key!r}; it is damaged or not from microsr.")
    if model is None:
        arch = info.get("arch")
        if not arch:
            raise InputError(f"{file}: the model is a custom architecture; pass it as load_model(path, model=...).")
        try:
            model = create_model(**arch)
        except (InputError, TypeError) as exc:  # an edited or damaged description
            raise InputError(f"{file}: cannot rebuild the model this checkpoint describes ({exc}); the file is "
                             "damaged or was edited.") from None
    load_state_into(model, state, file)
    return Restorer(module=model.eval(), info=info, path=file)
