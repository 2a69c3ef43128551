"""Fit the degradation from real LR/HR pairs: blur, intensity map and noise (:func:`fit_degradation`).

PSSR2's idea of fitting the crappifier to real data: the HR image is blurred and
area-downsampled into a noiseless LR prediction; its difference from the real LR is the
real noise, whose variance as a function of intensity fixes the Poisson and Gaussian
noise. Only the blur is searched for, by Bayesian optimisation (optuna's ``GPSampler``);
the intensity map and the noise are solved in closed form for every blur tried.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from rich.progress import Progress
from scipy import ndimage

from microsr import __version__
from microsr.data.normalize import PercentileNormalizer
from microsr.degrade import Blur, Degradation, Downsample, Gaussian, Intensity, Poisson
from microsr.errors import InputError
from microsr.fit._common import (
    ImageInput, _as_list, _binned_sums, _clipped, _commented_yaml, _groups, _jackknife, _name, _noise_parameters,
    _noise_steps, _normalizer, _pieces, _planes, _read, _rows, _unclipped, _variance_line,
)
from microsr.io import Image

__all__ = ["DegradationFit", "fit_degradation"]

_REGION = 128  # LR pixels per side of a region blurred in one piece
_TILE = 16  # LR pixels per side of a jackknife tile
_LOCAL_POINTS = 9  # blur sigmas evaluated around the optimiser's best for the final parabola
_RECENTRE = 3  # times the local grid may move when its parabola's vertex lies on its edge
_TRUNCATE = 4.0  # scipy's gaussian_filter reaches 4 sigma: the margin a region needs


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
        title = (f"Degradation fitted by microsr {__version__} to {len(self.sources) // 2} LR/HR pair(s) "
                 f"(scale {self.scale}, {self.trials} trials, seed {self.seed}).")
        return _commented_yaml(title, command, self.sources, self.summary(), self.degradation)


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


def _noiseless(region: _Region, sigma: float, scale: int) -> np.ndarray:
    """Blur the region's HR by ``sigma`` HR px and area-downsample its core onto the LR grid."""
    rng = np.random.default_rng(0)  # the steps are fixed-valued and draw nothing
    blurred = Blur(sigma=sigma)(region.hr, rng)
    oy, ox = region.offset
    h, w = region.lr.shape
    return Downsample(scale)(blurred[oy : oy + h * scale, ox : ox + w * scale], rng)


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
