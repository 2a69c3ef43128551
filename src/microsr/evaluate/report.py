"""The benchmark's HTML report: one self-contained file, figures embedded as base64 PNG.

:func:`write_report` turns what :func:`microsr.evaluate.benchmark.benchmark` computed (the
``summary.json`` content, the ``metrics.csv`` rows and a :class:`Figure` per image)
into ``report.html``, which opens in any browser with no other files.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import PIL.Image

from microsr.io import atomic_output

__all__ = ["Figure", "Tile", "png_data_uri", "write_report"]

_DISPLAY_SIDE = 200  # CSS pixels per tile; LR crops are enlarged to it without smoothing


@dataclass(frozen=True)
class Tile:
    """One image of a figure, shown from ``low`` (black) to ``high`` (white or the colormap's top).

    Attributes
    ----------
    label : str
        Caption under the image.
    image : numpy.ndarray
        2-D intensities.
    low, high : float
        Display range; values outside are clipped.
    colormap : {"gray", "hot"}
        ``hot`` runs black, red, yellow, white (for error maps).
    """

    label: str
    image: np.ndarray
    low: float = 0.0
    high: float = 1.0
    colormap: Literal["gray", "hot"] = "gray"


@dataclass(frozen=True)
class Figure:
    """Rows of tiles under a title, with a caption.

    Attributes
    ----------
    title : str
        Heading, e.g. the image name.
    rows : sequence of sequence of Tile
        Each row is shown side by side.
    caption : str
        What the tiles show and on which intensity scale.
    """

    title: str
    rows: Sequence[Sequence[Tile]]
    caption: str


def png_data_uri(image: np.ndarray, low: float = 0.0, high: float = 1.0,
                 colormap: Literal["gray", "hot"] = "gray") -> str:
    """Encode a 2-D image as a ``data:image/png;base64,...`` URI for an ``<img src>``.

    Parameters
    ----------
    image : numpy.ndarray
        2-D intensities; ``low`` maps to 0 and ``high`` to 255 (8-bit PNG), clipped.
    low, high : float
        Display range, ``high > low``.
    colormap : {"gray", "hot"}
        Grey levels, or the "hot" map (black, red, yellow, white) as RGB.

    Returns
    -------
    str

    Examples
    --------
    >>> uri = png_data_uri(np.array([[0.0, 0.5], [1.0, 2.0]]))
    >>> uri.startswith("data:image/png;base64,")
    True
    >>> import base64, io, PIL.Image
    >>> np.asarray(PIL.Image.open(io.BytesIO(base64.b64decode(uri.split(",")[1])))).tolist()
    [[0, 128], [255, 255]]
    """
    level = np.clip((np.asarray(image, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    if colormap == "hot":
        level = np.stack([np.clip(3 * level - k, 0.0, 1.0) for k in range(3)], axis=-1)
    buffer = io.BytesIO()
    PIL.Image.fromarray(np.rint(level * 255).astype(np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border-bottom: 1px solid #ccc; padding: 0.25em 0.8em; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
.notice { background: #fff3cd; border: 1px solid #e0c060; padding: 0.6em 1em; }
.row { display: flex; flex-wrap: wrap; gap: 0.5em; }
figure { margin: 0 0 0.5em; }
figure img { image-rendering: pixelated; }
figcaption { font-size: 0.85em; text-align: center; }
.caption, .small { font-size: 0.9em; color: #555; }
pre { white-space: pre-wrap; background: #f5f5f5; padding: 0.6em; }
"""


def _number(value: Any, digits: int) -> str:
    if value is None or value == "":
        return "–"
    return f"{float(value):.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(
            f"<td class=\"text\">{html.escape(c)}</td>" if i < text_columns else f"<td>{html.escape(c)}</td>"
            for i, c in enumerate(row)
        ) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure_html(figure: Figure) -> str:
    rows = []
    for row in figure.rows:
        tiles = "".join(
            f'<figure><img src="{png_data_uri(t.image, t.low, t.high, t.colormap)}" alt="{html.escape(t.label)}" '
            f'width="{_DISPLAY_SIDE}" height="{_DISPLAY_SIDE}"><figcaption>{html.escape(t.label)}</figcaption></figure>'
            for t in row
        )
        rows.append(f'<div class="row">{tiles}</div>')
    return f"<h3>{html.escape(figure.title)}</h3>{''.join(rows)}<p class=\"caption\">{html.escape(figure.caption)}</p>"


