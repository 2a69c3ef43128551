"""``microsr smlm``: simulate single-molecule localization microscopy stacks and score localizations.

A thin shell over :mod:`microsr.simulate.smlm` and :mod:`microsr.localize`, mounted
by :mod:`microsr.cli` as the ``smlm`` subcommand group. User errors are
:class:`~microsr.errors.InputError`, which ``microsr``'s entry point prints as one line
(exit code 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from microsr.errors import InputError

app = typer.Typer(
    name="smlm",
    help="Single-molecule localization microscopy: simulate stacks with ground truth, score localizations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

out = Console(highlight=False)

STACK_NAME = "stack.tif"
TRUTH_NAME = "ground_truth.csv"

RangeOption = tuple[float, float] | None


@app.command()
def simulate(
    output: Annotated[Path, typer.Option("--output", "-o", help=f"Folder to create: {STACK_NAME} + {TRUTH_NAME}.")],
    preset: Annotated[
        str, typer.Option(help="Starting settings: default, dsir or deepstorm-test; the options below override them.")
    ] = "default",
    frames: Annotated[int, typer.Option(help="Number of frames.")] = 1000,
    size: Annotated[int | None, typer.Option(help="Frame side in pixels (square frames).")] = None,
    pixel_size: Annotated[float | None, typer.Option("--pixel-size", help="Camera pixel size in nm.")] = None,
    density: Annotated[float | None, typer.Option(help="Emitters ON per µm² in each frame.")] = None,
    structure: Annotated[
        str | None,
        typer.Option(help="filaments, uniform, or an image file whose pixel values weight where emitters sit."),
    ] = None,
    filaments: Annotated[int | None, typer.Option(help="Number of filaments in the field.")] = None,
    fwhm: Annotated[RangeOption, typer.Option(help="PSF FWHM range in nm: LOW HIGH.")] = None,
    photons: Annotated[RangeOption, typer.Option(help="Photons per emitter per frame: LOW HIGH.")] = None,
    background: Annotated[float | None, typer.Option(help="Background photons per pixel per frame.")] = None,
    photons_per_adu: Annotated[
        float | None, typer.Option("--photons-per-adu", help="Photoelectrons per A/D count.")
    ] = None,
    base_level: Annotated[float | None, typer.Option(help="Base level in A/D counts.")] = None,
    em_gain: Annotated[float | None, typer.Option(help="EM gain (EMCCD); 0 turns electron multiplication off.")] = None,
    read_noise: Annotated[float | None, typer.Option(help="Readout noise, electrons rms.")] = None,
    on_time: Annotated[float | None, typer.Option(help="Mean frames a molecule stays on per blink (≥ 1).")] = None,
    off_time: Annotated[float | None, typer.Option(help="Mean frames a molecule stays off between blinks.")] = None,
    bleach: Annotated[float | None, typer.Option(help="Probability of bleaching after each blink (0-1].")] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same stack.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Simulate a high-density SMLM stack (16-bit TIFF with its pixel size) and its ground truth.

    The ground truth is a ThunderSTORM CSV (frame, x [nm], y [nm], sigma [nm],
    intensity [photon]; frames 1-based) of every emitter on in every frame.
    """
    from microsr.io import atomic_output, read_image, write_image
    from microsr.localize import write_localizations
    from microsr.simulate.smlm import preset as named_preset
    from microsr.simulate.smlm import simulate_stack

    config = named_preset(preset)
    inputs = []
    mask = None
    if structure is not None and structure not in ("filaments", "uniform"):
        if not Path(structure).exists():
            raise InputError(f"--structure {structure!r}: neither filaments, uniform nor an existing image file.")
        mask_image = read_image(structure)
        if mask_image.ndim != 2:
            raise InputError(
                f"{structure}: a structure image must be 2-D (Y, X), not {mask_image.axes} {mask_image.shape}."
            )
        mask, inputs = np.asarray(mask_image.data.compute(), np.float64), [Path(structure)]
    changes = {
        "size": size, "pixel_size": pixel_size, "density": density, "filaments": filaments, "fwhm": fwhm,
        "photons": photons, "background": background, "photons_per_adu": photons_per_adu, "base_level": base_level,
        "read_noise": read_noise, "on_time": on_time, "off_time": off_time, "bleach": bleach,
        "structure": mask if mask is not None else structure,
    }
    config = config.replace(**{key: value for key, value in changes.items() if value is not None})
    if em_gain is not None:
        config = config.replace(em_gain=em_gain or None)
    with atomic_output(output, overwrite=overwrite, inputs=inputs) as folder:
        folder.mkdir()
        stack, truth = simulate_stack(config, frames, seed)
        write_image(folder / STACK_NAME, stack, axes="TYX", pixel_size=config.pixel_size)
        write_localizations(truth, folder / TRUTH_NAME)
    out.print(config.describe())
    out.print(
        f"wrote {output / STACK_NAME} ({' × '.join(map(str, stack.shape))} uint16, {config.pixel_size:g} nm "
        f"pixels) and {output / TRUTH_NAME} ({len(truth)} emitters, {len(truth) / frames:.1f} per frame)"
    )


@app.command()
def score(
    localizations: Annotated[Path, typer.Argument(help="Estimated localizations (CSV).")],
    ground_truth: Annotated[Path, typer.Argument(help="Ground-truth localizations (CSV).")],
    radius: Annotated[float, typer.Option(help="Tolerance radius in nm for a match.")] = 250.0,
) -> None:
    """Score LOCALIZATIONS against GROUND_TRUTH as the SMLM challenges do.

    Per frame, estimates and ground truth are paired one-to-one by optimal assignment;
    pairs farther apart than RADIUS do not count. Reads ThunderSTORM, plain
    (frame, x [nm], y [nm]) and EPFL (frame, xnano, ynano) CSV files.
    """
    from microsr.localize import read_localizations
    from microsr.localize import score as score_localizations

    result = score_localizations(read_localizations(localizations), read_localizations(ground_truth), radius)
    table = Table(title=f"{localizations} vs {ground_truth}, radius {result.radius:g} nm", show_header=False)
    table.add_row("true positives", str(result.tp))
    table.add_row("false positives", str(result.fp))
    table.add_row("false negatives", str(result.fn))
    table.add_row("recall", _percent(result.recall))
    table.add_row("precision", _percent(result.precision))
    table.add_row("Jaccard index", _percent(result.jaccard))
    table.add_row("lateral RMSE", f"{result.rmse_lateral:.1f} nm")
    table.add_row("efficiency (Sage et al. 2019)", _percent(result.efficiency))
    out.print(table)


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.1f} %"
