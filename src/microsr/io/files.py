"""Files: which images a path names, how low- and high-resolution files pair up, and safe outputs.

One rule pairs files everywhere in microsr (training, degradation fitting, benchmarks,
SIM/SRRF data): :func:`pair_by_name`, by file name without its image extension.
Outputs are written beside their final name and moved into place (:func:`atomic_output`),
never over an input, with a lock against a second writer (:func:`output_lock`).
"""

from __future__ import annotations

import os
import platform
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from microsr.errors import InputError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

__all__ = ["Pair", "PathLike", "atomic_output", "check_output", "find_images", "image_stem", "output_lock", "pair_by_name"]

PathLike = str | os.PathLike[str]

_TIFF_SUFFIXES = (".tif", ".tiff")
_PIL_SUFFIXES = (".png", ".jpg", ".jpeg")
_READ_SUFFIXES = (*_TIFF_SUFFIXES, ".ome.tif", ".ome.tiff", ".zarr", ".ome.zarr", *_PIL_SUFFIXES)


def find_images(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    """Expand files and folders into the image paths they name, folders sorted by name.

    A folder that is itself an OME-Zarr image counts as one image; any other folder
    contributes its readable files and OME-Zarr folders (not recursively).

    Parameters
    ----------
    paths
        One path or several.

    Returns
    -------
    list of Path

    Raises
    ------
    InputError
        If a path does not exist, or a folder holds no readable image.

    Examples
    --------
    >>> from microsr.samples import sample_path
    >>> [p.name for p in find_images(sample_path().parent)]
    ['filaments.tif']
    """
    found: list[Path] = []
    for path in _as_paths(paths):
        if not path.exists():
            raise InputError(f"{path}: file or folder not found. Check the path.")
        if not path.is_dir() or _is_zarr(path):
            found.append(path)
            continue
        images = sorted(p for p in path.iterdir() if _is_zarr(p) or (p.is_file() and _is_readable_name(p)))
        if not images:
            raise InputError(f"{path}: no images in this folder (readable types: {', '.join(_READ_SUFFIXES)}).")
        found.extend(images)
    return found


def _as_paths(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    return [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]


def _is_zarr(path: Path) -> bool:
    return path.is_dir() and ((path / "zarr.json").is_file() or (path / ".zgroup").is_file())


def _is_readable_name(path: Path) -> bool:
    return path.name.lower().endswith(_READ_SUFFIXES) and not path.name.startswith(".")


@contextmanager
def atomic_output(path: PathLike, overwrite: bool = False, inputs: Iterable[PathLike] = ()) -> Iterator[Path]:
    """Yield a temporary path to write to; it becomes ``path`` only if the block succeeds.

    The temporary path is in the same folder (so the final rename is atomic) and keeps
    the final suffix, e.g. ``out.tmp-1a2b3c4d.tif`` for ``out.tif``, so format-guessing
    writers still work. It may be a file or a folder. On success it is renamed to
    ``path``; an existing ``path`` is replaced only after the new output is complete.
    On any exception it is deleted.

    Parameters
    ----------
    path
        The final output path.
    overwrite
        Allow replacing an existing ``path``.
    inputs
        Paths that must never be replaced, even with ``overwrite`` (compared after
        resolving symlinks; an input inside an output folder counts too).

    Raises
    ------
    InputError
        If ``path`` is one of ``inputs``, exists and ``overwrite`` is false, or its
        folder does not exist.

    Examples
    --------
    >>> with atomic_output("model.pt", overwrite=True) as temporary:  # doctest: +SKIP
    ...     torch.save(state, temporary)
    """
    path = Path(path)
    check_output(path, overwrite, inputs)
    temporary = path.with_name(f"{path.stem}.tmp-{secrets.token_hex(4)}{path.suffix}")
    try:
        yield temporary
        _move_into_place(temporary, path, overwrite)
    finally:
        _remove(temporary)


def check_output(path: PathLike, overwrite: bool = False, inputs: Iterable[PathLike] = ()) -> None:
    """Raise :class:`InputError` unless ``path`` may be written (the checks of :func:`atomic_output`).

    Lets a long computation fail before it starts rather than when it writes.
    ``path`` must not be one of ``inputs``, contain one, or lie inside one (e.g. in
    an input ``.zarr`` folder); its folder must exist; an existing ``path`` needs
    ``overwrite``.

    Examples
    --------
    >>> check_output("cells.zarr/out.tif", inputs=["cells.zarr"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    microsr.errors.InputError: cells.zarr/out.tif: this output would replace or be inside the input .../cells.zarr; ...
    """
    path = Path(path)
    resolved = path.resolve()
    for source in inputs:
        source = Path(source).resolve()
        if source == resolved or source.is_relative_to(resolved) or resolved.is_relative_to(source):
            raise InputError(
                f"{path}: this output would replace or be inside the input {source}; choose another output path."
            )
    if not path.parent.is_dir():
        raise InputError(f"{path}: the folder {path.parent} does not exist; create it first.")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot write in the folder {path.parent} (no permission or a read-only disk); "
                         "choose a folder you can write to.")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise InputError(f"{path} exists; pass overwrite=True (--overwrite) to replace it.")


@contextmanager
def output_lock(path: PathLike) -> Iterator[None]:
    """Hold ``PATH.lock`` while writing ``path``, so a second writer is refused instead of corrupting it.

    The lock file holds the writer's process ID, for the message a second writer
    gets. The operating system releases the lock when its process ends, however it
    ends, so a lock file left by a killed run is stale and simply taken over. The
    file is removed on exit.

    Raises
    ------
    InputError
        If another process is writing ``path``.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "out.tif"
    >>> with output_lock(target):
    ...     target.with_name("out.tif.lock").read_text().split()[0] == str(os.getpid())
    True
    """
    lock = Path(path).with_name(Path(path).name + ".lock")
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(f"{lock}: cannot create the lock file ({exc.strerror}); choose a folder you "
                             "can write to.") from exc
        try:
            _lock_file(fd)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").split()
            os.close(fd)
            who = f"process {holder[0]} ({' '.join(holder[1:])})" if holder else "another process"
            raise InputError(f"{path} is being written by {who}; wait for it to finish or choose another "
                             "output.") from None
        # A writer that finished between our open and lock removed the file we locked: lock the new one.
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} started {time.strftime('%Y-%m-%d %H:%M:%S')} on {platform.node()}\n".encode())
        yield
    finally:
        lock.unlink(missing_ok=True)  # while still holding it, so no one locks a file about to vanish
        os.close(fd)


