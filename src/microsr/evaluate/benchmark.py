"""Paired benchmark: score a model on low/high-resolution pairs against bilinear and bicubic upscaling.

:func:`benchmark` is ``microsr benchmark``: it matches LR and HR images by name
(:func:`~microsr.io.pair_by_name`), upscales every LR image to its HR grid with each method
(the model, any models to compare, :func:`~microsr.evaluate.baseline.upscale` bicubic and
bilinear), registers the pair (:func:`register`), scores every method against the HR with
:func:`~microsr.evaluate.score.score` and writes ``metrics.csv``, ``summary.json`` and a
self-contained ``report.html``.

Conventions
-----------
These steps are the whole computation, so a score can be reproduced with
scikit-image and PyTorch (or OpenCV) alone:

1. **Grid.** The model predicts on the LR image; bicubic and bilinear upscaling
   are :func:`~microsr.evaluate.baseline.upscale`, equal to
   ``torch.nn.functional.interpolate(lr, scale_factor=s, mode="bicubic" or
   "bilinear", align_corners=False)`` (Keys' cubic convolution with a = -0.75,
   as OpenCV's ``INTER_CUBIC``; pixel centres aligned, edge pixels repeated
   beyond the edge; see :mod:`microsr.evaluate.baseline` for why this bicubic).
   An HR side may differ from ``s`` times the LR side by less than ``s`` pixels
   (floor or ceil downsampling): all images are then cut to the common top-left
   region.
2. **Registration.** Both images are mean-subtracted and multiplied by a
   separable Tukey window (``scipy.signal.windows.tukey(n, 0.25)`` per axis);
   ``phase_cross_correlation(hr_tapered, bicubic_tapered, upsample_factor=20,
   normalization=None)`` gives the shift ``(dy, dx)`` that moves the bicubic
   image onto the HR. Every method's output is moved by it with
   ``scipy.ndimage.shift(output, (dy, dx), order=3, mode="nearest")``, then a
   border of ``ceil(max(|dy|, |dx|)) + 2 * s`` pixels is cut from every side of
   the outputs and of the HR. The ``2 * s`` pixels are the reach of the cubic
   kernel on the LR grid (2 LR pixels), so the repeated edge pixels change no
   baseline pixel that is scored. The registration correlation is the Pearson correlation of the
   shifted bicubic image and the HR in that region. A pair is refused when it
   is below :data:`MIN_CORRELATION` or the shift exceeds :data:`MAX_SHIFT` of
   the image side.

   Plain rather than phase-normalised cross-correlation: whitening the spectrum
   gives the frequencies above the LR's Nyquist limit (noise only, in an
   upscaled image) as much weight as the signal, and the untapered image
   borders, identical in both images, then pull the shift towards 0 (errors of
   up to 2.8 px for 3 px shifts of x2 and x4 filament and EM images, against
   0.05 px without noise and 0.1-0.3 px with 20 photons per LR pixel here).
3. **Scores.** :func:`~microsr.evaluate.score.score` with its default convention,
   the one of every microsr score: the HR region is mapped by its own 0.1 and 99.9
   percentiles to 0 and 1, each method's region onto it by the least-squares gain
   and offset (so no method is penalised for a global intensity difference), then
   PSNR and SSIM with ``data_range=1`` and NRMSE (euclidean normalisation), from
   :mod:`microsr.evaluate.metrics` (scikit-image's functions with their defaults).
4. **Resolution.** The decorrelation resolution
   (:func:`~microsr.evaluate.metrics.decorrelation`) of the fitted output: in nm when
   every HR image records its pixel size, else in pixels.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import scipy
import skimage
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from scipy import ndimage
from scipy.signal.windows import tukey
from skimage.registration import phase_cross_correlation

from microsr import __version__

from microsr.degrade import Degradation
from microsr.degrade import degrade_image
from microsr.errors import InputError
from microsr.evaluate import metrics
from microsr.evaluate.baseline import BASELINES, upscale
from microsr.evaluate.report import Figure, Tile, write_report
from microsr.evaluate.score import score
from microsr.io import Image, Pair, atomic_output, check_output, in_memory, pair_by_name, read_image
from microsr.predict.restorer import Restorer, load_model

__all__ = [
    "MAX_SHIFT",
    "MIN_CORRELATION",
    "BenchmarkResult",
    "BenchmarkRow",
    "Registration",
    "benchmark",
    "register",
]

MIN_CORRELATION = 0.3
"""Lowest registration correlation accepted as "same field of view".

