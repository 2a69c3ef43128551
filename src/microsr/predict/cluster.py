"""Prediction on a Dask cluster: the engine's tiles, grouped into blocks of whole output chunks,
computed by the workers, each of which writes its blocks straight into their chunks.

The output (an OME-Zarr pyramid) is cut into blocks of whole level-0 chunks, cut on the
engine's tile grid: a block is the output of whole tiles, each read with its receptive-field
context from the input file itself (:meth:`~microsr.predict.engine.Predictor.predict_block`), so
blocks join into exactly what one process predicts. A worker writes a block's level-0 chunks
and those of the coarser levels it covers whole (:func:`microsr.io.write_region`), then records
it in ``OUTPUT.partial/blocks/`` (:class:`microsr.io.partial.PartialBlocks`): nothing goes back
through the client but the block's number, no two workers share a chunk, and a run resumed
after the client died skips the recorded blocks. The pyramid's coarser levels that no block
covers whole are then halved from the level before on the cluster
(:func:`microsr.io.fill_levels`).

Each worker rebuilds the model once, from its architecture and safetensors weights sent when the
run starts (a worker plugin, :class:`_ModelOnWorker`, also set up on workers that join later,
e.g. one restarted after a crash); Dask gives the blocks of a worker that dies to the others.

Needs the optional extra ``microsr[distributed]``.
"""

from __future__ import annotations

import logging
import math
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_weights
from safetensors.torch import save as save_weights
from rich.progress import Progress

from microsr.data.normalize import PercentileNormalizer
from microsr.errors import InputError
from microsr.io import (
    Image, PathLike, aligned_levels, check_image_output, check_output, fill_levels, open_pyramid, output_lock,
    write_region,
)
from microsr.io.partial import PartialBlocks
from microsr.models import create_model
from microsr.predict.engine import Predictor
from microsr.runtime.precision import PRECISIONS

try:
    from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker
except ImportError:  # the optional extra; `cluster` and `predict_on_cluster` say how to install it
    Client = LocalCluster = as_completed = get_worker = None
    WorkerPlugin = object

__all__ = ["DEFAULT_BLOCK", "Block", "check_cluster", "check_cluster_output", "cluster", "plan_blocks", "predict_on_cluster"]

DEFAULT_BLOCK = 2048
"""Output pixels per block side (rounded to whole chunks and tiles): see benchmarks/README.md,
"Prediction on a Dask cluster", for the overhead per block against its size."""

_MAX_BLOCK = 16384  # output pixels per side a block may need to hold whole tiles and whole chunks
_INSTALL = "prediction on a Dask cluster needs the extra: pip install 'microsr[distributed]'"


@dataclass(frozen=True)
class Block:
    """A piece of the output written by one task: whole chunks of level 0, on the engine's tile grid.

    Attributes
    ----------
    number : int
        Its position in the plan, the name under which it is recorded when written.
    region : tuple of slice
        Its place in level 0 of the output: a slice per axis (leading axes, then Y, X).
    """

    number: int
    region: tuple[slice, ...]

    def planes(self) -> Iterator[tuple[int, ...]]:
        """Indices of the output planes it holds, in its leading axes."""
        return product(*(range(s.start, s.stop) for s in self.region[:-2]))


def plan_blocks(
    shape: Sequence[int], chunks: Sequence[int], tile: tuple[int, int], block: int = DEFAULT_BLOCK
) -> list[Block]:
    """Cut an output of ``shape`` into blocks of whole ``chunks`` and whole ``tile`` cores, about ``block`` a side.

    Parameters
    ----------
    shape, chunks
        Shape and chunk shape of level 0 of the output (leading axes, then Y, X).
    tile
        Output rows and columns of a tile core (:meth:`~microsr.predict.engine.Predictor.tile_grid`).
    block
        Wanted output pixels per side; rounded to the nearest multiple of both the chunk and
        the tile side (at least one), or the whole axis.

    Raises
    ------
    InputError
        If a block holding whole chunks and whole tiles would be larger than 16384 pixels a
        side (a tile side that is no multiple nor divisor of the chunk side).

    Examples
    --------
    >>> [b.region for b in plan_blocks((2, 1500, 600), (1, 512, 512), (256, 256), block=1024)]  # doctest: +NORMALIZE_WHITESPACE
    [(slice(0, 1, None), slice(0, 1024, None), slice(0, 600, None)),
     (slice(0, 1, None), slice(1024, 1500, None), slice(0, 600, None)),
     (slice(1, 2, None), slice(0, 1024, None), slice(0, 600, None)),
     (slice(1, 2, None), slice(1024, 1500, None), slice(0, 600, None))]
    """
    sides = []
    for n, chunk, step in zip(shape[-2:], chunks[-2:], tile):
        unit = math.lcm(chunk, step)
        if unit >= n:
            sides.append(n)
        elif unit > _MAX_BLOCK:
            raise InputError(f"a tile of {step} output pixels and chunks of {chunk} only align every {unit} pixels; "
                             "choose a tile whose output side is a multiple or divisor of 512 (e.g. --tile 512).")
        else:
            sides.append(unit * max(1, round(block / unit)))
    axes = [range(0, n, c) for n, c in zip(shape[:-2], chunks[:-2])]
    axes += [range(0, n, side) for n, side in zip(shape[-2:], sides)]
    widths = [*chunks[:-2], *sides]
    return [Block(number, tuple(slice(start, min(start + width, n)) for start, width, n in zip(starts, widths, shape)))
            for number, starts in enumerate(product(*axes))]


