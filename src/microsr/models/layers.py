"""Building blocks shared by the built-in models: padding, conv blocks, the U-Net body.

No layer normalises over space (no BatchNorm, no GroupNorm): an output pixel then
depends only on the input pixels within the receptive field, so tiled prediction
matches whole-image prediction exactly, and behaviour is the same at any batch size
and in train and eval mode. Residual blocks start as identity instead (their last
convolution is zero-initialised), which keeps deep stacks trainable without
normalisation, as in EDSR (Lim et al. 2017).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from microsr.errors import InputError

Block = Callable[[int, int], nn.Module]
"""Builds a block mapping ``(in_channels, out_channels)`` at unchanged resolution."""


def check_int(name: str, value: object, *, minimum: int = 1) -> int:
    """Return ``value`` if it is an integer ``>= minimum``, else raise :class:`InputError`.

    Examples
    --------
    >>> check_int("scale", 4)
    4
    >>> check_int("scale", 0)
    Traceback (most recent call last):
    ...
    microsr.errors.InputError: scale: expected an integer >= 1, got 0.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name}: expected an integer >= {minimum}, got {value!r}.")
    return value


def check_widths(widths: Sequence[int]) -> tuple[int, ...]:
    """Validate U-Net channel widths, one per level (``len(widths) == depth + 1``).

    Examples
    --------
    >>> check_widths([16, 32])
    (16, 32)
    """
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or not widths:
        raise InputError(
            f"widths: expected a non-empty list of channel counts, one per level "
            f"(e.g. [32, 64, 128, 256]), got {widths!r}."
        )
    return tuple(check_int("widths", w) for w in widths)


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad the bottom and right of ``x`` (..., H, W) so H and W are multiples of ``multiple``.

    Reflection keeps image statistics at the border; inputs too small to reflect
    (padding >= size) are padded by replicating the edge instead.

    Examples
    --------
    >>> pad_to_multiple(torch.zeros(1, 1, 37, 53), 8).shape
    torch.Size([1, 1, 40, 56])
    >>> pad_to_multiple(torch.zeros(1, 1, 2, 3), 8).shape
    torch.Size([1, 1, 8, 8])
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


_HALF = (torch.bfloat16, torch.float16)


def relu_(x: Tensor) -> Tensor:
    """``F.relu_(x)``; for bfloat16 or float16 outside autograd, done on the int16 bits.

    PyTorch's CPU kernels compute 16-bit float element-wise operations through float32,
    one element at a time: ``relu_`` of a bfloat16 tensor ran at 2 GB/s here and took a
    quarter of the default model's prediction time. A negative float has its sign bit
    set, so it is a negative int16, and clamping the int16 view at 0 is the same ReLU
    (a negative NaN becomes 0 instead of NaN), 6x faster. Autograd cannot follow an
    int16 view, so with gradients the usual ReLU runs.

    Examples
    --------
    >>> x = torch.tensor([-2.0, -0.0, 0.5, float("inf")], dtype=torch.bfloat16)
    >>> relu_(x).tolist()
    [0.0, 0.0, 0.5, inf]
    """
    if x.dtype in _HALF and not x.requires_grad:
        x.view(torch.int16).clamp_min_(0)
        return x
    return F.relu_(x)


def shuffle_pixels(x: Tensor, factor: int) -> Tensor:
    """Pixel shuffle of channels ordered (sub-row, sub-column, channel): ``(N, r²C, H, W)`` to ``(N, C, rH, rW)``.

    :func:`torch.nn.functional.pixel_shuffle` reads channels in (channel, sub-row,
    sub-column) order; in channels_last memory that gathers every value from ``r²``
    apart. In this order each output row is ``r * C`` consecutive input values, and
    the copy runs 2.5-4x faster in bfloat16 here (3.5 against 9.4 ms for 128 channels
    at 532²). Layers that feed it make their channels in this order
    (:func:`subpixels_last`); the result is channels_last.

    Examples
    --------
    >>> x = torch.rand(1, 12, 5, 7)
    >>> torch.equal(shuffle_pixels(subpixels_last(x[0], 2)[None], 2), F.pixel_shuffle(x, 2))
    True
    """
    n, channels, h, w = x.shape
    c = channels // factor**2
    rows = x.permute(0, 2, 3, 1).reshape(n, h, w, factor, factor * c).transpose(2, 3)
    return rows.reshape(n, h * factor, w * factor, c).permute(0, 3, 1, 2)


