"""Validated ``(low, high)`` parameter ranges shared by the simulators' settings."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from microsr.errors import InputError


def parse_range(name: str, value: Any, positive: bool) -> tuple[float, float]:
    """A number or a ``(low, high)`` pair as a validated ``(low, high)`` tuple of floats.

    Examples
    --------
    >>> parse_range("photons", 5, positive=True), parse_range("background", [0, 2], positive=False)
    ((5.0, 5.0), (0.0, 2.0))
    """
    pair = (value, value) if np.ndim(value) == 0 else tuple(value)
    try:
        pair = (float(pair[0]), float(pair[-1])) if len(pair) in (1, 2) else ()
    except (TypeError, ValueError):
        pair = ()
    if not pair or not all(math.isfinite(v) and (v > 0 if positive else v >= 0) for v in pair):
        bound = "> 0" if positive else "≥ 0"
        raise InputError(f"{name}={value!r}: give a number or a range LOW,HIGH of finite numbers {bound}.")
    if pair[0] > pair[1]:
        raise InputError(f"{name}={pair!r}: LOW is above HIGH; give a range LOW,HIGH with LOW ≤ HIGH.")
    return pair


def show_range(pair: tuple[float, float]) -> str:
    """``"low-high"``, or one number for a fixed value.

    Examples
    --------
    >>> show_range((1.0, 1.0)), show_range((1.0, 2.5))
    ('1', '1-2.5')
    """
    return f"{pair[0]:g}" if pair[0] == pair[1] else f"{pair[0]:g}-{pair[1]:g}"
