"""Cost and speed of the SMLM reconstruction models: parameters, FLOPs per output pixel, seconds per stack.

For each registered SMLM model at x8 (random weights, fp32, eval mode): ``model_cost(model, tile=64)``
and the wall-clock time of ``microsr.smlm.reconstruct.reconstruct`` (network + localization, no quick
calibration check) on a 64 × 64 stack shaped like Deep-STORM's test stack (361 frames; ``deepstorm``
on its first 8 frames only, it is ~50× slower), best of ``--repeats`` runs. Run at normal priority;
the JSON records the machine, threads and the load average, since other processes on the cores slow
every model.

Usage::

    .venv/bin/python benchmarks/smlm/models.py [--repeats 2]
    .venv/bin/python benchmarks/smlm/models.py --tables   # the README's table from the JSON
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from microsr.models import create_model
from microsr.models.analysis import model_cost
from microsr.smlm.reconstruct import reconstruct

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import figures  # noqa: E402
from figures import markdown_table  # noqa: E402

RESULTS = HERE / "results_models.json"
MODELS = {"smlm_unet": 361, "dsir": 361, "deepstorm": 8}
WHAT = {"smlm_unet": "U-Net at camera resolution, x8 by one PixelShuffle",
        "dsir": "DSIR autoencoder as published on the x8 bilinear input, one BatchNorm per layer",
        "deepstorm": "Deep-STORM's encoder-decoder on the x8 input"}


def run(repeats: int) -> dict:
    """Cost and best-of-``repeats`` reconstruction time of each model."""
    torch.manual_seed(0)
    stack = np.random.default_rng(0).poisson(150, (361, 64, 64)).astype(np.uint16)
    rows = {}
    for name, frames in MODELS.items():
        model = create_model(name, scale=8).eval()
        cost = model_cost(model, tile=64)
        times = []
        for _ in range(repeats):
            started = time.monotonic()
            reconstruct(stack[:frames], model, pixel_size=100.0, threshold=0.5, precision="fp32", check=False)
            times.append(time.monotonic() - started)
        rows[name] = {"params": cost.params, "flops_per_output_pixel": cost.flops_per_output_pixel,
                      "frames": frames, "seconds": min(times), "all_seconds": times}
        print(f"{name:10s} {cost.params:>9,d} params {cost.flops_per_output_pixel / 1e3:8.2f} kFLOPs/px "
              f"{min(times):6.2f} s for {frames} frames", flush=True)
    return {"precision": "fp32", "command": ".venv/bin/python benchmarks/smlm/models.py", "models": rows}


def readme_tables(results: dict) -> dict[str, str]:
    """README "SMLM": parameters, FLOPs per output pixel and seconds per stack of each model."""
    rows = []
    for name, r in results["models"].items():
        seconds = f"{r['seconds']:.1f}" + (f" ({r['frames']} frames)" if r["frames"] != 361 else "")
        shipped = " (shipped)" if name == "smlm_unet" else ""
        rows.append([f"`{name}`{shipped}", WHAT[name], f"{r['params'] / 1e3:,.1f} k" if r["params"] < 1e6
                     else f"{r['params'] / 1e6:.2f} M", f"{r['flops_per_output_pixel'] / 1e3:.1f} k", seconds])
    return {"models": markdown_table(["model", "what it is", "params", "FLOPs/px", "seconds"], rows, align="llrrr")}


def main() -> None:
    parser = figures.parser(__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    figures.publish(RESULTS, None if args.tables else lambda: run(args.repeats), readme_tables, __file__)


if __name__ == "__main__":
    main()
