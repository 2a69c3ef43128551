"""Classical 2D Wiener SIM reconstruction, and reading raw SIM frames.

Classical reconstruction (Gustafsson 2000; Heintzmann & Cremer 1999), in the steps
of fairSIM (Müller et al. 2016):

1. **Band separation.** Each angle's frames ``D_p = H · [S + (m/2) e^{iφ_p} S(k - k_a)
   + (m/2) e^{-iφ_p} S(k + k_a)]`` are unmixed into the orders 0 and ±1 by the
   pseudo-inverse of the phase matrix (least squares for more than 3 phases).
2. **Pattern estimation** from the data, by cross-correlation: the +1 order, deconvolved
   by the OTF, is correlated with the 0 order over all shifts (coarse peak on the FFT
   grid), then at ever finer sub-pixel shifts over the frequencies both orders carry
   (down to 1/400 of an FFT bin). The modulation depth and phase offset are the
   regression of the shifted +1 order on the 0 order over the frequencies both carry.
   Phase steps are taken as even unless ``fit_phases``: then each frame's phase is that
   of its regression on the shifted 0 order, and the frames are unmixed again with them.
3. **Wiener filter.** The orders are moved to their true place on a grid twice as fine,
   and combined as ``A(k) Σ conj(w H_m) C_m / (Σ |w H_m|² + wiener²)`` with the
   modulation as weight ``w``, and an apodization ``A`` (the OTF of a pupil extended by
   the pattern frequency, which is also the target of :mod:`microsr.simulate.sim`).

Edges are padded by reflection and faded to the mean, so the FFT sees a periodic
image. Raw pixel ``j`` covers output pixels ``2j`` and ``2j + 1``. Frames are ordered
angle-major (frame ``a * phases + p``).

The OTF is the ideal one of a circular pupil (:meth:`OTF.model`) or a measured
radial OTF (:func:`read_otf`: Priism/OMX ``.mrc`` files, or a two-column CSV).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.signal.windows import tukey

from microsr.errors import InputError
from microsr.io import Image, check_finite, check_image_output, in_memory, read_image, write_image
from microsr.io import PathLike
from microsr.optics import OTF, ideal_otf, read_mrc, read_otf

__all__ = [
    "PatternParameters",
    "estimate_pattern",
    "read_raw",
    "reconstruct_file",
    "reconstruct_sim",
    "sim_frames",
    "stack_frames",
]


_COARSE_CANDIDATES = 8  # strongest bins of the coarse cross-correlation checked for the pattern frequency
_REFINE_POINTS = 5  # candidates per axis of each step refining the pattern frequency
_DC_EXCLUSION = 0.1  # fraction of the cut-off around zero frequency left out of the regressions
_MIN_PATTERN = 0.15  # the pattern frequency is searched above this fraction of the cut-off
_PERIOD_TOLERANCE = 0.05  # a given pattern period is searched within this relative margin
_MIN_MODULATION = 0.05  # floor for estimated modulation depths, so a weak order cannot blow up the filter
_TAPER_PIXELS = 16  # width of the edge fade for parameter estimation
def read_raw(path: PathLike, *, pixel_size: float | None = None) -> Image:
    """Open raw SIM frames: any image :func:`microsr.io.read_image` reads, or an MRC stack.

    MRC files (OMX, Priism) are read whole; their pixel size comes from the header.

    Examples
    --------
    >>> read_raw("MT.mrc").shape  # doctest: +SKIP
    (9, 256, 256)
    """
    path = Path(path)
    if path.suffix.lower() != ".mrc":
        return read_image(path, pixel_size=pixel_size)
    if not path.is_file():
        raise InputError(f"{path}: file not found. Check the path.")
    data, spacing = read_mrc(path)
    data = data if data.ndim == 3 else data.reshape(-1, *data.shape[-2:])
    return Image(np.asarray(data), "TYX", pixel_size or spacing * 1000.0, path=path)


def sim_frames(image: Image, frames: int) -> tuple[np.ndarray, str]:
    """The raw frames of ``image`` as ``(acquisitions, frames, Y, X)`` float64, and the output axes.

    The frames lie along the C axis when it has ``frames`` entries, else along the
    last leading axis with ``frames`` entries; a single leading axis whose length is a
    multiple of ``frames`` holds consecutive acquisitions.

    Examples
    --------
    >>> stack = Image(np.zeros((3, 9, 8, 8)), "TCYX", None)
    >>> frames, axes = sim_frames(stack, 9)
    >>> frames.shape, axes
    ((3, 9, 8, 8), 'TYX')
    """
    if frames < 1:
        raise InputError(f"frames={frames}: an acquisition has at least one frame.")
    lead = image.axes[:-2]
    candidates = [a for a in lead if image.shape[image.axes.index(a)] == frames]
    if "C" in candidates:
        axis = "C"
    elif candidates:
        axis = candidates[-1]
    elif len(lead) == 1 and image.shape[0] % frames == 0:
        data = _in_memory(image).reshape(-1, frames, *image.shape[-2:])
        check_finite(data, str(image.path or "raw frames"))
        return data, "TYX" if data.shape[0] > 1 else "YX"
    else:
        raise InputError(
            f"{image.path or 'raw frames'}: axes {image.axes}, shape {image.shape} has no axis of {frames} frames "
            "(angles × phases); check --angles and --phases, or give the stack's axes."
        )
    position = image.axes.index(axis)
    others = [n for i, n in enumerate(image.shape[:-2]) if i != position]
    if len(others) > 1:
        raise InputError(
            f"{image.path or 'raw frames'}: axes {image.axes} have more than one axis besides the SIM frames; "
            "split the stack into one file per time point or Z plane."
        )
    data = np.moveaxis(_in_memory(image), position, -3)
    check_finite(data, str(image.path or "raw frames"))
    return data.reshape(-1, frames, *image.shape[-2:]), "TYX" if others else "YX"


class PatternParameters(NamedTuple):
    """Illumination pattern of each angle, as estimated from the data.

    Attributes
    ----------
    k : numpy.ndarray
        ``(angles, 2)`` pattern frequency ``(ky, kx)`` in cycles per raw pixel.
    phases : numpy.ndarray
        ``(angles, phases)`` phase of each frame's pattern, radians.
    modulation : numpy.ndarray
        ``(angles,)`` modulation depth.
    """

    k: np.ndarray
    phases: np.ndarray
    modulation: np.ndarray


def estimate_pattern(
    raw: np.ndarray,
    angles: int,
    phases: int,
    otf: OTF,
    pixel_size: float,
    *,
    fit_phases: bool = False,
    period: float | None = None,
) -> PatternParameters:
    """Estimate the pattern frequency, phases and modulation of each angle from raw frames.

    Parameters
    ----------
    raw : numpy.ndarray
        ``(angles * phases, Y, X)`` frames, angle-major.
    angles, phases : int
        Pattern orientations and phase steps.
    otf : OTF
        Wide-field OTF.
    pixel_size : float
        Raw pixel size, nm.
    fit_phases : bool
        Estimate each frame's phase (for instruments whose phase steps are not even);
        by default the steps are ``2π / phases`` and only each angle's offset is estimated.
    period : float, optional
        The instrument's nominal pattern period, nm (for two-beam SIM, excitation
        wavelength / (2 × excitation NA)). The pattern frequency is then searched within
        ±5 % of it rather than over the whole pass band: at low signal, where the
        orders' overlap is weak, this keeps structure from being taken for the pattern.

    Returns
    -------
    PatternParameters

    Examples
    --------
    >>> from microsr.simulate.sim import SIMSimulation, simulate_field
    >>> field = simulate_field(SIMSimulation(size=64, photons=2000.0), seed=0)
    >>> found = estimate_pattern(field.raw, 3, 3, OTF.model(1.2, 525.0), 60.0)
    >>> bool(np.abs(found.k - field.parameters["k"]).max() < 0.002)
    True
    """
    raw = check_raw(raw, angles, phases)
    height, width = raw.shape[-2:]
    window = np.outer(*(tukey(n, min(1.0, 2 * _TAPER_PIXELS / (n - 1))) for n in (height, width)))
    spectra = np.fft.fft2((raw - raw.mean()) * window)
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.fftfreq(width)[None, :]
    cutoff = otf.cutoff * pixel_size
    band = (_MIN_PATTERN * cutoff, cutoff)
    if period is not None:
        if not period > 2 * pixel_size:
            raise InputError(
                f"period={period!r} nm: a pattern period must exceed two pixels ({2 * pixel_size:g} nm) to be sampled."
            )
        band = (pixel_size / period * (1 - _PERIOD_TOLERANCE), pixel_size / period * (1 + _PERIOD_TOLERANCE))
    otf_at = _otf_in_pixels(otf, pixel_size)
    h = otf_at(np.hypot(fy, fx))
    nominal = 2 * np.pi * np.arange(phases) / phases
    ks, all_phases, modulations = [], [], []
    for a in range(angles):
        stack = spectra[a * phases : (a + 1) * phases]
        zero, plus = _separate(stack, nominal)[:2]
        k = _find_carrier(zero, plus, otf_at, fy, fx, cutoff, band)
        frame_phases = nominal
        if fit_phases:
            weight = _dc_notch(fy, fx, k, cutoff)
            reference = zero * otf_at(np.hypot(fy + k[0], fx + k[1]))
            # Without the 0 order, frame p at f + k holds (m/2) e^{i phi_p} S(f) and S(f + 2k), which hardly
            # correlates with S(f).
            shifted = _shift_spectrum(stack - stack.mean(axis=0), k)
            frame_phases = np.angle([_regress(reference, frame * h, weight) for frame in shifted])
            zero, plus = _separate(stack, frame_phases)[:2]
        coefficient = _order_correlation(zero, plus, otf_at, fy, fx, cutoff, k)
        ks.append(k)
        all_phases.append(frame_phases + np.angle(coefficient))
        modulations.append(float(np.clip(2 * abs(coefficient), _MIN_MODULATION, 1.0)))
    return PatternParameters(np.array(ks), np.array(all_phases), np.array(modulations))


def check_raw(raw: np.ndarray, angles: int, phases: int) -> np.ndarray:
    raw = np.asarray(raw, dtype=np.float64)
    _check_pattern(angles, phases)
    if raw.ndim != 3 or raw.shape[0] != angles * phases:
        raise InputError(
            f"raw frames of shape {raw.shape}: expected ({angles * phases}, Y, X) = angles × phases frames."
        )
    if min(raw.shape[1:]) < 32:
        raise InputError(f"raw frames of {raw.shape[1]}x{raw.shape[2]} pixels: SIM needs at least 32 x 32.")
    check_finite(raw, "raw frames")
    return raw


def _in_memory(image: Image) -> np.ndarray:
    """The frames as float64, refused up front if they and the reconstruction's working copies (about
    four arrays of their size: spectra, the finer grid) do not fit in memory."""
    return in_memory(image, np.float64, copies=4,
                     remedy="crop the frames to a smaller field of view, or split the time points into files")


def _check_pattern(angles: int, phases: int) -> None:
    if angles < 1 or phases < 3:
        raise InputError(f"angles={angles}, phases={phases}: need at least 1 angle and 3 phases.")


def _otf_in_pixels(otf: OTF, pixel_size: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda f: otf(np.asarray(f) / pixel_size)


def _separate(spectra: np.ndarray, frame_phases: np.ndarray) -> np.ndarray:
    """Orders ``(0, +1, -1)`` from frames with pattern phases ``frame_phases`` (least squares)."""
    mixing = np.stack([np.ones_like(frame_phases), np.exp(1j * frame_phases), np.exp(-1j * frame_phases)], axis=1)
    return np.tensordot(np.linalg.pinv(mixing), spectra, axes=1)


def _shift_spectrum(spectra: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``S(f + k)`` of each spectrum for a sub-pixel ``k`` (cycles/pixel), by a phase ramp in real space."""
    height, width = spectra.shape[-2:]
    ramp = np.exp(-2j * np.pi * (k[0] * np.arange(height)[:, None] + k[1] * np.arange(width)[None, :]))
    return np.fft.fft2(np.fft.ifft2(spectra) * ramp)


