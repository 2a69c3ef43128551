"""What the widgets share: layer choices, error notifications and background work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from magicgui.widgets import ComboBox, Label
from napari.layers import Image as ImageLayer
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_warning
from qtpy.QtWidgets import QSizePolicy

from microsr.errors import InputError

__all__ = ["Cancelled", "image_layer_box", "layer_choices", "notify_error", "run_in_thread", "status_label"]


class Cancelled(Exception):
    """Raised in a worker thread when the user pressed Cancel or Stop."""


def layer_choices(viewer: Any, kind: type) -> list[tuple[str, Any]]:
    """``(name, layer)`` of the viewer's layers of type ``kind``, as magicgui choices."""
    return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, kind)]


def image_layer_box(viewer: Any, label: str, *, nullable: bool = False) -> ComboBox:
    """A drop-down of the viewer's image layers; napari refreshes it when layers change once it is docked."""
    return ComboBox(label=label, nullable=nullable, choices=lambda _: layer_choices(viewer, ImageLayer))


def status_label() -> Label:
    """A label for results and progress that wraps long lines instead of widening the dock."""
    label = Label(value="")
    label.native.setWordWrap(True)
    label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    return label


def notify_error(error: BaseException) -> None:
    """Show an :class:`InputError` as a notification with the message the CLI prints; re-raise anything else.

    Other exceptions are programming errors: re-raised, napari shows them with their traceback.
    """
    if not isinstance(error, InputError):
        raise error
    show_error(str(error))


def run_in_thread(
    function: Callable[..., Any],
    *args: Any,
    returned: Callable[[Any], None],
    errored: Callable[[BaseException], None] = notify_error,
    finished: Callable[[], None] | None = None,
) -> Any:
    """Run ``function(*args)`` in a napari thread worker, so the viewer stays responsive.

    ``returned``, ``errored`` and ``finished`` are called in the main thread;
    warnings (e.g. of a pixel-size mismatch with ``force``) become notifications.
    Returns the started worker.
    """
    connect: dict[str, Callable[..., None]] = {
        "returned": returned, "errored": errored, "warned": lambda warning: show_warning(str(warning[0])),
    }
    if finished is not None:
        connect["finished"] = finished
    return create_worker(function, *args, _connect=connect)
