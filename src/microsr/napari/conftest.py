"""Doctests of the plugin need napari: skip collecting them when it is not installed."""

from importlib.util import find_spec

collect_ignore_glob = [] if find_spec("napari") else ["*.py"]