def _find_carrier(
    zero: np.ndarray, plus: np.ndarray, otf_at: Callable[[np.ndarray], np.ndarray], fy: np.ndarray, fx: np.ndarray,
    cutoff: float, band: tuple[float, float],
) -> np.ndarray:
    """Pattern frequency: peak of the cross-correlation of the 0 and +1 orders in ``band``, then refined sub-pixel.

    The coarse peak is the best of the strongest FFT bins; the refinement maximises the correlation of
    the +1 order shifted back by ``q`` with the 0 order over the frequencies both carry
    (fairSIM's approach), on ever finer 5 x 5 grids of ``q`` down to 1/400 of a bin.
    """
    radius = np.hypot(fy, fx)
    h = otf_at(radius)
    deconvolve = np.where(radius < cutoff, h / (h**2 + 0.01), 0.0)
    product = np.conj(np.fft.ifft2(zero * deconvolve)) * np.fft.ifft2(plus * deconvolve)
    correlation = np.abs(np.fft.fft2(product))
    correlation[(radius < band[0]) | (radius > band[1])] = 0.0
    # Structure can raise side peaks of this coarse correlation: the strongest few are judged by the overlap.
    peaks = np.argsort(correlation, axis=None)[-_COARSE_CANDIDATES:]
    candidates = [np.array([fy[iy, 0], fx[0, ix]]) for iy, ix in zip(*np.unravel_index(peaks, correlation.shape))]
    k = max(candidates, key=lambda q: _order_overlap(zero, plus, otf_at, fy, fx, cutoff, q))
    bins = np.array([1.0 / zero.shape[0], 1.0 / zero.shape[1]])
    for span in (0.5, 0.2, 0.08, 0.03, 0.01):
        offsets = np.linspace(-span, span, _REFINE_POINTS)
        candidates = [k + bins * (dy, dx) for dy in offsets for dx in offsets]
        k = max(candidates, key=lambda q: _order_overlap(zero, plus, otf_at, fy, fx, cutoff, q))
    return k


