"""Simulated 2D structured illumination microscopy (SIM) acquisitions with exact ground truth.

Forward model of one field of view (Gustafsson 2000), all on a grid twice as fine as
the camera's (the *target grid*, ``pixel_size / 2``):

1. **Structure** ``S``: random smooth filaments (microtubule- or ER-like, their
   curvature set by a persistence length) of random brightness, drawn every few
   nanometres, a Gaussian cross-section of ``width`` nm, on a weak smooth haze.
2. **Illumination**: for angle ``a`` and phase step ``p``, ``1 + m cos(2π k_a·r + φ_a +
   2πp / phases)`` with ``|k_a| = 1 / period``, the angles evenly spaced over 180°
   from a random offset, and a random phase ``φ_a`` per angle.
3. **Optics**: ``S`` times the illumination, blurred by the wide-field OTF of a
   circular pupil (cut-off ``2 NA / wavelength``) or by a measured OTF, integrated over
   2 x 2 target pixels (the camera pixel).
4. **Camera**: scaled so that the bright structure (the 99.9th percentile of the
   wide-field image) receives ``photons`` per pixel and frame, plus ``background``
   photons; Poisson noise, Gaussian read noise (electrons rms), one count per
   photoelectron above ``base_level``, rounded to uint16.

The **target** is ``S`` blurred by the OTF of a pupil whose cut-off is extended by the
pattern frequency (wide-field cut-off ``+ 1 / period``): the resolution an ideal SIM
reconstruction reaches, without its noise or artefacts, so models can be trained
without any real reconstruction. Frames are ordered angle-major: frame ``a * phases + p``.

Raw pixel ``j`` covers target pixels ``2j`` and ``2j + 1``, the convention of bicubic
upsampling in MATLAB (``imresize``) and PyTorch (``align_corners=False``) that DL-SIM
used to bring its raw frames to the target grid.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from scipy import ndimage

from microsr.errors import InputError
from microsr.io import PathLike, atomic_output, write_image
from microsr.optics import cutoff_frequency, ideal_otf, read_otf
from microsr.simulate._ranges import parse_range, show_range

__all__ = [
    "PRESETS",
    "SIMField",
    "SIMSimulation",
    "preset",
    "simulate_field",
    "write_fields",
]

Seed = int | np.random.Generator | np.random.SeedSequence | None

_DRAW_STEP = 0.25  # filament points per target pixel: dense enough that a line looks continuous
_HAZE_SIGMA_NM = 800.0  # correlation length of the smooth haze under the filaments
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

RAW_DIR, TARGET_DIR, STRUCTURE_DIR, FIELDS_NAME = "raw", "target", "structure", "fields.json"
"""The folders and settings file :func:`write_fields` writes."""


def _frequencies(shape: tuple[int, int], pixel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """``(fy, fx)`` of numpy's FFT grid in cycles per unit of ``pixel_size``, broadcastable."""
    fy = np.fft.fftfreq(shape[0], pixel_size)[:, None]
    fx = np.fft.fftfreq(shape[1], pixel_size)[None, :]
    return fy, fx