def subpixels_last(t: Tensor, factor: int) -> Tensor:
    """``t``'s first axis from (channel, sub-row, sub-column) to (sub-row, sub-column, channel) order.

    For the weight or bias of a convolution whose output :func:`shuffle_pixels` takes,
    stored in the order :class:`torch.nn.PixelShuffle` reads (so checkpoints keep it).

    Examples
    --------
    >>> subpixels_last(torch.arange(8), 2).tolist()
    [0, 4, 1, 5, 2, 6, 3, 7]
    """
    return t.reshape(-1, factor * factor, *t.shape[1:]).transpose(0, 1).reshape(t.shape)


def max_pool_2x2(x: Tensor) -> Tensor:
    """``F.max_pool2d(x, 2)``; outside autograd, as two element-wise maxima of strided views.

    PyTorch's CPU max pooling ran slower than two passes of :func:`torch.maximum` (32
    channels at 624² in bfloat16: 3.5 against 2.0 ms in channels_last, 28 against 6 ms in
    NCHW). The result is the same, NaNs included. Under autograd it is ``max_pool2d``,
    whose gradient goes to one of tied values where ``maximum`` would split it.

    Examples
    --------
    >>> x = torch.randn(2, 3, 9, 8)
    >>> torch.equal(max_pool_2x2(x), F.max_pool2d(x, 2))
    True
    """
    if x.requires_grad:
        return F.max_pool2d(x, 2)
    h, w = x.shape[-2:]
    x = x[..., : h - h % 2, : w - w % 2]
    rows = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
    return torch.maximum(rows[..., 0::2], rows[..., 1::2])


