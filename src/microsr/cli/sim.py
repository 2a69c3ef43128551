"""``microsr sim`` and ``microsr srrf``: structured illumination and radial-fluctuation super-resolution.

A thin shell over :mod:`microsr.simulate.sim`, :mod:`microsr.sim.wiener` and
:mod:`microsr.simulate.srrf`, mounted by :mod:`microsr.cli` as the ``sim`` and ``srrf``
subcommand groups. User errors are :class:`~microsr.errors.InputError`, which
``microsr``'s entry point prints as one line (exit code 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from microsr.cli.options import PrecisionOption
from microsr.errors import InputError

sim_app = typer.Typer(
    name="sim",
    help="Structured illumination microscopy: simulate raw frames with targets, reconstruct, apply and "
    "evaluate models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
srrf_app = typer.Typer(
    name="srrf",
    help="Super-resolution radial fluctuations: eSRRF training targets from long stacks (NanoPyx).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

out = Console(highlight=False)

RangeOption = tuple[float, float] | None
AnglesOption = Annotated[int, typer.Option(min=1, help="Pattern orientations.")]
PhasesOption = Annotated[int, typer.Option(min=3, help="Phase steps per orientation (at least 3).")]
PixelSizeOption = Annotated[
    float | None, typer.Option("--pixel-size", help="Raw pixel size in nm; overrides the file's metadata.")
]
OverwriteOption = Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")]
NominalPeriodOption = Annotated[float | None, typer.Option(
    "--period", help="The instrument's nominal pattern period in nm (two-beam SIM: excitation wavelength / "
    "(2 NA_exc)), searched within ±5 %; needed at low signal and when the pattern lies beyond the emission cut-off "
    "(TIRF-SIM). Default: search the emission pass band.")]


@sim_app.command()
def simulate(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder to create: raw/, target/, structure/ (one TIFF per field) "
                           "and fields.json.")
    ],
    preset: Annotated[str, typer.Option(help="Starting settings: default, dlsim or dlsim-low.")] = "default",
    fields: Annotated[int, typer.Option(min=1, help="Number of fields of view.")] = 16,
    size: Annotated[int | None, typer.Option(help="Raw frame side in pixels.")] = None,
    pixel_size: Annotated[float | None, typer.Option("--pixel-size", help="Camera pixel size in nm.")] = None,
    na: Annotated[float | None, typer.Option(help="Numerical aperture.")] = None,
    wavelength: Annotated[float | None, typer.Option(help="Emission wavelength in nm.")] = None,
    otf: Annotated[Path | None, typer.Option(
        help="Blur with a measured radial OTF instead of the ideal one of --na/--wavelength: .mrc (OMX/Priism) "
             "or CSV (cycles/µm, value).")] = None,
    angles: Annotated[int | None, typer.Option(help="Pattern orientations.")] = None,
    phases: Annotated[int | None, typer.Option(help="Phase steps per orientation.")] = None,
    period: Annotated[RangeOption, typer.Option(help="Pattern period range in nm: LOW HIGH.")] = None,
    modulation: Annotated[RangeOption, typer.Option(help="Modulation depth range: LOW HIGH.")] = None,
    photons: Annotated[
        RangeOption, typer.Option(help="Photons per pixel and frame at the bright structure: LOW HIGH (low light: "
                                  "e.g. 3 12).")
    ] = None,
    background: Annotated[RangeOption, typer.Option(help="Background photons per pixel and frame: LOW HIGH.")] = None,
    read_noise: Annotated[float | None, typer.Option(help="Read noise, electrons rms.")] = None,
    density: Annotated[RangeOption, typer.Option(help="Filament length per area, µm/µm²: LOW HIGH.")] = None,
    roundtrip: Annotated[
        int | None, typer.Option(min=1, help="Upsample the raw frames bicubically by this factor and bin them back, "
                                 "as pre-upsampled data become under `sim evaluate --bin` (dlsim-low: 2).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same fields.")] = 0,
    overwrite: OverwriteOption = False,
) -> None:
    """Simulate raw 2D-SIM frames with their SIM-resolution targets and ground-truth structures.

    Each field is `raw/NNNN.tif` (frames along C, angle-major, uint16, camera pixel size),
    `target/NNNN.tif` (the structure through the extended SIM OTF, float32, half the pixel
    size) and `structure/NNNN.tif`; `fields.json` holds the settings and each field's drawn
    pattern. Train on them with `data: {lr: OUTPUT/raw, hr: OUTPUT/target, frame_axis: C,
    channels: [...]}` and `scale: 2`.
    """
    from microsr.simulate.sim import preset as named_preset
    from microsr.simulate.sim import write_fields

    changes = {
        "size": size, "pixel_size": pixel_size, "na": na, "wavelength": wavelength, "angles": angles,
        "phases": phases, "period": period, "modulation": modulation, "photons": photons,
        "background": background, "read_noise": read_noise, "density": density, "roundtrip": roundtrip,
        "otf": None if otf is None else str(otf.resolve()),
    }
    config = named_preset(preset).replace(**{k: v for k, v in changes.items() if v is not None})
    write_fields(output, config, fields, seed, overwrite=overwrite)
    out.print(config.describe())
    out.print(
        f"wrote {fields} fields to {output}: {config.frames} × {config.size} × {config.size} raw frames at "
        f"{config.pixel_size:g} nm, targets {2 * config.size} × {2 * config.size} at {config.pixel_size / 2:g} nm"
    )


@sim_app.command()
def reconstruct(
    raw: Annotated[Path, typer.Argument(help="Raw frames: (frames, Y, X) or (T, frames, Y, X); TIFF, Zarr or MRC.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output image (float32, half the pixel size).")],
    angles: AnglesOption = 3,
    phases: PhasesOption = 3,
    na: Annotated[float | None, typer.Option(help="Numerical aperture of the ideal OTF.")] = None,
    wavelength: Annotated[float | None, typer.Option(help="Emission wavelength in nm of the ideal OTF.")] = None,
    otf: Annotated[
        Path | None, typer.Option(help="Measured radial OTF instead: .mrc (OMX/Priism) or CSV (cycles/µm, value).")
    ] = None,
    pixel_size: PixelSizeOption = None,
    wiener: Annotated[float, typer.Option(help="Wiener parameter: larger is smoother, smaller sharper.")] = 0.05,
    period: NominalPeriodOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Classical 2D Wiener SIM reconstruction, pattern estimated from the data by cross-correlation."""
    from microsr.sim.wiener import reconstruct_file

    found = reconstruct_file(raw, output, angles, phases, na=na, wavelength=wavelength, otf=otf,
                             pixel_size=pixel_size, wiener=wiener, period=period, overwrite=overwrite)
    table = Table(title=f"pattern of {raw}" + (" (first acquisition)" if len(found) > 1 else ""))
    for column in ("angle", "direction", "period (px)", "modulation"):
        table.add_column(column)
    first = found[0]
    for a, (k, m) in enumerate(zip(first.k, first.modulation)):
        table.add_row(str(a), f"{np.degrees(np.arctan2(k[0], k[1])) % 180:.1f}°", f"{1 / np.hypot(*k):.3f}",
                      f"{m:.2f}")
    out.print(table)
    out.print(f"wrote {output}")


