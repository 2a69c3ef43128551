"""Localization tables of single-molecule localization microscopy (SMLM): make, read, write.

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
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np

from microsr.errors import InputError
from microsr.io import PathLike
from microsr.io import atomic_output

__all__ = ["CSV_COLUMNS", "LOCALIZATION_DTYPE", "localization_table", "read_localizations", "write_localizations"]


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
            "microsr.smlm.table.localization_table or read_localizations)."
        )
    return table