Real pairs stay above it even under heavy noise: 0.70 for the PSSR crappifier's LR
of the PSSR EM test image (Gaussian noise of std up to 0.5 of the intensity range
and 1 % salt and pepper); 0.64-0.78 for x2 and x4 synthetic filaments with 3
photons at the bright level, 0.49-0.61 with 1 photon; only x8 at 1 photon
(0.30-0.38) comes close. Unrelated images correlate near 0 without a shift
(-0.09 to 0.07 for 24 pairs of different filament scenes at x2 and x4 and 4 pairs
of different regions of the EM image); when they peak at a larger shift,
:data:`MAX_SHIFT` refuses them.
"""

MAX_SHIFT = 0.1
"""Largest registration shift accepted, as a fraction of the image side along each axis.

Cross-correlation of unrelated images peaks at an arbitrary shift, and a large
shift leaves a small region in which chance overlaps of sparse structures can
correlate at up to 0.59 (synthetic filaments at a shift of (60, 103) px in
256 x 256 images). All 28 unrelated pairs above peaked beyond 10 % of the side.
"""

UPSAMPLE_FACTOR = 20
"""Registration precision: shifts are found to 1/20 HR pixel."""

TAPER_ALPHA = 0.25
"""Tukey window parameter of the registration taper: the outer 12.5 % of each side is tapered."""

MAIN_METHOD = "microsr"
CSV_COLUMNS = ("image", "method", "psnr", "ssim", "nrmse", "resolution", "shift_y", "shift_x",
               "registration_correlation")
_SCORING_COPIES = 12  # HR-sized float64 arrays alive while one image is scored: outputs of 3+ methods, fitted copies
_MIN_SIDE = 16  # pixels per side that SSIM (7) and decorrelation analysis (16) need
_FIGURE_SIDE = 192  # HR pixels shown per crop in the report
_ERROR_PERCENTILE = 99.5  # top of the error maps' shared colour scale

CONVENTIONS = (
    "Each method upscales the LR image to the HR grid (HR = LR x scale; an HR up to scale-1 px larger or smaller "
    "is cut to the common top-left region). bicubic/bilinear: microsr.evaluate.baseline.upscale, "
    "equal to torch.nn.functional.interpolate(mode='bicubic'/'bilinear', align_corners=False) (Keys a=-0.75, "
    "edge pixels repeated). Registration: both images "
    f"mean-subtracted and tapered by scipy.signal.windows.tukey(n, {TAPER_ALPHA}) per axis, then "
    f"skimage.registration.phase_cross_correlation(hr, bicubic, upsample_factor={UPSAMPLE_FACTOR}, "
    "normalization=None); every output is moved by that shift with scipy.ndimage.shift(order=3, "
    "mode='nearest') and a border of ceil(max|shift|) + 2 x scale px is cut from all images; "
    "registration_correlation is the Pearson correlation of the "
    f"shifted bicubic image and the HR there (pairs below {MIN_CORRELATION}, or shifted by more than "
    f"{MAX_SHIFT:.0%} of a side, are refused). Scores: "
    "microsr.evaluate.score.score: the HR is normalised by its 0.1/99.9 percentiles; each output is mapped onto "
    "it by the least-squares affine fit; PSNR and SSIM (skimage defaults, data_range=1) and NRMSE (euclidean) "
    "compare them. resolution: decorrelation analysis "
    "of the fitted output, in nm if every HR image records its pixel size, else px."
)


@dataclass(frozen=True)
class Registration:
    """How to bring an upscaled image onto its HR image, and how well it fits.

    Attributes
    ----------
    shift : tuple of float
        ``(dy, dx)`` in HR pixels to move the upscaled image by.
    correlation : float
        Pearson correlation of the moved image and the reference inside the border.
    border : int
        Pixels cut from each side before scoring: ``ceil(max |shift|) + 2 * scale``.
    """

    shift: tuple[float, float]
    correlation: float
    border: int

    def crop(self, image: np.ndarray) -> np.ndarray:
        """``image`` without :attr:`border` pixels on each side of its last two axes."""
        b = self.border
        return image[..., b : image.shape[-2] - b, b : image.shape[-1] - b]

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Move ``image`` by :attr:`shift` (cubic spline) and :meth:`crop` it; float64."""
        moved = ndimage.shift(np.asarray(image, dtype=np.float64), self.shift, order=3, mode="nearest")
        return self.crop(moved)


