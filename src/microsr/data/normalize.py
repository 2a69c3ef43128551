"""Intensity normalisation: percentiles of an image map to 0 and 1, the same way in training,
prediction and scoring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from microsr.errors import InputError
from microsr.io import Image, check_finite

__all__ = ["PercentileNormalizer"]


def _name(image: Image | np.ndarray) -> str:
    if isinstance(image, Image) and image.path is not None:
        return str(image.path)
    return "in-memory image"


@dataclass(frozen=True)
class PercentileNormalizer:
    """Map intensities so that the ``low`` percentile becomes 0 and ``high`` becomes 1.

    An unfitted normaliser (``lo``/``hi`` unset) only records the percentiles; the
    datasets and prediction fit it to each image separately, so a checkpoint storing
    :meth:`to_dict` makes prediction normalise exactly as training did. A fitted one
    applies its fixed ``lo``/``hi`` to any data.

    For a constant image (``hi == lo``) :meth:`fit` uses ``hi = lo + 1``, so the image
    maps to 0 instead of dividing by zero.

    Parameters
    ----------
    low, high : float
        Percentiles (0-100) mapped to 0 and 1.
    lo, hi : float or None
        Fitted intensities of those percentiles; ``None`` until :meth:`fit`.

    Examples
    --------
    >>> import numpy as np
    >>> norm = PercentileNormalizer(low=0, high=100).fit(np.arange(11.0))
    >>> norm(np.array([0.0, 5.0, 10.0])).tolist()
    [0.0, 0.5, 1.0]
    >>> PercentileNormalizer.from_dict(norm.to_dict()) == norm
    True
    """

    low: float = 0.1
    high: float = 99.9
    lo: float | None = None
    hi: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.low < self.high <= 100:
            raise InputError(
                f"normalisation percentiles low={self.low}, high={self.high}: need "
                "0 <= low < high <= 100, e.g. low=0.1, high=99.9."
            )

    @property
    def fitted(self) -> bool:
        """Whether ``lo`` and ``hi`` are set."""
        return self.lo is not None and self.hi is not None

    def fit(
        self,
        image: Image | np.ndarray,
        *,
        max_tiles: int = 32,
        tile: int = 256,
        seed: int = 0,
    ) -> PercentileNormalizer:
        """Return a copy with ``lo``/``hi`` set to the percentiles of ``image``.

        An image with more than ``max_tiles * tile**2`` pixels is estimated from
        ``max_tiles`` tiles at seeded random positions (and frames), so a huge lazy
        image is never loaded whole.

        Parameters
        ----------
        image : Image or numpy.ndarray
            Intensities; any leading axes.
        max_tiles, tile : int
            Sample size for large images.
        seed : int
            Seed for the tile positions.

        Returns
        -------
        PercentileNormalizer
            The fitted normaliser.

        Examples
        --------
        >>> PercentileNormalizer(0, 100).fit(np.full((4, 4), 7.0)).hi
        8.0
        """
        data = image.data if isinstance(image, Image) else np.asarray(image)
        sample = _percentile_sample(data, max_tiles, tile, seed)
        check_finite(sample, _name(image))
        lo, hi = np.percentile(sample, [self.low, self.high])
        if hi <= lo:
            hi = lo + 1.0
        return replace(self, lo=float(lo), hi=float(hi))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Normalise ``x``: ``(x - lo) / (hi - lo)`` as float32."""
        lo, hi = self._bounds()
        return ((np.asarray(x, dtype=np.float32) - lo) / (hi - lo)).astype(np.float32, copy=False)

    def denormalize(self, y: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Undo :meth:`__call__`: ``y * (hi - lo) + lo`` as float32, into ``out`` if given (it may be ``y``).

        Examples
        --------
        >>> y = np.array([0.0, 0.5, 1.0], np.float32)
        >>> PercentileNormalizer(lo=10.0, hi=20.0).denormalize(y, out=y).tolist(), y.tolist()
        ([10.0, 15.0, 20.0], [10.0, 15.0, 20.0])
        """
        lo, hi = self._bounds()
        scaled = np.multiply(np.asarray(y, dtype=np.float32), hi - lo, out=out, dtype=np.float32)
        return np.add(scaled, lo, out=scaled, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Parameters as a plain dict (``lo``/``hi`` only when fitted)."""
        d: dict[str, Any] = {"type": "percentile", "low": self.low, "high": self.high}
        if self.fitted:
            d.update(lo=self.lo, hi=self.hi)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PercentileNormalizer:
        """Inverse of :meth:`to_dict`."""
        if d.get("type", "percentile") != "percentile":
            raise InputError(f"normaliser type {d['type']!r}: only 'percentile' is supported.")
        return cls(low=d["low"], high=d["high"], lo=d.get("lo"), hi=d.get("hi"))

    def _bounds(self) -> tuple[float, float]:
        if self.lo is None or self.hi is None:
            raise InputError("PercentileNormalizer is not fitted; call .fit(image) first.")
        return self.lo, self.hi


def _percentile_sample(data: Any, max_tiles: int, tile: int, seed: int) -> np.ndarray:
    if math.prod(data.shape) <= max_tiles * tile * tile:
        return _read(data, ...)
    *lead, height, width = data.shape
    rng = np.random.default_rng(seed)
    th, tw = min(tile, height), min(tile, width)
    tiles = []
    for _ in range(max_tiles):
        index = tuple(int(rng.integers(n)) for n in lead)
        y, x = int(rng.integers(height - th + 1)), int(rng.integers(width - tw + 1))
        tiles.append(_read(data, index + (slice(y, y + th), slice(x, x + tw))))
    return np.stack(tiles)


def _read(data: Any, index: Any) -> np.ndarray:
    """``data[index]`` of a dask or numpy array as float32, reading only that part."""
    part = data[index]
    if hasattr(part, "compute"):
        # synchronous: a tile is a handful of chunks, and thread pools inside
        # DataLoader workers only add overhead.
        part = part.compute(scheduler="synchronous")
    return np.asarray(part, dtype=np.float32)
