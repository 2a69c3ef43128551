"""The model card (``README.md``) of an exported package: what a stranger needs to judge and cite the model."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from microsr import __version__

__all__ = ["CITATIONS", "Card", "model_card"]

CITATIONS: dict[str, tuple[str, str]] = {
    "unet": ("Ronneberger, Fischer & Brox (2015). U-Net: convolutional networks for biomedical image "
             "segmentation. MICCAI.", "10.1007/978-3-319-24574-4_28"),
    "pssr": ("Fang et al. (2021). Deep learning-based point-scanning super-resolution imaging. "
             "Nature Methods 18, 406-416.", "10.1038/s41592-021-01080-z"),
    "deepstorm": ("Nehme, Weiss, Michaeli & Shechtman (2018). Deep-STORM: super-resolution single-molecule "
                  "microscopy by deep learning. Optica 5, 458-464.", "10.1364/OPTICA.5.000458"),
}
"""Methods microsr implements, as (text, DOI): cited by the packages of the models that use them."""

_ARCH_CITATIONS = {
    "resunet": ("pssr", "unet"), "resunet_small": ("pssr", "unet"), "unet": ("unet",),
    "smlm_unet": ("deepstorm", "unet"), "deepstorm": ("deepstorm",), "dsir": ("deepstorm",),
    "dsir_compat": ("deepstorm",),
}


def citations(arch_name: str) -> list[tuple[str, str]]:
    """(text, DOI) of the methods the architecture ``arch_name`` implements.

    Examples
    --------
    >>> [doi for _, doi in citations("resunet")]
    ['10.1038/s41592-021-01080-z', '10.1007/978-3-319-24574-4_28']
    """
    return [CITATIONS[key] for key in _ARCH_CITATIONS.get(arch_name, ("unet",))]


@dataclass(frozen=True)
class Card:
    """What the card says about a model, gathered by the exporter.

    Attributes
    ----------
    name, task : str
        Package name, and one sentence on what the model restores.
    info : dict
        The checkpoint's description (:mod:`microsr.checkpoint`).
    history : list of dict
        The training run's ``history.json`` (one record per epoch), or empty.
    halo, min_size, step : int
        Input pixels of context per side, smallest input side and its step.
    normalisation : str
        How the package's pre- and post-processing relate to microsr's (with the measured difference).
    license : str
        SPDX identifier.
    """

    name: str
    task: str
    info: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    halo: int = 0
    min_size: int = 1
    step: int = 1
    normalisation: str = ""
    license: str = "CC-BY-4.0"


def _nm(value: float | None) -> str:
    return "not recorded" if value is None else f"{value:g} nm"


def _best_epoch(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    scored = [r for r in history if isinstance(r.get("val_psnr"), (int, float)) and math.isfinite(r["val_psnr"])]
    return max(scored, key=lambda r: r["val_psnr"]) if scored else None


def model_card(card: Card) -> str:
    """The package's ``README.md`` as Markdown.

    Examples
    --------
    >>> text = model_card(Card("demo", "Restores things.", {"scale": 2, "arch": {"name": "unet"}}))
    >>> "## How to cite" in text
    True
    """
    info = card.info
    run = info.get("run") or {}
    data = run.get("data") or {}
    frames = int(info.get("frames", 1))
    channels = data.get("channels")
    lines = [
        f"# {card.name}", "", card.task, "",
        "Exported by microsr " + __version__ + " (`microsr export`). Run it in any bioimage.io consumer "
        "(deepImageJ, ilastik, QuPath, napari, BiaPy, `bioimageio predict`) or in microsr: "
        f"`microsr predict {card.name}.zip INPUT -o OUTPUT`.", "",
        "## The model", "",
        f"- Architecture: `{(info.get('arch') or {}).get('name')}` with {json.dumps(info.get('arch'))}.",
        f"- Scale: x{info.get('scale')} (output pixels per input pixel along Y and X).",
        f"- Input: {len(channels) if channels else frames} channel(s): "
        + (f"frames {channels} of each acquisition" if channels else
           f"{frames} adjacent frames along {info.get('frame_axis', 'T')}, the output is the middle one"
           if frames > 1 else "one image"),
        f"- Pixel size trained for: input {_nm(info.get('input_pixel_size'))}, output "
        f"{_nm(info.get('output_pixel_size'))}.",
        f"- Input size: any Y and X of {card.min_size} + n x {card.step} pixels; each output tile needs "
        f"{card.halo} input pixels of context per side (the measured receptive field), declared as the "
        "output's halo, so tiled prediction equals whole-image prediction.", "",
        "## Normalisation", "", card.normalisation, "",
    ]
    degradation = info.get("degradation")
    lines += ["## Degradation it was trained to undo", ""]
    if degradation:
        lines += ["```yaml", yaml.safe_dump(degradation, sort_keys=False).strip(), "```", ""]
    else:
        lines += ["None recorded: trained on paired (or simulated) low/high-resolution data.", ""]
    lines += ["## Training", ""]
    sources = {key: data.get(key) for key in ("hr", "lr", "simulation") if data.get(key)}
    lines.append(f"- Data: {json.dumps(sources) if sources else 'not recorded'}.")
    train = run.get("train") or {}
    if train:
        lines.append(f"- Settings: {json.dumps(train)}.")
    if card.history:
        last = card.history[-1]
        lines.append(f"- Time: {last.get('epoch')} epochs, {last.get('step')} steps, "
                     f"{float(last.get('seconds', 0)) / 60:.1f} minutes.")
        best = _best_epoch(card.history)
        if best is not None:
            lines += ["", "| validation (best epoch) | model | bicubic |", "| --- | --- | --- |",
                      f"| PSNR (dB), epoch {best['epoch']} | {best['val_psnr']:.2f} | "
                      f"{best.get('bicubic_psnr', float('nan')):.2f} |",
                      f"| SSIM | {best.get('val_ssim', float('nan')):.4f} | |"]
    else:
        lines.append("- Training history: not found next to the checkpoint (history.json).")
    if info.get("smlm"):
        lines.append(f"- SMLM validation: {json.dumps(info['smlm'])}.")
    lines += ["", "## License", "", f"{card.license}.", "", "## How to cite", ""]
    lines += [f"- {text} https://doi.org/{doi}" for text, doi in citations((info.get("arch") or {}).get("name", ""))]
    return "\n".join(lines) + "\n"
