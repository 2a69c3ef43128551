"""A model calibrated on the stack itself: calibrate (raw frames only) -> train -> reconstruct -> score.

Takes one held-out stack of ``evaluate.py`` (default ``heldout_emccd_4``: the EMCCD at 4 emitters per
µm² per frame, same seed), calibrates a simulation from its frames with ``microsr smlm calibrate``'s
function (no ground truth), trains ``smlm_unet`` x8 on that simulation for ``--minutes`` (frames of
32 × 32, the peak threshold chosen on simulated validation frames by the config's criterion), then
scores the reconstruction against the stack's ground truth. Writes JSON.

Usage (train time + about a minute; run nice'd on a shared machine)::

    nice -n 19 .venv/bin/python benchmarks/smlm/calibrated.py [--stack heldout_emccd_4] [--minutes 10] \
        [--json benchmarks/smlm/results_calibrated.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
import yaml

from evaluate import DENSITIES, HELDOUT_CAMERAS, HERE, _run
from microsr.simulate.calibrate import calibrate, write_simulation
from microsr.simulate.smlm import SMLMSimulation, simulate_stack
from microsr.training import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stack", default="heldout_emccd_4")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=HERE / "results_calibrated.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    _, camera, density = args.stack.split("_")
    k, j = list(HELDOUT_CAMERAS).index(camera), DENSITIES.index(float(density))
    config = SMLMSimulation(size=64, density=float(density), **HELDOUT_CAMERAS[camera])
    stack, truth = simulate_stack(config, 200, seed=900 + 10 * k + j)  # the same stack as evaluate.py's

    work = Path(tempfile.mkdtemp(prefix="smlm_calibrated_"))
    calibration = calibrate(stack, 100.0)
    settings = yaml.safe_load(write_simulation(calibration, work / "simulation.yaml").read_text())
    settings.update(size=32, val_frames=128)
    run = {"data": {"simulation": settings, "batch_size": 16, "samples_per_epoch": 512, "num_workers": 1},
           "scale": 8, "model": {"name": "smlm_unet", "kwargs": {"widths": [16, 32, 64]}},
           "train": {"minutes": args.minutes, "lr": 1e-3, "seed": 0}}
    record = train(run, work / "model", progress=False)
    scores, _ = _run(stack, work / "model" / "best.safetensors", truth)
    result = {
        "stack": args.stack, "minutes": args.minutes, "steps": record["step"],
        "command": f"nice -n 19 .venv/bin/python benchmarks/smlm/calibrated.py --stack {args.stack} "
                   f"--minutes {args.minutes:g}",
        "calibration": {row[0]: row[1] for row in calibration.rows()}, "warnings": calibration.warnings,
        "truth": {"density": config.density, "photons": config.photons, "background": config.background,
                  "fwhm": config.fwhm, "gain": (config.em_gain or 1) / config.photons_per_adu},
        "scores": scores,
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["scores"], indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
