"""Fit a degradation to your microscope, from LR/HR pairs or from LR images alone.

Training degrades high-resolution (HR) images into low-resolution (LR) inputs; the closer
that degradation is to the real acquisition, the better the trained model does on real
data. Two estimates are offered:

:func:`fit_degradation` (real LR/HR pairs, PSSR2's idea of fitting the crappifier to
real data): the HR image is blurred and area-downsampled into a noiseless LR prediction;
its difference from the real LR is the real noise, whose variance as a function of
intensity fixes the Poisson and Gaussian noise. Only the blur is searched for, by
Bayesian optimisation (optuna's ``GPSampler``); the intensity map and the noise are
solved in closed form for every blur tried.

:func:`fit_noise` (LR images only): the Poisson-Gaussian noise model
``var(I) = a * I + b`` of Foi et al. (2008), "Practical Poissonian-Gaussian noise
modeling and fitting for single-image raw-data", IEEE Trans. Image Process. 17(10),
1737-1754, estimated from a high-pass residual (Immerkær 1996) of the images' smooth regions.

Units follow training and prediction (see ``docs/architecture.md``): each HR image is
normalised by its own 0.1/99.9 percentiles (PercentileNormalizer) and degraded in those
units, and a real LR image is normalised by its own percentiles, as prediction does.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from rich.progress import Progress
from scipy import ndimage

from microsr import __version__
from microsr.data.normalize import PercentileNormalizer
from microsr.degrade import Blur, Degradation, Downsample, Gaussian, Intensity, Poisson, preset
from microsr.errors import InputError
from microsr.io import Image, check_finite

__all__ = ["DegradationFit", "NoiseFit", "fit_degradation", "fit_noise"]

ImageInput = Image | np.ndarray | Sequence[Image | np.ndarray]
"""One image (an :class:`~microsr.io.Image` or an array, YX last) or a list of them."""

_BINS = 16  # intensity bins of the variance-vs-intensity fits
_MAX_CLIPPED = 0.01  # bins with a larger fraction of clipped pixels are left out of the fits
_MIN_BIN = 32  # bins with fewer pixels are left out of the fits
_GROUPS = 16  # jackknife groups of tiles
_REGION = 128  # LR pixels per side of a region blurred in one piece (fit_degradation)
_TILE = 16  # LR pixels per side of a jackknife tile (fit_degradation)
_NOISE_TILE = 64  # LR pixels per side of a tile (fit_noise)
_LOCAL_POINTS = 9  # blur sigmas evaluated around the optimiser's best for the final parabola
_RECENTRE = 3  # times the local grid may move when its parabola's vertex lies on its edge
_TRUNCATE = 4.0  # scipy's gaussian_filter reaches 4 sigma: the margin a region needs


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class DegradationFit:
    """A degradation fitted to real LR/HR pairs by :func:`fit_degradation`.

    Attributes
    ----------
    degradation : Degradation
        Blur (HR px) -> area downsampling -> Poisson -> Gaussian -> intensity map, all
        fixed values. The noise is in the HR's normalised units (photons at the HR's
        bright level 1.0); the final intensity step maps the result to the real LR's own
        normalisation, which is what a model sees at prediction. Noise steps whose
        fitted level is not above zero, and an intensity step equal to the identity
        within its uncertainty, are left out.
    parameters : dict
        ``name -> (value, uncertainty)`` for ``blur_sigma`` (HR px), ``photons``,
        ``read_noise``, ``intensity_scale`` and ``intensity_offset``.
    objective : float
        Mean square of the real LR's residual (real LR minus the fitted noiseless
        prediction), in the real LR's normalised units: the noise variance plus whatever
        structure the model misses; lower is better.
    noise_std : (float, float)
        Standard deviation of the real LR's residual (real LR minus the fitted noiseless
        prediction) and of the same residual for the fitted degradation applied to the
        HR (noise drawn with ``seed``), in the real LR's normalised units.
    scale, trials, seed : int
        Settings of the fit.
    sources : tuple of str
        The HR and LR inputs, for the record.
    """

    degradation: Degradation
    parameters: Mapping[str, tuple[float, float]]
    objective: float
    noise_std: tuple[float, float]
    scale: int
    trials: int
    seed: int
    sources: tuple[str, ...] = ()

    def summary(self) -> list[tuple[str, str, str]]:
        """``(name, value ± uncertainty, unit)`` rows for a report, such as the CLI's table."""
        real, simulated = self.noise_std
        return [*_rows(self.parameters),
                ("LR noise std", f"real {real:.4g}, fitted {simulated:.4g}", "normalised LR units")]

    def to_yaml(self, command: str | None = None) -> str:
        """The degradation as YAML for ``microsr train --degradation``, with provenance comments.

        Comment lines give the microsr version, ``command`` (default: the Python call),
        the inputs, and every fitted value with its uncertainty.

        Examples
        --------
        >>> import numpy as np
        >>> from scipy.ndimage import gaussian_filter
        >>> hr = gaussian_filter(np.random.default_rng(0).random((64, 64)), 2)
        >>> lr = Degradation((Downsample(2), Gaussian(sigma=0.01)))(hr, seed=0)
        >>> text = fit_degradation(hr, lr, trials=3).to_yaml("my command")
        >>> print(text.splitlines()[0])  # doctest: +ELLIPSIS
        # Degradation fitted by microsr ... to 1 LR/HR pair(s) (scale 2, 3 trials, seed 0).
        >>> Degradation.from_yaml(text).scale
        2
        """
        command = command or f"microsr.fit.fit_degradation(scale={self.scale}, trials={self.trials}, seed={self.seed})"
        header = [
            f"Degradation fitted by microsr {__version__} to {len(self.sources) // 2} LR/HR pair(s) "
            f"(scale {self.scale}, {self.trials} trials, seed {self.seed}).",
            f"command: {command}",
            *(f"input: {source}" for source in self.sources),
        ]
        return _commented_yaml(header, self.summary(), self.degradation)


