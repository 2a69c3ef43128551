"""What every worker of the peer benchmark shares; needs only the standard library and torch.

The workers run in different virtual environments (microsr's own, PSSR2's, CAREamics'),
each as a fresh process per case, and report one JSON object on their last stdout line.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

HERE = Path(__file__).resolve().parent


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM, which a child does not inherit, unlike ru_maxrss)."""
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) / 1024


class ForwardTimer:
    """Wall time spent inside ``module.forward`` and the pixels it produced, over all calls.

    Hooks on the network itself, so a tool's own tiling, I/O and blending stay outside
    the count: over the same tiles, ``seconds`` is the bare network cost of a tool run.
    """

    def __init__(self, module: nn.Module) -> None:
        self.reset()
        self._started = 0.0
        module.register_forward_pre_hook(self._before)
        module.register_forward_hook(self._after)

    def reset(self) -> None:
        self.seconds = 0.0
        self.pixels = 0
        self.calls = 0

    def _before(self, module: nn.Module, inputs: Any) -> None:
        self._started = time.perf_counter()

    def _after(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        self.seconds += time.perf_counter() - self._started
        self.pixels += output.shape[0] * output.shape[-2] * output.shape[-1]
        self.calls += 1


def measure(run: Callable[[], None], timer: ForwardTimer, output_pixels: int, **extra: Any) -> dict[str, Any]:
    """Time ``run()`` and return the figures every speed case reports (the timer counts ``run()`` only)."""
    timer.reset()
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    megapixels = output_pixels / 1e6
    return {
        "seconds": seconds,
        "output_megapixels": megapixels,
        "megapixels_per_s": megapixels / seconds,
        "network_seconds": timer.seconds,
        "network_megapixels_per_s": megapixels / timer.seconds,
        "network_tile_megapixels_per_s": timer.pixels / 1e6 / timer.seconds,
        "forward_calls": timer.calls,
        "peak_rss_mb": peak_rss_mb(),
        "loadavg_1min": [load_before, os.getloadavg()[0]],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **extra,
    }


def _microsr_models() -> ModuleType:
    """``microsr.models`` from this checkout: it needs only torch, so every venv can import it."""
    sys.path.insert(0, str(HERE.parents[1] / "src"))
    return importlib.import_module("microsr.models")


def model_size(model: nn.Module, tile: int) -> dict[str, float]:
    """Parameters and FLOPs per output pixel by microsr's black-box ``model_cost``."""
    return _microsr_models().model_cost(model, tile=tile, in_channels=1)._asdict()


def control_case(tile: int, tiles: int) -> dict[str, Any]:
    """microsr's default network, bare, in float32 on ``tiles`` random tiles, under this venv's torch.

    The same figure from every venv tells how much of a speed ratio is the torch build.
    """
    torch.manual_seed(0)
    model = _microsr_models().create_model("resunet").eval()
    timer = ForwardTimer(model)
    batch = torch.rand(1, 1, tile, tile)

    def run() -> None:
        with torch.inference_mode():
            for _ in range(tiles):
                model(batch)

    with torch.inference_mode():
        model(batch)  # the first call allocates; keep it out of the figure
    output = tiles * (tile * model.scale) ** 2
    return measure(run, timer, output, tile=tile, tiles=tiles)


def run_worker(description: str, cases: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> None:
    """A worker's command line: ``WORKER {speed,train,control} SETTINGS_JSON``; reports the case's result."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("command", choices=[*cases, "control"])
    parser.add_argument("settings", type=json.loads, help="the case's settings as a JSON object")
    args = parser.parse_args()
    if args.command == "control":
        report(control_case(args.settings["tile"], args.settings["tiles"]))
    else:
        report(cases[args.command](args.settings))


def report(result: dict[str, Any]) -> None:
    """Print the result as the last stdout line, where the orchestrator reads it."""
    sys.stdout.flush()
    print("\n" + json.dumps(result), flush=True)
