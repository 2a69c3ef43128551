"""PSSR2 (pssr 2.4.0) cases; runs in benchmarks/peers/.venvs/pssr (see setup_peers.sh).

* ``speed``: x4 prediction of ``SIZE``^2 ``lr.tif`` through PSSR2's own large-image path:
  ``SlidingDataset`` in LR mode (tiles of ``tile`` LR pixels, ``overlap`` shared between
  neighbours) -> ``predict_images`` -> ``reassemble_sheets`` (which writes the uint8 TIFF).
  Random weights; the network's own time is taken by a forward hook.
* ``train``: ``train_paired`` (AdamW 1e-3, ExponentialLR 0.7 per epoch, MS-SSIM/L1 mix
  0.8: the PSSR2 command line's defaults) on LR/HR pairs from disk for a wall-clock
  budget, then predictions of the held-out LR tiles.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
from pssr.data import PairedImageDataset, SlidingDataset
from pssr.models import ResUNet
from pssr.predict import predict_images
from pssr.train import train_paired
from pssr.util import SSIMLoss, reassemble_sheets

from common import ForwardTimer, measure, model_size, run_worker

MODELS = {
    "default": {},
    "small": {"hidden": [32, 64, 128, 256], "depth": 2},
}
SCALE = 4
INTENSITY = 255.0  # PSSR2 networks take and return 0..255 (ResUNet maps it to [-1, 1] inside)


class _OutOfTime(Exception):
    """Raised from a training callback when the budget is spent: train_paired has no time limit."""


def _model(name: str) -> ResUNet:
    torch.manual_seed(0)
    return ResUNet(scale=SCALE, **MODELS[name])


def speed(settings: dict[str, Any]) -> dict[str, Any]:
    model = _model(settings["model"])
    timer = ForwardTimer(model)
    lr_dir, out_dir = Path(settings["input"]), Path(settings["output"])
    tile, overlap = settings["tile"], settings["overlap"]

    def run() -> None:
        dataset = SlidingDataset(lr_dir, hr_res=tile, lr_scale=-1, overlap=overlap, val_split=1,
                                 rotation=False, split_seed=None)
        tiles = predict_images(model, dataset, "cpu", batch_size=1, out_dir=None)
        reassemble_sheets(tiles, lr_dir, SCALE, overlap=overlap, margin=settings["margin"], out_dir=str(out_dir))

    size = model_size(model, tile=256)
    result = measure(run, timer, (settings["size"] * SCALE) ** 2, tile=tile, overlap=overlap,
                     margin=settings["margin"], model=size)
    with tifffile.TiffFile(next(out_dir.glob("*.tif"))) as written:
        result["output_shape"] = list(written.series[0].shape)
    return result


def train(settings: dict[str, Any]) -> dict[str, Any]:
    torch.manual_seed(settings["seed"])
    model = _model(settings["model"])
    pairs = Path(settings["pairs"])
    hr_res = settings["hr_tile"]
    dataset = PairedImageDataset(pairs / "hr", pairs / "lr", hr_res=hr_res, lr_scale=SCALE,
                                 val_split=settings["val_split"], split_seed=settings["seed"])
    # The PSSR2 command line caps the MS-SSIM window at what the tile allows.
    window = (hr_res - 1) // 16 | 1
    loss = SSIMLoss(channels=1, mix=0.8, win_size=min(window, 11))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, 0.7)
    budget = 60 * settings["minutes"]
    steps = 0
    started = time.monotonic()

    def stop_when_out_of_time() -> None:
        nonlocal steps
        steps += 1
        if time.monotonic() - started >= budget:
            raise _OutOfTime

    try:
        train_paired(model, dataset, settings["batch_size"], loss, optimizer, epochs=10**6, device="cpu",
                     scheduler=scheduler, dataloader_kwargs={"num_workers": settings["num_workers"]},
                     callbacks=[stop_when_out_of_time])
    except _OutOfTime:
        pass
    seconds = time.monotonic() - started
    model.eval()
    lr = torch.from_numpy(np.load(settings["eval_lr"]))[:, None] * INTENSITY
    with torch.inference_mode():
        predictions = torch.cat([model(batch) for batch in lr.split(8)])[:, 0] / INTENSITY
    np.save(settings["predictions"], predictions.numpy().astype(np.float32))
    return {"train_seconds": seconds, "steps": steps, "torch": torch.__version__}


if __name__ == "__main__":
    run_worker(__doc__.split("\n")[0], {"speed": speed, "train": train})