class BenchmarkRow(NamedTuple):
    """One row of ``metrics.csv``: a method's scores on one image."""

    image: str
    method: str
    psnr: float
    ssim: float
    nrmse: float
    resolution: float | None
    shift_y: float
    shift_x: float
    registration_correlation: float


@dataclass(frozen=True)
class BenchmarkResult:
    """What :func:`benchmark` wrote.

    Attributes
    ----------
    output : Path
        The report folder (``metrics.csv``, ``summary.json``, ``report.html``).
    scores : tuple of BenchmarkRow
        Every row of ``metrics.csv``, by image, then method.
    summary : dict
        The content of ``summary.json``.
    """

    output: Path
    scores: tuple[BenchmarkRow, ...]
    summary: dict[str, Any]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    norm = math.sqrt(float(np.sum(a * a)) * float(np.sum(b * b)))
    return float(np.sum(a * b) / norm) if norm > 0 else 0.0


def _too_far(shift: Sequence[float], shape: Sequence[int]) -> bool:
    """Whether a registration shift exceeds :data:`MAX_SHIFT` of the image side along either axis."""
    return any(abs(d) > MAX_SHIFT * n for d, n in zip(shift, shape))


def _taper(image: np.ndarray) -> np.ndarray:
    """Mean-subtracted ``image`` times a separable Tukey window, so its borders carry no correlation."""
    window = np.outer(tukey(image.shape[0], TAPER_ALPHA), tukey(image.shape[1], TAPER_ALPHA))
    return (image - image.mean()) * window


def register(
    moving: np.ndarray,
    reference: np.ndarray,
    *,
    scale: int = 1,
    name: str = "image",
    upsample_factor: int = UPSAMPLE_FACTOR,
    min_correlation: float = MIN_CORRELATION,
) -> Registration:
    """Find the sub-pixel shift that moves ``moving`` onto ``reference``, and check the fit.

    Plain cross-correlation of the tapered images with
    ``skimage.registration.phase_cross_correlation``; the taper, the border and
    the correlation are as in the module's conventions.

    Parameters
    ----------
    moving : numpy.ndarray
        2-D image on the reference's grid, e.g. the bicubic-upscaled LR.
    reference : numpy.ndarray
        2-D image of the same shape, e.g. the HR.
    scale : int
        The factor by which ``moving`` was upscaled; sets the border (``2 * scale``
        pixels beyond the shift).
    name : str
        What to call the pair in error messages.
    upsample_factor : int
        Shifts are found to ``1 / upsample_factor`` pixel.
    min_correlation : float
        Lowest accepted correlation after registration.

    Returns
    -------
    Registration

    Raises
    ------
    InputError
        If the shapes differ, the images do not show the same field of view (the
        correlation after registration is below ``min_correlation``, or the shift
        exceeds :data:`MAX_SHIFT` of a side), or under 16 pixels per side remain
        inside the border.

    Examples
    --------
    >>> from scipy import ndimage
    >>> from microsr.samples import filaments
    >>> reference = filaments((256, 256), seed=1).astype(float)
    >>> registration = register(ndimage.shift(reference, (1.5, -0.25)), reference, scale=2)
    >>> registration.shift, registration.border, round(registration.correlation, 2)
    ((-1.5, 0.25), 6, 1.0)
    """
    moving, reference = np.asarray(moving, np.float64), np.asarray(reference, np.float64)
    if moving.shape != reference.shape or moving.ndim != 2:
        raise InputError(f"{name}: register needs two 2-D images of one shape, got {moving.shape} and "
                         f"{reference.shape}.")
    shift = phase_cross_correlation(_taper(reference), _taper(moving), upsample_factor=upsample_factor,
                                    normalization=None)[0]
    shift = (float(shift[0]), float(shift[1]))
    registration = Registration(shift, 0.0, math.ceil(max(abs(s) for s in shift)) + 2 * scale)
    height, width = reference.shape
    if min(reference.shape) - 2 * registration.border < _MIN_SIDE:
        if not _too_far(shift, reference.shape):
            raise InputError(
                f"{name}: the {height} x {width} px image keeps less than {_MIN_SIDE} px per side once the "
                f"{registration.border} px border is cut; benchmark larger images."
            )
        registration = Registration((0.0, 0.0), 0.0, 2 * scale)  # only to measure the correlation below
    correlation = _pearson(registration.apply(moving), registration.crop(reference))
    not_same = (
        "the LR and HR do not show the same field of view; check that the right files are paired (if they "
        "overlap only in part, crop both to the common region)"
    )
    if _too_far(shift, reference.shape):
        where = "after that shift" if registration.shift == shift else "without a shift"
        raise InputError(
            f"{name}: registration found a shift of ({shift[0]:.2f}, {shift[1]:.2f}) px, more than "
            f"{MAX_SHIFT:.0%} of the {height} x {width} px image, and {where} the upscaled LR and the HR "
            f"correlate at {correlation:.2f}: {not_same}."
        )
    if not correlation >= min_correlation:
        raise InputError(
            f"{name}: after registration (shift {shift[0]:.2f}, {shift[1]:.2f} px) the upscaled LR and the HR "
            f"correlate at only {correlation:.2f} (at least {min_correlation:g} expected): {not_same}."
        )
    return replace(registration, correlation=correlation)


