"""Localizations for single-molecule localization microscopy (SMLM): find, read, write, score, render.

A set of localizations is a **localization table**: a NumPy structured array of
dtype :data:`LOCALIZATION_DTYPE` with the fields

========== ======== ==================================================
field      unit     meaning
========== ======== ==================================================
frame      --       frame number, 1-based as in ThunderSTORM
x, y       nm       position; (0, 0) is the top-left corner of the image,
                    so the centre of pixel (row i, column j) is at
                    ``((j + 0.5) * pixel_size, (i + 0.5) * pixel_size)``
sigma      nm       PSF or peak width (NaN when unknown)
intensity  photon   photons (or output units, see :func:`localize`; NaN when unknown)
========== ======== ==================================================

This is ThunderSTORM's convention (its simulator places an emitter of pixel
``j`` at ``x ∈ [j, j + 1)`` pixels), checked on Deep-STORM's ThunderSTORM
simulation: the frames fit their ground truth best with no half-pixel shift.
On disk a table is a ThunderSTORM CSV with the header
``"frame","x [nm]","y [nm]","sigma [nm]","intensity [photon]"``.

Scoring follows the SMLM challenges (Sage et al., Nat. Methods 12, 717-724, 2015
and 16, 387-395, 2019): within each frame, estimates and ground truth are paired
one-to-one by an optimal assignment, only pairs closer than a tolerance radius
count, and recall, precision, the Jaccard index, the lateral RMSE of the pairs and
the efficiency combine them.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import dask.array as da
import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from microsr.errors import InputError
from microsr.io import atomic_output

__all__ = [
    "CSV_COLUMNS",
    "LOCALIZATION_DTYPE",
    "Score",
    "localization_table",
    "localize",
    "read_localizations",
    "render",
    "score",
    "write_localizations",
]

PathLike = str | os.PathLike[str]

LOCALIZATION_DTYPE = np.dtype(
    [("frame", np.int64), ("x", np.float64), ("y", np.float64), ("sigma", np.float64), ("intensity", np.float64)]
)
"""Fields of a localization table (see the module docstring for units)."""

CSV_COLUMNS = ("frame", "x [nm]", "y [nm]", "sigma [nm]", "intensity [photon]")
"""Column names written by :func:`write_localizations`, as ThunderSTORM names them."""

# Header names understood by read_localizations (lower case, quotes stripped), per field:
# ThunderSTORM ("x [nm]"), plain CSV exports, and the EPFL SMLM challenge ("xnano").
_READ_NAMES = {
    "frame": ("frame",),
    "x": ("x [nm]", "xnano", "x_nm", "x (nm)"),
    "y": ("y [nm]", "ynano", "y_nm", "y (nm)"),
    "sigma": ("sigma [nm]", "sigma_nm"),
    "intensity": ("intensity [photon]", "intensity", "intensity_photon"),
}
_REQUIRED = ("frame", "x", "y")

# Lateral efficiency weight of the 2-D SMLM challenge: alpha = 1 nm^-1 when the Jaccard
# index is in percent, i.e. 0.01 nm^-1 with Jaccard as a fraction (Sage et al. 2019).
_ALPHA_LATERAL = 0.01

# Frames up to this size (pixels) are searched for peaks in one vectorised pass.
_PEAK_CHUNK_PIXELS = 2**24


def localization_table(
    frame: np.ndarray | int,
    x: np.ndarray | float,
    y: np.ndarray | float,
    sigma: np.ndarray | float = np.nan,
    intensity: np.ndarray | float = np.nan,
) -> np.ndarray:
    """Build a localization table from columns (scalars are broadcast).

    Parameters
    ----------
    frame
        1-based frame numbers.
    x, y
        Positions in nm, origin at the image's top-left corner.
    sigma
        Width in nm (NaN when unknown).
    intensity
        Photons (NaN when unknown).

    Returns
    -------
    numpy.ndarray
        Structured array of dtype :data:`LOCALIZATION_DTYPE`.

    Examples
    --------
    >>> table = localization_table([1, 1, 2], [50.0, 150.0, 50.0], [50.0, 50.0, 250.0])
    >>> table["frame"].tolist(), table["x"].tolist(), bool(np.isnan(table["sigma"]).all())
    ([1, 1, 2], [50.0, 150.0, 50.0], True)
    """
    columns = np.broadcast_arrays(*(np.atleast_1d(np.asarray(c)) for c in (frame, x, y, sigma, intensity)))
    table = np.empty(columns[0].shape[0], LOCALIZATION_DTYPE)
    for name, column in zip(LOCALIZATION_DTYPE.names, columns):
        table[name] = column
    return table


# --------------------------------------------------------------------------- files


def read_localizations(path: PathLike) -> np.ndarray:
    """Read localizations from a CSV file.

    Recognised by their headers (case and quotes ignored; other columns, e.g. ``id``
    or ``z [nm]``, are skipped since scoring is lateral):

    - ThunderSTORM: ``"frame","x [nm]","y [nm]","sigma [nm]","intensity [photon]",...``
    - plain: ``frame,x [nm],y [nm]``
    - EPFL SMLM challenge: ``Ground-truth,frame,xnano,ynano,znano,intensity``

    Frames are 1-based in all three.

    Parameters
    ----------
    path
        The CSV file.

    Returns
    -------
    numpy.ndarray
        A localization table; absent ``sigma``/``intensity`` columns are NaN.

    Raises
    ------
    InputError
        If the file is missing, has no frame/x/y columns in nm, or holds non-numbers.

    Examples
    --------
    >>> table = read_localizations("ground_truth.csv")  # doctest: +SKIP
    >>> table["frame"].max(), table["x"].mean()  # doctest: +SKIP
    (361, 3172.4)
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: localization file not found. Check the path.")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle), [])
    names = [name.strip().strip('"').strip().lower() for name in header]
    where = {key: next((names.index(n) for n in aliases if n in names), None) for key, aliases in _READ_NAMES.items()}
    missing = [key for key in _REQUIRED if where[key] is None]
    if missing:
        raise InputError(
            f"{path}: no {'/'.join(missing)} column among {header or 'an empty header'}; a localization CSV needs "
            f"frame, x [nm] and y [nm] (ThunderSTORM) or frame, xnano, ynano (EPFL) columns in nanometres."
        )
    found = {key: column for key, column in where.items() if column is not None}
    try:
        with warnings.catch_warnings():
            # A header without rows is a valid file with no localizations.
            warnings.filterwarnings("ignore", "loadtxt: input contained no data")
            data = np.loadtxt(
                path, delimiter=",", skiprows=1, usecols=list(found.values()), ndmin=2, encoding="utf-8-sig"
            )
    except ValueError as exc:
        raise InputError(f"{path}: cannot read the numbers ({exc}); every row needs a number in each column.") from exc
    columns = {key: data[:, i] for i, key in enumerate(found)}
    frames = columns["frame"]
    if not np.array_equal(frames, np.round(frames)):
        raise InputError(f"{path}: the frame column holds non-integer numbers; frames must be whole numbers (1-based).")
    return localization_table(
        frames.astype(np.int64), columns["x"], columns["y"], columns.get("sigma", np.nan),
        columns.get("intensity", np.nan),
    )


