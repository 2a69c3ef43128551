"""Export a microsr model as a bioimage.io model package (model format 0.5), which Fiji (deepImageJ),
ilastik, QuPath, napari, BiaPy and ``bioimageio.core`` run.

The package carries three weight formats made from the same weights: ``pytorch_state_dict``
(with the architecture as one standalone source file, :mod:`microsr.share.architecture`),
``torchscript`` and ``onnx`` (dynamic batch, Y and X). The input size is parameterised
(``min + n * step``, ``step`` the network's pooling grid), the output is the input times
the scale with a halo of the measured receptive field, so consumers tile it correctly.

Normalisation. microsr maps the input's ``low``/``high`` percentiles to 0 and 1 and maps the
output back with the same two numbers. The first step is the format's ``scale_range``
exactly. The format has no inverse of ``scale_range`` (and bioimageio.core 0.11 cannot run
``scale_mean_variance``, its nearest step, on an output), so an intensity model's package
output stays normalised; the card says so with the two numbers that map it back on the
test image. The package's ``config.microsr`` keeps microsr's own normalisation, which
:mod:`microsr.share.package` applies, so microsr reads its packages back exactly. SMLM
models output emitter maps, which microsr does not map back either: their package is exact.
A model with fixed ``lo``/``hi`` is exact too (``scale_linear`` both ways).
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from bioimageio.spec import save_bioimageio_package
from bioimageio.spec.model import v0_5 as spec
from PIL import Image as PILImage
from torch import nn

from microsr.errors import InputError
from microsr.io import atomic_output, check_output, read_image
from microsr.models.layers import UNetBody
from microsr.predict.restorer import Restorer, load_model
from microsr.samples import sample_path
from microsr.share.architecture import architecture_callable, standalone_source
from microsr.share.card import Card, citations, model_card

__all__ = ["TOLERANCE", "WEIGHT_FORMATS", "export"]

WEIGHT_FORMATS = ("pytorch_state_dict", "torchscript", "onnx")
TOLERANCE = 1e-4
"""Relative tolerance of the package's reproducibility test (bioimageio.core's default is 1e-3)."""
_OPSET = 20
_EPS = 1e-6  # the format's default epsilon of scale_range and scale_mean_variance
_SMLM_MODULE = "microsr.models.smlm"


@dataclass(frozen=True)
class _Geometry:
    """Input size rule and halo, in input pixels."""

    min_size: int
    step: int
    halo: int


class _Forward(nn.Module):
    """``model(input)``: one named tensor argument, as the traced and exported graphs take it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002  (the package's tensor name)
        return self.model(input)


def export(
    model: str | os.PathLike[str] | Restorer,
    output: str | os.PathLike[str],
    *,
    name: str | None = None,
    authors: list[str] | None = None,
    license: str = "CC-BY-4.0",  # noqa: A002  (the format's field name)
    weight_formats: tuple[str, ...] = WEIGHT_FORMATS,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as a bioimage.io model package (a ``.zip``).

    Parameters
    ----------
    model
        A model folder, checkpoint file or shipped model name (``smlm``, ``sim_lowlight``, ...),
        or a loaded :class:`~microsr.predict.restorer.Restorer`.
    output
        The package, ``NAME.zip``; never replaces an existing file unless ``overwrite``.
    name
        The model's name in the package (default: the output's stem).
    authors
        Who trained it (default: the current user).
    license
        SPDX identifier of the weights' license.
    weight_formats
        A subset of :data:`WEIGHT_FORMATS`; ``pytorch_state_dict`` is always written.
    overwrite
        Replace ``output`` if it exists.

    Returns
    -------
    Path
        The package written.

    Raises
    ------
    InputError
        For a bad output path, or a model the format cannot express (a custom architecture,
        a model whose output depends on the whole image, a normalisation other than percentiles).

    Examples
    --------
    >>> export("sim_lowlight", "sim_lowlight.zip")  # doctest: +SKIP
    PosixPath('sim_lowlight.zip')
    """
    output = Path(output)
    if output.suffix.lower() != ".zip":
        raise InputError(f"{output}: a bioimage.io package is a .zip file; name it e.g. {output.stem}.zip.")
    unknown = set(weight_formats) - set(WEIGHT_FORMATS)
    if unknown:
        raise InputError(f"weight formats {sorted(unknown)}: choose from {', '.join(WEIGHT_FORMATS)}.")
    sources = [] if isinstance(model, Restorer) else [Path(model)]
    check_output(output, overwrite=overwrite, inputs=sources)
    restorer = model if isinstance(model, Restorer) else load_model(model)
    _check_expressible(restorer)
    module = restorer.module.to("cpu").eval()
    geometry = _geometry(restorer)
    test_input = _test_input(restorer, geometry)
    with tempfile.TemporaryDirectory(prefix="microsr-export-") as tmp:
        folder = Path(tmp)
        description = _describe(restorer, module, geometry, test_input, folder, name or output.stem,
                                authors, license, ("pytorch_state_dict", *weight_formats))
        with atomic_output(output, overwrite=overwrite) as partial:
            save_bioimageio_package(description, output_path=partial)
    return output


# --------------------------------------------------------------------------- what can be expressed


def _is_smlm(restorer: Restorer) -> bool:
    """SMLM models output emitter maps (not intensities), which microsr never denormalises."""
    return architecture_callable(restorer.info["arch"])[2].__name__ == _SMLM_MODULE


def _check_expressible(restorer: Restorer) -> None:
    info, where = restorer.info, restorer.path
    if not info.get("arch"):
        raise InputError(f"{where}: a custom architecture (not in microsr's registry) cannot be exported: the "
                         "package must carry its source, which microsr only has for its built-in models.")
    architecture_callable(info["arch"])
    normalization = info.get("normalization") or {}
    if normalization.get("type", "percentile") != "percentile":
        raise InputError(f"{where}: normalisation {normalization.get('type')!r} has no bioimage.io equivalent; "
                         "only percentile normalisation can be exported.")
    if info.get("receptive_field") is None:
        raise InputError(f"{where}: the checkpoint does not record the receptive field, so the package's halo "
                         "cannot be declared; retrain or re-save it with this microsr.")


def _divisibility(module: nn.Module) -> int:
    """The input side multiple at which the network pads nothing: 2**poolings of its U-Net (1 without one).

    The traced graphs keep the branch the example input took, so every declared size must take the
    same one: no padding.
    """
    return max([2 ** len(body.ups) for body in module.modules() if isinstance(body, UNetBody)] or [8])


def _geometry(restorer: Restorer) -> _Geometry:
    step = _divisibility(restorer.module)
    halo = int(restorer.info["receptive_field"])
    # The smallest input whose output keeps something after the halo is cropped from both sides.
    min_size = step * (2 * halo // step + 1)
    return _Geometry(min_size, step, halo)


# --------------------------------------------------------------------------- test data


def _channel_count(restorer: Restorer) -> int:
    channels = ((restorer.info.get("run") or {}).get("data") or {}).get("channels")
    return len(channels) if channels else restorer.frames


def _test_input(restorer: Restorer, geometry: _Geometry) -> np.ndarray:
    """``(1, channels, n, n)`` float32 crops of the shipped sample: ``channels`` crops a pixel apart (a drifting
    time series), ``n`` a declared size a few steps above the minimum."""
    sample = np.asarray(read_image(sample_path()).data, dtype=np.float32)
    size = geometry.min_size + 2 * geometry.step
    channels = _channel_count(restorer)
    top = (sample.shape[0] - size - channels) // 2
    crops = [sample[top + c : top + c + size, top + c : top + c + size] for c in range(channels)]
    return np.stack(crops)[None]


def _percentiles(x: np.ndarray, low: float, high: float) -> tuple[float, float]:
    lo, hi = np.percentile(x.astype(np.float64), [low, high])
    return float(lo), float(hi)


def _package_output(restorer: Restorer, module: nn.Module, x: np.ndarray) -> tuple[np.ndarray, str]:
    """What the package's processing makes of ``x`` (its expected test output), and the card's
    paragraph on how that relates to microsr's own normalisation (measured on ``x``)."""
    norm = restorer.info["normalization"]
    low, high = float(norm["low"]), float(norm["high"])
    fixed = norm.get("lo") is not None
    lo, hi = (float(norm["lo"]), float(norm["hi"])) if fixed else _percentiles(x, low, high)
    with torch.inference_mode():
        y = module(torch.from_numpy((x - lo) / (hi - lo + (0 if fixed else _EPS)))).double().numpy()
    if fixed:
        return (y * (hi - lo) + lo).astype(np.float32), (
            f"Exact: microsr's fixed normalisation (input {lo:g} -> 0, {hi:g} -> 1, the same mapping back) is "
            "the package's `scale_linear` pre- and post-processing.")
    pre = (f"The input is scaled by its own {low:g} and {high:g} percentiles (over all its channels, Y and X) "
           "to 0 and 1 (`scale_range`), as in microsr")
    if _is_smlm(restorer):
        return y.astype(np.float32), (
            pre + "; the output is the network's: emitters per output pixel, which microsr does not map back "
            "either. microsr normalises a stack by the percentiles of the whole stack, the package each frame "
            "(image) by its own.")
    return y.astype(np.float32), (
        pre + ". The output stays in those normalised units: microsr maps it back to the input's units with "
        "the same two percentiles (`output * (hi - lo) + lo`), which the format cannot express (it has no "
        "inverse of `scale_range`; and bioimageio.core 0.11 cannot run `scale_mean_variance`, the "
        "format's nearest step, on an output: it computes the output's statistics before the model runs). "
        f"On the test image hi - lo = {hi - lo:.6g} and lo = {lo:.6g}, so the package's output there is "
        f"microsr's divided by {hi - lo:.6g} after subtracting {lo:.6g}; displayed with automatic contrast the "
        "two look the same. `microsr predict NAME.zip` applies microsr's mapping back, recorded in the "
        "package's `config.microsr`."
        + (" microsr normalises a time-lapse by the percentiles of the whole stack, the package each window "
           "of frames by its own." if restorer.frames > 1 else ""))


# --------------------------------------------------------------------------- the description


def _processing(restorer: Restorer) -> tuple[list, list]:
    norm = restorer.info["normalization"]
    if norm.get("lo") is not None:
        lo, hi = float(norm["lo"]), float(norm["hi"])
        return ([spec.ScaleLinearDescr(kwargs=spec.ScaleLinearKwargs(gain=1 / (hi - lo), offset=-lo / (hi - lo)))],
                [spec.ScaleLinearDescr(kwargs=spec.ScaleLinearKwargs(gain=hi - lo, offset=lo))])
    axes = [spec.AxisId("channel"), spec.AxisId("y"), spec.AxisId("x")]
    pre = [spec.ScaleRangeDescr(kwargs=spec.ScaleRangeKwargs(
        axes=axes, min_percentile=float(norm["low"]), max_percentile=float(norm["high"])))]
    return pre, []


def _space_axes(restorer: Restorer, geometry: _Geometry) -> tuple[list, list]:
    pixel = restorer.input_pixel_size
    unit = {"unit": "nanometer"} if pixel else {}
    inputs, outputs = [], []
    for axis in ("y", "x"):
        size = spec.ParameterizedSize(min=geometry.min_size, step=geometry.step)
        inputs.append(spec.SpaceInputAxis(id=spec.AxisId(axis), size=size, scale=pixel or 1.0, **unit))
        reference = spec.SizeReference(tensor_id=spec.TensorId("input"), axis_id=spec.AxisId(axis))
        outputs.append(spec.SpaceOutputAxisWithHalo(
            id=spec.AxisId(axis), size=reference, halo=geometry.halo * restorer.scale,
            scale=(pixel or 1.0) / restorer.scale, **unit))
    return inputs, outputs


def _weights(restorer: Restorer, module: nn.Module, example: torch.Tensor, folder: Path,
             formats: tuple[str, ...]) -> spec.WeightsDescr:
    version = spec.Version(torch.__version__.split("+")[0])
    callable_name, kwargs, _ = architecture_callable(restorer.info["arch"])
    source = folder / f"{restorer.info['arch']['name']}.py"
    source.write_text(standalone_source(restorer.info["arch"]), encoding="utf-8")
    # The format's state dict is a torch.save file; consumers load it with weights_only=True.
    state = folder / "weights.pt"
    torch.save({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, state)
    entries: dict = {"pytorch_state_dict": spec.PytorchStateDictWeightsDescr(
        source=state, pytorch_version=version,
        architecture=spec.ArchitectureFromFileDescr(source=source, callable=callable_name, kwargs=kwargs))}
    wrapped = _Forward(module).eval()
    if "torchscript" in formats:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape-dependent branches: see _divisibility
            traced = torch.jit.trace(wrapped, example, check_trace=False)
        traced.save(str(folder / "weights_torchscript.pt"))
        entries["torchscript"] = spec.TorchscriptWeightsDescr(
            source=folder / "weights_torchscript.pt", pytorch_version=version, parent="pytorch_state_dict")
    if "onnx" in formats:
        _export_onnx(wrapped, example, folder / "weights.onnx")
        entries["onnx"] = spec.OnnxWeightsDescr(source=folder / "weights.onnx", opset_version=_OPSET,
                                                parent="pytorch_state_dict")
    return spec.WeightsDescr(**entries)


def _export_onnx(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    dim = torch.export.Dim.DYNAMIC
    # The exporter logs a line for each torchvision operator it cannot register; microsr has no torchvision.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # A batch of 2, so that the exporter keeps the batch axis dynamic instead of specialising it to 1.
            program = torch.onnx.export(
                module, (torch.cat([example, example]),), None, dynamo=True, opset_version=_OPSET, verbose=False,
                dynamic_shapes=({0: dim, 2: dim, 3: dim},), input_names=["input"], output_names=["output"],
                external_data=False)
    finally:
        registration.setLevel(level)
    program.save(str(path), external_data=False)


def _cover(x: np.ndarray, y: np.ndarray, path: Path) -> None:
    """Input (nearest-neighbour enlarged to the output's size) beside the output, each scaled to 8 bits."""
    def eight_bit(image: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(image, [0.5, 99.5])
        return (np.clip((image - lo) / max(hi - lo, 1e-12), 0, 1) * 255).astype(np.uint8)

    factor = y.shape[-1] // x.shape[-1]
    channel = x.shape[1] // 2
    left = np.kron(x[0, channel], np.ones((factor, factor), np.float32))
    PILImage.fromarray(np.hstack([eight_bit(left), eight_bit(y[0, 0])])).save(path)


def _history(restorer: Restorer) -> list[dict]:
    file = restorer.path.with_name("history.json")
    try:
        return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else []
    except (OSError, ValueError):
        return []


def _output_units(restorer: Restorer) -> str:
    if _is_smlm(restorer):
        return "emitters per pixel"
    if restorer.info["normalization"].get("lo") is not None:
        return "restored intensities, in the input's units"
    return "restored intensities, normalised as the input (see the model card)"


def _task(restorer: Restorer) -> str:
    info = restorer.info
    if _is_smlm(restorer):
        return (f"Single-molecule localisation: maps each camera frame to a x{info['scale']} finer map of its "
                "emitters (an emitter adds 1); their sum over a stack is the super-resolved image.")
    channels = ((info.get("run") or {}).get("data") or {}).get("channels")
    if channels:
        return (f"Few-frame reconstruction (SIM or SRRF): {len(channels)} raw frames of one acquisition, as "
                f"channels, to one image with x{info['scale']} smaller pixels.")
    frames = "" if restorer.frames == 1 else f" from {restorer.frames} adjacent frames"
    return f"Super-resolution: restores an image{frames} at x{info['scale']} smaller pixels."


def _describe(restorer: Restorer, module: nn.Module, geometry: _Geometry, x: np.ndarray, folder: Path,
              name: str, authors: list[str] | None, license: str, formats: tuple[str, ...]) -> spec.ModelDescr:  # noqa: A002
    y, normalisation = _package_output(restorer, module, x)
    np.save(folder / "test_input.npy", x)
    np.save(folder / "test_output.npy", y)
    _cover(x, y, folder / "cover.png")
    card = Card(name=name, task=_task(restorer), info=restorer.info, history=_history(restorer),
                halo=geometry.halo, min_size=geometry.min_size, step=geometry.step,
                normalisation=normalisation, license=license)
    (folder / "README.md").write_text(model_card(card), encoding="utf-8")
    channels = _channel_count(restorer)
    in_space, out_space = _space_axes(restorer, geometry)
    pre, post = _processing(restorer)
    inputs = [spec.InputTensorDescr(
        id=spec.TensorId("input"), description="raw intensities" + (f", {channels} frames as channels"
                                                                     if channels > 1 else ""),
        axes=[spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier(f"frame{c}")
                                                                for c in range(channels)]), *in_space],
        test_tensor=spec.FileDescr(source=folder / "test_input.npy"),
        data=spec.IntervalOrRatioDataDescr(type="float32"), preprocessing=pre,
        pad=spec.ReflectPadding(mode="reflect"))]  # beyond the image, microsr's tiles reflect it
    outputs = [spec.OutputTensorDescr(
        id=spec.TensorId("output"),
        description=_output_units(restorer),
        axes=[spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier("restored")]), *out_space],
        test_tensor=spec.FileDescr(source=folder / "test_output.npy"),
        data=spec.IntervalOrRatioDataDescr(type="float32"), postprocessing=post)]
    example = torch.from_numpy(x[:, :, : geometry.min_size, : geometry.min_size].copy())
    tolerance = spec.ReproducibilityTolerance(relative_tolerance=TOLERANCE, absolute_tolerance=TOLERANCE
                                              * float(np.abs(y).max()), mismatched_elements_per_million=0)
    microsr = {key: restorer.info.get(key) for key in
               ("arch", "scale", "frames", "frame_axis", "normalization", "receptive_field", "input_pixel_size",
                "output_pixel_size", "degradation", "microsr_version")}
    microsr["denormalize"] = not _is_smlm(restorer)
    microsr["channels"] = ((restorer.info.get("run") or {}).get("data") or {}).get("channels")
    return spec.ModelDescr(
        name=name if len(name) >= 5 else f"microsr {name}",  # the format wants at least 5 characters
        description=_task(restorer)[:1024],
        authors=[spec.Author(name=author) for author in (authors or [_user()])],
        cite=[spec.CiteEntry(text=text, doi=spec.Doi(doi)) for text, doi in citations(restorer.info["arch"]["name"])],
        license=license,
        documentation=spec.FileDescr(source=folder / "README.md"),
        covers=[spec.FileDescr(source=folder / "cover.png")],
        tags=["super-resolution", "microscopy", "microsr", "2d", "pytorch"],
        inputs=inputs,
        outputs=outputs,
        weights=_weights(restorer, module, example, folder, formats),
        config=spec.Config(bioimageio=spec.BioimageioConfig(reproducibility_tolerance=[tolerance]),
                           microsr=json.loads(json.dumps(microsr))),
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in the environment or the password database
        return "unknown"
