"""The resumable scratch output of a streaming prediction: ``OUTPUT.partial/``.

It holds ``rows.f32``, the float32 output planes in C order with no header, and
``progress.json``, the job that writes them and the first (plane, row) not yet
finished. Rows are written and read with plain file I/O: a memory map would count
every page it touches in the process's resident memory, and an output may be far
larger than memory. (A Zarr array here cost 11 % of a 1024² prediction, encoding
chunks that are read back once.)

Examples
--------
>>> import tempfile
>>> folder = Path(tempfile.mkdtemp()) / "out.tif.partial"
>>> partial, done = PartialOutput.open(folder, {"model": "abc"}, (2, 3, 4), resume=False)
>>> done
(0, 0)
>>> partial.write(1, 1, np.ones((2, 4), np.float32))
>>> partial.save_progress((1, 3))
>>> partial.to_dask()[1].compute().tolist()
[[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
>>> PartialOutput.open(folder, {"model": "abc"}, (2, 3, 4), resume=True)[1]
(1, 3)
"""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from pathlib import Path

import dask.array as da
import numpy as np

from microsr.errors import InputError

__all__ = ["PartialOutput"]

_ROWS_FILE = "rows.f32"
_PROGRESS_FILE = "progress.json"
_READ_ROWS = 512  # rows per chunk when the finished output is read back


class PartialOutput:
    """Float32 planes ``shape = (..., height, width)`` on disk, written row by row.

    Create or reopen one with :meth:`open`. It holds no open file, so it pickles for
    dask workers in other processes.
    """

    def __init__(self, folder: Path, job: dict, shape: tuple[int, ...]) -> None:
        self.folder, self.job = folder, job
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(np.float32)
        self.ndim = len(self.shape)

    @classmethod
    def open(
        cls, folder: Path, job: dict, shape: tuple[int, ...], resume: bool
    ) -> tuple[PartialOutput, tuple[int, int]]:
        """The partial output in ``folder`` and the first (plane number, row) still to do.

        An existing one of the same ``job`` is continued, with a warning when ``resume``
        was not asked for (nothing already computed is thrown away); one of another job
        is replaced by a new, all-zero one, with a warning saying so.

        Raises
        ------
        InputError
            If ``resume`` finds a partial output of a different job.
        """
        partial = cls(folder, job, shape)
        saved = _saved_progress(folder, math.prod(partial.shape) * partial.dtype.itemsize)
        if saved is not None and saved["job"] == job:
            if not resume:
                warnings.warn(f"{folder}: continuing the interrupted run of the same input, model and settings "
                              f"from row {saved['done'][1]} of plane {saved['done'][0]}; delete it to start over.",
                              stacklevel=2)
            return partial, tuple(saved["done"])
        if resume and saved is not None:
            changed = sorted(key for key in job if saved["job"].get(key) != job[key])
            raise InputError(
                f"{folder}: this partial output was started with a different {', '.join(changed)}; "
                "resume with the same input, model and settings, or run without resume to start over."
            )
        if folder.exists():
            warnings.warn(f"{folder}: discarding an unfinished output of a different input, model or settings "
                          "(or a damaged one); starting over.", stacklevel=2)
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        with open(folder / _ROWS_FILE, "wb") as file:
            file.truncate(math.prod(partial.shape) * partial.dtype.itemsize)  # sparse: reads as zeros
        partial.save_progress((0, 0))
        return partial, (0, 0)

    def write(self, plane: int, row: int, block: np.ndarray, col: int = 0) -> None:
        """Store ``block`` (``(n, m)``) at ``row``, ``col`` of plane number ``plane`` (C order of the lead axes)."""
        with open(self.folder / _ROWS_FILE, "r+b") as file:
            for i, line in enumerate(block):
                file.seek(self._offset(plane, row + i) + col * self.dtype.itemsize)
                file.write(np.ascontiguousarray(line, self.dtype).data)

    def save_progress(self, done: tuple[int, int]) -> None:
        """Record that planes before ``done[0]`` and rows before ``done[1]`` of that plane are written."""
        temporary = self.folder / (_PROGRESS_FILE + ".tmp")
        temporary.write_text(json.dumps({"job": self.job, "done": list(done)}))
        os.replace(temporary, self.folder / _PROGRESS_FILE)  # atomic: a crash never leaves a torn record

    def to_dask(self) -> da.Array:
        """The whole output as a lazy array, read in bands of rows."""
        chunks = (1,) * (self.ndim - 2) + (min(self.shape[-2], _READ_ROWS), self.shape[-1])
        return da.from_array(self, chunks=chunks, fancy=False, meta=np.empty((0,) * self.ndim, self.dtype))

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        """Read a block; dask asks for one slice per axis."""
        key = tuple(key) + (slice(None),) * (self.ndim - len(tuple(key)))
        height, width = self.shape[-2:]
        planes = np.arange(math.prod(self.shape[:-2])).reshape(self.shape[:-2])[key[:-2]]
        start, stop, step = key[-2].indices(height)
        out = np.empty((*planes.shape, max(stop - start, 0), width), self.dtype)
        with open(self.folder / _ROWS_FILE, "rb") as file:
            for index, plane in np.ndenumerate(planes):
                file.seek(self._offset(int(plane), start))
                out[index] = np.fromfile(file, self.dtype, out[index].size).reshape(-1, width)
        return out[..., :: step, key[-1]]

    def _offset(self, plane: int, row: int) -> int:
        height, width = self.shape[-2:]
        return (plane * height + row) * width * self.dtype.itemsize


def _saved_progress(folder: Path, size: int) -> dict | None:
    """The progress record in ``folder``, or None if there is none or its rows file is not ``size`` bytes."""
    try:
        saved = json.loads((folder / _PROGRESS_FILE).read_text())
        complete = (folder / _ROWS_FILE).stat().st_size == size
    except (OSError, ValueError):
        return None
    return saved if complete and isinstance(saved, dict) and isinstance(saved.get("job"), dict) else None
