"""The super-resolution task: training and validation tiles from images, degraded on the fly or real pairs."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from torch.utils.data import Dataset

from microsr.config import ImageSource, RunConfig
from microsr.data.datasets import DegradedPairs, PairedImages
from microsr.data.normalize import PercentileNormalizer
from microsr.degrade import Degradation
from microsr.errors import InputError
from microsr.io import Image, as_image, find_images, pair_by_name, read_image, select_planes

__all__ = ["sr_datasets"]


def sr_datasets(cfg: RunConfig, degradation: Degradation | None) -> tuple[Dataset, Dataset, float | None]:
    """Training and validation datasets of super-resolution from images, and the HR pixel size (nm).

    HR images are degraded on the fly by ``degradation``, or, when it is ``None``, paired
    with the real LR images of ``cfg.data.lr``: files by name
    (:func:`~microsr.io.pair_by_name`), images in memory by position.

    Parameters
    ----------
    cfg
        The run; ``data.hr`` (and ``data.lr``) hold files, folders or images in memory.
    degradation
        How LR tiles are made from HR tiles; ``None`` for real pairs.

    Returns
    -------
    train, val : Dataset
        ``(input, target)`` tiles; ``val`` is the same every epoch.
    pixel_size : float or None
        The HR images' pixel size when they share one.

    Examples
    --------
    >>> from microsr.config import load_config
    >>> from microsr.degrade import preset
    >>> from microsr.samples import sample_path
    >>> cfg = load_config({"data": {"hr": [sample_path()], "tile": 64}, "scale": 2})
    >>> train, val, pixel_size = sr_datasets(cfg, preset("poisson", scale=2))
    >>> tuple(train[0][0].shape), tuple(train[0][1].shape)
    ((1, 32, 32), (1, 64, 64))
    """
    common = {
        "tile": cfg.data.tile, "frames": cfg.data.frames, "frame_axis": cfg.data.frame_axis,
        "val_fraction": cfg.data.val_fraction, "seed": cfg.train.seed,
        "normalizer": PercentileNormalizer(**cfg.normalization),
    }
    if degradation is not None:
        hr = [image for source in cfg.data.hr for image in _open(source, cfg.data.axes, cfg.data.pixel_size)]
        pairs = partial(DegradedPairs, hr, degradation, **common)
    else:
        hr, lr = _real_pairs(cfg)
        lr = [select_planes(image, cfg.data.lr_planes) for image in lr]
        pairs = partial(PairedImages, lr, hr, cfg.scale, channels=cfg.data.channels, **common)
    sizes = {image.pixel_size for image in hr}
    pixel_size = sizes.pop() if len(sizes) == 1 else None
    return pairs(split="train", samples_per_epoch=cfg.data.samples_per_epoch), pairs(split="val"), pixel_size


def _open(source: ImageSource, axes: str | None, pixel_size: float | None) -> list[Image]:
    """The images a file or folder holds (read lazily), or an in-memory image, with the given pixel size."""
    if isinstance(source, Path):
        return [read_image(path, axes=axes, pixel_size=pixel_size) for path in find_images(source)]
    return [as_image(source, axes=None if isinstance(source, Image) else axes, pixel_size=pixel_size,
                     name="in-memory image")]


def _real_pairs(cfg: RunConfig) -> tuple[list[Image], list[Image]]:
    """HR and LR images, pair by pair: files by name (:func:`~microsr.io.pair_by_name`), in-memory images by position."""
    hr, lr, axes = cfg.data.hr, cfg.data.lr, cfg.data.axes
    files = [source for source in (*hr, *lr) if isinstance(source, Path)]
    if len(files) == len(hr) + len(lr):
        pairs = pair_by_name(hr, lr)
        return ([read_image(pair.hr, axes=axes, pixel_size=cfg.data.pixel_size) for pair in pairs],
                [read_image(pair.lr, axes=axes) for pair in pairs])
    if files or len(hr) != len(lr):
        raise InputError(
            f"data.lr ({len(lr)} given) and data.hr ({len(hr)} given): give both as files or folders (paired by file "
            "name) or both as the same number of in-memory images (paired by position), not a mix."
        )
    return ([image for source in hr for image in _open(source, axes, cfg.data.pixel_size)],
            [image for source in lr for image in _open(source, axes, None)])
