"""An OME-Zarr writer for image layers (File > Save Selected Layers… as ``.ome.zarr``)."""

from __future__ import annotations

from typing import Any

from napari.layers import Layer

from microsr.io import write_image
from microsr.napari._layers import layer_image

__all__ = ["write_ome_zarr"]


def write_ome_zarr(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write one image layer as OME-Zarr 0.5 with a multiscale pyramid, via :func:`microsr.io.write_image`.

    The pixel size comes from the layer's scale when its units are lengths, the
    axes from its axis labels (see :mod:`microsr.napari._layers`); a multiscale
    layer is written from its full-resolution level, chunk by chunk. An existing
    ``path`` is replaced, as napari's save dialog has asked first; the write is
    atomic, so the old data stay until the new are complete.

    Parameters
    ----------
    path
        Output path ending in ``.ome.zarr`` or ``.zarr``.
    data, meta
        The layer's data and state, as napari passes them to a writer.

    Returns
    -------
    list of str
        ``[path]``.

    Examples
    --------
    >>> write_ome_zarr("cells.ome.zarr", data, {"scale": (20, 20), "units": ("nm", "nm")})  # doctest: +SKIP
    ['cells.ome.zarr']
    """
    layer = Layer.create(data, meta, "image")
    write_image(path, layer_image(layer), overwrite=True)
    return [str(path)]
