"""Fit the noise model of LR images alone (:func:`fit_noise`).

The Poisson-Gaussian noise model ``var(I) = a * I + b`` of Foi et al. (2008), "Practical
Poissonian-Gaussian noise modeling and fitting for single-image raw-data", IEEE Trans.
Image Process. 17(10), 1737-1754, estimated from a high-pass residual (Immerkær 1996) of
the images' smooth regions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from microsr import __version__
from microsr.data.normalize import PercentileNormalizer
from microsr.degrade import Degradation, Gaussian, Poisson, preset
from microsr.errors import InputError
from microsr.fit._common import (
    _BINS, ImageInput, _as_list, _bin_index, _binned_sums, _clipped, _commented_yaml, _groups, _jackknife, _name,
    _noise_parameters, _noise_steps, _normalizer, _pieces, _planes, _read, _rows, _unclipped, _variance_formula,
    _variance_line,
)
from microsr.io import Image

__all__ = ["NoiseFit", "fit_noise"]

_NOISE_TILE = 64  # LR pixels per side of a tile


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
        title = (f"Noise model var(I) = a * I + b (Foi et al. 2008) fitted by microsr {__version__} to "
                 f"{len(self.sources)} LR image(s); the blur is the 'poisson' preset's.")
        return _commented_yaml(title, command, self.sources, self.summary(), self.degradation)


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


def _smooth(mean: np.ndarray, roughness: np.ndarray) -> np.ndarray:
    """Mask of the pixels whose roughness is at most twice the median of their intensity bin.

    On noise alone the roughness (a smoothed gradient's magnitude) is Rayleigh-distributed,
    so this keeps about 94 % of the pixels of smooth regions and drops edges.
    """
    bins = _bin_index(mean)
    median = np.array([np.median(roughness[bins == k]) if np.any(bins == k) else np.inf for k in range(_BINS)])
    return roughness <= _ROUGHNESS_LIMIT * median[bins]