@dataclass(frozen=True, eq=False)
class NoiseFit:
    """A Poisson-Gaussian noise model fitted to LR images alone by :func:`fit_noise`.

    Attributes
    ----------
    degradation : Degradation
        The ``"poisson"`` preset's blur and downsampling at ``scale``, then Poisson and
        Gaussian noise with the fitted levels in normalised units (steps whose level is
        not above zero are left out).
    parameters : dict
        ``name -> (value, uncertainty)``: ``a`` and ``b`` of ``var(I) = a * I + b`` in the
        LR's own intensity units; ``a_normalised`` and ``b_normalised``, the same model for
        intensities normalised by the LR's 0.1/99.9 percentiles; ``photons`` and
        ``read_noise``, the degradation's values (see :func:`fit_noise`).
    points : numpy.ndarray
        ``(bins, 3)``: mean intensity, noise variance and number of pixels of each
        intensity bin used, in the LR's own units; the points the line was fitted to.
    normalizer : PercentileNormalizer
        The ``lo``/``hi`` that define the normalised units (the median over the images).
    scale : int
        Downsampling factor of ``degradation``.
    sources : tuple of str
        The LR inputs, for the record.
    """

    degradation: Degradation
    parameters: Mapping[str, tuple[float, float]]
    points: np.ndarray
    normalizer: PercentileNormalizer
    scale: int
    sources: tuple[str, ...] = ()

    def summary(self) -> list[tuple[str, str, str]]:
        """``(name, value ± uncertainty, unit)`` rows, then the noise model in both units."""
        (a, _), (b, _) = self.parameters["a"], self.parameters["b"]
        (a_n, _), (b_n, _) = self.parameters["a_normalised"], self.parameters["b_normalised"]
        lo, hi = self.normalizer.lo, self.normalizer.hi
        return [
            *_rows(self.parameters),
            ("noise model", _variance_formula(a, b, "I"), "LR units"),
            ("noise model, normalised", _variance_formula(a_n, b_n, "y"), f"y = (I - {lo:.4g}) / {hi - lo:.4g}"),
        ]

    def to_yaml(self, command: str | None = None) -> str:
        """The degradation as YAML, with the noise model and provenance as comments.

        Examples
        --------
        >>> import numpy as np
        >>> lr = np.random.default_rng(0).poisson(np.linspace(20, 200, 128 * 128).reshape(128, 128))
        >>> text = fit_noise(lr.astype(float), scale=2).to_yaml()
        >>> Degradation.from_yaml(text).scale
        2
        """
        command = command or f"microsr.fit.fit_noise(scale={self.scale})"
        header = [
            f"Noise model var(I) = a * I + b (Foi et al. 2008) fitted by microsr {__version__} to "
            f"{len(self.sources)} LR image(s); the blur is the 'poisson' preset's.",
            f"command: {command}",
            *(f"input: {source}" for source in self.sources),
        ]
        return _commented_yaml(header, self.summary(), self.degradation)


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


