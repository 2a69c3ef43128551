"""A built-in architecture as one standalone Python file, for packages that other software runs.

A bioimage.io ``pytorch_state_dict`` package names a Python file and a callable that
rebuilds the network; the consumer (bioimageio.core, deepImageJ's Python bridge, ...)
imports that file without microsr installed. :func:`standalone_source` joins the
modules an architecture is defined in (:mod:`microsr.errors`,
:mod:`microsr.models.layers` and the architecture's own module) into one file that
needs only PyTorch: the imports between them are dropped (the joined file defines
every name they imported) and ``register_model`` becomes a decorator that does
nothing.
"""

from __future__ import annotations

import ast
import inspect
import sys
from types import ModuleType

from microsr import __version__
from microsr.errors import InputError
from microsr.models import registry

__all__ = ["architecture_callable", "standalone_source"]

# The modules every architecture module may import from, in dependency order.
_BASE_MODULES = ("microsr.errors", "microsr.models.layers")


def architecture_callable(arch: dict) -> tuple[str, dict, ModuleType]:
    """The registered builder of ``arch`` (a checkpoint's ``arch``): its name, keyword arguments and module.

    Examples
    --------
    >>> architecture_callable({"name": "resunet_small", "in_channels": 1, "scale": 2})[:2]
    ('resunet_small', {'in_channels': 1, 'scale': 2, 'blur': False})
    """
    builder = registry._REGISTRY.get(arch.get("name", ""))
    if builder is None:
        raise InputError(f"model {arch.get('name')!r}: not a built-in architecture; a custom one cannot be exported.")
    kwargs = {key: value for key, value in registry.complete_arch(arch).items() if key != "name"}
    return builder.__name__, kwargs, sys.modules[builder.__module__]


def standalone_source(arch: dict) -> str:
    """Python source defining the builder of ``arch`` with PyTorch as its only dependency.

    Examples
    --------
    >>> namespace = {}
    >>> exec(standalone_source({"name": "resunet_small"}), namespace)
    >>> namespace["resunet_small"](in_channels=1, scale=2).scale
    2
    """
    name, _, module = architecture_callable(arch)
    modules = [sys.modules[m] for m in _BASE_MODULES if m != module.__name__] + [module]
    parts = [
        f'"""The {arch["name"]!r} architecture of microsr {__version__}, standalone (PyTorch only).\n\n'
        f"Generated from microsr's modules {', '.join(m.__name__ for m in modules)}; build it with "
        f'`{name}(**kwargs)`."""',
        "from __future__ import annotations",
        "",
        "def register_model(name, **options):  # microsr's model registry is not needed here",
        "    return lambda builder: builder",
    ]
    for part in modules:
        parts += ["", f"# ---- {part.__name__}", _without_microsr_imports(inspect.getsource(part))]
    return "\n".join(parts) + "\n"


def _without_microsr_imports(source: str) -> str:
    """``source`` without its ``from __future__`` and ``from microsr... import`` statements."""
    lines = source.splitlines()
    drop: set[int] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("microsr", "__future__"):
            drop.update(range(node.lineno - 1, node.end_lineno))
        elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == "microsr" for a in node.names):
            drop.update(range(node.lineno - 1, node.end_lineno))
    return "\n".join(line for i, line in enumerate(lines) if i not in drop)
