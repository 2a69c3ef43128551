"""The Train widget: train a model on image layers (or a folder) without leaving napari.

It builds the same run configuration as ``microsr train`` and calls
:func:`microsr.train` in a background thread; the epoch callback feeds the
progress bar, the loss curve and a preview of the current model, and returns
True once Stop is pressed.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    LineEdit,
    ProgressBar,
    PushButton,
    Select,
    SpinBox,
)
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Image as ImageLayer
from napari.layers import Shapes
from superqt.utils import ensure_main_thread

from microsr.degrade import PRESETS
from microsr.errors import InputError
from microsr.io import Image
from microsr.models import list_models
from microsr.napari._common import image_layer_box, layer_choices, notify_error, run_in_thread, status_label
from microsr.napari._layers import layer_image, resampled_placement
from microsr.predict.restorer import load_model
from microsr.training import train

if TYPE_CHECKING:
    import napari.viewer

__all__ = ["TrainWidget"]

_PREVIEW_SIDE = 128  # side of the default preview region, in the preview layer's pixels
_PROGRESS_STEPS = 1000


class TrainWidget(Container):
    """Train a super-resolution model from high-resolution layers, with a live loss curve and preview.

    The chosen HR layers are trained on as they are, in memory, with their pixel
    size (a folder of images can be given as well or instead). Training runs in a background
    thread; after every epoch (*tiles per epoch* training tiles, then validation)
    the loss curve and progress bar update and, when a preview layer is chosen,
    the current model restores a region of it into the layer ``NAME preview``: the
    last rectangle of the chosen Shapes layer, else a central 128 x 128 crop.
    *Stop* ends training after the current epoch; its checkpoint is kept, so the
    model folder is usable (``best.safetensors``, ``last.safetensors``).

    Parameters
    ----------
    viewer
        The napari viewer.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self.hr = Select(label="HR layers", choices=lambda _: layer_choices(viewer, ImageLayer))
        self.hr.native.setMaximumHeight(80)
        self.folder = FileEdit(label="or folder", mode="d", nullable=True)
        self.axes = LineEdit(label="axes", value="", tooltip="The layers' axes, e.g. TYX; empty: from the layers.")
        self.pixel_size = FloatSpinBox(label="pixel size (nm)", min=0, max=1e6, step=0.1, value=0,
                                       tooltip="HR pixel size; 0: from the layers and files.")
        self.degradation = ComboBox(label="degradation", choices=list(PRESETS), value="poisson")
        self.degradation_file = FileEdit(label="or YAML", mode="r", filter="*.yaml *.yml", nullable=True)
        self.model_name = ComboBox(label="model", choices=list_models(), value="resunet")
        self.scale = ComboBox(label="scale", choices=[1, 2, 4, 8], value=4)
        self.frames = SpinBox(label="frames", min=1, max=15, step=2, value=1)
        self.frame_axis = ComboBox(label="frame axis", choices=["T", "Z"], value="T")
        self.minutes = FloatSpinBox(label="minutes", min=0.01, max=1e5, value=10.0)
        self.steps = SpinBox(label="or steps", min=0, max=10**8, value=0, tooltip="0: train for 'minutes'.")
        self.tile = SpinBox(label="tile", min=8, max=4096, value=128, tooltip="HR tile side in pixels.")
        self.batch_size = SpinBox(label="batch size", min=1, max=1024, value=8)
        self.epoch_tiles = SpinBox(label="tiles per epoch", min=1, max=10**8, value=512,
                                   tooltip="Training tiles between validations (and preview updates).")
        self.output = FileEdit(label="model folder", mode="d", value=Path.cwd() / "microsr_model")
        self.preview = image_layer_box(viewer, "preview layer", nullable=True)
        self.region = ComboBox(label="preview region", nullable=True, choices=lambda _: layer_choices(viewer, Shapes))
        self.train_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.progress = ProgressBar(label="progress", min=0, max=_PROGRESS_STEPS, value=0)
        self.status = status_label()
        self.extend([self.hr, self.folder, self.axes, self.pixel_size, self.degradation, self.degradation_file,
                     self.model_name, self.scale, self.frames, self.frame_axis, self.minutes, self.steps,
                     self.tile, self.batch_size, self.epoch_tiles, self.output, self.preview, self.region,
                     self.train_button, self.stop_button, self.progress, self.status])
        self._figure = Figure(figsize=(4, 2.2), layout="constrained")
        self._axes = self._figure.add_subplot()
        self._canvas = FigureCanvasQTAgg(self._figure)
        self._canvas.setMinimumHeight(160)
        self.native.layout().addWidget(self._canvas)
        self.history: list[dict[str, Any]] = []
        """The epoch records of the current or last run (see :func:`microsr.train`)."""
        self._config = self.config()
        self.worker: Any = None
        """The background job under way (a napari thread worker), None when idle."""
        self._stop = threading.Event()
        self.train_button.changed.connect(self._train_clicked)
        self.stop_button.changed.connect(self.stop)

    def config(self) -> dict[str, Any]:
        """The run configuration (as :func:`microsr.train` takes it) without the HR images, which the run adds."""
        return {
            "data": {
                "pixel_size": self.pixel_size.value or None, "tile": self.tile.value, "frames": self.frames.value,
                "frame_axis": self.frame_axis.value, "batch_size": self.batch_size.value,
                "samples_per_epoch": self.epoch_tiles.value,
                # Worker processes forked from a process running Qt's threads can deadlock; degrade in this one.
                "num_workers": 0,
            },
            "scale": self.scale.value,
            "degradation": str(self.degradation_file.value) if self.degradation_file.value else self.degradation.value,
            "model": {"name": self.model_name.value},
            "train": {"steps": self.steps.value} if self.steps.value else {"minutes": self.minutes.value},
        }

    def run(self) -> Any:
        """Start training in a background thread; return the worker.

        Raises
        ------
        InputError
            If neither HR layers nor a folder are chosen, or a layer's axes do not fit.
        """
        layers = list(self.hr.value)
        if not layers and self.folder.value is None:
            raise InputError("no training images: choose HR layers, or a folder of HR images under 'or folder'.")
        images = {layer.name: layer_image(layer, axes=self.axes.value) for layer in layers}
        preview = self._preview_request()
        output = Path(self.output.value)
        self._config = self.config()  # what this run uses, whatever is edited while it runs
        self.history.clear()
        self._stop.clear()
        self._plot()
        self.progress.value = 0
        self.status.value = f"training into {output}…"
        self.train_button.enabled, self.stop_button.enabled = False, True
        self.worker = run_in_thread(
            _train, images, self.folder.value, self._config, output,
            lambda record: self._epoch_end(record, output, preview),
            returned=lambda record: self._done(record, output), errored=self._failed, finished=self._finished,
        )
        return self.worker

    def stop(self) -> None:
        """End training after the current epoch, keeping its checkpoint."""
        self._stop.set()
        self.status.value = "stopping after this epoch…"

    # ----------------------------------------------------------------- internals

    def _preview_request(self) -> tuple[Any, Image, tuple[int, int]] | None:
        """The preview layer, the region of it to restore, and the region's first (row, column)."""
        layer = self.preview.value
        if layer is None:
            return None
        image = layer_image(layer, axes=self.axes.value)
        height, width = image.shape[-2:]
        shapes = self.region.value
        if shapes is not None and len(shapes.data):
            corners = np.array([layer.world_to_data(shapes.data_to_world(v)) for v in shapes.data[-1]])[:, -2:]
            (y0, x0), (y1, x1) = np.floor(corners.min(0)).astype(int), np.ceil(corners.max(0)).astype(int)
        else:
            y0, x0 = max(0, (height - _PREVIEW_SIDE) // 2), max(0, (width - _PREVIEW_SIDE) // 2)
            y1, x1 = y0 + _PREVIEW_SIDE, x0 + _PREVIEW_SIDE
        y0, x0, y1, x1 = max(y0, 0), max(x0, 0), min(y1, height), min(x1, width)
        if y1 - y0 < 2 or x1 - x0 < 2:
            raise InputError(f"the preview region lies outside layer {layer.name!r}; draw it over the layer.")
        return layer, image.replace(data=image.data[..., y0:y1, x0:x1]), (y0, x0)

    def _epoch_end(self, record: dict[str, Any], output: Path, preview: Any) -> bool:
        """Called by :func:`microsr.train` in the worker thread after each epoch's checkpoint."""
        restored = None
        if preview is not None:
            restored = load_model(output / "last.safetensors").predict(preview[1])
        self._show_epoch(record, preview, restored)
        return self._stop.is_set()

    @ensure_main_thread
    def _show_epoch(self, record: dict[str, Any], preview: Any, restored: np.ndarray | None) -> None:
        self.history.append(record)
        self._plot()
        budget = self._config["train"]
        done = record["step"] / budget["steps"] if "steps" in budget else record["seconds"] / (60 * budget["minutes"])
        self.progress.value = round(min(done, 1.0) * _PROGRESS_STEPS)
        self.status.value = (
            f"epoch {record['epoch']}: loss {record['loss']:.4f} · val PSNR {record['val_psnr']:.2f} dB "
            f"(bicubic {record['bicubic_psnr']:.2f}) · SSIM {record['val_ssim']:.3f}"
        )
        if restored is None:
            return
        layer, _, offset = preview
        name = f"{layer.name} preview"
        placement = resampled_placement(layer, 1 / self._config["scale"], offset)
        if name in self._viewer.layers:
            self._viewer.layers[name].data = restored
            self._viewer.layers[name].translate = placement["translate"]
        else:
            self._viewer.add_image(restored, name=name, colormap=layer.colormap, **placement)

    def _plot(self) -> None:
        self._axes.clear()
        epochs = [r["epoch"] for r in self.history]
        self._axes.plot(epochs, [r["loss"] for r in self.history], "o-", label="training loss")
        self._axes.plot(epochs, [r["val_loss"] for r in self.history], "s-", label="validation loss")
        self._axes.set_xlabel("epoch")
        if self.history:
            self._axes.legend(fontsize="small")
        self._canvas.draw_idle()

    def _train_clicked(self) -> None:
        try:
            self.run()
        except InputError as error:
            notify_error(error)

    def _done(self, record: dict[str, Any], output: Path) -> None:
        how = "stopped" if self._stop.is_set() else "done"
        self.status.value = (
            f"{how} after epoch {record['epoch']}: val PSNR {record['val_psnr']:.2f} dB "
            f"(bicubic {record['bicubic_psnr']:.2f}); model in {output}"
        )

    def _failed(self, error: BaseException) -> None:
        self.status.value = "failed"
        notify_error(error)

    def _finished(self) -> None:
        self.worker = None
        self.train_button.enabled, self.stop_button.enabled = True, False


def _train(
    images: dict[str, Image], folder: Path | None, config: dict[str, Any], output: Path, on_epoch_end: Any
) -> dict[str, Any]:
    """Run in the worker thread: train on the layers' images as they are in memory (and on ``folder``)."""
    hr = [*images.values(), *([folder] if folder is not None else [])]
    return train({**config, "data": {**config["data"], "hr": hr}}, output, progress=False, on_epoch_end=on_epoch_end)