def _lock_file(fd: int) -> None:
    """Take an exclusive lock on ``fd`` without waiting; BlockingIOError if another process holds it."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError as exc:
        raise BlockingIOError(str(exc)) from exc


def _move_into_place(temporary: Path, path: Path, overwrite: bool) -> None:
    if not overwrite and (path.exists() or path.is_symlink()):
        raise InputError(f"{path} appeared while this output was being written (another process?); "
                         "pass --overwrite to replace it, or choose another output.")
    if not (path.exists() or path.is_symlink()) or not (temporary.is_dir() or path.is_dir()):
        os.replace(temporary, path)
        return
    # A folder cannot atomically replace another: move the old one aside first.
    aside = path.with_name(f"{path.stem}.old-{secrets.token_hex(4)}{path.suffix}")
    os.replace(path, aside)
    try:
        os.replace(temporary, path)
    except BaseException:
        os.replace(aside, path)
        raise
    _remove(aside)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class Pair(NamedTuple):
    """A high-resolution image and its low-resolution partner, matched by name.

    Attributes
    ----------
    name : str
        The images' common file name without extension (the HR's when given as two files).
    hr : Path
        The high-resolution (ground truth) image.
    lr : Path or None
        The low-resolution image; ``None`` when it is to be made from ``hr``.
    """

    name: str
    hr: Path
    lr: Path | None


def image_stem(path: Path) -> str:
    """File name without its image extension (``a.ome.tif`` -> ``a``)."""
    stem = path.stem
    return stem[: -len(".ome")] if stem.lower().endswith(".ome") else stem


def _by_name(paths: Iterable[Path], source: str) -> dict[str, Path]:
    named: dict[str, Path] = {}
    for path in paths:
        name = image_stem(path)
        if name in named:
            raise InputError(
                f"{source}: {named[name]} and {path} have the same name {name!r}, so pairs cannot be "
                "matched by name; keep one of them."
            )
        named[name] = path
    return named


def pair_by_name(
    hr: PathLike | Iterable[PathLike], lr: PathLike | Iterable[PathLike] | None = None
) -> list[Pair]:
    """Match high- and low-resolution images by file name (without extension): the one pairing rule.

    ``hr`` and ``lr`` may each be image files or folders, one or several (as in
    :func:`~microsr.io.find_images`). One file on each side forms one pair whatever
    the names. Named files on one side and folders on the other: the folders must
    hold an image of each file's name (and may hold more). Otherwise every image must
    have a partner of the same name on the other side. Never by order: an extra or
    missing file is an error, not a silent mispair.

    Parameters
    ----------
    hr
        High-resolution (ground truth) images or folders.
    lr
        Low-resolution images or folders; ``None`` gives pairs with ``lr=None``.

    Returns
    -------
    list of Pair
        Sorted by name.

    Raises
    ------
    InputError
        If a path is missing, a folder holds no images, two images on one side
        share a name, or an image has no partner (the message lists them).

    Examples
    --------
    >>> from microsr.samples import sample_path
    >>> pair_by_name(sample_path(), sample_path().parent)[0].name
    'filaments'
    """
    hr_paths = _as_paths(hr)
    hr_files = find_images(hr_paths)
    hr_label = ", ".join(map(str, hr_paths))
    hr_images = _by_name(hr_files, hr_label)
    if lr is None:
        return [Pair(name, path, None) for name, path in sorted(hr_images.items())]
    lr_paths = _as_paths(lr)
    lr_files = find_images(lr_paths)
    lr_label = ", ".join(map(str, lr_paths))
    lr_images = _by_name(lr_files, lr_label)
    # find_images returns a file (or an OME-Zarr image folder) as itself, a folder as its contents.
    hr_named, lr_named = hr_files == hr_paths, lr_files == lr_paths
    if hr_named and lr_named and len(hr_files) == len(lr_files) == 1:
        return [Pair(image_stem(hr_files[0]), hr_files[0], lr_files[0])]
    if hr_named != lr_named:  # the named files choose the pairs; the folders must hold their partners
        names = set(hr_images) if hr_named else set(lr_images)
    else:
        names = set(hr_images) | set(lr_images)
    missing = [f"{hr_images[n]} has no LR image named {n!r} in {lr_label}" for n in sorted(names - set(lr_images))]
    missing += [f"{lr_images[n]} has no HR image named {n!r} in {hr_label}" for n in sorted(names - set(hr_images))]
    if missing:
        shown = "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputError(
            f"unmatched images: {shown}. LR and HR images are matched by file name without extension; "
            "rename or remove the unmatched ones."
        )
    return [Pair(name, hr_images[name], lr_images[name]) for name in sorted(names)]
