"""Numeric precision: the fastest one measured on this machine, and why.

``"auto"`` does not trust CPU flags: a CPU may report AVX-512 BF16 and still run
bfloat16 convolutions at half its float32 speed (measured on an Intel Xeon without
AMX), or have no bfloat16 units at all. On first use per device, CPU (or GPU) model,
thread count, torch version and model, :func:`measure_precision` times the model
itself in each candidate precision on one small input (about a second), keeps the
fastest (:func:`choose_precision`) and caches the choice in ``precision.json`` under
:func:`cache_dir`, so later runs start at once.

The candidates are those whose accuracy is known to be safe for microsr's models:
float32, and bfloat16 autocast (tests check it costs < 0.1 dB); on CUDA devices
without bfloat16, float16. Autocast runs convolutions and matrix products in the low
precision and keeps reductions and the outputs' accumulation in float32; microsr
always returns and writes float32.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import platform
import secrets
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from microsr.errors import InputError

__all__ = [
    "PRECISIONS",
    "PrecisionChoice",
    "autocast",
    "cache_dir",
    "candidates",
    "choose_precision",
    "hardware_name",
    "measure_precision",
    "resolve_precision",
    "time_alternating",
]

PRECISIONS: dict[str, torch.dtype | None] = {
    "auto": None,
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
"""Precision names accepted by ``--precision`` and the dtype each one computes in."""

FP32_MARGIN = 0.03
"""``auto`` keeps float32 unless another precision is more than this much faster: float32
is the more accurate, and the choice stays within 5 % of the fastest even with noise."""

_CACHE_FILE = "precision.json"
_PROBE_SIDE = 96  # LR pixels of the probe input: the model's own layers at a second's cost
_PROBE_SECONDS = 0.5  # timed rounds last at least this long in all (at least _PROBE_ROUNDS rounds)
_PROBE_ROUNDS = (3, 20)  # at least 3 timed rounds; at most 20 (a tiny model's round takes a millisecond)
_memo: dict[tuple[Path, str], PrecisionChoice] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class PrecisionChoice:
    """What ``--precision auto`` chose on this machine for one model, and why.

    Attributes
    ----------
    precision : str
        The chosen name (``"fp32"``, ``"bf16"`` or ``"fp16"``).
    seconds : dict
        Median seconds per probe call for each candidate measured.
    reason : str
        One sentence for users: the measured speeds behind the choice.
    key : str
        What the choice is cached under: device, CPU/GPU, threads, torch version, model.
    cached : bool
        Read from the cache rather than measured in this call.
    """

    precision: str
    seconds: dict[str, float]
    reason: str
    key: str
    cached: bool = False

    @property
    def dtype(self) -> torch.dtype:
        """The dtype to autocast to."""
        return PRECISIONS[self.precision]

    def as_dict(self) -> dict:
        """Plain data for JSON."""
        return asdict(self)


def cache_dir() -> Path:
    """Where microsr caches per-machine measurements: ``$MICROSR_CACHE``, else ``~/.cache/microsr``
    (``$XDG_CACHE_HOME/microsr`` when that is set).

    Examples
    --------
    >>> cache_dir() == Path(os.environ["MICROSR_CACHE"]) if os.environ.get("MICROSR_CACHE") else cache_dir().name
    True
    """
    if os.environ.get("MICROSR_CACHE"):
        return Path(os.environ["MICROSR_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "microsr"


def choose_precision(seconds: Mapping[str, float], *, margin: float = FP32_MARGIN) -> tuple[str, str]:
    """The precision to use given measured seconds per call of each candidate, and why.

    The fastest, except that float32 is kept when no candidate is more than ``margin``
    faster (it is the more accurate). So the choice is never more than ``margin``
    slower than the fastest measured.

    Parameters
    ----------
    seconds : mapping of str to float
        Seconds per call for each candidate name; must include ``"fp32"``.
    margin : float
        Relative speed-up another precision needs over float32 to be chosen.

    Returns
    -------
    (str, str)
        The chosen name, and a sentence saying why.

    Examples
    --------
    >>> choose_precision({"fp32": 1.0, "bf16": 0.5})[0]
    'bf16'
    >>> choose_precision({"fp32": 1.0, "bf16": 1.7})
    ('fp32', 'fp32 measured fastest: fp32 1 s, bf16 1.7 s per probe (1.70x slower)')
    >>> choose_precision({"fp32": 1.0, "bf16": 0.98})[0]  # 2 % is not worth float32's accuracy
    'fp32'
    """
    if "fp32" not in seconds:
        raise ValueError(f"no float32 time among {sorted(seconds)}")
    fastest = min(seconds, key=seconds.__getitem__)
    chosen = fastest if seconds["fp32"] > seconds[fastest] * (1 + margin) else "fp32"
    others = ", ".join(f"{name} {seconds[name]:.3g} s" for name in seconds if name != chosen)
    slower = [seconds[name] / seconds[chosen] for name in seconds if name != chosen]
    if chosen == fastest:
        comparison = f" ({min(slower):.2f}x slower)" if slower else ""
        reason = f"{chosen} measured fastest: {chosen} {seconds[chosen]:.3g} s, {others} per probe{comparison}"
    else:
        reason = (f"fp32 kept: {fastest} is only {seconds['fp32'] / seconds[fastest] - 1:.0%} faster "
                  f"(fp32 {seconds['fp32']:.3g} s, {others} per probe), under the {margin:.0%} worth float32's accuracy")
    return chosen, reason


def candidates(device: str | torch.device) -> list[str]:
    """Precisions ``auto`` chooses between on ``device``: those whose accuracy is known safe.

    Examples
    --------
    >>> candidates("cpu")
    ['fp32', 'bf16']
    """
    device = torch.device(device)
    if device.type == "cpu":
        return ["fp32", "bf16"]
    if device.type == "cuda":
        return ["fp32", "bf16" if torch.cuda.is_bf16_supported() else "fp16"]
    return ["fp32"]  # MPS and others: autocast support varies, float32 is what always works


def measure_precision(
    model: nn.Module | None, device: str | torch.device, *, channels: int = 1, remeasure: bool = False
) -> PrecisionChoice:
    """The precision ``auto`` means for ``model`` on ``device``: measured once, then cached.

    The model runs in inference mode on a ``(1, channels, 96, 96)`` input, in each of
    :func:`candidates` in turn (alternating, so contention hits all alike), for about a
    second in all; :func:`choose_precision` picks. The choice is cached in
    ``cache_dir() / "precision.json"`` under a key of the device, its CPU or GPU model,
    the thread count, the torch version and the model's class and parameter shapes
    (written atomically; an unreadable file is ignored and rewritten).

    Parameters
    ----------
    model : nn.Module or None
        The model to time, already on ``device``. ``None``: a 64-channel 3x3
        convolution stands in (the workhorse of the built-in models).
    device : str or torch.device
        Where it runs.
    channels : int
        Input channels of the model (frames); read from ``model.in_channels`` when it has one.
    remeasure : bool
        Measure again even if a choice is cached, and replace it.

    Returns
    -------
    PrecisionChoice

    Examples
    --------
    >>> choice = measure_precision(torch.nn.Conv2d(1, 8, 3), "cpu")
    >>> choice.precision in ("fp32", "bf16"), choice.key.startswith("cpu")
    (True, True)
    """
    device = torch.device(device)
    if model is None:
        model = nn.Conv2d(64, 64, 3, padding=1).to(device, memory_format=torch.channels_last)
        channels = 64
    channels = int(getattr(model, "in_channels", channels))
    key = _cache_key(model, device, channels)
    folder = cache_dir()
    with _lock:
        if not remeasure:
            choice = _memo.get((folder, key)) or _from_json(_read_cache(folder).get(key), key)
            if choice is not None:
                _memo[(folder, key)] = choice
                return choice
        names = candidates(device)
        seconds = _time_candidates(_bare_copy(model), device, channels, names) if len(names) > 1 else {"fp32": 0.0}
        precision, reason = choose_precision(seconds) if len(names) > 1 else ("fp32", f"{device.type}: float32 only")
        choice = PrecisionChoice(precision, seconds, reason, key)
        _write_cache(folder, key, choice)
        _memo[(folder, key)] = dataclasses.replace(choice, cached=True)
        return choice


def resolve_precision(
    precision: str, device: str | torch.device, model: nn.Module | None = None, *, channels: int = 1
) -> torch.dtype:
    """The dtype that ``precision`` means on ``device`` (for ``model``).

    Parameters
    ----------
    precision : {"auto", "fp32", "bf16", "fp16"}
        ``"auto"``: measured for ``model`` on ``device`` (:func:`measure_precision`, cached).
    device : str or torch.device
        Where the model runs.
    model : nn.Module, optional
        What ``auto`` times, already on ``device``; ``None``: a 3x3 convolution stands in.
    channels : int
        The model's input channels, if it has no ``in_channels`` attribute.

    Returns
    -------
    torch.dtype

    Raises
    ------
    InputError
        For an unknown name, or bf16 on a CUDA device without bfloat16 support.

    Examples
    --------
    >>> resolve_precision("fp32", "cpu")
    torch.float32
    >>> resolve_precision("auto", "cpu", torch.nn.Conv2d(1, 4, 3)) in (torch.float32, torch.bfloat16)
    True
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r} is unknown; choose one of: {', '.join(PRECISIONS)}.")
    device = torch.device(device)
    if precision != "auto":
        dtype = PRECISIONS[precision]
        if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise InputError(f"{device} does not support bfloat16; use --precision fp16 or fp32.")
        return dtype
    return measure_precision(model, device, channels=channels).dtype