@sim_app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="Model folder trained with data.channels, or its .safetensors.")],
    raw: Annotated[Path, typer.Argument(help="Raw frames: (frames, Y, X) or (T, frames, Y, X); TIFF, Zarr or MRC.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .ome.zarr/.zarr or .tif (float32).")],
    tile: Annotated[int, typer.Option(min=1, help="Input tile side in pixels.")] = 512,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, mps.")] = "auto",
    precision: PrecisionOption = "auto",
    pixel_size: PixelSizeOption = None,
    force: Annotated[
        bool, typer.Option(help="Predict even if the frames' pixel size differs from the model's by over 10 %.")
    ] = False,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted prediction into OUTPUT.")] = False,
    overwrite: OverwriteOption = False,
) -> None:
    """Apply a multi-frame SIM (or SRRF) model to every acquisition of RAW, tile by tile.

    The same engine as `microsr predict` (which takes these models too), with MRC input. A model
    trained on some planes of its acquisitions (`data.lr_planes`, e.g. the middle of T-SIM's 3 time
    points) takes the same planes of RAW when RAW has those axes.
    """
    from microsr.io import check_image_output
    from microsr.predict.restorer import load_model
    from microsr.runtime.device import pick_device
    from microsr.sim.wiener import read_raw

    check_image_output(output, overwrite, inputs=[raw, model], dtype=np.float32)
    restorer = load_model(model)
    if restorer.description.layout != "channels":
        raise InputError(f"{model}: this model was not trained on frames as channels (data.channels); "
                         "use `microsr predict` for it.")
    written = restorer.predict_file(read_raw(raw, pixel_size=pixel_size), output, force=force, overwrite=overwrite,
                                    resume=resume, device=pick_device(device), tile=tile, precision=precision,
                                    progress=True)
    out.print(f"wrote {written}")


