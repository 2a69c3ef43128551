"""The Degrade widget: preview a degradation ("crappifier") on an image layer, live.

It calls :func:`microsr.degrade.degrade_image` exactly as ``microsr degrade`` does;
the pipeline is shown as the YAML that ``--degradation`` and training read, so
any parameter of any step can be edited in place.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, PushButton, SpinBox, TextEdit
from qtpy.QtCore import QTimer

from microsr.degrade import PRESETS, Degradation, preset
from microsr.degrade import degrade_image
from microsr.errors import InputError
from microsr.io import atomic_output
from microsr.napari._common import image_layer_box, notify_error, run_in_thread, status_label
from microsr.napari._layers import layer_image, resampled_placement

if TYPE_CHECKING:
    import napari.viewer

__all__ = ["DegradeWidget"]

_TYPING_PAUSE_MS = 400  # edits of the YAML apply once typing pauses this long


class DegradeWidget(Container):
    """Degrade an image layer as training would; the result is a layer that follows every change.

    Choosing a preset or a scale rewrites the pipeline's YAML; editing the YAML
    changes any step's parameters. With *update live* on, each change
    re-degrades the layer in a background thread into the layer ``NAME degraded``,
    placed over the input at the coarser pixel size. Invalid YAML shows its error
    below the buttons while typing; *Degrade* and *Save YAML* show errors as
    notifications.

    Parameters
    ----------
    viewer
        The napari viewer (given by napari when the widget is opened from the Plugins menu).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self.image = image_layer_box(viewer, "image")
        self.preset = ComboBox(label="preset", choices=list(PRESETS), value="poisson")
        self.scale = SpinBox(label="scale", min=1, max=16, value=4)
        self.steps = TextEdit(label="steps (YAML)")
        self.seed = SpinBox(label="seed", min=0, max=2**31 - 1, value=0)
        self.live = CheckBox(text="update live", value=True)
        self.run_button = PushButton(text="Degrade")
        self.save_path = FileEdit(label="save as", mode="w", filter="*.yaml", nullable=True)
        self.save_button = PushButton(text="Save YAML")
        self.status = status_label()
        self.extend([self.image, self.preset, self.scale, self.steps, self.seed, self.live, self.run_button,
                     self.save_path, self.save_button, self.status])
        self.worker: Any = None
        """The background job under way (a napari thread worker), None when idle."""
        self._generation = 0
        self._typing = QTimer(self.native)
        self._typing.setSingleShot(True)
        self._typing.setInterval(_TYPING_PAUSE_MS)
        self._typing.timeout.connect(self._live_update)
        self.preset.changed.connect(self._load_preset)
        self.scale.changed.connect(self._rescale)
        # magicgui 0.10's TextEdit never emits `changed` (QTextEdit.textChanged has no value), so use Qt's signal.
        self.steps.native.textChanged.connect(self._typing.start)
        for widget in (self.image, self.seed, self.live):
            widget.changed.connect(self._live_update)
        # Closing napari deletes the Qt widgets before it removes the layers, which changes `image`.
        self.native.destroyed.connect(lambda: self.image.changed.disconnect(self._live_update))
        self.run_button.changed.connect(self._run_clicked)
        self.save_button.changed.connect(self._save_clicked)
        self._load_preset()

    def degradation(self) -> Degradation:
        """The pipeline the YAML describes.

        Raises
        ------
        InputError
            If the YAML is not a valid degradation.
        """
        return Degradation.from_yaml(self.steps.value)

    def run(self) -> Any:
        """Degrade the chosen layer in a background thread; return the worker.

        Raises
        ------
        InputError
            If no image layer is chosen or the YAML is invalid.
        """
        layer = self.image.value
        if layer is None:
            raise InputError("no image layer chosen: open an image and choose it under 'image'.")
        degradation = self.degradation()
        image = layer_image(layer)
        self._generation += 1
        generation = self._generation
        self.worker = run_in_thread(
            partial(degrade_image, seed=self.seed.value), image, degradation,
            returned=lambda result: self._show(result.data.compute(), layer, degradation, generation),
            errored=self._live_error if self.live.value else notify_error,
            finished=lambda: self._finished(generation),
        )
        return self.worker

    def save(self, path: str | Path) -> Path:
        """Write the pipeline as YAML to ``path`` (replacing it: the save dialog asks first)."""
        degradation = self.degradation()
        with atomic_output(path, overwrite=True) as temporary:
            temporary.write_text(degradation.to_yaml())
        return Path(path)

    # ----------------------------------------------------------------- internals

    def _load_preset(self) -> None:
        self.steps.value = preset(self.preset.value, scale=self.scale.value).to_yaml()
        self._live_update()

    def _rescale(self) -> None:
        try:
            self.steps.value = self.degradation().with_scale(self.scale.value).to_yaml()
        except InputError:
            self._load_preset()
            return
        self._live_update()

    def _live_update(self) -> None:
        if not self.live.value or self.image.value is None:
            return
        try:
            self.run()
        except InputError as error:
            self._live_error(error)

    def _live_error(self, error: BaseException) -> None:
        if not isinstance(error, InputError):
            raise error
        self.status.value = str(error)

    def _run_clicked(self) -> None:
        try:
            self.run()
        except InputError as error:
            notify_error(error)

    def _save_clicked(self) -> None:
        try:
            if self.save_path.value is None:
                raise InputError("no file to save to: choose one under 'save as'.")
            self.status.value = f"saved {self.save(self.save_path.value)}"
        except InputError as error:
            notify_error(error)

    def _finished(self, generation: int) -> None:
        if generation == self._generation:
            self.worker = None

    def _show(self, data: np.ndarray, layer: Any, degradation: Degradation, generation: int) -> None:
        if generation != self._generation:  # a newer request is under way; its result will follow
            return
        name = f"{layer.name} degraded"
        if layer.rgb:  # degraded as CYX; napari shows colour samples last
            data = np.moveaxis(data, 0, -1)
        placement = resampled_placement(layer, degradation.scale)
        if name in self._viewer.layers:
            target = self._viewer.layers[name]
            target.data = data
            target.scale, target.translate = placement["scale"], placement["translate"]
        else:
            self._viewer.add_image(data, name=name, colormap=layer.colormap, rgb=layer.rgb,
                                  contrast_limits=layer.contrast_limits, **placement)
        self.status.value = f"{name}: {' × '.join(map(str, data.shape))}, x{degradation.scale} coarser"
