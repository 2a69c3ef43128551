"""Calibrate an SMLM simulation from raw frames alone: camera, PSF, photons, background and density, no ground truth.

``microsr smlm calibrate STACK`` measures what :class:`~microsr.simulate.smlm.SMLMSimulation`
needs to look like the acquisition, so a model trained on those simulated frames
matches the user's microscope:

1. **Background pixels.** A pixel whose 7 × 7 neighbourhood (itself excluded) is
   among the darkest of its frame holds no emitter; its own value is then an
   unbiased draw of background + camera noise (the neighbours decide, not it).
2. **Camera (photon transfer).** In blocks of 16 × 16 pixels of each frame,
   the mean ``m``, variance ``v`` and third cumulant ``k3`` of background pixels
   follow ``v = s (m - o) + r²`` and ``k3 = c s² (m - o)`` with ``o`` the base level,
   ``r`` the readout noise (counts), ``s = F g`` (``g`` counts per photon, ``F`` = 1
   without and 2 with EM gain, whose excess noise doubles the variance) and ``c`` =
   1 for Poisson noise, 1.5 with EM gain (the gamma-distributed multiplication).
   Straight-line fits over blocks whose background differs (illumination, drift,
   bleaching) give ``s``, ``c`` (so the camera type), ``o`` and ``r``. If the
   background is nearly the same everywhere, the slopes are unconstrained: the
   camera type must be given (``camera=``), its readout noise is assumed (EMCCD:
   negligible after gain; sCMOS: 1.5 e-) and the background's variance and third
   cumulant give the rest; a warning says so.
3. **PSF, photons and density from the blinking.** Molecules blink independently, so
   the temporal covariance of two pixels, summed over the field, is ``N <I²>`` times
   the PSF's autocorrelation, whatever the structure and however much the spots
   overlap; pixels 1 and 2 apart (no shot noise in common) give the PSF width, the
   pixels' variance minus the camera noise of step 2 gives ``N <I²> / (4 π σ²)``, and
   their mean above background ``N <I>``: hence photons per emitter ``<I>`` and the
   emitters on per frame ``N``.
4. **Photon spread.** Isolated spots (no other spot within 4 pixels) well above the
   noise are fitted with an integrated Gaussian; the spread of their integrals, minus
   the fits' own noise, is the spread of photons (capped at ± 50 %: overlapping spots
   widen it). The PSF's spread over molecules is not measured (± 5 % is written).

Each estimate comes with a standard error; :attr:`Calibration.warnings` says which
are poorly constrained and why.

Examples
--------
>>> from microsr.simulate.smlm import SMLMSimulation, simulate_stack
>>> truth = SMLMSimulation(size=32, density=1.0, photons=(1500, 2500), background=(10, 60), photons_per_adu=0.5,
...                        read_noise=1.5, base_level=300, structure="uniform")
>>> stack, _ = simulate_stack(truth, frames=200, seed=0)
>>> result = calibrate(stack, pixel_size=100.0)
>>> result.camera, abs(result.base_level.value - 300) < 15, abs(result.gain.value - 2.0) < 0.3
('scmos', True, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage, optimize
from scipy.special import erf

from microsr.errors import InputError
from microsr.io import atomic_output
from microsr.simulate.smlm import SMLMSimulation

__all__ = ["Calibration", "Estimate", "calibrate", "write_simulation"]

Camera = Literal["auto", "emccd", "scmos"]

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_MAX_FRAMES = 400  # frames read (evenly spaced); enough for every estimate, bounded memory
_MAX_SIDE = 256  # frames larger than this are calibrated on their central crop
_BLOCK = 16  # side of the photon-transfer blocks, pixels
_DARK_FRACTION = 0.2
_MIN_BACKGROUND_PIXELS = 30
_SPOT_WINDOW = 4  # half-side of the fitted window, pixels (9 × 9)
_ISOLATION = 4  # no other spot within this many pixels
_MAX_SPOTS = 600
_SPOT_SNR = 8.0  # spot peak (smoothed) above background, in noise standard deviations of the smoothed frame
_SCMOS_READ_NOISE = 1.5  # electrons, assumed when the background does not vary
_TRAIN_SIZE = 64  # frame side of the simulated training frames


@dataclass(frozen=True)
class Estimate:
    """A calibrated value with its standard error (``nan`` when it could not be measured).

    Examples
    --------
    >>> str(Estimate(2.04, 0.13, "photons"))
    '2.04 ± 0.13 photons'
    """

    value: float
    error: float
    unit: str = ""

    def __str__(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.value:.3g} ± {self.error:.2g}{unit}"

    @property
    def relative_error(self) -> float:
        """``error / |value|`` (inf for a zero value)."""
        return self.error / abs(self.value) if self.value else math.inf


@dataclass(frozen=True)
class Calibration:
    """What :func:`calibrate` measured; :meth:`simulation` turns it into simulator settings.

    Attributes
    ----------
    camera
        ``"emccd"`` (EM gain: excess noise factor 2) or ``"scmos"`` (also CCD: Poisson noise).
    camera_measured
        Whether the camera type was measured (background varying enough) or given/assumed.
    base_level
        Camera offset, counts.
    gain
        Counts per detected photon (for an EMCCD, the EM gain / photoelectrons per count).
    read_noise
        Readout noise, counts rms (for an EMCCD, after the EM gain, where it is added).
    background
        Mean background, photons per pixel; ``background_range`` its 5-95 % range over the frames.
    fwhm, fwhm_spread
        PSF FWHM (nm, median of the fits) and the half-width of its spread over molecules.
    photons, photon_spread
        Photons per emitter (median of the fits) and the half-width of their spread.
    density
        Emitters on per µm² per frame.
    pixel_size
        Camera pixel size, nm.
    size
        Frame size of the stack, pixels.
    frames
        Frames used.
    spots
        Isolated spots fitted.
    warnings
        Why some estimates are poorly constrained (empty when all are fine).
    """

    camera: str
    camera_measured: bool
    base_level: Estimate
    gain: Estimate
    read_noise: Estimate
    background: Estimate
    background_range: tuple[float, float]
    fwhm: Estimate
    fwhm_spread: float
    photons: Estimate
    photon_spread: float
    density: Estimate
    pixel_size: float
    size: tuple[int, int]
    frames: int
    spots: int
    warnings: list[str] = field(default_factory=list)

    def simulation(self, size: int | None = None) -> SMLMSimulation:
        """Simulator settings for this acquisition (frames of ``size`` pixels, default up to 64).

        With an EMCCD the EM gain is not separable from the counts per photoelectron;
        100 is used and photoelectrons per count follow from the measured gain.
        """
        side = size or min(_TRAIN_SIZE, max(self.size))
        camera = (
            {"em_gain": 100.0, "photons_per_adu": 100.0 / self.gain.value}
            if self.camera == "emccd" else {"em_gain": None, "photons_per_adu": 1.0 / self.gain.value}
        )
        # The simulator adds readout noise in electrons at the output: counts × photoelectrons per count.
        read_noise = self.read_noise.value * camera["photons_per_adu"]
        return SMLMSimulation(
            size=side, pixel_size=self.pixel_size, density=max(self.density.value, 0.01),
            fwhm=(max(self.fwhm.value - self.fwhm_spread, 1.0), self.fwhm.value + self.fwhm_spread),
            photons=(max(self.photons.value - self.photon_spread, 1.0), self.photons.value + self.photon_spread),
            background=self.background_range, base_level=min(max(self.base_level.value, 0.0), 65534.0),
            read_noise=max(read_noise, 0.0) if math.isfinite(read_noise) else 0.0, **camera,
        )

    def rows(self) -> list[tuple[str, str, str]]:
        """(setting, estimate ± error, how it was measured) for a table."""
        camera = f"{self.camera} ({'measured' if self.camera_measured else 'given or assumed'})"
        return [
            ("camera", camera, "third cumulant vs variance of background pixels"),
            ("base level", str(self.base_level), "photon transfer of background pixels"),
            ("gain", str(self.gain), "counts per photon (slope of variance vs mean)"),
            ("readout noise", str(self.read_noise), "intercept of variance vs mean, at the base level"),
            ("background", f"{self.background} ({self.background_range[0]:.3g}-{self.background_range[1]:.3g})",
             "mean of background pixels, 5-95 % over frames"),
            ("PSF FWHM", f"{self.fwhm} (± {self.fwhm_spread:.0f} assumed spread)",
             "temporal covariance of pixels 1 and 2 apart"),
            ("photons per emitter", f"{self.photons} (± {self.photon_spread:.0f} spread)",
             f"blinking variance / mean; spread from {self.spots} isolated spots"),
            ("density", str(self.density), "signal above background / photons per emitter"),
        ]


def calibrate(
    stack: np.ndarray,
    pixel_size: float,
    *,
    camera: Camera = "auto",
    max_frames: int = _MAX_FRAMES,
) -> Calibration:
    """Estimate simulation settings of an SMLM acquisition from its raw frames alone (no ground truth).

    Parameters
    ----------
    stack
        ``(frames, rows, columns)`` camera counts (any array or dask array; only
        ``max_frames`` evenly spaced frames are read).
    pixel_size
        Camera pixel size, nm.
    camera
        ``"auto"`` measures whether the camera has EM gain (needs a background that
        varies across the field or the frames); ``"emccd"`` or ``"scmos"`` (also
        for CCD) says it.
    max_frames
        At most this many frames are used (and at most the central 256 × 256 pixels).

    Returns
    -------
    Calibration

    Raises
    ------
    InputError
        If the stack is not 3-D, is too small, or shows no spots to fit.

    Examples
    --------
    >>> from microsr.simulate.smlm import SMLMSimulation, simulate_stack
    >>> stack, _ = simulate_stack(SMLMSimulation(size=32, background=(10, 40), em_gain=100, photons_per_adu=20),
    ...                           frames=100, seed=1)
    >>> calibrate(stack, 100.0).camera
    'emccd'
    """
    if np.ndim(stack) != 3:
        raise InputError(f"an SMLM stack must be 3-D (frames, Y, X), not shape {np.shape(stack)}.")
    if camera not in ("auto", "emccd", "scmos"):
        raise InputError(f"camera={camera!r}: choose auto, emccd or scmos.")
    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise InputError(f"pixel_size={pixel_size!r}: give the camera pixel size in nm (a positive number).")
    total, rows, cols = stack.shape
    if rows < _BLOCK or cols < _BLOCK or total < 10:
        raise InputError(
            f"a stack of {total} frames of {rows} × {cols} pixels is too small to calibrate; give at least 10 frames "
            f"of {_BLOCK} × {_BLOCK} pixels."
        )
    index = np.unique(np.linspace(0, total - 1, min(max_frames, total)).round().astype(np.int64))
    # Memory stays bounded on any stack: at most max_frames frames of the central _MAX_SIDE² pixels are read.
    top, left = max(0, (rows - _MAX_SIDE) // 2), max(0, (cols - _MAX_SIDE) // 2)
    frames = np.asarray(np.asarray(stack[index, top : top + _MAX_SIDE, left : left + _MAX_SIDE]), np.float64)
    rows, cols = frames.shape[1:]
    notes: list[str] = []
    background_mask = _background_pixels(frames)
    camera_fit = _photon_transfer(frames, background_mask, camera, notes)
    base, gain, read_adu, em = camera_fit["base"], camera_fit["gain"], camera_fit["read"], camera_fit["em"]
    excess = 2.0 if em else 1.0
    per_frame = np.array([f[m].mean() for f, m in zip(frames, background_mask)])
    background_photons = (per_frame - base.value) / gain.value
    background = Estimate(float(background_photons.mean()),
                          float(math.hypot(base.error / gain.value,
                                           background_photons.mean() * gain.relative_error)), "photons")
    low, high = np.percentile(background_photons, [5, 95])
    noise = np.sqrt(np.maximum(excess * gain.value * (per_frame - base.value) + read_adu.value**2, 1e-6))
    spots = _fit_spots(frames, per_frame, noise)
    if len(spots) < 10:
        raise InputError(
            f"found {len(spots)} isolated spots well above the noise in {len(frames)} frames; is this an SMLM stack "
            "of blinking emitters?"
        )
    transfer = (excess * gain.value, base.value, read_adu.value**2)
    parts = [_fluctuations(frames[k::4], per_frame[k::4], transfer) for k in range(4)]
    whole = _fluctuations(frames, per_frame, transfer)
    spread = np.std(np.array(parts), axis=0, ddof=1) / 2.0  # standard error of the mean of 4 interleaved quarters
    sigma_px, signal_counts, square_counts = whole
    if not (signal_counts > 0 and square_counts > 0 and 0.3 < sigma_px < 10):
        raise InputError("the frames show no blinking signal above the camera noise to calibrate from (is this an "
                         "SMLM stack of blinking emitters?).")
    # Relative photon spread from the isolated spots' fits (overlaps widen it, so it is capped at ± 50 %).
    relative = np.clip(_relative_spread(spots[:, 1], spots[:, 3]), 0.0, 0.5)
    cv2 = relative**2 / 3.0
    effective = sigma_px**2 + 1.0 / 12.0  # an integrated Gaussian's squared sum ~ a Gaussian of this variance
    mean_counts = square_counts * 4 * math.pi * effective / signal_counts / (1 + cv2)
    photons_value = mean_counts / gain.value
    rel_photons = math.hypot(
        math.hypot(spread[2] / square_counts, spread[1] / signal_counts), 2 * spread[0] / sigma_px
    )
    photons = Estimate(photons_value, photons_value * math.hypot(rel_photons, gain.relative_error), "photons")
    fwhm_value = math.sqrt(sigma_px**2) * _FWHM_PER_SIGMA * pixel_size
    fwhm = Estimate(fwhm_value, spread[0] * _FWHM_PER_SIGMA * pixel_size, "nm")
    field_um2 = rows * cols * (pixel_size / 1000.0) ** 2
    density_value = signal_counts / mean_counts / field_um2
    density = Estimate(density_value, density_value * rel_photons, "per µm²")
    if density.relative_error > 0.2:
        notes.append(f"density uncertain ({density}): the blinking signal is weak compared with the camera noise")
    if fwhm.relative_error > 0.1:
        notes.append(f"PSF FWHM uncertain ({fwhm}): little blinking signal")
    fwhm_spread = 0.05 * fwhm_value
    photon_spread = float(relative * photons_value)
    result = Calibration(
        camera="emccd" if em else "scmos", camera_measured=camera_fit["measured"], base_level=base, gain=gain,
        read_noise=read_adu,
        background=background, background_range=(float(max(low, 0.0)), float(max(high, low, 0.0))),
        fwhm=Estimate(fwhm.value, fwhm.error, "nm"), fwhm_spread=fwhm_spread, photons=photons,
        photon_spread=photon_spread, density=density, pixel_size=float(pixel_size), size=(rows, cols),
        frames=len(frames), spots=len(spots), warnings=notes,
    )
    return result


def write_simulation(
    calibration: Calibration, path: str | Path, *, source: str = "", overwrite: bool = False
) -> Path:
    """Write the calibrated settings as a simulation config (YAML with comments) for ``microsr smlm train``.

    The file is the ``data.simulation`` mapping of a run configuration: simulator
    settings, the validation frames and the peak-threshold criterion (fixed here,
    before any training or evaluation).

    Examples
    --------
    >>> write_simulation(calibrate(stack, 100.0), "simulation.yaml")  # doctest: +SKIP
    PosixPath('simulation.yaml')
    """
    sim = calibration.simulation()
    c = calibration
    lines = [
        f"# SMLM simulation calibrated by `microsr smlm calibrate` from the raw frames{f' of {source}' if source else ''}",
        f"# ({c.frames} frames of {c.size[0]} x {c.size[1]} px, {c.spots} isolated spots fitted; no ground truth).",
        "# Train a model for this microscope: microsr smlm train --simulation THIS_FILE -o MODEL",
        "# Each setting: value, then the estimate +- standard error and how it was measured.",
    ]
    lines += [f"# WARNING: {note}" for note in c.warnings]
    lines += [
        "preset: default",
        f"size: [{sim.size[0]}, {sim.size[1]}]  # training frame size (the stack's frames are {c.size[0]} x {c.size[1]})",
        f"pixel_size: {sim.pixel_size:g}  # nm, from the stack",
        f"density: {sim.density:.4g}  # emitters on per um^2 per frame: {c.density}; signal / photons per emitter",
        "structure: filaments  # not measured: a prior (microtubule-like curves)",
        f"fwhm: [{sim.fwhm[0]:.4g}, {sim.fwhm[1]:.4g}]  # nm; median {c.fwhm}, spread +-{c.fwhm_spread:.0f}",
        f"photons: [{sim.photons[0]:.4g}, {sim.photons[1]:.4g}]  # per emitter per frame; median {c.photons}",
        f"background: [{sim.background[0]:.4g}, {sim.background[1]:.4g}]  # photons per pixel, 5-95 % over "
        f"frames; mean {c.background}",
        f"base_level: {sim.base_level:.4g}  # counts: {c.base_level}",
        f"photons_per_adu: {sim.photons_per_adu:.4g}  # photoelectrons per count (gain {c.gain})",
        f"em_gain: {'null' if sim.em_gain is None else f'{sim.em_gain:g}'}  # camera {c.camera} "
        f"({'measured' if c.camera_measured else 'given or assumed'})"
        + ("; only em_gain / photons_per_adu is measurable" if sim.em_gain else ""),
        f"read_noise: {sim.read_noise:.4g}  # electrons rms at the output; {c.read_noise}",
        "val_frames: 256  # simulated validation frames that choose the peak threshold",
        "threshold_criterion: jaccard  # fixed before training: the Jaccard index of detections at threshold_radius",
        "threshold_radius: 250  # nm",
    ]
    path = Path(path)
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- background and camera


def _background_pixels(frames: np.ndarray) -> np.ndarray:
    """Boolean mask of background pixels: those whose 7 × 7 neighbourhood (centre excluded) is darkest in its frame."""
    box = ndimage.uniform_filter(frames, size=(1, 7, 7), mode="nearest") * 49.0
    ring = (box - frames) / 48.0
    cut = np.quantile(ring.reshape(len(frames), -1), _DARK_FRACTION, axis=1)
    mask = ring <= cut[:, None, None]
    mask[:, :3], mask[:, -3:], mask[:, :, :3], mask[:, :, -3:] = False, False, False, False
    return mask


def _photon_transfer(frames: np.ndarray, mask: np.ndarray, camera: str, notes: list[str]) -> dict:
    """Base level, gain (counts per photon), readout noise (counts) and EM gain or not, from background pixels."""
    means, variances, thirds, counts = _block_cumulants(frames, mask)
    if means.size >= 8:
        # Weights from the fitted variance, not each cell's own: those correlate with the cell's noise and bias
        # the slopes low. A sample variance has variance ~ 2 v² / n, a sample third cumulant ~ 6 v³ / n.
        predicted = np.full(means.shape, float(np.median(variances)))
        for _ in range(2):
            slope, intercept, slope_err, intercept_err, _ = _line(means, variances, counts / predicted**2)
            predicted = np.maximum(slope * means + intercept, 1e-3 * float(np.median(variances)))
        slope3, intercept3, slope3_err, intercept3_err, cov3 = _line(means, thirds, counts / predicted**3)
        varied = slope > 0 and slope_err < 0.1 * slope and slope3 > 0 and slope3_err < 0.5 * slope3
        if varied:
            ratio, ratio_err = slope3 / slope**2, slope3_err / slope**2
            em = ratio > 1.25 if camera == "auto" else camera == "emccd"
            base_value = -intercept3 / slope3
            # o = -b / a: first-order error propagation with the fit's covariance.
            base_error = math.sqrt(max(intercept3_err**2 + base_value**2 * slope3_err**2
                                       + 2 * base_value * cov3, 0.0)) / slope3
            excess = 2.0 if em else 1.0
            read2 = intercept + slope * base_value
            read_error = math.hypot(intercept_err, slope * base_error) / (2 * math.sqrt(max(read2, 1e-6)))
            if camera == "auto" and abs(ratio - 1.25) < 2 * ratio_err:
                notes.append(f"camera type unsure: third-cumulant ratio {ratio:.2f} ± {ratio_err:.2f} (1 = sCMOS/CCD, "
                             "1.5 = EMCCD); give --camera")
            typical = float(np.sqrt(np.median(variances)))
            if base_error > typical:
                notes.append(f"base level uncertain (± {base_error:.3g} counts): the background varies little "
                             "compared with its noise")
            return {"base": Estimate(base_value, base_error, "counts"),
                    "gain": Estimate(slope / excess, slope_err / excess, "counts per photon"),
                    "read": Estimate(math.sqrt(max(read2, 0.0)), read_error, "counts"),
                    "em": em, "measured": camera == "auto"}
    varied = False
    # One background level: variance and third cumulant of the background pixels with an assumed camera.
    em = camera != "scmos"
    reason = "the background is nearly the same in every frame and region"
    notes.append(
        f"{reason}, so the camera's gain and base level are not separately measurable: assumed "
        f"{'an EMCCD (negligible readout noise after gain)' if em else f'sCMOS/CCD with {_SCMOS_READ_NOISE} e- readout noise'}"
        f"{'' if camera != 'auto' else '; give --camera if that is wrong'}"
    )
    values = frames[mask]
    k1, k2 = float(values.mean()), float(values.var())
    k3 = float(np.mean((values - k1) ** 3))
    n = values.size
    if em:  # k2 = 2 g² λ, k3 = 6 g³ λ
        gain = k3 / (3.0 * k2) / 1.0 if k3 > 0 else math.sqrt(k2 / 2.0 / 20.0)
        photons = k2 / (2.0 * gain**2)
        read = 0.0
    else:  # k2 = g² (λ + r²) and k3 = g³ λ, so k3 / g + r² g² = k2: the root where shot noise dominates
        def mismatch(g: float) -> float:
            return max(k3, 1e-9) / g + (_SCMOS_READ_NOISE * g) ** 2 - k2

        lowest = (max(k3, 1e-9) / (2 * _SCMOS_READ_NOISE**2)) ** (1 / 3)  # where the left side is smallest
        if mismatch(lowest) < 0:
            gain = optimize.brentq(mismatch, max(k3, 1e-9) / k2 / 2, lowest)
        else:
            gain = lowest
            notes.append("background variance below what the assumed 1.5 e- readout noise allows: gain uncertain")
        photons = max(k3, 1e-9) / gain**3
        read = _SCMOS_READ_NOISE * gain
    # The third cumulant's relative standard error ~ sqrt(6 k2³ / n) / k3 carries into gain and base level.
    relative = math.sqrt(6.0 * k2**3 / n) / max(abs(k3), 1e-9)
    base_value = k1 - gain * photons
    return {"base": Estimate(base_value, gain * photons * 2 * relative, "counts"),
            "gain": Estimate(gain, gain * relative, "counts per photon"),
            "read": Estimate(read, read * relative, "counts"), "em": em, "measured": False}


def _block_cumulants(frames: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """Mean, variance and third cumulant of background pixels per block of each frame, and their pixel counts."""
    n, rows, cols = frames.shape
    br, bc = rows // _BLOCK, cols // _BLOCK
    x = frames[:, : br * _BLOCK, : bc * _BLOCK].reshape(n, br, _BLOCK, bc, _BLOCK)
    m = mask[:, : br * _BLOCK, : bc * _BLOCK].reshape(n, br, _BLOCK, bc, _BLOCK)
    count = m.sum(axis=(2, 4)).astype(np.float64)
    mean = (x * m).sum(axis=(2, 4)) / np.maximum(count, 1.0)
    centred = (x - mean[:, :, None, :, None]) * m
    second = (centred**2).sum(axis=(2, 4))
    third = (centred**3).sum(axis=(2, 4))
    keep = count >= _MIN_BACKGROUND_PIXELS
    count = count[keep]
    variance = second[keep] / (count - 1)
    k3 = third[keep] * count / ((count - 1) * (count - 2))  # unbiased third cumulant (k-statistic)
    return mean[keep], variance, k3, count


def _line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float, float, float, float]:
    """Weighted least-squares line ``y = a x + b``: a, b, their standard errors and covariance (from the scatter)."""
    design = np.column_stack([x, np.ones_like(x)]) * np.sqrt(w)[:, None]
    target = y * np.sqrt(w)
    (a, b), *_ = np.linalg.lstsq(design, target, rcond=None)
    residual = target - design @ np.array([a, b])
    dof = max(len(x) - 2, 1)
    covariance = np.linalg.inv(design.T @ design) * float(residual @ residual) / dof
    return (float(a), float(b), float(math.sqrt(covariance[0, 0])), float(math.sqrt(covariance[1, 1])),
            float(covariance[0, 1]))


# --------------------------------------------------------------------------- fluctuations


def _fluctuations(frames: np.ndarray, background: np.ndarray, transfer: tuple[float, float, float]) -> np.ndarray:
    """PSF sigma (px), mean signal and its squared sum per frame (counts) from the pixels' temporal fluctuations.

    Molecules blink independently, so the temporal covariance of two pixels is a sum
    over molecules of ``<I²> PSF(x) PSF(y)`` whatever the structure: summed over the
    field it is ``N <I²>`` times the PSF's autocorrelation (a Gaussian of variance
    ``2 σ²``), while the mean signal sums to ``N <I>``. Neighbours 1 and 2 pixels apart
    (no shot noise in common) give ``σ``; the variance minus the shot and readout
    noise (photon transfer: ``s (m - o) + r²``) gives ``N <I²> / (4 π σ²)``.
    """
    slope, base, read2 = transfer
    drift = background - background.mean()
    centred = frames - drift[:, None, None]  # background drift is not blinking
    mean = centred.mean(axis=0)
    fluct = centred - mean
    n = len(frames)
    products = {}
    for d in (1, 2):
        across = (fluct[:, :, d:] * fluct[:, :, :-d]).sum(axis=0).sum() / (n - 1)
        down = (fluct[:, d:, :] * fluct[:, :-d, :]).sum(axis=0).sum() / (n - 1)
        pairs = fluct.shape[1] * (fluct.shape[2] - d) + (fluct.shape[1] - d) * fluct.shape[2]
        products[d] = (across + down) / pairs
    variance = (fluct**2).sum(axis=0) / (n - 1)
    excess = float((variance - (slope * (mean - base) + read2)).sum())
    signal = float((mean - background.mean()).sum())
    if products[1] > 0 and 0 < products[2] < products[1]:
        # Autocorrelation of the integrated PSF ~ exp(-d² / (4 (σ² + 1/12))).
        effective = -3.0 / (4.0 * math.log(products[2] / products[1]))
        sigma = math.sqrt(max(effective - 1.0 / 12.0, 1e-4))
    else:
        sigma = math.nan
    return np.array([sigma, signal, excess])


def _relative_spread(values: np.ndarray, errors: np.ndarray) -> float:
    """Half-width of a uniform spread relative to the median, the fits' own noise removed."""
    median = float(np.median(values))
    q25, q75 = np.percentile(values, [25, 75])
    own = max(((q75 - q25) / 1.349) ** 2 - float(np.median(errors) ** 2), 0.0)
    return math.sqrt(3.0 * own) / max(median, 1e-9)


