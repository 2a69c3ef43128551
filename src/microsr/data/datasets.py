"""Training data: train/validation split by tile position, pair datasets and their loader.

Every dataset yields ``(input, target)`` float32 tensors shaped ``(k, h, w)`` and
``(1, h * s, w * s)``: ``k`` adjacent frames in, the centre frame out, ``s`` the scale.
Multi-frame acquisitions whose frames together make one target (SIM raw frames, a
few frames of a fluctuation stack for SRRF) use :class:`PairedImages` with
``channels``: the chosen frames of one acquisition are the ``k`` input channels.

Images are split by *position*, never by frame: the validation region of each image is
a band at the end of its longer YX axis (:func:`split_regions`) and every frame shares
it, so neighbouring frames of one place never land on both sides of the split.

Images larger than :data:`IN_MEMORY_BYTES` are read one tile at a time
(``image.data[..., y0:y1, x0:x1]``), so images far larger than memory can be used;
smaller ones are loaded once.

Randomness is a pure function of ``(seed, split, epoch, index)``: runs are reproducible,
DataLoader workers never share RNG state, training tiles and noise change with
:meth:`set_epoch`, and validation samples are the same every epoch. :func:`epoch_loader`
batches them with worker processes that live through all epochs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from microsr.data.normalize import PercentileNormalizer, _name, _read
from microsr.degrade import Degradation
from microsr.errors import InputError
from microsr.io import Image, check_finite

__all__ = [
    "CallablePairs",
    "DegradedPairs",
    "PairedImages",
    "Region",
    "TileSample",
    "IN_MEMORY_BYTES",
    "default_workers",
    "epoch_loader",
    "flip_rotate",
    "frame_window",
    "split_regions",
]

Split = Literal["train", "val"]

IN_MEMORY_BYTES = 256 * 2**20
"""Training images up to this size are loaded whole; larger ones are read tile by tile.
Reading a tile through dask costs about 3.5 ms, a third of a training step's data time."""
_SPLIT_CODE = {"train": 0, "val": 1}


# --------------------------------------------------------------------------- geometry


