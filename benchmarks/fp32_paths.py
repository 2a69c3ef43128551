"""Float32 inference paths for the default model on one machine: which is fastest on the same tiles.

For CPUs without bfloat16 units, float32 is what ``--precision auto`` runs. This times
the network on the tile the :class:`~microsr.predict.engine.Predictor` feeds it (a
``--tile``-pixel core with the receptive field as context, its output cropped to the
core) through:

* ``torch``: PyTorch eager, channels_last, ``inference_mode`` (what microsr runs);
* ``torch_nchw``: the same in the default contiguous layout;
* ``no_mkldnn``: eager with oneDNN (mkldnn) disabled: PyTorch's own convolutions;
* ``jit_freeze``: ``torch.jit.trace`` + ``torch.jit.freeze`` + ``optimize_for_inference``
  (oneDNN weight prepacking and convolution + ReLU fusion);
* ``compile``: ``torch.compile`` (Inductor, offline; skipped with the reason if it fails);
* ``onnxruntime``: ``torch.onnx.export`` and ONNX Runtime's CPU execution provider with
  all graph optimisations (skipped with the reason if onnx/onnxruntime are missing).

All run in one process in alternating rounds (``microsr.runtime.precision.time_alternating``),
after a warm-up call each, so contention on a shared machine hits them alike. Each
path's output is compared with ``torch``'s (max absolute difference, outputs ~[0, 1]).

Usage::

    python benchmarks/fp32_paths.py --json benchmarks/results_fp32_paths.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from microsr.models import call_cropped, create_model, receptive_field, to_channels_last
from microsr.predict.engine import DEFAULT_TILE
from microsr.runtime.precision import hardware_name, time_alternating


class _Cropped(nn.Module):
    """The model as the Predictor calls it, with the crop fixed: one tensor in, one out (for tracing and export)."""

    def __init__(self, model: nn.Module, crop: int) -> None:
        super().__init__()
        self.model, self.crop = model, crop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return call_cropped(self.model, x, self.crop)


def _eager(model: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model(x)
    return run


def _no_mkldnn(model: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=False):
            return model(x)
    return run


def _jit_freeze(model: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    with torch.no_grad():
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
    return _eager(frozen, x)


def _compile(model: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    compiled = torch.compile(model)
    return _eager(compiled, x)


def _onnxruntime(model: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    import onnxruntime

    path = Path(tempfile.mkdtemp()) / "model.onnx"
    torch.onnx.export(model, (x.contiguous(),), str(path), input_names=["x"], output_names=["y"], dynamo=True)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"x": x.contiguous().numpy()}
    return lambda: torch.from_numpy(session.run(["y"], feed)[0])


_PATHS: dict[str, Callable[[nn.Module, torch.Tensor], Callable[[], torch.Tensor]]] = {
    "no_mkldnn": _no_mkldnn,
    "jit_freeze": _jit_freeze,
    "compile": _compile,
    "onnxruntime": _onnxruntime,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resunet", help="a name from microsr.models.list_models()")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE, help="LR core side of the tile")
    parser.add_argument("--rounds", type=int, default=3, help="timed alternating rounds")
    parser.add_argument("--paths", nargs="*", default=list(_PATHS), help=f"among {', '.join(_PATHS)}")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    torch.manual_seed(0)  # speed does not depend on the weights
    model = create_model(args.model, scale=args.scale).eval()
    with torch.no_grad():  # a new model's residual branch is zero (it starts as bicubic): give it some output
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    overlap = receptive_field(model)
    side = args.tile + 2 * overlap
    x = to_channels_last(torch.rand(1, 1, side, side))
    cropped = _Cropped(model.to(memory_format=torch.channels_last), overlap).eval()
    calls = {"torch": _eager(cropped, x)}
    nchw = _Cropped(create_model(args.model, scale=args.scale).eval(), overlap).eval()
    nchw.load_state_dict(cropped.state_dict())
    calls["torch_nchw"] = _eager(nchw, x.contiguous())
    setup, skipped = {}, {}
    for name in args.paths:
        started = time.perf_counter()
        try:
            calls[name] = _PATHS[name](cropped, x)
            calls[name]()  # the first call compiles or plans
        except Exception as exc:  # noqa: BLE001 -- a path that does not work here is reported, not fatal
            skipped[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            calls.pop(name, None)
        setup[name] = time.perf_counter() - started
    reference = calls["torch"]()
    error = {name: float((call().float() - reference).abs().max()) for name, call in calls.items()}
    seconds = time_alternating(calls, rounds=(args.rounds, args.rounds), clearly_slower=10.0)
    core_mp = (args.tile * args.scale) ** 2 / 1e6
    results = {name: {"seconds_per_tile": s, "core_mp_per_s": core_mp / s, "vs_torch": seconds["torch"] / s,
                      "max_abs_error": error[name], "setup_seconds": setup.get(name)}
               for name, s in seconds.items()}
    best = max(results, key=lambda name: results[name]["vs_torch"])
    settings = {"model": args.model, "scale": args.scale, "tile": args.tile, "overlap": overlap,
                "input": list(x.shape), "rounds": args.rounds, "precision": "float32",
                "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": hardware_name("cpu")}
    try:
        import onnxruntime
        settings["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass

    print(f"{args.model} x{args.scale}, float32, one {side}² tile (core {args.tile}, context {overlap}), "
          f"{torch.get_num_threads()} threads, {settings['cpu']}, torch {torch.__version__}")
    print(f"{'path':<14}{'s / tile':>10}{'core MP/s':>11}{'vs torch':>10}{'max |diff|':>12}{'setup s':>9}")
    for name, r in results.items():
        setup_s = f"{r['setup_seconds']:.1f}" if r["setup_seconds"] is not None else "-"
        print(f"{name:<14}{r['seconds_per_tile']:>10.3f}{r['core_mp_per_s']:>11.2f}{r['vs_torch']:>10.2f}"
              f"{r['max_abs_error']:>12.2e}{setup_s:>9}")
    for name, reason in skipped.items():
        print(f"{name:<14}skipped: {reason}")
    print(f"fastest: {best} ({results[best]['vs_torch']:.2f}x torch eager)")
    if args.json:
        args.json.write_text(json.dumps({"settings": settings, "results": results, "skipped": skipped,
                                         "fastest": best}, indent=2))


if __name__ == "__main__":
    main()