# --------------------------------------------------------------------------- spots


def _fit_spots(frames: np.ndarray, background: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """``(n, 4)`` sigma (px), integral (counts) and their standard errors of isolated spots' Gaussian fits.

    ``background`` and ``noise`` (counts) are per frame.
    """
    smooth = ndimage.gaussian_filter(frames - background[:, None, None], sigma=(0, 1, 1))
    smooth_noise = noise / (2.0 * math.sqrt(math.pi))  # a unit-sigma Gaussian filter shrinks white noise so
    peaks = smooth == ndimage.maximum_filter(smooth, size=(1, 3, 3))
    strong = peaks & (smooth > _SPOT_SNR * smooth_noise[:, None, None])
    weak = peaks & (smooth > 3.0 * smooth_noise[:, None, None])
    # Isolated: the only weak-or-stronger peak within the isolation radius.
    neighbours = ndimage.uniform_filter(weak.astype(np.float32), size=(1, 2 * _ISOLATION + 1, 2 * _ISOLATION + 1))
    neighbours *= (2 * _ISOLATION + 1) ** 2
    isolated = strong & (neighbours < 1.5)
    w = _SPOT_WINDOW
    isolated[:, :w], isolated[:, -w:], isolated[:, :, :w], isolated[:, :, -w:] = False, False, False, False
    t, r, c = np.nonzero(isolated)
    if t.size > _MAX_SPOTS:
        pick = np.random.default_rng(0).choice(t.size, _MAX_SPOTS, replace=False)
        t, r, c = t[pick], r[pick], c[pick]
    windows = np.stack([frames[t[k], r[k] - w : r[k] + w + 1, c[k] - w : c[k] + w + 1] for k in range(t.size)]) \
        if t.size else np.zeros((0, 2 * w + 1, 2 * w + 1))
    return _fit_gaussians(windows, background[t], noise[t])


def _gaussian_windows(p: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Integrated Gaussians ``amplitude * Py ⊗ Px + offset`` on square windows, for parameters ``(n, 5)``."""
    x0, y0, s, amp, off = (p[:, k : k + 1] for k in range(5))
    scale = math.sqrt(2.0) * np.abs(s) + 1e-6
    ex = 0.5 * (erf((grid + 0.5 - x0) / scale) - erf((grid - 0.5 - x0) / scale))
    ey = 0.5 * (erf((grid + 0.5 - y0) / scale) - erf((grid - 0.5 - y0) / scale))
    return amp[:, :, None] * ey[:, :, None] * ex[:, None, :] + off[:, :, None]


def _fit_gaussians(windows: np.ndarray, offset: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Batched Levenberg-Marquardt fits of integrated Gaussians: ``(n, 4)`` sigma, integral and their errors.

    Fits that do not converge inside the window (centre more than 1.5 px off,
    sigma outside 0.3-4 px) are dropped.
    """
    n, side, _ = windows.shape
    if n == 0:
        return np.zeros((0, 4))
    grid = np.arange(side, dtype=np.float64) - side // 2
    data = windows.reshape(n, -1)
    p = np.column_stack([np.zeros(n), np.zeros(n), np.full(n, 1.2), np.maximum(data.sum(1) - offset * side**2, 1.0),
                         offset])
    damping = np.full(n, 1e-2)
    steps = np.array([1e-4, 1e-4, 1e-4, 1e-3, 1e-3])

    def residuals(q: np.ndarray) -> np.ndarray:
        return (_gaussian_windows(q, grid).reshape(n, -1) - data) / noise[:, None]

    r = residuals(p)
    cost = (r**2).sum(1)
    for _ in range(40):
        h = steps * np.maximum(np.abs(p), 1.0)
        jac = np.stack([(residuals(p + np.eye(5)[k] * h[:, k : k + 1]) - r) / h[:, k : k + 1] for k in range(5)], -1)
        jtj = jac.transpose(0, 2, 1) @ jac
        grad = (jac.transpose(0, 2, 1) @ r[:, :, None])[:, :, 0]
        diag = np.einsum("nii->ni", jtj)
        step = np.linalg.solve(jtj + damping[:, None, None] * np.einsum("ni,ij->nij", diag + 1e-9, np.eye(5)),
                               -grad[:, :, None])[:, :, 0]
        trial = p + step
        r_trial = residuals(trial)
        cost_trial = (r_trial**2).sum(1)
        better = cost_trial < cost
        p[better], r[better], cost[better] = trial[better], r_trial[better], cost_trial[better]
        damping = np.where(better, damping / 3.0, damping * 4.0)
    covariance = np.linalg.pinv(jtj) * np.maximum(cost / (side * side - 5), 1e-12)[:, None, None]
    sigma, amplitude = np.abs(p[:, 2]), p[:, 3]
    good = (sigma > 0.3) & (sigma < 4.0) & (np.abs(p[:, 0]) < 1.5) & (np.abs(p[:, 1]) < 1.5) & (amplitude > 0)
    errors = np.sqrt(np.abs(covariance[:, [2, 3], [2, 3]]))
    return np.column_stack([sigma, amplitude, errors])[good]