def autocast(device: str | torch.device, dtype: torch.dtype) -> AbstractContextManager:
    """Autocast to ``dtype`` on ``device``'s type; a no-op for float32.

    Examples
    --------
    >>> with autocast("cpu", torch.bfloat16):
    ...     y = torch.nn.functional.conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3))
    >>> y.dtype
    torch.bfloat16
    """
    device = torch.device(device)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


# --------------------------------------------------------------------------- measuring


def time_alternating(
    calls: Mapping[str, Callable[[], object]], *, rounds: tuple[int, int] = (3, 20), seconds: float = 0.0,
    clearly_slower: float = 2.0,
) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternating rounds.

    Each function is called once to warm up, then once per round in turn, so that a
    burst of contention on a shared machine slows all of them alike. Rounds go on
    until at least ``rounds[0]`` and ``seconds`` have passed, at most ``rounds[1]``.
    A function already ``clearly_slower`` than the fastest's best call is not called
    again: its median is of the calls it had.

    Examples
    --------
    >>> medians = time_alternating({"short": lambda: time.sleep(0.001), "long": lambda: time.sleep(0.004)})
    >>> medians["short"] < medians["long"]
    True
    """
    for call in calls.values():
        call()  # kernel selection, weight casts and first-touch pages are not what later calls pay
    times: dict[str, list[float]] = {name: [] for name in calls}
    until = time.perf_counter() + seconds
    done = 0
    while done < rounds[0] or (done < rounds[1] and time.perf_counter() < until):
        best = min((min(t) for t in times.values() if t), default=math.inf)
        for name, call in calls.items():
            if not times[name] or min(times[name]) < clearly_slower * best:
                started = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - started)
        done += 1
    return {name: float(statistics.median(t)) for name, t in times.items()}


def _bare_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` without its hooks: timing it must not change the caller's model's mode or
    state, nor run the caller's hooks (a progress callback would count the probe's calls as tiles)."""
    bare = copy.deepcopy(model)
    for module in bare.modules():
        for hooks in (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks):
            hooks.clear()
    return bare


