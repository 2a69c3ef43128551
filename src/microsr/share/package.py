"""Run a bioimage.io model package (format 0.5) through microsr's prediction engine.

:func:`load_package` reads the package's description and weights (``torchscript``, ``onnx`` or
``pytorch_state_dict``) and returns a :class:`PackageRestorer`: a
:class:`~microsr.predict.restorer.Restorer` whose :class:`~microsr.predict.engine.Predictor`
tiles with the package's halo, pads each tile to a size the package accepts, and applies
the package's pre- and post-processing with the input image's statistics (fitted once per
image, so tiles agree). A package written by ``microsr export`` carries microsr's own
normalisation in ``config.microsr``, which is applied instead, so it predicts exactly as
the model it was made from.
"""

from __future__ import annotations

import io
import math
import zipfile
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch
import torch.nn.functional as F
from bioimageio.core.backends.pytorch_backend import load_torch_model
from bioimageio.spec import InvalidDescr, load_model_description
from bioimageio.spec.model import v0_5 as spec
from bioimageio.spec.utils import download
from torch import nn

from microsr.data.normalize import PercentileNormalizer
from microsr.errors import InputError
from microsr.io import Image
from microsr.predict.engine import DEFAULT_TILE, Predictor
from microsr.predict.restorer import Restorer

__all__ = ["PackageProcessing", "PackageRestorer", "load_package"]

WEIGHT_PREFERENCE = ("torchscript", "onnx", "pytorch_state_dict")
"""Weight formats tried in this order; ``pytorch_state_dict`` runs the package's Python source, so it is last."""


_NANOMETRES = {"nanometer": 1.0, "micrometer": 1000.0, "millimeter": 1e6}

# --------------------------------------------------------------------------- processing


