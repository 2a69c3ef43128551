"""SRRF training targets: eSRRF (NanoPyx) of long stacks, cached, paired with a few of their frames.

Super-resolution radial fluctuations (Gustafsson et al. 2016; eSRRF: Laine et al. 2023)
turn hundreds of wide-field frames of fluctuating fluorophores into one image finer than
the diffraction limit. :func:`srrf_targets` cuts a long stack into blocks, computes each
block's eSRRF with NanoPyx (its threaded CPU implementation by default) and writes it as
a target next to the block's first few frames, so a model can learn to produce
SRRF-quality images from 5 frames (as DL-SRRF did). eSRRF is slow, so every result is
cached on disk under a hash of the frames and the settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from microsr.errors import InputError
from microsr.io import PathLike
from microsr.io import atomic_output, check_finite, check_memory, read_image, write_image

__all__ = ["ESRRFSettings", "SRRFTargets", "default_cache", "esrrf", "srrf_targets"]


INPUTS_DIR, TARGETS_DIR = "inputs", "targets"


@dataclass(frozen=True)
class ESRRFSettings:
    """Settings of NanoPyx's eSRRF.

    Parameters
    ----------
    magnification : int
        Output pixels per input pixel along each axis.
    radius : float
        Ring radius of the radial gradient convergence, input pixels.
    sensitivity : float
        Exponent sharpening the radiality map.
    temporal_correlation : {"AVG", "VAR", "TAC2"}
        How the frames' radiality maps are combined.
    run_type : str
        NanoPyx implementation: ``Threaded`` (CPU threads), ``Threaded_static``,
        ``Threaded_guided``, ``Threaded_dynamic`` or ``Unthreaded``. It does not change
        the result, so it is not part of the cache key.

    Examples
    --------
    >>> ESRRFSettings(magnification=4).magnification
    4
    """

    magnification: int = 2
    radius: float = 1.5
    sensitivity: float = 1.0
    temporal_correlation: str = "AVG"
    run_type: str = "Threaded"

    def __post_init__(self) -> None:
        if not (float(self.magnification).is_integer() and self.magnification >= 1):
            raise InputError(f"magnification={self.magnification!r}: give a whole number ≥ 1.")
        if not (self.radius > 0 and self.sensitivity > 0):
            raise InputError(f"radius={self.radius!r}, sensitivity={self.sensitivity!r}: both must be positive.")
        if self.temporal_correlation not in ("AVG", "VAR", "TAC2"):
            raise InputError(f"temporal_correlation={self.temporal_correlation!r}: use AVG, VAR or TAC2.")

    def key(self, frames: np.ndarray) -> str:
        """Cache key of the eSRRF of ``frames`` with these settings (everything but ``run_type``)."""
        settings = {k: v for k, v in dataclasses.asdict(self).items() if k != "run_type"}
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
        digest.update(str(frames.shape).encode())
        digest.update(np.ascontiguousarray(frames, dtype=np.float32).tobytes())
        return digest.hexdigest()


def default_cache() -> Path:
    """Where eSRRF results are cached: ``$MICROSR_CACHE/esrrf``, else the user cache folder.

    Examples
    --------
    >>> default_cache().name
    'esrrf'
    """
    if os.environ.get("MICROSR_CACHE"):
        return Path(os.environ["MICROSR_CACHE"]) / "esrrf"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "microsr" / "esrrf"


def esrrf(
    frames: np.ndarray, settings: ESRRFSettings = ESRRFSettings(), *, cache: PathLike | None = None
) -> tuple[np.ndarray, bool]:
    """eSRRF of a stack of frames, from the cache when it was computed before.

    Parameters
    ----------
    frames : numpy.ndarray
        ``(T, Y, X)`` frames (at least 2).
    settings : ESRRFSettings
        eSRRF settings.
    cache : path, optional
        Cache folder; default :func:`default_cache`.

    Returns
    -------
    image : numpy.ndarray
        ``(Y * magnification, X * magnification)`` float32.
    computed : bool
        False when the result came from the cache.

    Examples
    --------
    >>> from microsr.simulate.smlm import preset, simulate_stack
    >>> stack = simulate_stack(preset("default").replace(size=16), 10, seed=0)[0]
    >>> image, computed = esrrf(stack, cache=tempfile.mkdtemp())  # doctest: +SKIP
    >>> image.shape  # doctest: +SKIP
    (32, 32)
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 3 or frames.shape[0] < 2 or min(frames.shape[1:]) < 8:
        raise InputError(f"eSRRF needs (T, Y, X) frames with T ≥ 2 and Y, X ≥ 8, got shape {frames.shape}.")
    check_finite(frames, "eSRRF frames")
    folder = Path(cache) if cache is not None else default_cache()
    stored = folder / f"{settings.key(frames)}.npy"
    if stored.is_file():
        return np.load(stored), False
    image = _nanopyx_esrrf(frames, settings)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_output(stored, overwrite=True) as temporary:
        np.save(temporary, image)
    return image, True