@contextmanager
def cluster(scheduler: str | None = None, workers: int | None = None) -> Iterator[Client]:
    """A client of the cluster at ``scheduler`` (``tcp://HOST:8786``), or of a local cluster of ``workers`` processes.

    A local cluster shares this machine's cores among its worker processes (one thread
    each at least) and is closed on exit.

    Examples
    --------
    >>> with cluster(workers=2) as client:  # doctest: +SKIP
    ...     restorer.predict_file("in.ome.zarr", "out.ome.zarr", client=client)
    """
    check_cluster(scheduler, workers)
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler} ({exc}).") from None
        with client:
            yield client
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    # Dask's nannies set their workers' variables (OMP_NUM_THREADS=1, ...) in this process's environment
    # too, at every spawn: they would reach every later child of this process. Put it back on exit.
    environment = dict(os.environ)
    try:
        # Workers' log lines (e.g. a nanny restarting a dead worker) would bury the progress bar.
        with LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True, dashboard_address=":0",
                          silence_logs=logging.ERROR) as local, Client(local) as client:
            yield client
    finally:
        os.environ.clear()
        os.environ.update(environment)


def check_cluster(scheduler: str | None, workers: int | None) -> None:
    """Raise :class:`~microsr.errors.InputError` unless exactly one of ``scheduler`` and ``workers`` (at least 1)
    is given and the extra is installed: what :func:`cluster` needs, checked before any work.

    Examples
    --------
    >>> check_cluster("tcp://127.0.0.1:8786", 2)
    Traceback (most recent call last):
    ...
    microsr.errors.InputError: --workers starts a local cluster and --scheduler joins a running one: give one of them.
    """
    if scheduler is not None and workers is not None:
        raise InputError("--workers starts a local cluster and --scheduler joins a running one: give one of them.")
    if scheduler is None and workers is None:
        raise InputError("give a scheduler address (--scheduler tcp://HOST:8786) or a number of local worker "
                         "processes (--workers N).")
    if workers is not None and workers < 1:
        raise InputError(f"--workers {workers}: give at least 1.")
    if Client is None:
        raise InputError(_INSTALL)


def check_cluster_output(output: PathLike, overwrite: bool = False, inputs: Sequence[PathLike] = ()) -> None:
    """Raise :class:`~microsr.errors.InputError` unless :func:`predict_on_cluster` can write ``output``
    (an OME-Zarr, new or with ``overwrite``, that is no input) and the extra is installed.

    Examples
    --------
    >>> check_cluster_output("restored.tif")
    Traceback (most recent call last):
    ...
    microsr.errors.InputError: restored.tif: a prediction on a cluster is written to .ome.zarr (or .zarr) only: its workers write chunks of their own, which a TIFF does not have.
    """
    output = Path(output)
    if not output.name.lower().endswith(".zarr"):
        raise InputError(f"{output}: a prediction on a cluster is written to .ome.zarr (or .zarr) only: its "
                         "workers write chunks of their own, which a TIFF does not have.")
    if Client is None:
        raise InputError(_INSTALL)
    check_image_output(output, overwrite, inputs, dtype=np.float32)
    check_output(output.with_name(output.name + ".partial"), overwrite=True, inputs=inputs)


