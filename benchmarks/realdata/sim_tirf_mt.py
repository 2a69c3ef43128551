"""README "SIM and SRRF", TIRF-SIM without ground truth: resolution and consistency of each result on MT.mrc.

rDL-SIM's microtubule acquisition (``../shared/data/rdlsim_qc17/MT.mrc``: 9 raw TIRF-SIM
frames of 256² at 62.6 nm, with the system's measured OTF) has no reference. Each result is
scored by its own decorrelation resolution and by its consistency with the frames: blurred
by the measured OTF (on its 31.3 nm grid), binned 2 x 2 back to the camera grid, and
correlated (Pearson) with the frames' mean. The wide-field row is the frames' mean on its
own grid (its consistency with itself would be 1). Classical is ``microsr sim reconstruct``
with the nominal period (``--period 180.7``); ``tirf9`` is the shipped model. From the
project root::

    .venv/bin/python benchmarks/realdata/sim_tirf_mt.py            # about half a minute
    .venv/bin/python benchmarks/realdata/sim_tirf_mt.py --tables   # the README table from the JSON
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import figures  # noqa: E402
from figures import DATA, markdown_table  # noqa: E402

RESULTS = HERE / "results_tirf_mt.json"
FOLDER = DATA / "rdlsim_qc17"
PERIOD = 180.7  # nm: 488 nm excitation / (2 x 1.35)
WIENERS = (0.05, 0.15)


def consistency(result: np.ndarray, mean: np.ndarray, otf, pixel_size: float) -> float:
    """Pearson correlation of ``result`` (on the 2x grid), blurred by ``otf`` and binned 2 x 2, with ``mean``."""
    fy, fx = np.fft.fftfreq(result.shape[0])[:, None], np.fft.fftfreq(result.shape[1])[None, :]
    blurred = np.fft.ifft2(np.fft.fft2(result) * otf(np.hypot(fy, fx) / pixel_size)).real
    binned = blurred.reshape(mean.shape[0], 2, mean.shape[1], 2).mean(axis=(1, 3))
    return float(np.corrcoef(binned.ravel(), mean.ravel())[0, 1])


def evaluate() -> dict:
    """Resolution (nm) and consistency of wide-field, classical SIM at each Wiener parameter and ``tirf9``."""
    from microsr.evaluate.baseline import upscale
    from microsr.evaluate.metrics import decorrelation
    from microsr.optics import read_otf
    from microsr.sim.network import predict_sim
    from microsr.sim.wiener import estimate_pattern, read_raw, reconstruct_sim

    raw = read_raw(FOLDER / "MT.mrc")
    otf = read_otf(FOLDER / "OTF" / "TIRF488_cam1_0_z30_OTF2d.mrc")
    frames = np.asarray(raw.data, dtype=np.float64)
    mean, fine = frames.mean(axis=0), raw.pixel_size / 2
    rows = [{"method": "wide-field", "resolution_nm": decorrelation(mean, pixel_size=raw.pixel_size).resolution,
             "consistency": None}]
    pattern = None
    for wiener in WIENERS:
        image, found = reconstruct_sim(frames, 3, 3, pixel_size=raw.pixel_size, otf=otf, wiener=wiener, period=PERIOD)
        pattern = found
        rows.append({"method": f"classical, wiener {wiener:g}",
                     "resolution_nm": decorrelation(image, pixel_size=fine).resolution,
                     "consistency": consistency(image, mean, otf, fine)})
    learned = predict_sim("tirf9", frames)
    rows.append({"method": "tirf9", "resolution_nm": decorrelation(learned, pixel_size=fine).resolution,
                 "consistency": consistency(learned, mean, otf, fine)})
    blind = estimate_pattern(frames, 3, 3, otf, raw.pixel_size)  # no nominal period: searched in the pass band
    upsampled = upscale(mean, 2)
    return {
        "rows": rows,
        "pattern": {"period_nm": [float(raw.pixel_size / np.hypot(*k)) for k in pattern.k],
                    "direction_deg": [float(np.degrees(np.arctan2(k[0], k[1])) % 180) for k in pattern.k]},
        "blind_pattern_period_px": [float(1 / np.hypot(*k)) for k in blind.k],
        "wide_field_bicubic_resolution_nm": decorrelation(upsampled, pixel_size=fine).resolution,
    }


LABELS = {
    "wide-field": "wide-field: the frames' mean, on its 62.6 nm grid",
    "classical, wiener 0.05": "classical Wiener SIM, `--period 180.7` (default `--wiener 0.05`)",
    "classical, wiener 0.15": "classical Wiener SIM, `--period 180.7 --wiener 0.15`",
    "tirf9": "**`tirf9`** (shipped)",
}


def readme_tables(results: dict) -> dict[str, str]:
    """The README's MT.mrc table."""
    rows = []
    for row in results["rows"]:
        resolution = f"{row['resolution_nm']:.0f}"
        if row["method"] == "tirf9":
            resolution = f"**{resolution}**"
        rows.append([LABELS[row["method"]], resolution,
                     "–" if row["consistency"] is None else f"{row['consistency']:.3f}"])
    return {"tirf_mt": markdown_table(["MT.mrc, 9 frames", "resolution (nm)", "consistency"], rows)}


def main() -> None:
    args = figures.parser(__doc__).parse_args()
    figures.publish(RESULTS, None if args.tables else evaluate, readme_tables, __file__)


if __name__ == "__main__":
    main()