def _order_overlap(
    zero: np.ndarray, plus: np.ndarray, otf_at: Callable[[np.ndarray], np.ndarray], fy: np.ndarray, fx: np.ndarray,
    cutoff: float, k: np.ndarray,
) -> float:
    """Normalised correlation ``|<A, B>| / (|A| |B|)`` of :func:`_order_correlation`'s A and B.

    It is 1 where ``B`` is proportional to ``A``, as at the true ``k`` without noise, and
    does not grow with the overlap of the orders as the unnormalised sum would.
    """
    reference = zero * otf_at(np.hypot(fy + k[0], fx + k[1]))
    moved = _shift_spectrum(plus[None], k)[0] * otf_at(np.hypot(fy, fx))
    weight = _dc_notch(fy, fx, k, cutoff)
    norms = np.vdot(reference, weight * reference).real * np.vdot(moved, weight * moved).real
    return abs(np.vdot(reference, weight * moved)) / max(np.sqrt(norms), 1e-300)


def _order_correlation(
    zero: np.ndarray, plus: np.ndarray, otf_at: Callable[[np.ndarray], np.ndarray], fy: np.ndarray, fx: np.ndarray,
    cutoff: float, k: np.ndarray,
) -> complex:
    """Regression of the +1 order moved back by ``k`` on the 0 order: ``(m / 2) e^{i phi}`` at the true ``k``.

    Both are ``H(f) H(f + k) S(f)`` up to that factor, where both carry ``S``; zero frequencies are left out.
    """
    reference = zero * otf_at(np.hypot(fy + k[0], fx + k[1]))
    moved = _shift_spectrum(plus[None], k)[0] * otf_at(np.hypot(fy, fx))
    return _regress(reference, moved, _dc_notch(fy, fx, k, cutoff))


