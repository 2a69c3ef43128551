"""Checkpoints: weights in safetensors, with their whole description as JSON inside.

A checkpoint is one ``.safetensors`` file whose metadata holds a JSON document:
the model's architecture (registry name and arguments), scale, frames,
normalisation, degradation, the pixel size the model expects, the run
configuration and the microsr version. Loading never unpickles anything, so a
checkpoint from a stranger cannot run code.

:class:`ModelDescription` reads that document into typed fields, once: how to
rebuild the network and how to feed it (scale, the layout of its input frames,
normalisation, pixel size). The document itself stays a plain JSON dict on disk, so
checkpoints written by any microsr version load unchanged.

A training run's folder holds ``best.safetensors``, ``last.safetensors``,
``config.json`` (the same description, for people) and ``train_state.pt``
(optimiser state for ``--resume``; read with ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from microsr import __version__
from microsr.errors import InputError
from microsr.io import atomic_output
from microsr.pretrained import PRETRAINED, pretrained_path

__all__ = [
    "FORMAT_VERSION", "ModelDescription", "checkpoint_path", "load_checkpoint", "load_state_into", "save_checkpoint",
]

FORMAT_VERSION = 1
_KEY = "microsr"


@dataclass(frozen=True)
class ModelDescription:
    """What a checkpoint says about its model, typed: how to rebuild it and how to feed it.

    A model's input is laid out in one of three ways:

    * **single frame** (``frames == 1``, no ``channels``): each YX plane on its own;
    * **sliding window** (``frames > 1``, no ``channels``): each output plane from the
      ``frames`` adjacent planes centred on it along ``frame_axis`` (``T`` or ``Z``);
    * **frames as channels** (``channels``, e.g. SIM's 15 raw frames, SRRF's 5): each
      acquisition's frames ``channels`` along ``frame_axis`` (typically ``C``) are the
      input channels, and one output plane comes from each acquisition.

    Attributes
    ----------
    scale : int
        Upsampling factor.
    normalization : dict
        The :class:`~microsr.data.normalize.PercentileNormalizer` as a dict.
    frames : int
        Input channels of the network (the window, or ``len(channels)``).
    frame_axis : str
        Axis the frames come from.
    channels : tuple of int or None
        For frames-as-channels models, the frames of each acquisition it reads.
    lr_planes : dict
        Planes of other axes the model was trained on (``data.lr_planes``, e.g. ``{"Z": 1}``
        for T-SIM's middle time point); frames-as-channels inputs take the same planes.
    input_pixel_size, output_pixel_size : float or None
        nm, when known.
    receptive_field : int or None
        Radius in input pixels, measured at training.
    arch : dict or None
        Registry name and arguments (``None``: a custom architecture).
    degradation : dict or None
        The degradation it was trained with.
    smlm : dict
        SMLM calibration (``threshold``, validation scores); empty for other models.
    run : dict
        The training run's configuration, as recorded.

    Examples
    --------
    >>> d = ModelDescription.from_info({"scale": 2, "frames": 3, "frame_axis": "C",
    ...     "normalization": {"type": "percentile", "low": 0.1, "high": 99.9},
    ...     "run": {"data": {"channels": [0, 3, 6], "lr_planes": {"Z": 1}}}})
    >>> d.layout, d.channels, d.lr_planes
    ('channels', (0, 3, 6), {'Z': 1})
    """

    scale: int
    normalization: Mapping[str, Any]
    frames: int = 1
    frame_axis: str = "T"
    channels: tuple[int, ...] | None = None
    lr_planes: Mapping[str, int] = field(default_factory=dict)
    input_pixel_size: float | None = None
    output_pixel_size: float | None = None
    receptive_field: int | None = None
    arch: Mapping[str, Any] | None = None
    degradation: Mapping[str, Any] | None = None
    smlm: Mapping[str, Any] = field(default_factory=dict)
    run: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_info(cls, info: Mapping[str, Any], source: str | os.PathLike[str] = "checkpoint") -> ModelDescription:
        """Read a checkpoint's JSON description (as :func:`load_checkpoint` returns it).

        Raises
        ------
        InputError
            If ``scale`` or ``normalization`` is missing or malformed: the file is damaged
            or not from microsr.
        """
        for key in ("scale", "normalization"):
            if key not in info:
                raise InputError(
                    f"{source}: the checkpoint's description lacks {key!r}; it is damaged or not from microsr."
                )
        run = info.get("run") or {}
        data = run.get("data") or {}
        try:
            channels = data.get("channels")
            return cls(
                scale=int(info["scale"]),
                normalization=dict(info["normalization"]),
                frames=int(info.get("frames", 1)),
                frame_axis=str(info.get("frame_axis", "T")),
                channels=None if channels is None else tuple(int(c) for c in channels),
                lr_planes={str(axis): int(i) for axis, i in (data.get("lr_planes") or {}).items()},
                input_pixel_size=_number(info.get("input_pixel_size")),
                output_pixel_size=_number(info.get("output_pixel_size")),
                receptive_field=None if info.get("receptive_field") is None else int(info["receptive_field"]),
                arch=info.get("arch"),
                degradation=info.get("degradation"),
                smlm=info.get("smlm") or {},
                run=run,
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"{source}: the checkpoint's description is malformed ({exc}); it is damaged or "
                             "was edited.") from None

    @property
    def layout(self) -> str:
        """``"single"``, ``"window"`` or ``"channels"``: how the input frames are laid out (see the class)."""
        if self.channels is not None:
            return "channels"
        return "window" if self.frames > 1 else "single"


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, info: dict[str, Any]) -> Path:
    """Write `model`'s weights and `info` atomically to a ``.safetensors`` file.

    Parameters
    ----------
    path
        Output file; replaced if it exists (checkpoints are rewritten every epoch).
    model
        The network; its ``state_dict`` is saved (tensors made contiguous, on CPU).
    info
        JSON-serialisable description (architecture, scale, frames, ...); the format
        version and microsr version are added.

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile
    >>> p = save_checkpoint(Path(tempfile.mkdtemp()) / "m.safetensors", nn.Conv2d(1, 1, 3), {"scale": 1})
    >>> load_checkpoint(p)[1]["scale"]
    1
    """
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    document = {**info, "format_version": FORMAT_VERSION, "microsr_version": __version__}
    with atomic_output(path, overwrite=True) as tmp:
        save_file(tensors, str(tmp), metadata={_KEY: json.dumps(document)})
    return path


def checkpoint_path(path: str | os.PathLike[str]) -> Path:
    """The checkpoint file meant by `path`: the file itself, a run folder's best (else last) checkpoint,
    or, for the name of a shipped model (:mod:`microsr.pretrained`) that is not a file here, that model.

    Examples
    --------
    >>> checkpoint_path("model.safetensors").name
    'model.safetensors'
    >>> checkpoint_path("sim_lowlight").name
    'sim_lowlight.safetensors'
    """
    path = Path(path)
    if not path.exists() and str(path) in PRETRAINED:
        return pretrained_path(str(path))
    if path.is_dir():
        for name in ("best.safetensors", "last.safetensors"):
            if (path / name).is_file():
                return path / name
        shadowed = (
            f" The folder hides the shipped model {path.name!r}: give its file, {pretrained_path(path.name)}."
            if str(path) in PRETRAINED else ""
        )
        raise InputError(
            f"{path}: no best.safetensors or last.safetensors in this folder; is it a model folder?{shadowed}"
        )
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read weights and description from a checkpoint file or run folder, without unpickling.

    Returns
    -------
    state_dict, info
        Tensors on CPU, and the JSON description.

    Raises
    ------
    InputError
        For a missing file, a file that is not safetensors (e.g. a pickled ``.pt``),
        a safetensors file without microsr's description, or one written by a newer
        microsr in a format this version cannot read.
    """
    path = checkpoint_path(path)
    if not path.is_file():
        raise InputError(
            f"{path}: checkpoint not found. Give a model folder written by `microsr train` or its .safetensors file."
        )
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(
            f"{path}: not a safetensors checkpoint ({exc}). microsr never loads pickled weights (.pt/.pth), "
            "which can run arbitrary code; convert them to safetensors or retrain."
        ) from exc
    if _KEY not in metadata:
        raise InputError(
            f"{path}: a safetensors file without microsr's model description; it was not written by microsr."
        )
    info = json.loads(metadata[_KEY])
    if info.get("format_version", 0) > FORMAT_VERSION:
        raise InputError(
            f"{path}: checkpoint format {info['format_version']} is newer than this microsr ({__version__}) "
            f"reads (format {FORMAT_VERSION}); upgrade microsr."
        )
    return state, info


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], source: str | os.PathLike[str]) -> nn.Module:
    """Load `state` into `model` strictly, turning a mismatch into a readable error.

    Examples
    --------
    >>> conv = nn.Conv2d(1, 1, 3)
    >>> load_state_into(nn.Conv2d(1, 1, 3), conv.state_dict(), "demo") is not None
    True
    """
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensor shapes differ
        raise InputError(
            f"{source}: the weights do not fit the model ({exc}); it belongs to another architecture."
        ) from exc
    problems = []
    if result.missing_keys:
        problems.append(f"missing {len(result.missing_keys)} weights (e.g. {result.missing_keys[0]})")
    if result.unexpected_keys:
        problems.append(f"{len(result.unexpected_keys)} unexpected weights (e.g. {result.unexpected_keys[0]})")
    if problems:
        raise InputError(
            f"{source}: the weights do not fit the model ({'; '.join(problems)}); "
            "the file is damaged or belongs to another architecture."
        )
    return model
