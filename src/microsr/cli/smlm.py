"""``microsr smlm``: simulate SMLM stacks, train reconstruction models, reconstruct stacks, score localizations.

A thin shell over :mod:`microsr.simulate.smlm`, :mod:`microsr.training`,
:mod:`microsr.smlm.reconstruct` and :mod:`microsr.smlm.localize`, mounted by :mod:`microsr.cli`
as the ``smlm`` subcommand group. User errors are :class:`~microsr.errors.InputError`,
which ``microsr``'s entry point prints as one line (exit code 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from microsr.cli.options import set_threads
from microsr.errors import InputError

app = typer.Typer(
    name="smlm",
    help="Single-molecule localization microscopy: simulate stacks with ground truth, train reconstruction "
    "models on simulated frames, reconstruct stacks, score localizations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

out = Console(highlight=False)

STACK_NAME, TRUTH_NAME = "stack.tif", "ground_truth.csv"  # as microsr.simulate.smlm writes them (imported lazily)

RangeOption = tuple[float, float] | None


@app.command()
def simulate(
    output: Annotated[Path, typer.Option("--output", "-o", help=f"Folder to create: {STACK_NAME} + {TRUTH_NAME}.")],
    preset: Annotated[
        str, typer.Option(help="Starting settings: default, dsir, deepstorm-test (calibrated with the ground truth "
                          "of Deep-STORM's test stack) or broad (one acquisition drawn from the shipped model's "
                          "training range by --seed); the options below override them.")
    ] = "default",
    simulation: Annotated[
        Path | None,
        typer.Option(help="Simulation settings (YAML) from `microsr smlm calibrate`, instead of --preset: stacks "
                     "like the calibrated one."),
    ] = None,
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
    from microsr.config import simulation_config
    from microsr.simulate.smlm import SMLMSimulation, read_structure, write_stack
    from microsr.simulate.smlm import preset as named_preset

    config = (named_preset(preset) if simulation is None
              else simulation_config(_read_simulation(simulation), f"--simulation {simulation}").settings())
    if not isinstance(config, SMLMSimulation):
        # A range of acquisitions (broad): the seed draws one from it, from a stream apart from the stack's.
        config = config.draw(np.random.default_rng([1, seed]))
    mask_file = structure is not None and structure not in ("filaments", "uniform")
    if mask_file and not Path(structure).exists():
        raise InputError(f"--structure {structure!r}: neither filaments, uniform nor an existing image file.")
    changes = {
        "size": size, "pixel_size": pixel_size, "density": density, "filaments": filaments, "fwhm": fwhm,
        "photons": photons, "background": background, "photons_per_adu": photons_per_adu, "base_level": base_level,
        "read_noise": read_noise, "on_time": on_time, "off_time": off_time, "bleach": bleach,
        "structure": read_structure(structure) if mask_file else structure,
    }
    config = config.replace(**{key: value for key, value in changes.items() if value is not None})
    if em_gain is not None:
        config = config.replace(em_gain=em_gain or None)  # 0: no electron multiplication
    stack, truth = write_stack(output, config, frames, seed, overwrite=overwrite,
                               inputs=[Path(structure)] if mask_file else [])
    out.print(config.describe())
    out.print(
        f"wrote {output / STACK_NAME} ({' × '.join(map(str, stack.shape))} uint16, {config.pixel_size:g} nm "
        f"pixels) and {output / TRUTH_NAME} ({len(truth)} emitters, {len(truth) / frames:.1f} per frame)"
    )


@app.command()
def train(
    config: Annotated[
        Path | None, typer.Argument(help="Run configuration (YAML) with data.simulation; options override it.")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")] = Path("smlm_model"),
    simulation: Annotated[
        Path | None,
        typer.Option(help="Simulation settings (YAML) from `microsr smlm calibrate`: a model for that microscope."),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(help="Simulation preset: broad (default: a range of acquisitions), default, dsir, or "
                     "deepstorm-test (calibrated with the ground truth: an upper bound)."),
    ] = None,
    pixel_size: Annotated[float | None, typer.Option("--pixel-size", help="Camera pixel size in nm.")] = None,
    density: Annotated[float | None, typer.Option(help="Emitters ON per µm² in each frame.")] = None,
    model: Annotated[
        str | None, typer.Option(help="smlm_unet (default, fast), deepstorm, dsir or another registered model.")
    ] = None,
    scale: Annotated[int | None, typer.Option(help="Fine pixels per camera pixel: 2, 4 or 8 (default).")] = None,
    loss: Annotated[
        str | None, typer.Option(help="blurred_mse_l1 (Deep-STORM, default) or blurred_mse (DSIR).")
    ] = None,
    minutes: Annotated[float | None, typer.Option(help="Time budget in minutes (default 10).")] = None,
    steps: Annotated[int | None, typer.Option(help="Train for this many steps instead of a time budget.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Frames per step.")] = None,
    frames_per_epoch: Annotated[int | None, typer.Option(help="Simulated training frames per epoch.")] = None,
    val_frames: Annotated[int | None, typer.Option(help="Frames of the fixed validation set.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes simulating frames.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:1, mps.")] = None,
    precision: Annotated[str | None, typer.Option(help="auto, fp32, bf16 or fp16.")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for PyTorch.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the interrupted run in OUTPUT.")] = False,
) -> None:
    """Train an SMLM reconstruction model on frames simulated on the fly (no dataset on disk).

    Each step simulates new frames and their exact emitters (x8 targets by default);
    every epoch picks the peak threshold on a fixed simulated validation set by the
    criterion fixed in the settings (threshold_criterion at threshold_radius) and keeps
    the checkpoint that scores best on it, with its threshold, as OUTPUT/best.safetensors.

    For your microscope: `microsr smlm calibrate STACK -o simulation.yaml`, then
    `microsr smlm train --simulation simulation.yaml -o MODEL --minutes 20`.
    """
    from microsr.config import with_overrides
    from microsr.runtime.distributed import ranks
    from microsr.training import train as run_training

    run = with_overrides(config, {
        "data.simulation": _read_simulation(simulation) if simulation is not None else {},
        "data.simulation.preset": preset, "data.simulation.pixel_size": pixel_size,
        "data.simulation.density": density, "data.simulation.val_frames": val_frames,
        "data.batch_size": batch_size, "data.samples_per_epoch": frames_per_epoch, "data.num_workers": workers,
        "scale": scale, "loss": loss, "model.name": model, "train.minutes": minutes, "train.steps": steps,
        "train.seed": seed, "train.device": device, "train.precision": precision,
    })
    set_threads(threads)
    record = run_training(run, output, resume=resume)
    if ranks().main:  # under torchrun, rank 0 validated and reports
        out.print(
            f"[bold]{output}[/bold] (last epoch): validation Jaccard {_percent(record['val_jaccard_100'])} at 100 "
            f"nm, {_percent(record['val_jaccard_250'])} at 250 nm, lateral RMSE {record['val_rmse']:.1f} nm at peak "
            f"threshold {record['threshold']:g}, after {record['epoch']} epochs, {record['step']} steps."
        )


def _read_simulation(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise InputError(f"--simulation {path}: no such file; write one with `microsr smlm calibrate STACK -o {path}`.")
    try:
        settings = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"--simulation {path}: not valid YAML ({exc.__class__.__name__}).") from None
    if not isinstance(settings, dict):
        raise InputError(f"--simulation {path}: expected a mapping of simulation settings (see microsr smlm calibrate).")
    return settings


@app.command()
def calibrate(
    stack: Annotated[Path, typer.Argument(help="Raw SMLM stack (3-D TIFF, ...) or a folder of single-frame TIFFs.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Simulation settings to write (YAML).")],
    pixel_size: Annotated[
        float | None, typer.Option("--pixel-size", help="Camera pixel size in nm, overriding the file's.")
    ] = None,
    camera: Annotated[
        str, typer.Option(help="auto (measure whether there is EM gain), emccd, or scmos (also CCD).")
    ] = "auto",
    max_frames: Annotated[int, typer.Option(min=10, help="Frames read (evenly spaced).")] = 400,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Estimate, from the raw frames alone (no ground truth), simulation settings that look like STACK.

    Camera base level, gain and readout noise (photon transfer of background
    pixels), PSF width and photons per emitter (fits of isolated spots), background
    and emitter density, each with its uncertainty, written as a simulation config
    with comments for `microsr smlm train --simulation OUTPUT`.
    """
    from microsr.io import check_output
    from microsr.smlm.reconstruct import read_stack
    from microsr.simulate.calibrate import calibrate as run_calibration
    from microsr.simulate.calibrate import write_simulation

    if camera not in ("auto", "emccd", "scmos"):
        raise InputError(f"--camera {camera!r}: choose auto, emccd or scmos.")
    if output.suffix.lower() not in (".yaml", ".yml"):
        raise InputError(f"--output {output}: give a .yaml file name, e.g. simulation.yaml.")
    check_output(output, overwrite, inputs=[stack])
    image = read_stack(stack, pixel_size=pixel_size)
    if image.pixel_size is None:
        raise InputError(f"{stack}: no pixel size in the file; give --pixel-size (nm).")
    result = run_calibration(image.data, image.pixel_size, camera=camera, max_frames=max_frames)
    write_simulation(result, output, source=str(stack), overwrite=overwrite)
    table = Table(title=f"{stack}: {result.frames} frames, {result.spots} isolated spots")
    for column in ("setting", "estimate ± standard error", "from"):
        table.add_column(column)
    for row in result.rows():
        table.add_row(*row)
    out.print(table)
    for note in result.warnings:
        out.print(f"[yellow]warning:[/yellow] {note}")
    out.print(f"wrote {output}; train a model for it: microsr smlm train --simulation {output} -o MODEL")


