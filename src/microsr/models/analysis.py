"""What a model costs and how far it sees: parameters, FLOPs and receptive field.

Both functions treat the model as a black box (only ``forward`` is called), so they
work on any module with the model call signature, not only the built-in ones.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import Tensor, nn


class ModelCost(NamedTuple):
    """Size and compute of a model.

    Attributes
    ----------
    params : int
        Number of parameters.
    flops_per_output_pixel : float
        Floating-point operations (2 per multiply-accumulate) of the convolutions and
        linear layers, per output pixel. Activations, pooling, interpolation and
        biases are not counted.
    """

    params: int
    flops_per_output_pixel: float


def _device_and_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where the model's tensors live and their floating type (CPU, float32 if it has none)."""
    tensors = [*model.parameters(), *model.buffers()]
    floating = [t for t in tensors if t.is_floating_point()]
    device = tensors[0].device if tensors else torch.device("cpu")
    return device, floating[0].dtype if floating else torch.float32


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _in_channels(model: nn.Module, in_channels: int | None) -> int:
    return in_channels if in_channels is not None else getattr(model, "in_channels", 1)


def _layer_flops(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
        return 2 * output.numel() * per_output
    if isinstance(module, nn.ConvTranspose2d):
        # Each input value is scattered to (out_channels / groups) * kernel outputs.
        per_input = module.out_channels // module.groups * math.prod(module.kernel_size)
        return 2 * inputs[0].numel() * per_input
    if isinstance(module, nn.Linear):
        return 2 * output.numel() * module.in_features
    return 0


def takes_crop(model: nn.Module) -> bool:
    """Whether ``model(x, crop=c)`` leaves out ``c`` input pixels along each edge of its output.

    Such a model (:class:`~microsr.models.resunet.ResUNet`, :class:`~microsr.models.unet.UNet`)
    skips the work for them, which tiled prediction and :func:`receptive_field` use.

    Examples
    --------
    >>> takes_crop(nn.Conv2d(1, 1, 3))
    False
    """
    return "crop" in inspect.signature(model.forward).parameters


def call_cropped(model: nn.Module, x: Tensor, crop: int) -> Tensor:
    """``model(x, crop=crop)``, or ``model(x)`` when ``crop`` is 0, so any model runs uncropped.

    Examples
    --------
    >>> call_cropped(nn.Conv2d(1, 1, 3), torch.zeros(1, 1, 5, 5), 0).shape
    torch.Size([1, 1, 3, 3])
    """
    return model(x, crop=crop) if crop else model(x)


def model_cost(model: nn.Module, tile: int = 256, *, in_channels: int | None = None, crop: int = 0) -> ModelCost:
    """Count parameters and FLOPs per output pixel on one ``tile`` x ``tile`` input.

    FLOPs are counted by forward hooks on every ``Conv2d``, ``ConvTranspose2d`` and
    ``Linear`` during one forward pass of a ``(1, in_channels, tile, tile)`` input.

    Parameters
    ----------
    model : nn.Module
        Any module mapping ``(N, in_channels, h, w)`` to ``(N, C, H, W)``.
    tile : int
        Input side length. Per-pixel FLOPs of a fully convolutional model hardly depend
        on it, apart from internal padding to a multiple of ``2**depth``.
    in_channels : int, optional
        Defaults to ``model.in_channels``, or 1 if the model has no such attribute.
    crop : int
        Passed to a model whose ``forward`` takes it (it then leaves out ``crop`` input
        pixels along each edge, see :class:`~microsr.predict.engine.Predictor`); FLOPs are then
        per pixel of the cropped output.

    Returns
    -------
    ModelCost

    Examples
    --------
    >>> model_cost(nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=False), tile=16)
    ModelCost(params=216, flops_per_output_pixel=432.0)
    """
    flops = 0

    def count(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal flops
        flops += _layer_flops(module, inputs, output)

    handles = [m.register_forward_hook(count) for m in model.modules()]
    try:
        with _eval_mode(model), torch.no_grad():
            device, dtype = _device_and_dtype(model)
            x = torch.zeros(1, _in_channels(model, in_channels), tile, tile, device=device, dtype=dtype)
            output = call_cropped(model, x, crop)
    finally:
        for handle in handles:
            handle.remove()
    params = sum(p.numel() for p in model.parameters())
    return ModelCost(params, flops / (output.shape[-2] * output.shape[-1]))


def _structural_copy(model: nn.Module) -> nn.Module:
    """A float64 eval-mode copy of ``model`` whose parameters are all positive.

    With positive weights and biases and a positive input no ReLU is ever inactive, so
    every connection the architecture has carries gradient, whatever the trained
    weights are (a new ResUNet's zero-initialised output layer would otherwise hide
    the whole network). Each weight tensor is scaled to sum to about 1 per output
    unit so activations stay near 1, and float64 keeps the small contributions at the
    edge of the field from underflowing to zero.
    """
    probe = copy.deepcopy(model).to(torch.float64).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in probe.parameters():
            p.copy_(torch.rand(p.shape, generator=generator, dtype=torch.float64) + 0.5)
            if p.dim() >= 2:
                p /= p[0].numel()
            p.requires_grad_(False)
    return probe


def _radius(model: nn.Module, size: int, channels: int, offsets: range) -> int:
    """Largest per-axis distance, in input pixels, from an output pixel to an input pixel
    with a non-zero gradient, over the output pixels at input positions
    ``size // 2 + offsets`` (along the diagonal), each on its own random input.
    """
    device, _ = _device_and_dtype(model)
    generator = torch.Generator().manual_seed(size)
    radius = 0
    # Only the output around the measured pixels is needed: a model that can leave out the rest
    # (`crop`) then runs in a fraction of the time and memory (the default model's probe: 1.2 GB).
    crop = max(size // 2 - offsets.stop, 0) if takes_crop(model) else 0
    for offset in offsets:
        x = torch.rand(1, channels, size, size, generator=generator, dtype=torch.float64)
        x = x.to(device).requires_grad_(True)
        y = call_cropped(model, x, crop)
        scale = y.shape[-1] / (size - 2 * crop)
        centre = size // 2 + offset
        # The output pixel whose centre lies in input pixel `centre`, nearest its middle.
        o = int(centre * scale + scale // 2)
        kept = o - int(crop * scale)
        (gradient,) = torch.autograd.grad(y[..., kept, kept].sum(), x)
        support = gradient.abs().sum(dim=(0, 1)).nonzero()
        if len(support):
            position = (o + 0.5) / scale - 0.5
            distance = (support - position).abs().max().item()
            radius = max(radius, math.ceil(distance - 1e-9))
    return radius


_MEASURED: dict[tuple[str, int | None, int, int], int] = {}


def receptive_field(
    model: nn.Module, *, in_channels: int | None = None, phases: int = 8, max_size: int = 1024
) -> int:
    """Radius, in input pixels, beyond which an input change cannot affect an output pixel.

    Measured empirically on the architecture, not the weights: a copy of the model with
    positive float64 weights is run on random positive inputs, and the gradient of one
    output pixel is non-zero exactly at the input pixels connected to it (exactly zero
    elsewhere, as no computation links them). The radius is the largest distance
    along either axis from the output pixel's position in input coordinates to such a
    pixel, rounded up. A new and a trained model therefore give the same answer.

    It is measured for the output pixels at ``phases`` consecutive diagonal input
    positions, because a U-Net with ``d`` poolings sees slightly different extents
    depending on the position relative to its ``2**d`` grid (and max-pooling passes
    gradient to one input of each window); the default covers up to 3 poolings. The
    probe starts at 32 x 32 and doubles until the dependence no longer reaches its
    border.

    A tile overlap of at least this radius (on each side) makes tiled prediction
    identical to whole-image prediction, away from the image border.

    Parameters
    ----------
    model : nn.Module
        Any module with the model call signature. It is not modified.
    in_channels : int, optional
        Defaults to ``model.in_channels``, or 1.
    phases : int
        Number of neighbouring output positions measured.
    max_size : int
        Largest probe side. If the dependence still reaches the probe border (the model
        normalises over the whole image, or attends globally), a warning says so and
        the probe radius is returned.

    Returns
    -------
    int

    A model that :func:`takes_crop` is asked for the output around the measured pixels
    only: the default model's measurement then takes 0.9 s and 0.4 GB on 2 cores, against
    25 s and 1.2 GB for its whole output. The result for a model built by
    :func:`~microsr.models.create_model` is kept for its ``arch`` for the rest of the
    process: every training run and predictor of that architecture reuses it.

    Examples
    --------
    >>> receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 5, padding=2)))
    3
    """
    arch = getattr(model, "arch", None)
    if arch is None:
        return _measure_receptive_field(model, in_channels, phases, max_size)
    key = (json.dumps(arch, sort_keys=True), in_channels, phases, max_size)
    if key not in _MEASURED:
        _MEASURED[key] = _measure_receptive_field(model, in_channels, phases, max_size)
    return _MEASURED[key]


def _measure_receptive_field(model: nn.Module, in_channels: int | None, phases: int, max_size: int) -> int:
    channels = _in_channels(model, in_channels)
    probe = _structural_copy(model)
    # Find a large enough probe with one position, then measure the others on it.
    size = 32
    while (radius := _radius(probe, size, channels, range(1))) >= size // 2 - phases:
        if size >= max_size:
            warnings.warn(
                f"the model's output depends on input pixels at least {radius} pixels away "
                f"(up to the edge of a {size}x{size} probe); it may normalise or attend over the "
                "whole image, so tiled prediction will not exactly match whole-image prediction",
                stacklevel=3,
            )
            return radius
        size *= 2
    return max(radius, _radius(probe, size, channels, range(1, phases)))
