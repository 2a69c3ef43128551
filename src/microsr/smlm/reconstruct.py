"""SMLM reconstruction: a stack of blinking frames -> per-frame network outputs -> image + localizations.

A reconstruction model (see :mod:`microsr.models.smlm`) maps each camera frame to a
map of emitters on a ``scale`` x finer grid (an emitter adds 1). The frames go through
the prediction engine (:meth:`microsr.predict.engine.Predictor.planes`) like any
model's input; what is SMLM's own is here: their sum over the stack is the
super-resolved image, and local maxima of each frame's map, refined by a weighted
centroid (:func:`microsr.smlm.localize.localize`), are the localizations.

Normalisation (the same at training and reconstruction)
-------------------------------------------------------
A frame is mapped so that the ``low`` and ``high`` percentiles (0.1 and 99.9 by
default) **of its whole stack** become 0 and 1: :meth:`PercentileNormalizer.fit`
on the stack at reconstruction, on a simulated stack of the training settings
(:func:`simulation_normalizer`) at training. Per-stack rather than per-frame, so a
frame with few or no emitters is not stretched until its noise looks like emitters,
and no camera parameters (offset, gain) need to be known.

Examples
--------
>>> import numpy as np
>>> from microsr.models import create_model
>>> frames = np.random.default_rng(0).poisson(100, (4, 16, 16)).astype(np.uint16)
>>> result = reconstruct(frames, create_model("smlm_unet", scale=8), pixel_size=100.0, threshold=0.5)
>>> result.image.shape, result.pixel_size, result.frames
((128, 128), 12.5, 4)
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import torch
from torch import nn

from microsr.data.normalize import PercentileNormalizer
from microsr.errors import InputError
from microsr.io import Image, atomic_output, check_output, find_images, read_image, write_image
from microsr.io import PathLike
from microsr.predict.engine import DEFAULT_TILE
from microsr.predict.restorer import Restorer, load_model
from microsr.pretrained import pretrained_path
from microsr.simulate.calibrate import calibrate
from microsr.simulate.smlm import SMLMSimulation, SMLMVariety, preset
from microsr.smlm.localize import DEFAULT_THRESHOLD, PEAK_RADIUS, localize
from microsr.smlm.table import write_localizations

__all__ = [
    "IMAGE_NAME",
    "LOCALIZATIONS_NAME",
    "Reconstruction",
    "read_stack",
    "reconstruct",
    "reconstruct_file",
    "training_mismatch",
]


IMAGE_NAME = "reconstruction.tif"
LOCALIZATIONS_NAME = "localizations.csv"

_CHECK_FRAMES = 100  # frames the quick calibration before a reconstruction reads
_FIXED_MARGIN = 1.5  # a model trained on one setting is trusted within this factor of it (PSF: its square root)
_PIXEL_SIZE_TOLERANCE = 0.10


# --------------------------------------------------------------------------- reconstruction


@dataclass(frozen=True)
class Reconstruction:
    """The result of :func:`reconstruct`.

    Attributes
    ----------
    image : numpy.ndarray
        ``(H·scale, W·scale)`` float32 sum of the per-frame outputs (clipped at 0):
        emitters per fine pixel.
    localizations : numpy.ndarray
        Localization table (frames 1-based); ``intensity`` is the output summed over
        the peak's window (about 1 per emitter), ``sigma`` its RMS width in nm.
    pixel_size : float
        Pixel size of ``image`` in nm (the camera's / scale).
    frames : int
        Frames reconstructed.
    threshold : float
        Peak threshold used.
    seconds : float
        Wall-clock time of the reconstruction.
    """

    image: np.ndarray
    localizations: np.ndarray
    pixel_size: float
    frames: int
    threshold: float
    seconds: float = field(compare=False)


def read_stack(source: PathLike, *, pixel_size: float | None = None) -> Image:
    """Read an SMLM stack: a 3-D image file (frames, Y, X), or a folder of single-frame images sorted by name.

    Raises
    ------
    InputError
        If the source is missing, not a stack of 2-D frames, or its frames differ in size.

    Examples
    --------
    >>> read_stack("frames_folder/").shape  # doctest: +SKIP
    (361, 64, 64)
    """
    source = Path(source)
    paths = find_images(source)
    if paths == [source]:
        return _as_stack(read_image(source, pixel_size=pixel_size), str(source))
    frames = [read_image(path, pixel_size=pixel_size) for path in paths]
    for frame in frames:
        if frame.axes != "YX" or frame.shape != frames[0].shape:
            raise InputError(
                f"{frame.path}: a folder of frames needs single 2-D images of one size; this one is "
                f"{frame.axes} {frame.shape}, the first {frames[0].axes} {frames[0].shape}."
            )
    sizes = {frame.pixel_size for frame in frames}
    return Image(da.stack([f.data for f in frames]), "TYX", sizes.pop() if len(sizes) == 1 else None, path=source)


def _as_stack(image: Image | np.ndarray, name: str) -> Image:
    if np.ndim(image) != 3:
        axes = f"{image.axes} " if isinstance(image, Image) else ""
        raise InputError(
            f"{name}: an SMLM stack must be 3-D (frames, Y, X), not {axes}{np.shape(image)}; "
            "save the frames as one stack or give a folder of single-frame TIFFs."
        )
    return image if isinstance(image, Image) else Image(np.asarray(image), "TYX", None)


def reconstruct(
    stack: Image | np.ndarray,
    model: Restorer | nn.Module | PathLike | None = None,
    *,
    pixel_size: float | None = None,
    threshold: float | None = None,
    force: bool = False,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    precision: str = "auto",
    check: bool = True,
) -> Reconstruction:
    """Reconstruct an SMLM stack: the super-resolved image and the localizations.

    Parameters
    ----------
    stack
        ``(frames, Y, X)`` camera frames (an :class:`~microsr.io.Image` or array).
    model
        A reconstruction model: a model folder or checkpoint written by
        ``microsr smlm train``, a loaded :class:`~microsr.predict.restorer.Restorer`, a bare
        module (its ``scale`` attribute is used; no pixel-size check), or ``None``
        for the shipped pretrained model.
    pixel_size
        Camera pixel size in nm; default: the stack's metadata, else the model's.
    threshold
        Minimum peak of a localization, emitters per fine pixel; default: the
        model's threshold calibrated on its validation frames (else
        :data:`DEFAULT_THRESHOLD`).
    force
        Reconstruct even if the pixel size differs from the model's by more than 10 %.
    batch_size
        Frames per forward pass (frames larger than the engine's tile: tiles).
    device, precision
        Where and in which precision the model runs (see :mod:`microsr.runtime.precision`).
    check
        First calibrate the stack quickly (:func:`training_mismatch`) and warn, with
        the numbers, if it is unlike the frames the model was trained on.

    Returns
    -------
    Reconstruction

    Raises
    ------
    InputError
        If the stack is not 3-D, or its pixel size differs from the model's (without ``force``).
    """
    started = time.monotonic()
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise InputError(f"batch_size={batch_size!r}: give a whole number of frames per forward pass ≥ 1.")
    restorer = _load(model)
    image = _as_stack(stack, "stack")
    described = restorer.description
    camera = next((p for p in (pixel_size, image.pixel_size, described.input_pixel_size) if p is not None), None)
    if camera is None or not (math.isfinite(camera) and camera > 0):
        raise InputError(f"pixel_size={camera!r}: give the camera pixel size in nm (a positive number).")
    _check_pixel_size(camera, described.input_pixel_size, force)
    if check:
        for message in training_mismatch(image, restorer.info, camera):
            warnings.warn(message, stacklevel=2)
    if threshold is None:
        threshold = described.smlm.get("threshold", DEFAULT_THRESHOLD)
    fine = camera / described.scale
    frames, height, width = image.shape
    # A frame that fits in a tile goes through whole, with no context, as the model saw its training frames.
    whole = max(height, width) <= DEFAULT_TILE
    predictor = restorer.predictor(device=device, precision=precision, batch_size=batch_size,
                                   tile=max(height, width) if whole else DEFAULT_TILE, overlap=0 if whole else None)
    total = np.zeros((height * described.scale, width * described.scale), np.float64)
    tables, outputs = [], []
    for (frame,), output in predictor.planes(image, normalized=True):
        outputs.append(np.maximum(output, 0, out=output))
        total += output
        if len(outputs) == batch_size or frame == frames - 1:  # localize a batch of frames at a time
            table = localize(np.stack(outputs), fine, threshold, radius=PEAK_RADIUS)
            table["frame"] += frame + 1 - len(outputs)
            tables.append(table)
            outputs = []
    return Reconstruction(total.astype(np.float32), np.concatenate(tables), fine, frames, float(threshold),
                          time.monotonic() - started)


def training_mismatch(stack: Image | np.ndarray, info: dict[str, Any], pixel_size: float) -> list[str]:
    """Why ``stack`` looks unlike the frames a model was trained on (empty if it does not, or if unknown).

    A quick calibration (:func:`microsr.simulate.calibrate.calibrate` on up to 100
    frames) measures the stack's density, photons per emitter, background and PSF
    width (photons and background only when the camera gain was measurable); each is
    compared with the model's training settings (``info["run"]``): a
    range of acquisitions as it is, a single setting within a factor 1.5 (PSF width
    1.22). A setting counts as outside only if its estimate ± 2 standard errors is;
    when the camera type could not be measured, the density only if it is under
    both camera types.

    Examples
    --------
    >>> from microsr.simulate.smlm import simulate_stack
    >>> stack, _ = simulate_stack(SMLMSimulation(size=32, density=20.0, background=(10, 60)), 60, seed=0)
    >>> info = {"run": {"data": {"simulation": {"preset": "broad"}}}}
    >>> print(training_mismatch(stack, info, 100.0)[0])  # doctest: +ELLIPSIS
    the stack looks unlike the frames the model was trained on: density ... per µm² (trained on 0.5-8)...
    """
    simulation = ((info.get("run") or {}).get("data") or {}).get("simulation")
    if simulation is None:
        return []
    settings = {k: v for k, v in simulation.items() if k not in ("preset", "val_frames", "threshold_criterion",
                                                                  "threshold_radius")}
    trained = preset(simulation.get("preset", "broad")).replace(**settings)
    data = stack.data if isinstance(stack, Image) else np.asarray(stack)
    try:
        measured = calibrate(data, pixel_size, max_frames=_CHECK_FRAMES)
    except InputError as exc:
        return [f"could not check the stack against the model's training frames: {exc}"]
    ranges = _training_ranges(trained)
    readings = [measured]
    if not measured.camera_measured:
        # Photons and background scale with the camera gain, which a uniform background leaves unmeasured.
        ranges = {key: ranges[key] for key in ("density", "fwhm")}
        # The density rests on the shot noise the assumed camera type implies: it counts as outside only if it
        # is under the other type too (on ArtificialDataset_demo1, 20 uniform frames, the EMCCD assumption
        # measured 13.5 per µm² against 6.1 true, and the sCMOS one found no signal above the noise).
        other = "scmos" if measured.camera == "emccd" else "emccd"
        try:
            readings.append(calibrate(data, pixel_size, camera=other, max_frames=_CHECK_FRAMES))
        except InputError:
            ranges.pop("density")
    names = {"density": "density", "photons": "photons per emitter", "background": "background photons per pixel",
             "fwhm": "PSF FWHM (nm)"}
    outside = []
    for key, (low, high) in ranges.items():
        estimates = [getattr(reading, key) for reading in readings]
        if not all(math.isfinite(e.value) and (e.value + 2 * e.error < low or e.value - 2 * e.error > high)
                   for e in estimates):
            continue
        estimate = estimates[0]
        unit = " per µm²" if key == "density" else ""
        outside.append(f"{names[key]} {estimate.value:.3g} ± {estimate.error:.2g}{unit} (trained on "
                       f"{low:.3g}-{high:.3g})")
    if not outside:
        return []
    return [
        f"the stack looks unlike the frames the model was trained on: {'; '.join(outside)}. Expect false or missed "
        "localizations; train a model for this microscope: microsr smlm calibrate STACK -o simulation.yaml && "
        "microsr smlm train --simulation simulation.yaml -o MODEL"
    ]


def _training_ranges(trained: SMLMSimulation | SMLMVariety) -> dict[str, tuple[float, float]]:
    """(low, high) of density, photons, background and PSF FWHM the model saw, with a margin for one setting."""
    if isinstance(trained, SMLMVariety):
        spread = trained.photon_spread[1]
        return {"density": trained.density, "background": trained.background, "fwhm": trained.fwhm,
                "photons": (trained.photons[0] * (1 - spread), trained.photons[1] * (1 + spread))}
    m, f = _FIXED_MARGIN, math.sqrt(_FIXED_MARGIN)
    return {"density": (trained.density / m, trained.density * m),
            "photons": (trained.photons[0] / m, trained.photons[1] * m),
            "background": (trained.background[0] / m, trained.background[1] * m),
            "fwhm": (trained.fwhm[0] / f, trained.fwhm[1] * f)}


def reconstruct_file(
    source: PathLike,
    output: PathLike,
    model: Restorer | PathLike | None = None,
    *,
    overwrite: bool = False,
    pixel_size: float | None = None,
    **options: Any,
) -> Reconstruction:
    """Reconstruct the stack ``source`` into the folder ``output``: ``reconstruction.tif`` + ``localizations.csv``.

    ``source`` is a 3-D image file or a folder of single-frame images (sorted by
    name). The image is float32 with its pixel size (the camera's / scale) in the
    metadata; the localizations are a ThunderSTORM CSV. The folder appears only
    when both are written (atomically); ``options`` go to :func:`reconstruct`.

    Examples
    --------
    >>> reconstruct_file("stack.tif", "stack_smlm").localizations.size  # doctest: +SKIP
    71233
    """
    output = Path(output)
    check_output(output, overwrite, inputs=[source])
    result = reconstruct(read_stack(source, pixel_size=pixel_size), model, **options)
    with atomic_output(output, overwrite=overwrite, inputs=[source]) as folder:
        folder.mkdir()
        write_image(folder / IMAGE_NAME, result.image, pixel_size=result.pixel_size)
        write_localizations(result.localizations, folder / LOCALIZATIONS_NAME)
    return result


def _load(model: Restorer | nn.Module | PathLike | None) -> Restorer:
    if isinstance(model, Restorer):
        return model
    if isinstance(model, nn.Module):
        return Restorer(model, {"scale": model.scale, "normalization": PercentileNormalizer().to_dict()}, Path())
    return load_model(pretrained_path("smlm") if model is None else model)


def _check_pixel_size(stack_nm: float | None, model_nm: float | None, force: bool) -> None:
    if stack_nm is None or model_nm is None or abs(stack_nm - model_nm) <= _PIXEL_SIZE_TOLERANCE * model_nm:
        return
    message = (
        f"the stack's pixel size {stack_nm:g} nm differs from the {model_nm:g} nm the model was trained for by "
        f"{abs(stack_nm - model_nm) / model_nm * 100:.0f} %"
    )
    if not force:
        raise InputError(
            f"{message}; train a model for {stack_nm:g} nm pixels (microsr smlm train --pixel-size {stack_nm:g}), "
            "or pass --force (force=True) to reconstruct anyway."
        )
    warnings.warn(f"{message}; reconstructing anyway (--force).", stacklevel=3)
