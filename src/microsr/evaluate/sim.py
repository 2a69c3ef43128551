"""SIM comparison: wide-field, classical Wiener SIM and trained models scored against a reference."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from microsr.errors import InputError
from microsr.evaluate.baseline import upscale
from microsr.evaluate.metrics import decorrelation
from microsr.evaluate.score import score
from microsr.io import PathLike
from microsr.io import read_image
from microsr.optics import OTF
from microsr.sim.network import predict_sim
from microsr.sim.wiener import check_raw, reconstruct_sim

__all__ = ["compare_sim"]


def compare_sim(
    raw: np.ndarray,
    reference: PathLike | np.ndarray,
    angles: int,
    phases: int,
    *,
    pixel_size: float,
    na: float,
    wavelength: float,
    models: Sequence[Any] = (),
    wiener: float = 0.05,
    period: float | None = None,
) -> list[dict[str, Any]]:
    """Score wide-field, classical SIM and trained models against a reference reconstruction.

    Wide-field is the mean of the raw frames upscaled by the bicubic baseline
    (:func:`microsr.evaluate.baseline.upscale`). Every result is scored by
    :func:`microsr.evaluate.score.score` with its default convention (the reference's
    0.1/99.9 percentiles to 0/1, the result fitted to it by a least-squares gain and offset;
    PSNR and SSIM with data range 1, NRMSE ``||reference - image|| / ||reference||``); the
    resolution is each image's own decorrelation analysis
    (:func:`microsr.evaluate.metrics.decorrelation`) in nm, ``None`` if undetermined.

    Parameters
    ----------
    raw : numpy.ndarray
        ``(angles * phases, Y, X)`` frames, angle-major.
    reference
        Reference image (file or array) on a grid an integer factor finer than ``raw``.
    angles, phases : int
        Pattern of ``raw``.
    pixel_size : float
        Raw pixel size, nm.
    na, wavelength : float
        OTF model of the classical reconstruction.
    models
        Trained models (folders, files or Restorers) applied with :func:`predict_sim`.
    wiener : float
        Wiener parameter of the classical reconstruction.
    period : float, optional
        Nominal pattern period (nm) for its pattern estimate (see :func:`estimate_pattern`).

    Returns
    -------
    list of dict
        One per method: ``method``, ``psnr``, ``ssim``, ``nrmse``, ``resolution`` (nm).

    Examples
    --------
    >>> from microsr.simulate.sim import SIMSimulation, simulate_field
    >>> field = simulate_field(SIMSimulation(size=64, photons=2000.0), seed=0)
    >>> rows = compare_sim(field.raw, field.target, 3, 3, pixel_size=60.0, na=1.2, wavelength=525.0)
    >>> [row["method"] for row in rows]
    ['wide-field (bicubic)', 'classical Wiener SIM']
    >>> bool(rows[1]["psnr"] > rows[0]["psnr"])
    True
    """
    raw = check_raw(raw, angles, phases)
    target = np.asarray(read_image(reference).data if not isinstance(reference, np.ndarray) else reference,
                        dtype=np.float64)
    scale = target.shape[-1] // raw.shape[-1]
    if target.ndim != 2 or scale < 1 or target.shape != (raw.shape[1] * scale, raw.shape[2] * scale):
        raise InputError(
            f"reference of shape {target.shape} is not an integer multiple of the raw frames' {raw.shape[1:]}."
        )
    results = {"wide-field (bicubic)": upscale(raw.mean(axis=0), scale)}
    if scale == 2:
        otf = OTF.model(na, wavelength)
        results["classical Wiener SIM"] = reconstruct_sim(raw, angles, phases, pixel_size=pixel_size, otf=otf,
                                                          wiener=wiener, period=period)[0]
    for model in models:
        results[Path(str(getattr(model, "path", model))).name] = predict_sim(model, raw)
    rows = []
    for method, image in results.items():
        result = score(image, target)
        rows.append({
            "method": method, "psnr": result.psnr, "ssim": result.ssim, "nrmse": result.nrmse,
            "resolution": decorrelation(image, pixel_size=pixel_size / scale).resolution,
        })
    return rows
