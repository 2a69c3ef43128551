"""A trained model ready to use: :func:`load_model` returns a :class:`Restorer`.

A Restorer joins the network rebuilt from its checkpoint with what it was
trained for (its :class:`~microsr.checkpoint.ModelDescription`: scale, the layout of
its input frames, normalisation, pixel size), so applying any model, single-frame,
sliding-window or frames-as-channels (SIM, SRRF), takes one call through the one
engine: ``load_model("my_model").predict(array)`` or ``.predict_file(...)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from microsr.checkpoint import ModelDescription, checkpoint_path, load_checkpoint, load_state_into
from microsr.data.normalize import PercentileNormalizer
from microsr.errors import InputError
from microsr.io import Image, PathLike, read_image, select_planes
from microsr.models import complete_arch, create_model
from microsr.predict.cluster import DEFAULT_BLOCK, Client, predict_on_cluster
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
        The checkpoint's JSON description as stored (see :mod:`microsr.checkpoint`);
        read it through :attr:`description`.
    path : Path
        The checkpoint file it was loaded from.
    """

    module: nn.Module
    info: dict[str, Any]
    path: Path

    @cached_property
    def description(self) -> ModelDescription:
        """:attr:`info`, typed."""
        return ModelDescription.from_info(self.info, self.path)

    @property
    def scale(self) -> int:
        """Upsampling factor."""
        return self.description.scale

    @property
    def frames(self) -> int:
        """Number of input frames (the network's input channels)."""
        return self.description.frames

    @property
    def input_pixel_size(self) -> float | None:
        """Pixel size (nm) of the inputs it was trained for, if known."""
        return self.description.input_pixel_size

    def predictor(self, *, device: str | torch.device = "cpu", tile: int = DEFAULT_TILE, batch_size: int | None = None,
                  precision: str = "auto", progress: bool = False, overlap: int | None = None) -> Predictor:
        """A :class:`~microsr.predict.engine.Predictor` applying this model as it was trained.

        ``overlap`` (LR pixels of context per tile side) defaults to the receptive field
        recorded at training, with which tiles agree exactly (nothing is cross-faded);
        0 with a ``tile`` at least the image's side runs each plane whole, as in training.
        """
        return Predictor(self.module.to(device), **self._settings(device=device, tile=tile, batch_size=batch_size,
                                                                   precision=precision, progress=progress,
                                                                   overlap=overlap))

    def _settings(self, *, device: str | torch.device = "cpu", tile: int = DEFAULT_TILE, batch_size: int | None = None,
                  precision: str = "auto", progress: bool = False, overlap: int | None = None) -> dict[str, Any]:
        """:meth:`predictor`'s keyword arguments of :class:`~microsr.predict.engine.Predictor`, but the model."""
        d = self.description
        radius = d.receptive_field if overlap is None else overlap
        # Recorded at training, the receptive field need not be measured again: tiles that see all of
        # it agree exactly, with nothing to cross-fade.
        exact = {} if radius is None else {"overlap": radius, "blend": 0}
        return dict(
            scale=d.scale,
            frames=d.frames,
            frame_axis=d.frame_axis,
            channels=d.channels,
            normalizer=PercentileNormalizer.from_dict(dict(d.normalization)),
            tile=tile,
            **exact,
            batch_size=batch_size,
            device=device,
            precision=precision,
            progress=progress,
        )

    def predict(self, image: Image | np.ndarray, *, axes: str | None = None, **options: Any) -> np.ndarray:
        """Restore an in-memory image; returns float32 ``(..., H*scale, W*scale)`` in the input's units.

        A frames-as-channels model (SIM, SRRF) takes ``(frames, Y, X)`` (e.g. ``axes="CYX"``)
        or ``(T, frames, Y, X)`` and returns one plane per acquisition. `options` go to
        :meth:`predictor` (device, tile, batch_size, precision, progress).

        Examples
        --------
        >>> load_model("tirf9").predict(raw_frames, axes="CYX").shape  # doctest: +SKIP
        (512, 512)
        """
        return self.predictor(**options).predict(image, axes=axes)

    def predict_file(
        self,
        source: PathLike | Image,
        output: str | os.PathLike[str],
        *,
        axes: str | None = None,
        pixel_size: float | None = None,
        overwrite: bool = False,
        resume: bool = False,
        rescale: bool = False,
        force: bool = False,
        client: Client | None = None,
        block: int = DEFAULT_BLOCK,
        on_block: Callable[[int, int], None] | None = None,
        **options: Any,
    ) -> Path:
        """Restore an image file of any size into `output` (OME-Zarr or TIFF), streaming tile by tile.

        `source` is a file, or an image already opened lazily (e.g. SIM frames from
        :func:`microsr.sim.wiener.read_raw`). It goes through :meth:`model_input` (pixel size
        checked, planes selected); the output pixel size is the input's divided by the scale.
        `options` go to :meth:`predictor`.

        With a ``distributed.Client`` as `client`, the output (OME-Zarr) is computed on its
        cluster in blocks of about `block` output pixels a side, each written by a worker
        straight into its own chunks (:mod:`microsr.predict.cluster`); the result is
        the same as in one process. `on_block(blocks_done, blocks_total)` is then called
        as blocks finish (an exception from it stops the run, which `resume` continues).

        Examples
        --------
        >>> from microsr.predict.cluster import cluster
        >>> with cluster(workers=2) as client:  # doctest: +SKIP
        ...     load_model("my_model").predict_file("big.ome.zarr", "big_x4.ome.zarr", client=client)
        PosixPath('big_x4.ome.zarr')
        """
        image = self.model_input(source, axes=axes, pixel_size=pixel_size, rescale=rescale, force=force)
        inputs = [] if isinstance(source, Image) else [source]  # an Image's own file is always protected
        if client is not None:
            settings = self._settings(**{**options, "progress": False})
            arch = complete_arch(dict(self.description.arch)) if self.description.arch else {}
            return predict_on_cluster(self.module, arch, settings, image, output,
                                      client=client, block=block, overwrite=overwrite, resume=resume, inputs=inputs,
                                      progress=options.get("progress", False), on_block=on_block)
        return self.predictor(**options).predict_to_file(image, output, overwrite=overwrite, resume=resume,
                                                         inputs=inputs)

    def model_input(
        self, source: PathLike | Image, *, axes: str | None = None, pixel_size: float | None = None,
        rescale: bool = False, force: bool = False,
    ) -> Image:
        """`source` read as the model receives it.

        The pixel size is checked against the model's (see
        :func:`~microsr.predict.engine.check_pixel_size`): `rescale` resamples the input to it,
        `force` proceeds anyway. A frames-as-channels model's input is never resampled (a SIM
        pattern would move with its frames) and keeps the planes the model was trained on
        (its ``lr_planes``, e.g. the middle of T-SIM's three time points) of the axes it has.
        """
        image = source if isinstance(source, Image) else read_image(source, axes=axes, pixel_size=pixel_size)
        d = self.description
        if d.layout == "channels":
            if rescale:
                raise InputError(
                    f"--rescale: {self.path} reads raw frames as channels (a SIM or SRRF model), which cannot be "
                    "resampled (a SIM pattern would move with them); use a model trained at the frames' pixel "
                    "size, or --force."
                )
            image = select_planes(image, {axis: i for axis, i in d.lr_planes.items() if axis in image.axes[:-2]})
        factor = check_pixel_size(image.pixel_size, d.input_pixel_size, rescale=rescale, force=force,
                                  can_rescale=d.layout != "channels")
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
    description = ModelDescription.from_info(info, file)
    if model is None:
        arch = description.arch
        if not arch:
            raise InputError(f"{file}: the model is a custom architecture; pass it as load_model(path, model=...).")
        try:
            model = create_model(**complete_arch(arch))
        except (InputError, TypeError) as exc:  # an edited or damaged description
            raise InputError(f"{file}: cannot rebuild the model this checkpoint describes ({exc}); the file is "
                             "damaged or was edited.") from None
    load_state_into(model, state, file)
    return Restorer(module=model.eval(), info=info, path=file)
