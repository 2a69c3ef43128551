"""Simulated single-molecule localization microscopy (STORM/PALM) with exact ground truth.

Emitters are placed on a structure (random filaments like microtubules, uniformly,
or following a density mask), switch on and off (mean on-time, off-time,
bleaching), and are imaged as ThunderSTORM's data generator images them
(Ovesný et al., Bioinformatics 30, 2389, 2014; ``DataGenerator.renderFrame``):

1. expected photons per pixel: each emitter's integrated-Gaussian PSF (the
   Gaussian integrated over the pixel with ``erf``) times its photon count, plus a
   uniform background;
2. Poisson shot noise (photoelectrons; quantum efficiency is folded into the photons);
3. with an EM gain, electron multiplication drawn from a Gamma distribution
   (shape = photoelectrons, scale = gain), which doubles the variance;
4. Gaussian readout noise in electrons (ThunderSTORM's camera "readout noise");
5. A/D conversion: electrons / (photoelectrons per A/D count) + base level,
   rounded and clipped to 16 bits.

Positions follow :mod:`microsr.smlm.localize`'s convention: nanometres from the image's
top-left corner, so pixel ``j`` spans ``[j, j + 1) * pixel_size``; frames are 1-based.

The density is the number of emitters **on** per µm² in each frame (ThunderSTORM's
"Density [um^-2]"), whatever the blinking: a stack of ``T`` frames of ``H × W``
pixels holds on average ``density * T * H * W * pixel_size² / 10⁶`` localizations.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from scipy.special import erf

from microsr.errors import InputError
from microsr.io import PathLike, atomic_output, check_output, read_image, write_image
from microsr.simulate._ranges import parse_range, show_range
from microsr.smlm.render import render
from microsr.smlm.table import LOCALIZATION_DTYPE, localization_table, write_localizations

__all__ = [
    "PRESETS",
    "SMLMSimulation",
    "SMLMVariety",
    "preset",
    "psf_photons",
    "render_frames",
    "render_targets",
    "simulate_batch",
    "read_structure",
    "simulate_stack",
    "write_stack",
]

STACK_NAME, TRUTH_NAME = "stack.tif", "ground_truth.csv"
"""The files :func:`write_stack` writes."""

Seed = int | np.random.Generator | None

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_PSF_RADIUS_SIGMAS = 4.0  # the PSF is integrated out to ±4 sigma: 99.99 % of its photons
_FILAMENT_STEP_NM = 100.0  # filaments are polylines; labels sit anywhere along each step
_PERSISTENCE_NM = 5000.0  # heading diffusion: microtubules look gently curved over a few µm
_LABEL_SPREAD_NM = 10.0  # std of a label's offset from the filament axis (tubule radius + antibody)
_AREA_PER_FILAMENT_UM2 = 7.0  # default filament count: one per 7 µm², six in a 6.4 µm field
_BURN_IN_LIFETIMES = 5.0  # blinking starts this many molecule lifetimes before frame 1 (steady state)
_CHUNK_PIXELS = 2**20  # frames are rendered about a million pixels at a time
_TILE = 64  # tile side for rendering PSFs (see _expected_photons)


@dataclass(frozen=True, eq=False)
class SMLMSimulation:
    """Settings of a simulated SMLM acquisition (validated on creation).

    Ranges are ``(low, high)`` and sampled uniformly; a single number means a fixed
    value. Camera and emitter settings are named after ThunderSTORM's "Camera setup"
    and "Data generator" dialogs (macro keys in brackets).

    Parameters
    ----------
    size
        Frame size in pixels, ``(rows, columns)`` or one number for a square.
    pixel_size
        Camera pixel size in the sample plane, nm ("Pixel size [nm]", ``pixelsize``).
    density
        Emitters **on** per µm² per frame ("Density [um^-2]", ``density``).
    structure
        Where emitters sit: ``"filaments"`` (random smooth curves, microtubule-like),
        ``"uniform"``, or a 2-D array of non-negative weights stretched over the field
        (ThunderSTORM's "Density mask").
    filaments
        Number of filaments in the field (default: one per 7 µm², at least 2).
    fwhm
        PSF full width at half maximum range, nm; drawn per molecule
        (integrated Gaussian PSF, "FWHM range (from:to) [nm]").
    photons
        Photons per emitter per frame ("Intensity range (from:to) [photons]",
        ``intensityrange``); drawn per emitter and frame.
    background
        Mean background photons per pixel, drawn per frame (the generator's
        background, ``addPoisssonVar``).
    photons_per_adu
        Photoelectrons per A/D count ("Photoelectrons per A/D count", ``photons2adu``).
    base_level
        Offset added by the digitizer, A/D counts ("Base level [A/D counts]", ``offset``).
    em_gain
        EM gain of an EMCCD ("EM gain", ``isemgain``/``gainem``); ``None`` for a
        camera without electron multiplication (CCD, sCMOS).
    read_noise
        Readout noise, electrons rms per pixel ("Readout noise", ``readoutnoise``).
    on_time
        Mean number of consecutive frames a molecule stays on (≥ 1; 1 = one frame).
    off_time
        Mean number of frames a molecule stays off before it blinks again (≥ 1).
    bleach
        Probability that a molecule bleaches at the end of each on period
        (1 = it is on once, as in ThunderSTORM's frame-by-frame generator).

    Examples
    --------
    >>> config = SMLMSimulation(size=32, density=2.0, photons=(500, 1500))
    >>> config.size, config.fwhm, round(config.emitters_per_frame, 2)
    ((32, 32), (200.0, 300.0), 20.48)
    >>> SMLMSimulation(fwhm=(300, 200))
    Traceback (most recent call last):
    ...
    microsr.errors.InputError: fwhm=(300.0, 200.0): LOW is above HIGH; give a range LOW,HIGH with LOW ≤ HIGH.
    """

    size: tuple[int, int] = (64, 64)
    pixel_size: float = 100.0
    density: float = 2.0
    structure: str | np.ndarray = "filaments"
    filaments: int | None = None
    fwhm: tuple[float, float] = (200.0, 300.0)
    photons: tuple[float, float] = (80.0, 2050.0)
    background: tuple[float, float] = (20.0, 20.0)
    photons_per_adu: float = 1.0
    base_level: float = 100.0
    em_gain: float | None = None
    read_noise: float = 0.0
    on_time: float = 1.0
    off_time: float = 100.0
    bleach: float = 1.0

    def __post_init__(self) -> None:
        size = (self.size, self.size) if np.ndim(self.size) == 0 else tuple(self.size)
        if len(size) != 2 or not all(float(n).is_integer() and n >= 1 for n in size):
            raise InputError(f"size={self.size!r}: give ROWS,COLUMNS (or one number) of pixels ≥ 1.")
        object.__setattr__(self, "size", (int(size[0]), int(size[1])))
        for name, positive in (("fwhm", True), ("photons", False), ("background", False)):
            object.__setattr__(self, name, parse_range(name, getattr(self, name), positive))
        _check(self.pixel_size, "pixel_size", self.pixel_size > 0, "a positive number of nm")
        _check(self.density, "density", self.density >= 0, "a number of emitters per µm² ≥ 0")
        _check(self.photons_per_adu, "photons_per_adu", self.photons_per_adu > 0, "a positive number")
        _check(self.base_level, "base_level", 0 <= self.base_level < 65535, "a number of A/D counts in [0, 65535)")
        _check(self.read_noise, "read_noise", self.read_noise >= 0, "electrons rms ≥ 0")
        _check(self.on_time, "on_time", self.on_time >= 1, "a mean number of frames ≥ 1")
        _check(self.off_time, "off_time", self.off_time >= 1, "a mean number of frames ≥ 1")
        _check(self.bleach, "bleach", 0 < self.bleach <= 1, "a probability in (0, 1]")
        if self.em_gain is not None:
            _check(self.em_gain, "em_gain", self.em_gain >= 1, "a gain ≥ 1, or None without EM gain")
        if self.filaments is not None and not (float(self.filaments).is_integer() and self.filaments >= 1):
            raise InputError(f"filaments={self.filaments!r}: give a whole number of filaments ≥ 1.")
        if isinstance(self.structure, str):
            if self.structure not in ("filaments", "uniform"):
                raise InputError(
                    f"structure={self.structure!r}: choose 'filaments', 'uniform' or a density mask (2-D array)."
                )
        else:
            mask = np.asarray(self.structure, np.float64)
            if mask.ndim != 2 or not np.isfinite(mask).all() or (mask < 0).any() or not mask.sum() > 0:
                raise InputError(
                    "structure: a density mask must be a 2-D image of finite, non-negative weights that are not "
                    f"all zero (got shape {mask.shape})."
                )
            object.__setattr__(self, "structure", mask)

    @property
    def field_um2(self) -> float:
        """Area of one frame in µm²."""
        return self.size[0] * self.size[1] * (self.pixel_size / 1000.0) ** 2

    @property
    def emitters_per_frame(self) -> float:
        """Mean number of emitters on in a frame (density × area)."""
        return self.density * self.field_um2

    def replace(self, **changes: Any) -> SMLMSimulation:
        """Return a copy with some settings changed (validated again).

        Examples
        --------
        >>> SMLMSimulation().replace(density=5.0).density
        5.0
        """
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """A short human-readable summary of the settings.

        Examples
        --------
        >>> print(SMLMSimulation(size=32).describe().splitlines()[0])
        32 × 32 px of 100 nm, filaments, 2 emitters on per µm² per frame (20.5 per frame)
        """
        structure = self.structure if isinstance(self.structure, str) else f"mask {self.structure.shape}"
        camera = f"EM gain {self.em_gain:g}, " if self.em_gain is not None else ""
        return "\n".join([
            f"{self.size[0]} × {self.size[1]} px of {self.pixel_size:g} nm, {structure}, {self.density:g} emitters "
            f"on per µm² per frame ({self.emitters_per_frame:.1f} per frame)",
            f"PSF FWHM {show_range(self.fwhm)} nm, {show_range(self.photons)} photons per emitter, background "
            f"{show_range(self.background)} photons per pixel",
            f"camera: {camera}{self.photons_per_adu:g} photoelectrons per A/D count, base level "
            f"{self.base_level:g}, readout noise {self.read_noise:g} e-",
            f"blinking: on {self.on_time:g} frames, off {self.off_time:g} frames, bleaching {self.bleach:g} "
            "per on period",
        ])


def _check(value: float, name: str, ok: bool, expected: str) -> None:
    if not (math.isfinite(value) and ok):
        raise InputError(f"{name}={value!r}: give {expected}.")


@dataclass(frozen=True, eq=False)
class SMLMVariety:
    """A broad range of acquisitions: each draw is one microscope, camera and sample (for a model that travels).

    Ranges are ``(low, high)``; density, photons, background and camera gains are
    drawn log-uniformly (they span decades), the rest uniformly. One draw
    (:meth:`draw`) is an :class:`SMLMSimulation`: a median photon count ``M`` with
    emitters uniform in ``M × (1 ± spread)``, a PSF FWHM ``F`` with molecules in
    ``F × (1 ± 8 %)``, and either an EMCCD (EM gain, large readout noise divided
    by the gain) or an sCMOS/CCD camera (no EM gain, a few electrons of readout noise).

    Parameters
    ----------
    size, pixel_size
        Frame size (pixels) and camera pixel size (nm), as in :class:`SMLMSimulation`.
    density
        Emitters on per µm² per frame.
    photons
        Median photons per emitter per frame.
    photon_spread
        Relative half-width of the photons around the median.
    background
        Background photons per pixel.
    fwhm
        PSF FWHM, nm.
    emccd
        Fraction of draws with an EMCCD camera.
    em_gain
        EM gain of the EMCCD draws.
    adu_per_electron_em
        EMCCD A/D counts per photoelectron after gain, ``em_gain / photons_per_adu``.
    photons_per_adu
        Photoelectrons per A/D count of the sCMOS/CCD draws.
    read_noise_em, read_noise
        Readout noise (electrons rms) of EMCCD and sCMOS/CCD draws.
    base_level
        Base level, A/D counts.
    filaments
        Fraction of draws with emitters on filaments (the others uniform).

    Examples
    --------
    >>> draw = SMLMVariety().draw(np.random.default_rng(0))
    >>> isinstance(draw, SMLMSimulation), draw.size, 0.5 <= draw.density <= 8
    (True, (48, 48), True)
    """

    size: tuple[int, int] = (48, 48)
    pixel_size: float = 100.0
    density: tuple[float, float] = (0.5, 8.0)
    photons: tuple[float, float] = (300.0, 6000.0)
    photon_spread: tuple[float, float] = (0.1, 0.7)
    background: tuple[float, float] = (3.0, 200.0)
    fwhm: tuple[float, float] = (180.0, 420.0)
    emccd: float = 0.5
    em_gain: tuple[float, float] = (10.0, 300.0)
    adu_per_electron_em: tuple[float, float] = (0.3, 30.0)
    photons_per_adu: tuple[float, float] = (0.2, 4.0)
    read_noise_em: tuple[float, float] = (5.0, 100.0)
    read_noise: tuple[float, float] = (0.5, 3.0)
    base_level: tuple[float, float] = (0.0, 1000.0)
    filaments: float = 0.5

    def __post_init__(self) -> None:
        # An SMLMSimulation checks size and pixel size; the ranges are checked here.
        SMLMSimulation(size=self.size, pixel_size=self.pixel_size)
        object.__setattr__(self, "size", SMLMSimulation(size=self.size).size)
        for item in dataclasses.fields(self):
            if item.name in ("size", "pixel_size", "emccd", "filaments"):
                continue
            positive = item.name not in ("base_level", "photon_spread")
            object.__setattr__(self, item.name, parse_range(item.name, getattr(self, item.name), positive))
        _check(self.photon_spread[1], "photon_spread", self.photon_spread[1] < 1, "a relative spread below 1")
        _check(self.base_level[1], "base_level", self.base_level[1] < 65535, "A/D counts below 65535")
        for name in ("emccd", "filaments"):
            _check(getattr(self, name), name, 0 <= getattr(self, name) <= 1, "a fraction in [0, 1]")

    def replace(self, **changes: Any) -> SMLMVariety:
        """Return a copy with some ranges changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def draw(self, rng: np.random.Generator) -> SMLMSimulation:
        """One acquisition from these ranges."""
        def log_uniform(pair: tuple[float, float]) -> float:
            return float(math.exp(rng.uniform(math.log(pair[0]), math.log(pair[1]))))

        photons, spread, fwhm = log_uniform(self.photons), rng.uniform(*self.photon_spread), rng.uniform(*self.fwhm)
        if rng.random() < self.emccd:
            gain = log_uniform(self.em_gain)
            camera = {"em_gain": gain, "photons_per_adu": gain / log_uniform(self.adu_per_electron_em),
                      "read_noise": log_uniform(self.read_noise_em)}
        else:
            camera = {"em_gain": None, "photons_per_adu": log_uniform(self.photons_per_adu),
                      "read_noise": log_uniform(self.read_noise)}
        return SMLMSimulation(
            size=self.size, pixel_size=self.pixel_size, density=log_uniform(self.density),
            structure="filaments" if rng.random() < self.filaments else "uniform",
            fwhm=(fwhm * 0.92, fwhm * 1.08), photons=(photons * (1 - spread), photons * (1 + spread)),
            background=log_uniform(self.background), base_level=rng.uniform(*self.base_level), **camera,
        )

    def describe(self) -> str:
        """A short human-readable summary of the ranges."""
        return (
            f"{self.size[0]} × {self.size[1]} px of {self.pixel_size:g} nm; per acquisition: {show_range(self.density)} "
            f"emitters per µm², median {show_range(self.photons)} photons (± {show_range(self.photon_spread)}), "
            f"background {show_range(self.background)} photons, PSF FWHM {show_range(self.fwhm)} nm, "
            f"{self.emccd:.0%} EMCCD (gain {show_range(self.em_gain)}), base level {show_range(self.base_level)}"
        )


PRESETS: dict[str, SMLMSimulation | SMLMVariety] = {
    # DSIR's ThunderSTORM training settings (its README), on filaments in a 64 × 64 field.
    "default": SMLMSimulation(),
    # DSIR's training data exactly: 26 × 26 px, uniformly placed emitters (ThunderSTORM without a mask).
    "dsir": SMLMSimulation(size=26, structure="uniform"),
    # CALIBRATED WITH THE GROUND TRUTH: an upper bound only, not a calibration a user can do. Fitted to
    # Deep-STORM's test stack (testStack_SimulatedMicrotubules.tif, a ThunderSTORM re-simulation of the EPFL 2013
    # "Bundled Tubes High Density" data) using its exact positions: 225 emitters per 6.4 µm field (5.5 per µm²);
    # least-squares PSF sigma 110 nm (FWHM 259 nm); background 140 counts = base level 100 + 20 photons at 2 counts
    # per photon; EM excess noise (EM gain / photoelectrons per count = 2: 100 / 50 is one such camera); photons
    # 1000-2000 reproduce the per-emitter least-squares photon quartiles at the true positions (1105, 1493, 1891);
    # 10 filaments come closest to the stack's upper pixel percentiles. A model trained on it and scored on that
    # stack was tuned with the answer key; `microsr smlm calibrate` estimates such settings from frames alone.
    # tests/test_simulate_smlm.py::test_deepstorm_test_preset_matches_the_real_stack checks the match.
    "deepstorm-test": SMLMSimulation(
        size=64, pixel_size=100.0, density=5.5, filaments=10, fwhm=(250.0, 270.0), photons=(1000.0, 2000.0),
        background=20.0, photons_per_adu=50.0, em_gain=100.0, base_level=100.0,
    ),
    # A broad range of acquisitions (no instrument in particular), what the shipped model is trained on.
    "broad": SMLMVariety(),
}
"""Named settings; ``microsr smlm simulate --preset NAME`` starts from one (except ``broad``, a range)."""


def preset(name: str) -> SMLMSimulation | SMLMVariety:
    """Return the named settings of :data:`PRESETS`.

    Examples
    --------
    >>> preset("dsir").size
    (26, 26)
    """
    if name not in PRESETS:
        raise InputError(f"unknown SMLM preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return PRESETS[name]


# --------------------------------------------------------------------------- public API


def simulate_stack(config: SMLMSimulation, frames: int, seed: Seed = None) -> tuple[np.ndarray, np.ndarray]:
    """Simulate an SMLM stack of blinking emitters on one structure, with its ground truth.

    Molecules are activated at a constant rate from before the first frame (so
    the first frames are already in steady state) and blink with the settings'
    on-time, off-time and bleaching; the rate gives ``config.density`` emitters on
    per µm² per frame on average.

    Parameters
    ----------
    config
        The settings.
    frames
        Number of frames.
    seed
        Seed or generator; the same seed gives the same stack.

    Returns
    -------
    stack : numpy.ndarray
        ``(frames, rows, columns)`` ``uint16`` camera counts.
    truth : numpy.ndarray
        Localization table of every emitter on in every frame (sorted by frame):
        position, PSF ``sigma`` (nm) and ``intensity`` (photons).

    Examples
    --------
    >>> stack, truth = simulate_stack(SMLMSimulation(size=32), frames=5, seed=0)
    >>> stack.shape, stack.dtype, sorted(set(truth["frame"].tolist()))
    ((5, 32, 32), dtype('uint16'), [1, 2, 3, 4, 5])
    """
    _check_count(frames, "frames")
    rng = np.random.default_rng(seed)
    molecule, frame, n_molecules = _blinking(config, frames, rng)
    x, y = _positions(config, np.zeros(n_molecules, np.int64), 1, rng)
    fwhm = rng.uniform(*config.fwhm, n_molecules)
    order = np.argsort(frame, kind="stable")
    molecule, frame = molecule[order], frame[order]
    truth = localization_table(
        frame + 1, x[molecule], y[molecule], fwhm[molecule] / _FWHM_PER_SIGMA, rng.uniform(*config.photons, frame.size)
    )
    return render_frames(truth, config, frames, rng), truth


def write_stack(
    output: PathLike, config: SMLMSimulation, frames: int, seed: Seed = None, *, overwrite: bool = False,
    inputs: Sequence[PathLike] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate a stack (:func:`simulate_stack`) into a folder: ``stack.tif`` and ``ground_truth.csv``.

    The stack is a 16-bit TIFF with its pixel size, the ground truth a ThunderSTORM CSV
    (frame, x [nm], y [nm], sigma [nm], intensity [photon]; frames 1-based) of every
    emitter on in every frame. The folder is written atomically: complete or absent.

    Parameters
    ----------
    output
        Folder to create.
    config, frames, seed
        As in :func:`simulate_stack`.
    overwrite
        Replace ``output`` if it exists.
    inputs
        Files the simulation read (a structure image), never to be replaced.

    Returns
    -------
    stack, truth
        As :func:`simulate_stack` returns them.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> stack, truth = write_stack(Path(tempfile.mkdtemp()) / "sim", SMLMSimulation(size=32), frames=5, seed=0)
    >>> stack.shape
    (5, 32, 32)
    """
    check_output(output, overwrite, inputs)
    stack, truth = simulate_stack(config, frames, seed)
    with atomic_output(output, overwrite=overwrite, inputs=inputs) as folder:
        folder.mkdir()
        write_image(folder / STACK_NAME, stack, axes="TYX", pixel_size=config.pixel_size)
        write_localizations(truth, folder / TRUTH_NAME)
    return stack, truth


def read_structure(path: PathLike) -> np.ndarray:
    """A 2-D image file as the weights of where emitters sit (``SMLMSimulation(structure=...)``).

    Raises
    ------
    InputError
        If the file is missing, unreadable or not 2-D.

    Examples
    --------
    >>> from microsr.samples import sample_path
    >>> read_structure(sample_path()).ndim
    2
    """
    image = read_image(path)
    if image.ndim != 2:
        raise InputError(f"{path}: a structure image must be 2-D (Y, X), not {image.axes} {image.shape}.")
    return np.asarray(image.data.compute(), np.float64)


def simulate_batch(
    config: SMLMSimulation, n: int, seed: Seed = None, *, units: Literal["adu", "photons"] = "adu"
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate ``n`` independent frames, e.g. for on-the-fly training.

    Each frame gets its own structure (new filaments, or new draws from the mask)
    and a Poisson number of emitters with mean ``config.emitters_per_frame``;
    blinking does not apply since frames are unrelated. With filaments, a frame
    that little filament crosses (e.g. one clipping a corner) gets its emitters
    packed closer along it; averaged over frames, the outermost pixels of a 32 px
    frame see ~15 % more emitters than its interior.

    Parameters
    ----------
    config
        The settings.
    n
        Number of frames.
    seed
        Seed or generator (pass one generator to draw batch after batch).
    units
        ``"adu"``: camera counts as in a recorded stack (rounded, 16-bit range);
        ``"photons"``: the same frames as photoelectrons,
        ``(counts - base_level) * photons_per_adu / em_gain``.

    Returns
    -------
    frames : numpy.ndarray
        ``(n, rows, columns)`` ``float32``.
    truth : numpy.ndarray
        Localization table; frame ``k`` (1-based) is ``frames[k - 1]``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> frames, truth = simulate_batch(SMLMSimulation(size=16, density=4.0), 8, rng)
    >>> frames.shape, frames.dtype, bool(truth["frame"].min() >= 1 and truth["frame"].max() <= 8)
    ((8, 16, 16), dtype('float32'), True)
    """
    _check_count(n, "n")
    if units not in ("adu", "photons"):
        raise InputError(f"units={units!r}: choose 'adu' or 'photons'.")
    rng = np.random.default_rng(seed)
    counts = rng.poisson(config.emitters_per_frame, n)
    owner = np.repeat(np.arange(n), counts)
    x, y = _positions(config, owner, n, rng)
    truth = localization_table(
        owner + 1, x, y, rng.uniform(*config.fwhm, owner.size) / _FWHM_PER_SIGMA,
        rng.uniform(*config.photons, owner.size),
    )
    frames = render_frames(truth, config, n, rng).astype(np.float32)
    if units == "photons":
        frames = (frames - np.float32(config.base_level)) * np.float32(config.photons_per_adu / (config.em_gain or 1.0))
    return frames, truth


def render_frames(truth: np.ndarray, config: SMLMSimulation, frames: int, seed: Seed = None) -> np.ndarray:
    """Image given emitters with the settings' PSF, background and camera noise.

    Parameters
    ----------
    truth
        Localization table: frame (1-based), x, y (nm), sigma (PSF std, nm) and
        intensity (photons) of each emitter; emitters outside ``1..frames`` are left out.
    config
        Settings for the frame size, pixel size, background and camera.
    frames
        Number of frames.
    seed
        Seed or generator of the noise.

    Returns
    -------
    numpy.ndarray
        ``(frames, rows, columns)`` ``uint16`` camera counts.

    Examples
    --------
    >>> from microsr.smlm.localize import localization_table
    >>> one = localization_table(1, 350.0, 750.0, 110.0, 5000.0)  # centre of row 7, column 3
    >>> stack = render_frames(one, SMLMSimulation(size=16), frames=1, seed=0)
    >>> np.unravel_index(stack[0].argmax(), stack[0].shape)
    (np.int64(7), np.int64(3))
    """
    _check_count(frames, "frames")
    truth = _check_emitters(truth)
    rng = np.random.default_rng(seed)
    rows, cols = config.size
    step = max(1, _CHUNK_PIXELS // (rows * cols))
    stack = np.empty((frames, rows, cols), np.uint16)
    for start in range(0, frames, step):
        n = min(step, frames - start)
        low, high = np.searchsorted(truth["frame"], [start + 1, start + n + 1])
        photons = _expected_photons(truth[low:high], start, n, config)
        photons += rng.uniform(*config.background, n)[:, None, None]
        stack[start : start + n] = _camera(photons, config, rng)
    return stack


def render_targets(
    truth: np.ndarray,
    shape: tuple[int, int],
    pixel_size: float,
    frames: int,
    upsampling: int = 8,
    *,
    weights: Literal["count", "intensity"] = "count",
) -> np.ndarray:
    """Training targets: each emitter as a sub-pixel-accurate point on an ``upsampling``× finer grid.

    Each emitter's weight is split bilinearly between the four fine pixels around
    its position, so the target's weighted centroid is the exact position (a
    nearest-pixel delta, as in Deep-STORM, would be off by up to half a fine pixel);
    :func:`microsr.smlm.localize.localize` recovers positions from such targets.

    Parameters
    ----------
    truth
        Localization table (frame 1-based, x, y in nm).
    shape
        Camera frame size ``(rows, columns)``.
    pixel_size
        Camera pixel size, nm.
    frames
        Number of frames.
    upsampling
        Fine pixels per camera pixel along each axis.
    weights
        ``"count"``: each emitter adds 1; ``"intensity"``: its photons.

    Returns
    -------
    numpy.ndarray
        ``(frames, rows * upsampling, columns * upsampling)`` ``float32`` at
        ``pixel_size / upsampling`` nm.

    Examples
    --------
    >>> from microsr.smlm.localize import localization_table
    >>> target = render_targets(localization_table(1, 56.25, 6.25), (2, 2), 100.0, frames=1)
    >>> target.shape, float(target.sum()), float(target[0, 0, 4])
    ((1, 16, 16), 1.0, 1.0)
    """
    if not (isinstance(upsampling, (int, np.integer)) and upsampling >= 1):
        raise InputError(f"upsampling={upsampling!r}: give a whole number ≥ 1, e.g. 8.")
    fine = (shape[0] * upsampling, shape[1] * upsampling)
    return render(truth, pixel_size / upsampling, fine, method="bilinear", frames=frames, weights=weights)


def psf_photons(truth: np.ndarray, config: SMLMSimulation, frames: int) -> np.ndarray:
    """Noise-free photons per pixel from the emitters' integrated-Gaussian PSFs, without background.

    Parameters
    ----------
    truth
        Localization table: frame (1-based), x, y (nm), sigma (PSF std, nm) and
        intensity (photons); emitters outside ``1..frames`` are left out.
    config
        Settings for the frame size and pixel size.
    frames
        Number of frames.

    Returns
    -------
    numpy.ndarray
        ``(frames, rows, columns)`` ``float64`` expected photons.

    Examples
    --------
    >>> from microsr.smlm.localize import localization_table
    >>> one = localization_table(1, 750.0, 750.0, 110.0, 1000.0)  # the centre of pixel (7, 7)
    >>> image = psf_photons(one, SMLMSimulation(size=16), frames=1)
    >>> round(float(image.sum()), 1), np.unravel_index(image[0].argmax(), image[0].shape)
    (1000.0, (np.int64(7), np.int64(7)))
    """
    _check_count(frames, "frames")
    truth = _check_emitters(truth)
    low, high = np.searchsorted(truth["frame"], [1, frames + 1])
    return _expected_photons(truth[low:high], 0, frames, config)


def _check_emitters(truth: np.ndarray) -> np.ndarray:
    """The emitters sorted by frame, after checking that they can be imaged."""
    if not isinstance(truth, np.ndarray) or truth.dtype != LOCALIZATION_DTYPE:
        raise InputError("the emitters must be a localization table (see microsr.smlm.table.localization_table).")
    if not (np.isfinite(truth["sigma"]).all() and (truth["sigma"] > 0).all() and np.isfinite(truth["intensity"]).all()):
        raise InputError("every emitter needs a positive PSF sigma (nm) and a finite intensity (photons) to be imaged.")
    return truth[np.argsort(truth["frame"], kind="stable")]


def _check_count(value: int, name: str) -> None:
    if not (isinstance(value, (int, np.integer)) and value >= 1):
        raise InputError(f"{name}={value!r}: give a whole number of frames ≥ 1.")


# --------------------------------------------------------------------------- emitters


def _blinking(config: SMLMSimulation, frames: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """Each on emitter-frame as (molecule, 0-based frame), and the number of molecules.

    A molecule has a geometric number of on periods (mean ``1 / bleach``), each a
    geometric number of frames long (mean ``on_time``) and followed by a geometric
    off period (mean ``off_time``). Molecules start at a constant rate chosen so that
    ``rate * on_time / bleach`` = emitters on per frame.
    """
    lifetime = config.on_time / config.bleach + config.off_time * (1.0 / config.bleach - 1.0)
    burn_in = math.ceil(_BURN_IN_LIFETIMES * lifetime) if lifetime > 1 else 0
    rate = config.emitters_per_frame * config.bleach / config.on_time
    n_molecules = int(rng.poisson(rate * (frames + burn_in)))
    first = rng.integers(-burn_in, frames, n_molecules)
    periods = rng.geometric(config.bleach, n_molecules)
    molecule = np.repeat(np.arange(n_molecules), periods)
    on = rng.geometric(1.0 / config.on_time, molecule.size)
    cycle = on + rng.geometric(1.0 / config.off_time, molecule.size)
    elapsed = np.cumsum(cycle) - cycle
    start = first[molecule] + elapsed - np.repeat(elapsed[np.cumsum(periods) - periods], periods)
    period = np.repeat(np.arange(molecule.size), on)
    frame = start[period] + np.arange(period.size) - np.repeat(np.cumsum(on) - on, on)
    keep = (frame >= 0) & (frame < frames)
    return molecule[period[keep]], frame[keep], n_molecules


def _positions(
    config: SMLMSimulation, owner: np.ndarray, n_structures: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """x, y (nm) of emitters; ``owner[i]`` says which of ``n_structures`` structures emitter i sits on."""
    height, width = (n * config.pixel_size for n in config.size)
    if isinstance(config.structure, np.ndarray):
        mask = config.structure
        index = rng.choice(mask.size, size=owner.size, p=mask.ravel() / mask.sum())
        rows, cols = np.divmod(index, mask.shape[1])
        x = (cols + rng.random(owner.size)) * width / mask.shape[1]
        return x, (rows + rng.random(owner.size)) * height / mask.shape[0]
    if config.structure == "uniform":
        return rng.random(owner.size) * width, rng.random(owner.size) * height
    paths = _filament_paths(config, n_structures, rng)
    a = paths[:, :, :-1].reshape(n_structures, -1, 2)
    b = paths[:, :, 1:].reshape(n_structures, -1, 2)
    # Segments are equally long: a uniform pick among those touching the field, a uniform
    # point along it, and redrawing points outside the field is uniform in arc length inside it.
    touching = _in_field(a, width, height) | _in_field(b, width, height)
    count = touching.sum(axis=1)
    structure, segment = np.nonzero(touching)
    first = np.cumsum(count) - count
    xy = np.empty((owner.size, 2))
    todo = np.arange(owner.size)
    # Clipping points outside to the edge instead would pile emitters up there.
    while todo.size:
        on = owner[todo]
        pick = first[on] + (rng.random(todo.size) * count[on]).astype(np.int64)
        s, k = structure[pick], segment[pick]
        xy[todo] = a[s, k] + rng.random((todo.size, 1)) * (b[s, k] - a[s, k])
        xy[todo] += rng.normal(0.0, _LABEL_SPREAD_NM, (todo.size, 2))
        todo = todo[~_in_field(xy[todo], width, height)]
    return xy[:, 0], xy[:, 1]


def _in_field(xy: np.ndarray, width: float, height: float) -> np.ndarray:
    return (xy[..., 0] >= 0) & (xy[..., 0] < width) & (xy[..., 1] >= 0) & (xy[..., 1] < height)


def _filament_paths(config: SMLMSimulation, count: int, rng: np.random.Generator) -> np.ndarray:
    """``(count, filaments, points, 2)`` polylines (x, y in nm) of random smooth filaments.

    Each filament's axis is an isotropic uniform random line (direction and offset from
    the field's centre uniform, redrawn until it crosses the field), so filaments
    cover the field evenly, edges included. The filament leaves the line's chord
    midpoint along the line both ways, its heading a persistent random walk, far
    enough (the field's diagonal) to leave the field.
    """
    height, width = (n * config.pixel_size for n in config.size)
    n_filaments = config.filaments or max(2, round(config.field_um2 / _AREA_PER_FILAMENT_UM2))
    angle, anchor = _chords(count * n_filaments, width, height, rng)
    points = 2 * math.ceil(math.hypot(height, width) / _FILAMENT_STEP_NM) + 1
    middle = points // 2
    turns = np.cumsum(rng.normal(0.0, math.sqrt(_FILAMENT_STEP_NM / _PERSISTENCE_NM), (angle.size, points - 1)), 1)
    heading = angle[:, None] + turns - turns[:, middle : middle + 1]
    steps = _FILAMENT_STEP_NM * np.stack([np.cos(heading), np.sin(heading)], axis=-1)
    path = np.concatenate([np.zeros((angle.size, 1, 2)), np.cumsum(steps, axis=1)], axis=1)
    path += anchor[:, None, :] - path[:, middle : middle + 1]
    return path.reshape(count, n_filaments, points, 2)


def _chords(n: int, width: float, height: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Directions and chord midpoints of ``n`` isotropic uniform random lines that cross the field."""
    angle, anchor = np.empty(n), np.empty((n, 2))
    centre, reach = np.array([width, height]) / 2, math.hypot(width, height) / 2
    todo = np.arange(n)
    while todo.size:
        theta = rng.uniform(0, 2 * np.pi, todo.size)
        direction = np.column_stack([np.cos(theta), np.sin(theta)])
        point = centre + rng.uniform(-reach, reach, (todo.size, 1)) * direction[:, ::-1] * [-1, 1]
        # Slab method: the line point + t * direction is inside the field for t in [enter, leave].
        with np.errstate(divide="ignore", invalid="ignore"):
            bounds = (np.array([0.0, 0.0]) - point) / direction, (np.array([width, height]) - point) / direction
        enter = np.nanmax(np.minimum(*bounds), axis=1)
        leave = np.nanmin(np.maximum(*bounds), axis=1)
        crosses = enter < leave
        angle[todo[crosses]] = theta[crosses]
        anchor[todo[crosses]] = point[crosses] + ((enter + leave) / 2)[crosses, None] * direction[crosses]
        todo = todo[~crosses]
    return angle, anchor


# --------------------------------------------------------------------------- imaging


def _expected_photons(truth: np.ndarray, first: int, n: int, config: SMLMSimulation) -> np.ndarray:
    """Noise-free photons of frames ``first + 1 .. first + n`` from their emitters' integrated-Gaussian PSFs.

    The integrated Gaussian is separable: an emitter adds ``photons * Py[i] * Px[j]``
    to pixel (i, j), with ``Px[j] = (erf((j + 1 - x) / (√2 σ)) - erf((j - x) / (√2 σ))) / 2``
    its integral over the pixel's x extent (out to ±4 sigma). So a tile of a frame is
    ``Pyᵀ · diag(photons) · Px`` over the emitters touching it: one small matrix
    product per tile, batched over all tiles, instead of a scatter per pixel.
    """
    rows, cols = config.size
    x, y = truth["x"] / config.pixel_size, truth["y"] / config.pixel_size
    sigma = truth["sigma"] / config.pixel_size
    reach = int(math.ceil(_PSF_RADIUS_SIGMAS * float(np.max(sigma, initial=0.0))))
    span = np.arange(-reach, reach + 1)
    row, py = _pixel_integrals(y, sigma, span)
    col, px = _pixel_integrals(x, sigma, span)
    px *= truth["intensity"][:, None]
    tile_rows, tile_cols = min(rows, _TILE), min(cols, _TILE)
    n_rows, n_cols = -(-rows // tile_rows), -(-cols // tile_cols)
    # Every emitter is copied into each tile its footprint touches (one, two or four).
    low_r, high_r = (np.clip(row[:, k], 0, rows - 1) // tile_rows for k in (0, -1))
    low_c, high_c = (np.clip(col[:, k], 0, cols - 1) // tile_cols for k in (0, -1))
    across = high_c - low_c + 1
    copies = (high_r - low_r + 1) * across
    emitter = np.repeat(np.arange(len(truth)), copies)
    k = np.arange(emitter.size) - np.repeat(np.cumsum(copies) - copies, copies)
    tile_r = low_r[emitter] + k // across[emitter]
    tile_c = low_c[emitter] + k % across[emitter]
    tile = ((truth["frame"][emitter] - 1 - first) * n_rows + tile_r) * n_cols + tile_c
    order = np.argsort(tile, kind="stable")
    emitter, tile_r, tile_c, tile = emitter[order], tile_r[order], tile_c[order], tile[order]
    slot = np.arange(tile.size) - np.searchsorted(tile, tile)
    depth = int(slot.max()) + 1 if slot.size else 0
    tiles = n * n_rows * n_cols
    profile_y = _tile_profiles(tiles, depth, tile_rows, tile, slot, row[emitter] - tile_r[:, None] * tile_rows,
                               py[emitter])
    profile_x = _tile_profiles(tiles, depth, tile_cols, tile, slot, col[emitter] - tile_c[:, None] * tile_cols,
                               px[emitter])
    # torch's batched product, not numpy's: OpenBLAS threads thrash when cores are shared (e.g. by data-loading
    # workers each simulating), which made this step 5-60× slower than single-threaded on a busy 2-core machine.
    image = torch.bmm(torch.from_numpy(profile_y).transpose(1, 2), torch.from_numpy(profile_x)).numpy()
    image = image.astype(np.float64)
    image = image.reshape(n, n_rows, n_cols, tile_rows, tile_cols).transpose(0, 1, 3, 2, 4)
    return image.reshape(n, n_rows * tile_rows, n_cols * tile_cols)[:, :rows, :cols]


def _tile_profiles(
    tiles: int, depth: int, side: int, tile: np.ndarray, slot: np.ndarray, index: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """``(tiles, depth, side)`` array holding each emitter's 1-D PSF profile at (tile, slot), zero elsewhere."""
    profiles = np.zeros((tiles, depth, side), np.float32)
    inside = (index >= 0) & (index < side)
    rows = np.broadcast_to(tile[:, None], index.shape)[inside]
    slots = np.broadcast_to(slot[:, None], index.shape)[inside]
    profiles[rows, slots, index[inside]] = values[inside]
    return profiles


def _pixel_integrals(centre: np.ndarray, sigma: np.ndarray, span: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel indices around each centre and the Gaussian's integral over each of those pixels."""
    pixel = np.floor(centre).astype(np.int64)[:, None] + span
    edges = np.concatenate([pixel, pixel[:, -1:] + 1], axis=1)
    cdf = 0.5 * erf((edges - centre[:, None]) / (math.sqrt(2.0) * sigma[:, None]))
    return pixel, np.diff(cdf, axis=1)


def _camera(photons: np.ndarray, config: SMLMSimulation, rng: np.random.Generator) -> np.ndarray:
    """Camera counts (uint16) from expected photons: shot noise, EM gain, readout noise, A/D conversion."""
    electrons = rng.poisson(photons).astype(np.float64)
    if config.em_gain is not None:
        electrons = rng.gamma(electrons, config.em_gain)
    if config.read_noise > 0:
        electrons += rng.normal(0.0, config.read_noise, electrons.shape)
    counts = electrons / config.photons_per_adu + config.base_level
    return np.clip(np.round(counts), 0, 65535).astype(np.uint16)