# --------------------------------------------------------------------------- benchmark


def _plane(path: Path, role: str, pixel_size: float | None = None) -> Image:
    image = read_image(path, pixel_size=pixel_size)
    if image.axes != "YX":
        raise InputError(
            f"{path}: the benchmark compares 2-D images, but this {role} image has axes {image.axes} "
            f"(shape {' x '.join(map(str, image.shape))}); save each plane as its own file."
        )
    return image


def _common_shape(name: str, lr: tuple[int, ...], hr: tuple[int, ...], scale: int) -> tuple[int, int]:
    """The HR-grid region shared by the HR and the upscaled LR, or InputError for a wrong size ratio."""
    if any(abs(h - n * scale) >= scale for n, h in zip(lr, hr)):
        ratio = " and ".join(f"{h / n:.3g}" for n, h in zip(lr, hr))
        raise InputError(
            f"{name}: the LR image is {lr[0]} x {lr[1]} and the HR {hr[0]} x {hr[1]} px, a size ratio of {ratio}, "
            f"but the model upsamples x{scale}; benchmark it on pairs whose HR is {scale} times the LR "
            f"({lr[0] * scale} x {lr[1] * scale} px), or use a x{round(hr[0] / lr[0])} model."
        )
    return min(hr[0], lr[0] * scale), min(hr[1], lr[1] * scale)


@dataclass(frozen=True)
class _Case:
    """One pair, checked and registered: LR and HR pixels (HR cut to the common grid), HR pixel size (nm)."""

    name: str
    lr: np.ndarray
    hr: np.ndarray
    registration: Registration
    pixel_size: float | None


def _prepare(pair: Pair, scale: int, degradation: Degradation | None, seed: int, pixel_size: float | None) -> _Case:
    """Read (or make) the pair, check its geometry and register it."""
    hr_image = _plane(pair.hr, "HR", pixel_size)
    # Scoring holds the HR image and every method's output on its grid in float64 at once.
    hr_pixels = in_memory(hr_image, np.float64, copies=_SCORING_COPIES)
    lr = (degrade_image(hr_image, degradation, seed=seed) if degradation is not None else _plane(pair.lr, "LR"))
    lr_pixels = in_memory(lr)
    shape = _common_shape(pair.name, lr_pixels.shape, hr_pixels.shape, scale)
    hr_pixels = hr_pixels[: shape[0], : shape[1]]
    bicubic = upscale(lr_pixels, scale, "bicubic")[: shape[0], : shape[1]]
    registration = register(bicubic, hr_pixels, scale=scale, name=pair.name)
    return _Case(pair.name, lr_pixels, hr_pixels, registration, hr_image.pixel_size)


def _outputs(case: _Case, models: dict[str, Restorer], scale: int, device: str | torch.device,
             tile: int) -> dict[str, np.ndarray]:
    """Every method's upscaled LR, cut to the HR's grid."""
    outputs = {name: model.predict(case.lr, device=device, tile=tile) for name, model in models.items()}
    outputs.update({method: upscale(case.lr, scale, method) for method in BASELINES})
    height, width = case.hr.shape
    return {name: output[:height, :width] for name, output in outputs.items()}


