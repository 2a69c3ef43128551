"""microsr cases; runs in the project's own venv (/work/main/.venv).

* ``speed``: ``Predictor.predict_to_file`` of ``SIZE``^2 ``lr.tif`` to a float32 TIFF
  (microsr's large-image path: tiles with the exact receptive-field overlap, streaming), random weights, at the requested precision when ``Predictor`` has one.
* ``train``: ``microsr.train`` (its defaults, the "poisson" degradation on the fly) on the
  HR images for a wall-clock budget, then predictions of the held-out LR tiles (float32).
"""

from __future__ import annotations

import inspect
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from microsr.io import read_image
from microsr.models import create_model, model_cost
from microsr.predict.engine import Predictor
import microsr

from common import ForwardTimer, measure, run_worker

SCALE = 4


def has_precision() -> bool:
    """Whether this microsr's Predictor takes ``precision`` (added by the speed work)."""
    return "precision" in inspect.signature(Predictor.__init__).parameters


def speed(settings: dict[str, Any]) -> dict[str, Any]:
    torch.manual_seed(0)
    model = create_model("resunet", scale=SCALE, **settings["model_kwargs"])
    options = {"precision": settings["precision"]} if settings["precision"] else {}
    predictor = Predictor(model, scale=SCALE, tile=settings["tile"], batch_size=1, progress=False, **options)
    timer = ForwardTimer(model)
    image = read_image(settings["input"])
    result = measure(lambda: predictor.predict_to_file(image, settings["output"]), timer,
                     (settings["size"] * SCALE) ** 2, tile=settings["tile"], overlap=predictor.overlap,
                     precision=str(getattr(predictor, "dtype", torch.float32)), model=model_cost(model)._asdict())
    result["output_shape"] = list(read_image(settings["output"]).shape)
    return result


def train(settings: dict[str, Any]) -> dict[str, Any]:
    config = {
        "data": {"hr": settings["hr"], "tile": settings["hr_tile"], "val_fraction": settings["val_fraction"],
                 "batch_size": settings["batch_size"]},
        "scale": SCALE,
        "degradation": "poisson",
        "model": {"name": "resunet", "kwargs": settings["model_kwargs"]},
        "train": {"minutes": settings["minutes"], "seed": settings["seed"]},
    }
    with tempfile.TemporaryDirectory(dir=settings["work_dir"]) as folder:
        started = time.monotonic()
        record = microsr.train(config, folder, progress=False)
        seconds = time.monotonic() - started
        # The last weights: the best ones are chosen on the held-out band this benchmark evaluates on.
        module = microsr.load_model(Path(folder) / "last.safetensors").module.eval()
    lr = torch.from_numpy(np.load(settings["eval_lr"]))[:, None]
    with torch.inference_mode():
        predictions = torch.cat([module(batch) for batch in lr.split(8)])[:, 0]
    np.save(settings["predictions"], predictions.float().numpy())
    # loop_seconds: the training loop with its validations and checkpoints, as the peers' timers cover;
    # train_seconds adds the set-up before it (mostly measuring the receptive field).
    return {"train_seconds": seconds, "loop_seconds": record["seconds"], "steps": record["step"],
            "epochs": record["epoch"], "torch": torch.__version__}


if __name__ == "__main__":
    run_worker(__doc__.split("\n")[0], {"speed": speed, "train": train})