@sim_app.command()
def evaluate(
    reference: Annotated[Path, typer.Argument(help="Reference SIM reconstruction (the target).")],
    frames: Annotated[
        list[Path], typer.Argument(help="Raw frames: one stack, or one file per frame in acquisition order.")
    ],
    model: Annotated[
        list[Path] | None, typer.Option(help="Trained multi-frame model(s) to compare (repeatable).")
    ] = None,
    angles: AnglesOption = 3,
    phases: PhasesOption = 3,
    na: Annotated[float, typer.Option(help="Numerical aperture of the OTF model.")] = 1.2,
    wavelength: Annotated[float, typer.Option(help="Emission wavelength in nm.")] = 525.0,
    pixel_size: PixelSizeOption = None,
    binning: Annotated[
        int, typer.Option("--bin", help="Bin the frames by this factor first (DL-SIM's frames are 2x upsampled).")
    ] = 1,
    wiener: Annotated[float, typer.Option(help="Wiener parameter of the classical reconstruction.")] = 0.05,
    period: NominalPeriodOption = None,
) -> None:
    """Compare wide-field (bicubic), classical SIM and models with a reference: PSNR, SSIM, NRMSE, resolution.

    Scores as everywhere in microsr: the reference's 0.1/99.9 percentiles map to 0/1 and each result
    is fitted to it by a least-squares gain and offset before PSNR (data range 1), SSIM and NRMSE;
    wide-field is the frames' mean upscaled bicubically; the resolution is the decorrelation
    analysis of each image alone (nm).
    """
    from microsr.evaluate.sim import compare_sim
    from microsr.sim.wiener import stack_frames

    raw, raw_pixel = stack_frames(frames, binning=binning, pixel_size=pixel_size)
    rows = compare_sim(raw, reference, angles, phases, pixel_size=raw_pixel, na=na, wavelength=wavelength,
                       models=model or [], wiener=wiener, period=period)
    table = Table(title=f"{reference.name} vs {len(raw)} raw frames ({raw_pixel:g} nm pixels)")
    for column in ("method", "PSNR (dB)", "SSIM", "NRMSE", "resolution (nm)"):
        table.add_column(column)
    for row in rows:
        resolution = "–" if row["resolution"] is None else f"{row['resolution']:.0f}"
        table.add_row(row["method"], f"{row['psnr']:.2f}", f"{row['ssim']:.3f}", f"{row['nrmse']:.3f}", resolution)
    out.print(table)


@srrf_app.command()
def targets(
    stack: Annotated[Path, typer.Argument(help="Long stack of wide-field frames (T, Y, X).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to create: inputs/ and targets/.")],
    frames_per_target: Annotated[int, typer.Option(min=2, help="Frames analysed for each eSRRF target.")] = 100,
    input_frames: Annotated[int, typer.Option(min=1, help="Frames of each block kept as model input.")] = 5,
    magnification: Annotated[int, typer.Option(min=1, help="eSRRF magnification (the model's scale).")] = 2,
    radius: Annotated[float, typer.Option(help="eSRRF ring radius, pixels.")] = 1.5,
    sensitivity: Annotated[float, typer.Option(help="eSRRF sensitivity.")] = 1.0,
    run_type: Annotated[
        str, typer.Option(help="NanoPyx run type: Threaded (CPU threads), Threaded_static, Unthreaded, ...")
    ] = "Threaded",
    cache: Annotated[
        Path | None, typer.Option(help="Cache folder for eSRRF results (default: the user cache).")
    ] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """eSRRF targets from blocks of a long stack, with the first frames of each block as model inputs.

    Writes `inputs/NNNN.tif` (INPUT_FRAMES frames along C) and `targets/NNNN.tif` (eSRRF of the
    block's FRAMES_PER_TARGET frames, MAGNIFICATION × larger). eSRRF is slow, so each result is
    cached by the block's content and the settings; a rerun reuses it. Train a few-frame model on
    them with `data: {lr: OUTPUT/inputs, hr: OUTPUT/targets, frame_axis: C, channels: [0, 1, 2, 3, 4]}`
    and `scale: MAGNIFICATION`.
    """
    from microsr.simulate.srrf import ESRRFSettings, srrf_targets

    settings = ESRRFSettings(magnification=magnification, radius=radius, sensitivity=sensitivity,
                             run_type=run_type)
    result = srrf_targets(stack, output, settings, frames_per_target=frames_per_target, input_frames=input_frames,
                          cache=cache, overwrite=overwrite)
    out.print(
        f"wrote {result.pairs} input/target pairs to {output} ({result.computed} eSRRF computed, "
        f"{result.pairs - result.computed} from the cache)"
    )
