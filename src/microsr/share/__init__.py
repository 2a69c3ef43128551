"""Sharing models with the bioimage ecosystem: bioimage.io model packages out and in.

:func:`export` writes a microsr model as a bioimage.io package (:mod:`microsr.share.bioimageio`);
:func:`load_model` loads a microsr model or any bioimage.io package (``.zip``) as a
:class:`~microsr.predict.restorer.Restorer` (:mod:`microsr.share.package`). Packages need the
optional extra ``microsr[bioimageio]``; nothing in microsr imports this package except the
command line and the top-level ``microsr.export`` / ``microsr.load_model``.
"""

from __future__ import annotations

import os
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Any

from microsr.errors import InputError
from microsr.predict import restorer

__all__ = ["export", "load_model"]


def _optional(module: str) -> ModuleType:
    """Import a module of this package that needs the ``bioimageio`` extra, or say how to install it.

    Imported on use so that ``microsr`` without the extra still loads its own models.
    """
    try:
        return import_module(module)
    except ImportError as exc:
        raise InputError(f"bioimage.io packages need the optional libraries: pip install 'microsr[bioimageio]' "
                         f"({exc}).") from None


def export(model: Any, output: str | os.PathLike[str], **options: Any) -> Path:
    """Write a microsr model as a bioimage.io package: see :func:`microsr.share.bioimageio.export`.

    Examples
    --------
    >>> export("sim_lowlight", "sim_lowlight.zip")  # doctest: +SKIP
    PosixPath('sim_lowlight.zip')
    """
    return _optional("microsr.share.bioimageio").export(model, output, **options)


def load_model(path: str | os.PathLike[str], **options: Any) -> restorer.Restorer:
    """Load a microsr model (folder, checkpoint, shipped name) or a bioimage.io package (``.zip``).

    A package goes to :func:`microsr.share.package.load_package` (option ``weight_format``),
    anything else to :func:`microsr.predict.restorer.load_model` (option ``model``).

    Examples
    --------
    >>> load_model("sim_lowlight").scale
    2
    """
    if Path(path).suffix.lower() == ".zip":
        return _optional("microsr.share.package").load_package(path, **options)
    return restorer.load_model(path, **options)