def predict_on_cluster(
    model: torch.nn.Module,
    arch: dict[str, Any],
    settings: dict[str, Any],
    image: Image,
    output: PathLike,
    *,
    client: Client,
    block: int = DEFAULT_BLOCK,
    overwrite: bool = False,
    resume: bool = False,
    inputs: Sequence[PathLike] = (),
    progress: bool = True,
    on_block: Callable[[int, int], None] | None = None,
) -> Path:
    """Predict ``image`` into the OME-Zarr ``output`` on the Dask cluster of ``client``.

    Usually called through :meth:`microsr.Restorer.predict_file` with ``client=``.

    Parameters
    ----------
    model, arch
        The network and the registry description it is rebuilt from on each worker
        (:func:`microsr.models.create_model` keyword arguments).
    settings
        Keyword arguments of :class:`~microsr.predict.engine.Predictor` (scale, frames, tile, ...);
        ``precision="auto"`` is measured here, on the client's machine, and the result used by
        every worker (give it explicitly when the workers' machines differ). Tiles must not be
        cross-faded (``blend=0``).
    image
        The input, read lazily; workers read their blocks' context from its file(s), so the
        path must be readable on every worker (a shared file system or object store).
    output
        ``.ome.zarr`` or ``.zarr``, on storage every worker can write.
    client
        A ``distributed.Client``; see :func:`cluster`.
    block
        Output pixels per block side, rounded to whole chunks and tiles (:func:`plan_blocks`).
    overwrite, resume, inputs
        As in :meth:`~microsr.predict.engine.Predictor.predict_to_file`; ``resume`` skips the
        blocks recorded in ``OUTPUT.partial``.
    progress
        Show a progress bar over blocks.
    on_block
        Called as ``on_block(blocks_done, blocks_total)`` after each block, in this thread; an
        exception from it stops the run (what is written stays, for ``resume``).

    Returns
    -------
    Path
        ``output``.

    Examples
    --------
    >>> with cluster(workers=2) as client:  # doctest: +SKIP
    ...     load_model("my_model").predict_file("big.ome.zarr", "big_x4.ome.zarr", client=client)
    """
    output = Path(output)
    protected = [*inputs, *([image.path] if image.path else [])]
    check_cluster_output(output, overwrite, protected)
    partial_folder = output.with_name(output.name + ".partial")
    if not arch:
        raise InputError("prediction on a cluster rebuilds the model on each worker from its architecture, and "
                         "this model has none recorded (a custom or imported model); predict in one process.")
    predictor = Predictor(model, **settings)
    if predictor.blend:
        raise InputError(f"overlap {predictor.overlap} with blend {predictor.blend}: blocks are predicted apart only "
                         "from tiles that are not cross-faded; use the model's own overlap.")
    # The engine's internals, shared within this package: the normaliser fitted to the whole image,
    # the output's layout, and what identifies the run for resuming.
    source = predictor._source(image)
    layout = predictor._layout(source)
    job = {**predictor._job(source), "blocks": block}
    with output_lock(output):
        partial = PartialBlocks.open(partial_folder, job, layout, output.name, resume)
        arrays = open_pyramid(partial.path)
        blocks = plan_blocks(arrays[0].shape, arrays[0].chunks, predictor.tile_grid(image), block)
        levels = min(aligned_levels(arrays, b.region) for b in blocks)
        finished = partial.finished()
        todo = [b for b in blocks if b.number not in finished]
        name = f"microsr-{uuid.uuid4().hex}"
        plugin = _ModelOnWorker(
            weights=save_weights({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}),
            arch=dict(arch),
            settings={**settings, "precision": _precision_name(predictor.dtype), "progress": False,
                      "normalizer": source.normalizer.to_dict()},
            image=image, folder=str(partial_folder), name=output.name, levels=levels,
        )
        client.register_plugin(plugin, name=name)
        try:
            _run_blocks(client, name, todo, len(blocks), progress, on_block)
        finally:
            client.unregister_worker_plugin(name)
        fill_levels(arrays, levels, scheduler=client)
        return partial.finish(output, overwrite=overwrite, inputs=protected)


def _run_blocks(client: Client, name: str, todo: list[Block], total: int, progress: bool,
                on_block: Callable[[int, int], None] | None) -> None:
    """Submit every block; count them as they finish; cancel what is left if stopped."""
    done = total - len(todo)
    futures = [client.submit(_predict_block, name, b, key=f"{name}-block-{b.number}", pure=False) for b in todo]
    try:
        with Progress(disable=not progress) as bar:
            task = bar.add_task("Predicting blocks", total=total, completed=done)
            for future in as_completed(futures):
                future.result()  # a block that failed on every worker it was tried on raises here
                done += 1
                bar.advance(task)
                if on_block is not None:
                    on_block(done, total)
    finally:
        client.cancel(futures)


class _ModelOnWorker(WorkerPlugin):
    """What a worker needs to predict blocks, set up once per worker: the model rebuilt and its Predictor."""

    def __init__(self, *, weights: bytes, arch: dict, settings: dict, image: Image, folder: str, name: str,
                 levels: int) -> None:
        self.weights, self.arch, self.settings = weights, arch, settings
        self.image, self.folder, self.name, self.levels = image, folder, name, levels

    def setup(self, worker: Any) -> None:
        # The worker's threads are its share of the machine: torch would otherwise take every core in each.
        torch.set_num_threads(max(1, worker.state.nthreads))
        model = create_model(**self.arch)
        model.load_state_dict(load_weights(self.weights))
        settings = dict(self.settings)
        settings["normalizer"] = PercentileNormalizer.from_dict(settings["normalizer"])
        self.predictor = Predictor(model, **settings)
        self.arrays = open_pyramid(Path(self.folder) / self.name)


def _predict_block(name: str, block: Block) -> int:
    """Task run on a worker: predict ``block``, write it with the levels it covers, record it."""
    state: _ModelOnWorker = get_worker().plugins[name]
    *lead, rows, cols = block.region
    data = np.empty(tuple(s.stop - s.start for s in block.region), np.float32)
    first = tuple(s.start for s in lead)
    for plane in block.planes():
        local = tuple(i - f for i, f in zip(plane, first))
        data[local] = state.predictor.predict_block(state.image, plane, rows, cols)
    write_region(state.arrays, block.region, data, state.levels)
    PartialBlocks.record(Path(state.folder), block.number)
    return block.number


def _precision_name(dtype: torch.dtype) -> str:
    return next(name for name, value in PRECISIONS.items() if value == dtype)
