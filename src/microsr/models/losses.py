"""Training losses: L1, L2, MS-SSIM + L1 (the default) and the SMLM losses, by name.

Every loss is an ``nn.Module`` called as ``loss(prediction, target)`` on ``(N, 1, H, W)``
tensors in normalised intensity (0 = dark level, 1 = bright level), returning a scalar.
The SMLM losses (``blurred_mse_l1``, ``blurred_mse``) instead compare maps of emitters
per fine pixel (see :class:`BlurredMSELoss`).

MS-SSIM on small tiles
----------------------
MS-SSIM compares images at ``scales`` resolutions, halving between them, with a
Gaussian window of ``win`` pixels (sigma 1.5) that must fit the coarsest one. With
the standard 5 scales and 11-pixel window the smaller image side must exceed
``(11 - 1) * 2**4 = 160`` pixels, more than many training tiles. :func:`msssim_scales`
therefore uses the largest number of scales ``s`` (5 down to 2) with
``side > (win - 1) * 2**(s - 1)`` for ``win = 11``; if none fits, the same with
``win = 7``; below that, single-scale SSIM with a 7-pixel window (or the largest odd
window that fits a tile under 7 pixels). By the smaller side of the target:

============  ======  ======
side (px)     scales  window
============  ======  ======
>= 161        5       11
81 - 160      4       11
41 - 80       3       11
21 - 40       2       11
13 - 20       2       7
<= 12         1       7
============  ======  ======

Fewer scales use the first ``s`` of the standard weights (0.0448, 0.2856, 0.3001,
0.2363, 0.1333), rescaled to sum to 1.

The computation follows ``pytorch_msssim`` (constants K1 = 0.01, K2 = 0.03, valid
Gaussian filtering, 2x2 average pooling padded for odd sizes, a scale whose mean
term is negative counted as 0) and equals its ``ms_ssim`` and ``ssim`` where those apply; it is
written out because ``pytorch_msssim.ms_ssim`` requires 160-pixel images whatever
the number of scales.

Values outside [0, 1]
---------------------
Normalised data is not confined to [0, 1] (noise, and intensities beyond the
percentiles). SSIM is well defined for any real values, so nothing is clamped: the
range 1.0 only sets the stabilising constants ``(K * 1.0)**2``. Clamping would leave
no SSIM gradient for predictions outside [0, 1], e.g. noise dipping below a dark
background. (Only a whole image far below 0 defeats SSIM: its luminance term turns
negative and counts as 0, leaving the L1 term to pull it back.)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from microsr.errors import InputError

__all__ = ["LOSSES", "BlurredMSELoss", "MSSSIML1Loss", "get_loss", "ms_ssim", "msssim_scales"]

_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_K1, _K2 = 0.01, 0.03
_SIGMA = 1.5


def msssim_scales(size: int) -> tuple[int, int]:
    """Number of scales and window size MS-SSIM uses for images whose smaller side is ``size``.

    See the module docstring for the rule and the table of regimes.

    Examples
    --------
    >>> [msssim_scales(size) for size in (192, 96, 48, 24, 16, 8, 4)]
    [(5, 11), (4, 11), (3, 11), (2, 11), (2, 7), (1, 7), (1, 3)]
    """
    for win in (11, 7):
        for scales in range(len(_MS_SSIM_WEIGHTS), 1, -1):
            if size > (win - 1) * 2 ** (scales - 1):
                return scales, win
    return 1, min(7, size - 1 + size % 2)


@functools.lru_cache(maxsize=64)
@torch.inference_mode(False)  # cached: one made in inference mode could not enter a later training step
def _gaussian_rows(size: int, win: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(size - win + 1, size)`` matrix whose row ``i`` is the Gaussian window placed at ``i``."""
    coords = torch.arange(win, dtype=dtype, device=device) - win // 2
    kernel = torch.exp(-(coords**2) / (2 * _SIGMA**2))
    kernel = kernel / kernel.sum()
    positions = torch.arange(size - win + 1, device=device)[:, None] + torch.arange(win, device=device)
    rows = torch.zeros(size - win + 1, size, dtype=dtype, device=device)
    return rows.scatter_(1, positions, kernel.expand(size - win + 1, win).contiguous())


def _gaussian_blur(x: Tensor, win: int) -> Tensor:
    """Separable Gaussian filter of the last two axes, without padding (output shrinks by win - 1).

    As two matrix products with banded matrices: 2-5x faster, forward and backward, on a
    CPU than the grouped convolution it replaces, which made MS-SSIM half of a training step.
    """
    height, width = x.shape[-2:]
    return _gaussian_rows(height, win, x.dtype, x.device) @ x @ _gaussian_rows(width, win, x.dtype, x.device).T