def write_report(
    path: str | os.PathLike[str],
    summary: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    figures: Sequence[Figure] = (),
    *,
    overwrite: bool = False,
) -> Path:
    """Write the benchmark's self-contained HTML report, atomically.

    Parameters
    ----------
    path
        The ``.html`` file to write.
    summary
        The ``summary.json`` content: ``methods`` (name -> ``psnr``, ``ssim``,
        ``nrmse``, ``resolution``, ``images``), ``resolution_unit``,
        ``semi_synthetic``, ``provenance`` and ``conventions``.
    rows
        The ``metrics.csv`` rows as mappings (``image``, ``method``, ``psnr``, ``ssim``,
        ``nrmse``, ``resolution``, ``shift_y``, ``shift_x``, ``registration_correlation``).
    figures
        Per-image crops and error maps.
    overwrite
        Replace an existing file.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> summary = {"methods": {"bicubic": {"psnr": 20.0, "ssim": 0.5, "nrmse": 0.3, "resolution": None,
    ...                                    "images": 1}},
    ...            "resolution_unit": "px", "semi_synthetic": False, "provenance": {"command": ["microsr"]},
    ...            "conventions": "..."}
    >>> write_report("report.html", summary, [])  # doctest: +SKIP
    PosixPath('report.html')
    """
    path = Path(path)
    unit = summary.get("resolution_unit", "px")
    provenance = dict(summary.get("provenance", {}))
    command = provenance.pop("command", None)
    parts = [
        f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>microsr benchmark</title>"
        f"<style>{_STYLE}</style></head><body><h1>microsr benchmark</h1>"
    ]
    if summary.get("semi_synthetic"):
        degradation_seed = provenance.get("seed")
        parts.append(
            "<p class=\"notice\"><strong>Semi-synthetic benchmark.</strong> No LR images were given: each HR image "
            "was degraded with the model's own degradation (seed "
            f"{html.escape(str(degradation_seed))}, recorded under provenance). The model was trained on exactly "
            "this degradation, so these scores are optimistic for it; benchmark on real pairs (--lr) to judge it on "
            "real data.</p>"
        )
    parts.append("<h2>Summary</h2><p class=\"small\">Mean over images; higher PSNR and SSIM and lower NRMSE are "
                 "better. Resolution (decorrelation analysis of each output alone) measures the finest detail an "
                 "image contains, true or invented, so read it next to the scores against the HR.</p>")
    parts.append(_table(
        ["method", "images", "PSNR (dB)", "SSIM", "NRMSE", f"resolution ({unit})"],
        [[name, str(m["images"]), _number(m["psnr"], 2), _number(m["ssim"], 4), _number(m["nrmse"], 4),
          _number(m["resolution"], 2)] for name, m in summary["methods"].items()],
    ))
    parts.append("<h2>Metrics per image</h2>")
    parts.append(_table(
        ["image", "method", "PSNR (dB)", "SSIM", "NRMSE", f"resolution ({unit})", "shift y (px)", "shift x (px)",
         "registration correlation"],
        [[str(r["image"]), str(r["method"]), _number(r["psnr"], 2), _number(r["ssim"], 4), _number(r["nrmse"], 4),
          _number(r["resolution"], 2), _number(r["shift_y"], 2), _number(r["shift_x"], 2),
          _number(r["registration_correlation"], 3)] for r in rows],
        text_columns=2,
    ))
    if figures:
        parts.append("<h2>Images</h2>")
        parts.extend(_figure_html(figure) for figure in figures)
    parts.append(f"<h2>Conventions</h2><p>{html.escape(str(summary.get('conventions', '')))}</p>")
    parts.append("<h2>Provenance</h2>")
    if command is not None:
        parts.append(f"<p>Command:</p><pre>{html.escape(shlex.join(command))}</pre>")
    parts.append(f"<pre>{html.escape(json.dumps(provenance, indent=2))}</pre></body></html>\n")
    with atomic_output(path, overwrite=overwrite) as temporary:
        temporary.write_text("".join(parts), encoding="utf-8")
    return path