class Region(NamedTuple):
    """A half-open YX rectangle ``[y0, y1) x [x0, x1)`` in pixels."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def height(self) -> int:
        """Rows in the region (0 when empty)."""
        return max(self.y1 - self.y0, 0)

    @property
    def width(self) -> int:
        """Columns in the region (0 when empty)."""
        return max(self.x1 - self.x0, 0)

    def contains(self, y: int, x: int, height: int, width: int) -> bool:
        """Whether the tile at ``(y, x)`` of size ``height x width`` lies entirely inside."""
        return self.y0 <= y and y + height <= self.y1 and self.x0 <= x and x + width <= self.x1


def split_regions(
    shape: tuple[int, int],
    tile: int | tuple[int, int],
    val_fraction: float = 0.1,
    *,
    source: str = "image",
) -> tuple[Region, Region]:
    """Split a YX plane into a training region and a validation band.

    The validation band lies at the end of the longer axis (Y when equal) and spans
    the whole other axis; its width is ``val_fraction`` of the axis rounded to whole
    tiles, at least one tile when ``val_fraction > 0``.

    Parameters
    ----------
    shape : tuple of int
        ``(height, width)`` of the image.
    tile : int or tuple of int
        Tile size (square, or ``(h, w)``).
    val_fraction : float
        Fraction of the longer axis for validation, in ``[0, 1)``.
    source : str
        Name of the image for error messages.

    Returns
    -------
    train, val : Region
        ``val`` is empty (zero height) when ``val_fraction == 0``.

    Raises
    ------
    InputError
        If the training region cannot hold one tile.

    Examples
    --------
    >>> split_regions((1000, 400), 100, 0.1)
    (Region(y0=0, y1=900, x0=0, x1=400), Region(y0=900, y1=1000, x0=0, x1=400))
    >>> split_regions((256, 1024), 128, 0.1)[1]
    Region(y0=0, y1=256, x0=896, x1=1024)
    """
    height, width = shape
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    if not 0 <= val_fraction < 1:
        raise InputError(f"val_fraction={val_fraction}: must be in [0, 1), e.g. 0.1.")
    along_y = height >= width
    length, step = (height, th) if along_y else (width, tw)
    n_val = max(1, round(val_fraction * length / step)) if val_fraction > 0 else 0
    start = length - n_val * step
    if along_y:
        train, val = Region(0, start, 0, width), Region(start, height, 0, width)
    else:
        train, val = Region(0, height, 0, start), Region(0, height, start, width)
    if train.height < th or train.width < tw or (n_val and (val.height < th or val.width < tw)):
        raise InputError(
            f"{source}: YX size {height}x{width} is too small for tile {th}x{tw} with "
            f"val_fraction={val_fraction} (training region {train.height}x{train.width}). "
            "Use a smaller tile, or val_fraction=0 and a separate validation image."
        )
    return train, val


def frame_window(center: int, frames: int, length: int) -> list[int]:
    """Indices of ``frames`` frames centred on ``center``, reflected at the stack edges.

    Reflection excludes the edge frame itself (like ``numpy.pad(mode="reflect")``):
    index -1 becomes 1 and ``length`` becomes ``length - 2``.

    Examples
    --------
    >>> frame_window(0, 3, 10)
    [1, 0, 1]
    >>> frame_window(9, 5, 10)
    [7, 8, 9, 8, 7]
    >>> frame_window(0, 3, 1)
    [0, 0, 0]
    """
    half = frames // 2
    period = 2 * (length - 1)
    if period == 0:
        return [0] * frames
    indices = []
    for i in range(center - half, center + half + 1):
        i %= period
        indices.append(period - i if i >= length else i)
    return indices


def flip_rotate(x: np.ndarray, flip: bool, rot: int) -> np.ndarray:
    """Flip (left-right) then rotate by ``rot`` quarter turns over the last two axes.

    Examples
    --------
    >>> flip_rotate(np.array([[1, 2], [3, 4]]), flip=True, rot=1).tolist()
    [[1, 3], [2, 4]]
    """
    if flip:
        x = x[..., ::-1]
    return np.rot90(x, rot, axes=(-2, -1))


# --------------------------------------------------------------------------- sampling


class TileSample(NamedTuple):
    """Where one sample comes from, in HR (target) pixels.

    ``frames`` are the indices along the frame axis (the centre one is the target);
    ``lead`` is the index into the image's other leading axes (C included, always 0).
    """

    image: int
    lead: tuple[int, ...]
    frames: tuple[int, ...]
    y: int
    x: int
    flip: bool
    rot: int


def _rngs(seed: int, split: Split, epoch: int, index: int) -> tuple[np.random.Generator, ...]:
    """Independent generators for the tile choice and the noise of one sample."""
    sequence = np.random.SeedSequence([seed, _SPLIT_CODE[split], epoch, index])
    return tuple(np.random.default_rng(s) for s in sequence.spawn(2))


@dataclass(frozen=True)
class _Stack:
    """One single-channel image: which axis holds the frames, and its normalisation."""

    image: Image
    frame_axis: int | None  # position in image.shape; None when there is no such axis
    normalizer: PercentileNormalizer
    pixels: Any  # image.data, in memory (numpy) when it is small: a dask read costs milliseconds a tile

    @classmethod
    def prepare(
        cls, image: Image, frames: int, frame_axis: str, normalizer: PercentileNormalizer
    ) -> _Stack:
        name = _name(image)
        if frame_axis != "C" and "C" in image.axes and image.shape[image.axes.index("C")] > 1:
            n = image.shape[image.axes.index("C")]
            raise InputError(
                f"{name}: has {n} channels (axes {image.axes}, shape {image.shape}) but one "
                "channel is expected. Convert it to grayscale or choose a single channel."
            )
        if frames > 1 and frame_axis not in image.axes[:-2]:
            raise InputError(
                f"{name}: frames={frames} needs a {frame_axis} axis but the image has axes "
                f"{image.axes}. Use frames=1, or frame_axis='T', 'Z' or 'C' to match the image."
            )
        axis = image.axes.index(frame_axis) if frame_axis in image.axes[:-2] else None
        small = image.data.nbytes <= IN_MEMORY_BYTES
        pixels = image.data.compute(scheduler="synchronous") if small else image.data
        if not normalizer.fitted:  # from the loaded pixels when small: the file is read once
            normalizer = normalizer.fit(image.replace(data=pixels) if small else image)
        return cls(image, axis, normalizer, pixels)

    @property
    def n_frames(self) -> int:
        return 1 if self.frame_axis is None else self.image.shape[self.frame_axis]

    @property
    def lead_shape(self) -> tuple[int, ...]:
        """Sizes of the leading axes other than the frame axis."""
        return tuple(n for i, n in enumerate(self.image.shape[:-2]) if i != self.frame_axis)

    def read(
        self, lead: tuple[int, ...], frames: Sequence[int], y: int, x: int, h: int, w: int
    ) -> np.ndarray:
        """Normalised ``(len(frames), h, w)`` float32 tile."""
        yx = (slice(y, y + h), slice(x, x + w))
        if self.frame_axis is None:
            tile = _read(self.pixels, lead + yx)[None]
        else:
            # Read the contiguous span once; the window may repeat frames (reflection).
            first = min(frames)
            span = slice(first, max(frames) + 1)
            index = lead[: self.frame_axis] + (span,) + lead[self.frame_axis :] + yx
            tile = _read(self.pixels, index)[[f - first for f in frames]]
        check_finite(tile, f"{_name(self.image)} (tile at y={y}, x={x})")
        return self.normalizer(tile)


class _TiledPairs(Dataset):
    """Tile sampling, split and augmentation shared by the image-backed datasets.

    Positions are in target (HR) pixels and multiples of ``grid``. Subclasses
    implement ``_pair(sample, noise_rng) -> (input, target)`` numpy arrays.
    """

    def __init__(
        self,
        targets: Image | Sequence[Image],
        *,
        scale: int,
        grid: int,
        tile: int | tuple[int, int],
        frames: int,
        frame_axis: str,
        split: Split,
        val_fraction: float,
        samples_per_epoch: int | None,
        augment: bool,
        seed: int,
        normalizer: PercentileNormalizer | None,
        shapes: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        if frames < 1 or frames % 2 == 0:
            raise InputError(f"frames={frames}: must be an odd number >= 1 (e.g. 1, 3 or 5).")
        if frame_axis not in ("T", "Z", "C"):
            raise InputError(f"frame_axis={frame_axis!r}: use 'T', 'Z' or 'C'.")
        if split not in _SPLIT_CODE:
            raise InputError(f"split={split!r}: use 'train' or 'val'.")
        targets = _as_list(targets, "images")
        self.scale, self.tile, self.frames, self.split = scale, _tile_hw(tile, scale), frames, split
        self.augment, self.seed, self.epoch = augment and split == "train", seed, 0
        self._grid, self._frame_axis = grid, frame_axis
        self._normalizer = normalizer or PercentileNormalizer()
        shapes = shapes or [im.shape[-2:] for im in targets]
        self.regions = [
            split_regions(shape, self.tile, val_fraction, source=_name(im))
            for im, shape in zip(targets, shapes)
        ]
        self._stacks = [self._prepare(im) for im in targets]
        th, tw = self.tile
        if split == "train":
            weights = np.array(
                [math.prod(s.image.shape[:-2]) * train.height * train.width
                 for s, (train, _) in zip(self._stacks, self.regions)],
                dtype=np.float64,
            )
            self._weights = weights / weights.sum()
            default = int(weights.sum() // (th * tw))
        else:
            # The fixed validation grid: (image, y, x) of every cell of every band.
            self._cells = [
                (i, y, x)
                for i, (_, val) in enumerate(self.regions)
                for y in range(val.y0, val.y1 - th + 1, th)
                for x in range(val.x0, val.x1 - tw + 1, tw)
            ]
            if not self._cells:
                raise InputError(
                    "split='val' with val_fraction=0 leaves no validation tiles; "
                    "set val_fraction > 0 or validate on separate images."
                )
            # A fixed shuffle, so fewer samples than cells still cover every image.
            order = np.random.default_rng([seed, _SPLIT_CODE["val"]]).permutation(len(self._cells))
            self._cells = [self._cells[j] for j in order]
            default = len(self._cells)
        self.samples_per_epoch = max(1, samples_per_epoch or default)

    def _prepare(self, image: Image) -> _Stack:
        return _Stack.prepare(image, self.frames, self._frame_axis, self._normalizer)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Draw new training tiles and noise (validation samples never change)."""
        self.epoch = epoch

    def tile_position(self, index: int) -> TileSample:
        """Where sample ``index`` of the current epoch comes from (before augmentation)."""
        return self._plan(index)[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample, noise_rng = self._plan(index)
        pair = self._pair(sample, noise_rng)
        if self.augment:
            pair = tuple(flip_rotate(a, sample.flip, sample.rot) for a in pair)
        return _to_tensors(*pair)

    def _pair(
        self, sample: TileSample, noise_rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _plan(self, index: int) -> tuple[TileSample, np.random.Generator]:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} samples")
        epoch = self.epoch if self.split == "train" else 0
        rng, noise_rng = _rngs(self.seed, self.split, epoch, index)
        th, tw = self.tile
        g = self._grid
        if self.split == "train":
            i = int(rng.choice(len(self._stacks), p=self._weights))
            train = self.regions[i][0]
            y = train.y0 + g * int(rng.integers((train.height - th) // g + 1))
            x = train.x0 + g * int(rng.integers((train.width - tw) // g + 1))
        else:
            i, y, x = self._cells[index % len(self._cells)]
        stack = self._stacks[i]
        lead = tuple(int(rng.integers(n)) for n in stack.lead_shape)
        frames = frame_window(int(rng.integers(stack.n_frames)), self.frames, stack.n_frames)
        # Always drawn, so a sample's position does not depend on `augment`.
        flip, rot = bool(rng.integers(2)), (int(rng.integers(4)) if th == tw else 0)
        return TileSample(i, lead, tuple(frames), y, x, flip, rot), noise_rng


def _to_tensors(inp: np.ndarray, target: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.from_numpy(np.ascontiguousarray(inp, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32)),
    )


def _tile_hw(tile: int | tuple[int, int], scale: int) -> tuple[int, int]:
    th, tw = (tile, tile) if isinstance(tile, int) else tuple(tile)
    for t in (th, tw):
        if t <= 0 or t % scale:
            low = max(scale, t // scale * scale)
            raise InputError(
                f"tile {t} is not a positive multiple of scale {scale}; "
                f"use {low} or {low + scale}."
            )
    return th, tw


def _as_list(images: Image | Sequence[Image], parameter: str) -> list[Image]:
    images = [images] if isinstance(images, Image) else list(images)
    if not images:
        raise InputError(f"{parameter}: no images given; pass at least one image.")
    return images


# --------------------------------------------------------------------------- datasets


class DegradedPairs(_TiledPairs):
    """HR tiles degraded on the fly into LR inputs (PSSR-style training pairs).

    Each sample reads a ``tile`` window of ``frames`` adjacent HR frames, normalises
    it, and degrades it with ``degradation`` (new noise every epoch for training, the
    same noise every epoch for validation). The target is the clean centre HR frame.

    Parameters
    ----------
    images : Image or sequence of Image
        High-resolution images (single channel; any T/Z leading axes).
    degradation : Degradation
        HR -> LR model; ``degradation.scale`` is the scale factor.
    tile : int or tuple of int
        HR tile size; a multiple of the scale.
    frames : int
        Odd number of adjacent frames along ``frame_axis`` used as input channels.
    frame_axis : {"T", "Z", "C"}
        Axis the frame window runs along. Other leading axes (and, with ``frames=1``,
        this one) are sampled at random positions.
    split : {"train", "val"}
        Random training tiles, or the fixed validation grid.
    val_fraction : float
        Validation band size (see :func:`split_regions`).
    samples_per_epoch : int or None
        Dataset length; default about one pass over the training regions (train) or
        every validation tile once (val).
    augment : bool
        Random flips and 90 degree rotations (training only; rotations for square tiles).
    seed : int
        Base seed of all randomness.
    normalizer : PercentileNormalizer or None
        Unfitted (default ``PercentileNormalizer()``): fitted to each image;
        fitted: applied as is to all images.

    Attributes
    ----------
    regions : list of (Region, Region)
        ``(train, val)`` of each image, in HR pixels.

    Examples
    --------
    >>> import dask.array as da
    >>> from microsr.degrade import preset
    >>> hr = Image(data=da.random.random((512, 512)), axes="YX", pixel_size=None)
    >>> ds = DegradedPairs([hr], preset("poisson", scale=2), tile=64)
    >>> lr, target = ds[0]
    >>> tuple(lr.shape), tuple(target.shape)
    ((1, 32, 32), (1, 64, 64))
    """

    def __init__(
        self,
        images: Image | Sequence[Image],
        degradation: Degradation,
        tile: int | tuple[int, int] = 128,
        frames: int = 1,
        frame_axis: str = "T",
        split: Split = "train",
        val_fraction: float = 0.1,
        samples_per_epoch: int | None = None,
        augment: bool = True,
        seed: int = 0,
        normalizer: PercentileNormalizer | None = None,
    ) -> None:
        self.degradation = degradation
        super().__init__(
            images, scale=degradation.scale, grid=1, tile=tile, frames=frames,
            frame_axis=frame_axis, split=split, val_fraction=val_fraction,
            samples_per_epoch=samples_per_epoch, augment=augment, seed=seed,
            normalizer=normalizer,
        )

    def _pair(
        self, sample: TileSample, noise_rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        stack = self._stacks[sample.image]
        hr = stack.read(sample.lead, sample.frames, sample.y, sample.x, *self.tile)
        lr = self.degradation(hr, seed=noise_rng, pixel_size=stack.image.pixel_size)
        centre = len(sample.frames) // 2
        return lr, hr[centre : centre + 1]


class PairedImages(_TiledPairs):
    """Tiles at corresponding positions of real LR/HR image pairs.

    ``lr_images[i]`` pairs with ``hr_images[i]``. The HR YX shape must be the LR shape
    times ``scale``; an HR image larger by fewer than ``scale`` pixels (from
    downsampling a size that is not a multiple of ``scale``) has the excess ignored at
    the bottom/right. Leading axes (T/Z) must match. Tile positions are multiples of
    ``scale`` so the LR tile is exactly the HR tile / ``scale``. LR and HR images are
    each normalised on their own.

    Parameters
    ----------
    lr_images, hr_images : Image or sequence of Image
        ``lr_images[i]`` pairs with ``hr_images[i]``; pair files by name first
        (:func:`microsr.io.pair_by_name`, as training does).
    scale : int
        HR pixels per LR pixel.
    tile : int or tuple of int
        HR tile size; a multiple of ``scale``.
    frames, frame_axis, split, val_fraction, samples_per_epoch, augment, seed, normalizer
        As in :class:`DegradedPairs`; input frames come from the LR image, the target
        is the centre frame of the HR image. The split is computed on the HR image.
    channels : sequence of int, optional
        Frames as channels: instead of a window of ``frames`` adjacent frames, the
        LR frames with these indices along ``frame_axis`` (e.g. SIM raw frames along
        C, angle-major: ``[0, 5, 10]`` is the first phase of each of 3 angles with 5
        phases) are the input channels, and the HR image has no such axis: one target
        per acquisition. Other leading axes (e.g. time points) must match. ``frames``
        must then be 1 or the number of channels.

    Examples
    --------
    >>> import dask.array as da
    >>> hr = Image(data=da.random.random((256, 256)), axes="YX", pixel_size=None)
    >>> lr = Image(data=da.random.random((128, 128)), axes="YX", pixel_size=None)
    >>> inp, target = PairedImages([lr], [hr], scale=2, tile=64)[0]
    >>> tuple(inp.shape), tuple(target.shape)
    ((1, 32, 32), (1, 64, 64))
    >>> raw = Image(data=da.random.random((9, 128, 128)), axes="CYX", pixel_size=None)  # 3 angles x 3 phases
    >>> inp, target = PairedImages([raw], [hr], scale=2, tile=64, frame_axis="C", channels=[0, 3, 6])[0]
    >>> tuple(inp.shape), tuple(target.shape)
    ((3, 32, 32), (1, 64, 64))
    """

    def __init__(
        self,
        lr_images: Image | Sequence[Image],
        hr_images: Image | Sequence[Image],
        scale: int,
        tile: int | tuple[int, int] = 128,
        frames: int = 1,
        frame_axis: str = "T",
        split: Split = "train",
        val_fraction: float = 0.1,
        samples_per_epoch: int | None = None,
        augment: bool = True,
        seed: int = 0,
        normalizer: PercentileNormalizer | None = None,
        channels: Sequence[int] | None = None,
    ) -> None:
        lrs, hrs = _as_list(lr_images, "lr_images"), _as_list(hr_images, "hr_images")
        if len(lrs) != len(hrs):
            raise InputError(
                f"{len(lrs)} LR images but {len(hrs)} HR images; lr_images[i] pairs with hr_images[i], "
                "so give the same number of each."
            )
        self.channels = None if channels is None else _check_channels(channels, frames)
        drop = None if channels is None else frame_axis
        super().__init__(
            hrs, scale=scale, grid=scale, tile=tile, frames=frames if channels is None else 1, frame_axis=frame_axis,
            split=split, val_fraction=val_fraction, samples_per_epoch=samples_per_epoch,
            augment=augment, seed=seed, normalizer=normalizer,
            shapes=[_paired_shape(lr, hr, scale, drop) for lr, hr in zip(lrs, hrs)],
        )
        if self.channels is None:
            self._lr_stacks = [self._prepare(lr) for lr in lrs]
        else:
            self._lr_stacks = [self._prepare_channels(lr) for lr in lrs]

    def _prepare_channels(self, image: Image) -> _Stack:
        stack = _Stack.prepare(image, len(self.channels), self._frame_axis, self._normalizer)
        if max(self.channels) >= stack.n_frames:
            raise InputError(
                f"{_name(image)}: channels {list(self.channels)} need {max(self.channels) + 1} frames along "
                f"{self._frame_axis} but the image (axes {image.axes}, shape {image.shape}) has {stack.n_frames}. "
                "Check the channels and frame_axis."
            )
        return stack

    def _pair(
        self, sample: TileSample, noise_rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        s, (th, tw) = self.scale, self.tile
        lr = self._lr_stacks[sample.image].read(
            sample.lead, self.channels or sample.frames, sample.y // s, sample.x // s, th // s, tw // s
        )
        centre = sample.frames[len(sample.frames) // 2]
        hr = self._stacks[sample.image].read(sample.lead, [centre], sample.y, sample.x, th, tw)
        return lr, hr


def _paired_shape(lr: Image, hr: Image, scale: int, channel_axis: str | None = None) -> tuple[int, int]:
    """HR YX shape used for tiling, or InputError on a mismatch.

    HR may differ from LR x scale by less than ``scale`` pixels either way: cameras crop
    HR to whole LR pixels, while :class:`~microsr.degrade.Degradation` rounds LR up
    (a 601-pixel HR gives 151 LR pixels at x4). Tiles cover the whole LR pixels that
    both hold. With ``channel_axis`` (frames as channels), the LR image's axis of that
    name has no HR counterpart and is left out of the comparison of leading axes.
    """
    expected = (lr.shape[-2] * scale, lr.shape[-1] * scale)
    excess = (hr.shape[-2] - expected[0], hr.shape[-1] - expected[1])
    lead = [n for a, n in zip(lr.axes[:-2], lr.shape[:-2]) if a != channel_axis]
    if tuple(lead) != hr.shape[:-2] or not all(-scale < d < scale for d in excess):
        frames = f" besides the frames along {channel_axis}" if channel_axis else ""
        raise InputError(
            f"LR {_name(lr)} (axes {lr.axes}, shape {lr.shape}) and HR {_name(hr)} (axes {hr.axes}, shape "
            f"{hr.shape}) do not match at scale {scale}: HR YX should be {expected[0]}x{expected[1]} and the "
            f"leading axes{frames} equal. Check that these two images belong together, and the scale."
        )
    return (min(expected[0], hr.shape[-2] // scale * scale), min(expected[1], hr.shape[-1] // scale * scale))


def _check_channels(channels: Sequence[int], frames: int) -> tuple[int, ...]:
    """Channel indices as a tuple, or InputError if they are empty, negative, repeated or contradict ``frames``."""
    chosen = tuple(int(c) for c in channels)
    if not chosen or min(chosen) < 0 or len(set(chosen)) != len(chosen):
        raise InputError(f"channels={list(channels)}: give distinct frame indices >= 0, e.g. [0, 5, 10].")
    if frames not in (1, len(chosen)):
        raise InputError(
            f"frames={frames} with channels={list(chosen)}: the channels are the input frames; use frames=1."
        )
    return chosen


class CallablePairs(Dataset):
    """Pairs from any ``fn(rng) -> (input, target)`` (e.g. a simulator).

    ``input`` is ``(h, w)`` or ``(k, h, w)``, ``target`` is ``(H, W)`` or ``(1, H, W)``
    with ``H, W`` the same integer multiple of ``h, w``. Each sample gets its own
    generator seeded from ``(seed, split, epoch, index)``; validation ignores the epoch.

    Parameters
    ----------
    fn : callable
        ``fn(rng: numpy.random.Generator) -> (input, target)`` numpy arrays.
    length : int
        Samples per epoch.
    split : {"train", "val"}
        ``"val"`` returns the same samples every epoch.
    seed : int
        Base seed.

    Examples
    --------
    >>> def fn(rng):
    ...     hr = rng.random((8, 8))
    ...     return hr[::2, ::2], hr
    >>> inp, target = CallablePairs(fn, length=10)[3]
    >>> tuple(inp.shape), tuple(target.shape)
    ((1, 4, 4), (1, 8, 8))
    """

    def __init__(
        self,
        fn: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]],
        length: int,
        split: Split = "train",
        seed: int = 0,
    ) -> None:
        self.fn, self.length, self.split, self.seed, self.epoch = fn, length, split, seed, 0

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Draw new training samples (validation samples never change)."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"sample {index} out of range for {self.length} samples")
        epoch = self.epoch if self.split == "train" else 0
        rng = _rngs(self.seed, self.split, epoch, index)[0]
        inp, target = (np.asarray(a, dtype=np.float32) for a in self.fn(rng))
        inp = inp[None] if inp.ndim == 2 else inp
        target = target[None] if target.ndim == 2 else target
        name = f"{getattr(self.fn, '__name__', repr(self.fn))} sample {index}"
        if not _scaled_pair(inp.shape, target.shape):
            raise InputError(
                f"{name}: input {inp.shape} and target {target.shape} do not match; return "
                "(h, w) or (k, h, w) and (H, W) or (1, H, W) with H/h == W/w an integer."
            )
        check_finite(inp, f"{name} input")
        check_finite(target, f"{name} target")
        return _to_tensors(inp, target)


def _scaled_pair(inp: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether shapes are ``(k, h, w)`` and ``(1, h * s, w * s)`` for an integer ``s``."""
    if len(inp) != 3 or len(target) != 3 or target[0] != 1 or 0 in inp:
        return False
    (h, w), (big_h, big_w) = inp[1:], target[1:]
    return big_h % h == 0 and big_w % w == 0 and big_h // h == big_w // w


def default_workers() -> int:
    """DataLoader processes to use: 2, but none on 2 cores and one on 3.

    Each worker takes a core from the model's threads; on 2 cores, training was 8 %
    faster degrading tiles in the main process than in 2 workers.

    Examples
    --------
    >>> 0 <= default_workers() <= 2
    True
    """
    return max(0, min(2, (os.cpu_count() or 1) - 2))


def epoch_loader(dataset: Any, batch_size: int, *, num_workers: int | None = None,
                 pin_memory: bool = False, rank: int = 0, world_size: int = 1) -> DataLoader:
    """A DataLoader over a dataset with ``set_epoch`` whose workers are started once, not every epoch.

    Set ``loader.sampler.epoch`` before iterating (and ``loader.sampler.start``, the first
    sample index, to continue an epoch that was interrupted): each sample is requested as
    ``(epoch, index)``, so workers kept from an earlier epoch still draw that epoch's
    tiles and noise, exactly as ``dataset.set_epoch(epoch); dataset[index]`` would.
    (Restarting the workers every epoch cost about a tenth of a 64-step epoch on 2 cores.)

    With ``world_size`` processes (:mod:`microsr.runtime.distributed`), rank ``r`` loads
    samples ``r, r + world_size, r + 2 * world_size, ...`` of each epoch: the ranks draw
    different tiles and noise (each sample is seeded by its index), together exactly the
    tiles of one process's epoch, each rank about ``1 / world_size`` of them. Every rank
    gets the same number of samples, so all take the same number of steps: the last
    ones wrap round to the epoch's first samples when ``world_size`` does not divide it.

    Parameters
    ----------
    dataset
        A training dataset (:class:`DegradedPairs`, :class:`PairedImages`, :class:`CallablePairs`).
    batch_size : int
        Samples per batch; the last incomplete batch is dropped when there is a full one.
    num_workers : int, optional
        Worker processes (0: load in the calling process); default :func:`default_workers`.
    pin_memory : bool
        Page-locked batches, for copying to a GPU.
    rank, world_size : int
        This process's share of each epoch when ``world_size`` processes train together.

    Returns
    -------
    torch.utils.data.DataLoader

    Examples
    --------
    >>> pairs = CallablePairs(lambda rng: (rng.random((4, 4)), rng.random((8, 8))), length=4)
    >>> loader = epoch_loader(pairs, batch_size=2)
    >>> first = [inp for inp, _ in loader]
    >>> loader.sampler.epoch = 1
    >>> bool(torch.equal(first[0], next(iter(loader))[0]))
    False
    >>> [index for _, index in epoch_loader(pairs, batch_size=2, rank=1, world_size=3).sampler]
    [1, 0]
    """
    num_workers = default_workers() if num_workers is None else num_workers
    sampler = _EpochSampler(len(dataset), rank, world_size)
    return DataLoader(
        _AtEpoch(dataset),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        drop_last=len(sampler) >= batch_size,
        pin_memory=pin_memory,
    )


class _EpochSampler(Sampler[tuple[int, int]]):
    """Sample keys ``(epoch, index)`` for one rank's share of the indices of one epoch from ``start`` on
    (resuming within an epoch): every ``world_size``-th index from ``start + rank``, wrapping round to
    the epoch's beginning so that every rank has as many."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} of {world_size} processes: must be in [0, {world_size})")
        self.length, self.rank, self.world_size, self.epoch, self.start = length, rank, world_size, 0, 0

    def __len__(self) -> int:
        return max(0, -(-(self.length - self.start) // self.world_size))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        first = self.start + self.rank
        return ((self.epoch, (first + i * self.world_size) % self.length) for i in range(len(self)))


class _AtEpoch(Dataset):
    """``dataset[(epoch, index)]``: sample ``index`` of ``epoch`` of a dataset with ``set_epoch``."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]
