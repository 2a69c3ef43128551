"""microsr: deep-learning super-resolution for microscopy."""

from importlib.metadata import PackageNotFoundError, version

from microsr.errors import InputError

try:
    __version__ = version("microsr")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["InputError", "__version__"]