def _time_candidates(model: nn.Module, device: torch.device, channels: int, names: list[str]) -> dict[str, float]:
    """Median seconds per probe call of ``model`` in each precision of ``names``."""
    x = torch.rand(1, channels, _PROBE_SIDE, _PROBE_SIDE, device=device).contiguous(memory_format=torch.channels_last)
    model.eval()

    def call(dtype: torch.dtype) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode(), autocast(device, dtype):
                model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        return run

    return time_alternating({name: call(PRECISIONS[name]) for name in names}, rounds=_PROBE_ROUNDS,
                            seconds=_PROBE_SECONDS)


def hardware_name(device: str | torch.device) -> str:
    """The CPU's model name (from ``/proc/cpuinfo`` on Linux) or the GPU's, for reports and cache keys.

    Examples
    --------
    >>> isinstance(hardware_name("cpu"), str)
    True
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _cache_key(model: nn.Module, device: torch.device, channels: int) -> str:
    shapes = hashlib.sha256(repr([(n, tuple(p.shape)) for n, p in model.named_parameters()]).encode()).hexdigest()
    return (f"{device}|{hardware_name(device)}|{torch.get_num_threads()} threads|torch {torch.__version__}|"
            f"{type(model).__name__} {channels}ch {shapes[:16]}")


def _read_cache(folder: Path) -> dict:
    try:
        entries = json.loads((folder / _CACHE_FILE).read_text())["entries"]
        return entries if isinstance(entries, dict) else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # absent or unreadable: measure again, and the write replaces it


def _from_json(entry: object, key: str) -> PrecisionChoice | None:
    try:
        choice = PrecisionChoice(entry["precision"], dict(entry["seconds"]), str(entry["reason"]), key, cached=True)
    except (KeyError, TypeError, ValueError):
        return None
    return choice if choice.precision in PRECISIONS and choice.precision != "auto" else None


def _write_cache(folder: Path, key: str, choice: PrecisionChoice) -> None:
    """Add ``choice`` to the cache file atomically; a cache that cannot be written only costs a measurement."""
    entries = _read_cache(folder)
    entries[key] = {"precision": choice.precision, "seconds": choice.seconds, "reason": choice.reason,
                    "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f"{_CACHE_FILE}.tmp-{secrets.token_hex(4)}"
        try:
            temporary.write_text(json.dumps({"version": 1, "entries": entries}, indent=1))
            os.replace(temporary, folder / _CACHE_FILE)  # atomic: readers see the old file or the new one
        finally:
            temporary.unlink(missing_ok=True)
    except OSError:
        pass
