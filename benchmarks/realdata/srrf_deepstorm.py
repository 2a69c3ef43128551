"""README "SIM and SRRF", SRRF table: frames 1-5 of Deep-STORM's simulated microtubule stack against eSRRF of all 361.

``../shared/data/deepstorm/testStack_SimulatedMicrotubules.tif`` (361 frames of 64², 100 nm
pixels). The reference is the eSRRF (NanoPyx, x2, unthreaded) of all 361 frames; from the
first 5 frames: their mean upsampled bicubically x2, their eSRRF, the shipped 5-frame
model ``srrf5`` (trained on fields simulated with settings ``microsr smlm calibrate`` measured
from this stack's raw frames, no ground truth; ``configs/srrf5.yaml``) and, as an upper bound, the
5-frame model shipped before (trained on a preset fitted with this stack's ground truth). Each image is normalised by its 0.1/99.9 percentiles; PSNR (data range 1),
SSIM, RSP (the Pearson correlation after an intensity fit, as NanoJ-SQUIRREL's) against the
reference, and each image's own decorrelation resolution (50 nm output pixels). From the
project root (needs the ``nanopyx`` extra)::

    .venv/bin/python benchmarks/realdata/srrf_deepstorm.py            # under a minute (eSRRF is cached)
    .venv/bin/python benchmarks/realdata/srrf_deepstorm.py --tables   # the README table from the JSON
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import figures  # noqa: E402
from figures import DATA, markdown_table  # noqa: E402

RESULTS = HERE / "results_srrf_deepstorm.json"
STACK = DATA / "deepstorm" / "testStack_SimulatedMicrotubules.tif"
OUTPUT_PIXEL_NM = 50.0
INPUT_FRAMES = 5
# The model shipped before: trained on the deepstorm-test preset, fitted with this very stack's ground truth.
GROUNDTRUTH_MODEL = HERE.parent / "smlm" / "srrf5_groundtruth.safetensors"


def evaluate(cache: Path) -> list[dict]:
    """One row per method: psnr, ssim, rsp and resolution_nm."""
    from microsr.evaluate.baseline import upscale
    from microsr.io import read_image
    from microsr.evaluate.metrics import decorrelation, error_map, normalize_percentile, psnr, ssim
    from microsr.sim.network import predict_sim
    from microsr.simulate.srrf import ESRRFSettings, esrrf

    stack = np.asarray(read_image(STACK).data, dtype=np.float32)
    settings = ESRRFSettings(run_type="Unthreaded")
    reference = normalize_percentile(esrrf(stack, settings, cache=cache)[0])
    few = stack[:INPUT_FRAMES]
    images = {
        "mean, bicubic x2": upscale(few.mean(axis=0), 2),
        "eSRRF of the 5 frames": esrrf(few, settings, cache=cache)[0],
        "srrf5": predict_sim("srrf5", few),
        "srrf5, ground truth": predict_sim(GROUNDTRUTH_MODEL, few),
    }
    rows = []
    for method, image in images.items():
        image = normalize_percentile(image)
        rows.append({"method": method, "psnr": psnr(reference, image, data_range=1.0),
                     "ssim": ssim(reference, image, data_range=1.0), "rsp": error_map(reference, image).rsp,
                     "resolution_nm": decorrelation(image, pixel_size=OUTPUT_PIXEL_NM).resolution})
    return rows


LABELS = {"mean, bicubic x2": "their mean, bicubic x2", "eSRRF of the 5 frames": "eSRRF of the 5 frames",
          "srrf5": "`srrf5` (calibrated from the stack's frames, no ground truth)",
          "srrf5, ground truth": "5-frame model calibrated with the ground truth (upper bound)"}
UPPER_BOUNDS = {"srrf5, ground truth"}  # not results: never in bold


def readme_tables(results: dict) -> dict[str, str]:
    """The README's SRRF table; the best value of each column in bold (upper bounds aside)."""
    rows = results["rows"]
    fair = [r for r in rows if r["method"] not in UPPER_BOUNDS]
    best = {"psnr": max(r["psnr"] for r in fair), "ssim": max(r["ssim"] for r in fair),
            "rsp": max(r["rsp"] for r in fair), "resolution_nm": min(r["resolution_nm"] for r in fair)}
    formats = {"psnr": "{:.2f}", "ssim": "{:.3f}", "rsp": "{:.3f}", "resolution_nm": "{:.0f}"}

    def cell(row: dict, key: str) -> str:
        text = formats[key].format(row[key])
        return f"**{text}**" if row[key] == best[key] and row["method"] not in UPPER_BOUNDS else text

    table = [[LABELS[r["method"]], *(cell(r, k) for k in formats)] for r in rows]
    return {"srrf": markdown_table(["from frames 1–5", "PSNR (dB)", "SSIM", "RSP", "resolution (nm)"], table)}


def main() -> None:
    args = figures.parser(__doc__).parse_args()

    def compute() -> dict:
        with tempfile.TemporaryDirectory() as cache:  # a fresh cache: the eSRRF is computed, not recalled
            return {"rows": evaluate(Path(cache))}

    figures.publish(RESULTS, None if args.tables else compute, readme_tables, __file__)


if __name__ == "__main__":
    main()
