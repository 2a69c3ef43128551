"""What the two fits share: reading the inputs, binned variance-vs-intensity sums, jackknife errors, reports."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from microsr.data.normalize import PercentileNormalizer
from microsr.degrade import Degradation, Gaussian, Intensity, Poisson
from microsr.errors import InputError
from microsr.io import Image, check_finite

ImageInput = Image | np.ndarray | Sequence[Image | np.ndarray]
"""One image (an :class:`~microsr.io.Image` or an array, YX last) or a list of them."""

_BINS = 16  # intensity bins of the variance-vs-intensity fits
_MAX_CLIPPED = 0.01  # bins with a larger fraction of clipped pixels are left out of the fits
_MIN_BIN = 32  # bins with fewer pixels are left out of the fits
_GROUPS = 16  # jackknife groups of tiles


# --------------------------------------------------------------------------- reports


_UNITS = {
    "blur_sigma": "HR px",
    "photons": "at the normalised bright level 1.0",
    "read_noise": "normalised units",
    "intensity_scale": "factor",
    "intensity_offset": "normalised units",
    "a": "LR units",
    "b": "LR units squared",
    "a_normalised": "normalised units",
    "b_normalised": "normalised units squared",
}


def _rows(parameters: Mapping[str, tuple[float, float]]) -> list[tuple[str, str, str]]:
    return [
        (name, "none", "the noise does not grow with intensity: no Poisson step") if math.isinf(value)
        else (name, f"{value:.4g} ± {error:.2g}", _UNITS[name])
        for name, (value, error) in parameters.items()
    ]


def _variance_formula(a: float, b: float, x: str) -> str:
    return f"var = {a:.4g} {x} {'-' if b < 0 else '+'} {abs(b):.4g}"


def _commented_yaml(title: str, command: str, sources: Sequence[str], rows: list[tuple[str, str, str]],
                    degradation: Degradation) -> str:
    """The degradation as YAML below comments saying what was fitted, how, from which images, and the values."""
    lines = [title, f"command: {command}", *(f"input: {source}" for source in sources),
             "Fitted values ± jackknife standard error over groups of image tiles:",
             *(f"  {name}: {value} ({unit})" for name, value, unit in rows)]
    return "".join(f"# {line}\n" for line in lines) + degradation.to_yaml()


# --------------------------------------------------------------------------- inputs


def _as_list(images: ImageInput, role: str) -> list[Image | np.ndarray]:
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    if not items:
        raise InputError(f"no {role} images given; pass at least one image.")
    return items


def _name(image: Image | np.ndarray, role: str, index: int) -> str:
    if isinstance(image, Image) and image.path is not None:
        return str(image.path)
    return f"{role} image {index + 1}"


def _planes(image: Image | np.ndarray, name: str) -> Any:
    """The image's data as ``(planes, Y, X)`` (lazy for an Image), after checking it is usable."""
    data = image.data if isinstance(image, Image) else np.asarray(image)
    if data.ndim < 2 or np.dtype(data.dtype).kind not in "biuf":
        raise InputError(f"{name}: expected a real-valued image with Y and X axes, got dtype {data.dtype} and "
                         f"shape {data.shape}.")
    if "C" in getattr(image, "axes", "") and image.shape[image.axes.index("C")] > 1:
        raise InputError(f"{name}: has several channels (axes {image.axes}); fit one channel at a time.")
    return data.reshape(-1, *data.shape[-2:])


def _normalizer(image: Image | np.ndarray) -> PercentileNormalizer:
    return PercentileNormalizer().fit(image if isinstance(image, Image) else np.asarray(image))


def _read(planes: Any, plane: int, ys: slice, xs: slice, name: str) -> np.ndarray:
    block = np.asarray(planes[plane, ys, xs], dtype=np.float64)
    check_finite(block, name)
    return block


# --------------------------------------------------------------------------- statistics


def _pieces(n: int, size: int) -> list[slice]:
    """Split ``range(n)`` into about ``n / size`` nearly equal contiguous slices."""
    edges = np.linspace(0, n, max(1, round(n / size)) + 1).astype(int)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _bin_index(x: np.ndarray) -> np.ndarray:
    """Intensity bin of each value: 16 equal-width bins from the 0.1th to the 99.9th percentile.

    Equal widths (Foi et al.'s level sets) span the whole intensity range even when most
    pixels are background, which is what fixes the slope of a variance line.
    """
    low, high = np.quantile(x, [0.001, 0.999])
    return np.searchsorted(np.linspace(low, high, _BINS + 1)[1:-1], x)