def _nanopyx_esrrf(frames: np.ndarray, settings: ESRRFSettings) -> np.ndarray:
    # NanoPyx announces its optional back-ends (OpenCL, numba) and prints every run's timing.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", UserWarning)
        try:
            from nanopyx.methods.esrrf.eSRRF_workflow import eSRRF
        except ImportError as exc:
            raise InputError("eSRRF needs NanoPyx: pip install 'microsr[nanopyx]'.") from exc
        image = eSRRF(
            frames, magnification=settings.magnification, radius=settings.radius,
            sensitivity=settings.sensitivity, temporal_correlation=settings.temporal_correlation,
            _force_run_type=settings.run_type,
        )
    return np.asarray(image, dtype=np.float32)


class SRRFTargets(NamedTuple):
    """What :func:`srrf_targets` wrote: ``pairs`` input/target pairs, ``computed`` of them not cached."""

    pairs: int
    computed: int


def srrf_targets(
    stack: PathLike,
    output: PathLike,
    settings: ESRRFSettings = ESRRFSettings(),
    *,
    frames_per_target: int = 100,
    input_frames: int = 5,
    cache: PathLike | None = None,
    overwrite: bool = False,
) -> SRRFTargets:
    """Write eSRRF targets of consecutive blocks of ``stack`` with each block's first frames as inputs.

    Block ``i`` (frames ``i * frames_per_target`` onwards; an incomplete last block is
    left out) gives ``output/inputs/NNNN.tif`` (its first ``input_frames`` frames along C,
    the stack's dtype and pixel size) and ``output/targets/NNNN.tif`` (its eSRRF, float32,
    pixel size divided by the magnification).

    Parameters
    ----------
    stack
        Image file of frames along T (or Z).
    output
        Folder to create.
    settings
        eSRRF settings.
    frames_per_target, input_frames
        Frames per block, and how many of them are kept as model input.
    cache
        eSRRF cache folder; default :func:`default_cache`.
    overwrite
        Replace an existing ``output``.

    Returns
    -------
    SRRFTargets

    Examples
    --------
    >>> srrf_targets("blinking.tif", "srrf_pairs", frames_per_target=100)  # doctest: +SKIP
    SRRFTargets(pairs=10, computed=10)
    """
    image = read_image(stack)
    if image.ndim != 3:
        raise InputError(f"{stack}: expected a stack of frames (T, Y, X), got axes {image.axes} {image.shape}.")
    if not 1 <= input_frames <= frames_per_target:
        raise InputError(
            f"input_frames={input_frames}: give between 1 and frames_per_target={frames_per_target} frames."
        )
    blocks = image.shape[0] // frames_per_target
    if blocks == 0:
        raise InputError(
            f"{stack}: {image.shape[0]} frames make no block of {frames_per_target}; lower --frames-per-target."
        )
    # eSRRF interpolates every frame of a block magnification² times larger.
    block_bytes = frames_per_target * image.shape[-2] * image.shape[-1] * 4 * (1 + settings.magnification**2)
    check_memory(block_bytes, f"{stack}: eSRRF of {frames_per_target} frames of {image.shape[-2]} × "
                 f"{image.shape[-1]} pixels", "lower --frames-per-target or crop the stack")
    computed = 0
    with atomic_output(output, overwrite=overwrite, inputs=[stack]) as folder:
        (folder / INPUTS_DIR).mkdir(parents=True)
        (folder / TARGETS_DIR).mkdir()
        for i in range(blocks):
            block = np.asarray(image.data[i * frames_per_target : (i + 1) * frames_per_target])
            target, fresh = esrrf(block, settings, cache=cache)
            computed += fresh
            name = f"{i:04d}.tif"
            write_image(folder / INPUTS_DIR / name, block[:input_frames], axes="CYX" if input_frames > 1 else "YX",
                        pixel_size=image.pixel_size)
            write_image(folder / TARGETS_DIR / name, target,
                        pixel_size=None if image.pixel_size is None else image.pixel_size / settings.magnification)
    return SRRFTargets(blocks, computed)