def _commented_yaml(header: list[str], rows: list[tuple[str, str, str]], degradation: Degradation) -> str:
    lines = [*header, "Fitted values ± jackknife standard error over groups of image tiles:",
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


def _infer_scale(hr_shape: tuple[int, int], lr_shape: tuple[int, int], scale: int | None, names: str) -> int:
    """The integer ``s`` with ``LR = ceil(HR / s)`` on both axes (``scale`` checked if given).

    Examples
    --------
    >>> _infer_scale((600, 901), (150, 226), None, "pair")
    4
    """
    low, high = 1, math.inf
    for n_hr, n_lr in zip(hr_shape, lr_shape):
        # ceil(H / s) == h  <=>  H / h <= s < H / (h - 1)
        low = max(low, math.ceil(n_hr / n_lr))
        if n_lr > 1:
            high = min(high, math.ceil(n_hr / (n_lr - 1)) - 1)
    sizes = f"HR {hr_shape[0]}×{hr_shape[1]}, LR {lr_shape[0]}×{lr_shape[1]}"
    if scale is not None and not low <= scale <= high:
        expected = "×".join(str(math.ceil(n / scale)) for n in hr_shape)
        raise InputError(
            f"{names}: at scale {scale} the LR should be {expected} (ceil(HR / scale)) but the sizes are "
            f"{sizes}; check the scale and that the images show the same field of view."
        )
    if low > high:
        larger = any(n_lr > n_hr for n_hr, n_lr in zip(hr_shape, lr_shape))
        swapped = " (the LR is larger: are LR and HR swapped?)" if larger else ""
        raise InputError(
            f"{names}: the sizes ({sizes}) are not related by an integer scale (LR = ceil(HR / scale)){swapped}; "
            "crop both images to the same field of view or check the pairing."
        )
    return low if scale is None else scale


# --------------------------------------------------------------------------- fit_degradation


@dataclass(frozen=True)
class _Region:
    """One piece of an LR/HR pair, normalised: the HR with a margin for the blur, and its LR."""

    hr: np.ndarray
    lr: np.ndarray
    offset: tuple[int, int]  # where the LR-aligned HR core starts in ``hr``
    tiles: np.ndarray  # jackknife tile number of every LR pixel
    clipped: np.ndarray  # LR pixels at an integer type's limits


@dataclass(frozen=True)
class _Pair:
    """An LR/HR pair as ``(planes, Y, X)`` arrays (lazy for files), with normalisers and names."""

    hr: Any
    lr: Any
    hr_normalizer: PercentileNormalizer
    lr_normalizer: PercentileNormalizer
    hr_name: str
    lr_name: str


def _pairs(hr_images: list, lr_images: list, scale: int | None) -> tuple[list[_Pair], int]:
    """The pairs, checked, and their common scale."""
    if len(hr_images) != len(lr_images):
        raise InputError(
            f"{len(hr_images)} HR images but {len(lr_images)} LR images; pairs are matched by position, so give "
            "the same number of each."
        )
    pairs, scales = [], set()
    for i, (hr, lr) in enumerate(zip(hr_images, lr_images)):
        hr_name, lr_name = _name(hr, "HR", i), _name(lr, "LR", i)
        hr_planes, lr_planes = _planes(hr, hr_name), _planes(lr, lr_name)
        names = f"{hr_name} and {lr_name}"
        if hr_planes.shape[0] != lr_planes.shape[0]:
            raise InputError(f"{names}: {hr_planes.shape[0]} HR planes but {lr_planes.shape[0]} LR planes; the "
                             "leading axes (T, Z) must match.")
        scales.add(_infer_scale(hr_planes.shape[1:], lr_planes.shape[1:], scale, names))
        pairs.append(_Pair(hr_planes, lr_planes, _normalizer(hr), _normalizer(lr), hr_name, lr_name))
    if len(scales) > 1:
        raise InputError(f"the pairs have different scales ({', '.join(map(str, sorted(scales)))}); fit each scale "
                         "separately or pass the scale.")
    return pairs, scales.pop()


def _regions(pairs: list[_Pair], scale: int, margin: int, max_regions: int, seed: int) -> tuple[list[_Region], int]:
    """Normalised regions of all pairs (a seeded random subset of at most ``max_regions``) and the tile count."""
    s = scale
    # Only LR pixels whose whole HR block exists: Downsample pads partial blocks at the edge.
    boxes = [
        (pair, plane, ys, xs)
        for pair in pairs
        for plane in range(pair.hr.shape[0])
        for ys in _pieces(pair.hr.shape[1] // s, _REGION)
        for xs in _pieces(pair.hr.shape[2] // s, _REGION)
    ]
    if not boxes:
        raise InputError(f"the HR images are smaller than one LR pixel at scale {s}; check the scale.")
    if len(boxes) > max_regions:
        chosen = np.random.default_rng(seed).choice(len(boxes), max_regions, replace=False)
        boxes = [boxes[i] for i in sorted(chosen)]
    regions, n_tiles = [], 0
    for pair, plane, ys, xs in boxes:
        height, width = pair.hr.shape[1:]
        # The margin is a multiple of the scale, so the region keeps the LR pixel grid.
        y0, x0 = max(0, ys.start * s - margin), max(0, xs.start * s - margin)
        y1, x1 = min(height, ys.stop * s + margin), min(width, xs.stop * s + margin)
        hr = pair.hr_normalizer(_read(pair.hr, plane, slice(y0, y1), slice(x0, x1), pair.hr_name))
        raw = _read(pair.lr, plane, ys, xs, pair.lr_name)
        lr = pair.lr_normalizer(raw)
        tiles = np.zeros(lr.shape, np.int64)
        for ty in _pieces(lr.shape[0], _TILE):
            for tx in _pieces(lr.shape[1], _TILE):
                tiles[ty, tx] = n_tiles
                n_tiles += 1
        regions.append(_Region(hr.astype(np.float64), lr.astype(np.float64), (ys.start * s - y0, xs.start * s - x0),
                               tiles, _clipped(raw, pair.lr.dtype)))
    return regions, n_tiles


def _pieces(n: int, size: int) -> list[slice]:
    """Split ``range(n)`` into about ``n / size`` nearly equal contiguous slices."""
    edges = np.linspace(0, n, max(1, round(n / size)) + 1).astype(int)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _noiseless(region: _Region, sigma: float, scale: int) -> np.ndarray:
    """Blur the region's HR by ``sigma`` HR px and area-downsample its core onto the LR grid."""
    rng = np.random.default_rng(0)  # the steps are fixed-valued and draw nothing
    blurred = Blur(sigma=sigma)(region.hr, rng)
    oy, ox = region.offset
    h, w = region.lr.shape
    return Downsample(scale)(blurred[oy : oy + h * scale, ox : ox + w * scale], rng)


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


def _solve(sums: np.ndarray) -> tuple[np.ndarray, float]:
    """Closed-form intensity map and noise model from binned sums; return (theta, objective).

    ``sums[bin]`` = (n, Σc, Σy, Σc², Σcy, Σy², number clipped) with ``c`` the noiseless
    prediction and ``y`` the real LR, modelled as ``y = g * (c + noise) + o`` with
    ``var(noise) = alpha * c + beta``. ``theta = (g, o, alpha, beta, variance at the mean
    c)``; the objective is the mean square of ``y - g * c - o``.
    """
    sums = _unclipped(sums)
    n, sc, sy, scc, scy, syy = sums.T
    N, Sc, Sy, Scc, Scy, _ = sums.sum(axis=0)
    g = (N * Scy - Sc * Sy) / (N * Scc - Sc**2)
    o = (Sy - g * Sc) / N
    rss = syy - 2 * g * scy - 2 * o * sy + g**2 * scc + 2 * g * o * sc + o**2 * n
    mean_c = np.maximum(sc / n, 0.0)  # the Poisson step clips at 0
    variance = rss / n
    slope, intercept = _variance_line(mean_c, variance, n)
    alpha, beta = slope / g**2, intercept / g**2
    theta = np.array([g, o, alpha, beta, alpha * max(Sc / N, 0.0) + beta])
    return theta, float(rss.sum() / N)


class _Objective:
    """Binned sums per jackknife group for each blur sigma tried (cached)."""

    def __init__(self, regions: list[_Region], n_tiles: int, scale: int) -> None:
        self.regions, self.scale = regions, scale
        group_of_tile, self.n_groups = _groups(n_tiles)
        self.groups = np.concatenate([group_of_tile[r.tiles].ravel() for r in regions])
        self.y = np.concatenate([r.lr.ravel() for r in regions])
        self.clipped = np.concatenate([r.clipped.ravel() for r in regions]).astype(np.float64)
        self.sums: dict[float, np.ndarray] = {}

    def clean(self, sigma: float) -> np.ndarray:
        return np.concatenate([_noiseless(r, sigma, self.scale).ravel() for r in self.regions])

    def group_sums(self, sigma: float) -> np.ndarray:
        if sigma not in self.sums:
            c, y = self.clean(sigma), self.y
            self.sums[sigma] = _binned_sums(c, [c, y, c * c, c * y, y * y, self.clipped], self.groups, self.n_groups)
        return self.sums[sigma]

    def solve(self, sigma: float, leave_out: int | None = None) -> tuple[np.ndarray, float]:
        """:func:`_solve` on all groups, or on all but ``leave_out``."""
        sums = self.group_sums(sigma)
        return _solve(sums.sum(axis=0) - (0 if leave_out is None else sums[leave_out]))

    def __call__(self, sigma: float, leave_out: int | None = None) -> float:
        return self.solve(sigma, leave_out)[1]

    def refine(self, sigma: float, upper: float) -> np.ndarray:
        """Evaluate a grid of blur sigmas around ``sigma`` (within ``[0, upper]``) for :meth:`best_sigma`."""
        half = 0.15 * sigma + 0.02 * upper
        grid = np.clip(sigma + half * np.linspace(-1, 1, _LOCAL_POINTS), 0.0, upper)
        for value in grid:
            self.group_sums(float(value))
        return np.unique(grid)

    def best_sigma(self, grid: np.ndarray, leave_out: int | None = None) -> float:
        """Vertex of the least-squares parabola through the objective on ``grid``, kept within the grid."""
        values = np.array([self(float(s), leave_out) for s in grid])
        curvature, slope, _ = np.polyfit(grid, values, 2)
        if curvature <= 0:
            return float(grid[np.argmin(values)])
        return float(np.clip(-slope / (2 * curvature), grid[0], grid[-1]))

    def theta(self, sigma: float, leave_out: int | None = None) -> np.ndarray:
        """``(sigma, g, o, alpha, beta, variance at the mean)``."""
        return np.concatenate([[sigma], self.solve(sigma, leave_out)[0]])


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


def fit_degradation(
    hr: ImageInput,
    lr: ImageInput,
    *,
    scale: int | None = None,
    trials: int = 60,
    seed: int = 0,
    progress: bool = False,
    max_sigma: float | None = None,
    max_regions: int = 16,
) -> DegradationFit:
    """Fit blur, noise and intensity so that degraded HR images look like their real LR counterparts.

    For a blur ``sigma`` the HR image (normalised by its own 0.1/99.9 percentiles) is
    blurred and area-downsampled into a noiseless prediction ``c``. The real LR,
    normalised by its own percentiles as at prediction, is modelled as
    ``y = g * (c + n) + o`` with noise variance ``var(n) = c / photons + read_noise**2``
    (Poisson shot noise and Gaussian read noise in the HR's normalised units). For each
    ``sigma`` the rest has closed forms: ``g`` and ``o`` are the least-squares fit of
    ``y`` on ``c``, and the noise line is a weighted least-squares fit of the residual's
    variance in 16 equal-width bins of ``c`` against their mean ``c`` (bins with over
    1 % clipped LR pixels left out). So only ``sigma`` is searched: by Bayesian
    optimisation (optuna's ``GPSampler``) of the residual's mean square (the noise adds
    the same to it for every blur, so the blur that best explains the structure
    minimises it), refined by the vertex of a least-squares parabola through 9 sigmas
    around the best trial. The objective simulates no noise, so it is deterministic.
    Noise whose variance does not grow with intensity (e.g. inverted contrast) has no
    Poisson step; its read noise is the fitted standard deviation at the mean intensity.

    Uncertainty of every parameter: the delete-one-group jackknife standard error over
    (up to) 16 groups of 16×16-LR-pixel tiles; each group is left out in turn and every
    parameter, the blur included, re-estimated. It reflects how much the estimate varies
    across the field of view.

    Parameters
    ----------
    hr, lr : Image, array or list of them
        Paired by position. Any leading axes (T, Z) are paired plane by plane. LR must be
        ``ceil(HR / scale)`` in Y and X and show the same field of view (registered).
    scale : int, optional
        Downsampling factor; inferred from the sizes when not given.
    trials : int
        Bayesian optimisation trials (the first 10 are random).
    seed : int
        Seeds the optimiser, the choice of regions in large images and the noise of the
        ``noise_std`` check. The same seed gives the same fit.
    progress : bool
        Show a progress bar over trials.
    max_sigma : float, optional
        Upper end of the blur search, in HR pixels; default ``2 * scale``.
    max_regions : int
        At most this many regions of 128×128 LR pixels are used (a seeded random choice
        when the images hold more), which bounds time and memory.

    Returns
    -------
    DegradationFit

    Raises
    ------
    InputError
        If the images are not paired consistently (count, leading axes, a size ratio
        that is not an integer or does not match ``scale``) or contain NaN/Inf.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.ndimage import gaussian_filter
    >>> hr = gaussian_filter(np.random.default_rng(1).random((128, 128)), 3)
    >>> truth = Degradation((Blur(sigma=2.0), Downsample(2), Poisson(photons=300.0)))
    >>> hr_norm = PercentileNormalizer().fit(hr)(hr)
    >>> fit = fit_degradation(hr, truth(hr_norm, seed=0), trials=12)
    >>> fit.scale, round(fit.parameters["blur_sigma"][0])
    (2, 2)
    """
    hr_images, lr_images = _as_list(hr, "HR"), _as_list(lr, "LR")
    if trials < 1:
        raise InputError(f"trials={trials}: use at least 1.")
    if scale is not None and scale < 1:
        raise InputError(f"scale={scale}: use an integer >= 1.")
    if max_regions < 1:
        raise InputError(f"max_regions={max_regions}: use at least 1.")
    pairs, s = _pairs(hr_images, lr_images, scale)
    upper = 2.0 * s if max_sigma is None else max_sigma
    if not upper > 0:
        raise InputError(f"max_sigma={max_sigma}: give a positive blur sigma in HR pixels.")
    margin = s * math.ceil((_TRUNCATE * upper + 1) / s)
    objective = _Objective(*_regions(pairs, s, margin, max_regions, seed), s)
    if all(np.ptp(r.hr) == 0 for r in objective.regions) or np.ptp(objective.y) == 0:
        raise InputError("the HR or the LR images are uniform, so there is nothing to fit; use images with detail.")

    with _quiet_optuna(), Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("Fitting the blur", total=trials)
        sampler = optuna.samplers.GPSampler(seed=seed, deterministic_objective=True)
        study = optuna.create_study(direction="minimize", sampler=sampler)
        study.optimize(
            lambda trial: objective(trial.suggest_float("blur_sigma", 0.0, upper)),
            n_trials=trials,
            callbacks=[lambda *_: bar.advance(task)],
        )
    sigma = study.best_params["blur_sigma"]
    for _ in range(_RECENTRE):
        grid = objective.refine(sigma, upper)
        sigma = objective.best_sigma(grid)
        if grid[0] < sigma < grid[-1] or sigma in (0.0, upper):
            break
    theta = objective.theta(sigma)
    errors = _jackknife(theta, lambda k: objective.theta(objective.best_sigma(grid, k), k), objective.n_groups)

    (sigma, g, o, alpha, beta, at_mean), (d_sigma, d_g, d_o, d_alpha, d_beta, d_at_mean) = theta, errors
    parameters = {
        "blur_sigma": (float(sigma), float(d_sigma)),
        **_noise_parameters((alpha, d_alpha), (beta, d_beta), (at_mean, d_at_mean)),
        "intensity_scale": (float(g), float(d_g)),
        "intensity_offset": (float(o), float(d_o)),
    }
    identity = abs(g - 1) <= d_g and abs(o) <= d_o
    degradation = Degradation((
        Blur(sigma=float(sigma)),
        Downsample(s, method="area"),
        *_noise_steps(parameters),
        *([] if identity else [Intensity(scale=float(g), offset=float(o))]),
    ))
    return DegradationFit(
        degradation=degradation,
        parameters=parameters,
        objective=objective(sigma),
        noise_std=_noise_std(objective, degradation, sigma, g, o, seed),
        scale=s,
        trials=trials,
        seed=seed,
        sources=tuple(name for pair in pairs for name in (pair.hr_name, pair.lr_name)),
    )


def _noise_std(objective: _Objective, degradation: Degradation, sigma: float, g: float, o: float,
               seed: int) -> tuple[float, float]:
    """Residual std of the real LR and of the fitted degradation applied to the same HR regions."""
    clean = g * objective.clean(sigma) + o
    rng = np.random.default_rng(seed)
    simulated = np.concatenate([
        degradation(r.hr, seed=rng)[_core(r, objective.scale)].ravel().astype(np.float64)
        for r in objective.regions
    ])
    return float(np.std(objective.y - clean)), float(np.std(simulated - clean))


def _core(region: _Region, scale: int) -> tuple[slice, slice]:
    """Where the region's LR lies in the degraded (downsampled) region."""
    oy, ox = (o // scale for o in region.offset)
    h, w = region.lr.shape
    return slice(oy, oy + h), slice(ox, ox + w)


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Silence optuna's per-trial log lines and experimental-feature warnings, then restore them."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


# --------------------------------------------------------------------------- fit_noise


def fit_noise(lr: ImageInput, *, scale: int = 4, seed: int = 0, max_tiles: int = 256) -> NoiseFit:
    """Fit the Poisson-Gaussian noise model ``var(I) = a * I + b`` to LR images alone.

    The binned fit of Foi et al. (2008): the noise of every pixel is read from the
    high-pass residual ``d = (x * K) / 6`` with Immerkær's (1996) kernel ``K = [1, -2, 1]ᵀ
    [1, -2, 1]`` (second differences in Y and X: unit norm, so ``E[d²]`` is the noise
    variance for white noise, and it cancels constants, gradients and smooth curvature).
    Pixels are binned into 16 equal-width bins of local intensity (5×5 mean); pixels whose
    roughness (gradient magnitude at 2 px scale, independent of ``d`` for white noise) is
    over twice their bin's median are dropped as edges, and bins with under 32 pixels or
    over 1 % of pixels next to clipped ones (at an integer type's limits) are left out.
    The bins' mean ``d²`` against their mean intensity under ``K²`` (the pixels ``d``
    draws its noise from) gives ``a`` and ``b`` by weighted least squares.

    The model is fitted in the images' own units (the detector's property, shared by
    all images) and converted to normalised units ``y = (I - lo) / (hi - lo)``, with
    ``lo``/``hi`` the 0.1/99.9 percentiles (median over the images), as prediction
    normalises each LR: ``a_n = a / (hi - lo)``, ``b_n = (a * lo + b) / (hi - lo)**2``.
    The degradation's noise follows: ``photons = 1 / a_n`` (the Poisson step's variance
    is ``x / photons``) and ``read_noise = sqrt(b_n)``, applied after the ``"poisson"``
    preset's blur and downsampling. This treats a degraded, normalised HR image as being
    in the LR's normalised units, which holds when the noise is small against the
    intensity range; with HR images at hand, :func:`fit_degradation` also fits the
    intensity map and the blur. ``a < 0`` (noise falling with intensity) happens with
    inverted contrast, e.g. electron micrographs shown dark-on-bright; the degradation
    then has no Poisson step.

    The residual measures the noise at the highest spatial frequencies. Noise that is
    correlated between neighbouring pixels (a detector's bandwidth along the scan,
    resampling) is weaker there than its per-pixel variance, and comes out lower.

    Uncertainty: the delete-one-group jackknife standard error over (up to) 16 groups
    of 64×64-pixel tiles.

    Parameters
    ----------
    lr : Image, array or list of them
        Low-resolution images; leading axes (T, Z) are treated as more planes.
    scale : int
        Downsampling factor of the returned degradation.
    seed : int
        Seeds the choice of tiles in large images.
    max_tiles : int
        At most this many 64×64 tiles are used (a seeded random choice when there are
        more), which bounds time and memory.

    Returns
    -------
    NoiseFit

    Raises
    ------
    InputError
        If an image is smaller than 16×16 pixels or holds NaN/Inf, or fewer than 3
        intensity bins hold enough unclipped pixels.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> signal = np.linspace(100, 1000, 256 * 256).reshape(256, 256)
    >>> noisy = rng.poisson(signal) + rng.normal(0, 5, signal.shape)  # var = 1 * I + 25
    >>> fit = fit_noise(noisy)
    >>> a, b = fit.parameters["a"][0], fit.parameters["b"][0]
    >>> bool(abs(a - 1) < 0.1), bool(abs(b - 25) < 25)
    (True, True)
    """
    images = _as_list(lr, "LR")
    if scale < 1 or max_tiles < 1:
        raise InputError(f"scale={scale}, max_tiles={max_tiles}: use integers >= 1.")
    planes = []
    for i, image in enumerate(images):
        name = _name(image, "LR", i)
        data = _planes(image, name)
        if min(data.shape[1:]) < 16:
            raise InputError(f"{name}: {data.shape[1]}×{data.shape[2]} pixels is too small to estimate noise; "
                             "use images of at least 16×16 pixels.")
        planes.append((data, name))
    boxes = [
        (i, plane, ys, xs)
        for i, (data, _) in enumerate(planes)
        for plane in range(data.shape[0])
        for ys in _pieces(data.shape[1], _NOISE_TILE)
        for xs in _pieces(data.shape[2], _NOISE_TILE)
    ]
    if len(boxes) > max_tiles:
        chosen = np.random.default_rng(seed).choice(len(boxes), max_tiles, replace=False)
        boxes = [boxes[i] for i in sorted(chosen)]
    samples = [_noise_samples(*planes[i], plane, ys, xs) for i, plane, ys, xs in boxes]
    mean, footprint, detail, roughness, clipped = (np.concatenate([s[k] for s in samples]) for k in range(5))
    group_of_tile, n_groups = _groups(len(samples))
    tile = np.concatenate([np.full(len(s[0]), t) for t, s in enumerate(samples)])
    smooth = _smooth(mean, roughness)
    sums = _binned_sums(mean[smooth], [footprint[smooth], detail[smooth] ** 2, clipped[smooth]],
                        group_of_tile[tile[smooth]], n_groups)

    normalizers = [_normalizer(image) for image in images]
    lo = float(np.median([n.lo for n in normalizers]))
    hi = float(np.median([n.hi for n in normalizers]))
    width = hi - lo

    def estimate(sums: np.ndarray) -> np.ndarray:
        n, s_intensity, s_variance = _unclipped(sums).T
        a, b = _variance_line(s_intensity / n, s_variance / n, n)
        a_n, b_n = a / width, (a * lo + b) / width**2
        return np.array([a, b, a_n, b_n, a_n * (s_intensity.sum() / n.sum() - lo) / width + b_n])

    total = sums.sum(axis=0)
    theta = estimate(total)
    errors = _jackknife(theta, lambda k: estimate(total - sums[k]), n_groups)
    (a, b, a_n, b_n, at_mean), (d_a, d_b, d_an, d_bn, d_at_mean) = theta, errors
    parameters = {
        "a": (float(a), float(d_a)),
        "b": (float(b), float(d_b)),
        "a_normalised": (float(a_n), float(d_an)),
        "b_normalised": (float(b_n), float(d_bn)),
        **_noise_parameters((a_n, d_an), (b_n, d_bn), (at_mean, d_at_mean)),
    }
    n, s_intensity, s_variance = _unclipped(total).T
    return NoiseFit(
        degradation=Degradation((*preset("poisson", scale).without_noise().steps, *_noise_steps(parameters))),
        parameters=parameters,
        points=np.stack([s_intensity / n, s_variance / n, n], axis=1),
        normalizer=PercentileNormalizer(lo=lo, hi=hi),
        scale=scale,
        sources=tuple(name for _, name in planes),
    )


_DETAIL = np.outer([1.0, -2.0, 1.0], [1.0, -2.0, 1.0]) / 6.0
_ROUGHNESS_LIMIT = 2.0  # times a bin's median roughness above which a pixel counts as an edge
_MARGIN = 8  # pixels read around a tile so that the 5×5 mean and the 2 px gradient see past its edge


def _noise_samples(planes: Any, name: str, plane: int, ys: slice, xs: slice) -> tuple[np.ndarray, ...]:
    """Per pixel of a tile: local mean, mean under ``K²``, residual, roughness, and 1 next to clipping."""
    height, width = planes.shape[1:]
    y0, x0 = max(0, ys.start - _MARGIN), max(0, xs.start - _MARGIN)
    x = _read(planes, plane, slice(y0, min(height, ys.stop + _MARGIN)), slice(x0, min(width, xs.stop + _MARGIN)),
              name)
    detail = ndimage.correlate(x, _DETAIL, mode="reflect")
    footprint = ndimage.correlate(x, _DETAIL**2, mode="reflect")
    mean = ndimage.uniform_filter(x, 5, mode="reflect")
    roughness = ndimage.gaussian_gradient_magnitude(x, 2.0, mode="reflect")
    clipped = ndimage.maximum_filter(_clipped(x, planes.dtype), size=3).astype(np.float64)
    inside = np.zeros(x.shape, bool)
    # The residual of a pixel on the image's edge would see reflected copies, not noise.
    rows = slice(max(1, ys.start) - y0, min(height - 1, ys.stop) - y0)
    inside[rows, max(1, xs.start) - x0 : min(width - 1, xs.stop) - x0] = True
    return mean[inside], footprint[inside], detail[inside], roughness[inside], clipped[inside]


def _clipped(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Mask of the pixels at the limits of an integer ``dtype`` (saturated or cut at zero)."""
    if not np.issubdtype(dtype, np.integer):
        return np.zeros(x.shape, bool)
    limits = np.iinfo(dtype)
    return (x == limits.min) | (x == limits.max)


def _smooth(mean: np.ndarray, roughness: np.ndarray) -> np.ndarray:
    """Mask of the pixels whose roughness is at most twice the median of their intensity bin.

    On noise alone the roughness (a smoothed gradient's magnitude) is Rayleigh-distributed,
    so this keeps about 94 % of the pixels of smooth regions and drops edges.
    """
    bins = _bin_index(mean)
    median = np.array([np.median(roughness[bins == k]) if np.any(bins == k) else np.inf for k in range(_BINS)])
    return roughness <= _ROUGHNESS_LIMIT * median[bins]
