"""The interpolation baselines a super-resolved image is compared with: bicubic and bilinear upscaling.

:func:`upscale` is the only upscaling baseline in microsr: ``microsr benchmark``, ``microsr sim
evaluate`` (the wide-field row), the demo and the training loop's ``bicubic_psnr`` all call it.

Which bicubic
-------------
"Bicubic" is Keys' cubic convolution with ``a = -0.75``, the ``bicubic`` of PyTorch
(``F.interpolate(..., mode="bicubic", align_corners=False)``) and OpenCV (``INTER_CUBIC``):
HR pixel ``j`` samples the LR at ``(j + 0.5) / scale - 0.5`` (pixel centres; LR pixel ``i``
covers HR pixels ``i * scale .. i * scale + scale - 1``), and taps beyond the edge repeat the
edge pixel. It is chosen over scikit-image's cubic spline (``resize(order=3)``, the
benchmark's baseline before) because it is exactly the interpolation microsr's ResUNet
starts from (its skip connection, :func:`microsr.models.resunet.bicubic`; an untrained
ResUNet *is* this baseline) and the one the U-Net upsamples with, so "better than bicubic"
measures what training added; and because the published SIM, SRRF and peer comparisons
already used it. It is not the strongest cubic interpolation: with ``a = -0.75`` it
reproduces constants but bends linear ramps between pixel centres (by up to 3/64 of a pixel's
step at x2), and on synthetic filaments (``microsr.samples.filaments``, 512², two scenes) it
scores 0.2-0.3 dB lower PSNR at x4 and 0.45-1.1 dB lower at x2 than the cubic spline (higher
SSIM, by 0.01-0.045), while on the noisy PSSR EM pair it scores 0.09 dB higher; figures
against "bicubic" are against this kernel. The values are not clipped: cubic convolution may
overshoot the input's range next to sharp edges, as PyTorch's does. "Bilinear" is the
triangle kernel on the same grid (PyTorch's ``bilinear`` with ``align_corners=False``, which
equals scikit-image's ``resize(order=1, mode="symmetric")``).

Both are separable: along each axis an output is the weighted sum of 4 (bicubic) or 2
(bilinear) input pixels, computed in float64 with numpy alone, so the scoring path needs
no torch.
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np

from microsr.errors import InputError

__all__ = ["BASELINES", "upscale"]

BASELINES = ("bicubic", "bilinear")
"""The interpolation methods :func:`upscale` offers, in the order reports list them."""

_KEYS_A = -0.75  # PyTorch's and OpenCV's cubic convolution parameter (MATLAB uses -0.5)


def _cubic(t: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with ``a = -0.75`` at distances ``t``."""
    t = np.abs(t)
    a = _KEYS_A
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _linear(t: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, 1 - np.abs(t))


@functools.lru_cache(maxsize=32)
def _taps(n: int, scale: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Input indices and kernel weights, each ``(taps, n * scale)``, of the outputs along an axis of ``n`` pixels."""
    source = (np.arange(n * scale) + 0.5) / scale - 0.5
    if method == "bilinear":
        # PyTorch clamps linear source positions at 0, so the first outputs repeat the edge pixel.
        source = np.maximum(source, 0.0)
    kernel, reach = (_cubic, 2) if method == "bicubic" else (_linear, 1)
    taps = np.floor(source).astype(int) + np.arange(1 - reach, reach + 1)[:, None]
    weights = kernel(source - taps)
    # Taps beyond the edge read the edge pixel (PyTorch's index clamping).
    return np.clip(taps, 0, n - 1), weights


def _along(image: np.ndarray, axis: int, scale: int, method: str) -> np.ndarray:
    """``image`` interpolated ``scale`` times larger along ``axis`` (a weighted sum of gathered taps)."""
    axis = axis % image.ndim
    indices, weights = _taps(image.shape[axis], scale, method)
    shape = [1] * image.ndim
    shape[axis] = -1
    result = np.zeros(image.shape[:axis] + (indices.shape[1],) + image.shape[axis + 1 :])
    for index, weight in zip(indices, weights):
        result += np.take(image, index, axis=axis) * weight.reshape(shape)
    return result


def upscale(image: np.ndarray, scale: int, method: Literal["bicubic", "bilinear"] = "bicubic") -> np.ndarray:
    """Interpolate the last two axes of ``image`` ``scale`` times larger: the bicubic (or bilinear) baseline.

    See the module docstring for the kernel and grid; the result equals
    ``torch.nn.functional.interpolate(x, scale_factor=scale, mode=method, align_corners=False)``
    to float32 rounding.

    Parameters
    ----------
    image : numpy.ndarray
        ``(..., h, w)`` intensities of any real dtype; leading axes (frames, a batch) are
        interpolated independently.
    scale : int
        Upsampling factor, at least 1.
    method : {"bicubic", "bilinear"}
        The interpolation kernel.

    Returns
    -------
    numpy.ndarray
        float32 ``(..., h * scale, w * scale)``, in the input's intensity units.

    Raises
    ------
    InputError
        For an unknown method, a scale below 1 or an image with fewer than 2 axes.

    Examples
    --------
    >>> upscale(np.array([[0.0, 4.0]]), 2, "bilinear").tolist()
    [[0.0, 1.0, 3.0, 4.0], [0.0, 1.0, 3.0, 4.0]]
    >>> ramp = np.arange(8.0)[None].repeat(2, axis=0)
    >>> upscale(ramp, 2)[0, 6:10].tolist()  # Keys' a = -0.75 bends a ramp between pixel centres
    [2.703125, 3.296875, 3.703125, 4.296875]
    """
    if method not in BASELINES:
        raise InputError(f"unknown upscaling method {method!r}; choose one of: {', '.join(BASELINES)}.")
    if not (isinstance(scale, (int, np.integer)) and scale >= 1):
        raise InputError(f"scale must be a whole number of at least 1, got {scale!r}.")
    image = np.asarray(image, dtype=np.float64)
    if image.ndim < 2:
        raise InputError(f"upscale needs an image with at least 2 axes, got shape {image.shape}.")
    return _along(_along(image, -2, int(scale), method), -1, int(scale), method).astype(np.float32)
