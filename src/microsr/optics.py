"""Optics shared by simulation and reconstruction: the wide-field OTF, ideal or measured.

:func:`cutoff_frequency` and :func:`ideal_otf` describe an aberration-free circular pupil;
:class:`OTF` holds a radial OTF (ideal, or read by :func:`read_otf` from a Priism/OMX
``.mrc`` file or a two-column CSV). Both :mod:`microsr.simulate.sim` (which blurs with it)
and :mod:`microsr.sim.wiener` (which deconvolves with it) import it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from microsr.errors import InputError
from microsr.io import PathLike

__all__ = ["OTF", "cutoff_frequency", "ideal_otf", "read_mrc", "read_otf"]


def cutoff_frequency(na: float, wavelength: float) -> float:
    """Wide-field incoherent cut-off ``2 NA / wavelength`` (cycles per nm for a wavelength in nm).

    Examples
    --------
    >>> round(1 / cutoff_frequency(1.2, 525.0), 1)  # finest resolvable period, nm
    218.8
    """
    return 2.0 * na / wavelength


def ideal_otf(rho: np.ndarray) -> np.ndarray:
    """OTF of an aberration-free circular pupil at ``rho`` = frequency / cut-off.

    ``(2 / π) (arccos ρ - ρ sqrt(1 - ρ²))`` for ``ρ < 1``, else 0.

    Examples
    --------
    >>> ideal_otf(np.array([0.0, 0.5, 1.0, 2.0])).round(3).tolist()
    [1.0, 0.391, 0.0, 0.0]
    """
    rho = np.minimum(np.abs(np.asarray(rho, dtype=np.float64)), 1.0)
    return (2.0 / np.pi) * (np.arccos(rho) - rho * np.sqrt(1.0 - rho**2))


# A measured OTF's tail under 0.5 % of its zero-frequency value is noise (rDL-SIM's otfcutoff): kept, it would
# put the cut-off of the Priism OTFs of rDL-SIM near Nyquist instead of at 2 NA / wavelength.
_OTF_NOISE_FLOOR = 5e-3


@dataclass(frozen=True)
class OTF:
    """A rotationally symmetric wide-field OTF: ``values`` at ``frequencies`` (cycles/nm), 0 beyond.

    Examples
    --------
    >>> otf = OTF.model(na=1.2, wavelength=525.0)
    >>> round(1 / otf.cutoff, 1), float(otf(np.array([0.0]))[0])
    (218.8, 1.0)
    """

    frequencies: np.ndarray
    values: np.ndarray

    @classmethod
    def model(cls, na: float, wavelength: float, samples: int = 512) -> OTF:
        """The ideal OTF of a circular pupil of numerical aperture ``na`` at ``wavelength`` nm."""
        if not (0 < na < 1.7 and wavelength > 0):
            raise InputError(f"na={na!r}, wavelength={wavelength!r}: give 0 < NA < 1.7 and a wavelength in nm.")
        frequencies = np.linspace(0.0, cutoff_frequency(na, wavelength), samples)
        return cls(frequencies, ideal_otf(np.linspace(0.0, 1.0, samples)))

    @property
    def cutoff(self) -> float:
        """Where the OTF ends: the first sample at zero after the last positive one (or the last sample), cycles/nm."""
        last = np.flatnonzero(self.values > 0)[-1]
        return float(self.frequencies[min(last + 1, self.frequencies.size - 1)])

    def __call__(self, frequency: np.ndarray) -> np.ndarray:
        """Values at ``frequency`` (cycles/nm, any sign), normalised to 1 at zero."""
        values = np.interp(np.abs(frequency), self.frequencies, self.values, right=0.0)
        return values / self.values[0]


def read_otf(path: PathLike) -> OTF:
    """Read a measured radial OTF.

    Parameters
    ----------
    path
        A Priism/OMX ``.mrc`` file holding one row of (complex) OTF samples from zero
        frequency, spaced by the header's cell size (cycles/µm), as written by SIM
        software; or a ``.csv``/``.txt`` file of two columns: frequency in cycles/µm and
        OTF value (a header line is allowed).

    Returns
    -------
    OTF
        The magnitude, normalised to 1 at zero frequency; values under 0.5 % of it are
        set to 0 (noise), which sets :attr:`OTF.cutoff`.

    Examples
    --------
    >>> otf = read_otf("TIRF488_cam1_0_z30_OTF2d.mrc")  # doctest: +SKIP
    >>> round(otf.cutoff * 1000, 2)  # cycles/µm  # doctest: +SKIP
    5.4
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: OTF file not found. Check the path.")
    if path.suffix.lower() == ".mrc":
        data, spacing = read_mrc(path)
        values = np.abs(data.reshape(-1, data.shape[-1])[0]) if data.ndim > 1 else np.abs(data)
        frequencies = np.arange(values.size) * spacing
    else:
        try:
            table = np.loadtxt(path, delimiter="," if path.suffix.lower() == ".csv" else None, ndmin=2,
                               skiprows=_header_lines(path))
        except ValueError as exc:
            raise InputError(f"{path}: expected two numeric columns (cycles/µm, OTF); {exc}.") from exc
        if table.shape[1] < 2:
            raise InputError(f"{path}: expected two columns (frequency in cycles/µm, OTF value).")
        frequencies, values = table[:, 0], np.abs(table[:, 1])
    if values.size < 2 or not values[0] > 0 or not np.all(np.diff(frequencies) > 0):
        raise InputError(f"{path}: an OTF needs increasing frequencies from 0 and a positive value at 0.")
    values = np.where(values > _OTF_NOISE_FLOOR * values[0], values, 0.0)
    return OTF(frequencies / 1000.0, values)


def _header_lines(path: Path) -> int:
    first = path.read_text().splitlines()[:1]
    try:
        [float(v) for v in first[0].replace(",", " ").split()] if first else None
    except ValueError:
        return 1
    return 0


_MRC_DTYPES = {0: np.int8, 1: np.int16, 2: np.float32, 4: np.complex64, 6: np.uint16}


def read_mrc(path: Path) -> tuple[np.ndarray, float]:
    """Data ``(nz, ny, nx)`` (squeezed) of an MRC file and its X spacing (cell size / samples)."""
    raw = path.read_bytes()
    if len(raw) < 1024:
        raise InputError(f"{path}: too short for an MRC file (no 1024-byte header).")
    header = np.frombuffer(raw[:1024], dtype="<i4")
    nx, ny, nz, mode = (int(v) for v in header[:4])
    if mode not in _MRC_DTYPES or min(nx, ny, nz) < 1:
        raise InputError(f"{path}: unsupported MRC file (mode {mode}, size {nx}x{ny}x{nz}).")
    cell = float(np.frombuffer(raw[40:44], dtype="<f4")[0])
    samples = int(header[7]) or nx
    start = 1024 + int(header[23])
    dtype = np.dtype(_MRC_DTYPES[mode]).newbyteorder("<")
    count = nx * ny * nz
    if len(raw) < start + count * dtype.itemsize:
        raise InputError(f"{path}: the MRC file is truncated; re-export or re-download it.")
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=start).reshape(nz, ny, nx)
    return data.squeeze(), cell / samples
