"""Screenshots of the napari plugin's four widgets after a run, for the README.

Opens napari with the filaments sample, runs Degrade, Train (a short x4 run),
Predict and Compare through the widgets that Plugins > microsr opens, and
saves the window after each as ``docs/images/napari_{degrade,train,predict,compare}.png``.
Needs a display: ``make screenshots`` runs it under Xvfb. Training dominates the time: a few
minutes on a laptop, about nine on a busy 2-core machine.

Usage: ``python docs/screenshots.py [OUTPUT_FOLDER]``
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import napari
from qtpy.QtWidgets import QApplication

IMAGES = Path(__file__).resolve().parent / "images"
WINDOW = (1500, 950)


def wait_for(widget: Any, timeout: float = 600.0) -> None:
    """Process Qt events until the widget's background job is done."""
    deadline = time.monotonic() + timeout
    while widget.worker is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{type(widget).__name__} did not finish in {timeout:g} s")
        QApplication.processEvents()
        time.sleep(0.02)
    QApplication.processEvents()


def snapshot(viewer: napari.Viewer, path: Path) -> None:
    viewer.reset_view()
    QApplication.processEvents()
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path}")


def open_widget(viewer: napari.Viewer, name: str) -> Any:
    """Open a widget as the Plugins > microsr menu does, alone on the right."""
    viewer.window.remove_dock_widget("all")
    _, widget = viewer.window.add_plugin_dock_widget("microsr", name)
    return widget


def main(output: Path = IMAGES) -> None:
    output.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(title="microsr in napari")
    viewer.window.resize(*WINDOW)
    (hr,) = viewer.open_sample("microsr", "filaments")

    degrade = open_widget(viewer, "Degrade")
    degrade.image.value = hr
    wait_for(degrade)
    lowres = viewer.layers["filaments degraded"]
    hr.visible = False
    snapshot(viewer, output / "napari_degrade.png")

    model = Path(tempfile.mkdtemp(prefix="microsr-screenshots-")) / "model"
    train = open_widget(viewer, "Train")
    train.hr.value = [hr]
    train.model_name.value = "resunet_small"
    train.steps.value = 240
    train.epoch_tiles.value = 320  # 40 steps of 8 tiles between validations: six epochs
    train.output.value = model
    train.preview.value = lowres
    train.run()
    wait_for(train)
    for name in ("filaments degraded", "filaments degraded preview"):
        viewer.layers[name].visible = name.endswith("preview")
    snapshot(viewer, output / "napari_train.png")

    predict = open_widget(viewer, "Predict")
    predict.model.value = model
    predict.image.value = lowres
    predict.run()
    wait_for(predict)
    viewer.layers["filaments degraded preview"].visible = False
    snapshot(viewer, output / "napari_predict.png")

    compare = open_widget(viewer, "Compare")
    compare.prediction.value = viewer.layers["filaments degraded restored"]
    compare.reference.value = hr
    compare.run()
    wait_for(compare)
    snapshot(viewer, output / "napari_compare.png")
    viewer.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else IMAGES)
