"""microsr: deep-learning super-resolution for microscopy.

The two calls most users need::

    import microsr
    microsr.train({"data": {"hr": ["cells.tif"]}, "scale": 4, "train": {"minutes": 10}}, "my_model")
    restored = microsr.load_model("my_model").predict(low_res_array)

and to share a model with the bioimage.io ecosystem (Fiji, ilastik, QuPath, ...), and run theirs::

    microsr.export("my_model", "my_model.zip")
    restored = microsr.load_model("their_model.zip").predict(low_res_array)

Both are imported on first use, so ``import microsr`` stays fast (no PyTorch import).
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from microsr.errors import InputError

try:
    __version__ = version("microsr")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

_LAZY = {"train": "microsr.training", "load_model": "microsr.share", "Restorer": "microsr.predict.restorer",
         "export": "microsr.share"}

__all__ = ["InputError", "Restorer", "__version__", "export", "load_model", "train"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'microsr' has no attribute {name!r}")
