"""Apply a super-resolution model to images of any size, tile by tile.

A :class:`Predictor` cuts every YX plane into a grid of ``tile`` x ``tile`` cores,
each read with ``overlap`` pixels of context on every side (reflected at the image
borders), runs the tiles through the model in batches and puts the outputs
together. With an overlap of at least the model's receptive-field radius (the
default) every output pixel sees the same input as in a whole-image prediction, so
tiled and whole-image results agree and each tile's core is kept as it is. With a
smaller overlap, tiles are cross-faded with a smooth separable window over the
inner ``blend`` pixels of the overlap (at most ``BLEND_MARGIN``), which spreads
the small differences so that no seams show.

Every microsr model goes through it: single-frame, a sliding window of frames along T
or Z (``frames``), and frames as channels (``channels``: SIM raw frames, SRRF
fluctuation frames, one output plane per acquisition). Only the block read for a tile
differs; tiling, precision, streaming and resume are the same.

Planes are processed one row of tiles (a *band*) at a time. A kept core is handed
on as soon as the model returns it; cross-faded tiles are summed over a band of
output rows, handed on as soon as no later band can touch them. The same loop
fills an in-memory array (:meth:`Predictor.predict`), hands on whole planes one at a
time (:meth:`Predictor.planes`, for SMLM stacks) or streams to a file
(:meth:`Predictor.predict_to_file`), so memory never depends on the image size (nor
on its width, with kept cores). Planes that fit in one tile go through the model
``batch_size`` at a time.

Streaming writes the output in its final format inside ``OUTPUT.partial`` (with a
``progress.json`` naming the finished rows, :mod:`microsr.io.partial`): a TIFF's
rows in place, an OME-Zarr's pyramid level by level from each band as it passes.
When it is complete it is moved into place atomically. An interrupted run leaves
``OUTPUT.partial`` behind and ``resume=True`` continues it.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import torch
from rich.progress import Progress
from skimage.transform import resize
from torch import nn

from microsr.data.datasets import frame_window
from microsr.data.normalize import PercentileNormalizer
from microsr.errors import InputError
from microsr.io import (
    Image, check_finite, check_image_output, check_memory, check_output, output_lock,
)
from microsr.io import PathLike
from microsr.io.partial import PartialOutput
from microsr.models import call_cropped, receptive_field, takes_crop, to_channels_last
from microsr.runtime.allocator import reuse_freed_memory
from microsr.runtime.precision import autocast, resolve_precision

__all__ = ["BLEND_MARGIN", "DEFAULT_TILE", "Predictor", "check_pixel_size", "rescale_image", "tiles_per_batch"]


_PIXEL_SIZE_TOLERANCE = 0.10
BLEND_MARGIN = 8
"""Most LR pixels each side of a tile's core over which neighbouring tiles are cross-faded
when the overlap is given (see :class:`Predictor`'s ``blend``)."""
DEFAULT_TILE = 512
"""LR tile core side: per output pixel, 512 is 1.5x faster than 256 for the default model
on CPU (less overlap per core) and 1024 is slower again (cache misses), see benchmarks/README.md."""

_RADII: weakref.WeakKeyDictionary[nn.Module, int] = weakref.WeakKeyDictionary()
_EMIT_ROWS = 256  # cross-faded rows are handed on, and their progress recorded, in pieces this tall

TileCallback = Callable[[int, int], None]
"""``on_tile(tiles_done, tiles_total)``: progress of a prediction, see :meth:`Predictor.predict`."""


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Axis:
    """The tiling of one image axis (Y or X), in LR pixels unless noted.

    Tile ``i`` has its core at ``[starts[i], starts[i] + core)`` and is read with
    ``overlap`` pixels of context each side. Its output is blended over the core
    plus ``blend`` pixels each side (``blend <= overlap``); the rest of the context
    only feeds the model.
    Cores start at multiples of ``core`` (the last one may extend past the image
    into the reflection), which keeps tiles aligned with the pooling grid of
    U-Net-like models.
    """

    size: int
    core: int
    overlap: int
    blend: int
    scale: int

    @property
    def starts(self) -> range:
        return range(0, self.size, self.core)

    @property
    def span(self) -> int:
        """Output pixels each tile blends: (core + 2 blend) * scale."""
        return (self.core + 2 * self.blend) * self.scale

    def read_indices(self, first: int, last: int) -> np.ndarray:
        """Reflected source indices covering tiles ``first..last`` (inclusive) with their context."""
        wanted = np.arange(self.starts[first] - self.overlap, self.starts[last] + self.core + self.overlap)
        return _reflect(wanted, self.size)

    def blend_start(self, i: int) -> int:
        """Output index of the first pixel tile ``i`` blends (negative before the image)."""
        return (self.starts[i] - self.blend) * self.scale

    def window(self) -> np.ndarray:
        """Raised-cosine weights over one tile's blended span; positive everywhere, so every pixel is covered."""
        return np.sin(np.pi * (np.arange(self.span) + 0.5) / self.span).astype(np.float32) ** 2

    def weight_sum(self) -> np.ndarray:
        """Sum of all tiles' windows at each output pixel of the image, shape ``(size * scale,)``."""
        offset = self.blend * self.scale  # the first tile starts this far before the image
        total = np.zeros(offset + self.starts[-1] * self.scale + self.span, np.float32)
        window = self.window()
        for i in range(len(self.starts)):
            start = offset + self.blend_start(i)
            total[start : start + self.span] += window
        return total[offset : offset + self.size * self.scale]


def _reflect(indices: np.ndarray, size: int) -> np.ndarray:
    """Map indices outside ``[0, size)`` back inside by mirroring (like ``numpy.pad(mode="reflect")``)."""
    if size == 1:
        return np.zeros_like(indices)
    period = 2 * (size - 1)
    indices = np.mod(indices, period)
    return np.where(indices >= size, period - indices, indices)


class _BlendedBand:
    """The cross-faded tiles of one band of a plane, summed over full output rows.

    ``acc`` holds sum(weight * output) over the rows band ``i`` blends and the image's
    columns (finished rows are then contiguous and handed on without a copy); ``acc[0]``
    is output row ``ys.blend_start(i)``. In torch, whose element-wise operations use
    every thread (numpy's one).
    """

    def __init__(self, ys: _Axis, xs: _Axis) -> None:
        self.ys = ys
        self.weight_y, self.weight_x = torch.from_numpy(ys.weight_sum()), torch.from_numpy(xs.weight_sum())
        self.tile_weight = torch.from_numpy(ys.window()[:, None] * xs.window()[None, :])
        self.acc = torch.zeros(ys.span, xs.size * xs.scale)

    def add(self, tile: torch.Tensor, col: int, inside: slice) -> None:
        """Add ``tile``, the part ``inside`` of a tile's blended span, from output column ``col`` on."""
        self.acc[:, col : col + tile.shape[1]].addcmul_(tile, self.tile_weight[:, inside])

    def finish(self, i: int, first_row: int) -> Iterator[tuple[int, np.ndarray]]:
        """After band ``i``: yield ``(row, rows)`` for its finished rows from ``first_row`` on, then move on a band.

        ``rows`` are normalised output, the accumulator's memory: valid until the next item.
        """
        ys, acc = self.ys, self.acc
        top, step, out_height = ys.blend_start(i), ys.core * ys.scale, ys.size * ys.scale
        # Rows above the next band's first blended row get no more contributions.
        stop = min(top + step, out_height) if i + 1 < len(ys.starts) else out_height
        pieces = range(max(top, 0, first_row), stop, _EMIT_ROWS)
        for start, end in zip(pieces, [*pieces[1:], stop]):
            finished = acc[start - top : end - top]
            finished.div_(self.weight_y[start:end, None]).div_(self.weight_x[None, :])  # in place: these rows are done
            yield start, finished.numpy()
        acc[: ys.span - step] = acc[step:].clone()  # the two can overlap when the core is small
        acc[ys.span - step :] = 0


@dataclass(frozen=True)
class _Source:
    """The input image, ready to be read as normalised ``(frames, h, w)`` blocks."""

    image: Image
    name: str
    frames: int
    frame_axis: int | None  # position in image.shape; None for single-frame models
    channels: tuple[int, ...] | None  # frames-as-channels: the frames of each acquisition along frame_axis
    normalizer: PercentileNormalizer

    @property
    def lead_shape(self) -> tuple[int, ...]:
        """Leading shape of the output: the input's, less the axis of the frames taken as channels."""
        shape = self.image.shape[:-2]
        return shape if self.channels is None else shape[: self.frame_axis] + shape[self.frame_axis + 1 :]

    @property
    def axes(self) -> str:
        """Axes of the output."""
        axes = self.image.axes
        return axes if self.channels is None else axes[: self.frame_axis] + axes[self.frame_axis + 1 :]

    def read(self, lead: tuple[int | slice, ...], rows: np.ndarray, cols: np.ndarray, planes: int = 1) -> np.ndarray:
        """Normalised float32 block ``(frames, len(rows), len(cols))`` for the output plane at ``lead``.

        Only the bounding box of ``rows`` x ``cols`` (and of the frames read) is read. A
        single-frame model's ``lead`` may end in a slice of ``planes`` planes, read as frames.
        """
        index = list(lead)
        frames = list(range(planes))
        if self.channels is not None:
            first = min(self.channels)
            index.insert(self.frame_axis, slice(first, max(self.channels) + 1))
            frames = [c - first for c in self.channels]
        elif self.frame_axis is not None:
            window = frame_window(lead[self.frame_axis], self.frames, self.image.shape[self.frame_axis])
            index[self.frame_axis] = slice(min(window), max(window) + 1)
            frames = [f - min(window) for f in window]
        y0, x0 = int(rows.min()), int(cols.min())
        box = self.image.data[(*index, slice(y0, int(rows.max()) + 1), slice(x0, int(cols.max()) + 1))]
        block = np.asarray(box.compute(scheduler="synchronous"), dtype=np.float32)
        block = block.reshape(-1, *block.shape[-2:])[np.ix_(frames, rows - y0, cols - x0)]
        check_finite(block, f"{self.name} (rows {y0}-{int(rows.max())} at {lead})")
        return self.normalizer(block)

    def read_planes(self, leads: list[tuple[int, ...]], rows: np.ndarray, cols: np.ndarray) -> list[np.ndarray]:
        """:meth:`read` for several output planes. Consecutive planes of a single-frame stack are read
        in one go: a chunk of a file holds many small planes (an SMLM stack's frames), and each read
        costs a chunk."""
        first, last = leads[0], leads[-1]
        consecutive = (self.frame_axis is None and len(leads) > 1 and all(lead[:-1] == first[:-1] for lead in leads)
                       and last[-1] - first[-1] == len(leads) - 1)
        if not consecutive:
            return [self.read(lead, rows, cols) for lead in leads]
        block = self.read((*first[:-1], slice(first[-1], last[-1] + 1)), rows, cols, planes=len(leads))
        return [plane[None] for plane in block]


# --------------------------------------------------------------------------- predictor


class Predictor:
    """Apply a super-resolution model to images of any size, tile by tile.

    Parameters
    ----------
    model
        Maps ``(N, frames, h, w)`` to ``(N, 1, h * scale, w * scale)`` in normalised
        intensity, for any ``h`` and ``w``. It is moved to ``device`` and put in eval mode.
    scale
        Upscaling factor of the model.
    frames
        Adjacent frames the model takes as channels (odd). With ``frames > 1`` each
        output frame is predicted from the window of frames centred on it along
        ``frame_axis``, reflected at the ends of the stack; the stack needs at least
        ``frames // 2 + 1`` frames so that the reflection stays within one bounce.
    frame_axis
        ``"T"`` or ``"Z"``: the axis the frames come from. With ``channels``, also ``"C"``:
        the axis holding each acquisition's frames; an input without it whose only
        leading axis is another one has its frames there.
    channels
        Frames as channels (SIM raw frames, SRRF fluctuation frames): the indices, along
        ``frame_axis``, of the frames of each acquisition the model reads as its input
        channels, in order. That axis is consumed: one output plane per acquisition
        (an input ``TCYX`` with frames along ``C`` gives ``TYX``). Excludes ``frames > 1``.
    normalizer
        Unfitted: fitted to each input image (its percentiles, from sampled tiles
        for large images). Fitted: used as is. Outputs are denormalised with the
        same ``lo``/``hi``, so they are in the input's units.
    tile
        Side of a tile's core in LR pixels (smaller images use one tile of their size).
    overlap
        LR pixels of context read on each side of a core. ``None`` (the default): the
        model's receptive-field radius (:func:`microsr.models.receptive_field`, measured
        once per model; checkpoints record it), with which tiled and whole-image
        predictions agree exactly. A smaller overlap is faster and the blending hides
        the small differences. The work per core grows up to
        ``((tile + 2 * overlap) / tile) ** 2``; a model that
        :func:`~microsr.models.takes_crop` (the built-in U-Nets) is asked not to compute
        the output of the context that only feeds it (:attr:`crop`), which saves most of that.
    blend
        LR pixels of the overlap, each side of a core, over which neighbouring tiles are
        cross-faded; the rest of the overlap only feeds the model, so tiles agree exactly
        when ``overlap - blend`` is at least the receptive-field radius. ``None``: 0 with
        the default overlap (the tiles agree, there is nothing to hide, and the blended
        border would be computed twice: 6-8 % of the default model's time), else
        ``min(overlap // 2, BLEND_MARGIN)``.
    batch_size
        Tiles per forward pass. ``None`` (the default) sizes it to the device: 1 on a CPU,
        where one tile is as fast as several and needs a quarter of the memory of four
        (see benchmarks/README.md); on a GPU as many as fit in half of its free memory,
        measured on the first tile (:func:`tiles_per_batch`).
    device
        Where the model runs; tiles are moved there and outputs back to the CPU.
    precision
        ``"auto"`` (the faster of float32 and bfloat16 for this model, measured once per machine),
        ``"fp32"``, ``"bf16"`` or ``"fp16"``: see :mod:`microsr.runtime.precision`. Outputs are
        float32 whatever the precision.
    progress
        Show a progress bar over tiles.

    Attributes
    ----------
    overlap : int
        Context read each side of a core (given, or the receptive-field radius).
    blend : int
        Pixels of that context, each side, that are cross-faded.
    crop : int
        Pixels of that context, each side, whose output the model is asked not to
        compute: those the blending does not use, or 0 for a model without ``crop``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.PixelShuffle(2))
    >>> predictor = Predictor(model, scale=2, tile=16, overlap=4, progress=False)
    >>> predictor.predict(np.random.default_rng(0).random((20, 30))).shape
    (40, 60)
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        scale: int,
        frames: int = 1,
        frame_axis: str = "T",
        channels: Sequence[int] | None = None,
        normalizer: PercentileNormalizer | None = None,
        tile: int = DEFAULT_TILE,
        overlap: int | None = None,
        blend: int | None = None,
        batch_size: int | None = None,
        device: str | torch.device = "cpu",
        precision: str = "auto",
        progress: bool = True,
    ) -> None:
        for name, value, minimum in (("scale", scale, 1), ("frames", frames, 1), ("tile", tile, 1),
                                     ("batch_size", 1 if batch_size is None else batch_size, 1),
                                     ("overlap", overlap or 0, 0), ("blend", blend or 0, 0)):
            if int(value) != value or value < minimum:
                raise InputError(f"{name}={value!r}: give an integer >= {minimum}.")
        # Whole numbers of other types (4.0, numpy integers) index and slice as ints from here on.
        scale, frames, tile = int(scale), int(frames), int(tile)
        overlap, blend, batch_size = (None if n is None else int(n) for n in (overlap, blend, batch_size))
        if channels is not None:
            channels = tuple(channels)
            if not channels or any(int(c) != c or c < 0 for c in channels) or len(set(channels)) < len(channels):
                raise InputError(f"channels={list(channels)!r}: give distinct frame indices >= 0.")
            if frames not in (1, len(channels)):
                raise InputError(f"frames={frames} with channels={list(channels)}: the channels are the input frames.")
            channels, frames = tuple(int(c) for c in channels), 1
        elif frames % 2 == 0:
            raise InputError(f"frames={frames}: the frame window is centred on the output frame, so it must be odd.")
        allowed = ("T", "Z") if channels is None else ("T", "Z", "C")
        if frame_axis not in allowed:
            raise InputError(f"frame_axis={frame_axis!r}: use {' or '.join(map(repr, allowed))}.")
        self.device = torch.device(device)
        # channels_last is what oneDNN's and cuDNN's fastest convolution kernels use.
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self.dtype = resolve_precision(precision, self.device, self.model,
                                       channels=frames if channels is None else len(channels))
        self.scale = scale
        self.frames = frames
        self.frame_axis = frame_axis
        self.channels = channels
        self.normalizer = normalizer or PercentileNormalizer()
        self.tile = tile
        self.overlap = _radius(model) if overlap is None else overlap
        if blend is None:
            blend = 0 if overlap is None else min(overlap // 2, BLEND_MARGIN)
        if blend > self.overlap:
            raise InputError(f"blend={blend}: tiles can only be cross-faded within their overlap ({self.overlap}).")
        self.blend = blend
        # A tile's outer context only feeds the model: one whose forward takes `crop` skips its output.
        self.crop = self.overlap - blend if takes_crop(model) else 0
        # None on a GPU: measured on the first tile (see _run).
        self.batch_size = batch_size or (None if self.device.type == "cuda" else 1)
        self.progress = progress

    def predict(
        self, image: Image | np.ndarray, axes: str | None = None, *, on_tile: TileCallback | None = None
    ) -> np.ndarray:
        """Predict a whole image into memory.

        Parameters
        ----------
        image
            An :class:`~microsr.io.Image` or an array; any leading ``T``, ``C`` (one
            channel) and ``Z`` axes before ``YX``.
        axes
            Axes of an array in canonical ``TCZYX`` order, e.g. ``"ZYX"`` (default ``"YX"``).
        on_tile
            Called after every batch of tiles as ``on_tile(tiles_done, tiles_total)``, in
            the predicting thread: a GUI's progress bar. An exception raised in it
            stops the prediction and propagates, which is how a caller cancels.

        Returns
        -------
        numpy.ndarray
            float32 ``(..., H * scale, W * scale)`` in the input's intensity units.

        Examples
        --------
        >>> import numpy as np, torch
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 9, 3, padding=1), torch.nn.PixelShuffle(3))
        >>> stack = np.random.default_rng(0).random((2, 8, 8))
        >>> Predictor(model, scale=3, overlap=2, progress=False).predict(stack, axes="ZYX").shape
        (2, 24, 24)
        >>> seen = []
        >>> _ = Predictor(model, scale=3, tile=4, overlap=2, progress=False).predict(
        ...     stack[0], on_tile=lambda done, total: seen.append((done, total)))
        >>> seen
        [(1, 4), (2, 4), (3, 4), (4, 4)]
        """
        source = self._source(_as_image(image, axes))
        height, width = source.image.shape[-2:]
        out = np.empty((*source.lead_shape, height * self.scale, width * self.scale), np.float32)
        for _, lead, row, col, block in self._blocks(source, on_tile=on_tile):
            source.normalizer.denormalize(block, out=out[(*lead, slice(row, row + block.shape[0]),
                                                         slice(col, col + block.shape[1]))])
        return out

    def planes(
        self, image: Image | np.ndarray, axes: str | None = None, *, normalized: bool = False,
        on_tile: TileCallback | None = None,
    ) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
        """Predict plane by plane, yielding each output plane as it is finished: for stacks of many
        planes whose outputs are consumed one at a time (an SMLM stack's frames), so only one is in memory.

        Parameters
        ----------
        image, axes, on_tile
            As in :meth:`predict`.
        normalized
            Yield the model's output as it is (normalised intensity, e.g. an SMLM model's
            emitters per pixel) instead of in the input's units.

        Yields
        ------
        lead : tuple of int
            Index of the plane in the output's leading axes.
        plane : numpy.ndarray
            float32 ``(H * scale, W * scale)``, a new array each time.

        Examples
        --------
        >>> import numpy as np, torch
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.PixelShuffle(2))
        >>> stack = np.random.default_rng(0).random((3, 8, 8))
        >>> [(lead, plane.shape) for lead, plane in Predictor(model, scale=2, overlap=2, progress=False).planes(
        ...     stack, axes="TYX")]
        [((0,), (16, 16)), ((1,), (16, 16)), ((2,), (16, 16))]
        """
        source = self._source(_as_image(image, axes))
        shape = tuple(n * self.scale for n in source.image.shape[-2:])
        current, previous, plane = None, (), np.empty(0, np.float32)
        for number, lead, row, col, block in self._blocks(source, on_tile=on_tile):
            if number != current:
                if current is not None:
                    yield previous, plane
                current, previous, plane = number, lead, np.empty(shape, np.float32)
            target = plane[row : row + block.shape[0], col : col + block.shape[1]]
            if normalized:
                target[...] = block
            else:
                source.normalizer.denormalize(block, out=target)
        if current is not None:
            yield previous, plane

    def tile_grid(self, image: Image) -> tuple[int, int]:
        """Output rows and columns per tile core, ``(tile_y, tile_x)``: the grid :meth:`predict_block` cuts on.

        Examples
        --------
        >>> import numpy as np, torch
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.PixelShuffle(2))
        >>> Predictor(model, scale=2, tile=16, overlap=4, blend=0, progress=False).tile_grid(np.zeros((10, 40)))
        (20, 32)
        """
        height, width = _as_image(image, None).shape[-2:]
        return min(self.tile, height) * self.scale, min(self.tile, width) * self.scale

    def predict_block(
        self, image: Image | np.ndarray, lead: tuple[int, ...], rows: slice, cols: slice, *, axes: str | None = None
    ) -> np.ndarray:
        """Predict part of one output plane: what :meth:`predict` gives at ``[*lead, rows, cols]``, the same tiles
        computed the same way, so blocks predicted apart (by several processes) join into the whole-image result.

        Parameters
        ----------
        image, axes
            As in :meth:`predict`; with an unfitted normalizer, it is fitted to the whole image on each
            call: fit it once first (``Predictor(..., normalizer=PercentileNormalizer().fit(image))``).
        lead
            Index of the output plane in the output's leading axes.
        rows, cols
            Output rows and columns, starting on the tile grid (multiples of :meth:`tile_grid`); a stop
            beyond the image ends at its edge.

        Returns
        -------
        numpy.ndarray
            float32 ``(rows, cols)`` in the input's units.

        Raises
        ------
        InputError
            If tiles are cross-faded (``blend > 0``: a tile's output then depends on its
            neighbours'), or ``rows``/``cols`` are off the tile grid.

        Examples
        --------
        >>> import numpy as np, torch
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.PixelShuffle(2))
        >>> predictor = Predictor(model, scale=2, tile=8, overlap=2, blend=0, progress=False)
        >>> image = np.random.default_rng(0).random((20, 30)).astype(np.float32)
        >>> whole = predictor.predict(image)
        >>> bool(np.array_equal(predictor.predict_block(image, (), slice(16, 40), slice(0, 32)), whole[16:40, :32]))
        True
        """
        if self.blend:
            raise InputError(f"blend={self.blend}: blocks are predicted apart only from tiles that are not "
                             "cross-faded; use the default overlap (the receptive field) and blend=0.")
        source = self._source(_as_image(image, axes))
        height, width = source.image.shape[-2:]
        ys, xs = (_Axis(n, min(self.tile, n), self.overlap, 0, self.scale) for n in (height, width))
        step_y, step_x = ys.core * self.scale, xs.core * self.scale
        rows, cols = slice(rows.start, min(rows.stop, height * self.scale)), slice(cols.start, min(cols.stop, width * self.scale))
        if rows.start % step_y or cols.start % step_x or rows.start >= rows.stop or cols.start >= cols.stop:
            raise InputError(f"rows {rows.start}:{rows.stop}, columns {cols.start}:{cols.stop}: a block starts on the "
                             f"tile grid ({step_y} x {step_x} output pixels) and holds pixels of the image.")
        out = np.empty((rows.stop - rows.start, cols.stop - cols.start), np.float32)
        bands = range(rows.start // step_y, -(-rows.stop // step_y))
        columns = range(cols.start // step_x, -(-cols.stop // step_x))
        for row, col, block in self._plane_blocks(source, lead, ys, xs, 0, lambda n: None, bands, columns):
            block = block[: rows.stop - row, : cols.stop - col]  # the last tile may reach past the block
            source.normalizer.denormalize(
                block, out=out[row - rows.start : row - rows.start + block.shape[0],
                               col - cols.start : col - cols.start + block.shape[1]])
        return out

    def predict_to_file(
        self,
        image: Image,
        output: PathLike,
        *,
        overwrite: bool = False,
        resume: bool = False,
        inputs: Iterable[PathLike] = (),
        on_tile: TileCallback | None = None,
    ) -> Path:
        """Predict an image of any size into a file, streaming band by band.

        The output's pixel size is the input's divided by ``scale`` (Z spacing kept).
        The output is written inside ``OUTPUT.partial`` in its final format (an
        uncompressed TIFF, or OME-Zarr with a pyramid, as :func:`microsr.io.write_image`
        writes them) with a ``progress.json`` (see :mod:`microsr.io.partial`); when
        all rows are done it is moved to ``output`` atomically. Disk use is the output's size.

        Parameters
        ----------
        image
            The input, typically from :func:`~microsr.io.read_image` (read lazily, one band at a time).
        output
            ``.ome.zarr``/``.zarr`` or ``.tif``/``.tiff``/``.ome.tif``/``.ome.tiff``.
        overwrite
            Replace an existing ``output``.
        resume
            Continue from ``OUTPUT.partial`` left by an interrupted run with the same
            input, model and settings, skipping its finished rows. Without it an
            existing partial output is discarded.
        inputs
            Files the output must never replace (``image.path`` is always protected);
            an output equal to an input or inside one is refused.
        on_tile
            Progress and cancellation hook, as in :meth:`predict`; after an exception
            from it, ``OUTPUT.partial`` is left for ``resume``.

        Returns
        -------
        Path
            ``output``.

        Raises
        ------
        InputError
            If ``output`` exists (without ``overwrite``), is an input or inside one,
            or ``OUTPUT.partial`` belongs to a different job (with ``resume``).

        Examples
        --------
        >>> predictor.predict_to_file(read_image("cells.tif"), "cells_x4.ome.zarr")  # doctest: +SKIP
        PosixPath('cells_x4.ome.zarr')
        """
        output = Path(output)
        protected = [*inputs, *([image.path] if image.path else [])]
        check_image_output(output, overwrite, protected, dtype=np.float32)
        partial = output.with_name(output.name + ".partial")
        check_output(partial, overwrite=True, inputs=protected)
        source = self._source(image)
        width = image.shape[-1] * self.scale
        with output_lock(output):
            partial_output, done = PartialOutput.open(partial, self._job(source), self._layout(source), output.name,
                                                      resume)
            for plane, _, row, col, block in self._blocks(source, done, on_tile):
                partial_output.write(plane, row, col, source.normalizer.denormalize(block, out=block))
                if col + block.shape[1] == width:  # the block finishes its rows
                    partial_output.finish_rows(plane, row + block.shape[0])
            return partial_output.finish(output, overwrite=overwrite, inputs=protected)

    # ----------------------------------------------------------------------- internals

    def _source(self, image: Image) -> _Source:
        name = str(image.path) if image.path else "in-memory image"
        lead_axes = image.axes[:-2]
        frame_axis = None
        if self.channels is not None:
            frame_axis = self._channels_axis(image, name)
            lead_axes = lead_axes.replace(image.axes[frame_axis], "")
        if "C" in lead_axes and image.shape[image.axes.index("C")] > 1:
            raise InputError(
                f"{name}: has {image.shape[image.axes.index('C')]} channels (axes {image.axes}, shape "
                f"{image.shape}) but the model takes one. Choose a single channel or convert to grayscale."
            )
        if self.frames > 1:
            needed = self.frames // 2 + 1
            length = image.shape[image.axes.index(self.frame_axis)] if self.frame_axis in lead_axes else 1
            if length < needed:
                raise InputError(
                    f"{name}: the model expects {self.frames} frames along {self.frame_axis}; the input has axes "
                    f"{image.axes} (shape {image.shape}). Give a stack of at least {needed} frames along "
                    f"{self.frame_axis} (the window is reflected at the stack ends), e.g. with axes="
                    f"'{self.frame_axis}YX', or use a single-frame model."
                )
            frame_axis = image.axes.index(self.frame_axis)
        normalizer = self.normalizer if self.normalizer.fitted else self.normalizer.fit(image)
        return _Source(image, name, self.frames, frame_axis, self.channels, normalizer)

    def _channels_axis(self, image: Image, name: str) -> int:
        """Position of the axis holding each acquisition's frames, checked to hold the frames the model reads."""
        lead_axes = image.axes[:-2]
        if self.frame_axis in lead_axes:
            axis = self.frame_axis
        elif len(lead_axes) == 1:  # e.g. a (frames, Y, X) TIFF read as ZYX
            axis = lead_axes
        else:
            raise InputError(
                f"{name}: axes {image.axes} have no {self.frame_axis} axis, which holds the frames of this model's "
                f"acquisitions; give the axes (e.g. axes='{self.frame_axis}YX')."
            )
        length = image.shape[image.axes.index(axis)]
        if max(self.channels) >= length:
            raise InputError(
                f"{name}: the model reads frames {list(self.channels)} of each acquisition along {axis}, which has "
                f"{length} (axes {image.axes}, shape {image.shape}); give all frames of one acquisition."
            )
        return image.axes.index(axis)

    def _blocks(
        self, source: _Source, start: tuple[int, int] = (0, 0), on_tile: TileCallback | None = None
    ) -> Iterator[tuple[int, tuple[int, ...], int, int, np.ndarray]]:
        """Yield ``(plane number, lead index, first row, first column, block)`` of finished output.

        Starts at output row ``start[1]`` of plane number ``start[0]`` (for resuming).
        Blocks are float32, still normalised (the caller denormalises them into where they
        go, saving a pass), and valid until the next item (they are the model output's or
        the band accumulator's memory); within a band they come left to right, and one
        that reaches the right edge finishes its rows. ``on_tile`` as in :meth:`predict`.
        """
        planes = list(np.ndindex(source.lead_shape))
        height, width = source.image.shape[-2:]
        ys, xs = (_Axis(n, min(self.tile, n), self.overlap, self.blend, self.scale) for n in (height, width))
        first_plane, first_row = start
        n_tiles = len(ys.starts) * len(xs.starts) * (len(planes) - first_plane)
        with Progress(disable=not self.progress) as bar, reuse_freed_memory():
            task = bar.add_task("Predicting tiles", total=n_tiles)

            def advance(n: int) -> None:
                bar.advance(task, n)
                if on_tile is not None:
                    on_tile(int(bar.tasks[0].completed), n_tiles)

            if len(ys.starts) == len(xs.starts) == 1 and not self.blend:
                yield from self._whole_plane_blocks(source, planes, ys, xs, start, advance)
                return
            for plane in range(first_plane, len(planes)):
                skip = first_row if plane == first_plane else 0
                for row, col, block in self._plane_blocks(source, planes[plane], ys, xs, skip, advance):
                    yield plane, planes[plane], row, col, block

    def _whole_plane_blocks(
        self, source: _Source, planes: list[tuple[int, ...]], ys: _Axis, xs: _Axis, start: tuple[int, int],
        advance: Callable[[int], None],
    ) -> Iterator[tuple[int, tuple[int, ...], int, int, np.ndarray]]:
        """:meth:`_blocks` for planes that are one tile each (an SMLM stack's frames, small images):
        ``batch_size`` planes go through the model together, which is several times faster than one by one."""
        first_plane, first_row = start
        rows, cols = ys.read_indices(0, 0), xs.read_indices(0, 0)
        context = (self.overlap - self.crop) * self.scale
        height, width = ys.size * self.scale, xs.size * self.scale
        plane = first_plane
        while plane < len(planes):
            numbers = range(plane, min(plane + (self.batch_size or 1), len(planes)))
            tiles = source.read_planes([planes[n] for n in numbers], rows, cols)
            for n, out in zip(numbers, self._run(tiles, advance)):
                skip = first_row if n == first_plane else 0
                yield n, planes[n], skip, 0, out[context + skip : context + height, context : context + width].numpy()
            plane = numbers.stop

    def _plane_blocks(
        self, source: _Source, lead: tuple[int, ...], ys: _Axis, xs: _Axis, first_row: int,
        advance: Callable[[int], None], bands: range | None = None, columns: range | None = None,
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """Predict one plane band by band, yielding ``(row, column, block)`` of finished output from ``first_row`` on.

        Without blending, each tile's core is final as the model returns it and is handed on
        at once, so memory does not grow with the width of the image; blended tiles are
        summed into a :class:`_BlendedBand` first. Without blending, ``bands`` and ``columns``
        (tile indices along Y and X; default all) limit it to those tiles.
        """
        s = self.scale
        out_height, out_width = ys.size * s, xs.size * s
        context = (self.overlap - self.blend - self.crop) * s  # output rows and columns of context left
        bands, columns = bands or range(len(ys.starts)), columns or range(len(xs.starts))
        cols = xs.read_indices(columns[0], columns[-1])
        blended_band = _BlendedBand(ys, xs) if self.blend else None
        for i in bands:
            top = ys.blend_start(i)
            if top + ys.span <= first_row:  # resuming: this band only touches finished rows
                advance(len(columns))
                continue
            band = source.read(lead, ys.read_indices(i, i), cols)
            tiles = [band[:, :, x0 - xs.starts[columns[0]] : x0 - xs.starts[columns[0]] + xs.core + 2 * self.overlap]
                     for x0 in xs.starts[columns.start : columns.stop]]
            for j, out in enumerate(self._run(tiles, advance), start=columns.start):
                left = xs.blend_start(j)  # the first and last tiles blend beyond the image
                inside = slice(max(-left, 0), min(out_width - left, xs.span))
                tile = out[context : context + ys.span, context : context + xs.span][:, inside]
                if blended_band is None:
                    block = tile[max(first_row - top, 0) : out_height - top].numpy()
                    yield max(top, first_row), left + inside.start, block
                else:
                    blended_band.add(tile, left + inside.start, inside)
            if blended_band is not None:
                for row, rows in blended_band.finish(i, first_row):
                    yield row, 0, rows

    def _run(self, tiles: list[np.ndarray], advance: Callable[[int], None]) -> Iterator[torch.Tensor]:
        """Yield model outputs ``((h - 2 crop) * scale, (w - 2 crop) * scale)`` for equal-sized
        ``(frames, h, w)`` tiles, in batches."""
        expected = (1, *((n - 2 * self.crop) * self.scale for n in tiles[0].shape[-2:]))
        start = 0
        while start < len(tiles):
            measure = self.batch_size is None
            size = self.batch_size or 1
            if measure:
                torch.cuda.reset_peak_memory_stats(self.device)
                allocated = torch.cuda.memory_allocated(self.device)
            with torch.inference_mode(), autocast(self.device, self.dtype):
                batch = torch.from_numpy(np.stack(tiles[start : start + size])).to(self.device)
                result = call_cropped(self.model, to_channels_last(batch), self.crop)
            if measure:
                free, _ = torch.cuda.mem_get_info(self.device)
                cached = torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
                peak = torch.cuda.max_memory_allocated(self.device) - allocated
                self.batch_size = tiles_per_batch(free + cached, peak)
            start += size
            if tuple(result.shape[1:]) != expected:
                raise InputError(
                    f"the model returned shape {tuple(result.shape)} for input {tuple(batch.shape)}; "
                    f"expected (N, {', '.join(map(str, expected))}) for scale={self.scale}. Check scale and frames."
                )
            outputs = result[:, 0].to("cpu", torch.float32)
            advance(len(batch))
            yield from outputs

    def _layout(self, source: _Source) -> Image:
        """The output's shape, axes, pixel size (the input's over the scale) and Z spacing; its data is never computed."""
        image = source.image
        height, width = (n * self.scale for n in image.shape[-2:])
        return Image(
            da.zeros((*source.lead_shape, height, width), dtype=np.float32),
            source.axes,
            pixel_size=image.pixel_size / self.scale if image.pixel_size else None,
            z_spacing=image.z_spacing,
        )

    def _job(self, source: _Source) -> dict:
        """What identifies a streaming run, so a partial output is only resumed by the same job."""
        digest = hashlib.sha256()
        for name, tensor in self.model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        image = source.image
        stat = image.path.stat() if image.path else None
        return {
            "input": str(image.path) if image.path else None,
            "input_modified": [stat.st_size, stat.st_mtime_ns] if stat else None,
            "shape": list(image.shape), "dtype": str(image.dtype), "axes": image.axes,
            "scale": self.scale, "frames": self.frames, "frame_axis": self.frame_axis,
            **({} if self.channels is None else {"channels": list(self.channels)}),
            "tile": self.tile, "overlap": self.overlap, "blend": self.blend, "precision": str(self.dtype),
            "lo": source.normalizer.lo, "hi": source.normalizer.hi,
            "model": digest.hexdigest(),
        }


def _as_image(image: Image | np.ndarray, axes: str | None) -> Image:
    if isinstance(image, Image):
        return image
    array = np.asarray(image)
    axes = axes or ("YX" if array.ndim == 2 else None)
    if axes is None:
        raise InputError(f"a {array.ndim}-D array needs axes=, e.g. axes={'TCZYX'[-array.ndim:]!r}.")
    try:
        return Image(array, axes.upper(), pixel_size=None)
    except ValueError as exc:
        raise InputError(f"axes={axes!r}: {exc}") from exc


def tiles_per_batch(free_bytes: int, bytes_per_tile: int, *, fraction: float = 0.5) -> int:
    """How many tiles to predict at once: as many as fit in ``fraction`` of the free memory.

    Parameters
    ----------
    free_bytes : int
        Device memory available.
    bytes_per_tile : int
        Peak memory one tile's forward pass needed (measured).
    fraction : float
        Share of the free memory to use, leaving room for other work and fragmentation.

    Returns
    -------
    int
        At least 1.

    Examples
    --------
    >>> tiles_per_batch(8 * 2**30, 700 * 2**20)
    5
    >>> tiles_per_batch(2**30, 3 * 2**30)
    1
    """
    return max(1, int(fraction * free_bytes // max(bytes_per_tile, 1)))


def _radius(model: nn.Module) -> int:
    """The measured receptive-field radius, cached per model (measuring can take seconds)."""
    if model not in _RADII:
        _RADII[model] = receptive_field(model)
    return _RADII[model]


# --------------------------------------------------------------------------- pixel size


def check_pixel_size(
    input_nm: float | None, model_nm: float | None, *, rescale: bool, force: bool, can_rescale: bool = True
) -> float | None:
    """Compare an input's pixel size with the one the model was trained on.

    Parameters
    ----------
    input_nm, model_nm
        Pixel sizes in nanometres, ``None`` when unknown.
    rescale
        On a mismatch, return the zoom factor that resamples the input to the
        model's pixel size (takes precedence over ``force``).
    force
        On a mismatch, only warn.
    can_rescale
        Whether the caller offers ``--rescale``: SIM frames cannot be resampled (the
        pattern would move), so the error then suggests only ``--force``.

    Returns
    -------
    float or None
        ``input_nm / model_nm`` when the input should be resampled (``rescale``
        and a mismatch), else ``None``.

    Raises
    ------
    InputError
        On a mismatch of more than 10 % without ``rescale`` or ``force``.

    Examples
    --------
    >>> check_pixel_size(105.0, 100.0, rescale=False, force=False) is None
    True
    >>> check_pixel_size(None, 100.0, rescale=False, force=False) is None
    True
    >>> check_pixel_size(65.0, 100.0, rescale=False, force=False)
    Traceback (most recent call last):
    ...
    microsr.errors.InputError: input pixel size 65 nm differs from the model's 100 nm by 35 %; \
pass --rescale to resample the input to 100 nm, or --force to predict at 65 nm anyway.
    """
    if input_nm is None or model_nm is None or abs(input_nm - model_nm) <= _PIXEL_SIZE_TOLERANCE * model_nm:
        return None
    mismatch = (
        f"input pixel size {input_nm:g} nm differs from the model's {model_nm:g} nm "
        f"by {abs(input_nm - model_nm) / model_nm * 100:.0f} %"
    )
    if rescale:
        factor = input_nm / model_nm
        warnings.warn(f"{mismatch}; resampling the input by {factor:.3g} to {model_nm:g} nm.", stacklevel=2)
        return factor
    if force:
        warnings.warn(f"{mismatch}; predicting anyway (--force), expect degraded results.", stacklevel=2)
        return None
    if can_rescale:
        remedy = f"pass --rescale to resample the input to {model_nm:g} nm, or "
    else:
        remedy = f"use a model trained at {input_nm:g} nm, or pass "
    raise InputError(f"{mismatch}; {remedy}--force to predict at {input_nm:g} nm anyway.")


def rescale_image(image: Image, factor: float) -> Image:
    """Resample the YX planes of ``image`` lazily by ``factor`` (bilinear, anti-aliased when shrinking).

    Each plane is resampled whole when its block is computed, so memory holds a
    plane at a time.

    Parameters
    ----------
    image
        Any axes ending in ``YX``.
    factor
        Zoom: > 1 enlarges. The YX size becomes ``round(size * factor)``.

    Returns
    -------
    Image
        float32 data with ``pixel_size`` divided by ``factor``.

    Examples
    --------
    >>> image = Image(np.ones((2, 10, 20), np.uint16), "ZYX", pixel_size=65.0)
    >>> small = rescale_image(image, 0.65)
    >>> small.shape, small.pixel_size, float(small.data.max().compute())
    ((2, 6, 13), 100.0, 1.0)
    """
    if not (math.isfinite(factor) and factor > 0):
        raise InputError(f"rescale factor {factor!r}: give a positive number.")
    shape_yx = tuple(max(1, round(n * factor)) for n in image.shape[-2:])
    # A plane is resampled whole: it and its result in float32, on every core at once.
    plane_bytes = 4 * (math.prod(image.shape[-2:]) + math.prod(shape_yx)) * (os.cpu_count() or 1)
    check_memory(plane_bytes, f"{image.path or 'the image'}: resampling planes of "
                 f"{' × '.join(map(str, image.shape[-2:]))} pixels", "resample it beforehand in your image software")
    planes = image.data.rechunk((1,) * (image.ndim - 2) + (-1, -1))

    def zoom(block: np.ndarray) -> np.ndarray:
        plane = resize(block.reshape(block.shape[-2:]).astype(np.float32), shape_yx, order=1,
                       anti_aliasing=factor < 1, preserve_range=True)
        return plane.astype(np.float32).reshape(block.shape[:-2] + shape_yx)

    data = planes.map_blocks(zoom, chunks=planes.chunks[:-2] + tuple((n,) for n in shape_yx), dtype=np.float32)
    return image.replace(data=data, pixel_size=image.pixel_size / factor if image.pixel_size else None)