def _dc_notch(fy: np.ndarray, fx: np.ndarray, k: np.ndarray, cutoff: float) -> np.ndarray:
    """Smooth weight leaving out zero frequency of ``S(f)`` and of ``S(f + k)``, where background and leakage sit."""
    width = _DC_EXCLUSION * cutoff
    return (1 - np.exp(-(fy**2 + fx**2) / width**2)) * (1 - np.exp(-((fy + k[0]) ** 2 + (fx + k[1]) ** 2) / width**2))


def _regress(reference: np.ndarray, data: np.ndarray, weight: np.ndarray) -> complex:
    """Weighted least-squares ``c`` in ``data = c * reference``."""
    return complex(np.vdot(reference, weight * data) / max(np.vdot(reference, weight * reference).real, 1e-300))


def reconstruct_sim(
    raw: np.ndarray,
    angles: int,
    phases: int,
    *,
    pixel_size: float,
    otf: OTF,
    wiener: float = 0.05,
    parameters: PatternParameters | None = None,
    period: float | None = None,
) -> tuple[np.ndarray, PatternParameters]:
    """Classical 2D Wiener SIM reconstruction of one acquisition, on a grid twice as fine.

    Parameters
    ----------
    raw : numpy.ndarray
        ``(angles * phases, Y, X)`` frames, angle-major, in camera counts (a constant
        offset such as the camera's base level does not matter).
    angles, phases : int
        Pattern orientations and phase steps (at least 3).
    pixel_size : float
        Raw pixel size, nm.
    otf : OTF
        Wide-field OTF (:meth:`OTF.model` or :func:`read_otf`).
    wiener : float
        Wiener parameter: larger is smoother and less noisy, smaller sharper.
    parameters : PatternParameters, optional
        Pattern to use; default: estimated from ``raw`` (:func:`estimate_pattern`).
    period : float, optional
        Nominal pattern period (nm) to search near when estimating the pattern
        (see :func:`estimate_pattern`).

    Returns
    -------
    image : numpy.ndarray
        ``(2 Y, 2 X)`` float32 reconstruction (pixel size ``pixel_size / 2``).
    parameters : PatternParameters
        The pattern used.

    Examples
    --------
    >>> from microsr.simulate.sim import SIMSimulation, simulate_field
    >>> field = simulate_field(SIMSimulation(size=64, photons=2000.0), seed=0)
    >>> image, found = reconstruct_sim(field.raw, 3, 3, pixel_size=60.0, otf=OTF.model(1.2, 525.0))
    >>> image.shape, found.modulation.shape
    ((128, 128), (3,))
    """
    raw = check_raw(raw, angles, phases)
    if not wiener > 0:
        raise InputError(f"wiener={wiener!r}: give a positive Wiener parameter, e.g. 0.05.")
    if parameters is None:
        parameters = estimate_pattern(raw, angles, phases, otf, pixel_size, period=period)
    height, width = raw.shape[-2:]
    padded, pad = _fade_pad(raw)
    big = (2 * padded.shape[1], 2 * padded.shape[2])
    spectra = np.fft.fft2(padded)
    fy, fx = np.fft.fftfreq(big[0], 0.5)[:, None], np.fft.fftfreq(big[1], 0.5)[None, :]  # cycles per raw pixel
    otf_at = _otf_in_pixels(otf, pixel_size)
    # Fine-grid positions in raw pixels from the first unpadded pixel, the origin of the estimated phases.
    y, x = np.arange(big[0])[:, None] / 2.0 - pad, np.arange(big[1])[None, :] / 2.0 - pad
    numerator = np.zeros(big, np.complex128)
    denominator = np.zeros(big)
    for a in range(angles):
        orders = _separate(spectra[a * phases : (a + 1) * phases], parameters.phases[a])
        k, weight = parameters.k[a], parameters.modulation[a] / 2.0
        for order, sign, w in ((orders[0], 0, 1.0), (orders[1], 1, weight), (orders[2], -1, weight)):
            # Order +-1 holds H(f) S(f -+ k): moved back by -+k it holds H(f +- k) S(f).
            band = np.fft.ifft2(_zero_pad(order, big)) * np.exp(-2j * np.pi * sign * (k[0] * y + k[1] * x))
            h = w * otf_at(np.hypot(fy + sign * k[0], fx + sign * k[1]))
            numerator += h * np.fft.fft2(band)
            denominator += h**2
    extended = otf.cutoff * pixel_size + np.hypot(*parameters.k.T).max()
    apodization = ideal_otf(np.hypot(fy, fx) / extended)
    # Half a fine pixel: raw pixel j spans fine pixels 2j and 2j + 1 (FFT zero padding centres it on 2j).
    half_pixel = np.exp(-2j * np.pi * (fy + fx) * 0.25)
    image = np.fft.ifft2(numerator / (denominator + wiener**2) * apodization * half_pixel).real
    return image[2 * pad : 2 * (pad + height), 2 * pad : 2 * (pad + width)].astype(np.float32), parameters