def _model_name(model: Restorer, taken: set[str]) -> str:
    """The model's folder name, with -2, -3, ... appended when another method already has it."""
    base = model.path.parent.name or "model"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def _load(model: str | os.PathLike[str] | Restorer) -> Restorer:
    restorer = model if isinstance(model, Restorer) else load_model(model)
    if restorer.frames != 1:
        raise InputError(f"{restorer.path}: the benchmark compares 2-D images, but this model takes "
                         f"{restorer.frames} frames; benchmark a single-frame model.")
    return restorer


def _semi_synthetic_degradation(model: Restorer) -> Degradation:
    spec = model.info.get("degradation")
    if spec is None:
        raise InputError(
            f"{model.path}: without --lr the HR images are degraded with the model's own degradation, but this "
            "model was trained on real pairs and records none; give the LR images with --lr."
        )
    return Degradation.from_dict(spec)


def _figure(case: _Case, fitted: dict[str, np.ndarray], reference: np.ndarray, scale: int) -> Figure:
    """Centre crops of the LR, every fitted output and the HR, and the outputs' error maps."""
    side = min(_FIGURE_SIDE, *reference.shape)
    top, left = (reference.shape[0] - side) // 2, (reference.shape[1] - side) // 2
    window = (slice(top, top + side), slice(left, left + side))
    # The LR crop covering the same region (ignoring the sub-pixel registration shift), shown enlarged.
    b = case.registration.border
    lr_window = tuple(slice((w.start + b) // scale, -(-(w.stop + b) // scale)) for w in window)
    lr_crop = metrics.normalize_percentile(case.lr[lr_window])
    errors = {name: np.abs(reference[window] - image[window]) for name, image in fitted.items()}
    high = max(float(np.percentile(e, _ERROR_PERCENTILE)) for e in errors.values()) or 1.0
    images = [Tile("LR input", lr_crop), *(Tile(n, image[window]) for n, image in fitted.items()),
              Tile("HR (ground truth)", reference[window])]
    error_tiles = [Tile(f"|HR - {n}|", e, high=high, colormap="hot") for n, e in errors.items()]
    caption = (
        f"Centre {side} x {side} px of the scored region (HR pixels). Intensities: HR percentile-normalised, "
        f"outputs fitted to it, shown 0-1. Error maps share one scale, 0 (black) to {high:.3g} (white)."
    )
    return Figure(case.name, [images, error_tiles], caption)


def _summary(scores: Sequence[BenchmarkRow], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    summary = {}
    for method in methods:
        rows = [s for s in scores if s.method == method]
        resolutions = [s.resolution for s in rows if s.resolution is not None]
        summary[method] = {
            "psnr": float(np.mean([s.psnr for s in rows])),
            "ssim": float(np.mean([s.ssim for s in rows])),
            "nrmse": float(np.mean([s.nrmse for s in rows])),
            "resolution": float(np.mean(resolutions)) if resolutions else None,
            "images": len(rows),
        }
    return summary


def _write_csv(path: Path, scores: Sequence[BenchmarkRow]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(["" if value is None else value for value in score] for score in scores)


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=not enabled)


def benchmark(
    model: str | os.PathLike[str] | Restorer,
    hr: str | os.PathLike[str],
    lr: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] = "benchmark",
    *,
    vs: Sequence[str | os.PathLike[str] | Restorer] = (),
    seed: int = 0,
    pixel_size: float | None = None,
    device: str | torch.device = "cpu",
    tile: int = 256,
    overwrite: bool = False,
    progress: bool = False,
) -> BenchmarkResult:
    """Score a model on LR/HR pairs against bicubic and bilinear upscaling; write a report folder.

    Every pair is checked and registered before any model runs, so a bad pair
    fails fast. The steps and conventions are those of the module docstring
    (:mod:`microsr.evaluate.benchmark`) and are recorded in ``summary.json``.

    Without ``lr`` the benchmark is semi-synthetic: each HR image is degraded by
    the model's own degradation (as ``microsr degrade --seed SEED`` would), which
    flatters the model (it was trained on exactly this degradation); the report
    and ``summary.json`` say so.

    Parameters
    ----------
    model
        Model folder or checkpoint (or a loaded :class:`~microsr.predict.restorer.Restorer`);
        its method name is ``"microsr"``.
    hr
        High-resolution (ground truth) image file or folder.
    lr
        Low-resolution image file or folder, matched to ``hr`` by name (see
        :func:`~microsr.io.pair_by_name`); default: degrade ``hr``.
    output
        Report folder to create: ``metrics.csv`` (one row per image and method),
        ``summary.json`` (per-method means, provenance, conventions) and
        ``report.html``. It is written under a temporary name and renamed when
        complete.
    vs
        Other models to compare, named after their folders (made unique).
    seed
        Seed of the semi-synthetic degradation (the same for every image).
    pixel_size
        HR pixel size in nm, overriding the files' metadata; it puts the
        resolution in nm.
    device, tile
        Where and in which tiles (LR pixels) the models run.
    overwrite
        Replace an existing, non-empty ``output``.
    progress
        Show a progress bar over the images.

    Returns
    -------
    BenchmarkResult

    Raises
    ------
    InputError
        For missing, empty or unmatched inputs, non-2-D images, a size ratio that
        is not the model's scale, pairs that do not show the same field of view,
        models of different scales, or an output that exists (without
        ``overwrite``) or would replace an input.

    Examples
    --------
    >>> result = benchmark("em_model", hr="hr/", lr="lr/", output="report")  # doctest: +SKIP
    >>> result.summary["methods"]["microsr"]["psnr"] > result.summary["methods"]["bicubic"]["psnr"]  # doctest: +SKIP
    True
    """
    output = Path(output)
    main = _load(model)
    models = {MAIN_METHOD: main}
    for other in vs:
        restorer = _load(other)
        if restorer.scale != main.scale:
            raise InputError(f"{restorer.path}: this model upsamples x{restorer.scale} but {main.path} "
                             f"x{main.scale}; compare models of one scale.")
        models[_model_name(restorer, {*models, *BASELINES})] = restorer
    inputs = [hr, *([lr] if lr is not None else []), *(m.path for m in models.values())]
    overwrite = overwrite or (output.is_dir() and not any(output.iterdir()))
    check_output(output, overwrite, inputs)
    pairs = pair_by_name(hr, lr)
    degradation = _semi_synthetic_degradation(main) if lr is None else None

    with _progress(progress) as bar:
        cases = [_prepare(pair, main.scale, degradation, seed, pixel_size)
                 for pair in bar.track(pairs, description="registering pairs")]
        pixel_sizes = {case.pixel_size for case in cases}
        # Resolutions are averaged, so they share one unit: nm only when every HR image knows its pixel size.
        unit = "px" if None in pixel_sizes else "nm"
        scores: list[BenchmarkRow] = []
        figures: list[Figure] = []
        for case in bar.track(cases, description="scoring"):
            registration = case.registration
            hr = registration.crop(case.hr)
            fitted = {}
            for name, image in _outputs(case, models, main.scale, device, tile).items():
                result = score(registration.apply(image), hr)
                fitted[name] = result.prediction
                resolution = metrics.decorrelation(result.prediction,
                                                   pixel_size=case.pixel_size if unit == "nm" else None)
                scores.append(BenchmarkRow(
                    case.name, name, result.psnr, result.ssim, result.nrmse, resolution.resolution,
                    *registration.shift, registration.correlation,
                ))
            figures.append(_figure(case, fitted, result.reference, main.scale))

    summary: dict[str, Any] = {
        "methods": _summary(scores, [*models, *BASELINES]),
        "resolution_unit": unit,
        "semi_synthetic": lr is None,
        "provenance": {
            "command": list(sys.argv),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": {"microsr": __version__, "torch": torch.__version__, "numpy": np.__version__,
                         "scipy": scipy.__version__, "scikit-image": skimage.__version__},
            "models": {name: str(m.path) for name, m in models.items()},
            "scale": main.scale,
            "hr": str(hr),
            "lr": None if lr is None else str(lr),
            "degradation": None if degradation is None else degradation.to_dict(),
            "seed": seed,
            "device": str(device),
            "tile": tile,
            "hr_pixel_size_nm": pixel_sizes.pop() if len(pixel_sizes) == 1 else None,
            "model_input_pixel_size_nm": main.input_pixel_size,
        },
        "conventions": CONVENTIONS,
    }
    with atomic_output(output, overwrite, inputs) as folder:
        folder.mkdir()
        _write_csv(folder / "metrics.csv", scores)
        (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        write_report(folder / "report.html", summary, [s._asdict() for s in scores], figures)
    return BenchmarkResult(output, tuple(scores), summary)