def write_localizations(
    table: np.ndarray, path: PathLike, *, overwrite: bool = False, inputs: tuple[PathLike, ...] = ()
) -> Path:
    """Write a localization table as a ThunderSTORM CSV, atomically.

    Parameters
    ----------
    table
        A localization table (see :data:`LOCALIZATION_DTYPE`).
    path
        Output ``.csv`` path.
    overwrite
        Replace an existing file.
    inputs
        Files this output must never replace.

    Returns
    -------
    Path
        The written path.

    Examples
    --------
    >>> table = localization_table([1], [50.0], [150.0], 110.0, 1200.0)
    >>> write_localizations(table, "positions.csv")  # doctest: +SKIP
    PosixPath('positions.csv')
    """
    table = _check_table(table, "the localizations")
    columns = np.column_stack([table[name].astype(np.float64) for name in LOCALIZATION_DTYPE.names])
    header = ",".join(f'"{name}"' for name in CSV_COLUMNS)
    with atomic_output(path, overwrite=overwrite, inputs=inputs) as temporary:
        np.savetxt(temporary, columns, fmt=["%d", "%.5f", "%.5f", "%.5f", "%.5f"], delimiter=",",
                   header=header, comments="")
    return Path(path)


def _check_table(table: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(table, np.ndarray) or table.dtype.names is None or not set(_REQUIRED) <= set(table.dtype.names):
        raise InputError(
            f"{name} must be a localization table (a structured array with fields frame, x, y; see "
            "microsr.localize.localization_table or read_localizations)."
        )
    return table


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Score:
    """How well estimated localizations match the ground truth (see :func:`score`).

    Attributes
    ----------
    tp, fp, fn
        Matched pairs (true positives), unmatched estimates (false positives) and
        unmatched ground-truth emitters (false negatives).
    recall, precision, jaccard
        ``tp / (tp + fn)``, ``tp / (tp + fp)``, ``tp / (tp + fp + fn)`` (fractions; NaN if undefined).
    rmse_lateral
        Root mean squared lateral distance of the pairs, nm (NaN without pairs).
    efficiency
        ``1 - sqrt((1 - jaccard)**2 + (0.01 nm^-1 * rmse_lateral)**2)``, a fraction
        (the challenge's ``E = 100 - sqrt((100 - Jaccard %)^2 + alpha^2 RMSE^2)``,
        ``alpha = 1 nm^-1``, divided by 100).
    radius
        Tolerance radius used, nm.
    pairs
        ``(tp, 2)`` indices of each pair into the estimates and the ground truth.
    """

    tp: int
    fp: int
    fn: int
    recall: float
    precision: float
    jaccard: float
    rmse_lateral: float
    efficiency: float
    radius: float
    pairs: np.ndarray = field(repr=False, compare=False)


def score(estimates: np.ndarray, truth: np.ndarray, radius: float = 250.0) -> Score:
    """Score estimated localizations against the ground truth, frame by frame.

    Within each frame, estimates and ground-truth emitters are paired one-to-one by
    an optimal assignment (:func:`scipy.optimize.linear_sum_assignment`) on their
    lateral distances, as the EPFL SMLM challenges do (Sage et al., Nat. Methods
    2015 and 2019); pairs farther apart than ``radius`` are excluded, so the
    assignment makes as many pairs within ``radius`` as possible and, among those,
    minimises their summed distance. (DECODE pairs greedily, nearest first; the two
    differ only in crowded ties.) A localization never matches one in another frame.

    The efficiency is that of Sage et al. 2019 ("Super-resolution fight club",
    Nat. Methods 16, 387-395), lateral form for 2-D data:
    ``E = 100 - sqrt((100 - Jaccard[%])**2 + alpha**2 * RMSE[nm]**2)`` with
    ``alpha = 1 nm^-1``; DECODE computes it the same way
    (``decode/evaluation/metric.py``, ``efficiency(jac, rmse, alpha=1.0)``). It is
    returned as a fraction (E / 100).

    Parameters
    ----------
    estimates, truth
        Localization tables (frame, x, y in nm).
    radius
        Tolerance radius in nm (250 nm is the challenge's high-density setting).

    Returns
    -------
    Score

    Raises
    ------
    InputError
        If a table is not a localization table or ``radius`` is not positive.

    Examples
    --------
    >>> truth = localization_table([1, 1, 2], [100.0, 1000.0, 100.0], [100.0, 100.0, 100.0])
    >>> found = localization_table([1, 1, 1], [130.0, 140.0, 1040.0], [100.0, 100.0, 100.0])
    >>> result = score(found, truth, radius=250)
    >>> result.tp, result.fp, result.fn, round(result.jaccard, 3), round(result.rmse_lateral, 1)
    (2, 1, 1, 0.5, 35.4)
    """
    estimates = _check_table(estimates, "the estimates")
    truth = _check_table(truth, "the ground truth")
    if not (math.isfinite(radius) and radius > 0):
        raise InputError(f"radius={radius!r}: give a positive tolerance radius in nm, e.g. 250.")
    pairs = _match(estimates, truth, float(radius))
    tp = len(pairs)
    fp, fn = len(estimates) - tp, len(truth) - tp
    dx = estimates["x"][pairs[:, 0]] - truth["x"][pairs[:, 1]]
    dy = estimates["y"][pairs[:, 0]] - truth["y"][pairs[:, 1]]
    rmse = math.sqrt(float(np.mean(dx**2 + dy**2))) if tp else math.nan
    jaccard = _ratio(tp, tp + fp + fn)
    efficiency = 1.0 - math.sqrt((1.0 - jaccard) ** 2 + (_ALPHA_LATERAL * rmse) ** 2)
    return Score(tp, fp, fn, _ratio(tp, tp + fn), _ratio(tp, tp + fp), jaccard, rmse, efficiency, float(radius), pairs)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def _match(estimates: np.ndarray, truth: np.ndarray, radius: float) -> np.ndarray:
    """One-to-one pairs ``(estimate index, truth index)`` within ``radius``, per frame.

    Candidate pairs come from a k-d tree in which the frame number is a third
    coordinate scaled so that frames are farther apart than ``radius``. The bipartite
    graph of candidates splits into connected components, each solved on its own:
    an optimal assignment over the whole frame decomposes exactly into them, and
    they stay small even when a frame holds many thousands of emitters.
    """
    empty = np.zeros((0, 2), np.int64)
    if len(estimates) == 0 or len(truth) == 0:
        return empty
    frame_gap = 4.0 * radius
    points_e = np.column_stack([estimates["x"], estimates["y"], estimates["frame"] * frame_gap])
    points_t = np.column_stack([truth["x"], truth["y"], truth["frame"] * frame_gap])
    edges = cKDTree(points_e).sparse_distance_matrix(cKDTree(points_t), radius, output_type="ndarray")
    if len(edges) == 0:
        return empty
    n_e = len(estimates)
    graph = coo_matrix((np.ones(len(edges)), (edges["i"], n_e + edges["j"])), shape=(n_e + len(truth),) * 2)
    _, label = connected_components(graph, directed=False)
    component = label[edges["i"]]
    order = np.argsort(component, kind="stable")
    edges, component = edges[order], component[order]
    starts = np.flatnonzero(np.r_[True, component[1:] != component[:-1]])
    sizes = np.diff(np.r_[starts, len(edges)])
    # A component with one edge is one estimate and one truth: the pair itself.
    single = starts[sizes == 1]
    pairs = [np.column_stack([edges["i"][single], edges["j"][single]])]
    for start, size in zip(starts[sizes > 1], sizes[sizes > 1]):
        pairs.append(_assign(edges[start : start + size], radius))
    return np.concatenate(pairs).astype(np.int64)


def _assign(edges: np.ndarray, radius: float) -> np.ndarray:
    """Optimal assignment within one component; non-candidates cost more than any set of real pairs."""
    rows, row_index = np.unique(edges["i"], return_inverse=True)
    cols, col_index = np.unique(edges["j"], return_inverse=True)
    # With this cost for a non-pair, one more real pair always beats any saving in distance.
    excluded = radius * (min(len(rows), len(cols)) + 1)
    cost = np.full((len(rows), len(cols)), excluded)
    cost[row_index, col_index] = edges["v"]
    r, c = linear_sum_assignment(cost)
    real = cost[r, c] < excluded
    return np.column_stack([rows[r[real]], cols[c[real]]])


# --------------------------------------------------------------------------- finding


def localize(images: np.ndarray | da.Array, pixel_size: float, threshold: float, *, radius: int = 2) -> np.ndarray:
    """Find emitters in a stack of (super-resolved) frames: local maxima refined by weighted centroid.

    Meant for per-frame network outputs on a fine grid (e.g. ``(T, 8H, 8W)`` at
    ``pixel_size / 8``) or targets from
    :func:`microsr.simulate.smlm.render_targets`, whose background is near zero.
    A pixel is a peak if it exceeds ``threshold`` and is the maximum of its
    ``(2 radius + 1)²`` neighbourhood (ties go to the first pixel in row order, so
    a flat top gives one peak). The position is the centroid of the positive values
    in the same window around the peak, so a peak spread over neighbouring pixels
    (e.g. bilinear targets) is located to a fraction of a pixel.

    Parameters
    ----------
    images
        ``(T, H, W)`` stack, one image per frame (frame ``t`` of the stack is frame
        ``t + 1`` in the table): a NumPy array, or a lazy one (e.g. the ``data`` of
        :func:`microsr.io.read_image`) read a few frames at a time.
    pixel_size
        Pixel size of ``images`` in nm.
    threshold
        Minimum peak value, in the units of ``images``.
    radius
        Half-size of the peak neighbourhood and centroid window in pixels. Emitters
        closer than about ``radius`` pixels merge into one.

    Returns
    -------
    numpy.ndarray
        A localization table: ``intensity`` is the window's sum of positive values (in
        photons for photon-weighted targets), ``sigma`` the window's RMS width per
        axis in nm.

    Raises
    ------
    InputError
        If ``images`` is not a 3-D stack, or a parameter is out of range.

    Examples
    --------
    >>> stack = np.zeros((2, 16, 16), np.float32)
    >>> stack[0, 4, 5:7] = 0.5  # one emitter split between two pixels
    >>> stack[1, 10, 10] = 1.0
    >>> table = localize(stack, pixel_size=12.5, threshold=0.2)
    >>> table["frame"].tolist(), table["x"].tolist(), table["y"].tolist()
    ([1, 2], [75.0, 131.25], [56.25, 131.25])
    """
    if np.ndim(images) != 3:
        raise InputError(
            f"localize needs a stack of frames (T, H, W), not an array of shape {np.shape(images)}; "
            "add a frame axis for a single image (image[None])."
        )
    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise InputError(f"pixel_size={pixel_size!r}: give the images' pixel size in nm (a positive number).")
    if not math.isfinite(threshold):
        raise InputError(f"threshold={threshold!r}: give a finite peak threshold in the images' units.")
    if not (isinstance(radius, (int, np.integer)) and radius >= 1):
        raise InputError(f"radius={radius!r}: give the peak neighbourhood half-size as a whole number of pixels ≥ 1.")
    frame_pixels = max(1, images.shape[1] * images.shape[2])
    step = max(1, _PEAK_CHUNK_PIXELS // frame_pixels)
    tables = [
        _peaks(np.asarray(images[start : start + step], np.float32), start, float(pixel_size), threshold, radius)
        for start in range(0, images.shape[0], step)
    ]
    return np.concatenate(tables) if tables else localization_table([], [], [])


def _peaks(chunk: np.ndarray, first: int, pixel_size: float, threshold: float, radius: int) -> np.ndarray:
    """Peaks of a few frames, vectorised over candidate pixels (those above ``threshold``)."""
    t, y, x = np.nonzero(chunk > threshold)
    value = chunk[t, y, x]
    offsets = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    is_peak = np.ones(len(t), bool)
    for dy, dx in offsets:
        if (dy, dx) == (0, 0):
            continue
        neighbour = _shifted(chunk, t, y + dy, x + dx, -np.inf)
        # Strict against earlier pixels in row order, so plateaus keep only their first pixel.
        is_peak &= value > neighbour if (dy, dx) < (0, 0) else value >= neighbour
    t, y, x = t[is_peak], y[is_peak], x[is_peak]
    total, mean_y, mean_x, square = (np.zeros(len(t)) for _ in range(4))
    for dy, dx in offsets:
        weight = np.maximum(_shifted(chunk, t, y + dy, x + dx, 0.0), 0.0).astype(np.float64)
        total += weight
        mean_y += weight * dy
        mean_x += weight * dx
        square += weight * (dy * dy + dx * dx)
    mean_y /= total
    mean_x /= total
    sigma = np.sqrt(np.maximum(square / total - mean_y**2 - mean_x**2, 0.0) / 2.0)
    return localization_table(
        t + first + 1,
        (x + 0.5 + mean_x) * pixel_size,
        (y + 0.5 + mean_y) * pixel_size,
        sigma * pixel_size,
        total,
    )


def _shifted(chunk: np.ndarray, t: np.ndarray, y: np.ndarray, x: np.ndarray, outside: float) -> np.ndarray:
    """``chunk[t, y, x]`` with ``outside`` where (y, x) falls off the frame."""
    _, height, width = chunk.shape
    inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
    values = chunk[t, np.clip(y, 0, height - 1), np.clip(x, 0, width - 1)]
    return np.where(inside, values, np.float32(outside))


# --------------------------------------------------------------------------- rendering


def render(
    table: np.ndarray,
    pixel_size: float,
    shape: tuple[int, int] | None = None,
    *,
    method: Literal["gaussian", "histogram", "bilinear"] = "gaussian",
    sigma: float = 20.0,
    frames: int | None = None,
    weights: Literal["count", "intensity"] = "count",
) -> np.ndarray:
    """Render localizations as an image at any pixel size.

    Parameters
    ----------
    table
        A localization table.
    pixel_size
        Output pixel size in nm.
    shape
        Output ``(rows, columns)``; the image covers ``[0, columns * pixel_size)`` in x and
        likewise in y. Default: just large enough for every localization.
    method
        ``"histogram"``: each localization adds its weight to the pixel it falls in.
        ``"bilinear"``: its weight is split between the four nearest pixel centres so
        the image's centroid is exactly the localization's position.
        ``"gaussian"``: bilinear, then blurred by a Gaussian of std ``sigma`` nm, so
        each localization becomes a normalised Gaussian spot.
    sigma
        Gaussian std in nm (``method="gaussian"`` only).
    frames
        ``None``: one image of all frames. An integer ``T``: a ``(T, rows, columns)``
        stack with one image per frame (frames ``1..T``; others are left out).
    weights
        ``"count"``: each localization weighs 1; ``"intensity"``: its photons.

    Returns
    -------
    numpy.ndarray
        ``float32`` image ``(rows, columns)`` or stack ``(frames, rows, columns)``;
        localizations outside it are left out.

    Raises
    ------
    InputError
        If a parameter is out of range or ``weights="intensity"`` meets missing intensities.

    Examples
    --------
    >>> table = localization_table([1, 1, 2], [150.0, 160.0, 450.0], [50.0, 50.0, 250.0])
    >>> render(table, pixel_size=100.0, shape=(3, 5), method="histogram")
    array([[0., 2., 0., 0., 0.],
           [0., 0., 0., 0., 0.],
           [0., 0., 0., 0., 1.]], dtype=float32)
    >>> render(table, 100.0, (3, 5), method="bilinear", frames=2).sum(axis=(1, 2)).tolist()
    [2.0, 1.0]
    """
    table = _check_table(table, "the localizations")
    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise InputError(f"pixel_size={pixel_size!r}: give the output pixel size in nm (a positive number).")
    if method not in ("gaussian", "histogram", "bilinear"):
        raise InputError(f"method={method!r}: choose 'gaussian', 'histogram' or 'bilinear'.")
    if method == "gaussian" and not (math.isfinite(sigma) and sigma > 0):
        raise InputError(f"sigma={sigma!r}: give the Gaussian's std in nm (a positive number).")
    if weights not in ("count", "intensity"):
        raise InputError(f"weights={weights!r}: choose 'count' or 'intensity'.")
    if frames is not None and frames < 1:
        raise InputError(f"frames={frames!r}: give the number of frames (at least 1), or None for one image.")
    if shape is None:
        extent = [np.max(table[axis], initial=0.0) for axis in ("y", "x")]
        shape = tuple(int(e // pixel_size) + 1 for e in extent)
    rows, cols = (int(n) for n in shape)
    if rows < 1 or cols < 1:
        raise InputError(f"shape={shape!r}: the output needs at least one row and one column.")
    weight = np.ones(len(table)) if weights == "count" else table["intensity"].astype(np.float64)
    if not np.isfinite(weight).all():
        raise InputError("weights='intensity' needs an intensity for every localization; some are missing (NaN).")
    plane = np.zeros(len(table), np.int64) if frames is None else table["frame"] - 1
    n_planes = 1 if frames is None else int(frames)
    u, v = table["x"] / pixel_size, table["y"] / pixel_size
    if method == "histogram":
        corners = [(np.floor(v), np.floor(u), weight)]
    else:
        # Pixel-centre coordinates: pixel j's centre is at u = j + 0.5.
        u0, v0 = np.floor(u - 0.5), np.floor(v - 0.5)
        fu, fv = u - 0.5 - u0, v - 0.5 - v0
        corners = [
            (v0 + dv, u0 + du, weight * (fv if dv else 1 - fv) * (fu if du else 1 - fu))
            for dv in (0, 1)
            for du in (0, 1)
        ]
    row, col, w = (np.concatenate(parts) for parts in zip(*corners))
    planes = np.tile(plane, len(corners))
    keep = (row >= 0) & (row < rows) & (col >= 0) & (col < cols) & (planes >= 0) & (planes < n_planes)
    index = (planes[keep] * rows + row[keep].astype(np.int64)) * cols + col[keep].astype(np.int64)
    image = np.bincount(index, w[keep], minlength=n_planes * rows * cols).reshape(n_planes, rows, cols)
    if method == "gaussian":
        image = ndimage.gaussian_filter(image, (0, sigma / pixel_size, sigma / pixel_size), mode="constant")
    return (image[0] if frames is None else image).astype(np.float32)
