"""README "SIM and SRRF", DL-SIM table: wide-field, classical SIM and models on the DL-SIM microtubule sample.

``../shared/data/dlsim_drbeiliu`` (Jin et al. 2020): 15 raw frames ``HE_00..14`` (normal light)
or ``LE_00..14`` (low light), 2x-upsampled by the authors and binned 2 x 2 back to their 60 nm
grid, scored against the authors' reconstruction ``HER`` (30 nm) by
``microsr.evaluate.score.score`` (HER normalised by its 0.1/99.9 percentiles, each image fitted
to it by a gain and offset, then PSNR with data range 1, SSIM and NRMSE); resolution is each
image's own decorrelation analysis (``microsr.evaluate.sim.compare_sim``, as ``microsr sim
evaluate``). Wide-field is the mean of the 15 frames upsampled bicubically; classical is
``microsr sim reconstruct`` of them (ideal OTF, NA 1.2 at 525 nm). The shipped low-light model
``sim_lowlight`` is always scored on the low-light frames; other models are given with
``--model LIGHT LABEL PATH`` (LIGHT: HE or LE), e.g. the models of ``configs/sim3.yaml`` and
``configs/er3.yaml`` (commands in their headers). From the project root::

    .venv/bin/python benchmarks/realdata/sim_dlsim.py                       # about a minute
    .venv/bin/python benchmarks/realdata/sim_dlsim.py --model HE "3 frames (0, 5, 10): sim3" models/sim3
    .venv/bin/python benchmarks/realdata/sim_dlsim.py --tables              # the README table from the JSON
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

RESULTS = HERE / "results_dlsim.json"
SAMPLE = DATA / "dlsim_drbeiliu" / "Testing_data" / "microtuble"
SHIPPED = {"LE": [("15 low-light frames: **`sim_lowlight`** (shipped), fine-tuned on `dlsim-low` simulation", "sim_lowlight")]}
LIGHT = {"HE": "15 frames", "LE": "15 low-light frames"}


def evaluate(light: str, models: list[tuple[str, str]]) -> list[dict]:
    """Rows of ``compare_sim`` for the ``light`` frames (HE or LE), models labelled."""
    from microsr.evaluate.sim import compare_sim
    from microsr.sim.wiener import stack_frames

    frames = [SAMPLE / f"{light}_X2" / "Sample_1" / f"{light}_{i:02d}.tif" for i in range(15)]
    raw, pixel_size = stack_frames(frames, binning=2, pixel_size=30.0)
    rows = compare_sim(raw, SAMPLE / "HER" / "Sample_1.tif", 3, 5, pixel_size=pixel_size, na=1.2,
                       wavelength=525.0, models=[path for _, path in models])
    labels = {"wide-field (bicubic)": f"{LIGHT[light]}: wide-field (bicubic)",
              "classical Wiener SIM": f"{LIGHT[light]}: classical Wiener SIM"}
    labels.update({Path(path).name: label for label, path in models})
    for row in rows:
        row["label"] = labels[row["method"]]
        model = next((Path(p) for _, p in models if Path(p).name == row["method"]), None)
        if model is not None and (model / "history.json").is_file():
            history = json.loads((model / "history.json").read_text())
            epochs = history if isinstance(history, list) else history.get("epochs", [])
            row["training"] = {"steps": epochs[-1].get("step") if epochs else None, "epochs": len(epochs)}
    return rows


def her_offset() -> list[float]:
    """HER's shift from the normal-light frames, in HER pixels: phase correlation with the classical reconstruction."""
    from skimage.registration import phase_cross_correlation

    from microsr.io import read_image
    from microsr.optics import OTF
    from microsr.sim.wiener import reconstruct_sim, stack_frames

    frames = [SAMPLE / "HE_X2" / "Sample_1" / f"HE_{i:02d}.tif" for i in range(15)]
    raw, pixel_size = stack_frames(frames, binning=2, pixel_size=30.0)
    classical = reconstruct_sim(raw, 3, 5, pixel_size=pixel_size, otf=OTF.model(1.2, 525.0))[0]
    her = np.asarray(read_image(SAMPLE / "HER" / "Sample_1.tif").data, dtype=np.float64)
    shift = phase_cross_correlation(classical, her, upsample_factor=20)[0]
    return [float(v) for v in shift]


def readme_tables(results: dict) -> dict[str, str]:
    """The README's DL-SIM table."""
    table = []
    for light in ("HE", "LE"):
        for row in results[light]:
            resolution = "–" if row["resolution"] is None else f"{row['resolution']:.0f}"
            table.append([row["label"], f"{row['psnr']:.2f}", f"{row['ssim']:.3f}", f"{row['nrmse']:.3f}",
                          resolution])
    return {"dlsim": markdown_table(["input → HER", "PSNR (dB)", "SSIM", "NRMSE", "resolution (nm)"], table,
                                    align="lrrrr")}


def main() -> None:
    parser = figures.parser(__doc__)
    parser.add_argument("--model", nargs=3, action="append", default=[], metavar=("LIGHT", "LABEL", "PATH"),
                        help="score the model at PATH on the HE or LE frames, labelled LABEL (repeatable)")
    args = parser.parse_args()

    def compute() -> dict:
        given = {light: list(SHIPPED.get(light, [])) for light in LIGHT}
        for light, label, path in args.model:
            given[light.upper()].append((label, path))
        results = {light: evaluate(light, given[light]) for light in LIGHT}
        results["her_offset_px"] = her_offset()
        return results

    figures.publish(RESULTS, None if args.tables else compute, readme_tables, __file__)


if __name__ == "__main__":
    main()
