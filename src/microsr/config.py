"""One validated configuration per training run (pydantic).

A :class:`RunConfig` says everything about a run: which images, how they are
degraded (or which acquisition is simulated), the model, the loss and the
schedule. It is stored inside every checkpoint, so a model always knows how it was made.

Examples
--------
>>> cfg = RunConfig.model_validate({"data": {"hr": ["cells.tif"]}, "scale": 4, "train": {"minutes": 10}})
>>> cfg.model.name, cfg.loss, cfg.train.minutes
('resunet', 'msssim_l1', 10.0)
>>> smlm = RunConfig.model_validate({"data": {"simulation": {"preset": "deepstorm-test", "density": 3.0}}})
>>> smlm.scale, smlm.model.name, smlm.loss, smlm.data.simulation.settings().density
(8, 'smlm_unet', 'blurred_mse_l1', 3.0)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import dask.array as da
import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, InstanceOf, PlainSerializer, ValidationError, model_validator

from microsr.degrade import PRESETS as DEGRADATION_PRESETS
from microsr.errors import InputError, one_line
from microsr.io import Image
from microsr.pretrained import PRETRAINED
from microsr.simulate.smlm import SMLMSimulation, SMLMVariety, preset

__all__ = [
    "DataConfig", "ImageSource", "ModelConfig", "RunConfig", "SimulationConfig", "TrainConfig", "load_config",
    "simulation_config", "with_overrides",
]


def _describe(image: Image | np.ndarray | da.Array) -> str:
    """What a stored configuration says of an in-memory image: its pixels are not stored with it."""
    axes = f" {image.axes}" if isinstance(image, Image) else ""
    return f"<in-memory image{axes} {'x'.join(map(str, image.shape))} {image.dtype}>"


ImageSource = Path | Annotated[
    InstanceOf[Image] | InstanceOf[np.ndarray] | InstanceOf[da.Array],
    PlainSerializer(_describe, return_type=str, when_used="json"),
]
"""A training image: a file or folder, or an image in memory (an :class:`~microsr.io.Image`, which
keeps its axes and pixel size, or a NumPy/dask array with ``data.axes`` and ``data.pixel_size``)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimulationConfig(BaseModel):
    """SMLM frames simulated on the fly: a preset of :data:`microsr.simulate.smlm.PRESETS`, then overrides.

    Any other key is a setting of :class:`~microsr.simulate.smlm.SMLMSimulation`
    (``density``, ``photons``, ``size``, ...) replacing the preset's.

    Examples
    --------
    >>> SimulationConfig(preset="dsir", density=4.0).settings().size
    (26, 26)
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    preset: str = Field("broad", description="Starting settings (microsr.simulate.smlm.PRESETS).")
    val_frames: int = Field(64, ge=1, description="Frames of the fixed validation set (seeded by train.seed).")
    threshold_criterion: Literal["jaccard", "efficiency"] = Field(
        "jaccard", description="What the peak threshold maximises on the simulated validation frames (fixed "
        "before training; efficiency = Jaccard and RMSE combined, Sage et al. 2019)."
    )
    threshold_radius: float = Field(250.0, gt=0, description="Matching radius (nm) of that criterion.")

    @model_validator(mode="after")
    def _valid_settings(self) -> SimulationConfig:
        self.settings()
        return self

    def settings(self) -> SMLMSimulation | SMLMVariety:
        """The simulation settings: the preset with the overrides applied (validated)."""
        known = {field.name for field in dataclasses.fields(type(preset(self.preset)))}
        unknown = sorted(set(self.model_extra or {}) - known)
        if unknown:
            raise InputError(
                f"unknown simulation setting {', '.join(unknown)}; use preset, val_frames or one of {', '.join(known)}."
            )
        return preset(self.preset).replace(**(self.model_extra or {}))


class DataConfig(_Strict):
    """Where the training images are (or what is simulated) and how tiles are cut from them."""

    hr: list[ImageSource] | None = Field(
        None, min_length=1, description="High-resolution images: files or folders of files, or images in memory."
    )
    simulation: SimulationConfig | None = Field(
        None, description="Instead of `hr`: SMLM frames simulated on the fly; their size sets the tile."
    )
    lr: list[ImageSource] | None = Field(
        None, description="Real low-resolution counterparts of `hr`: files matched by file name without extension "
        "(microsr.io.pair_by_name), or images in memory matched by position; None: degrade `hr`."
    )
    pixel_size: float | None = Field(None, gt=0, description="HR pixel size in nm, overriding file metadata.")
    axes: str | None = Field(
        None, description="Axes of the files (and in-memory arrays) as stored, overriding their metadata."
    )
    tile: int = Field(128, ge=8, description="HR tile side in pixels; a multiple of the scale.")
    frames: int = Field(1, ge=1, description="Adjacent frames fed as input channels (odd).")
    frame_axis: Literal["T", "Z", "C"] = "T"
    channels: list[int] | None = Field(
        None, min_length=1,
        description="Frames as channels: these frames of each `lr` acquisition along frame_axis (e.g. SIM raw frames "
        "along C, angle-major; [0, 5, 10] = first phase of 3 angles x 5 phases) are the input, one `hr` target per "
        "acquisition; `frames` becomes their number.",
    )
    lr_planes: dict[Literal["T", "C", "Z"], int] | None = Field(
        None, description="Take every `lr` image at these indices of its leading axes, e.g. {Z: 1}: the middle of the "
        "3 time points that T-SIM files store along Z. `microsr sim predict` takes the same planes of its input.",
    )
    val_fraction: float = Field(0.1, ge=0, lt=1)
    batch_size: int = Field(8, ge=1)
    samples_per_epoch: int = Field(512, ge=1, description="Training tiles (or simulated frames) drawn per epoch.")
    num_workers: int | None = Field(
        None, ge=0, description="DataLoader processes degrading tiles off the main process (default: 2, fewer "
        "on machines with under 4 cores, where they would take cores from the model)."
    )

    @model_validator(mode="after")
    def _channels_are_the_frames(self) -> DataConfig:
        if self.channels is not None:
            if self.lr is None:
                raise ValueError("channels need real pairs: lr (the multi-frame acquisitions) and hr (their targets)")
            if "frames" in self.model_fields_set and self.frames != len(self.channels):
                raise ValueError(f"frames {self.frames} differs from the {len(self.channels)} channels; leave it out")
            object.__setattr__(self, "frames", len(self.channels))
        return self

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.hr is None) == (self.simulation is None):
            raise ValueError("give either hr (training images) or simulation (simulated SMLM frames), not both")
        if self.lr is not None and self.hr is None:
            raise ValueError("lr needs hr: real low-resolution images pair with high-resolution ones")
        return self


class ModelConfig(_Strict):
    """A registered model name and its keyword arguments."""

    name: str = "resunet"
    kwargs: dict[str, Any] = Field(default_factory=dict)
    init: Path | None = Field(
        None, description="Start from this trained model's weights (folder, .safetensors, or the name of a shipped "
        "model): fine-tuning, e.g. of a model trained on simulation on real pairs. Its architecture must match name "
        "and kwargs."
    )


class TrainConfig(_Strict):
    """Optimiser, schedule and budget. Exactly one of epochs, steps and minutes ends the run."""

    epochs: int | None = Field(None, ge=1)
    steps: int | None = Field(None, ge=1)
    minutes: float | None = Field(None, gt=0)
    lr: float = Field(1e-3, gt=0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["onecycle", "cosine"] = "onecycle"
    grad_clip: float | None = Field(1.0, gt=0)
    seed: int = 0
    device: str = Field("auto", description="auto (cuda, then mps, then cpu), or a torch device such as cuda:1.")
    deterministic: bool = False
    checkpoint_minutes: float = Field(
        5.0, gt=0, description="Also save a resumable checkpoint after this many minutes within an epoch, so a crash "
        "loses at most this much training (checkpoints are always saved at the end of each epoch).",
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="auto: the faster of float32 and bfloat16 autocast for this model, measured once per machine "
        "(microsr.runtime.precision). "
        "(float16 training would need loss scaling, so it is not offered.)",
    )

    @model_validator(mode="after")
    def _one_budget(self) -> TrainConfig:
        given = [name for name in ("epochs", "steps", "minutes") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of epochs, steps and minutes (got {', '.join(given)})")
        if not given:
            object.__setattr__(self, "minutes", 10.0)
        return self


class RunConfig(_Strict):
    """Everything about one training run.

    With ``data.simulation`` the defaults of ``scale``, ``model`` and ``loss`` are those
    of SMLM reconstruction (8, ``smlm_unet``, ``blurred_mse_l1``) unless given.
    """

    data: DataConfig
    scale: int = Field(4, description="Upsampling factor: 1 (restoration), 2, 4 or 8 (8 for SMLM).")
    degradation: str | dict[str, Any] = Field(
        "poisson", description="Preset name, path of a degradation YAML file, or the pipeline as a dict."
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: str = "msssim_l1"
    normalization: dict[str, float] = Field(default_factory=lambda: {"low": 0.1, "high": 99.9})
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _smlm_defaults(self) -> RunConfig:
        if self.data.simulation is not None:
            defaults = {"scale": 8, "model": ModelConfig(name="smlm_unet"), "loss": "blurred_mse_l1"}
            for name, value in defaults.items():
                if name not in self.model_fields_set:
                    object.__setattr__(self, name, value)
        return self

    @model_validator(mode="after")
    def _scale_of_a_degradation_file(self) -> RunConfig:
        """A degradation file (e.g. from ``microsr fit-degradation``) sets the scale unless one is given.

        Its blur is in HR pixels and its noise in LR units at its own factor; the default
        of 4 would silently refit a x2 file to x4.
        """
        preset = isinstance(self.degradation, str) and self.degradation in DEGRADATION_PRESETS
        if "scale" in self.model_fields_set or preset:
            return self
        from microsr.degrade import load_degradation

        object.__setattr__(self, "scale", load_degradation(self.degradation).scale)
        return self

    @model_validator(mode="after")
    def _geometry(self) -> RunConfig:
        if self.scale not in (1, 2, 4, 8):
            raise ValueError(f"scale {self.scale}: use 1, 2, 4 or 8")
        if self.data.channels is None and self.data.frames % 2 == 0:
            raise ValueError(f"data.frames {self.data.frames}: use an odd number (1, 3, 5, ...) for a centre frame")
        return self


def load_config(source: RunConfig | dict[str, Any] | str | os.PathLike[str]) -> RunConfig:
    """Validate a run configuration from a dict, a YAML/JSON file, or pass a RunConfig through.

    Relative paths in a file (images, a degradation file, and ``model.init`` unless it
    names a shipped model) are taken relative to the file's folder, so a config and its
    data can move together. A degradation file sets ``scale`` when the run does not.

    Parameters
    ----------
    source
        A :class:`RunConfig`, a plain dict, or the path of a ``.yaml``/``.yml``/``.json`` file.

    Returns
    -------
    RunConfig

    Raises
    ------
    InputError
        If the file is missing or unreadable, or a field is invalid (the message lists each one).

    Examples
    --------
    >>> load_config({"data": {"hr": ["a.tif"]}, "train": {"steps": 100}}).train.steps
    100
    """
    if isinstance(source, RunConfig):
        return source
    return _validate(*_read(source))


_BUDGET = ("epochs", "steps", "minutes")


def with_overrides(
    source: RunConfig | dict[str, Any] | str | os.PathLike[str] | None, changes: Mapping[str, Any]
) -> RunConfig:
    """A run configuration with values given on a command line (or in a widget) in place of its own.

    The one place where ``microsr train``, ``microsr smlm train`` and the napari Train
    widget merge their options into a configuration.

    Parameters
    ----------
    source
        The configuration as :func:`load_config` takes it, or ``None`` for none.
    changes
        Dotted keys (``"data.hr"``, ``"train.steps"``, ``"model.name"``) and their values;
        ``None`` means not given and changes nothing. A mapping is merged into the
        mapping it replaces. A budget (``train.epochs``, ``train.steps`` or
        ``train.minutes``) replaces the configuration's budget, and ``model.name``
        its whole model section (the keyword arguments and initial weights were that
        model's).

    Returns
    -------
    RunConfig
        Validated once, after the changes, so a configuration file may leave out
        what the options give.

    Raises
    ------
    InputError
        As :func:`load_config`.

    Examples
    --------
    >>> cfg = with_overrides({"data": {"hr": ["a.tif"]}, "train": {"epochs": 3}}, {"train.steps": 50, "scale": None})
    >>> cfg.train.steps, cfg.train.epochs, cfg.scale
    (50, None, 4)
    """
    run, origin = ({}, "options") if source is None else _read(source)
    for key, value in changes.items():
        if value is None:
            continue
        *parents, name = key.split(".")
        if key == "model.name":
            run["model"] = {}
        section = run
        for parent in parents:
            section[parent] = dict(section.get(parent) or {})
            section = section[parent]
        if parents == ["train"] and name in _BUDGET:
            for other in _BUDGET:
                section.pop(other, None)
        merge = isinstance(value, Mapping) and isinstance(section.get(name), Mapping)
        section[name] = {**section[name], **value} if merge else value
    return _validate(run, origin)


def _read(source: RunConfig | dict[str, Any] | str | os.PathLike[str]) -> tuple[dict[str, Any], str]:
    """The configuration as a plain dict (only what was given), and where it came from."""
    if isinstance(source, RunConfig):
        return source.model_dump(exclude_unset=True), "configuration"
    if isinstance(source, dict):
        return dict(source), "configuration"
    path = Path(source)
    if not path.is_file():
        raise InputError(f"{path}: configuration file not found. Check the path.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML/JSON ({one_line(exc)}).") from exc
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping with at least `data: {{hr: [...]}}`.")
    return _relative_to(raw, path.parent), str(path)


def simulation_config(settings: dict[str, Any], origin: str) -> SimulationConfig:
    """Validate SMLM simulation settings (e.g. a file of ``microsr smlm calibrate``), naming ``origin`` in errors.

    Raises
    ------
    InputError
        One line listing every invalid setting.

    Examples
    --------
    >>> simulation_config({"preset": "dsir", "density": 2.0}, "simulation.yaml").settings().density
    2.0
    """
    return _validate(settings, origin, SimulationConfig)


def _validate(run: dict[str, Any], origin: str, model: type[BaseModel] = RunConfig) -> Any:
    try:
        return model.model_validate(run)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'config'}: {error['msg']}" for error in exc.errors()
        )
        raise InputError(f"{origin}: {problems}.") from exc


def _relative_to(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    data = dict(raw.get("data") or {})
    for key in ("hr", "lr"):
        if isinstance(data.get(key), (str, list)):
            paths = data[key] if isinstance(data[key], list) else [data[key]]
            data[key] = [str(folder / p) for p in paths]
    model = dict(raw.get("model") or {})
    if isinstance(model.get("init"), str) and model["init"] not in PRETRAINED:
        model["init"] = str(folder / model["init"])
    degradation = raw.get("degradation")
    if isinstance(degradation, str) and degradation not in DEGRADATION_PRESETS:
        raw = {**raw, "degradation": str(folder / degradation)}
    return {**raw, **({"data": data} if data else {}), **({"model": model} if model else {})}
