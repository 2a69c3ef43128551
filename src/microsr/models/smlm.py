"""Networks for high-density SMLM: one frame of blinking emitters in, a map of emitters ``scale`` x finer out.

Every model maps a normalised camera frame ``(N, 1, h, w)`` to a map
``(N, 1, h * scale, w * scale)`` of emitters per fine pixel (an emitter adds 1 in
total), the targets of :func:`microsr.simulate.smlm.render_targets`. The DSIR
models end in a ReLU; the others are linear, as Deep-STORM is, so their background
hovers around zero (:func:`microsr.smlm.reconstruct.reconstruct` clips it at zero).

- ``dsir``: the DSIR convolutional autoencoder (github.com/leaxp/Deep-Learning-Super-
  Resolution-Image-Reconstruction-DSIR) as published: the frame upsampled bilinearly
  (26 x 26 -> 208 x 208 at x8), three conv + max-pool encoder stages, three
  transposed-conv decoder stages and a final conv, each followed by BatchNorm and
  ReLU, but with one BatchNorm per layer. The published code reuses ``bn1`` and
  ``bn2`` at several depths, so their running statistics mix layers whose
  activations differ and eval mode (fixed statistics) no longer matches training.
- ``dsir_compat``: the published layout with the shared BatchNorms, so the original
  state dict (``autoencoder_model.pt``) loads into it, for comparison.
- ``deepstorm``: the fully convolutional encoder-decoder of Deep-STORM (Nehme et al.,
  Optica 5, 458, 2018) on the frame upsampled by pixel replication: conv-BN-ReLU
  blocks of 32, 64, 128 channels with max pooling, 512 at the bottom, then
  nearest-neighbour upsampling with 128, 64, 32 channels and a linear 1 x 1 conv.
- ``smlm_unet`` (the shipped default): the same encoder-decoder idea at *camera*
  resolution (a U-Net), upsampled by one sub-pixel convolution (PixelShuffle). The
  three models above run every layer on the upsampled frame, ``scale**2`` = 64 times
  the pixels; ``smlm_unet`` needs 1/177 of ``deepstorm``'s FLOPs per output pixel,
  and none of its layers runs on the fine grid, where even DSIR's few channels are
  slow because they are memory-bound.

Costs at x8 (``model_cost(model, tile=64)``, FLOPs per output pixel, 2 per multiply-add):

================  ==========  ==============
model             parameters  FLOPs / out px
================  ==========  ==============
``smlm_unet``     126,016     1.04 k
``dsir``          3,419       1.41 k
``dsir_compat``   3,339       1.41 k
``deepstorm``     1,366,209   185 k
================  ==========  ==============

Examples
--------
>>> import torch
>>> from microsr.models import create_model
>>> create_model("smlm_unet", scale=8)(torch.rand(2, 1, 26, 26)).shape
torch.Size([2, 1, 208, 208])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from microsr.models.layers import (
    DoubleConv, UNetBody, check_int, check_widths, conv3x3, max_pool_2x2, pad_to_multiple,
)
from microsr.models.registry import register_model

__all__ = ["DSIRAutoencoder", "DeepSTORM", "SMLMUNet"]

# The published DSIR layers in forward order: (layer name, its BatchNorm in the published code, out channels).
_DSIR_LAYERS = (
    ("conv1", "bn1", 16),
    ("conv2", "bn2", 8),
    ("conv3", "bn2", 8),
    ("convt1", "bn2", 8),
    ("convt2", "bn1", 16),
    ("convt3", "bn2", 8),
    ("conv4", "bn4", 1),
)
_POOLINGS = 3


@register_model("dsir")
class DSIRAutoencoder(nn.Module):
    """The DSIR convolutional autoencoder on the bilinearly upsampled frame.

    Parameters
    ----------
    in_channels : int
        Input frames stacked as channels (1 in DSIR).
    scale : int
        Upsampling of the input before the autoencoder (8 in DSIR).
    shared_batchnorm : bool
        False: one BatchNorm per layer. True: the published layout, ``bn1``, ``bn2``
        and ``bn4`` reused as in DSIR's ``forward`` (see the module docstring); only
        for loading the published weights (model ``dsir_compat``).

    Examples
    --------
    >>> import torch
    >>> DSIRAutoencoder()(torch.rand(1, 1, 26, 26)).shape
    torch.Size([1, 1, 208, 208])
    >>> sorted(DSIRAutoencoder(shared_batchnorm=True).state_dict())[:3]
    ['bn1.bias', 'bn1.num_batches_tracked', 'bn1.running_mean']
    """

    def __init__(self, in_channels: int = 1, scale: int = 8, shared_batchnorm: bool = False) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels)
        self.scale = check_int("scale", scale)
        self.conv1 = conv3x3(in_channels, 16)
        self.conv2 = conv3x3(16, 8)
        self.conv3 = conv3x3(8, 8)
        self.convt1 = nn.ConvTranspose2d(8, 8, kernel_size=2, stride=2)
        self.convt2 = nn.ConvTranspose2d(8, 16, kernel_size=2, stride=2)
        self.convt3 = nn.ConvTranspose2d(16, 8, kernel_size=2, stride=2)
        self.conv4 = conv3x3(8, 1)
        if shared_batchnorm:
            self.norms = [name for _, name, _ in _DSIR_LAYERS]
        else:
            self.norms = [f"bn{i + 1}" for i in range(len(_DSIR_LAYERS))]
        for (_, _, channels), name in zip(_DSIR_LAYERS, self.norms):
            if not hasattr(self, name):
                self.add_module(name, nn.BatchNorm2d(channels))

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, 2**_POOLINGS)
        for i, ((layer, _, _), norm) in enumerate(zip(_DSIR_LAYERS, self.norms)):
            x = F.relu(getattr(self, norm)(getattr(self, layer)(x)))
            if i < _POOLINGS:
                x = max_pool_2x2(x)
        return x[..., :h, :w]


@register_model("dsir_compat")
def dsir_compat(in_channels: int = 1, scale: int = 8) -> DSIRAutoencoder:
    """:class:`DSIRAutoencoder` with the published shared BatchNorms, for ``autoencoder_model.pt``.

    Examples
    --------
    >>> dsir_compat().norms
    ['bn1', 'bn2', 'bn2', 'bn2', 'bn1', 'bn2', 'bn4']
    """
    return DSIRAutoencoder(in_channels, scale, shared_batchnorm=True)


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


@register_model("deepstorm")
class DeepSTORM(nn.Module):
    """Deep-STORM's fully convolutional encoder-decoder on the frame upsampled by pixel replication.

    Its output is linear (a 1 x 1 convolution) as published; the L1 sparsity term
    of :class:`~microsr.models.losses.BlurredMSELoss` keeps the background near zero.

    Parameters
    ----------
    in_channels : int
        Input frames stacked as channels (1 in Deep-STORM).
    scale : int
        Upsampling of the input (8 in Deep-STORM).

    Examples
    --------
    >>> import torch
    >>> DeepSTORM(scale=2)(torch.rand(1, 1, 12, 12)).shape
    torch.Size([1, 1, 24, 24])
    """

    def __init__(self, in_channels: int = 1, scale: int = 8) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels)
        self.scale = check_int("scale", scale)
        self.encoder = nn.ModuleList(
            _conv_bn_relu(a, b) for a, b in ((in_channels, 32), (32, 64), (64, 128), (128, 512))
        )
        self.decoder = nn.ModuleList(_conv_bn_relu(a, b) for a, b in ((512, 128), (128, 64), (64, 32)))
        self.head = nn.Conv2d(32, 1, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, 2**_POOLINGS)
        for i, block in enumerate(self.encoder):
            x = block(x) if i == 0 else block(max_pool_2x2(x))
        for block in self.decoder:
            x = block(F.interpolate(x, scale_factor=2, mode="nearest"))
        return self.head(x)[..., :h, :w]


@register_model("smlm_unet")
class SMLMUNet(nn.Module):
    """A U-Net at camera resolution whose last convolution is shuffled into ``scale`` x finer pixels.

    The U-Net (conv-ReLU blocks, max pooling, transposed-conv upsampling with skip
    connections) sees overlapping PSFs at the camera's sampling; a 3 x 3
    convolution then makes ``scale**2`` values per camera pixel, which
    :class:`torch.nn.PixelShuffle` lays out as the ``scale`` x ``scale`` fine pixels
    it covers, so each camera pixel says where inside it (to 1/scale of a pixel) its
    emitters are. The output is linear, as Deep-STORM's: with a final ReLU, the L1
    sparsity term drives every output negative early in training and the network
    dies (measured: Jaccard 0 after 48 steps at learning rate 2e-3). The head starts
    at zero, where the L1 term has no gradient, so training starts by learning where
    emitters are instead of spending its first steps shrinking random outputs.

    Parameters
    ----------
    in_channels : int
        Input frames stacked as channels.
    scale : int
        Fine pixels per camera pixel along each axis.
    widths : sequence of int
        Channels per U-Net level; ``len(widths) - 1`` poolings.

    Examples
    --------
    >>> import torch
    >>> SMLMUNet(scale=4, widths=(8, 16))(torch.rand(1, 1, 10, 14)).shape
    torch.Size([1, 1, 40, 56])
    """

    def __init__(self, in_channels: int = 1, scale: int = 8, widths: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels)
        self.scale = check_int("scale", scale)
        widths = check_widths(widths)
        self.body = UNetBody(in_channels, widths, DoubleConv)
        self.head = conv3x3(widths[0], scale * scale)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: Tensor) -> Tensor:
        return self.shuffle(self.head(self.body(x)))
