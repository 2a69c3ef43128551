"""Cost and speed of the SMLM reconstruction models: parameters, FLOPs per output pixel, seconds per stack.

For each registered SMLM model at x8 (random weights, fp32, eval mode): ``model_cost(model, tile=64)``
and the wall-clock time of ``microsr.smlm.reconstruct.reconstruct`` (network + localization, no quick
calibration check) on a 64 × 64 stack shaped like Deep-STORM's test stack (361 frames; ``deepstorm``
on its first 8 frames only, it is ~50× slower), best of ``--repeats`` runs. Run at normal priority;
the JSON records the machine, threads and the load average, since other processes on the cores slow
every model.

Usage::

    .venv/bin/python benchmarks/smlm/models.py [--repeats 2] [--json benchmarks/smlm/results_models.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from microsr.models import create_model
from microsr.models.analysis import model_cost
from microsr.smlm.reconstruct import reconstruct

HERE = Path(__file__).resolve().parent
MODELS = {"smlm_unet": 361, "dsir": 361, "deepstorm": 8}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, default=HERE / "results_models.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    stack = np.random.default_rng(0).poisson(150, (361, 64, 64)).astype(np.uint16)
    rows = {}
    for name, frames in MODELS.items():
        model = create_model(name, scale=8).eval()
        cost = model_cost(model, tile=64)
        times = []
        for _ in range(args.repeats):
            started = time.monotonic()
            reconstruct(stack[:frames], model, pixel_size=100.0, threshold=0.5, precision="fp32", check=False)
            times.append(time.monotonic() - started)
        rows[name] = {"params": cost.params, "flops_per_output_pixel": cost.flops_per_output_pixel,
                      "frames": frames, "seconds": min(times), "all_seconds": times}
        print(f"{name:10s} {cost.params:>9,d} params {cost.flops_per_output_pixel / 1e3:8.2f} kFLOPs/px "
              f"{min(times):6.2f} s for {frames} frames", flush=True)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
              "precision": "fp32", "load_average": os.getloadavg(),
              "command": ".venv/bin/python benchmarks/smlm/models.py", "models": rows}
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
