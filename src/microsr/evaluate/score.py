"""One way to score an image against a reference: PSNR, SSIM and NRMSE on one documented intensity scale.

:func:`score` is the only scorer in microsr: ``microsr benchmark``, ``microsr sim evaluate``,
the napari Compare widget, the demo and the training loop's validation all call it, so the
same two images get the same numbers from every entry point. Like
:mod:`microsr.evaluate.metrics` it needs numpy, scipy and scikit-image only.

The convention (``normalization="fit"``, the default)
------------------------------------------------------
1. The reference is mapped by its own 0.1 and 99.9 percentiles to 0 and 1
   (:func:`~microsr.evaluate.metrics.normalize_percentile`, the CARE / DL-SIM convention).
2. The prediction is mapped onto it by the least-squares gain and offset
   (:func:`~microsr.evaluate.metrics.normalize_like`, CSBDeep's "scale-invariant" evaluation).
3. PSNR and SSIM (scikit-image's, 7-pixel uniform window) with ``data_range=1`` (the span
   between the reference's percentiles) and NRMSE (``||reference - prediction|| /
   ||reference||``) compare the two.

Why this one: a prediction's intensity scale is arbitrary (a network outputs normalised
intensity, classical SIM arbitrary units, bicubic the input's units), and the fit gives
every method the same, most favourable gain and offset, so no method wins or loses by a
global intensity difference, and the score is the same whatever units the prediction is
in. The alternative of normalising each image by its own percentiles
(``normalization="percentile"``) penalises a prediction whose darkest or brightest 0.1 %
differ from the reference's, e.g. ringing below a dark background, across the whole image.
With ``normalization="none"`` the images are compared as given, for data already on one
scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from microsr.errors import InputError
from microsr.evaluate.metrics import normalize_like, normalize_percentile, nrmse, psnr, ssim

__all__ = ["NORMALIZATIONS", "ImageScore", "score"]

Normalization = Literal["fit", "percentile", "none"]
NORMALIZATIONS: tuple[Normalization, ...] = ("fit", "percentile", "none")
"""The intensity conventions :func:`score` offers; the first is the default."""


@dataclass(frozen=True)
class ImageScore:
    """How close a prediction is to a reference, and the two images as they were compared.

    Attributes
    ----------
    psnr : float
        Peak signal-to-noise ratio in dB (infinite for identical images).
    ssim : float
        Mean structural similarity, at most 1.
    nrmse : float
        ``||reference - prediction|| / ||reference||``, 0 for identical images.
    prediction, reference : numpy.ndarray
        The images on the common scale the numbers were computed on (for ``"fit"``:
        float32, the reference's percentiles at 0 and 1, the prediction fitted to it).
    """

    psnr: float
    ssim: float
    nrmse: float
    prediction: np.ndarray = field(repr=False, compare=False)
    reference: np.ndarray = field(repr=False, compare=False)


def score(
    prediction: np.ndarray,
    reference: np.ndarray,
    *,
    normalization: Normalization = "fit",
    data_range: float | None = None,
) -> ImageScore:
    """PSNR, SSIM and NRMSE of ``prediction`` against ``reference`` on one intensity scale.

    The conventions, and why ``"fit"`` is the default, are in the module docstring
    (:mod:`microsr.evaluate.score`).

    Parameters
    ----------
    prediction, reference : numpy.ndarray
        Images of the same shape, at least 7 pixels per side (SSIM's window), finite;
        the reference not constant.
    normalization : {"fit", "percentile", "none"}
        ``"fit"``: the reference's 0.1/99.9 percentiles to 0/1, the prediction fitted to
        it by a least-squares gain and offset. ``"percentile"``: each image by its own
        percentiles. ``"none"``: as given.
    data_range : float, optional
        Intensity span for PSNR and SSIM; default 1 (the normalised span), or the
        reference's ``max - min`` with ``normalization="none"``.

    Returns
    -------
    ImageScore

    Raises
    ------
    InputError
        If the shapes differ, an image is not finite, a side is under 7 pixels, the
        reference is constant (it has no structure, and any prediction fits it
        exactly), or ``normalization`` or ``data_range`` is not valid.

    Examples
    --------
    >>> from microsr.samples import filaments
    >>> truth = filaments((64, 64), seed=0).astype(float)
    >>> result = score(3 * truth + 100, truth)  # a gain and an offset cost nothing
    >>> bool(result.psnr > 100), round(result.ssim, 6), round(result.nrmse, 6)
    (True, 1.0, 0.0)
    >>> noisy = truth + np.random.default_rng(0).normal(0, 0.1 * truth.std(), truth.shape)
    >>> result = score(noisy, truth)
    >>> round(result.psnr, 2), round(result.ssim, 3), round(result.nrmse, 3)
    (34.85, 0.855, 0.088)
    """
    if normalization not in NORMALIZATIONS:
        raise InputError(f"normalization {normalization!r}: choose one of {', '.join(NORMALIZATIONS)}.")
    prediction, reference = np.asarray(prediction), np.asarray(reference)
    if prediction.shape != reference.shape:
        raise InputError(
            f"prediction shape {prediction.shape} and reference shape {reference.shape} differ; "
            "compare images of the same shape (crop or resample one of them)."
        )
    if reference.size and np.ptp(reference) == 0:
        raise InputError("the reference is constant: it has no structure to score against.")
    if normalization == "none":
        unit_prediction, unit_reference = prediction, reference
    else:
        unit_reference = normalize_percentile(reference)
        unit_prediction = (normalize_like(prediction, unit_reference) if normalization == "fit"
                           else normalize_percentile(prediction))
        data_range = 1.0 if data_range is None else data_range
    return ImageScore(
        psnr(unit_reference, unit_prediction, data_range=data_range),
        ssim(unit_reference, unit_prediction, data_range=data_range),
        nrmse(unit_reference, unit_prediction),
        unit_prediction,
        unit_reference,
    )
