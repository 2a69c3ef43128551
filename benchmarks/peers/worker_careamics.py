"""CAREamics (careamics 0.3.5) cases; runs in benchmarks/peers/.venvs/careamics (see setup_peers.sh).

CAREamics has no super-resolution mode, so its CARE U-Net (the default of
``create_care_config``: depth 2, 32 initial channels) restores the LR image after bicubic
x4 upsampling, the way CARE is applied to upsampling problems.

* ``speed``: read ``lr.tif``, upsample it bicubically, ``CAREamist.predict`` with tiles
  (CAREamics' own tiling and stitching), write the float32 TIFF. The network has random
  weights (one training step sets up CAREamics' normalisation and checkpoint).
* ``train``: ``CAREamist.train`` on the upsampled LR / HR pairs for a wall-clock budget
  (Lightning's ``max_time``, early stopping off), then predictions of the held-out LR tiles.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
import torch.nn.functional as F
from careamics import CAREamist
from careamics.config import create_advanced_care_config

from common import ForwardTimer, measure, model_size, run_worker

SCALE = 4


def upsample(lr: np.ndarray) -> np.ndarray:
    """Bicubic x4 of ``(..., h, w)``, as microsr's ResUNet does for its residual base."""
    tensor = torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32))
    lead = tensor.shape[:-2]
    batch = tensor.reshape(-1, 1, *tensor.shape[-2:])
    up = F.interpolate(batch, scale_factor=SCALE, mode="bicubic", align_corners=False)
    return up.reshape(*lead, *up.shape[-2:]).numpy()


def _careamist(name: str, axes: str, work_dir: Path, *, patch: int, batch_size: int, epochs: int,
               steps: int, trainer_params: dict[str, Any] | None = None, seed: int = 1) -> CAREamist:
    # No early stopping (CAREamics' default for CARE: Lightning's EarlyStopping on the validation loss,
    # patience 3, which ended a 240 s budget at 217 s): every tool trains for the same wall-clock time.
    config = create_advanced_care_config(
        experiment_name=name, data_type="array", axes=axes, patch_size=[patch, patch], batch_size=batch_size,
        num_epochs=epochs, num_steps=steps, trainer_params=trainer_params, seed=seed, early_stopping_params={},
    )
    return CAREamist(config, work_dir=work_dir, enable_progress_bar=False)


def speed(settings: dict[str, Any]) -> dict[str, Any]:
    careamist = _careamist("speed", "YX", Path(settings["setup_dir"]), patch=64, batch_size=2, epochs=1, steps=1)
    rng = np.random.default_rng(0)
    careamist.train(train_data=rng.random((256, 256), np.float32), train_data_target=rng.random((256, 256), np.float32))
    timer = ForwardTimer(careamist.model.model)
    tile, overlap = settings["tile"], settings["overlap"]
    upsampling = {}

    def run() -> None:
        started = time.perf_counter()
        image = upsample(tifffile.imread(settings["input"]))
        upsampling["seconds"] = time.perf_counter() - started
        predictions, _ = careamist.predict(image, tile_size=(tile, tile), tile_overlap=(overlap, overlap),
                                           axes="YX", batch_size=1, data_type="array")
        tifffile.imwrite(settings["output"], np.asarray(predictions[0], np.float32).squeeze())

    size = model_size(careamist.model.model, tile=tile)
    result = measure(run, timer, (settings["size"] * SCALE) ** 2, tile=tile, overlap=overlap, model=size)
    result["upsample_seconds"] = upsampling["seconds"]
    with tifffile.TiffFile(settings["output"]) as written:
        result["output_shape"] = list(written.series[0].shape)
    return result


def train(settings: dict[str, Any]) -> dict[str, Any]:
    pairs = np.load(settings["pairs"])
    careamist = _careamist(
        "care_sr", "SYX", Path(settings["work_dir"]), patch=settings["patch"], batch_size=settings["batch_size"],
        epochs=10**4, steps=settings["steps_per_epoch"], trainer_params={"max_time": {"minutes": settings["minutes"]}},
        seed=1 + settings["seed"],
    )
    started = time.monotonic()
    careamist.train(train_data=upsample(pairs["lr"]), train_data_target=pairs["hr"])
    seconds = time.monotonic() - started
    lr = np.load(settings["eval_lr"])
    predictions, _ = careamist.predict(upsample(lr), axes="SYX", batch_size=8, data_type="array")
    predictions = np.asarray(predictions, np.float32).reshape(len(lr), *upsample(lr[:1]).shape[-2:])
    np.save(settings["predictions"], predictions)
    return {"train_seconds": seconds, "steps": careamist.trainer.global_step,
            "epochs": careamist.trainer.current_epoch, "torch": torch.__version__}


if __name__ == "__main__":
    run_worker(__doc__.split("\n")[0], {"speed": speed, "train": train})
