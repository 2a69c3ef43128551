"""How fast this machine runs microsr, against what its hardware can do (``microsr bench``).

Three measurements, each timed after a warm-up run:

- the peak throughput of the hardware's workhorse, a 3x3 convolution with 64 input
  and output channels in ``channels_last`` layout, in float32 and bfloat16;
- prediction: output megapixels per second of a model through the tiled
  :class:`~microsr.predict.engine.Predictor` in float32 and in bfloat16 (float16 on a GPU
  without it), timed in alternating runs, next to what ``--precision auto`` chose on
  this machine (:func:`microsr.runtime.precision.measure_precision`) and how its speed compares
  with the fastest; the fraction of the convolution peak this
  represents (megapixels/s x the model's FLOPs per output pixel); and the network alone
  on one tile with its context, called as the Predictor calls it. Its FLOPs over those
  of the tile's core alone (``tiling_work``) are the cost of the tiles' overlap; its
  FLOP/s over the peak (``network_fraction_of_peak``) are the network's own efficiency;
- training: output megapixels per second of training steps (forward, backward,
  optimiser), counted as 3x the forward FLOPs, also as a fraction of the peak.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from microsr.models import call_cropped, create_model, model_cost, to_channels_last
from microsr.models.losses import get_loss
from microsr.predict.engine import DEFAULT_TILE, Predictor
from microsr.runtime.allocator import reuse_freed_memory
from microsr.runtime.precision import PRECISIONS, autocast, candidates, measure_precision, resolve_precision, time_alternating
from microsr.training import adamw

__all__ = ["BenchResult", "conv_peak", "run_bench"]

# A backward pass costs about twice the forward one (gradients for inputs and weights).
_TRAINING_FLOPS_FACTOR = 3


def _seconds_per_call(fn: Callable[[], object], *, repeats: int, seconds: float = 0.0) -> float:
    """Median seconds per call of ``fn``: at least ``repeats`` timed calls lasting at least ``seconds``
    in all, after a warm-up of at least one call and ``seconds``."""
    warm_until = time.perf_counter() + seconds
    fn()
    while time.perf_counter() < warm_until:
        fn()
    times = []
    timed_until = time.perf_counter() + seconds
    while len(times) < repeats or time.perf_counter() < timed_until:
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def conv_peak(
    dtype: torch.dtype, *, device: str | torch.device = "cpu", size: int = 128, repeats: int = 5, seconds: float = 0.5
) -> float:
    """Measured FLOP/s of a 64 -> 64 channel 3x3 convolution on a ``(4, 64, size, size)`` batch.

    Weights and input are already in ``dtype`` (channels_last): the peak of the
    convolution alone. (Under autocast from float32 the input's cast is timed too; on
    a CPU with AMX that showed a fifth of the peak.) The median call of at least
    ``repeats`` calls over at least ``seconds``, after as long a warm-up: a call takes
    milliseconds, and five of them on a shared 2-core machine read anywhere from 1.05
    to 2.29 TFLOP/s in bfloat16, where 0.5 s read 2.11-2.31 (the first calls of a
    process are the slowest).

    Examples
    --------
    >>> conv_peak(torch.float32, size=16, repeats=1, seconds=0.01) > 0
    True
    """
    device = torch.device(device)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(device, dtype, memory_format=torch.channels_last).eval()
    x = torch.randn(4, 64, size, size, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    flops = 2 * 64 * 64 * 9 * x.shape[0] * size * size

    def forward() -> None:
        with torch.inference_mode():
            conv(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return flops / _seconds_per_call(forward, repeats=repeats, seconds=seconds)


@dataclass(frozen=True)
class BenchResult:
    """What :func:`run_bench` measured; FLOP/s in TFLOP/s, throughput in output megapixels/s.

    ``predict_mps`` is in ``precision``; ``predict_mps_by_precision`` has every candidate of
    ``auto``, and ``auto_vs_fastest`` is the auto choice's MP/s over the fastest of them.
    """

    model: str
    scale: int
    device: str
    precision: str
    threads: int
    conv_peak_fp32: float
    conv_peak_bf16: float
    flops_per_output_pixel: float
    predict_mps: float
    predict_fraction_of_peak: float
    predict_mps_by_precision: dict[str, float]
    auto_precision: str
    auto_reason: str
    auto_cached: bool
    auto_vs_fastest: float
    network_mps: float
    network_fraction_of_peak: float
    tiling_work: float
    train_mps: float
    train_fraction_of_peak: float

    def as_dict(self) -> dict:
        """Plain data for JSON."""
        return asdict(self)


@reuse_freed_memory()  # as prediction and training run, and so the peak is not page faults
def run_bench(
    model: str = "resunet",
    *,
    scale: int = 4,
    device: str | torch.device = "cpu",
    precision: str = "auto",
    size: int = 1024,
    tile: int = DEFAULT_TILE,
    train_tile: int = 128,
    batch_size: int = 8,
    repeats: int = 3,
) -> BenchResult:
    """Measure the convolution peak and a model's prediction and training throughput.

    Parameters
    ----------
    model : str
        Registered model name (see :func:`microsr.models.list_models`).
    scale : int
        Upsampling factor of the model.
    device : str or torch.device
        Where to run.
    precision : str
        As for prediction: "auto", "fp32", "bf16" or "fp16". The fraction of peak is
        against the convolution peak in the precision used (fp16 against bf16's).
    size : int
        Side of the LR image predicted (tiled by ``tile``).
    train_tile, batch_size : int
        HR tile side and batch of the training steps.
    repeats : int
        Timed repeats of each measurement (the median is reported).

    Returns
    -------
    BenchResult
        Network and training are measured in ``precision`` (what ``auto`` chose, for ``"auto"``);
        prediction in every precision ``auto`` chooses between as well.

    Examples
    --------
    >>> result = run_bench("resunet_small", size=32, tile=32, train_tile=32, batch_size=1, repeats=1)
    >>> result.predict_mps > 0 and result.train_mps > 0
    True
    """
    device = torch.device(device)
    net = create_model(model, scale=scale).to(device, memory_format=torch.channels_last)
    auto = measure_precision(net, device)
    dtype = resolve_precision(precision, device, net)
    flops = model_cost(net, tile=tile).flops_per_output_pixel
    peaks = {name: conv_peak(d, device=device, repeats=repeats) for name, d in
             (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    peak = peaks["fp32"] if dtype == torch.float32 else peaks["bf16"]

    image = np.random.default_rng(0).random((size, size)).astype(np.float32)
    # The default overlap, as with a trained model: the measured receptive field.
    names = list(dict.fromkeys([*candidates(device), *(n for n, d in PRECISIONS.items() if d == dtype)]))
    predictors = {name: Predictor(net, scale=scale, tile=tile, device=device, precision=name, progress=False)
                  for name in names}
    seconds = time_alternating({name: (lambda p=p: p.predict(image)) for name, p in predictors.items()},
                               rounds=(repeats, repeats))
    by_precision = {name: (size * scale) ** 2 / s / 1e6 for name, s in seconds.items()}
    predict_mps = by_precision[next(n for n in names if PRECISIONS[n] == dtype)]
    any_predictor = predictors[names[0]]  # all have the same overlap and crop
    core, crop = min(tile, size), any_predictor.crop
    side = core + 2 * any_predictor.overlap
    one_tile = to_channels_last(torch.rand(1, 1, side, side, device=device))

    def forward() -> None:
        with torch.inference_mode(), autocast(device, dtype):
            call_cropped(net, one_tile, crop)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    network_seconds = _seconds_per_call(forward, repeats=repeats)
    tile_flops = model_cost(net, tile=side, crop=crop).flops_per_output_pixel * ((side - 2 * crop) * scale) ** 2

    net.train()
    optimizer = adamw(net.parameters(), lr=1e-4, weight_decay=0.01, device=device)
    loss_fn = get_loss("msssim_l1")
    lr_tile = train_tile // scale
    inputs = to_channels_last(torch.rand(batch_size, 1, lr_tile, lr_tile, device=device))
    targets = torch.rand(batch_size, 1, train_tile, train_tile, device=device)

    def step() -> None:
        with autocast(device, dtype):
            prediction = net(inputs)
        loss = loss_fn(prediction.float(), targets)  # in float32, as training does
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    train_mps = batch_size * train_tile**2 / _seconds_per_call(step, repeats=repeats) / 1e6
    return BenchResult(
        model=model, scale=scale, device=str(device), precision=str(dtype).removeprefix("torch."),
        threads=torch.get_num_threads(),
        conv_peak_fp32=peaks["fp32"] / 1e12, conv_peak_bf16=peaks["bf16"] / 1e12,
        flops_per_output_pixel=flops,
        predict_mps=predict_mps, predict_fraction_of_peak=predict_mps * 1e6 * flops / peak,
        predict_mps_by_precision=by_precision, auto_precision=auto.precision, auto_reason=auto.reason,
        auto_cached=auto.cached,
        auto_vs_fastest=by_precision.get(auto.precision, math.nan) / max(by_precision.values()),
        network_mps=(core * scale) ** 2 / network_seconds / 1e6,
        network_fraction_of_peak=tile_flops / network_seconds / peak,
        tiling_work=tile_flops / (flops * (core * scale) ** 2),
        train_mps=train_mps,
        train_fraction_of_peak=train_mps * 1e6 * flops * _TRAINING_FLOPS_FACTOR / peak,
    )
