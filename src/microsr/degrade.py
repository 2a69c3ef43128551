"""Degradations ("crappifiers") that turn high-resolution images into training inputs.

A :class:`Degradation` is a pipeline of small :class:`Step` objects (blur, downsampling,
noise, intensity changes). Images are float arrays in *normalised intensity* (1.0 is the
bright level, e.g. the 99.9th percentile) with any leading axes; every step acts on the
last two (YX) axes only.

Each numeric step parameter is either a number (fixed) or a ``(low, high)`` range that is
sampled once per call, so the frames of a multi-frame window share the blur and
intensity changes but receive independent noise.
"""

from __future__ import annotations

import math
import numbers
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import yaml
from scipy.ndimage import gaussian_filter
from skimage.transform import resize

from microsr.data.normalize import PercentileNormalizer, _name
from microsr.errors import InputError, one_line
from microsr.io import Image, check_finite, in_memory

__all__ = [
    "PRESETS",
    "STEPS",
    "Blur",
    "Degradation",
    "Downsample",
    "Gaussian",
    "Intensity",
    "Poisson",
    "SaltPepper",
    "Step",
    "degrade_image",
    "load_degradation",
    "preset",
]

Param = float | tuple[float, float]
"""A fixed value or a ``(low, high)`` range sampled once per call."""

# Allowed values of numeric parameters: name -> (test, description for error messages).
_DOMAINS: dict[str, tuple[Callable[[float], bool], str]] = {
    "real": (lambda v: True, "a number"),
    "nonnegative": (lambda v: v >= 0, ">= 0"),
    "positive": (lambda v: v > 0, "> 0"),
    "fraction": (lambda v: 0 <= v <= 1, "between 0 and 1"),
}


def _number(where: str, value: Any) -> float:
    # PyYAML reads exponent notation without a dot ("1e3") as a string, so accept numeric text.
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InputError(f"{where}: expected a number or a [low, high] range, got {value!r}.")
    return float(value)


def _parameter(where: str, value: Any, domain: str) -> Param:
    """Validate a parameter; return a float or a ``(low, high)`` tuple of floats."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise InputError(f"{where}: a range must be [low, high], got {list(value)!r}.")
        low, high = (_number(where, v) for v in value)
        if low > high:
            raise InputError(
                f"{where}: range [{low:g}, {high:g}] has low > high; write it as [low, high]."
            )
        checked: Param = (low, high)
    else:
        checked = _number(where, value)
    test, description = _DOMAINS[domain]
    for v in checked if isinstance(checked, tuple) else (checked,):
        if not test(v):
            raise InputError(f"{where} must be {description}, got {v:g}.")
    return checked


def _sample(value: Param, rng: np.random.Generator, *, log: bool = False) -> float:
    """Return a fixed value as is; draw a range uniformly (log-uniformly when ``log``)."""
    if not isinstance(value, tuple):
        return value
    low, high = value
    if log:
        return float(np.exp(rng.uniform(np.log(low), np.log(high))))
    return float(rng.uniform(low, high))


def _format(value: Any) -> str:
    if isinstance(value, tuple):
        return f"{value[0]:g}..{value[1]:g}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class Step(ABC):
    """One degradation step; subclasses are frozen, picklable dataclasses.

    Subclasses declare ``kind`` (their name in dicts and YAML), ``is_noise``, the domain
    of each numeric parameter in ``domains`` (every one may also be a ``(low, high)``
    range) and the allowed values of each text parameter in ``choices``.

    Examples
    --------
    >>> import numpy as np
    >>> step = Gaussian(sigma=0.1)
    >>> step(np.zeros((4, 4)), np.random.default_rng(0)).shape
    (4, 4)
    >>> step.to_dict()
    {'type': 'gaussian', 'sigma': 0.1}
    """

    kind: ClassVar[str]
    is_noise: ClassVar[bool] = False
    domains: ClassVar[Mapping[str, str]] = {}
    log_uniform: ClassVar[frozenset[str]] = frozenset()
    """Parameters whose ranges are sampled log-uniformly (so each decade is equally likely)."""
    choices: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    def __post_init__(self) -> None:
        for name, domain in self.domains.items():
            # Lists (as YAML gives them) become tuples so steps stay hashable.
            value = _parameter(f"{self.kind}.{name}", getattr(self, name), domain)
            object.__setattr__(self, name, value)
        for name, allowed in self.choices.items():
            if getattr(self, name) not in allowed:
                raise InputError(
                    f"{self.kind}.{name}: unknown value {getattr(self, name)!r}; "
                    f"choose one of: {', '.join(allowed)}."
                )

    @property
    def factor(self) -> int:
        """Downsampling factor of this step (1 for all but :class:`Downsample`)."""
        return 1

    @abstractmethod
    def __call__(
        self, x: np.ndarray, rng: np.random.Generator, pixel_size: float | None = None
    ) -> np.ndarray:
        """Degrade ``x`` (float, YX last), drawing parameters and noise from ``rng``.

        ``pixel_size`` is the current YX pixel size in nm (None when unknown).
        """

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"type": kind, **parameters}`` with ranges as lists (YAML-friendly)."""
        params = {f.name: getattr(self, f.name) for f in fields(self)}
        return {"type": self.kind} | {
            name: list(v) if isinstance(v, tuple) else v for name, v in params.items()
        }

    def midpoint(self) -> Step:
        """The same step with every range replaced by its centre (geometric for log-uniform ones).

        Examples
        --------
        >>> Poisson(photons=(10.0, 1000.0)).midpoint()
        Poisson(photons=100.0)
        """
        centres = {}
        for name in self.domains:
            value = getattr(self, name)
            if isinstance(value, tuple):
                log = name in self.log_uniform
                centres[name] = float(np.sqrt(value[0] * value[1]) if log else (value[0] + value[1]) / 2)
        return replace(self, **centres)

    def __str__(self) -> str:
        params = ", ".join(
            f"{f.name}={_format(getattr(self, f.name))}"
            for f in fields(self)
        )
        return f"{self.kind}({params})"


