"""The sub-pixel pattern ("checkerboard") of an upsampled image, against bicubic upscaling.

A network that upsamples by ``scale`` through sub-pixel convolution computes each of
the ``scale x scale`` output pixels of an input pixel with its own weights. Trained
without care, they drift apart and leave a fixed offset that repeats every input pixel:
a grid that biases resolution measures (FRC and decorrelation see a false peak at the
input-pixel period) and segmentation. :func:`checkerboard` measures it two ways:

- **phase means**: the mean of a high-pass of the output at each of the ``scale x
  scale`` sub-pixel positions (phases). Image content averages out over the phases of
  many input pixels, a fixed pattern does not. ``phase_spread`` is the range (max -
  min) of those means divided by the high-pass standard deviation.
- **spectral ratio**: the output's power at the input-pixel period, i.e. at the
  frequencies ``(ky / scale, kx / scale)`` cycles per output pixel (``ky, kx`` in
  ``0 .. scale - 1``, not both 0: along Y, along X and their combinations), divided by
  that of bicubic upscaling of the same input (:func:`~microsr.evaluate.baseline.upscale`).

numpy and scipy only, like the rest of :mod:`microsr.evaluate`'s scorers.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.ndimage import gaussian_filter

from microsr.errors import InputError
from microsr.evaluate.baseline import upscale

__all__ = ["Checkerboard", "checkerboard", "lattice_power"]


class Checkerboard(NamedTuple):
    """What :func:`checkerboard` measures."""

    phase_means: np.ndarray
    """``(scale, scale)``: the mean high-pass output at each sub-pixel phase (row, column)."""
    highpass_std: float
    """Standard deviation of the output's high-pass."""
    phase_spread: float
    """``(phase_means.max() - phase_means.min()) / highpass_std``: 0 for no fixed pattern."""
    spectral_ratio: float
    """Output power at the input-pixel period over bicubic upscaling's: about 1 for no pattern."""


def _highpass(image: np.ndarray, scale: int) -> np.ndarray:
    """``image`` minus its Gaussian blur of sigma ``scale``: content finer than about one input pixel."""
    return image - gaussian_filter(image, sigma=scale, mode="reflect")


def lattice_power(image: np.ndarray, scale: int) -> float:
    """Total spectral power of ``image`` at the frequencies ``(ky / scale, kx / scale)``, not both 0.

    The image (cropped to a multiple of ``scale``, its mean removed) is Hann-windowed, so
    its border does not leak into the axes of the spectrum, where half of those
    frequencies lie. A pattern that repeats every ``scale`` pixels has all its power
    there.

    Examples
    --------
    >>> grid = np.tile([[1.0, -1.0], [-1.0, 1.0]], (32, 32))  # period 2
    >>> lattice_power(grid, 2) > 1e3 * lattice_power(np.ones((64, 64)), 2)
    True
    """
    h, w = (n - n % scale for n in image.shape[-2:])
    if h < 2 * scale or w < 2 * scale:
        raise InputError(f"checkerboard: the image ({image.shape}) needs at least 2 x {scale} pixels per axis.")
    image = np.asarray(image[..., :h, :w], dtype=np.float64)
    image = (image - image.mean()) * np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fft2(image)) ** 2
    lattice = power[:: h // scale, :: w // scale]
    return float(lattice.sum() - lattice[0, 0])


def checkerboard(output: np.ndarray, lowres: np.ndarray, scale: int) -> Checkerboard:
    """Measure the fixed sub-pixel pattern of ``output``, the ``scale``-times upsampling of ``lowres``.

    Parameters
    ----------
    output : numpy.ndarray
        ``(h * scale, w * scale)`` upsampled image, e.g. a model's prediction.
    lowres : numpy.ndarray
        ``(h, w)`` the input it was made from; its bicubic upscaling is the reference of
        ``spectral_ratio``. Same intensity units as ``output``.
    scale : int
        Upsampling factor, at least 2.

    Returns
    -------
    Checkerboard
        Phase means, high-pass standard deviation, their relative spread and the spectral
        ratio to bicubic (see the module docstring).

    Raises
    ------
    InputError
        For a scale below 2, shapes that do not match or images under 2 input pixels a side.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> lowres = rng.random((64, 64))
    >>> clean = checkerboard(upscale(lowres, 4), lowres, 4)
    >>> round(clean.spectral_ratio, 3), bool(clean.phase_spread < 0.05)
    (1.0, True)
    >>> grid = np.tile(np.where(np.arange(4) % 2, 0.1, -0.1), (256, 64))  # columns alternate
    >>> patterned = checkerboard(upscale(lowres, 4) + grid, lowres, 4)
    >>> bool(patterned.phase_spread > 0.5), bool(patterned.spectral_ratio > 10)
    (True, True)
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 2:
        raise InputError(f"checkerboard: scale must be a whole number of at least 2, got {scale!r}.")
    output, lowres = np.asarray(output, dtype=np.float64), np.asarray(lowres, dtype=np.float64)
    if lowres.ndim != 2 or output.shape != (lowres.shape[0] * scale, lowres.shape[1] * scale):
        raise InputError(f"checkerboard: output {output.shape} is not lowres {lowres.shape} upsampled x{scale}.")
    highpass = _highpass(output, scale)
    phase_means = np.array([[highpass[p::scale, q::scale].mean() for q in range(scale)] for p in range(scale)])
    std = float(highpass.std())
    spread = float(np.ptp(phase_means) / std) if std > 0 else 0.0
    reference = lattice_power(upscale(lowres, scale), scale)
    ratio = lattice_power(output, scale) / reference if reference > 0 else float("inf")
    return Checkerboard(phase_means, std, spread, ratio)