def _ssim_and_contrast(x: Tensor, y: Tensor, win: int) -> tuple[Tensor, Tensor]:
    """Mean SSIM and mean contrast-structure term per image and channel, shape (N, C)."""
    c1, c2 = _K1**2, _K2**2
    mu_x, mu_y, xx, yy, xy = _gaussian_blur(torch.stack([x, y, x * x, y * y, x * y]), win)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    contrast = (2 * cov + c2) / (var_x + var_y + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (luminance * contrast).flatten(2).mean(-1), contrast.flatten(2).mean(-1)


def ms_ssim(
    prediction: Tensor, target: Tensor, *, scales: int | None = None, win: int | None = None
) -> Tensor:
    """Multi-scale SSIM of two ``(N, C, H, W)`` batches with data range 1, averaged to a scalar.

    Parameters
    ----------
    prediction, target : Tensor
        Images of the same shape.
    scales, win : int, optional
        Number of scales (1 is plain SSIM) and Gaussian window size; both default to
        :func:`msssim_scales` of the smaller image side.

    Returns
    -------
    Tensor
        A scalar; 1 for identical images.

    Examples
    --------
    >>> x = torch.rand(2, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    >>> round(ms_ssim(x, x).item(), 6)
    1.0
    >>> bool(ms_ssim(x, torch.zeros_like(x)) < 0.1)
    True
    """
    auto_scales, auto_win = msssim_scales(min(target.shape[-2:]))
    scales, win = scales or auto_scales, win or auto_win
    with torch.autocast(prediction.device.type, enabled=False):
        # Variances are E[x^2] - E[x]^2: in bfloat16 they can turn negative and the ratio infinite.
        return _ms_ssim(prediction.float(), target.float(), scales, win)


def _ms_ssim(prediction: Tensor, target: Tensor, scales: int, win: int) -> Tensor:
    weights = prediction.new_tensor(_MS_SSIM_WEIGHTS[:scales])
    weights = weights / weights.sum()
    terms = []
    for level in range(scales):
        ssim, contrast = _ssim_and_contrast(prediction, target, win)
        if level < scales - 1:
            terms.append(contrast)
            padding = [side % 2 for side in prediction.shape[-2:]]
            prediction = F.avg_pool2d(prediction, 2, padding=padding)
            target = F.avg_pool2d(target, 2, padding=padding)
    terms.append(ssim)
    # Fractional powers of negative terms are undefined, so they count as 0.
    values = torch.stack(terms).relu() ** weights.view(-1, 1, 1)
    return values.prod(dim=0).mean()


class MSSSIML1Loss(nn.Module):
    """``alpha * (1 - MS-SSIM) + (1 - alpha) * L1``, the mixed loss of Zhao et al. (2017).

    MS-SSIM rewards structure and contrast but is insensitive to uniform intensity
    shifts; the L1 term keeps intensities right. Zhao et al. weight the L1 term with
    a Gaussian; a plain mean is used here, as in PSSR. The number of MS-SSIM scales
    adapts to the tile size (see the module docstring).

    Parameters
    ----------
    alpha : float
        Weight of the MS-SSIM term, between 0 and 1 (0.84 in Zhao et al.).

    Examples
    --------
    >>> loss = MSSSIML1Loss()
    >>> x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    >>> round(loss(x, x).item(), 6)
    0.0
    """

    def __init__(self, alpha: float = 0.84) -> None:
        super().__init__()
        if not 0 <= alpha <= 1:
            raise InputError(f"alpha: the MS-SSIM weight must be between 0 and 1, got {alpha!r}.")
        self.alpha = alpha

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        structural = 1 - ms_ssim(prediction, target)
        return self.alpha * structural + (1 - self.alpha) * F.l1_loss(prediction, target)


def _blur_same(x: Tensor, kernel: list[float]) -> Tensor:
    """``x`` filtered along both image axes by the odd 1-D ``kernel``, zero-padded to keep its size.

    Sums of shifted copies: on large single-channel images this is several times
    faster than ``conv2d`` on a CPU, forwards and backwards.
    """
    radius = len(kernel) // 2
    h, w = x.shape[-2:]
    x = F.pad(x, (radius, radius, radius, radius))
    x = sum(tap * x[..., i : i + h, :] for i, tap in enumerate(kernel))
    return sum(tap * x[..., i : i + w] for i, tap in enumerate(kernel))


class BlurredMSELoss(nn.Module):
    """Deep-STORM's loss: MSE of prediction and target both blurred by a Gaussian, plus L1 sparsity.

    ``mean((g * (s p) - g * (s t))**2) + sparsity * (mean(|s p|) - mean(|s t|))`` for a
    prediction ``p`` and target ``t`` in emitters per fine pixel (an emitter adds 1,
    e.g. :func:`microsr.simulate.smlm.render_targets`), a normalised Gaussian kernel
    ``g`` and a scale ``s``. The blur makes a prediction a fine pixel or two off cost
    little instead of counting as a miss plus a false positive; the L1 term pushes the
    background to exactly zero, so emitters stand out as isolated spots. Its
    ``mean(|s t|)`` is Deep-STORM's L1 term of a perfect prediction: subtracting this
    constant changes no gradient and makes the loss 0 when ``p == t``, as every loss
    here is (it is negative only for a prediction with less mass than the target and
    almost no blurred error).

    Deep-STORM (Nehme et al., Optica 5, 458, 2018) uses ``sigma = 1`` fine pixel
    (a 7 x 7 kernel) and spikes of height ``s = 100``, the defaults here, with
    ``sparsity = 1``. The default here is 0.1: with 1, a network trained from
    scratch on x8 targets never leaves the all-zero output, because each of its
    ``scale**2`` sub-pixel outputs is pushed down by L1 everywhere but pulled up only
    at the few pixels holding an emitter at that sub-pixel (measured: fitting 8
    frames of the ``deepstorm-test`` preset, the loss stays flat for 300 steps at
    sparsity 1; at 0.1 and 0.02 their Jaccard index reaches 0.76 and 0.83).
    DSIR's loss is the blurred MSE alone (``sparsity = 0``; ``"blurred_mse"`` in
    :data:`LOSSES`).

    Parameters
    ----------
    sigma : float
        Gaussian standard deviation in fine pixels; the kernel spans ±3 sigma.
    sparsity : float
        Weight of the L1 term.
    scale : float
        Height of a unit emitter in the loss; it sets the balance of the quadratic
        blurred-MSE term against the linear L1 term (``(s p)**2`` against ``s |p|``).

    Examples
    --------
    >>> target = torch.zeros(1, 1, 16, 16)
    >>> target[0, 0, 8, 8] = 1.0
    >>> loss = BlurredMSELoss()
    >>> loss(target, target).item()
    0.0
    >>> shifted = torch.roll(target, 1, dims=-1)
    >>> bool(loss(shifted, target) < loss(torch.roll(target, 4, dims=-1), target))
    True
    """

    def __init__(self, sigma: float = 1.0, sparsity: float = 0.1, scale: float = 100.0) -> None:
        super().__init__()
        for name, value, ok in (("sigma", sigma, sigma > 0), ("sparsity", sparsity, sparsity >= 0),
                                ("scale", scale, scale > 0)):
            if not (math.isfinite(value) and ok):
                raise InputError(f"{name}={value!r}: give a finite number {'≥' if name == 'sparsity' else '>'} 0.")
        self.sigma, self.sparsity, self.scale = sigma, sparsity, scale
        taps = [math.exp(-(i**2) / (2 * sigma**2)) for i in range(-math.ceil(3 * sigma), math.ceil(3 * sigma) + 1)]
        self.kernel = [tap / sum(taps) for tap in taps]

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        prediction, target = self.scale * prediction, self.scale * target
        loss = _blur_same(prediction - target, self.kernel).square().mean()
        if self.sparsity:
            loss = loss + self.sparsity * (prediction.abs().mean() - target.abs().mean())
        return loss


LOSSES: dict[str, Callable[[], nn.Module]] = {
    "l1": nn.L1Loss,
    "l2": nn.MSELoss,
    "msssim_l1": MSSSIML1Loss,
    "blurred_mse_l1": BlurredMSELoss,
    "blurred_mse": partial(BlurredMSELoss, sparsity=0.0),
}
"""Loss builders by name; ``"msssim_l1"`` is the default for super-resolution, ``"blurred_mse_l1"`` for SMLM."""


def get_loss(name: str) -> nn.Module:
    """Build the loss called ``name``: ``"l1"``, ``"l2"`` (mean squared error), ``"msssim_l1"``,
    ``"blurred_mse_l1"`` (Deep-STORM) or ``"blurred_mse"`` (DSIR).

    Raises
    ------
    InputError
        For an unknown name, listing the valid ones.

    Examples
    --------
    >>> loss = get_loss("l2")
    >>> loss(torch.ones(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)).item()
    1.0
    """
    try:
        return LOSSES[name]()
    except KeyError:
        raise InputError(f"loss: unknown name {name!r}. Choose one of: {', '.join(LOSSES)}.") from None