@dataclass(frozen=True)
class Blur(Step):
    """Gaussian point-spread function applied to the last two axes (reflecting edges).

    Parameters
    ----------
    sigma : float or (float, float)
        Standard deviation of the Gaussian, in pixels of the image the step receives
        (``unit="px"``) or in nanometres (``unit="nm"``, which needs the pixel size).
    unit : {"px", "nm"}
        Unit of ``sigma``.

    Examples
    --------
    >>> import numpy as np
    >>> delta = np.zeros((9, 9)); delta[4, 4] = 1.0
    >>> out = Blur(sigma=40.0, unit="nm")(delta, np.random.default_rng(0), pixel_size=20.0)
    >>> round(float(out.sum()), 6)
    1.0
    """

    kind: ClassVar[str] = "blur"
    domains: ClassVar[Mapping[str, str]] = {"sigma": "nonnegative"}
    choices: ClassVar[Mapping[str, tuple[str, ...]]] = {"unit": ("px", "nm")}

    sigma: Param = 1.0
    unit: str = "px"

    def __call__(
        self, x: np.ndarray, rng: np.random.Generator, pixel_size: float | None = None
    ) -> np.ndarray:
        sigma = _sample(self.sigma, rng)
        if self.unit == "nm":
            if pixel_size is None:
                raise InputError(
                    "blur.sigma is in nm but the pixel size is unknown; pass the pixel size "
                    "(nm) or give the blur sigma in px."
                )
            sigma /= pixel_size
        return gaussian_filter(x, sigma=(0,) * (x.ndim - 2) + (sigma, sigma), mode="reflect")


