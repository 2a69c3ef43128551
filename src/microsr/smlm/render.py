"""Render a localization table as an image: each localization a Gaussian of its precision (or a point)."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from scipy import ndimage

from microsr.errors import InputError
from microsr.smlm.table import _check_table

__all__ = ["render"]


def render(
    table: np.ndarray,
    pixel_size: float,
    shape: tuple[int, int] | None = None,
    *,
    method: Literal["gaussian", "histogram", "bilinear"] = "gaussian",
    sigma: float = 20.0,
    frames: int | None = None,
    weights: Literal["count", "intensity"] = "count",
) -> np.ndarray:
    """Render localizations as an image at any pixel size.

    Parameters
    ----------
    table
        A localization table.
    pixel_size
        Output pixel size in nm.
    shape
        Output ``(rows, columns)``; the image covers ``[0, columns * pixel_size)`` in x and
        likewise in y. Default: just large enough for every localization.
    method
        ``"histogram"``: each localization adds its weight to the pixel it falls in.
        ``"bilinear"``: its weight is split between the four nearest pixel centres so
        the image's centroid is exactly the localization's position.
        ``"gaussian"``: bilinear, then blurred by a Gaussian of std ``sigma`` nm, so
        each localization becomes a normalised Gaussian spot.
    sigma
        Gaussian std in nm (``method="gaussian"`` only).
    frames
        ``None``: one image of all frames. An integer ``T``: a ``(T, rows, columns)``
        stack with one image per frame (frames ``1..T``; others are left out).
    weights
        ``"count"``: each localization weighs 1; ``"intensity"``: its photons.

    Returns
    -------
    numpy.ndarray
        ``float32`` image ``(rows, columns)`` or stack ``(frames, rows, columns)``;
        localizations outside it are left out.

    Raises
    ------
    InputError
        If a parameter is out of range or ``weights="intensity"`` meets missing intensities.

    Examples
    --------
    >>> from microsr.smlm.table import localization_table
    >>> table = localization_table([1, 1, 2], [150.0, 160.0, 450.0], [50.0, 50.0, 250.0])
    >>> render(table, pixel_size=100.0, shape=(3, 5), method="histogram")
    array([[0., 2., 0., 0., 0.],
           [0., 0., 0., 0., 0.],
           [0., 0., 0., 0., 1.]], dtype=float32)
    >>> render(table, 100.0, (3, 5), method="bilinear", frames=2).sum(axis=(1, 2)).tolist()
    [2.0, 1.0]
    """
    table = _check_table(table, "the localizations")
    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise InputError(f"pixel_size={pixel_size!r}: give the output pixel size in nm (a positive number).")
    if method not in ("gaussian", "histogram", "bilinear"):
        raise InputError(f"method={method!r}: choose 'gaussian', 'histogram' or 'bilinear'.")
    if method == "gaussian" and not (math.isfinite(sigma) and sigma > 0):
        raise InputError(f"sigma={sigma!r}: give the Gaussian's std in nm (a positive number).")
    if weights not in ("count", "intensity"):
        raise InputError(f"weights={weights!r}: choose 'count' or 'intensity'.")
    if frames is not None and frames < 1:
        raise InputError(f"frames={frames!r}: give the number of frames (at least 1), or None for one image.")
    if shape is None:
        extent = [np.max(table[axis], initial=0.0) for axis in ("y", "x")]
        shape = tuple(int(e // pixel_size) + 1 for e in extent)
    rows, cols = (int(n) for n in shape)
    if rows < 1 or cols < 1:
        raise InputError(f"shape={shape!r}: the output needs at least one row and one column.")
    weight = np.ones(len(table)) if weights == "count" else table["intensity"].astype(np.float64)
    if not np.isfinite(weight).all():
        raise InputError("weights='intensity' needs an intensity for every localization; some are missing (NaN).")
    plane = np.zeros(len(table), np.int64) if frames is None else table["frame"] - 1
    n_planes = 1 if frames is None else int(frames)
    u, v = table["x"] / pixel_size, table["y"] / pixel_size
    if method == "histogram":
        corners = [(np.floor(v), np.floor(u), weight)]
    else:
        # Pixel-centre coordinates: pixel j's centre is at u = j + 0.5.
        u0, v0 = np.floor(u - 0.5), np.floor(v - 0.5)
        fu, fv = u - 0.5 - u0, v - 0.5 - v0
        corners = [
            (v0 + dv, u0 + du, weight * (fv if dv else 1 - fv) * (fu if du else 1 - fu))
            for dv in (0, 1)
            for du in (0, 1)
        ]
    row, col, w = (np.concatenate(parts) for parts in zip(*corners))
    planes = np.tile(plane, len(corners))
    keep = (row >= 0) & (row < rows) & (col >= 0) & (col < cols) & (planes >= 0) & (planes < n_planes)
    index = (planes[keep] * rows + row[keep].astype(np.int64)) * cols + col[keep].astype(np.int64)
    image = np.bincount(index, w[keep], minlength=n_planes * rows * cols).reshape(n_planes, rows, cols)
    if method == "gaussian":
        image = ndimage.gaussian_filter(image, (0, sigma / pixel_size, sigma / pixel_size), mode="constant")
    return (image[0] if frames is None else image).astype(np.float32)
