"""Consistency maps: does a super-resolved image agree with the input it came from?

A prediction that is faithful to its input, degraded back with the model's own
degradation (its typical blur and downsampling, without noise), must look like the
input. Following NanoJ-SQUIRREL (Culley et al., Nature Methods 2018), the degraded
prediction is fitted to the input by a least-squares gain and offset and the absolute
difference is mapped pixel by pixel (:func:`microsr.evaluate.metrics.error_map`, with its
summary RSE and RSP). Large local errors flag structure that the input does not
support: a hallucination, or content the degradation model does not describe.

The map lives on the input's grid and is in the input's intensity units, so it can be
overlaid on the input. Its floor is the input's noise: a perfect prediction of a noisy
input still leaves the noise in the map.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import dask.array as da
import numpy as np

from microsr.degrade import Blur, Degradation
from microsr.errors import InputError
from microsr.evaluate.metrics import ErrorMap, error_map
from microsr.io import Image, in_memory, read_image, write_image
from microsr.predict.restorer import Restorer

__all__ = ["consistency", "consistency_file", "consistency_map", "consistency_path", "degrade_back"]

# A Gaussian's tail beyond 4 sigma holds < 1e-4 of its weight: blurring a band with this
# much context on each side matches blurring the whole image.
_BLUR_TRUNCATE = 4.0
# Prediction rows and columns per block (times the scale): memory stays bounded for any size.
_BLOCK = 512


def degrade_back(
    prediction: np.ndarray | da.Array, degradation: Degradation, pixel_size: float | None = None
) -> np.ndarray:
    """Degrade ``prediction`` to the input's grid with ``degradation``'s typical noiseless steps.

    The noise steps are dropped and every parameter range is replaced by its centre
    (:meth:`~microsr.degrade.Degradation.midpoint`), so the result is deterministic.
    A lazy (dask) prediction is processed block by block with enough context for the
    blur, so predictions larger than memory work; the result, the size of the input,
    is returned in memory.

    Parameters
    ----------
    prediction : numpy.ndarray or dask.array.Array
        Super-resolved image ``(..., H, W)``; ``H`` and ``W`` must be multiples of the
        degradation's scale (as every microsr prediction is).
    degradation : Degradation
        The model's degradation, in any intensity units (its noiseless steps are linear
        up to a gain and offset).
    pixel_size : float, optional
        Pixel size of ``prediction`` in nm; needed when a blur is given in nm.

    Returns
    -------
    numpy.ndarray
        float32 ``(..., H / scale, W / scale)``.

    Raises
    ------
    InputError
        If the size is not a multiple of the scale, or a blur in nm has no pixel size.

    Examples
    --------
    >>> from microsr.degrade import preset
    >>> degrade_back(np.ones((2, 8, 12)), preset("poisson", scale=4)).shape
    (2, 2, 3)
    """
    noiseless = degradation.without_noise().midpoint()
    scale = noiseless.scale
    data = prediction if isinstance(prediction, da.Array) else da.from_array(np.asarray(prediction))
    if data.ndim < 2 or data.shape[-2] % scale or data.shape[-1] % scale:
        raise InputError(
            f"the prediction's shape {tuple(data.shape)} is not a multiple of the model's scale "
            f"{scale} in Y and X; pass the unmodified output of this model."
        )
    context = scale * math.ceil(_reach(noiseless, pixel_size) / scale)
    lead = data.ndim - 2
    data = data.astype(np.float32).rechunk((1,) * lead + (scale * _BLOCK, scale * _BLOCK))
    depth = {data.ndim - 2: context, data.ndim - 1: context}
    crop = context // scale

    def degrade_block(block: np.ndarray) -> np.ndarray:
        low = noiseless(block, pixel_size=pixel_size)
        return low[..., crop : low.shape[-2] - crop, crop : low.shape[-1] - crop]

    out_chunks = data.chunks[:lead] + tuple(tuple(c // scale for c in chunks) for chunks in data.chunks[lead:])
    low = data.map_overlap(
        degrade_block, depth=depth, boundary="reflect", trim=False, chunks=out_chunks, dtype=np.float32
    )
    return low.compute()


def _reach(degradation: Degradation, pixel_size: float | None) -> float:
    """How far (in input pixels of ``degradation``) one output pixel of it looks."""
    reach, factor, size = 0.0, 1, pixel_size
    for step in degradation.steps:
        if isinstance(step, Blur):
            sigma = step.sigma
            if step.unit == "nm":
                if size is None:
                    raise InputError(
                        "the model's blur is in nm but the prediction's pixel size is unknown; "
                        "pass the pixel size."
                    )
                sigma /= size
            reach += _BLUR_TRUNCATE * sigma * factor + 1
        factor *= step.factor
        size = None if size is None else size * step.factor
    return reach + factor


def consistency_map(
    lr: Image | np.ndarray,
    prediction: Image | np.ndarray | da.Array,
    degradation: Degradation,
    pixel_size: float | None = None,
) -> ErrorMap:
    """SQUIRREL-style map of where ``prediction``, degraded back, disagrees with its input ``lr``.

    Parameters
    ----------
    lr : Image or numpy.ndarray
        The input the prediction was made from, as the model received it (after any
        rescaling to the model's pixel size).
    prediction : Image, numpy.ndarray or dask.array.Array
        The super-resolved image, ``scale`` times larger in Y and X than ``lr``.
    degradation : Degradation
        The model's degradation (``Restorer.info["degradation"]``).
    pixel_size : float, optional
        Pixel size of ``prediction`` in nm (taken from it when it is an :class:`Image`).

    Returns
    -------
    ErrorMap
        ``map`` on ``lr``'s grid in ``lr``'s intensity units, ``rse`` (same units) and
        ``rsp`` (Pearson correlation, 1 = fully consistent).

    Raises
    ------
    InputError
        If the shapes do not correspond at the degradation's scale.

    Examples
    --------
    >>> from microsr.degrade import preset
    >>> truth = np.kron(np.random.default_rng(0).random((16, 16)), np.ones((4, 4)))
    >>> lr = preset("clean", scale=4).midpoint()(truth)
    >>> result = consistency_map(lr, truth, preset("poisson", scale=4))
    >>> result.map.shape, round(result.rsp, 3)
    ((16, 16), 1.0)
    """
    if isinstance(prediction, Image):
        pixel_size = prediction.pixel_size if pixel_size is None else pixel_size
        prediction = prediction.data
    # The input and its degraded prediction are compared in memory (the prediction itself is read lazily).
    reference = in_memory(lr, np.float32, copies=4) if isinstance(lr, Image) else np.asarray(lr, dtype=np.float32)
    scale = degradation.scale
    expected = reference.shape[:-2] + tuple(n * scale for n in reference.shape[-2:])
    if tuple(prediction.shape) != expected:
        raise InputError(
            f"the prediction's shape {tuple(prediction.shape)} does not match the input's "
            f"{reference.shape} at scale {scale} (expected {expected}); pass the input this "
            f"prediction was made from."
        )
    return error_map(reference, degrade_back(prediction, degradation, pixel_size))


def consistency_path(output: str | Path) -> Path:
    """Where ``microsr predict --consistency`` writes the map for prediction ``output``.

    Examples
    --------
    >>> consistency_path("restored.ome.zarr").name, consistency_path("out/restored.tif").name
    ('restored.consistency.ome.zarr', 'restored.consistency.tif')
    """
    output = Path(output)
    name = output.name
    suffix = ".ome" + output.suffix if name.lower().endswith(".ome" + output.suffix.lower()) else output.suffix
    return output.with_name(name[: len(name) - len(suffix)] + ".consistency" + suffix)


def consistency(restorer: Restorer, image: Image | np.ndarray, prediction: Image | np.ndarray) -> ErrorMap:
    """How well `prediction`, degraded back with this model's degradation, matches its input `image`.

    See :func:`consistency_map`; `image` is the input as the model
    received it.

    Raises
    ------
    InputError
        If the model was trained on real pairs and so has no degradation to apply.
    """
    spec = restorer.info.get("degradation")
    if spec is None:
        raise InputError(
            f"{restorer.path}: this model was trained on real image pairs, so it has no degradation "
            "to check its predictions' consistency with."
        )
    return consistency_map(image, prediction, Degradation.from_dict(spec))

def consistency_file(
restorer: Restorer,
    source: str | os.PathLike[str],
    prediction: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    axes: str | None = None,
    pixel_size: float | None = None,
    rescale: bool = False,
    force: bool = False,
    overwrite: bool = False,
) -> ErrorMap:
    """Write the consistency map of the prediction file `prediction` of input `source` to `output`.

    The options are those the prediction was made with (see :meth:`~microsr.predict.restorer.Restorer.predict_file`),
    so the input is read exactly as the model received it. The map is on the
    input's grid, in its intensity units and with its pixel size; the prediction is
    read lazily, so it may be larger than memory.

    Examples
    --------
    >>> restorer = load_model("my_model")  # doctest: +SKIP
    >>> restorer.predict_file("cells.tif", "restored.tif")  # doctest: +SKIP
    >>> consistency_file(restorer, "cells.tif", "restored.tif", "consistency.tif").rsp  # doctest: +SKIP
    0.98
    """
    image = restorer.model_input(source, axes=axes, pixel_size=pixel_size, rescale=rescale, force=force)
    result = consistency(restorer, image, read_image(prediction))
    write_image(output, image.replace(data=result.map, path=None), overwrite=overwrite,
                inputs=[source, prediction])
    return result