def _binned_sums(x: np.ndarray, columns: list[np.ndarray], groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Sums of ``1`` and each column per (group, intensity bin of ``x``): shape ``(groups, bins, 1 + columns)``."""
    cell = groups * _BINS + _bin_index(x)
    size = n_groups * _BINS
    sums = [np.bincount(cell, minlength=size)] + [np.bincount(cell, weights=c, minlength=size) for c in columns]
    return np.stack(sums, axis=-1).reshape(n_groups, _BINS, -1).astype(np.float64)


def _unclipped(sums: np.ndarray) -> np.ndarray:
    """The bins (rows) of ``sums`` with enough pixels and at most 1 % clipped, without the clipped count.

    Clipping squeezes the noise, so such bins would bias the noise fit low. Bins are chosen
    by intensity, never by the noise, so dropping whole bins biases nothing.
    """
    n, clipped = sums[:, 0], sums[:, -1]
    kept = sums[(n >= _MIN_BIN) & (clipped <= _MAX_CLIPPED * n)][:, :-1]
    if len(kept) < 3:
        raise InputError(
            f"only {len(kept)} of {_BINS} intensity bins hold {_MIN_BIN} or more pixels with at most "
            f"{_MAX_CLIPPED:.0%} clipped (saturated or cut at zero), too few to fit the noise; use images with a "
            "range of intensities and little saturation."
        )
    return kept


def _variance_line(x: np.ndarray, variance: np.ndarray, n: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of ``variance = slope * x + intercept`` by weighted least squares.

    A sample variance from ``n`` values has variance ``2 v**2 / (n - 1)``; the weights use
    the first pass's line for ``v`` (using the noisy ``variance`` itself would favour the
    bins that came out low).
    """
    weights = n - 1.0
    for _ in range(2):
        design = np.stack([x, np.ones_like(x)], axis=1) * np.sqrt(weights)[:, None]
        slope, intercept = np.linalg.lstsq(design, variance * np.sqrt(weights), rcond=None)[0]
        model = np.maximum(slope * x + intercept, 1e-3 * variance.mean())
        weights = (n - 1.0) / model**2
    return float(slope), float(intercept)


def _groups(n_tiles: int) -> tuple[np.ndarray, int]:
    """The jackknife group of each tile, numbered in reading order, and the number of groups.

    Groups are contiguous runs of tiles, so that neighbouring (correlated) tiles are left
    out together.

    Examples
    --------
    >>> _groups(5)
    (array([0, 1, 2, 3, 4]), 5)
    >>> _groups(40)[0][:6]
    array([0, 0, 0, 1, 1, 2])
    """
    n_groups = min(_GROUPS, n_tiles)
    return np.arange(n_tiles) * n_groups // n_tiles, n_groups


def _jackknife(full: np.ndarray, leave_out: Callable[[int], np.ndarray], n_groups: int) -> np.ndarray:
    """Delete-one-group jackknife standard errors of the estimate ``full``; NaN with fewer than 2 groups.

    ``leave_out(k)`` re-estimates every parameter without group ``k``.
    """
    if n_groups < 2:
        return np.full_like(full, np.nan)
    estimates = np.array([leave_out(k) for k in range(n_groups)])
    return np.sqrt((n_groups - 1) / n_groups * ((estimates - estimates.mean(axis=0)) ** 2).sum(axis=0))


def _noise_parameters(
    alpha: tuple[float, float], beta: tuple[float, float], at_mean: tuple[float, float]
) -> dict[str, tuple[float, float]]:
    """Photons and read noise, with propagated errors, of ``variance = alpha * x + beta``.

    ``photons = 1 / alpha`` and ``read_noise = sqrt(beta)``. When ``alpha <= 0`` the noise
    does not grow with intensity (e.g. inverted contrast), which a Poisson step cannot
    express: photons are infinite (no Poisson step) and the read noise is the root of
    ``at_mean``, the variance at the images' mean intensity. A variance that is not above
    zero gives zero read noise, with ``sqrt(variance + error)`` (clipped at 0) as its error:
    the level one error allows.
    """
    a, da = map(float, alpha)
    photons = (1 / a, da / a**2) if a > 0 else (math.inf, math.nan)
    variance, error = map(float, beta if a > 0 else at_mean)
    if variance > 0:
        return {"photons": photons, "read_noise": (math.sqrt(variance), error / (2 * math.sqrt(variance)))}
    return {"photons": photons, "read_noise": (0.0, math.sqrt(max(variance + error, 0.0)))}


def _noise_steps(parameters: Mapping[str, tuple[float, float]]) -> tuple:
    photons, read = parameters["photons"][0], parameters["read_noise"][0]
    return (*([Poisson(photons=photons)] if math.isfinite(photons) else []),
            *([Gaussian(sigma=read)] if read > 0 else []))


def _clipped(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Mask of the pixels at the limits of an integer ``dtype`` (saturated or cut at zero)."""
    if not np.issubdtype(dtype, np.integer):
        return np.zeros(x.shape, bool)
    limits = np.iinfo(dtype)
    return (x == limits.min) | (x == limits.max)