@dataclass(frozen=True, eq=False)
class SIMSimulation:
    """Settings of a simulated 2D-SIM acquisition (validated on creation).

    Ranges are ``(low, high)`` and drawn uniformly per field; one number means a
    fixed value.

    Parameters
    ----------
    size
        Raw frame side in camera pixels (frames are square); targets are twice as large.
    pixel_size
        Camera pixel size in the sample plane, nm.
    na, wavelength
        Numerical aperture and emission wavelength (nm) of the wide-field OTF.
    otf
        A measured radial OTF file to blur with instead (``.mrc`` or CSV, see
        :func:`microsr.optics.read_otf`); its cut-off replaces ``2 NA / wavelength``.
    angles, phases
        Pattern orientations (evenly spaced over 180°) and phase steps per orientation
        (evenly spaced over 360°).
    period
        Illumination pattern period, nm; its frequency must be under twice the
        wide-field cut-off, so that the ±1 orders overlap the 0 order. It may exceed
        the cut-off itself: TIRF-SIM forms its pattern at the shorter excitation
        wavelength.
    modulation
        Modulation depth ``m`` of the pattern (0-1].
    photons
        Photons per pixel and frame at the bright structure (99.9th percentile of the
        wide-field image); a low range simulates low-light data.
    background
        Out-of-focus and camera background, photons per pixel and frame.
    read_noise
        Camera read noise, electrons rms.
    base_level
        Camera offset, counts (one count per photoelectron).
    density
        Filament length per area, µm per µm².
    persistence
        Persistence length of the filaments' heading, µm: short gives curly
        (ER-like) filaments, long straight (microtubule-like) ones.
    width
        Full width at half maximum of a filament's cross-section, nm.
    haze
        Brightness of a smooth structureless haze under the filaments, relative to
        the brightest filament.
    roundtrip
        Upsample the noisy raw frames bicubically by this factor and bin them back,
        which is what frames distributed pre-upsampled (DL-SIM's ``X2`` test frames)
        become under ``sim evaluate --bin``. The round trip correlates neighbouring
        pixels' noise, which a model must have seen to remove it. 1: off.

    Examples
    --------
    >>> config = SIMSimulation(size=64, angles=3, phases=5)
    >>> config.frames, round(config.resolution_gain, 2)
    (15, 1.44)
    >>> SIMSimulation(period=100.0)
    Traceback (most recent call last):
    ...
    microsr.errors.InputError: period=(100.0, 100.0) nm is under half the wide-field resolution (218.8 nm): the ±1 orders would not overlap the 0 order, so no reconstruction could find the pattern; use a longer period or a higher NA.
    """

    size: int = 128
    pixel_size: float = 60.0
    na: float = 1.2
    wavelength: float = 525.0
    angles: int = 3
    phases: int = 3
    period: tuple[float, float] = (480.0, 510.0)
    modulation: tuple[float, float] = (0.5, 0.9)
    photons: tuple[float, float] = (300.0, 3000.0)
    background: tuple[float, float] = (5.0, 50.0)
    read_noise: float = 1.5
    base_level: float = 100.0
    density: tuple[float, float] = (1.0, 3.5)
    persistence: tuple[float, float] = (2.0, 20.0)
    width: float = 40.0
    haze: tuple[float, float] = (0.0, 0.08)
    roundtrip: int = 1
    otf: str | None = None

    def __post_init__(self) -> None:
        for name in ("size", "angles", "phases", "roundtrip"):
            value = getattr(self, name)
            if not (float(value).is_integer() and value >= 1):
                raise InputError(f"{name}={value!r}: give a whole number ≥ 1.")
            object.__setattr__(self, name, int(value))
        if self.size < 16:
            raise InputError(f"size={self.size}: frames need at least 16 pixels per side.")
        if self.phases < 3:
            raise InputError(f"phases={self.phases}: separating the pattern's three orders needs at least 3 phases.")
        for name, positive in (
            ("period", True), ("modulation", True), ("photons", True), ("background", False),
            ("density", False), ("persistence", True), ("haze", False),
        ):
            object.__setattr__(self, name, parse_range(name, getattr(self, name), positive))
        for name, value, ok, expected in (
            ("pixel_size", self.pixel_size, self.pixel_size > 0, "a positive number of nm"),
            ("na", self.na, 0 < self.na < 1.7, "a numerical aperture in (0, 1.7)"),
            ("wavelength", self.wavelength, self.wavelength > 0, "a positive number of nm"),
            ("read_noise", self.read_noise, self.read_noise >= 0, "electrons rms ≥ 0"),
            ("base_level", self.base_level, 0 <= self.base_level < 65535, "counts in [0, 65535)"),
            ("width", self.width, self.width > 0, "a positive number of nm"),
        ):
            if not (math.isfinite(value) and ok):
                raise InputError(f"{name}={value!r}: give {expected}.")
        if self.modulation[1] > 1:
            raise InputError(f"modulation={self.modulation!r}: a modulation depth is at most 1.")
        if self.otf is not None:
            object.__setattr__(self, "otf", str(self.otf))
        finest = 1.0 / self.cutoff
        if self.period[0] <= finest / 2:
            raise InputError(
                f"period={self.period!r} nm is under half the wide-field resolution ({finest:.1f} nm): the ±1 orders "
                "would not overlap the 0 order, so no reconstruction could find the pattern; use a longer period or "
                "a higher NA."
            )
        if 0.5 / self.pixel_size < self.cutoff / 2:
            raise InputError(
                f"pixel_size={self.pixel_size:g} nm is too coarse for a wide-field cut-off of {self.cutoff * 1000:.2f} "
                "cycles/µm: SIM needs at least half the Nyquist rate of the wide-field cut-off; use smaller pixels."
            )

    @property
    def frames(self) -> int:
        """Raw frames per field: ``angles * phases``."""
        return self.angles * self.phases

    @property
    def cutoff(self) -> float:
        """Wide-field OTF cut-off, cycles per nm: the measured OTF's, or ``2 NA / wavelength``."""
        return _measured_otf(self.otf).cutoff if self.otf else cutoff_frequency(self.na, self.wavelength)

    def wide_field_otf(self, frequency: np.ndarray) -> np.ndarray:
        """The wide-field OTF at ``frequency`` (cycles per nm): the measured one, or the ideal pupil's.

        Examples
        --------
        >>> SIMSimulation().wide_field_otf(np.array([0.0, 1 / 218.75])).round(3).tolist()
        [1.0, 0.0]
        """
        if self.otf:
            return _measured_otf(self.otf)(frequency)
        return ideal_otf(np.abs(frequency) / self.cutoff)

    @property
    def resolution_gain(self) -> float:
        """SIM cut-off over wide-field cut-off at the mean period: ``1 + 1 / (period * cutoff)``."""
        return 1.0 + 1.0 / (float(np.mean(self.period)) * self.cutoff)

    def replace(self, **changes: Any) -> SIMSimulation:
        """Return a copy with some settings changed (validated again).

        Examples
        --------
        >>> SIMSimulation().replace(phases=5).frames
        15
        """
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """A short human-readable summary of the settings.

        Examples
        --------
        >>> print(SIMSimulation().describe().splitlines()[0])
        128 × 128 px of 60 nm, 3 angles × 3 phases, period 480-510 nm, modulation 0.5-0.9
        """
        return "\n".join([
            f"{self.size} × {self.size} px of {self.pixel_size:g} nm, {self.angles} angles × {self.phases} phases, "
            f"period {show_range(self.period)} nm, modulation {show_range(self.modulation)}",
            (f"measured OTF {self.otf}" if self.otf else f"NA {self.na:g} at {self.wavelength:g} nm")
            + f" (resolution {1 / self.cutoff:.0f} nm wide-field, about {1 / self.cutoff / self.resolution_gain:.0f}"
            " nm SIM)",
            f"{show_range(self.photons)} photons at the bright structure, background {show_range(self.background)} photons, "
            f"read noise {self.read_noise:g} e-, base level {self.base_level:g}",
            f"filaments {show_range(self.density)} µm/µm², persistence {show_range(self.persistence)} µm, width "
            f"{self.width:g} nm, haze {show_range(self.haze)}"
            + (f", bicubic x{self.roundtrip} and binned back" if self.roundtrip > 1 else ""),
        ])


