"""README "SIM and SRRF", T-SIM ER: a 9-frame model trained on ER_1, scored on ER_2, which it never saw.

``../shared/data/tsim_er`` holds two real 2D-SIM acquisitions of the endoplasmic reticulum
(3 time points x 9 raw frames = 3 angles x 3 phases, 112 x 512) with the authors' SIM
reconstruction of the middle time point (224 x 1024). ``configs/tsim_er.yaml`` trains on ER_1;
this script scores, on ER_2's middle time point against its reconstruction: wide-field (the 9
frames' mean, bicubic x2), classical Wiener SIM (``microsr.sim.wiener``, pattern
estimated from the frames), the shipped ``tirf9`` the training starts from, and the trained
model. Every image is normalised by its own 0.1/99.9 percentiles before PSNR (data range 1),
SSIM and NRMSE; resolution is each image's decorrelation analysis, in output pixels (the files
record no pixel size). From the project root::

    microsr train configs/tsim_er.yaml -o tsim_er_model                     # 400 steps, 4-10 min on 2 cores
    .venv/bin/python benchmarks/realdata/sim_tsim_er.py --model tsim_er_model
    .venv/bin/python benchmarks/realdata/sim_tsim_er.py --tables          # the README table from the JSON

The optics are not recorded either. The classical reconstruction needs an OTF: it uses an
ideal one whose cut-off, in cycles per raw pixel, is ``--cutoff`` (default 0.5: everything up
to Nyquist passes, so the pattern search covers the whole band); the JSON records the pattern
it found (period in raw pixels, direction, modulation) so that a wrong find can be seen.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import figures  # noqa: E402
from figures import DATA, markdown_table  # noqa: E402

RESULTS = HERE / "results_tsim_er.json"
FOLDER = DATA / "tsim_er"
MIDDLE = {"Z": 1}  # ER_k.tif reads as CZYX: 9 frames along C, 3 time points along Z
ANGLES, PHASES = 3, 3
PIXEL = 1.0  # nominal raw pixel size: the files do not record one, so lengths are in raw pixels
NA, WAVELENGTH = 1.0, 2.0  # an ideal OTF with its cut-off at NA / wavelength = 0.5 cycles per pixel (see --cutoff)


def frames(k: int) -> np.ndarray:
    """ER_k's middle time point: ``(9, 112, 512)`` float64, angle-major."""
    from microsr.io import select_planes
    from microsr.sim.wiener import read_raw

    return np.asarray(select_planes(read_raw(FOLDER / f"ER_{k}.tif"), MIDDLE).data, dtype=np.float64)


def evaluate(models: list[str], image: int, cutoff: float, wiener: float) -> dict:
    """Scores of wide-field, classical SIM and each model on ER_``image``, and the pattern found."""
    from microsr.optics import OTF
    from microsr.evaluate.sim import compare_sim
    from microsr.sim.wiener import estimate_pattern

    raw = frames(image)
    reference = FOLDER / "gt" / f"ER_{image}_gt.tif"
    wavelength = NA / cutoff
    rows = compare_sim(raw, reference, ANGLES, PHASES, pixel_size=PIXEL, na=NA, wavelength=wavelength,
                       models=models, wiener=wiener)
    found = estimate_pattern(raw, ANGLES, PHASES, OTF.model(NA, wavelength), PIXEL)
    for row in rows:  # in "nm" of a PIXEL-nm raw pixel; the output pixel is half of it
        resolution = row.pop("resolution")
        row["resolution_px"] = None if resolution is None else resolution / (PIXEL / 2)
    return {
        "image": f"ER_{image}", "rows": rows,
        "pattern": {
            "period_px": [float(1 / np.hypot(*k)) for k in found.k],
            "direction_deg": [float(np.degrees(np.arctan2(k[0], k[1])) % 180) for k in found.k],
            "modulation": [float(m) for m in found.modulation],
        },
        "otf_cutoff_cycles_per_px": cutoff, "wiener": wiener,
    }