@dataclass(frozen=True)
class Downsample(Step):
    """Reduce the YX size by an integer factor; the output size is ``ceil(n / factor)``.

    Parameters
    ----------
    factor : int
        Downsampling factor (>= 1). Not a range: it fixes the output size.
    method : {"area", "bilinear"}
        ``"area"`` averages ``factor x factor`` blocks, as a point-scanning detector
        integrates over its pixel. ``"bilinear"`` interpolates linearly at the block
        centres without anti-aliasing (PSSR's classic choice). Sizes that are not a
        multiple of ``factor`` are first mirrored (edge pixel included, like ``Blur``'s
        ``"reflect"``) up to the next multiple, so no edge is dropped.

    Examples
    --------
    >>> import numpy as np
    >>> Downsample(2)(np.arange(16.0).reshape(4, 4), np.random.default_rng(0))
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """

    kind: ClassVar[str] = "downsample"
    choices: ClassVar[Mapping[str, tuple[str, ...]]] = {"method": ("area", "bilinear")}

    factor: int = 4  # a field here, overriding the base class's constant-1 property
    method: str = "area"

    def __post_init__(self) -> None:
        f = self.factor
        if isinstance(f, bool) or not isinstance(f, numbers.Integral) or f < 1:
            raise InputError(f"downsample.factor must be an integer >= 1, got {f!r}.")
        object.__setattr__(self, "factor", int(f))
        super().__post_init__()

    def __call__(
        self, x: np.ndarray, rng: np.random.Generator, pixel_size: float | None = None
    ) -> np.ndarray:
        f = self.factor
        h, w = x.shape[-2:]
        # Padding to a multiple keeps the output pixel i on input pixels [f*i, f*i + f) for
        # both methods, i.e. on the grid of the high-resolution target.
        x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, -h % f), (0, -w % f)], mode="symmetric")
        out_hw = (x.shape[-2] // f, x.shape[-1] // f)
        if self.method == "bilinear":
            return resize(x, x.shape[:-2] + out_hw, order=1, mode="symmetric", anti_aliasing=False)
        return x.reshape(*x.shape[:-2], out_hw[0], f, out_hw[1], f).mean(axis=(-3, -1))


@dataclass(frozen=True)
class Poisson(Step):
    """Photon shot noise: ``rng.poisson(clip(x, 0) * photons) / photons``.

    Parameters
    ----------
    photons : float or (float, float)
        Expected photon count at intensity 1.0 (> 0). A range is sampled log-uniformly,
        so each decade of signal level is equally likely.

    Examples
    --------
    >>> import numpy as np
    >>> out = Poisson(photons=1e4)(np.full((64, 64), 0.5), np.random.default_rng(0))
    >>> abs(float(out.mean()) - 0.5) < 0.01
    True
    """

    kind: ClassVar[str] = "poisson"
    is_noise: ClassVar[bool] = True
    domains: ClassVar[Mapping[str, str]] = {"photons": "positive"}
    log_uniform: ClassVar[frozenset[str]] = frozenset({"photons"})

    photons: Param = (20.0, 200.0)

    def __call__(
        self, x: np.ndarray, rng: np.random.Generator, pixel_size: float | None = None
    ) -> np.ndarray:
        photons = _sample(self.photons, rng, log="photons" in self.log_uniform)
        return rng.poisson(np.clip(x, 0, None) * photons) / photons


@dataclass(frozen=True)
class Gaussian(Step):
    """Additive Gaussian (read) noise with standard deviation ``sigma``.

    Parameters
    ----------
    sigma : float or (float, float)
        Standard deviation in normalised intensity units (>= 0).

    Examples
    --------
    >>> import numpy as np
    >>> out = Gaussian(sigma=0.1)(np.zeros((256, 256)), np.random.default_rng(0))
    >>> abs(float(out.std()) - 0.1) < 0.005
    True
    """

    kind: ClassVar[str] = "gaussian"
    is_noise: ClassVar[bool] = True
    domains: ClassVar[Mapping[str, str]] = {"sigma": "nonnegative"}

    sigma: Param = 0.01

    def __call__(
        self, x: np.ndarray, rng: np.random.Generator, pixel_size: float | None = None
    ) -> np.ndarray:
        return x + rng.normal(0.0, _sample(self.sigma, rng), x.shape)


@dataclass(frozen=True)
class SaltPepper(Step):
    """Set a random fraction of pixels to 1.0 (salt) or 0.0 (pepper).

    Salt is the normalised bright level 1.0 and pepper the background 0.0 rather than the
    patch's own extremes, so the corruption does not depend on the content of the patch;
    this is also what PSSR's ``skimage.util.random_noise`` did on [0, 1] images.

    Parameters
    ----------
    amount : float or (float, float)
        Fraction of pixels affected (0 to 1); each pixel is hit independently.
    salt_fraction : float or (float, float)
        Fraction of the affected pixels that become salt (0 to 1).

    Examples
    --------
    >>> import numpy as np
    >>> out = SaltPepper(amount=1.0, salt_fraction=1.0)(np.zeros((2, 2)), np.random.default_rng(0))
    >>> out.tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """

    kind: ClassVar[str] = "salt_pepper"
    is_noise: ClassVar[bool] = True
    domains: ClassVar[Mapping[str, str]] = {"amount": "fraction", "salt_fraction": "fraction"}

    amount: Param = 0.005
    salt_fraction: Param = 0.5

    def __call__(
        self, x: np.ndarray, rng: np.random.Generator, pixel_size: float | None = None
    ) -> np.ndarray:
        amount = _sample(self.amount, rng)
        salt_fraction = _sample(self.salt_fraction, rng)
        hit = rng.random(x.shape) < amount
        salt = rng.random(x.shape) < salt_fraction
        return np.where(hit, salt.astype(x.dtype), x)


@dataclass(frozen=True)
class Intensity(Step):
    """Linear intensity change ``x * scale + offset`` (e.g. dimmer acquisitions, background).

    Parameters
    ----------
    scale : float or (float, float)
        Multiplicative gain (>= 0).
    offset : float or (float, float)
        Added constant, in normalised intensity units.

    Examples
    --------
    >>> import numpy as np
    >>> Intensity(scale=0.5, offset=0.1)(np.ones(2)[None], np.random.default_rng(0)).tolist()
    [[0.6, 0.6]]
    """

    kind: ClassVar[str] = "intensity"
    domains: ClassVar[Mapping[str, str]] = {"scale": "nonnegative", "offset": "real"}

    scale: Param = 1.0
    offset: Param = 0.0

    def __call__(
        self, x: np.ndarray, rng: np.random.Generator, pixel_size: float | None = None
    ) -> np.ndarray:
        return x * _sample(self.scale, rng) + _sample(self.offset, rng)


STEPS: Mapping[str, type[Step]] = MappingProxyType(
    {cls.kind: cls for cls in (Blur, Downsample, Poisson, Gaussian, SaltPepper, Intensity)}
)
"""Step classes by ``kind``, as used in dicts and YAML."""


def _step_from_dict(d: Any) -> Step:
    if not isinstance(d, Mapping) or "type" not in d:
        raise InputError(
            f"degradation step {d!r}: expected a mapping with a 'type' "
            f"(one of: {', '.join(STEPS)})."
        )
    params = dict(d)
    kind = params.pop("type")
    if kind not in STEPS:
        raise InputError(
            f"degradation step type {kind!r} is unknown; choose one of: {', '.join(STEPS)}."
        )
    cls = STEPS[kind]
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise InputError(
            f"{kind}: unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(valid)}."
        )
    return cls(**params)


def _yaml_path(spec: Any) -> Path | None:
    """Return ``spec`` as a path if it names a YAML file rather than being YAML text."""
    if isinstance(spec, os.PathLike):
        return Path(spec)
    if isinstance(spec, str) and "\n" not in spec and spec.lower().endswith((".yaml", ".yml")):
        return Path(spec)
    return None


class _Dumper(yaml.SafeDumper):
    """Writes ranges inline (``sigma: [0.5, 1.5]``) and the step list as a block."""


_Dumper.add_representer(
    list,
    lambda dumper, data: dumper.represent_sequence(
        "tag:yaml.org,2002:seq", data, flow_style=not any(isinstance(v, dict) for v in data)
    ),
)


@dataclass(frozen=True)
class Degradation:
    """A degradation pipeline: high-resolution image in, degraded float32 image out.

    Parameters
    ----------
    steps : sequence of Step
        Applied in order to the last two axes. Each step receives the pixel size of the
        image it gets (the input pixel size times the downsampling done so far).

    Examples
    --------
    >>> import numpy as np
    >>> d = Degradation([Blur(sigma=(0.5, 1.5)), Downsample(4), Poisson(photons=100.0)])
    >>> d(np.ones((3, 64, 64)), seed=0).shape
    (3, 16, 16)
    >>> d.scale, d.output_pixel_size(20.0)
    (4, 80.0)
    >>> Degradation.from_dict(d.to_dict()) == d
    True
    """

    steps: tuple[Step, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        for step in self.steps:
            if not isinstance(step, Step):
                raise TypeError(f"Degradation steps must be Step objects, got {step!r}")

    @property
    def scale(self) -> int:
        """Total downsampling factor (product of the steps' factors)."""
        return math.prod(step.factor for step in self.steps)

    def __call__(
        self,
        x: np.ndarray,
        seed: int | np.random.Generator | None = None,
        pixel_size: float | None = None,
    ) -> np.ndarray:
        """Degrade ``x`` (shape ``(..., H, W)``); return float32 ``(..., ceil(H/s), ceil(W/s))``.

        Parameters
        ----------
        x : array_like
            Image in normalised intensity, with any leading axes.
        seed : int, numpy.random.Generator or None
            The same integer seed gives a bit-identical result; a Generator is advanced.
        pixel_size : float, optional
            YX pixel size of ``x`` in nm; needed by steps with lengths in nm.

        Examples
        --------
        >>> import numpy as np
        >>> d = preset("poisson", scale=2)
        >>> a = d(np.ones((8, 8)), seed=1)
        >>> a.dtype, a.shape, bool((a == d(np.ones((8, 8)), seed=1)).all())
        (dtype('float32'), (4, 4), True)
        """
        x = np.asarray(x)
        if x.ndim < 2 or x.dtype.kind not in "biuf":
            raise InputError(
                f"degradation input must be a real-valued array with at least 2 (Y, X) axes, "
                f"got dtype {x.dtype} and shape {x.shape}."
            )
        if pixel_size is not None and not pixel_size > 0:
            raise InputError(f"pixel_size must be > 0 nm, got {pixel_size!r}.")
        rng = np.random.default_rng(seed)
        y = x.astype(np.float64)
        for step in self.steps:
            y = step(y, rng, pixel_size)
            if pixel_size is not None:
                pixel_size *= step.factor
        return y.astype(np.float32)

    def output_pixel_size(self, pixel_size: float | None) -> float | None:
        """Pixel size (nm) of the output for an input pixel size; None stays None.

        Examples
        --------
        >>> preset("clean", scale=4).output_pixel_size(2.0)
        8.0
        """
        return None if pixel_size is None else pixel_size * self.scale

    def without_noise(self) -> Degradation:
        """The same pipeline without its noise steps (e.g. for noise-free targets).

        Examples
        --------
        >>> [s.kind for s in preset("poisson").without_noise().steps]
        ['blur', 'downsample']
        """
        return Degradation(tuple(step for step in self.steps if not step.is_noise))

    def midpoint(self) -> Degradation:
        """The typical member of this pipeline: every parameter range replaced by its centre.

        Examples
        --------
        >>> print(preset("clean").midpoint())
        1. blur(sigma=0.5, unit=px)
        2. downsample(factor=4, method=area)
        """
        return Degradation(tuple(step.midpoint() for step in self.steps))

    def with_scale(self, factor: int) -> Degradation:
        """The same pipeline with its (single) downsampling factor replaced by ``factor``.

        A pipeline without a :class:`Downsample` step gets an area one inserted before
        its first noise step, so noise is still added at the output resolution.

        Examples
        --------
        >>> preset("poisson").with_scale(2).scale
        2
        """
        steps = list(self.steps)
        where = [i for i, step in enumerate(steps) if isinstance(step, Downsample)]
        if len(where) > 1:
            raise InputError(
                f"the degradation has {len(where)} downsample steps, so a single scale "
                f"cannot be set; edit their factors in the degradation file instead."
            )
        if where:
            steps[where[0]] = replace(steps[where[0]], factor=factor)
        else:
            first_noise = next((i for i, s in enumerate(steps) if s.is_noise), len(steps))
            steps.insert(first_noise, Downsample(factor))
        return Degradation(tuple(steps))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``{"steps": [...]}``) that :meth:`from_dict` turns back into ``self``."""
        return {"steps": [step.to_dict() for step in self.steps]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Degradation:
        """Build a pipeline from ``{"steps": [{"type": ..., **params}, ...]}``.

        Examples
        --------
        >>> Degradation.from_dict({"steps": [{"type": "downsample", "factor": 2}]}).scale
        2
        """
        if not isinstance(d, Mapping) or set(d) != {"steps"} or not isinstance(d["steps"], list):
            raise InputError(
                "a degradation must be a mapping with exactly one key, 'steps', holding a list "
                "of steps such as {type: downsample, factor: 4}."
            )
        return cls(tuple(_step_from_dict(step) for step in d["steps"]))

    def to_yaml(self) -> str:
        """YAML text of :meth:`to_dict`."""
        return yaml.dump(self.to_dict(), Dumper=_Dumper, sort_keys=False)

    @classmethod
    def from_yaml(cls, text_or_path: str | os.PathLike[str]) -> Degradation:
        """Build a pipeline from YAML text or a ``.yaml``/``.yml`` file.

        Examples
        --------
        >>> Degradation.from_yaml("steps: [{type: blur, sigma: [0.5, 1.5]}]").steps
        (Blur(sigma=(0.5, 1.5), unit='px'),)
        """
        path = _yaml_path(text_or_path)
        source = "degradation YAML"
        text = text_or_path
        if path is not None:
            source = str(path)
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise InputError(f"{path}: degradation file not found. Check the path.") from None
        try:
            return cls.from_dict(yaml.safe_load(text))
        except yaml.YAMLError as err:
            raise InputError(f"{source}: not valid YAML ({one_line(err)}).") from None
        except InputError as err:
            raise InputError(f"{source}: {err}") from None

    def describe(self) -> str:
        """One numbered line per step; ``a..b`` is a range sampled once per image."""
        return "\n".join(f"{i}. {step}" for i, step in enumerate(self.steps, start=1))

    __str__ = describe


# The HR image already contains the microscope's PSF, and a point scanner acquiring the LR
# image uses the same optics with a coarser scan step, so the physically exact extra blur
# is none: the detector's integration over the larger pixel is the area downsampling. A
# small random extra blur (0-1 HR px; for a Nyquist-sampled HR image, whose PSF sigma is
# about 1 px, that widens the PSF by at most ~40 %) tolerates focus and pinhole
# differences without teaching the network to sharpen beyond the optics. It is in HR
# pixels and does not grow with the scale because the optics do not change with it.
_BLUR = Blur(sigma=(0.0, 1.0))
# 10-300 photons at the bright level: SNR 3-17 in bright LR pixels, fast-scan territory.
_SHOT_AND_READ_NOISE = (Poisson(photons=(10.0, 300.0)), Gaussian(sigma=(0.0, 0.02)))

PRESETS: Mapping[str, Degradation] = MappingProxyType(
    {
        "poisson": Degradation((_BLUR, Downsample(4), *_SHOT_AND_READ_NOISE)),
        # Noise spread close to "poisson" at mid-grey (std 0.04-0.22), but signal-independent.
        "gaussian": Degradation((_BLUR, Downsample(4), Gaussian(sigma=(0.02, 0.2)))),
        # PSSR's new_crap_AG_SP: Gaussian noise, 0.5 % salt + 0.5 % pepper, then bilinear
        # downsampling. The original's Gaussian variance is 0.5 x the local mean (std 0.5 at
        # mid-grey); an additive range keeps dim regions from drowning in noise.
        "pssr": Degradation(
            (
                Gaussian(sigma=(0.1, 0.5)),
                SaltPepper(amount=0.01, salt_fraction=0.5),
                Downsample(4, method="bilinear"),
            )
        ),
        "poisson-noise-first": Degradation((_BLUR, *_SHOT_AND_READ_NOISE, Downsample(4))),
        "clean": Degradation((_BLUR, Downsample(4))),
    }
)
"""Named degradations at scale 4; use :func:`preset` for another scale."""


def preset(name: str, scale: int = 4) -> Degradation:
    """Return the named preset with downsampling factor ``scale``.

    Parameters
    ----------
    name : str
        One of ``PRESETS``: "poisson" (default; blur, area downsampling, then Poisson shot
        noise and Gaussian read noise at the output resolution), "gaussian",
        "pssr", "poisson-noise-first" or "clean" (blur and downsampling only).
    scale : int
        Downsampling factor.

    Examples
    --------
    >>> print(preset("clean", scale=2))
    1. blur(sigma=0..1, unit=px)
    2. downsample(factor=2, method=area)
    """
    if name not in PRESETS:
        raise InputError(
            f"unknown degradation preset {name!r}; choose one of: {', '.join(PRESETS)}."
        )
    return PRESETS[name].with_scale(scale)


def load_degradation(
    spec: str | os.PathLike[str] | Mapping[str, Any], scale: int | None = None
) -> Degradation:
    """Build a degradation from a preset name, a YAML file or a dict.

    Parameters
    ----------
    spec : str, path or mapping
        A name in ``PRESETS``, a ``.yaml``/``.yml`` file, or a dict as from
        :meth:`Degradation.to_dict`.
    scale : int, optional
        Replace the downsampling factor (see :meth:`Degradation.with_scale`).

    Examples
    --------
    >>> load_degradation("poisson", scale=2).scale
    2
    >>> load_degradation({"steps": [{"type": "downsample", "factor": 3}]}).scale
    3
    """
    if isinstance(spec, Mapping):
        degradation = Degradation.from_dict(spec)
    elif isinstance(spec, str) and spec in PRESETS:
        degradation = PRESETS[spec]
    elif _yaml_path(spec) is not None:
        degradation = Degradation.from_yaml(spec)
    else:
        raise InputError(
            f"degradation {str(spec)!r} is neither a preset ({', '.join(PRESETS)}) "
            f"nor a .yaml/.yml file."
        )
    return degradation if scale is None else degradation.with_scale(scale)


_DEGRADE_COPIES = 9
# float32 arrays of the image's size :func:`degrade_image` holds at its peak: measured (peak RSS over
# the input, 4096² uint16) 5.8 for the poisson, gaussian and clean presets at scale 4, 6.3 for poisson at
# scale 2, 7.8 for poisson-noise-first and 8.0 for pssr; one more for margin.


def degrade_image(
    image: Image,
    degradation: Degradation,
    *,
    seed: int | np.random.Generator | None = 0,
    normalizer: PercentileNormalizer | None = None,
) -> Image:
    """Degrade a whole image exactly as training degrades its tiles, keeping its units.

    The image is normalised (percentiles fitted to it unless ``normalizer`` is fitted),
    degraded, mapped back to its intensity range and cast to its dtype (integers are
    rounded and clipped, so 16-bit data stays 16-bit). The result is loaded in memory.

    Parameters
    ----------
    image : Image
        High-resolution image, any leading axes; all of them share one draw of the
        degradation's parameters, with independent noise per pixel.
    degradation : Degradation
        Pipeline to apply.
    seed : int, numpy.random.Generator or None
        Seed of the degradation's random draws.
    normalizer : PercentileNormalizer, optional
        Normalisation; default ``PercentileNormalizer()`` fitted to ``image``.

    Returns
    -------
    Image
        The degraded image, with pixel size ``degradation.output_pixel_size(image.pixel_size)``
        and no ``path``.

    Raises
    ------
    InputError
        If the image contains NaN or infinite values.

    Examples
    --------
    >>> from microsr.degrade import preset
    >>> hr = Image(np.full((64, 64), 1000, np.uint16), "YX", pixel_size=2.0)
    >>> lr = degrade_image(hr, preset("clean", scale=4))
    >>> lr.shape, lr.dtype, lr.pixel_size
    ((16, 16), dtype('uint16'), 8.0)
    """
    if min(image.shape[-2:]) < degradation.scale:
        raise InputError(
            f"{_name(image)}: the image is {' × '.join(map(str, image.shape[-2:]))} pixels, smaller than one "
            f"low-resolution pixel at scale {degradation.scale}; give an image of at least "
            f"{degradation.scale} × {degradation.scale} pixels (much larger to be useful)."
        )
    hr = in_memory(image, np.float32, copies=_DEGRADE_COPIES)
    check_finite(hr, _name(image))
    normalizer = normalizer or PercentileNormalizer()
    if not normalizer.fitted:
        normalizer = normalizer.fit(hr)
    lr = normalizer.denormalize(degradation(normalizer(hr), seed=seed, pixel_size=image.pixel_size))
    if np.issubdtype(image.dtype, np.integer):
        limits = np.iinfo(image.dtype)
        lr = np.clip(np.rint(lr), limits.min, limits.max).astype(image.dtype)
    return image.replace(
        data=lr,
        pixel_size=degradation.output_pixel_size(image.pixel_size),
        path=None,
    )
