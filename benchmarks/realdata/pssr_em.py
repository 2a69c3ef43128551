"""README "Benchmark a model on real pairs": train on one region of the PSSR EM pair, score on another.

The published PSSR tSEM pair (``../shared/data/napari_pssr``: HR 600 x 900 at 2 nm, its LR
150 x 225 at 8 nm made by PSSR's crappifier) is cut into two regions that share no pixel:
columns 0-599 of the HR train the model, columns 600-899 (LR 150-224) are the benchmark.
The script writes the crops, runs the README's two commands (``microsr train`` with a fixed
number of steps, so the model does not depend on the machine's speed, then ``microsr
benchmark``) and writes ``results_pssr_em.json``. From the project root::

    .venv/bin/python benchmarks/realdata/pssr_em.py            # about a minute on 2 cores
    .venv/bin/python benchmarks/realdata/pssr_em.py --tables   # print the README's table from the JSON
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import figures  # noqa: E402
from figures import DATA, ROOT, machine, markdown_table  # noqa: E402

RESULTS = HERE / "results_pssr_em.json"
FOLDER = DATA / "napari_pssr"
SCALE = 4
SPLIT_COLUMN = 600  # HR column where the benchmark region starts (a multiple of SCALE)
STEPS = 30


def crop_regions(work: Path) -> dict[str, Path]:
    """Write the training HR (columns < SPLIT_COLUMN) and the benchmark pair (the rest) under ``work``."""
    from microsr.io import read_image, write_image

    hr, lr = read_image(FOLDER / "HR" / "small.tif"), read_image(FOLDER / "LR" / "small.tif")
    paths = {"train_hr": work / "train" / "hr.tif", "test_hr": work / "test" / "hr" / "right.tif",
             "test_lr": work / "test" / "lr" / "right.tif"}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    write_image(paths["train_hr"], hr.data[:, :SPLIT_COLUMN], pixel_size=2.0, overwrite=True)
    write_image(paths["test_hr"], hr.data[:, SPLIT_COLUMN:], pixel_size=2.0, overwrite=True)
    write_image(paths["test_lr"], lr.data[:, SPLIT_COLUMN // SCALE:], pixel_size=2.0 * SCALE, overwrite=True)
    return paths


def commands(paths: dict[str, Path], work: Path, steps: int) -> list[list[str]]:
    """The README's two commands on the crops."""
    model, report = work / "pssr_model", work / "pssr_report"
    return [
        ["microsr", "train", "--hr", str(paths["train_hr"]), "--scale", str(SCALE), "--degradation", "pssr",
         "--model", "resunet_small", "--steps", str(steps), "-o", str(model)],
        ["microsr", "benchmark", str(model), "--hr", str(paths["test_hr"].parent), "--lr",
         str(paths["test_lr"].parent), "--pixel-size", "2", "-o", str(report), "--overwrite"],
    ]


def run(work: Path, steps: int) -> dict:
    """Crop, train, benchmark; the results as written to the JSON."""
    import torch

    from microsr.runtime.precision import resolve_precision

    paths = crop_regions(work)
    shutil.rmtree(work / "pssr_model", ignore_errors=True)  # `microsr train` refuses an existing model folder
    timings = []
    for command in commands(paths, work, steps):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "microsr", *command[1:]], check=True, cwd=ROOT)
        timings.append(round(time.perf_counter() - start, 1))
    summary = json.loads((work / "pssr_report" / "summary.json").read_text())
    precision = json.loads((work / "pssr_model" / "config.json").read_text())["run"]["train"]["precision"]
    methods = summary["methods"]
    return {
        "what": "x4 PSSR tSEM pair: trained on HR columns 0-599, scored on columns 600-899 (LR 150-224)",
        # WORK stands for the --work folder, so the record names no machine's absolute paths.
        "commands": [shlex.join(c).replace(str(work), "WORK") for c in commands(paths, work, steps)],
        "work": "WORK: --work, default benchmarks/realdata/.work/pssr_em",
        "seconds": {"train": timings[0], "benchmark": timings[1]},
        "steps": steps,
        "precision": {"training": precision, "resolved": str(resolve_precision(precision, torch.device("cpu"))),
                      "benchmark": "auto (the Predictor's default), as training"},
        "scores": {m: {k: methods[m][k] for k in ("psnr", "ssim", "nrmse")} for m in ("microsr", "bicubic", "bilinear")},
        "machine": machine(),
    }


def readme_tables(results: dict) -> dict[str, str]:
    """The README's table of the disjoint benchmark."""
    rows = [[m, f"{s['psnr']:.2f}", f"{s['ssim']:.3f}", f"{s['nrmse']:.3f}"] for m, s in results["scores"].items()]
    return {"example": markdown_table(["method", "PSNR (dB)", "SSIM", "NRMSE"], rows, align="lrrr")}


def main() -> None:
    parser = figures.parser(__doc__)
    parser.add_argument("--work", type=Path, default=HERE / ".work" / "pssr_em", help="folder for crops and outputs")
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args()
    figures.publish(RESULTS, None if args.tables else lambda: run(args.work, args.steps), readme_tables, __file__)


if __name__ == "__main__":
    main()