@dataclass(frozen=True)
class PackageProcessing:
    """The package's pre- and post-processing as per-pixel maps, with the input image's statistics.

    It stands in for :class:`~microsr.data.normalize.PercentileNormalizer` in a
    :class:`~microsr.predict.engine.Predictor`: :meth:`fit` measures the statistics the steps
    need on the whole image (sampled for a large one), :meth:`__call__` preprocesses a block and
    :meth:`denormalize` postprocesses one.

    Attributes
    ----------
    pre, post : tuple of (str, dict)
        Step ids and arguments, in order.
    stats : dict or None
        ``{"lo", "hi"}`` percentiles and ``{"mean", "std"}`` of the input, once fitted.

    Examples
    --------
    >>> p = PackageProcessing(pre=(("scale_linear", {"gain": 2.0, "offset": 1.0}),), post=()).fit(np.zeros(4))
    >>> p(np.array([1.0])).tolist()
    [3.0]
    """

    pre: tuple[tuple[str, dict], ...]
    post: tuple[tuple[str, dict], ...]
    stats: dict[str, float] | None = None

    @property
    def fitted(self) -> bool:
        return self.stats is not None

    @property
    def lo(self) -> float | None:  # what identifies a streaming job (Predictor._job)
        return None if self.stats is None else self.stats.get("lo")

    @property
    def hi(self) -> float | None:
        return None if self.stats is None else self.stats.get("hi")

    def fit(self, image: Image | np.ndarray) -> PackageProcessing:
        """A copy with the statistics of ``image`` that the steps use."""
        stats: dict[str, float] = {}
        for step, kwargs in (*self.pre, *self.post):
            if step in ("scale_range", "denormalize_percentile"):
                fitted = PercentileNormalizer(kwargs["min_percentile"], kwargs["max_percentile"]).fit(image)
                stats.update(lo=fitted.lo, hi=fitted.hi)
            elif step == "zero_mean_unit_variance":
                data = image.data if isinstance(image, Image) else np.asarray(image)
                stats.update(mean=float(data.astype(np.float64).mean()), std=float(data.astype(np.float64).std()))
        return replace(self, stats=stats)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._apply(self.pre, np.asarray(x, dtype=np.float32))

    def denormalize(self, y: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        result = self._apply(self.post, np.asarray(y, dtype=np.float32))
        if out is None:
            return result
        out[...] = result
        return out

    def _apply(self, steps: tuple[tuple[str, dict], ...], x: np.ndarray) -> np.ndarray:
        stats = self.stats or {}
        for step, kwargs in steps:
            if step == "scale_range":
                x = (x - stats["lo"]) / (stats["hi"] - stats["lo"] + kwargs["eps"])
            elif step == "denormalize_percentile":  # microsr's own inverse, from a microsr package's config
                x = x * (stats["hi"] - stats["lo"]) + stats["lo"]
            elif step == "zero_mean_unit_variance":
                x = (x - stats["mean"]) / (stats["std"] + kwargs["eps"])
            elif step == "scale_linear":
                x = x * kwargs["gain"] + kwargs["offset"]
            elif step == "fixed_zero_mean_unit_variance":
                x = (x - kwargs["mean"]) / (kwargs["std"] + kwargs.get("eps", 1e-6))
            elif step == "clip":
                x = np.clip(x, kwargs.get("min"), kwargs.get("max"))
            elif step == "sigmoid":
                x = 1 / (1 + np.exp(-x))
        return x.astype(np.float32, copy=False)


def _steps(descrs: Any, where: str, input_id: str, *, output: bool) -> tuple[tuple[str, dict], ...]:
    """The steps as (id, kwargs); refuses those that need per-channel values or the output's own statistics."""
    steps = []
    for descr in descrs:
        kwargs = descr.kwargs.model_dump() if hasattr(descr, "kwargs") else {}
        if descr.id == "ensure_dtype":
            continue  # microsr computes in float32 throughout
        scalar = all(not isinstance(v, (list, tuple)) for k, v in kwargs.items() if k not in ("axes", "axis"))
        if descr.id in ("scale_linear", "fixed_zero_mean_unit_variance", "clip", "sigmoid") and scalar:
            steps.append((descr.id, kwargs))
        elif descr.id in ("scale_range", "zero_mean_unit_variance") and (
                kwargs.get("reference_tensor") == input_id if output else kwargs.get("reference_tensor") in (None, input_id)):
            steps.append((descr.id, kwargs))
        else:
            stage = "post" if output else "pre"
            raise InputError(
                f"{where}: its {stage}processing step {descr.id!r} ({kwargs}) is not one microsr can apply tile by "
                "tile (it needs per-channel values or the output's own statistics); run the package with "
                "`bioimageio predict` instead."
            )
    return tuple(steps)


# --------------------------------------------------------------------------- the network


class PackageNetwork(nn.Module):
    """The package's weights as a module for the Predictor: ``(N, C, h, w)`` to ``(N, 1, h * scale, w * scale)``.

    Each tile is padded (reflecting its bottom and right edges) to the next size the package
    accepts, ``min + n * step``, and the output is cropped back; the Predictor's overlap (the
    package's halo) keeps the padding away from the kept output.
    """

    def __init__(self, run: nn.Module | onnxruntime.InferenceSession, *, scale: int, minimum: int, step: int) -> None:
        super().__init__()
        self.scale, self.minimum, self.step = scale, minimum, step
        self.torch_model = run if isinstance(run, nn.Module) else None
        self.session = None if isinstance(run, nn.Module) else run

    def _valid(self, n: int) -> int:
        return self.minimum + max(0, math.ceil((n - self.minimum) / self.step)) * self.step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = self._valid(h) - h, self._valid(w) - w
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        if self.session is not None:
            (y,) = self.session.run(None, {self.session.get_inputs()[0].name: x.float().contiguous().cpu().numpy()})
            y = torch.from_numpy(y).to(x.device)
        else:
            y = self.torch_model(x.contiguous())
        return y[..., : h * self.scale, : w * self.scale]


def _network(descr: spec.ModelDescr, weight_format: str | None, where: str) -> tuple[nn.Module | Any, str]:
    available = [f for f in WEIGHT_PREFERENCE if getattr(descr.weights, f, None) is not None]
    if weight_format is not None and weight_format not in available:
        raise InputError(f"{where}: no {weight_format!r} weights in the package; it has {', '.join(available) or 'none'} "
                         f"of those microsr runs ({', '.join(WEIGHT_PREFERENCE)}).")
    if not available:
        raise InputError(f"{where}: the package has none of the weight formats microsr runs ({', '.join(WEIGHT_PREFERENCE)}).")
    chosen = weight_format or available[0]
    entry = getattr(descr.weights, chosen)
    if chosen == "pytorch_state_dict":
        return load_torch_model(entry, devices=["cpu"]).eval(), chosen
    data = download(entry.source, sha256=entry.sha256).read()
    if chosen == "torchscript":
        return torch.jit.load(io.BytesIO(data), map_location="cpu").eval(), chosen
    return onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]), chosen


# --------------------------------------------------------------------------- the restorer


@dataclass(frozen=True)
class PackageRestorer(Restorer):
    """A :class:`~microsr.predict.restorer.Restorer` for a bioimage.io package: the same calls
    (``predict``, ``predict_file``), with the package's processing and halo.

    Attributes
    ----------
    processing : PackageProcessing
        Pre- and post-processing, fitted to each input image.
    weight_format : str
        The weights in use.
    """

    processing: PackageProcessing = field(default_factory=lambda: PackageProcessing((), ()))
    weight_format: str = ""

    def predictor(self, *, device: str | torch.device = "cpu", tile: int = DEFAULT_TILE, batch_size: int | None = None,
                  precision: str = "auto", progress: bool = False) -> Predictor:
        """A :class:`~microsr.predict.engine.Predictor` applying the package as its description says."""
        return Predictor(
            self.module.to(device), scale=self.scale, frames=self.frames, frame_axis=self.info.get("frame_axis", "T"),
            normalizer=self.processing,  # type: ignore[arg-type]  (the same four calls as a PercentileNormalizer)
            tile=tile, overlap=self.info["receptive_field"], blend=0, batch_size=batch_size, device=device,
            precision=precision, progress=progress,
        )


