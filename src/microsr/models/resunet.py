"""ResUNet: the PSSR-style super-resolution network (the default model)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from microsr.errors import InputError
from microsr.models.layers import ResBlock, UNetBody, check_int, check_widths, conv3x3
from microsr.models.registry import register_model

SCALES = (1, 2, 4, 8)


class SubPixelUpsampler(nn.Sequential):
    """``log2(scale)`` stages of ``conv3x3(c -> 4c) - PixelShuffle(2) - ReLU``.

    The convolutions use ICNR initialisation (Aitken et al. 2017): the four sub-pixel
    kernels of each output channel start equal, so a new upsampler behaves like
    nearest-neighbour upsampling instead of producing checkerboard artefacts.

    Examples
    --------
    >>> SubPixelUpsampler(8, 4)(torch.zeros(1, 8, 5, 7)).shape
    torch.Size([1, 8, 20, 28])
    """

    def __init__(self, channels: int, scale: int) -> None:
        stages: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            conv = conv3x3(channels, 4 * channels)
            base = nn.init.kaiming_normal_(conv.weight.new_empty(channels, channels, 3, 3))
            with torch.no_grad():
                conv.weight.copy_(base.repeat_interleave(4, dim=0))
                conv.bias.zero_()
            stages += [conv, nn.PixelShuffle(2), nn.ReLU()]
        super().__init__(*stages)


@register_model("resunet")
class ResUNet(nn.Module):
    """PSSR-style residual U-Net with sub-pixel upsampling and a global residual.

    The U-Net (residual blocks, see :class:`~microsr.models.layers.UNetBody`) runs at
    *input* resolution; sub-pixel convolutions then upsample its features by
    ``scale`` and a 3x3 convolution makes the single output channel. That is added to
    the bicubically upsampled centre input frame, so the network only learns the
    correction to bicubic interpolation, which trains much faster. The output
    convolution starts at zero: a new model is exactly bicubic interpolation.

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

    Examples
    --------
    >>> model = ResUNet(in_channels=3, scale=2, widths=(8, 16))
    >>> model(torch.rand(2, 3, 37, 53)).shape
    torch.Size([2, 1, 74, 106])
    """

    def __init__(
        self, in_channels: int = 1, scale: int = 4, widths: Sequence[int] = (32, 64, 128, 256)
    ) -> None:
        super().__init__()
        if check_int("scale", scale) not in SCALES:
            raise InputError(f"scale: resunet supports {', '.join(map(str, SCALES))}, got {scale!r}.")
        self.in_channels = check_int("in_channels", in_channels)
        self.scale = scale
        widths = check_widths(widths)
        self.body = UNetBody(in_channels, widths, ResBlock)
        self.upsample = SubPixelUpsampler(widths[0], scale)
        self.head = conv3x3(widths[0], 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        k = self.in_channels // 2
        centre = x[:, k : k + 1]
        if self.scale > 1:
            centre = F.interpolate(centre, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return centre + self.head(self.upsample(self.body(x)))


@register_model("resunet_small")
def resunet_small(in_channels: int = 1, scale: int = 4) -> ResUNet:
    """:class:`ResUNet` with widths (16, 32, 64): fast on CPU, for tests and the demo.

    Examples
    --------
    >>> resunet_small(scale=2).scale
    2
    """
    return ResUNet(in_channels, scale, widths=(16, 32, 64))
