"""The sample image shipped with microsr, and the function that made it.

The sample is synthetic so it carries no licence or privacy questions: thin
curved filaments (microtubule-like) and a few ring-shaped vesicles, blurred by a
small optical PSF and stored as 16-bit counts with a known pixel size. It is
regenerated bit for bit by :func:`filaments`, which a test checks.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import numpy as np
from scipy import ndimage

SAMPLE_PIXEL_SIZE_NM = 20.0
"""Pixel size (nm) recorded in the shipped sample's metadata."""

SAMPLE_SEED = 2026


def filaments(shape: tuple[int, int] = (512, 512), seed: int = SAMPLE_SEED) -> np.ndarray:
    """Render a synthetic fluorescence-like image of filaments and vesicles.

    Parameters
    ----------
    shape
        Image size (rows, columns).
    seed
        Seed of the random structure; the same seed gives the same image.

    Returns
    -------
    numpy.ndarray
        ``uint16`` image with a dim background (about 200 counts) and bright
        structures (up to about 20 000 counts), so it exercises the full
        16-bit range rather than fitting into 8 bits.

    Examples
    --------
    >>> img = filaments((128, 128), seed=1)
    >>> img.dtype, img.shape, int(img.max()) > 255
    (dtype('uint16'), (128, 128), True)
    """
    rng = np.random.default_rng(seed)
    rows, cols = shape
    canvas = np.zeros(shape, np.float64)
    n_filaments = max(4, rows * cols // 8000)
    for _ in range(n_filaments):
        _draw_filament(canvas, rng)
    for _ in range(max(2, rows * cols // 40000)):
        _draw_ring(canvas, rng)
    blurred = ndimage.gaussian_filter(canvas, sigma=1.2)
    image = 200.0 + 20000.0 * blurred / blurred.max()
    return np.clip(np.round(image), 0, 65535).astype(np.uint16)


def _draw_filament(canvas: np.ndarray, rng: np.random.Generator) -> None:
    """Add one smooth random curve: a persistent random walk of the heading."""
    rows, cols = canvas.shape
    y, x = rng.uniform(0, rows), rng.uniform(0, cols)
    heading = rng.uniform(0, 2 * np.pi)
    brightness = rng.uniform(0.4, 1.0)
    steps = 4 * (rows + cols)
    turns = np.cumsum(rng.normal(0, 0.04, steps))
    ys = y + np.cumsum(0.5 * np.sin(heading + turns))
    xs = x + np.cumsum(0.5 * np.cos(heading + turns))
    inside = (ys >= 0) & (ys < rows) & (xs >= 0) & (xs < cols)
    np.add.at(canvas, (ys[inside].astype(int), xs[inside].astype(int)), brightness)


def _draw_ring(canvas: np.ndarray, rng: np.random.Generator) -> None:
    """Add one vesicle: a thin bright ring."""
    rows, cols = canvas.shape
    cy, cx = rng.uniform(0, rows), rng.uniform(0, cols)
    radius = rng.uniform(6, 20)
    yy, xx = np.ogrid[:rows, :cols]
    distance = np.hypot(yy - cy, xx - cx)
    canvas += 0.8 * np.exp(-0.5 * ((distance - radius) / 0.8) ** 2)


def sample_path() -> Path:
    """Return the path of the shipped sample TIFF (512×512 uint16, 20 nm pixels).

    Examples
    --------
    >>> sample_path().name
    'filaments.tif'
    """
    return Path(str(files("microsr.samples").joinpath("filaments.tif")))
