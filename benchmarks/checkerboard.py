"""The sub-pixel checkerboard of the x4 ResUNets, with and without the blur after each pixel shuffle.

Each variant (``resunet_small`` and ``resunet``, ``blur`` false = the architecture before
issue 25, true = today's default) is trained the same number of steps on the PSSR EM pair
(``../shared/data/napari_pssr``, a semi-synthetic tSEM pair: HR 2 nm, LR 8 nm), on its
left two thirds only. Then, with :func:`microsr.evaluate.checkerboard.checkerboard`:

- ``val``: the pair's next sixth (PSNR/SSIM against HR by the one scorer,
  :func:`microsr.evaluate.score.score`) and a 512² crop of the real 8 nm SEM image
  ``em_lr_8nm/00.tif`` (phase spread, spectral ratio to bicubic). The choice among the
  variants is made on these;
- ``test``: the pair's last sixth and a 512² crop of another SEM image, ``em_lr_8nm/02.tif``:
  the numbers reported.

Prediction (``Restorer.predict`` of one 1024² crop of ``em_lr_8nm/01.tif``, tile 512,
float32) is timed for every variant in alternating rounds
(``microsr.runtime.precision.time_alternating``), so contention hits them alike.

Usage (training nice'd, then evaluation and timing at normal priority; models already
trained in ``--work`` are reused)::

    nice -n 19 .venv/bin/python benchmarks/checkerboard.py --work /tmp/checkerboard --no-time
    .venv/bin/python benchmarks/checkerboard.py --work /tmp/checkerboard
    .venv/bin/python benchmarks/checkerboard.py --tables   # the README table from the JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import tifffile

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import figures  # noqa: E402
from figures import DATA, markdown_table  # noqa: E402

from microsr.evaluate.checkerboard import checkerboard
from microsr.evaluate.score import score
from microsr.predict import load_model
from microsr.runtime.precision import time_alternating
from microsr.training import train

RESULTS = HERE / "results_checkerboard.json"
SIZE = 1024  # input side of the timed prediction
SCALE = 4
VARIANTS = [(name, blur) for name in ("resunet_small", "resunet") for blur in (False, True)]
# LR columns of the 150 x 225 pair: train | val | test (HR columns are 4x).
SPLIT = {"train": (0, 150), "val": (150, 187), "test": (187, 225)}
SEM = {"val": ("00.tif", (1000, 1000)), "test": ("02.tif", (1500, 600))}  # (file, top-left of a 512² LR crop)


def _pair() -> tuple[np.ndarray, np.ndarray]:
    return (tifffile.imread(DATA / "napari_pssr" / "LR" / "small.tif").astype(np.float32),
            tifffile.imread(DATA / "napari_pssr" / "HR" / "small.tif").astype(np.float32))


def _columns(image: np.ndarray, part: str, factor: int) -> np.ndarray:
    start, stop = SPLIT[part]
    return image[:, start * factor : stop * factor]


def _sem(part: str, size: int = 512) -> np.ndarray:
    name, (top, left) = SEM[part]
    return tifffile.imread(DATA / "em_lr_8nm" / name)[top : top + size, left : left + size].astype(np.float32)


def _train(name: str, blur: bool, steps: int, folder: Path) -> None:
    history = folder / "history.json"
    if history.exists() and json.loads(history.read_text())[-1]["step"] >= steps:
        return  # trained in an earlier call
    folder.parent.mkdir(parents=True, exist_ok=True)
    lr, hr = _pair()
    config = {
        "data": {"hr": [_columns(hr, "train", SCALE)], "lr": [_columns(lr, "train", 1)], "tile": 128,
                 "batch_size": 8, "samples_per_epoch": 128, "num_workers": 0},
        "scale": SCALE, "model": {"name": name, "kwargs": {"blur": blur}},
        "train": {"steps": steps, "seed": 0, "precision": "fp32"},
    }
    train(config, folder, progress=False)


def _evaluate(folder: Path) -> dict[str, dict[str, float]]:
    restorer = load_model(folder)
    lr, hr = _pair()
    results = {}
    for part in ("val", "test"):
        prediction = restorer.predict(_columns(lr, part, 1), precision="fp32")
        scored = score(prediction, _columns(hr, part, SCALE))
        sem = _sem(part)
        pattern = checkerboard(restorer.predict(sem, precision="fp32"), sem, SCALE)
        results[part] = {"psnr": scored.psnr, "ssim": scored.ssim, "phase_spread": pattern.phase_spread,
                         "phase_offset_max_grey": float(np.abs(pattern.phase_means).max()),
                         "highpass_std_grey": pattern.highpass_std, "spectral_ratio": pattern.spectral_ratio}
    return results


def _time(folders: dict[str, Path]) -> dict[str, float]:
    image = tifffile.imread(DATA / "em_lr_8nm" / "01.tif")[:SIZE, :SIZE].astype(np.float32)
    restorers = {key: load_model(folder) for key, folder in folders.items()}
    calls = {key: (lambda r=r: r.predict(image, precision="fp32", tile=512)) for key, r in restorers.items()}
    return time_alternating(calls, rounds=(3, 5))


def run(work: Path, steps_small: int, steps_default: int, timed: bool) -> dict:
    """Train (or reuse) every variant, measure it on val and test, time prediction if ``timed``."""
    if not (DATA / "napari_pssr").is_dir():
        raise SystemExit(f"{DATA}: the shared data folder is absent; set MICROSR_DATA.")
    rows, folders = {}, {}
    for name, blur in VARIANTS:
        key = f"{name} blur={str(blur).lower()}"
        folders[key] = work / f"{name}_blur{int(blur)}"
        steps = steps_small if name == "resunet_small" else steps_default
        _train(name, blur, steps, folders[key])
        rows[key] = {"steps": steps, **_evaluate(folders[key])}
    if timed:
        for key, seconds in _time(folders).items():
            rows[key]["predict_seconds"] = seconds
    return {"what": "x4, trained on the PSSR tSEM pair's LR columns 0-149 (batch 8, 128-px HR tiles, msssim_l1, "
                    "AdamW 1e-3 one-cycle, float32, seed 0); PSNR/SSIM on the pair's val/test columns, checkerboard "
                    "on 512² crops of real 8 nm SEM images",
            "scale": SCALE, "split_lr_columns": SPLIT, "sem_crops": SEM, "rows": rows,
            "timing_size": SIZE,
            "prediction": f"Restorer.predict, {SIZE}² input, tile 512, float32, median of alternating rounds"}


def readme_tables(results: dict) -> dict[str, str]:
    """The benchmarks README's table: test numbers of each variant (val only chose)."""
    table = []
    for key, row in results["rows"].items():
        r = row["test"]
        seconds = row.get("predict_seconds")
        table.append([key, row["steps"], f"{r['psnr']:.2f}", f"{r['ssim']:.3f}", f"{r['phase_spread']:.3f}",
                      f"{r['phase_offset_max_grey']:.2f}", f"{r['spectral_ratio']:.3g}",
                      "-" if seconds is None else f"{seconds:.2f}"])
    header = ["model", "steps", "PSNR (dB)", "SSIM", "phase spread", "max offset (grey)", "power / bicubic",
              f"predict {results['timing_size']}² (s)"]
    return {"test": markdown_table(header, table, align="lrrrrrrr")}


def main() -> None:
    parser = figures.parser(__doc__)
    parser.add_argument("--work", type=Path, default=HERE / ".work" / "checkerboard", help="trained models (reused)")
    parser.add_argument("--steps-small", type=int, default=300, help="training steps of resunet_small")
    parser.add_argument("--steps-default", type=int, default=40, help="training steps of resunet")
    parser.add_argument("--no-time", action="store_true", help="skip timing (e.g. while training nice'd)")
    args = parser.parse_args()
    compute = None if args.tables else lambda: run(args.work, args.steps_small, args.steps_default, not args.no_time)
    figures.publish(RESULTS, compute, readme_tables, __file__)


if __name__ == "__main__":
    main()