def _fade_pad(raw: np.ndarray) -> tuple[np.ndarray, int]:
    """Frames padded by reflection and faded to their mean at the new edges, so the FFT sees periodic frames."""
    pad = max(8, min(raw.shape[1:]) // 8)
    padded = np.pad(raw, ((0, 0), (pad, pad + raw.shape[1] % 2), (pad, pad + raw.shape[2] % 2)), mode="reflect")
    weights = [np.ones(n) for n in padded.shape[1:]]
    ramp = np.sin(np.linspace(0.0, np.pi / 2, pad)) ** 2
    for w in weights:
        w[:pad], w[len(w) - pad :] = ramp, ramp[::-1]
    fade = np.outer(*weights)
    mean = raw.mean(axis=(1, 2), keepdims=True)
    return mean + (padded - mean) * fade, pad


def _zero_pad(spectrum: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Spectrum of the same image sampled on a grid ``shape`` (Fourier interpolation), scaled to keep intensities."""
    out = np.zeros(shape, np.complex128)
    h, w = spectrum.shape
    y0, x0 = shape[0] // 2 - h // 2, shape[1] // 2 - w // 2
    out[y0 : y0 + h, x0 : x0 + w] = np.fft.fftshift(spectrum)
    return np.fft.ifftshift(out) * (shape[0] * shape[1] / (h * w))


def reconstruct_file(
    source: PathLike,
    output: PathLike,
    angles: int,
    phases: int,
    *,
    na: float | None = None,
    wavelength: float | None = None,
    otf: PathLike | None = None,
    pixel_size: float | None = None,
    wiener: float = 0.05,
    period: float | None = None,
    overwrite: bool = False,
) -> list[PatternParameters]:
    """Reconstruct every acquisition of a raw SIM file into ``output`` (float32, half the pixel size).

    Parameters
    ----------
    source
        Raw frames: ``(frames, Y, X)`` or ``(T, frames, Y, X)`` (see :func:`sim_frames`),
        TIFF, OME-Zarr or MRC.
    output
        Output image file; ``(Y, X)`` or ``(T, Y, X)`` on the 2x grid.
    angles, phases
        Pattern orientations and phase steps.
    na, wavelength
        Numerical aperture and emission wavelength (nm) of the OTF model; or
    otf
        a measured OTF file (:func:`read_otf`) instead.
    pixel_size
        Raw pixel size, nm; needed when the file does not record it.
    wiener
        Wiener parameter.
    period
        Nominal pattern period, nm, to search near (see :func:`estimate_pattern`).
    overwrite
        Replace an existing output.

    Returns
    -------
    list of PatternParameters
        The pattern estimated for each acquisition.

    Examples
    --------
    >>> reconstruct_file("raw.tif", "sim.tif", 3, 3, na=1.2, wavelength=525.0)  # doctest: +SKIP
    """
    _check_pattern(angles, phases)
    check_image_output(output, overwrite, inputs=[source], dtype=np.float32)
    image = read_raw(source, pixel_size=pixel_size)
    if image.pixel_size is None:
        raise InputError(f"{source}: the file does not record its pixel size; give it (--pixel-size, nm).")
    if otf is not None:
        model = read_otf(otf)
    elif na is not None and wavelength is not None:
        model = OTF.model(na, wavelength)
    else:
        raise InputError("give the OTF: --na and --wavelength for the ideal OTF, or --otf FILE for a measured one.")
    frames, axes = sim_frames(image, angles * phases)
    results = [reconstruct_sim(f, angles, phases, pixel_size=image.pixel_size, otf=model, wiener=wiener, period=period)
               for f in frames]
    stack = np.stack([r[0] for r in results]) if axes.startswith("T") else results[0][0]
    write_image(output, stack, axes=axes, pixel_size=image.pixel_size / 2, overwrite=overwrite, inputs=[source])
    return [r[1] for r in results]


def stack_frames(
    paths: Sequence[PathLike], *, binning: int = 1, pixel_size: float | None = None
) -> tuple[np.ndarray, float]:
    """Raw frames ``(frames, Y, X)`` from one stack file or one file per frame, binned, with their pixel size.

    Parameters
    ----------
    paths
        One ``(frames, Y, X)`` file, or several 2-D files in acquisition order.
    binning
        Mean over ``binning`` x ``binning`` blocks (e.g. 2 to undo DL-SIM's 2x upsampling
        of its raw frames); the pixel size is multiplied by it.
    pixel_size
        Pixel size of the files in nm, overriding their metadata.

    Returns
    -------
    frames : numpy.ndarray
        float64 ``(frames, Y // binning, X // binning)``.
    pixel_size : float
        Of the binned frames, nm.

    Examples
    --------
    >>> frames, nm = stack_frames(["HE_00.tif", "HE_01.tif"], binning=2, pixel_size=30.0)  # doctest: +SKIP
    >>> frames.shape, nm  # doctest: +SKIP
    ((2, 128, 128), 60.0)
    """
    images = [read_raw(p, pixel_size=pixel_size) for p in paths]
    if len(images) == 1:
        data = _in_memory(images[0])
        data = data.reshape(-1, *data.shape[-2:])
    else:
        shapes = {im.shape for im in images}
        if len(shapes) != 1 or images[0].ndim != 2:
            raise InputError(f"frame files must all be 2-D images of one shape; got shapes {sorted(shapes)}.")
        data = np.stack([_in_memory(im) for im in images])
    check_finite(data, str(paths[0]))
    nm = images[0].pixel_size
    if nm is None:
        raise InputError(f"{paths[0]}: the file does not record its pixel size; give it (--pixel-size, nm).")
    if binning < 1:
        raise InputError(f"binning={binning}: give a whole number >= 1.")
    height, width = (n // binning * binning for n in data.shape[-2:])
    data = data[:, :height, :width].reshape(len(data), height // binning, binning, width // binning, binning)
    return data.mean(axis=(2, 4)), nm * binning