PRESETS: dict[str, SIMSimulation] = {
    # 3 angles x 3 phases with the optics of the DL-SIM microtubule data: 60 nm camera pixels (their 30 nm
    # reconstructions at 2x), pattern period 495 nm (the +1 order of every angle of HE_00..14 sits at
    # 0.121 cycles per pixel), wide-field signal up to about 0.27 cycles per pixel (NA 1.2 at 525 nm).
    "default": SIMSimulation(),
    # The same with the DL-SIM data's 5 phase steps (15 frames).
    "dlsim": SIMSimulation(phases=5),
    # DL-SIM's low-light frames (LE_*): about 1/27 of the normal-light counts (their maxima 196 vs 5315), and
    # at 2x2 binning a single frame looks like 3-12 photons at the bright structure with 1-6 of background over
    # denser filaments. They were distributed bicubically upsampled x2: binned back, the high-pass noise of
    # neighbouring pixels correlates 0.39 (0.13 in a plain simulation, 0.32 after the same round trip).
    "dlsim-low": SIMSimulation(phases=5, photons=(3.0, 12.0), background=(1.0, 6.0), density=(3.0, 6.0), roundtrip=2),
}
"""Named settings; ``microsr sim simulate --preset NAME`` starts from one."""


def preset(name: str) -> SIMSimulation:
    """Return the named settings of :data:`PRESETS`.

    Examples
    --------
    >>> preset("dlsim").frames
    15
    """
    if name not in PRESETS:
        raise InputError(f"unknown SIM preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return PRESETS[name]


class SIMField(NamedTuple):
    """One simulated field of view.

    Attributes
    ----------
    raw : numpy.ndarray
        ``(frames, size, size)`` uint16 camera counts, angle-major.
    target : numpy.ndarray
        ``(2 size, 2 size)`` float32: the structure seen through the extended SIM OTF.
    structure : numpy.ndarray
        ``(2 size, 2 size)`` float32 ground truth (brightest filament about 1).
    parameters : dict
        What was drawn: ``angles`` (degrees), ``period`` (nm), ``phases`` (radians of
        phase step 0, per angle), ``modulation``, ``photons``, ``background``, and
        ``k`` (``(angles, 2)`` pattern frequency ``(ky, kx)`` in cycles per raw pixel).
    """

    raw: np.ndarray
    target: np.ndarray
    structure: np.ndarray
    parameters: dict[str, Any]


def simulate_field(config: SIMSimulation, seed: Seed = None) -> SIMField:
    """Simulate the raw frames, SIM target and ground truth of one field of view.

    Parameters
    ----------
    config : SIMSimulation
        Settings.
    seed : int, Generator or SeedSequence, optional
        Randomness; the same seed gives the same field.

    Returns
    -------
    SIMField

    Examples
    --------
    >>> field = simulate_field(SIMSimulation(size=32), seed=1)
    >>> field.raw.shape, field.raw.dtype, field.target.shape
    ((9, 32, 32), dtype('uint16'), (64, 64))
    >>> bool(np.isclose(np.hypot(*field.parameters["k"][0]), 60 / field.parameters["period"]))  # 1 / period
    True
    """
    rng = np.random.default_rng(seed)
    fine = config.pixel_size / 2.0
    pad = math.ceil(4.0 / config.cutoff / fine)  # two PSF widths: 2 wavelength / NA for the ideal pupil
    side = 2 * config.size + 2 * pad
    structure = _structure(config, side, fine, rng)

    period = float(rng.uniform(*config.period))
    first = rng.uniform(0.0, 180.0)
    angles = (first + 180.0 * np.arange(config.angles) / config.angles) % 180.0
    offsets = rng.uniform(0.0, 2 * np.pi, config.angles)
    modulation = float(rng.uniform(*config.modulation))
    k = np.stack([np.sin(np.radians(angles)), np.cos(np.radians(angles))], axis=1) / period  # (ky, kx) cycles/nm

    fy, fx = _frequencies((side, side), fine)
    wide_field = config.wide_field_otf(np.hypot(fy, fx))
    # Target-grid coordinates (nm) with raw pixel j spanning target pixels 2j, 2j + 1 inside the crop.
    y = (np.arange(side) - pad)[:, None] * fine
    x = (np.arange(side) - pad)[None, :] * fine
    expected = np.empty((config.frames, config.size, config.size))
    for a in range(config.angles):
        for p in range(config.phases):
            phase = offsets[a] + 2 * np.pi * p / config.phases
            pattern = 1.0 + modulation * np.cos(2 * np.pi * (k[a, 0] * y + k[a, 1] * x) + phase)
            blurred = np.fft.ifft2(np.fft.fft2(structure * pattern) * wide_field).real
            expected[a * config.phases + p] = _bin2(blurred[pad:-pad, pad:-pad])

    photons = float(rng.uniform(*config.photons))
    background = float(rng.uniform(*config.background))
    level = np.percentile(expected.mean(axis=0), 99.9) or 1.0  # an empty field has no bright level
    electrons = rng.poisson(np.clip(expected, 0, None) * (photons / level) + background).astype(np.float64)
    electrons += rng.normal(0.0, config.read_noise, electrons.shape) if config.read_noise else 0.0
    raw = electrons + config.base_level
    if config.roundtrip > 1:
        raw = _bicubic_roundtrip(raw, config.roundtrip)
    raw = np.clip(np.rint(raw), 0, 65535).astype(np.uint16)

    extended = ideal_otf(np.hypot(fy, fx) / (config.cutoff + 1.0 / period))
    target = np.fft.ifft2(np.fft.fft2(structure) * extended).real[pad:-pad, pad:-pad]
    parameters = {
        "angles": angles.tolist(), "period": period, "phases": offsets.tolist(), "modulation": modulation,
        "photons": photons, "background": background, "k": (k * config.pixel_size).tolist(),
    }
    return SIMField(raw, target.astype(np.float32), structure[pad:-pad, pad:-pad].astype(np.float32), parameters)


def write_fields(output: PathLike, config: SIMSimulation, fields: int, seed: int = 0, *,
                 overwrite: bool = False) -> Path:
    """Simulate ``fields`` fields of view into a training folder (atomically: complete or absent).

    Each field is ``raw/NNNN.tif`` (frames along C, angle-major, uint16, camera pixel
    size), ``target/NNNN.tif`` (the SIM target, float32, half the pixel size) and
    ``structure/NNNN.tif`` (the ground truth); ``fields.json`` holds the settings and
    each field's drawn pattern. ``raw`` and ``target`` pair by file name for training
    (``data: {lr: OUTPUT/raw, hr: OUTPUT/target, frame_axis: C, channels: [...]}``, ``scale: 2``).

    Parameters
    ----------
    output
        Folder to create.
    config
        The simulation settings.
    fields
        Number of fields of view.
    seed
        The same seed gives the same fields.
    overwrite
        Replace ``output`` if it exists.

    Returns
    -------
    Path
        ``output``.

    Examples
    --------
    >>> import tempfile
    >>> folder = write_fields(Path(tempfile.mkdtemp()) / "fields", SIMSimulation(size=32), fields=2)
    >>> sorted(p.name for p in (folder / "raw").iterdir())
    ['0000.tif', '0001.tif']
    """
    if fields < 1:
        raise InputError(f"fields={fields}: simulate at least one field of view.")
    records = []
    with atomic_output(output, overwrite=overwrite) as folder:
        for name in (RAW_DIR, TARGET_DIR, STRUCTURE_DIR):
            (folder / name).mkdir(parents=True)
        for index, field_seed in enumerate(np.random.SeedSequence(seed).spawn(fields)):
            field = simulate_field(config, field_seed)
            name = f"{index:04d}.tif"
            write_image(folder / RAW_DIR / name, field.raw, axes="CYX", pixel_size=config.pixel_size)
            write_image(folder / TARGET_DIR / name, field.target, pixel_size=config.pixel_size / 2)
            write_image(folder / STRUCTURE_DIR / name, field.structure, pixel_size=config.pixel_size / 2)
            records.append({"file": name, **field.parameters})
        settings = {f: getattr(config, f) for f in config.__dataclass_fields__}
        (folder / FIELDS_NAME).write_text(json.dumps({"settings": settings, "fields": records}, indent=1) + "\n")
    return Path(output)


@functools.lru_cache(maxsize=4)
def _measured_otf(path: str) -> Any:
    return read_otf(path)


def _bicubic_roundtrip(frames: np.ndarray, factor: int) -> np.ndarray:
    """Frames ``(n, h, w)`` upsampled bicubically by ``factor`` (as microsr upsamples) and mean-binned back."""
    import torch
    import torch.nn.functional as F

    n, h, w = frames.shape
    up = F.interpolate(torch.from_numpy(frames)[None], scale_factor=factor, mode="bicubic", align_corners=False)[0]
    return up.numpy().reshape(n, h, factor, w, factor).mean(axis=(2, 4))


def _bin2(image: np.ndarray) -> np.ndarray:
    """Mean over 2 x 2 blocks: the camera pixel integrating the finer grid."""
    h, w = image.shape
    return image.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def _structure(config: SIMSimulation, side: int, fine: float, rng: np.random.Generator) -> np.ndarray:
    """Filaments of random brightness on a smooth haze, ``side`` x ``side`` target pixels of ``fine`` nm."""
    canvas = np.zeros((side, side))
    area_um2 = (side * fine / 1000.0) ** 2
    remaining = rng.uniform(*config.density) * area_um2 * 1000.0 / fine  # filament length left, in target pixels
    persistence = rng.uniform(*config.persistence) * 1000.0 / fine
    while remaining > 0:
        length = min(remaining, rng.uniform(0.25, 1.0) * side * math.sqrt(2))
        remaining -= length
        steps = max(2, int(length / _DRAW_STEP))
        heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0.0, math.sqrt(_DRAW_STEP / persistence), steps))
        ys = rng.uniform(0, side) + np.cumsum(_DRAW_STEP * np.sin(heading))
        xs = rng.uniform(0, side) + np.cumsum(_DRAW_STEP * np.cos(heading))
        _splat(canvas, ys, xs, rng.uniform(0.3, 1.0) * _DRAW_STEP)
    sigma = config.width / _FWHM_PER_SIGMA / fine
    filaments = ndimage.gaussian_filter(canvas, sigma, mode="wrap")
    peak = filaments.max()
    if peak > 0:
        filaments /= peak
    haze = ndimage.gaussian_filter(rng.random((side, side)), _HAZE_SIGMA_NM / fine, mode="wrap")
    haze = (haze - haze.min()) / max(np.ptp(haze), 1e-12)
    return filaments + rng.uniform(*config.haze) * haze


def _splat(canvas: np.ndarray, ys: np.ndarray, xs: np.ndarray, weight: float) -> None:
    """Add points at sub-pixel positions with bilinear weights (those outside are dropped)."""
    side = canvas.shape[0]
    inside = (ys >= 0) & (ys < side - 1) & (xs >= 0) & (xs < side - 1)
    ys, xs = ys[inside], xs[inside]
    y0, x0 = ys.astype(int), xs.astype(int)
    dy, dx = ys - y0, xs - x0
    for oy, ox, w in ((0, 0, (1 - dy) * (1 - dx)), (0, 1, (1 - dy) * dx), (1, 0, dy * (1 - dx)), (1, 1, dy * dx)):
        np.add.at(canvas, (y0 + oy, x0 + ox), weight * w)
