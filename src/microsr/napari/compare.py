"""The Compare widget: score a prediction against a reference layer and map where they differ.

It scores with :func:`microsr.evaluate.score.score`, as every microsr entry point does
(PSNR, SSIM and NRMSE on a common intensity scale), and maps the differences with the
SQUIRREL-style :func:`~microsr.evaluate.metrics.error_map`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton

from microsr.errors import InputError
from microsr.evaluate.metrics import error_map
from microsr.evaluate.score import score
from microsr.napari._common import image_layer_box, notify_error, run_in_thread, status_label
from microsr.napari._layers import layer_image

if TYPE_CHECKING:
    import napari.viewer

__all__ = ["CompareWidget", "compare"]

PERCENTILE = "percentile (each image)"
FIT = "fit to reference"
_NORMALIZATIONS = {FIT: "fit", PERCENTILE: "percentile"}  # the widget's choices -> score()'s conventions


def compare(prediction: np.ndarray, reference: np.ndarray, normalization: str = FIT) -> dict[str, Any]:
    """PSNR, SSIM and NRMSE of ``prediction`` against ``reference``, and their error map.

    Parameters
    ----------
    prediction, reference
        Images of the same shape.
    normalization
        ``FIT`` (default, :func:`~microsr.evaluate.score.score`'s ``"fit"``): the
        reference's 0.1/99.9 percentiles are mapped to 0/1 and the prediction is fitted
        to it by a gain and offset; ``PERCENTILE`` (``"percentile"``): each image is
        mapped by its own percentiles, which penalises a prediction whose darkest pixels
        undershoot (ringing) over the whole background. PSNR and SSIM then use a data
        range of 1.

    Returns
    -------
    dict
        ``psnr`` (dB), ``ssim``, ``nrmse``, and ``error`` (the
        :class:`~microsr.evaluate.metrics.ErrorMap`, in the reference's units).

    Raises
    ------
    InputError
        If the shapes differ, an image is not finite or under 7 pixels per side, or the
        reference is constant.

    Examples
    --------
    >>> reference = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    >>> result = compare(reference * 3 + 1, reference)
    >>> round(result["ssim"], 3), round(result["error"].rsp, 3)
    (1.0, 1.0)
    """
    result = score(prediction, reference, normalization=_NORMALIZATIONS[normalization])
    return {"psnr": result.psnr, "ssim": result.ssim, "nrmse": result.nrmse,
            "error": error_map(reference, prediction)}


class CompareWidget(Container):
    """Compare a prediction layer with a reference layer of the same shape.

    Shows PSNR, SSIM, NRMSE and the error map's RSE and RSP, and adds the error
    map as the layer ``NAME error`` over the reference (bright = disagreement).

    Parameters
    ----------
    viewer
        The napari viewer.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self.prediction = image_layer_box(viewer, "prediction")
        self.reference = image_layer_box(viewer, "reference")
        self.normalization = ComboBox(label="intensities", choices=[FIT, PERCENTILE], value=FIT)
        self.run_button = PushButton(text="Compare")
        self.result = status_label()
        self.extend([self.prediction, self.reference, self.normalization, self.run_button, self.result])
        self.metrics: dict[str, Any] = {}
        self.worker: Any = None
        """The background job under way (a napari thread worker), None when idle."""
        self.run_button.changed.connect(self._run_clicked)

    def run(self) -> Any:
        """Compute the metrics in a background thread; return the worker.

        Raises
        ------
        InputError
            If a layer is not chosen.
        """
        prediction, reference = self.prediction.value, self.reference.value
        if prediction is None or reference is None:
            raise InputError("choose a prediction layer and a reference layer to compare.")
        arrays = (layer_image(layer).data for layer in (prediction, reference))
        normalization = self.normalization.value
        self.run_button.enabled = False
        self.worker = run_in_thread(
            lambda p, r: compare(np.asarray(p), np.asarray(r), normalization), *arrays,
            returned=lambda metrics: self._show(metrics, prediction, reference),
            finished=self._finished,
        )
        return self.worker

    def _finished(self) -> None:
        self.worker = None
        self.run_button.enabled = True

    def _run_clicked(self) -> None:
        try:
            self.run()
        except InputError as error:
            notify_error(error)

    def _show(self, metrics: dict[str, Any], prediction: Any, reference: Any) -> None:
        self.metrics = metrics
        error = metrics["error"]
        self.result.value = (
            f"PSNR {metrics['psnr']:.2f} dB · SSIM {metrics['ssim']:.3f} · NRMSE {metrics['nrmse']:.3f}\n"
            f"error map: RSE {error.rse:.4g} (reference units) · RSP {error.rsp:.4f}"
        )
        name = f"{prediction.name} error"
        if name in self._viewer.layers:
            self._viewer.layers.remove(name)
        self._viewer.add_image(
            error.map, name=name, colormap="magma", blending="additive", scale=reference.scale,
            translate=reference.translate, units=reference.units, axis_labels=reference.axis_labels,
        )