def pattern_search() -> list[dict]:
    """The pattern found in ER_1 and ER_2, frames angle-major and phase-major, at two OTF cut-offs."""
    from microsr.optics import OTF
    from microsr.sim.wiener import estimate_pattern

    found = []
    for image in (1, 2):
        raw = frames(image)
        orders = {"angle-major": raw,
                  "phase-major": raw.reshape(PHASES, ANGLES, *raw.shape[1:]).swapaxes(0, 1).reshape(raw.shape)}
        for order, stack in orders.items():
            for cutoff in (0.5, 0.3):
                pattern = estimate_pattern(stack, ANGLES, PHASES, OTF.model(NA, NA / cutoff), PIXEL)
                found.append({
                    "image": f"ER_{image}", "order": order, "cutoff": cutoff,
                    "period_px": [round(float(1 / np.hypot(*k)), 2) for k in pattern.k],
                    "direction_deg": [round(float(np.degrees(np.arctan2(k[0], k[1])) % 180), 1) for k in pattern.k],
                    "modulation": [round(float(m), 2) for m in pattern.modulation],
                })
    return found


def readme_tables(results: dict) -> dict[str, str]:
    """The README's T-SIM ER table: ER_2 against its reconstruction, and the pattern classical SIM found.

    Resolution is left out of the table: on the bicubic wide-field image, decorrelation analysis
    measures the interpolated noise (finer than the frames can sample), so it ranks nothing here.
    """
    rows = []
    for row in results["evaluation"]["rows"]:
        name = results["labels"].get(row["method"], row["method"])
        rows.append([name, f"{row['psnr']:.2f}", f"{row['ssim']:.3f}", f"{row['nrmse']:.3f}"])
    header = ["ER_2, middle time point → its reconstruction", "PSNR (dB)", "SSIM", "NRMSE"]
    found = [[row["image"], row["order"], f"{row['cutoff']:g}", ", ".join(f"{p:.2f}" for p in row["period_px"]),
              ", ".join(f"{d:.1f}°" for d in row["direction_deg"]), ", ".join(f"{m:.2f}" for m in row["modulation"])]
             for row in results["pattern_search"]]
    return {"tsim_er": markdown_table(header, rows, align="lrrr"),
            "tsim_er_pattern": markdown_table(["frames", "order", "OTF cut-off (cycles/px)", "periods (raw px)",
                                               "directions", "modulations"], found, align="lllrrr")}


def main() -> None:
    parser = figures.parser(__doc__)
    parser.add_argument("--model", type=Path, help="the model trained by configs/tsim_er.yaml (without it, its row "
                                                  "is left out)")
    parser.add_argument("--cutoff", type=float, default=0.5, help="ideal OTF cut-off, cycles per raw pixel")
    parser.add_argument("--wiener", type=float, default=0.05, help="Wiener parameter of the classical reconstruction")
    args = parser.parse_args()

    def compute() -> dict:
        models = ["tirf9"] if args.model is None else ["tirf9", str(args.model)]
        evaluation = evaluate(models, 2, args.cutoff, args.wiener)
        history = json.loads((args.model / "history.json").read_text()) if args.model and args.model.is_dir() else None
        return {
            "evaluation": evaluation,
            "labels": {"wide-field (bicubic)": "wide-field: the 9 frames' mean, bicubic x2",
                       "classical Wiener SIM": "classical Wiener SIM",
                       "tirf9": "`tirf9` (shipped; simulated TIRF-SIM only, the starting point)",
                       **({} if args.model is None else
                          {args.model.name: "`configs/tsim_er.yaml`: `tirf9` fine-tuned on ER_1"})},
            "pattern_search": pattern_search(),
            "training_history": history,
        }

    figures.publish(RESULTS, None if args.tables else compute, readme_tables, __file__)


if __name__ == "__main__":
    main()
