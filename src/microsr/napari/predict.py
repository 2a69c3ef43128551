"""The Predict widget: restore an image layer of any size with a trained model.

It calls the same API as ``microsr predict``: :func:`microsr.load_model`,
:meth:`~microsr.predict.restorer.Restorer.model_input` (the pixel-size check, with
*rescale* and *force*, and a SIM model's planes) and the Restorer's
:class:`~microsr.predict.engine.Predictor`, whose ``on_tile`` hook drives the progress
bar and cancellation. Nothing of the tiling is repeated here.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    CheckBox,
    Container,
    FileEdit,
    FloatSpinBox,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)
from superqt.utils import ensure_main_thread

from microsr.errors import InputError
from microsr.io import Image, read_image
from microsr.napari._common import Cancelled, image_layer_box, notify_error, run_in_thread, status_label
from microsr.napari._layers import layer_image, resampled_placement
from microsr.predict.engine import DEFAULT_TILE
from microsr.predict.restorer import load_model
from microsr.runtime.device import pick_device

if TYPE_CHECKING:
    import napari.viewer

__all__ = ["PredictWidget"]


class PredictWidget(Container):
    """Restore an image layer with a trained model; the result overlays the input at the finer pixel size.

    The layer may be of any size, including a dask- or zarr-backed multiscale
    layer (its full-resolution level is read tile by tile). The result is held in
    memory, or, with *save to*, streamed to an OME-Zarr or TIFF file that the new
    layer then reads lazily. *Cancel* stops after the tile being computed.

    Parameters
    ----------
    viewer
        The napari viewer.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self.model = FileEdit(label="model", mode="r", filter="*.safetensors", nullable=True,
                              tooltip="A model folder written by training, or its best.safetensors.")
        self.image = image_layer_box(viewer, "image")
        self.axes = LineEdit(label="axes", value="",
                             tooltip="The layer's axes in TCZYX order, e.g. TYX; empty: from the layer.")
        self.pixel_size = FloatSpinBox(label="pixel size (nm)", min=0, max=1e6, step=0.1, value=0,
                                       tooltip="Input pixel size; 0: from the layer's scale (when in nm).")
        self.rescale = CheckBox(text="rescale to the model's pixel size")
        self.force = CheckBox(text="predict despite a pixel-size mismatch")
        self.tile = SpinBox(label="tile", min=16, max=8192, value=DEFAULT_TILE)
        self.output = FileEdit(label="save to", mode="w", filter="*.ome.zarr *.zarr *.tif", nullable=True)
        self.overwrite = CheckBox(text="overwrite")
        self.run_button = PushButton(text="Predict")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="tiles", min=0, max=1, value=0)
        self.status = status_label()
        self.extend([self.model, self.image, self.axes, self.pixel_size, self.rescale, self.force, self.tile,
                     self.output, self.overwrite, self.run_button, self.cancel_button, self.progress, self.status])
        self.worker: Any = None
        """The background job under way (a napari thread worker), None when idle."""
        self._cancel = threading.Event()
        self.run_button.changed.connect(self._run_clicked)
        self.cancel_button.changed.connect(self.cancel)

    def run(self) -> Any:
        """Start the prediction in a background thread; return the worker.

        Raises
        ------
        InputError
            If no model or image layer is chosen, or the axes do not fit the layer.
        """
        layer = self.image.value
        if self.model.value is None:
            raise InputError("no model chosen: choose a model folder (or its best.safetensors) under 'model'.")
        if layer is None:
            raise InputError("no image layer chosen: open an image and choose it under 'image'.")
        image = layer_image(layer, axes=self.axes.value, pixel_size=self.pixel_size.value)
        source = getattr(layer.source, "path", None)
        job = {
            "model": Path(self.model.value), "rescale": self.rescale.value, "force": self.force.value,
            "tile": self.tile.value, "output": self.output.value, "overwrite": self.overwrite.value,
            "inputs": [source] if source else [],
        }
        self._cancel.clear()
        self.progress.value = 0
        self.status.value = f"predicting {layer.name}…"
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.worker = run_in_thread(
            _predict, image, job, self._on_tile,
            returned=lambda result: self._show(layer, *result),
            errored=self._failed,
            finished=self._finished,
        )
        return self.worker

    def cancel(self) -> None:
        """Stop the running prediction after its current tile; no layer is added."""
        self._cancel.set()

    # ----------------------------------------------------------------- internals

    def _on_tile(self, done: int, total: int) -> None:
        """Called by the Predictor in the worker thread after each tile."""
        if self._cancel.is_set():
            raise Cancelled(f"cancelled after {done} of {total} tiles")
        self._set_progress(done, total)

    @ensure_main_thread
    def _set_progress(self, done: int, total: int) -> None:
        self.progress.max = total
        self.progress.value = done

    def _run_clicked(self) -> None:
        try:
            self.run()
        except InputError as error:
            notify_error(error)

    def _failed(self, error: BaseException) -> None:
        if isinstance(error, Cancelled):
            self.status.value = str(error)
            return
        self.status.value = "failed"
        notify_error(error)

    def _finished(self) -> None:
        self.worker = None
        self.run_button.enabled, self.cancel_button.enabled = True, False

    def _show(self, layer: Any, data: Any, factor: float, written: Path | None) -> None:
        name = f"{layer.name} restored"
        self._viewer.add_image(data, name=name, colormap=layer.colormap, **resampled_placement(layer, factor))
        self.status.value = f"{name}: {' × '.join(map(str, data.shape))}" + (f" → {written}" if written else "")


def _predict(image: Image, job: dict[str, Any], on_tile: Any) -> tuple[Any, float, Path | None]:
    """Run in the worker thread: the prediction's data, its pixel size over the input's, and the file written."""
    restorer = load_model(job["model"])
    model_input = restorer.model_input(image, rescale=job["rescale"], force=job["force"])
    zoom = image.pixel_size / model_input.pixel_size if image.pixel_size and model_input.pixel_size else 1.0
    image, factor = model_input, 1 / (restorer.scale * zoom)
    predictor = restorer.predictor(tile=job["tile"], device=pick_device("auto"))
    if job["output"] is None:
        return predictor.predict(image, on_tile=on_tile), factor, None
    written = predictor.predict_to_file(image, job["output"], overwrite=job["overwrite"], inputs=job["inputs"],
                                        on_tile=on_tile)
    return read_image(written).data, factor, written