class ReLU(nn.ReLU):
    """In-place :class:`torch.nn.ReLU` through :func:`relu_`."""

    def __init__(self) -> None:
        super().__init__(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return relu_(x)


class PixelShuffle(nn.PixelShuffle):
    """:func:`shuffle_pixels`: a pixel shuffle of channels in the order :class:`SubPixelConv` makes."""

    def forward(self, x: Tensor) -> Tensor:
        return shuffle_pixels(x, self.upscale_factor)


_MIN_CHANNELS = 4


class Conv2d(nn.Conv2d):
    """:class:`torch.nn.Conv2d` that gives oneDNN at least 4 input channels.

    On the CPU, oneDNN's convolutions of one input channel (a model's first layer on a
    grey image) ran 4-5x slower than the same convolution of 4 channels, which does 4x
    the work: 16 vs 4.4 ms for 1 -> 32 channels at 512² in bfloat16, and 18 vs 11 ms in
    float32. Fewer than 4 input channels are therefore zero-padded to 4, the weight
    with them: the result is the same, and so are the parameters, the checkpoints and
    the gradients.

    Examples
    --------
    >>> conv = Conv2d(1, 8, kernel_size=3, padding=1)
    >>> plain = nn.Conv2d(1, 8, kernel_size=3, padding=1)
    >>> plain.load_state_dict(conv.state_dict())
    <All keys matched successfully>
    >>> x = torch.rand(2, 1, 9, 11)
    >>> torch.allclose(conv(x), plain(x), atol=1e-6)
    True
    """

    def forward(self, x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        """The convolution of ``x``, with ``weight`` and ``bias`` instead of the layer's own if given."""
        weight = self.weight if weight is None else weight
        bias = self.bias if bias is None else bias
        missing = _MIN_CHANNELS - self.in_channels
        if missing <= 0 or self.groups != 1:
            return self._conv_forward(x, weight, bias)
        # The layout PyTorch would have chosen: later layers (BatchNorm over near-constant channels)
        # can be sensitive to the order of summation that the layout sets.
        layout = torch.channels_last if _channels_last(x) or _channels_last(self.weight) else torch.contiguous_format
        padded = x.new_zeros(x.shape[0], _MIN_CHANNELS, *x.shape[2:]).contiguous(memory_format=layout)
        padded[:, : self.in_channels] = x
        weight = F.pad(weight, (0, 0, 0, 0, 0, missing)).contiguous(memory_format=layout)
        return self._conv_forward(padded, weight, bias)


class SubPixelConv(Conv2d):
    """A :class:`Conv2d` to ``factor**2`` sub-pixels per channel, made in the order :func:`shuffle_pixels` takes.

    Weights are stored in the order :class:`torch.nn.PixelShuffle` reads, as in
    checkpoints of ``nn.Conv2d``; each call reorders the (small) weight instead of the
    (large) output.

    Examples
    --------
    >>> conv = SubPixelConv(3, 8, kernel_size=3, padding=1)
    >>> plain = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    >>> plain.load_state_dict(conv.state_dict())
    <All keys matched successfully>
    >>> x = torch.rand(1, 3, 5, 7)
    >>> torch.allclose(shuffle_pixels(conv(x), 2), F.pixel_shuffle(plain(x), 2), atol=1e-6)
    True
    """

    factor = 2

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        bias = None if self.bias is None else subpixels_last(self.bias, self.factor)
        return super().forward(x, subpixels_last(self.weight, self.factor), bias)


_BINOMIAL = torch.tensor([1.0, 2.0, 1.0]) / 4


class Blur(nn.Module):
    """Fixed 3x3 binomial smoothing (``[1, 2, 1] / 4`` along each axis) of every channel, edges replicated.

    Its response is ``cos(pi f)**2`` at ``f`` cycles per pixel: zero at the Nyquist
    frequency, where a 2x pixel shuffle puts the differences between its four sub-pixel
    kernels. After each shuffle it keeps training from growing those into a fixed
    checkerboard (the ``blur`` of fastai's ``PixelShuffle_ICNR``, made symmetric so
    that it does not shift the image by half a pixel). It has no parameters.

    Examples
    --------
    >>> x = torch.tensor([[1.0, -1.0] * 4] * 8)[None, None]  # the finest checker along X
    >>> Blur()(x)[..., 1:-1].abs().max().item()
    0.0
    >>> Blur()(torch.ones(1, 3, 5, 5)).equal(torch.ones(1, 3, 5, 5))
    True
    """

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        kernel = torch.outer(_BINOMIAL, _BINOMIAL).to(x)[None, None].expand(channels, 1, 3, 3)
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=channels)


def to_channels_last(x: Tensor) -> Tensor:
    """``x`` in ``channels_last`` layout, with its strides saying so even for one channel.

    With one channel both layouts are the same memory, and ``x.contiguous(memory_format=
    torch.channels_last)`` keeps the NCHW strides; PyTorch's kernels read the layout from
    the strides, so the first layers of a grey-image model then ran in NCHW.

    Examples
    --------
    >>> to_channels_last(torch.zeros(2, 1, 4, 5)).stride()
    (20, 1, 5, 1)
    """
    x = x.contiguous(memory_format=torch.channels_last)
    if x.dim() == 4 and x.shape[1] == 1:
        x = x.as_strided(x.shape, (x.shape[2] * x.shape[3], 1, x.shape[3], 1))
    return x


def _channels_last(t: Tensor) -> bool:
    """Whether ``t`` is in channels_last layout; with one channel both layouts are contiguous and its strides tell."""
    return t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and t.stride(1) <= t.stride(-1)


class UpConv(nn.ConvTranspose2d):
    """A 2x2 stride-2 transposed convolution, computed as a 1x1 convolution and a pixel shuffle.

    Each input pixel makes its own 2 x 2 output pixels, so the transposed convolution is
    a 1x1 convolution to 4x the channels, shuffled. oneDNN ran the transposed
    convolutions of the default model 3-5x slower than that in bfloat16 (8.9 vs 1.8 ms
    at 128 -> 64 channels, 137²). Weights and checkpoints are those of
    :class:`torch.nn.ConvTranspose2d`.

    Examples
    --------
    >>> up = UpConv(8, 4)
    >>> plain = nn.ConvTranspose2d(8, 4, kernel_size=2, stride=2)
    >>> plain.load_state_dict(up.state_dict())
    <All keys matched successfully>
    >>> x = torch.rand(2, 8, 5, 7)
    >>> torch.allclose(up(x), plain(x), atol=1e-6)
    True
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        # weight[c, o, a, b] reads input channel c into output o at sub-pixel (a, b); shuffle_pixels
        # takes channel (2a + b) * out_channels + o.
        weight = self.weight.permute(2, 3, 1, 0).reshape(4 * self.out_channels, self.in_channels, 1, 1)
        bias = None if self.bias is None else self.bias.repeat(4)
        return shuffle_pixels(F.conv2d(x, weight, bias), 2)


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A 3x3 convolution that keeps the spatial size (a :class:`Conv2d`)."""
    return Conv2d(in_channels, out_channels, kernel_size=3, padding=1)


class SkipConv(nn.Conv2d):
    """A 1x1 convolution added into a tensor: ``skip(x, out)`` is ``out += conv(x)``, without the bias.

    A 1x1 convolution is a product over channels; computed as ``addmm_`` into ``out``
    (``beta = 1``), the sum costs no pass of its own over the tensors: for a residual
    block's skip in bfloat16, 1.1-1.5 ms against 3.8-4.8 ms for a convolution and a sum on
    a 512-pixel tile. The caller adds the bias, folded into the convolution that makes
    ``out``. It runs in ``out``'s precision and is differentiable; weights and checkpoint
    keys are those of ``nn.Conv2d(in_channels, out_channels, 1)``.

    Examples
    --------
    >>> skip = SkipConv(6, 3)
    >>> out, x = torch.rand(2, 3, 4, 5), torch.rand(2, 6, 4, 5)
    >>> expected = out + F.conv2d(x, skip.weight)
    >>> torch.allclose(skip(x, out), expected, atol=1e-6)
    True
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor, out: Tensor) -> Tensor:  # type: ignore[override]
        n, c = out.shape[:2]
        weight, x = self.weight.flatten(1).to(out.dtype), x.to(out.dtype)
        if _channels_last(out):  # pixels are rows of channels
            out.permute(0, 2, 3, 1).view(-1, c).addmm_(x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]), weight.t())
        else:  # channels are rows of pixels
            out.view(n, c, -1).baddbmm_(weight.expand(n, -1, -1), x.reshape(n, x.shape[1], -1))
        return out


class ResBlock(nn.Module):
    """``relu(conv(relu(conv(x))) + skip(x))``; ``skip`` is a 1x1 conv if channels change.

    The second convolution starts at zero, so a new block is ``relu(skip(x))``.

    Examples
    --------
    >>> ResBlock(3, 8)(torch.zeros(2, 3, 5, 7)).shape
    torch.Size([2, 8, 5, 7])
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Identity() if in_channels == out_channels else SkipConv(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        # In place: a new full-size tensor per ReLU or sum costs more than the operation.
        h = relu_(self.conv1(x))
        if isinstance(self.skip, nn.Identity):
            out = self.conv2(h)
            out += x
        else:
            out = self.skip(x, self.conv2(h, bias=self.conv2.bias + self.skip.bias))
        return relu_(out)


class DoubleConv(nn.Sequential):
    """``conv3x3 - ReLU - conv3x3 - ReLU``, the block of the original U-Net.

    Examples
    --------
    >>> DoubleConv(3, 8)(torch.zeros(1, 3, 5, 7)).shape
    torch.Size([1, 8, 5, 7])
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            conv3x3(in_channels, out_channels),
            ReLU(),
            conv3x3(out_channels, out_channels),
            ReLU(),
        )


Region = tuple[tuple[int, int], tuple[int, int]]
"""``((first row, stop row), (first column, stop column))`` of a feature map."""


def _grown(region: Region, by: int, shape: Sequence[int]) -> Region:
    """``region`` grown by ``by`` pixels on every side, within a map of ``shape`` (rows, columns)."""
    return tuple((max(start - by, 0), min(stop + by, size)) for (start, stop), size in zip(region, shape))


def _window(x: Tensor, region: Region, origin: Region = ((0, 0), (0, 0)), factor: int = 1) -> Tensor:
    """The part of ``x`` covering ``region``, where ``x`` covers ``origin`` scaled by ``factor``."""
    (rows, cols), (row0, col0) = region, (factor * origin[0][0], factor * origin[1][0])
    return x[..., rows[0] - row0 : rows[1] - row0, cols[0] - col0 : cols[1] - col0]


class UNetBody(nn.Module):
    """U-Net encoder-decoder: same-size features of ``widths[0]`` channels, any H and W.

    Level ``i`` works at ``1 / 2**i`` resolution with ``widths[i]`` channels; levels are
    joined by 2x2 max pooling on the way down, and on the way up by a 2x2 stride-2
    transposed convolution whose output is concatenated with the encoder features of
    the same level. The input is padded to a multiple of ``2**depth`` and the output
    cropped back, so callers never see that restriction.

    Parameters
    ----------
    in_channels : int
        Channels of the input.
    widths : sequence of int
        Channels per level; ``len(widths) - 1`` poolings.
    block : callable
        ``block(in_channels, out_channels)`` used at every level, e.g. :class:`ResBlock`.

    Examples
    --------
    >>> body = UNetBody(1, (8, 16, 32), ResBlock)
    >>> body(torch.zeros(1, 1, 37, 53)).shape
    torch.Size([1, 8, 37, 53])
    >>> body(torch.zeros(1, 1, 37, 53), crop=5).shape
    torch.Size([1, 8, 27, 43])
    """

    def __init__(self, in_channels: int, widths: Sequence[int], block: Block) -> None:
        super().__init__()
        self.encoders = nn.ModuleList()
        for width in widths:
            self.encoders.append(block(in_channels, width))
            in_channels = width
        self.ups = nn.ModuleList(UpConv(deep, shallow) for shallow, deep in zip(widths[:-1], widths[1:]))
        self.decoders = nn.ModuleList(block(2 * width, width) for width in widths[:-1])
        # How far a block's output pixel sees: its convolutions run one after another.
        self.halo = sum(m.kernel_size[0] // 2 for m in self.decoders[0].modules() if isinstance(m, nn.Conv2d))

    def forward(self, x: Tensor, crop: int = 0) -> Tensor:
        """Features of ``x``, without the ``crop`` pixels along each edge.

        The decoder computes only the features the kept ones depend on, so a caller
        that discards a tile's context (see :class:`~microsr.predict.engine.Predictor`) does
        not pay for it there. The result equals ``self(x)[..., crop:-crop, crop:-crop]``.
        """
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, 2 ** len(self.ups))
        skips = []
        for level, encoder in enumerate(self.encoders):
            if level > 0:
                skips.append(x)
                x = max_pool_2x2(x)
            x = encoder(x)
        # needed[l]: the (rows, columns) of level l whose decoder output is kept or feeds a kept
        # one; inputs[l]: what decoder l reads for them. Outside needed[l] its output is wrong
        # (zero padding at the window's edge) and is dropped.
        needed: list[Region] = [((crop, h - crop), (crop, w - crop))]
        inputs: list[Region] = []
        for skip in skips:
            inputs.append(_grown(needed[-1], self.halo, skip.shape[-2:]))
            needed.append(tuple((start // 2, -(-stop // 2)) for start, stop in inputs[-1]))
        x = _window(x, needed[-1])
        for level in reversed(range(len(self.ups))):
            up = _window(self.ups[level](x), inputs[level], origin=needed[level + 1], factor=2)
            x = self.decoders[level](torch.cat([up, _window(skips[level], inputs[level])], dim=1))
            x = _window(x, needed[level], origin=inputs[level])
        return x

