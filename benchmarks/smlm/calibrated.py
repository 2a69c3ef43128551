"""A model calibrated on the stack itself: calibrate (raw frames only) -> train -> reconstruct -> score.

Takes one held-out stack of ``evaluate.py`` (default ``heldout_emccd_4``: the EMCCD at 4 emitters per
µm² per frame, same seed), calibrates a simulation from its frames with ``microsr smlm calibrate``'s
function (no ground truth), trains ``smlm_unet`` x8 on that simulation for ``--steps`` (frames of
32 × 32, the peak threshold chosen on simulated validation frames by the criterion the calibrated
config fixes: Jaccard at 250 nm), then scores the reconstruction against the stack's ground truth.
A number of steps, not minutes, so the result does not depend on the machine or its load. Writes JSON.

Usage (about 12 minutes on 2 CPU cores for 3000 steps)::

    .venv/bin/python benchmarks/smlm/calibrated.py [--stack heldout_emccd_4] [--steps 3000]
    .venv/bin/python benchmarks/smlm/calibrated.py --tables   # the README's table from the JSON
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import figures  # noqa: E402
from evaluate import DENSITIES, HELDOUT_CAMERAS, _percent, _run  # noqa: E402
from figures import markdown_table  # noqa: E402

RESULTS = HERE / "results_calibrated.json"


def run(stack_name: str, steps: int) -> dict:
    """Calibrate on the held-out stack ``stack_name``, train ``steps`` steps on that simulation, score."""
    from microsr.simulate.calibrate import calibrate, write_simulation
    from microsr.simulate.smlm import SMLMSimulation, simulate_stack
    from microsr.training import train

    torch.set_num_threads(1)  # one thread: on a shared machine a second one mostly waits for the first
    _, camera, density = stack_name.split("_")
    k, j = list(HELDOUT_CAMERAS).index(camera), DENSITIES.index(float(density))
    config = SMLMSimulation(size=64, density=float(density), **HELDOUT_CAMERAS[camera])
    stack, truth = simulate_stack(config, 200, seed=900 + 10 * k + j)  # the same stack as evaluate.py's

    work = Path(tempfile.mkdtemp(prefix="smlm_calibrated_"))
    calibration = calibrate(stack, 100.0)
    settings = yaml.safe_load(write_simulation(calibration, work / "simulation.yaml").read_text())
    settings.update(size=32, val_frames=128)
    run_config = {"data": {"simulation": settings, "batch_size": 16, "samples_per_epoch": 1024, "num_workers": 1},
                  "scale": 8, "model": {"name": "smlm_unet", "kwargs": {"widths": [16, 32, 64]}},
                  "train": {"steps": steps, "lr": 1e-3, "seed": 0}}
    record = train(run_config, work / "model", progress=False)
    scores, _ = _run(stack, work / "model" / "best.safetensors", truth)
    return {
        "stack": stack_name, "steps": record["step"],
        "command": f".venv/bin/python benchmarks/smlm/calibrated.py --stack {stack_name} --steps {steps}",
        "threshold_criterion": settings["threshold_criterion"], "threshold_radius": settings["threshold_radius"],
        "calibration": {row[0]: row[1] for row in calibration.rows()}, "warnings": calibration.warnings,
        "truth": {"density": config.density, "photons": config.photons, "background": config.background,
                  "fwhm": config.fwhm, "gain": (config.em_gain or 1) / config.photons_per_adu},
        "scores": scores,
    }


def readme_tables(results: dict) -> dict[str, str]:
    """README "SMLM": the calibrated model's scores on its stack."""
    s = results["scores"]
    row = [f"`{results['stack']}`", f"{results['steps']:,}", f"{s['threshold']:g}", _percent(s["recall_250"]),
           _percent(s["precision_250"]), _percent(s["jaccard_250"]), _percent(s["jaccard_100"]),
           f"{s['rmse_250']:.1f} nm"]
    header = ["stack", "steps", "threshold", "recall", "precision", "Jaccard", "Jaccard 100 nm", "RMSE"]
    return {"calibrated": markdown_table(header, [row], align="lrrrrrrr")}


def main() -> None:
    parser = figures.parser(__doc__)
    parser.add_argument("--stack", default="heldout_emccd_4")
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()
    figures.publish(RESULTS, None if args.tables else lambda: run(args.stack, args.steps), readme_tables, __file__)


if __name__ == "__main__":
    main()
