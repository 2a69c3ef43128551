"""ResUNet: the PSSR-style super-resolution network (the default model)."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from microsr.errors import InputError
from microsr.models.layers import (
    Blur, PixelShuffle, ReLU, ResBlock, SubPixelConv, UNetBody, check_int, check_widths, conv3x3, shuffle_pixels,
)
from microsr.models.registry import register_model

SCALES = (1, 2, 4, 8)


class SubPixelUpsampler(nn.Sequential):
    """``log2(scale)`` stages of ``conv3x3(c -> 4c) - ReLU - PixelShuffle(2)``, all but the last then blurred if ``blur``.

    ReLU commutes with the shuffle; applied first, in place, it costs no new tensor.

    The convolutions use ICNR initialisation (Aitken et al. 2017): the four sub-pixel
    kernels of each output channel start equal, so a new upsampler behaves like
    nearest-neighbour upsampling instead of producing checkerboard artefacts. That
    does not last: trained 300 steps on EM, ``resunet_small`` x4 without blur left a
    fixed offset of 0.23 high-pass standard deviations between sub-pixels
    (``benchmarks/checkerboard.py``). A fixed :class:`~microsr.models.layers.Blur`
    after each shuffle removes the frequency where the sub-pixels differ; the last
    shuffle's is left to the model, which blurs its one-channel output after the head
    instead of the features before it (:class:`ResUNet`).

    Examples
    --------
    >>> SubPixelUpsampler(8, 4)(torch.zeros(1, 8, 5, 7)).shape
    torch.Size([1, 8, 20, 28])
    """

    def __init__(self, channels: int, scale: int, blur: bool = True) -> None:
        stages: list[nn.Module] = []
        count = int(math.log2(scale))
        for stage in range(count):
            conv = SubPixelConv(channels, 4 * channels, kernel_size=3, padding=1)
            base = nn.init.kaiming_normal_(conv.weight.new_empty(channels, channels, 3, 3))
            with torch.no_grad():
                conv.weight.copy_(base.repeat_interleave(4, dim=0))
                conv.bias.zero_()
            stages += [conv, ReLU(), PixelShuffle(2)] + ([Blur()] if blur and stage < count - 1 else [])
        super().__init__(*stages)


def _sub_pixel_taps() -> tuple[Tensor, Tensor]:
    """The two steps of a 3x3 convolution of a 2x pixel shuffle, as linear maps on the unshuffled input.

    Output sub-pixel ``(a, b)`` of a coarse pixel reads fine pixels at most one away, which
    lie in the 2 x 2 coarse pixels at offsets ``(a - 1 + k, b - 1 + l)``, ``k, l`` in 0, 1.
    ``taps[a, b, k, l, u, v, i, j] = 1`` where it reads, through tap ``(i, j)`` of the 3x3
    kernel, sub-pixel ``(u, v)`` of coarse pixel ``(k, l)`` of those; ``route[s, t, m, n] = 1``
    where output sub-pixel ``s = 2a + b`` sums channel ``t = 8a + 4b + 2k + l`` at coarse
    offset ``(m - 1, n - 1)``.
    """
    taps = torch.zeros(2, 2, 2, 2, 2, 2, 3, 3)
    route = torch.zeros(4, 16, 3, 3)
    for a, b, k, l in itertools.product(range(2), repeat=4):
        route[2 * a + b, 8 * a + 4 * b + 2 * k + l, a + k, b + l] = 1
        for u, v in itertools.product(range(2), repeat=2):
            dy, dx = 2 * (a + k - 1) + u - a, 2 * (b + l - 1) + v - b
            if abs(dy) <= 1 and abs(dx) <= 1:
                taps[a, b, k, l, u, v, dy + 1, dx + 1] = 1
    return taps, route


_TAPS, _ROUTE = _sub_pixel_taps()


class ConvAfterShuffle(nn.Conv2d):
    """A 3x3, one-output-channel convolution of ``shuffle_pixels(x, 2)``, computed before the shuffle.

    ``ConvAfterShuffle(c)(x)`` equals ``nn.Conv2d(c, 1, 3, padding=1)(shuffle_pixels(x, 2))``
    with the same weights, up to rounding (``x`` in the channel order of
    :func:`~microsr.models.layers.shuffle_pixels`, as a ``SubPixelConv`` makes it). The shuffle
    would copy all feature channels at full resolution only for the convolution to reduce
    them to one. Instead, a 1x1 convolution of the unshuffled features makes, for each of
    the four output sub-pixels, its partial sums over the 2 x 2 coarse pixels it reads
    (16 channels); a fixed 3x3 convolution adds each sub-pixel's four, and only those four
    channels are shuffled. oneDNN runs a convolution to four channels far below its peak:
    the four sub-pixel kernels as one 3x3 convolution to four channels took 7.5 ms on a
    strip of 258 x 1032 coarse pixels in bfloat16 here, these two steps 2.9 ms (fp32:
    35 ms, 5.7 ms). It is a ``Conv2d`` with the usual parameters, so checkpoints and FLOP
    counts are those of the convolution it replaces.

    Examples
    --------
    >>> x = torch.rand(1, 16, 5, 7)
    >>> head = ConvAfterShuffle(4)
    >>> plain = nn.Conv2d(4, 1, 3, padding=1)
    >>> plain.load_state_dict(head.state_dict())
    <All keys matched successfully>
    >>> torch.allclose(head(x), plain(shuffle_pixels(x, 2)), atol=1e-6)
    True
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__(in_channels, 1, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        partial = torch.einsum("abkluvij,cij->abkluvc", _TAPS.to(self.weight), self.weight[0])
        partials = F.conv2d(x, partial.reshape(16, 4 * self.in_channels, 1, 1))
        bias = None if self.bias is None else self.bias.expand(4)
        return shuffle_pixels(F.conv2d(partials, _ROUTE.to(partials), bias, padding=1), 2)


def by_rows(fn: Callable[[Tensor], Tensor], x: Tensor, *, halo: int, factor: int, rows: int = 128) -> Tensor:
    """``fn(x)`` computed on strips of ``rows`` rows of ``x`` and joined.

    ``fn`` must be local: each output row depends only on input rows within ``halo``
    of it (``halo`` zero-padded 3x3 convolutions), and it enlarges by ``factor``. Each
    strip is read with ``halo`` extra rows on both sides and its own rows are kept, so
    the result equals ``fn(x)`` while the intermediate tensors are a strip's size.

    Examples
    --------
    >>> conv = nn.Conv2d(2, 3, 3, padding=1)
    >>> x = torch.rand(1, 2, 300, 40)
    >>> torch.allclose(by_rows(conv, x, halo=1, factor=1, rows=64), conv(x), atol=1e-6)
    True
    """
    height = x.shape[-2]
    if height <= rows:
        return fn(x)
    strips = []
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        start, stop = max(top - halo, 0), min(bottom + halo, height)
        strips.append(fn(x[..., start:stop, :])[..., (top - start) * factor : (bottom - start) * factor, :])
    return torch.cat(strips, dim=-2)


@register_model("resunet", legacy={"blur": False})
class ResUNet(nn.Module):
    """PSSR-style residual U-Net with sub-pixel upsampling and a global residual.

    The U-Net (residual blocks, see :class:`~microsr.models.layers.UNetBody`) runs at
    *input* resolution; sub-pixel convolutions then upsample its features by
    ``scale`` and a 3x3 convolution makes the single output channel. That is added to
    the bicubically upsampled centre input frame, so the network only learns the
    correction to bicubic interpolation, which trains much faster. The output
    convolution starts at zero: a new model is exactly bicubic interpolation. With
    ``blur``, the correction is smoothed after each pixel shuffle, so training leaves
    no fixed pattern between the sub-pixels of an input pixel (the last shuffle's blur
    is applied to the one-channel correction, ``smooth``).

    Build it with :func:`~microsr.models.create_model` (``"resunet"``), which also
    records ``arch`` for checkpoints.

    Parameters
    ----------
    in_channels : int
        Adjacent frames ``k`` stacked as channels; the centre one (index ``k // 2``) is
        the residual base.
    scale : int
        1, 2, 4 or 8.
    widths : sequence of int
        Channels per U-Net level; ``len(widths) - 1`` poolings.
    blur : bool
        Blur after each pixel shuffle (see :class:`SubPixelUpsampler`), against a
        sub-pixel checkerboard. Off by default: on the synthetic filaments of
        ``tests/test_training.py`` (x4, 240 steps) it cut the gain over bicubic from
        2.6 to 0.8 dB, while on EM it removed the pattern at equal PSNR
        (``benchmarks/checkerboard.py``). Models saved before this argument existed
        rebuild without it (:func:`~microsr.models.registry.complete_arch`).

    Examples
    --------
    >>> model = ResUNet(in_channels=3, scale=2, widths=(8, 16))
    >>> model(torch.rand(2, 3, 37, 53)).shape
    torch.Size([2, 1, 74, 106])
    """

    def __init__(
        self, in_channels: int = 1, scale: int = 4, widths: Sequence[int] = (32, 64, 128, 256), blur: bool = False
    ) -> None:
        super().__init__()
        if check_int("scale", scale) not in SCALES:
            raise InputError(f"scale: resunet supports {', '.join(map(str, SCALES))}, got {scale!r}.")
        self.in_channels = check_int("in_channels", in_channels)
        self.scale = scale
        widths = check_widths(widths)
        self.body = UNetBody(in_channels, widths, ResBlock)
        if not isinstance(blur, bool):
            raise InputError(f"blur: expected true or false, got {blur!r}.")
        self.blur = blur and scale > 1
        self.upsample = SubPixelUpsampler(widths[0], scale, blur)
        # The last shuffle's blur, on the output: the head and the blur are linear and shift-invariant at the
        # output's resolution, so this is the blur of the features up to their edge, on one channel instead of many.
        self.smooth = Blur() if self.blur else nn.Identity()
        # The last upsampling stage's shuffle is folded into the head (see ConvAfterShuffle).
        self.head = ConvAfterShuffle(widths[0]) if scale > 1 else conv3x3(widths[0], 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor, crop: int = 0) -> Tensor:
        """Upsample ``x``; ``crop`` input pixels along each edge are left out of the result.

        ``self(x, crop=c)`` equals ``self(x)[..., c * scale : -c * scale, c * scale : -c * scale]``
        without computing the pixels it leaves out, where the work allows: a tiled
        prediction keeps only the middle of each tile, and cropping skips a quarter of the
        default model's work on a 512-pixel tile with its 54 pixels of context.
        """
        # The body keeps `halo` more pixels each side: the upsampling reads that far, and its output
        # there (zero padding at the features' edge) is dropped.
        halo = min(crop, _UPSAMPLING_HALO + self.blur)
        centre = _centre_window(x[:, self.in_channels // 2 : self.in_channels // 2 + 1], crop, self.scale)
        features = self.body(x, crop=crop - halo)
        stages = list(self.upsample)
        for layer in stages[:-3]:
            features = layer(features)
        last = stages[-3:-1]  # the last stage's conv and ReLU; its shuffle is folded into the head

        def tail(strip: Tensor) -> Tensor:
            for layer in last:
                strip = layer(strip)
            return self.head(strip)

        # The tail makes the largest tensors (4x the channels at half the output size). By rows,
        # peak memory at 512-pixel tiles fell by about a quarter (1.37 to 1.02 GB); strips of 128
        # rows, against 256, ran 4-6 % faster still.
        correction = self.smooth(by_rows(tail, features, halo=len(last) // 2 + 1, factor=2 if last else 1))
        return centre + _inset(correction, halo * self.scale)


# Rows of LR features that the sub-pixel convolutions and the head read beyond an output
# pixel: one for the first convolution, and half a pixel for each later one at 2x or more.
# The blurs read one pixel at 2x, 4x, ... : under one more LR pixel.
_UPSAMPLING_HALO = 2
# Bicubic interpolation reads two input pixels on either side.
_BICUBIC_HALO = 2


def _inset(x: Tensor, n: int) -> Tensor:
    """``x`` without ``n`` pixels along each edge of its last two axes."""
    return x[..., n : x.shape[-2] - n, n : x.shape[-1] - n]


def _centre_window(frame: Tensor, crop: int, scale: int) -> Tensor:
    """Bicubic upsampling of ``frame`` by ``scale`` without ``crop`` input pixels along each edge."""
    if scale == 1:
        return _inset(frame, crop)
    halo = min(crop, _BICUBIC_HALO)
    return _inset(bicubic(_inset(frame, crop - halo), scale), halo * scale)


def _cubic(distance: float, a: float = -0.75) -> float:
    """Keys' cubic convolution kernel with PyTorch's ``a = -0.75``."""
    d = abs(distance)
    if d <= 1:
        return ((a + 2) * d - (a + 3)) * d * d + 1
    return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a if d < 2 else 0.0


@functools.cache
@torch.inference_mode(False)  # cached: one made in inference mode could not enter a later training step
def _bicubic_kernel(scale: int) -> Tensor:
    """``(scale**2, 1, 5, 5)`` weights: output sub-pixel ``(p, q)`` from the 5 x 5 input pixels around it."""
    # Sub-pixel p of input pixel i sits at i + (p + 0.5) / scale - 0.5, within half a pixel of i.
    taps = torch.tensor([[_cubic(offset - ((p + 0.5) / scale - 0.5)) for offset in range(-2, 3)]
                         for p in range(scale)], dtype=torch.float64)
    return (taps[:, None, :, None] * taps[None, :, None, :]).reshape(scale**2, 1, 5, 5)


def bicubic(x: Tensor, scale: int) -> Tensor:
    """``F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)``, as a convolution.

    Each of the ``scale**2`` output sub-pixels of an input pixel is a fixed weighting of
    the 5 x 5 input pixels around it, so one convolution and a pixel shuffle give the
    same result (within float rounding) 2.5x faster than PyTorch's CPU kernel. It runs
    in the input's precision, also under autocast: the model's residual base must
    keep full precision.

    Examples
    --------
    >>> x = torch.rand(2, 3, 9, 7)
    >>> reference = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    >>> torch.allclose(bicubic(x, 4), reference, atol=1e-6)
    True
    """
    n, c, h, w = x.shape
    weight = _bicubic_kernel(scale).to(x.device, x.dtype)
    with torch.autocast(x.device.type, enabled=False):
        # Replicate padding is the index clamping PyTorch's bicubic does at the border.
        padded = F.pad(x.reshape(n * c, 1, h, w), (_BICUBIC_HALO,) * 4, mode="replicate")
        up = shuffle_pixels(F.conv2d(padded, weight), scale)  # one channel: the same as F.pixel_shuffle
    return up.reshape(n, c, h * scale, w * scale)


@register_model("resunet_small", legacy={"blur": False})
def resunet_small(in_channels: int = 1, scale: int = 4, blur: bool = False) -> ResUNet:
    """:class:`ResUNet` with widths (16, 32, 64): fast on CPU, for tests and the demo.

    Examples
    --------
    >>> resunet_small(scale=2).scale
    2
    """
    return ResUNet(in_channels, scale, widths=(16, 32, 64), blur=blur)
