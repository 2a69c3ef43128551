"""UNet: a plain U-Net on pre-upsampled input (DL-SIM style), a baseline."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from microsr.models.layers import DoubleConv, UNetBody, check_int, check_widths
from microsr.models.registry import register_model


@register_model("unet")
class UNet(nn.Module):
    """Plain U-Net (``conv-ReLU`` x2 blocks, no residuals) as used by DL-SIM.

    For ``scale > 1`` the input is first upsampled bicubically and the whole U-Net runs
    at *output* resolution, as DL-SIM required pre-upsampled input. That costs about
    ``scale**2`` times the FLOPs of :class:`~microsr.models.resunet.ResUNet` per input
    pixel; it is here as a baseline and for same-size restoration (``scale=1``).

    Build it with :func:`~microsr.models.create_model` (``"unet"``), which also records
    ``arch`` for checkpoints.

    Parameters
    ----------
    in_channels : int
        Adjacent frames (or SIM raw frames) stacked as channels.
    scale : int
        Any integer >= 1.
    widths : sequence of int
        Channels per U-Net level; ``len(widths) - 1`` poolings.

    Examples
    --------
    >>> import torch
    >>> UNet(in_channels=3, scale=2, widths=(8, 16))(torch.rand(1, 3, 37, 53)).shape
    torch.Size([1, 1, 74, 106])
    """

    def __init__(
        self, in_channels: int = 1, scale: int = 4, widths: Sequence[int] = (32, 64, 128, 256)
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels)
        self.scale = check_int("scale", scale)
        widths = check_widths(widths)
        self.body = UNetBody(in_channels, widths, DoubleConv)
        self.head = nn.Conv2d(widths[0], 1, kernel_size=1)

    def forward(self, x: Tensor, crop: int = 0) -> Tensor:
        """Restore ``x``; ``crop`` input pixels along each edge are left out of the result
        and, in the decoder, not computed (see :meth:`UNetBody.forward <microsr.models.layers.UNetBody.forward>`)."""
        if self.scale > 1:
            x = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return self.head(self.body(x, crop=crop * self.scale))