def _space(axes: Any, where: str, tensor: str) -> dict[str, Any]:
    kinds = {axis.type: axis for axis in axes}
    ids = [str(axis.id) for axis in axes if axis.type == "space"]
    if ids != ["y", "x"] or set(kinds) - {"batch", "channel", "space"}:
        raise InputError(f"{where}: its {tensor} has axes {[str(a.id) for a in axes]}; microsr runs packages of 2D "
                         "images (batch, channel, y, x).")
    return {"y": axes[[str(a.id) for a in axes].index("y")], "x": axes[[str(a.id) for a in axes].index("x")],
            "channels": len(kinds["channel"].channel_names) if "channel" in kinds else 1}


def load_package(path: str | os.PathLike[str], *, weight_format: str | None = None) -> PackageRestorer:
    """Load a bioimage.io model package (format 0.5) to run with microsr's streaming engine.

    Parameters
    ----------
    path
        The package's ``.zip`` (or its ``rdf.yaml``).
    weight_format
        ``"torchscript"``, ``"onnx"`` or ``"pytorch_state_dict"``; default: the first the package
        has, in that order (``pytorch_state_dict`` runs the package's own Python source).

    Returns
    -------
    PackageRestorer

    Raises
    ------
    InputError
        If the package is missing or invalid, or describes what microsr cannot run tile by tile
        (not one 2D input and output, per-channel or output-statistics processing, several input
        channels that are not a microsr frame window).

    Examples
    --------
    >>> load_package("model.zip").predict(image).shape  # doctest: +SKIP
    (1024, 1024)
    """
    where = str(path)
    if not Path(path).exists():
        raise InputError(f"{where}: not found; give a bioimage.io model package (.zip).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            descr = load_model_description(path, perform_io_checks=False)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"{where}: not a bioimage.io model package ({' '.join(str(exc).split())[:200]}).") from None
    if isinstance(descr, InvalidDescr) or not isinstance(descr, spec.ModelDescr):
        detail = "format 0.4: convert it with `bioimageio update-format`" if not isinstance(descr, InvalidDescr) \
            else "not a valid bioimage.io model package"
        raise InputError(f"{where}: {detail}.")
    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        raise InputError(f"{where}: {len(descr.inputs)} inputs and {len(descr.outputs)} outputs; microsr runs packages "
                         "with one of each.")
    (tin,), (tout,) = descr.inputs, descr.outputs
    space_in, space_out = _space(tin.axes, where, "input"), _space(tout.axes, where, "output")
    size = space_in["y"].size
    if not isinstance(size, spec.ParameterizedSize):
        size = spec.ParameterizedSize(min=int(size), step=1) if isinstance(size, int) else None
    if size is None or not isinstance(space_out["y"].size, spec.SizeReference):
        raise InputError(f"{where}: its output size is not given relative to its input (it is {space_out['y'].size}); "
                         "microsr tiles only such packages.")
    scale = space_in["y"].scale / space_out["y"].scale
    if abs(scale - round(scale)) > 1e-6 or round(scale) < 1 or space_out["y"].size.offset:
        raise InputError(f"{where}: output pixels {scale:g} times smaller than the input's, with offset "
                         f"{space_out['y'].size.offset}; microsr runs whole-number upscaling without offset.")
    scale = round(scale)
    microsr = (descr.config.model_dump().get("microsr") or {}) if descr.config else {}
    frames = int(microsr.get("frames") or 1) if not microsr.get("channels") else 0
    if space_in["channels"] != max(frames, 1) or space_out["channels"] != 1:
        raise InputError(f"{where}: {space_in['channels']} input and {space_out['channels']} output channels; microsr "
                         "runs single-channel packages and the frame-window packages microsr exports.")
    halo = getattr(space_out["y"], "halo", 0)
    pre = _steps(tin.preprocessing, where, str(tin.id), output=False)
    if microsr.get("denormalize") and [s for s, _ in pre] == ["scale_range"]:
        post: tuple[tuple[str, dict], ...] = (("denormalize_percentile", pre[0][1]),)
    else:
        post = _steps(tout.postprocessing, where, str(tin.id), output=True)
    run, chosen = _network(descr, weight_format, where)
    module = PackageNetwork(run, scale=scale, minimum=size.min, step=size.step).eval()
    unit = getattr(space_in["y"], "unit", None)
    info = {
        "scale": scale, "frames": max(frames, 1), "frame_axis": microsr.get("frame_axis") or "T",
        "receptive_field": math.ceil(halo / scale),
        "input_pixel_size": float(space_in["y"].scale) * _NANOMETRES[unit] if unit in _NANOMETRES else None,
        "normalization": PercentileNormalizer().to_dict(), "package": descr.name,
    }
    return PackageRestorer(module=module, info=info, path=Path(path), processing=PackageProcessing(pre, post),
                           weight_format=chosen)
