"""The model registry: built-in architectures by name, rebuilt from a JSON ``arch`` dict."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from torch import nn

from microsr.errors import InputError

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_LEGACY: dict[str, dict[str, Any]] = {}


def register_model(name: str, *, legacy: dict[str, Any] | None = None) -> Callable[[Builder], Builder]:
    """Register a model class or builder function under ``name`` (a decorator).

    The builder must accept ``in_channels`` and ``scale`` keyword arguments and
    return a module mapping ``(N, in_channels, h, w)`` to ``(N, 1, h * scale, w * scale)``;
    every other argument must have a JSON-serialisable value.

    ``legacy`` names arguments added after models were already saved, with the value
    those models were built with (the builder's default, for new models, may differ):
    :func:`create_model` always records them in ``arch``, and :func:`complete_arch` fills
    them into an ``arch`` that lacks them, so an old checkpoint rebuilds as it was trained.

    Examples
    --------
    >>> from torch import nn
    >>> @register_model("doc_nearest")
    ... def doc_nearest(in_channels: int = 1, scale: int = 4) -> nn.Module:
    ...     return nn.Upsample(scale_factor=scale)
    >>> "doc_nearest" in list_models()
    True
    """

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"a model named {name!r} is already registered")
        _REGISTRY[name] = builder
        _LEGACY[name] = dict(legacy or {})
        return builder

    return decorator


def list_models() -> list[str]:
    """Names of the registered models, sorted.

    Examples
    --------
    >>> {"resunet", "resunet_small", "unet"} <= set(list_models())
    True
    """
    return sorted(_REGISTRY)


def create_model(name: str, *, in_channels: int = 1, scale: int = 4, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``.

    The returned module has an ``arch`` attribute, a JSON-serialisable dict such that
    ``create_model(**model.arch)`` rebuilds the same architecture (a checkpoint stores it
    next to the weights). The model is built from that very dict (tuples become lists),
    so the first build and every rebuild see identical arguments.

    Parameters
    ----------
    name : str
        A name from :func:`list_models`.
    in_channels : int
        Input channels: the number of adjacent frames ``k``.
    scale : int
        Output size / input size.
    **kwargs
        Further arguments of that model, e.g. ``widths`` for ``"resunet"``.

    Raises
    ------
    InputError
        For an unknown name (listing the valid ones), an argument the model does not
        take (listing the ones it does) or a value it rejects.

    Examples
    --------
    >>> model = create_model("resunet_small", in_channels=3, scale=2)
    >>> model.arch
    {'name': 'resunet_small', 'in_channels': 3, 'scale': 2, 'blur': False}
    >>> create_model(**model.arch).scale
    2
    """
    builder = _REGISTRY.get(name)
    if builder is None:
        raise InputError(f"model: unknown name {name!r}. Choose one of: {', '.join(list_models())}.")
    signature = inspect.signature(builder)
    try:
        signature.bind(in_channels=in_channels, scale=scale, **kwargs)
    except TypeError as exc:
        raise InputError(
            f"model {name!r}: {exc}. Its parameters are: {', '.join(signature.parameters)}."
        ) from None
    try:
        arch = json.loads(json.dumps({"name": name, "in_channels": in_channels, "scale": scale, **kwargs}))
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"model {name!r}: arguments must be JSON values (numbers, strings, lists) so the "
            f"checkpoint can store them: {exc}."
        ) from None
    defaults = {key: signature.parameters[key].default for key in _LEGACY[name] if key not in arch}
    arch.update(defaults)
    model = builder(**{key: value for key, value in arch.items() if key != "name"})
    model.arch = arch
    return model


def complete_arch(arch: Mapping[str, Any]) -> dict[str, Any]:
    """A saved ``arch`` with the arguments it predates set to the values it was built with.

    A checkpoint written before an argument was added (see ``legacy`` of
    :func:`register_model`) lacks it; rebuilt with today's default it would be another
    network. Rebuild saved models with ``create_model(**complete_arch(arch))``.

    Examples
    --------
    >>> complete_arch({"name": "resunet_small", "in_channels": 1, "scale": 2})["blur"]
    False
    >>> create_model("resunet_small", scale=2, blur=True).arch["blur"]
    True
    """
    return {**arch, **{key: value for key, value in _LEGACY.get(arch.get("name", ""), {}).items() if key not in arch}}