@app.command()
def reconstruct(
    stack: Annotated[Path, typer.Argument(help="Stack of frames (3-D TIFF, ...) or a folder of single-frame TIFFs.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to create.")],
    model: Annotated[
        Path | None, typer.Option(help="Model folder or .safetensors from `microsr smlm train`; default: shipped.")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Minimum peak, emitters per fine pixel; default: the model's calibrated one.")
    ] = None,
    pixel_size: Annotated[
        float | None, typer.Option("--pixel-size", help="Camera pixel size in nm, overriding the file's.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Reconstruct even if the pixel size differs from the model's.")] = False,
    check: Annotated[
        bool, typer.Option(help="First calibrate the stack quickly and warn if it is unlike the model's training frames.")
    ] = True,
    batch_size: Annotated[int, typer.Option(min=1, help="Frames per forward pass.")] = 16,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, mps.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32, bf16 or fp16.")] = "auto",
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for PyTorch.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Reconstruct an SMLM STACK into OUTPUT/reconstruction.tif and OUTPUT/localizations.csv.

    Each frame goes through the model; the image is the sum of the per-frame outputs
    (float32, emitters per fine pixel, pixel size in its metadata), and the localizations
    are the outputs' local maxima above the threshold, refined by weighted centroid
    (ThunderSTORM CSV; intensity = the output summed around the peak, ~1 per emitter).
    """
    from microsr.smlm.reconstruct import IMAGE_NAME, LOCALIZATIONS_NAME, reconstruct_file
    from microsr.runtime.device import pick_device

    set_threads(threads)
    result = reconstruct_file(
        stack, output, model, overwrite=overwrite, pixel_size=pixel_size, threshold=threshold, force=force,
        check=check, batch_size=batch_size, device=pick_device(device), precision=precision,
    )
    out.print(
        f"wrote {output / IMAGE_NAME} ({' × '.join(map(str, result.image.shape))}, {result.pixel_size:g} nm pixels) "
        f"and {output / LOCALIZATIONS_NAME} ({len(result.localizations)} localizations in {result.frames} frames, "
        f"threshold {result.threshold:g}) in {result.seconds:.1f} s"
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
    from microsr.smlm.table import read_localizations
    from microsr.smlm.score import score as score_localizations

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
