"""The resumable output of a streaming prediction while it is written: ``OUTPUT.partial/``.

It holds the output itself, in its final format and under its final name, written
row by row in place (:func:`microsr.io.open_row_writer`: a TIFF's rows go straight
to their place in the file, an OME-Zarr's pyramid is built from bands as they pass),
and ``progress.json``, the job that writes it and the first (plane, row) not yet
in the file (an OME-Zarr's bands are stored in the background, and recorded once
stored). When every row is written, :meth:`PartialOutput.finish` moves the
output into place atomically. Nothing is read back or converted: writing costs
no more than the bytes written (and a Zarr's compression).

A prediction computed in blocks by many processes (:class:`PartialBlocks`) records
finished blocks instead, one empty file each, written by the process that stored them.

Examples
--------
>>> import tempfile
>>> import dask.array as da
>>> from microsr.io import read_image
>>> folder = Path(tempfile.mkdtemp()) / "out.tif.partial"
>>> layout = Image(da.zeros((2, 3, 4), dtype=np.float32), "ZYX", pixel_size=50.0)
>>> partial, done = PartialOutput.open(folder, {"model": "abc"}, layout, "out.tif", resume=False)
>>> done
(0, 0)
>>> partial.write(1, 1, 0, np.ones((2, 4), np.float32))
>>> partial.finish_rows(1, 3)
>>> PartialOutput.open(folder, {"model": "abc"}, layout, "out.tif", resume=True)[1]
(2, 0)
>>> output = partial.finish(folder.parent / "out.tif")
>>> read_image(output).data[1].compute().tolist()
[[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
import weakref
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from microsr.errors import InputError
from microsr.io.files import PathLike
from microsr.io.files import atomic_output
from microsr.io.image import Image, open_pyramid, open_row_writer

__all__ = ["PartialBlocks", "PartialOutput"]


_PROGRESS_FILE = "progress.json"
_BLOCKS = "blocks"


class PartialOutput:
    """An output being written plane by plane, band by band, with its progress; see :meth:`open`."""

    # Partial outputs of this process by folder: a run stopped by an exception may still be
    # storing its last band, which a new run on the same folder waits for.
    _open: weakref.WeakValueDictionary[Path, PartialOutput] = weakref.WeakValueDictionary()

    def __init__(self, folder: Path, job: dict, layout: Image, name: str, create: bool) -> None:
        self.folder, self.job, self.path = folder, job, folder / name
        self.planes = int(np.prod(layout.shape[:-2], dtype=int))
        self.done = (0, 0)  # the first (plane, row) not yet in the file, as recorded in progress.json
        self.writer = open_row_writer(self.path, layout, create=create, on_stored=self._save_progress)
        PartialOutput._open[Path(os.path.abspath(folder))] = self

    @classmethod
    def open(
        cls, folder: Path, job: dict, layout: Image, name: str, resume: bool
    ) -> tuple[PartialOutput, tuple[int, int]]:
        """The partial output in ``folder`` and the first (plane number, row) still to do.

        Parameters
        ----------
        folder : Path
            ``OUTPUT.partial``, next to the output.
        job : dict
            What identifies the run (JSON data); only the same job resumes.
        layout : Image
            Shape, axes, pixel size and Z spacing of the float32 output (its data is not read).
        name : str
            The output's file name, whose suffix chooses the format.
        resume : bool
            Whether the caller asked to resume. An existing partial output of the same
            ``job`` is continued either way, with a warning when ``resume`` was not asked
            for (nothing already computed is thrown away); one of another job is replaced
            by a new, all-zero one, with a warning saying so.

        Raises
        ------
        InputError
            If ``resume`` finds a partial output of a different job.
        """
        earlier = cls._open.get(Path(os.path.abspath(folder)))
        if earlier is not None:
            try:
                earlier.writer.flush()  # its progress then records what it stored
            except Exception:  # noqa: BLE001 - that run's failure: what it did not store is not recorded
                pass
        saved = _reuse(folder, job, name, resume)
        if saved is not None:
            partial = cls(folder, job, layout, name, create=False)
            partial.done = tuple(saved["done"])
            return partial, partial.done
        partial = cls(folder, job, layout, name, create=True)
        partial._save_progress(0, 0)
        return partial, (0, 0)

    def write(self, plane: int, row: int, col: int, block: np.ndarray) -> None:
        """Store ``block`` (``(n, m)``) at ``row``, ``col`` of plane number ``plane`` (C order of the lead axes)."""
        self.writer.write(plane, row, col, block)

    def finish_rows(self, plane: int, end: int) -> None:
        """Rows before ``end`` of ``plane`` are all written: store them; progress is recorded as they are stored."""
        self.writer.finish_rows(plane, end)

    def finish(self, output: PathLike, *, overwrite: bool = False, inputs: Iterable[PathLike] = ()) -> Path:
        """Move the finished output to ``output`` atomically (as :func:`microsr.io.atomic_output`); delete the folder."""
        output = Path(output)
        self.writer.flush()
        if self.done != (self.planes, 0):  # never move (and report) an unfinished output
            raise InputError(f"{self.folder}: the prediction stopped at row {self.done[1]} of plane {self.done[0]}; "
                             "run again with resume (--resume) to finish it.")
        with atomic_output(output, overwrite=overwrite, inputs=inputs) as temporary:
            os.replace(self.path, temporary)
        shutil.rmtree(self.folder)
        return output

    def _save_progress(self, plane: int, row: int) -> None:
        """Record that planes before ``plane`` and rows before ``row`` of that plane are in the file."""
        _write_progress(self.folder, {"job": self.job, "done": [plane, row]})
        self.done = (plane, row)


class PartialBlocks:
    """The output of a prediction computed in blocks by many processes (a Dask cluster) while it is
    written: ``OUTPUT.partial/`` holding the OME-Zarr pyramid under its final name, ``progress.json``
    (the job) and ``blocks/``, an empty file per finished block.

    Each block's writer records it with :meth:`record` once its chunks are stored, from whichever
    process wrote it; blocks are written into chunks of their own, so no two writers meet.

    Examples
    --------
    >>> import tempfile
    >>> import dask.array as da
    >>> folder = Path(tempfile.mkdtemp()) / "out.ome.zarr.partial"
    >>> layout = Image(da.zeros((2, 3, 4), dtype=np.float32), "ZYX", pixel_size=50.0)
    >>> partial = PartialBlocks.open(folder, {"model": "abc"}, layout, "out.ome.zarr", resume=False)
    >>> PartialBlocks.record(folder, 1)
    >>> PartialBlocks.open(folder, {"model": "abc"}, layout, "out.ome.zarr", resume=True).finished()
    {1}
    """

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.path = folder, folder / name

    @classmethod
    def open(cls, folder: Path, job: dict, layout: Image, name: str, resume: bool) -> PartialBlocks:
        """The partial output in ``folder``: an earlier one of the same ``job`` continued, else a new one
        (its pyramid created for the float32 ``layout``, whose data is not read). Arguments and warnings
        as in :meth:`PartialOutput.open`."""
        partial = cls(folder, name)
        if _reuse(folder, job, name, resume) is None:
            open_pyramid(partial.path, layout)
            (folder / _BLOCKS).mkdir()
            _write_progress(folder, {"job": job, "done": "blocks"})
        return partial

    def finished(self) -> set[int]:
        """Numbers of the blocks recorded as written."""
        return {int(p.name) for p in (self.folder / _BLOCKS).iterdir() if p.name.isdigit()}

    @staticmethod
    def record(folder: Path, block: int) -> None:
        """Record block number ``block`` as written (after its chunks are stored)."""
        (Path(folder) / _BLOCKS / str(block)).touch()

    def finish(self, output: PathLike, *, overwrite: bool = False, inputs: Iterable[PathLike] = ()) -> Path:
        """Move the finished output to ``output`` atomically (as :func:`microsr.io.atomic_output`); delete the folder."""
        output = Path(output)
        with atomic_output(output, overwrite=overwrite, inputs=inputs) as temporary:
            os.replace(self.path, temporary)
        shutil.rmtree(self.folder)
        return output


def _reuse(folder: Path, job: dict, name: str, resume: bool) -> dict | None:
    """The progress record in ``folder`` if it is of the same ``job`` (to continue); else None, with
    ``folder`` made new and empty (a different job's, or a damaged, partial output discarded)."""
    saved = _saved_progress(folder, name)
    if saved is not None and saved["job"] == job:
        if not resume:
            warnings.warn(f"{folder}: continuing the interrupted run of the same input, model and settings "
                          f"({_describe(saved['done'])} done); delete it to start over.", stacklevel=3)
        return saved
    if resume and saved is not None:
        changed = sorted(key for key in job if saved["job"].get(key) != job[key])
        raise InputError(
            f"{folder}: this partial output was started with a different {', '.join(changed)}; "
            "resume with the same input, model and settings, or run without resume to start over."
        )
    if folder.exists():
        warnings.warn(f"{folder}: discarding an unfinished output of a different input, model or settings "
                      "(or a damaged one); starting over.", stacklevel=3)
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return None


def _describe(done: list | str) -> str:
    return "some blocks" if done == "blocks" else f"planes before {done[0]} and rows before {done[1]} of it"


def _write_progress(folder: Path, record: dict) -> None:
    temporary = folder / (_PROGRESS_FILE + ".tmp")
    temporary.write_text(json.dumps(record))
    os.replace(temporary, folder / _PROGRESS_FILE)  # atomic: a crash never leaves a torn record


def _saved_progress(folder: Path, name: str) -> dict | None:
    """The progress record in ``folder``, or None if there is none, it is damaged or the output file is missing."""
    try:
        saved = json.loads((folder / _PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict):
        return None
    done = saved.get("done")
    valid = isinstance(saved.get("job"), dict) and (done == "blocks" or (isinstance(done, list) and len(done) == 2))
    return saved if valid and (folder / name).exists() else None
