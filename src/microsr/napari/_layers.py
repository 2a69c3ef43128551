"""Napari layers as :class:`microsr.io.Image` objects, and placement of resampled results.

A layer's pixel size is its YX ``scale`` when its ``units`` are lengths (the
layers this plugin makes are in nanometres); layers in pixel units have none.
Axes are, in order of preference: the axes the user typed, the layer's
``axis_labels`` when they spell canonical axes (``t, y, x``), or ``YX`` with
``Z`` (3-D), ``TZ`` (4-D) or ``TCZ`` (5-D) in front.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import pint

from microsr.errors import InputError
from microsr.io import Image

__all__ = ["layer_image", "layer_pixel_size", "resampled_placement"]

_DEFAULT_AXES = {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TCZYX"}
_NANOMETRE = pint.Unit("nm")


def layer_pixel_size(layer: Any) -> float | None:
    """YX pixel size in nm of a napari layer, or None when its units are not lengths.

    Examples
    --------
    >>> from napari.layers import Image as ImageLayer
    >>> layer_pixel_size(ImageLayer(np.zeros((4, 4)), scale=(0.5, 0.5), units="um"))
    500.0
    >>> layer_pixel_size(ImageLayer(np.zeros((4, 4)))) is None
    True
    """
    unit = layer.units[-1]
    if unit.dimensionality != _NANOMETRE.dimensionality:
        return None
    # pint converts through metres; 12 significant digits drop its rounding noise (0.5 um -> 499.99999999999994 nm).
    return float(f"{(layer.scale[-1] * unit).to(_NANOMETRE).magnitude:.12g}")


def layer_image(layer: Any, *, axes: str = "", pixel_size: float | None = None) -> Image:
    """The full-resolution data of a napari image layer as a lazy :class:`~microsr.io.Image`.

    Multiscale layers give their first (largest) level; dask- and zarr-backed data
    stay lazy, so tiles are read as they are needed. A 2-D RGB layer has axes ``CYX``.

    Parameters
    ----------
    layer
        A napari image layer.
    axes
        The data's axes in ``TCZYX`` order, e.g. ``"TYX"``; empty: from the layer (see above).
    pixel_size
        YX pixel size in nm overriding the layer's (see :func:`layer_pixel_size`); None or 0 keeps it.

    Raises
    ------
    InputError
        If the layer is not an image layer, or ``axes`` does not fit it.

    Examples
    --------
    >>> from napari.layers import Image as ImageLayer
    >>> layer = ImageLayer(np.zeros((5, 8, 8)), scale=(1, 20, 20), units="nm", axis_labels=("t", "y", "x"))
    >>> image = layer_image(layer)
    >>> image.axes, image.shape, image.pixel_size
    ('TYX', (5, 8, 8), 20.0)
    """
    if not hasattr(layer, "rgb"):
        raise InputError(f"layer {layer.name!r} is not an image layer; choose an image layer.")
    data = layer.data[0] if layer.multiscale else layer.data
    data = data if isinstance(data, da.Array) else da.from_array(data, chunks=_chunks(data))
    size = pixel_size or layer_pixel_size(layer)
    if layer.rgb:
        if layer.ndim != 2:
            raise InputError(f"layer {layer.name!r} is an RGB stack; microsr takes RGB only as a 2-D image.")
        return Image(da.moveaxis(data, -1, 0), "CYX", pixel_size=size)
    if axes:
        try:
            return Image(data, axes.upper().replace(" ", ""), pixel_size=size)
        except ValueError:
            raise InputError(
                f"axes {axes!r} do not fit layer {layer.name!r} of shape {tuple(data.shape)}: give one letter "
                f"of TCZYX per axis, in that order, ending in YX (e.g. {_DEFAULT_AXES.get(data.ndim, 'TZYX')!r}), "
                "or leave the axes empty."
            ) from None
    labels = "".join(str(label) for label in layer.axis_labels).upper()
    for candidate in (labels, _DEFAULT_AXES.get(data.ndim)):
        try:
            return Image(data, candidate, pixel_size=size)
        except (TypeError, ValueError):
            continue
    raise InputError(f"layer {layer.name!r} has {data.ndim} axes; microsr handles at most five (TCZYX).")


def resampled_placement(layer: Any, factor: float, offset: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    """Layer keywords that place ``layer``'s data resampled by ``factor`` in YX exactly over it.

    ``factor`` is the new pixel size over the old one: 4 for a x4 degradation,
    1/4 for a x4 super-resolution. A new pixel covers ``factor`` old ones, so its
    centre is ``(factor - 1) / 2`` old pixels from the old first pixel's centre.
    ``offset`` is the (row, column) of the layer's pixel where the resampled data
    starts, for a crop.

    Returns
    -------
    dict
        ``scale``, ``translate``, ``units`` and ``axis_labels`` for ``viewer.add_image``.

    Examples
    --------
    >>> from napari.layers import Image as ImageLayer
    >>> placement = resampled_placement(ImageLayer(np.zeros((8, 8)), scale=(80, 80), units="nm"), 1 / 4)
    >>> placement["scale"], placement["translate"]
    ((20.0, 20.0), (-30.0, -30.0))
    """
    scale = np.array(layer.scale, dtype=float)
    translate = np.array(layer.translate, dtype=float)
    translate[-2:] += (np.asarray(offset) + (factor - 1) / 2) * scale[-2:]
    scale[-2:] *= factor
    return {
        "scale": tuple(float(s) for s in scale),
        "translate": tuple(float(t) for t in translate),
        "units": tuple(str(unit) for unit in layer.units),
        "axis_labels": tuple(layer.axis_labels),
    }


def _chunks(data: Any) -> Any:
    """A zarr array's own chunks, so a tile reads whole stored chunks; else dask's automatic chunking."""
    return data.chunks if hasattr(data, "store") and hasattr(data, "chunks") else "auto"
