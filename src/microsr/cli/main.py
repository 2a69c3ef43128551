"""The ``microsr`` command: a thin shell over the Python API.

Every subcommand parses its options, calls the library, and prints a short
report. User errors (:class:`~microsr.errors.InputError`) are printed as one
readable line without a traceback and exit with code 2.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from microsr import __version__
from microsr.cli import sim as cli_sim
from microsr.cli import smlm as cli_smlm
from microsr.cli.options import AxesOption, PixelSizeOption, PrecisionOption, ThreadsOption, err, out, set_threads
from microsr.errors import InputError

app = typer.Typer(
    name="microsr",
    help="Deep-learning super-resolution and restoration for microscopy images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

app.add_typer(cli_smlm.app, name="smlm")
app.add_typer(cli_sim.sim_app, name="sim")
app.add_typer(cli_sim.srrf_app, name="srrf")

def _version(value: bool) -> None:
    if value:
        out.print(f"microsr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Deep-learning super-resolution and restoration for microscopy images."""


def _format_nm(value: float | None) -> str:
    return "unknown" if value is None else f"{value:g} nm"


@app.command()
def info(image: Path, axes: AxesOption = None, pixel_size: PixelSizeOption = None) -> None:
    """Print the shape, dtype, axes, pixel size and value range of IMAGE.

    The value range is computed chunk by chunk, so files larger than memory work.
    """
    from microsr.io import read_image

    img = read_image(image, axes=axes, pixel_size=pixel_size)
    with err.status(f"Reading {image.name} for its value range…"):
        low, high, n_bad = _value_range(img.data)
    table = Table(title=str(image), show_header=False)
    table.add_row("shape", " × ".join(str(n) for n in img.shape))
    table.add_row("axes", img.axes)
    table.add_row("dtype", str(img.dtype))
    table.add_row("pixel size (YX)", _format_nm(img.pixel_size))
    if "Z" in img.axes:
        table.add_row("z spacing", _format_nm(img.z_spacing))
    table.add_row("value range", f"{low:g} … {high:g}")
    table.add_row("chunks", " × ".join(str(c[0]) for c in img.data.chunks))
    if n_bad:
        table.add_row("[red]NaN / Inf[/red]", f"[red]{n_bad} pixels[/red]")
    out.print(table)


def _value_range(data) -> tuple[float, float, int]:
    """Finite minimum and maximum and the number of NaN/Inf pixels, in one pass over the data."""
    import dask.array as da

    if not np.issubdtype(data.dtype, np.floating):
        low, high = da.compute(data.min(), data.max())
        return float(low), float(high), 0
    finite = da.isfinite(data)
    low, high, n_finite = da.compute(
        da.where(finite, data, np.inf).min(), da.where(finite, data, -np.inf).max(), finite.sum()
    )
    return float(low), float(high), int(data.size - n_finite)


def _parse_range(text: str | None, option: str) -> float | tuple[float, float] | None:
    """Parse ``"5"`` or ``"5,50"`` into a number or a (low, high) range; never evaluates code."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2):
        raise InputError(f"{option} {text!r}: expected a number or a range LOW,HIGH such as 10,100.")
    return values[0] if len(values) == 1 else (values[0], values[1])


def _override(degradation, kind: str, parameter: str, value, option: str):
    """Set `parameter` of every step of type `kind`, or say that the pipeline has no such step."""
    from microsr.degrade import Degradation

    if value is None:
        return degradation
    spec = degradation.to_dict()
    steps = [s for s in spec["steps"] if s["type"] == kind]
    if not steps:
        raise InputError(
            f"{option}: this degradation has no {kind} step. "
            f"Choose a preset that has one or describe the pipeline in a YAML file (--degradation)."
        )
    for step in steps:
        step[parameter] = list(value) if isinstance(value, tuple) else value
    return Degradation.from_dict(spec)


@app.command()
def degrade(
    image: Path,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output file (.tif, .ome.tif, .zarr or .png).")],
    noise: Annotated[
        str,
        typer.Option(
            "--noise",
            "--preset",
            help="Degradation preset: poisson, gaussian, pssr, poisson-noise-first or clean (no noise).",
        ),
    ] = "poisson",
    degradation: Annotated[
        Path | None, typer.Option(help="A degradation YAML file; replaces --noise.")
    ] = None,
    scale: Annotated[int, typer.Option(min=1, help="Integer downsampling factor.")] = 4,
    photons: Annotated[
        str | None, typer.Option(help="Photon count at the bright level for Poisson noise: N or LOW,HIGH.")
    ] = None,
    read_noise: Annotated[
        str | None, typer.Option(help="Std of additive Gaussian noise in normalised units: S or LOW,HIGH.")
    ] = None,
    blur: Annotated[str | None, typer.Option(help="Gaussian blur sigma in input pixels: S or LOW,HIGH.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same output.")] = 0,
    save_config: Annotated[
        Path | None, typer.Option(help="Also write the degradation as YAML to this file.")
    ] = None,
    axes: AxesOption = None,
    pixel_size: PixelSizeOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Degrade IMAGE as training would (blur → downsample → noise) to preview the result.

    The image is normalised by its 0.1/99.9 percentiles, degraded, and mapped back to
    its original intensity range and dtype; the output's pixel size is the input's
    times the scale.
    """
    from microsr.degrade import load_degradation
    from microsr.io import check_image_output, check_output, read_image

    hr = read_image(image, axes=axes, pixel_size=pixel_size)  # lazy: the header only
    check_image_output(output, overwrite, [image], dtype=hr.dtype)
    if save_config is not None:
        _check_yaml_name(save_config)
        check_output(save_config, overwrite, [image, output, *([degradation] if degradation else [])])
    pipeline = load_degradation(degradation if degradation is not None else noise, scale=scale)
    pipeline = _override(pipeline, "poisson", "photons", _parse_range(photons, "--photons"), "--photons")
    pipeline = _override(pipeline, "gaussian", "sigma", _parse_range(read_noise, "--read-noise"), "--read-noise")
    pipeline = _override(pipeline, "blur", "sigma", _parse_range(blur, "--blur"), "--blur")
    from microsr.degrade import degrade_image
    from microsr.io import atomic_output, write_image

    lr = degrade_image(hr, pipeline, seed=seed)
    write_image(output, lr, overwrite=overwrite, inputs=[image])
    if save_config is not None:
        with atomic_output(save_config, overwrite=overwrite, inputs=[image]) as tmp:
            tmp.write_text(pipeline.to_yaml())
    out.print(pipeline.describe())
    out.print(
        f"{image} {' × '.join(map(str, hr.shape))} at {_format_nm(hr.pixel_size)} → "
        f"{output} {' × '.join(map(str, lr.shape))} at {_format_nm(lr.pixel_size)}"
    )


@app.command("train")
def train_command(
    config: Annotated[Path | None, typer.Argument(help="Run configuration (YAML); flags override its values.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")] = Path("model"),
    hr: Annotated[list[Path] | None, typer.Option(help="High-resolution image file or folder (repeatable).")] = None,
    lr: Annotated[
        list[Path] | None,
        typer.Option(help="Real low-resolution counterparts of --hr (repeatable), matched by file name without "
                     "extension; default: degrade --hr."),
    ] = None,
    scale: Annotated[int | None, typer.Option(help="Upsampling factor: 1, 2, 4 or 8.")] = None,
    degradation: Annotated[str | None, typer.Option(help="Degradation preset name or YAML file.")] = None,
    model: Annotated[str | None, typer.Option(help="Registered model name, e.g. resunet or unet.")] = None,
    frames: Annotated[int | None, typer.Option(help="Adjacent frames as input (odd).")] = None,
    tile: Annotated[int | None, typer.Option(help="HR tile side in pixels.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Tiles per step.")] = None,
    minutes: Annotated[float | None, typer.Option(help="Time budget in minutes (default 10).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Train for this many epochs instead of a time budget.")] = None,
    steps: Annotated[int | None, typer.Option(help="Train for this many steps instead of a time budget.")] = None,
    checkpoint_minutes: Annotated[
        float | None, typer.Option(help="Also save a resumable checkpoint this often within an epoch (default 5).")
    ] = None,
    pixel_size: PixelSizeOption = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:1, mps.")] = None,
    workers: Annotated[int | None, typer.Option(help="Data-loading processes.")] = None,
    precision: PrecisionOption = None,
    threads: ThreadsOption = None,
    resume: Annotated[bool, typer.Option(help="Continue the interrupted run in OUTPUT.")] = False,
) -> None:
    """Train a super-resolution model from high-resolution images (degraded on the fly) or real pairs.

    Writes OUTPUT/best.safetensors, last.safetensors, config.json and history.json.
    Interrupt with Ctrl-C at any time and continue with --resume. On several processes or GPUs:
    `torchrun --nproc-per-node N -m microsr train ...` (--batch-size is then per process).
    """
    from microsr.config import with_overrides
    from microsr.runtime.distributed import ranks
    from microsr.training import train

    if config is None and not hr:
        raise InputError("no training images: give --hr IMAGE_OR_FOLDER or a configuration file with data.hr.")
    run = with_overrides(config, {
        "data.hr": hr, "data.lr": lr, "data.frames": frames, "data.tile": tile, "data.batch_size": batch_size,
        "data.pixel_size": pixel_size, "data.num_workers": workers, "scale": scale, "degradation": degradation,
        "model.name": model, "train.minutes": minutes, "train.epochs": epochs, "train.steps": steps,
        "train.seed": seed, "train.device": device, "train.precision": precision,
        "train.checkpoint_minutes": checkpoint_minutes,
    })
    set_threads(threads)
    record = train(run, output, resume=resume)
    if ranks().main:  # under torchrun, rank 0 validated and reports
        out.print(
            f"[bold]{output}[/bold]: val PSNR {record['val_psnr']:.2f} dB (bicubic {record['bicubic_psnr']:.2f} dB) "
            f"after {record['epoch']} epochs, {record['step']} steps."
        )


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="Model folder written by `microsr train`, or its .safetensors file.")],
    image: Annotated[Path, typer.Argument(help="Input image (TIFF, OME-Zarr, ...), any size.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .ome.zarr/.zarr or .tif.")],
    tile: Annotated[int, typer.Option(min=1, help="Input tile side in pixels.")] = 512,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Tiles per forward pass (default: 1 on a CPU, where it is as fast and "
                                 "needs least memory; on a GPU as many as fit in half its free memory).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, mps.")] = "auto",
    precision: PrecisionOption = "auto",
    threads: ThreadsOption = None,
    axes: AxesOption = None,
    pixel_size: PixelSizeOption = None,
    rescale: Annotated[bool, typer.Option(help="Resample the input to the model's pixel size first.")] = False,
    force: Annotated[bool, typer.Option(help="Predict even if the pixel size differs from the model's.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted prediction into OUTPUT.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
    consistency: Annotated[
        bool,
        typer.Option(help="Also write OUTPUT's consistency map (NAME.consistency.EXT): the prediction "
                     "degraded back and compared with the input; bright = not supported by the input."),
    ] = False,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Predict on a local Dask cluster of this many worker processes "
                                 "(OUTPUT must be .ome.zarr).")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Predict on the running Dask cluster at this address, e.g. tcp://HOST:8786 "
                                 "(OUTPUT must be .ome.zarr, on storage the workers share).")
    ] = None,
    block: Annotated[
        int, typer.Option(min=1, help="With --workers/--scheduler: output pixels per block side (rounded to whole "
                          "chunks and tiles).")
    ] = 2048,
) -> None:
    """Restore IMAGE with a trained model, tile by tile, into OUTPUT (pixel size = input's / scale).

    2D images, time-lapses (multi-frame models slide over T) and Z-stacks (slice by slice) all work,
    and so do frames-as-channels models (SIM, SRRF: one output plane per acquisition of raw frames);
    memory stays constant however large the image is. With --workers or --scheduler, the blocks of
    the output are computed on a Dask cluster, each worker writing its own chunks.
    """
    from microsr.evaluate.consistency import consistency_file, consistency_path
    from microsr.io import check_image_output
    from microsr.predict.cluster import check_cluster, check_cluster_output, cluster
    from microsr.runtime.device import pick_device
    from microsr.share import load_model  # a microsr model, or a bioimage.io package (.zip)

    distributed = workers is not None or scheduler is not None
    if distributed:
        check_cluster(scheduler, workers)
        check_cluster_output(output, overwrite, [image, model])
    check_image_output(output, overwrite, [image, model], dtype=np.float32)
    if consistency:
        check_image_output(consistency_path(output), overwrite, [image, model], dtype=np.float32)
    set_threads(threads)
    restorer = load_model(model)
    as_input = {"axes": axes, "pixel_size": pixel_size, "rescale": rescale, "force": force}
    options = dict(overwrite=overwrite, resume=resume, device=pick_device(device), tile=tile, batch_size=batch_size,
                   precision=precision, progress=True, **as_input)
    if distributed:
        with cluster(scheduler, workers) as client:
            out.print(f"Dask dashboard: {client.dashboard_link}")
            written = restorer.predict_file(image, output, client=client, block=block, **options)
    else:
        written = restorer.predict_file(image, output, **options)
    out.print(f"wrote {written}")
    if consistency:
        target = consistency_path(written)
        with err.status("Degrading the prediction back for its consistency map…"):
            result = consistency_file(restorer, image, written, target, overwrite=overwrite, **as_input)
        out.print(f"wrote {target}: RSE {result.rse:.4g} (input units), RSP {result.rsp:.4f} (1 = consistent)")


@app.command()
def bench(
    model: Annotated[str, typer.Option(help="Registered model name.")] = "resunet",
    scale: Annotated[int, typer.Option(help="Upsampling factor.")] = 4,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, mps.")] = "auto",
    precision: PrecisionOption = "auto",
    threads: ThreadsOption = None,
    size: Annotated[int, typer.Option(min=16, help="Side of the LR image predicted, in pixels.")] = 1024,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the results to this JSON file (replaced if it exists).")
    ] = None,
) -> None:
    """Measure this machine: convolution peak (fp32, bf16) and a model's prediction and training speed.

    Takes about a minute on a laptop CPU. Throughput is in output megapixels per second; the
    fraction of peak is achieved FLOP/s over the convolution peak in the precision used.
    """
    import json

    from microsr.perf import run_bench
    from microsr.io import atomic_output, check_output
    from microsr.runtime.device import pick_device

    if json_path is not None:
        check_output(json_path, overwrite=True)
    set_threads(threads)
    with err.status("Benchmarking (about a minute)…"):
        result = run_bench(model, scale=scale, device=pick_device(device), precision=precision, size=size)
    table = Table(title=f"microsr bench: {model} x{scale} on {result.device}, {result.threads} threads")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("3x3 conv peak, fp32", f"{result.conv_peak_fp32:.3f} TFLOP/s")
    table.add_row("3x3 conv peak, bf16", f"{result.conv_peak_bf16:.3f} TFLOP/s")
    table.add_row("model FLOPs per output pixel", f"{result.flops_per_output_pixel / 1e3:.1f} k")
    for name, mps in result.predict_mps_by_precision.items():
        table.add_row(f"prediction ({name})", f"{mps:.2f} MP/s")
    table.add_row(f"  fraction of conv peak ({result.precision})", f"{result.predict_fraction_of_peak:.0%}")
    table.add_row("auto chose", f"{result.auto_precision}: {result.auto_vs_fastest:.0%} of the fastest")
    table.add_row("network alone, one tile with its context", f"{result.network_mps:.2f} MP/s")
    table.add_row("  fraction of conv peak (all FLOPs it computes)", f"{result.network_fraction_of_peak:.0%}")
    table.add_row("  tiling work (FLOPs per FLOP of the tile's core)", f"{result.tiling_work:.2f}×")
    table.add_row(f"training ({result.precision})", f"{result.train_mps:.3f} MP/s")
    table.add_row("  fraction of conv peak", f"{result.train_fraction_of_peak:.0%}")
    out.print(table)
    # Below the table, where a narrow terminal wraps it instead of cutting it off.
    out.print(f"auto: {result.auto_reason} ({'cached' if result.auto_cached else 'measured now'})")
    if json_path is not None:
        with atomic_output(json_path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
        out.print(f"wrote {json_path}")


@app.command()
def system(
    model: Annotated[str, typer.Option(help="Registered model name whose layers auto times.")] = "resunet",
    scale: Annotated[int, typer.Option(help="Upsampling factor.")] = 4,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, mps.")] = "auto",
    threads: ThreadsOption = None,
    remeasure: Annotated[bool, typer.Option(help="Time the precisions again and replace the cached choice.")] = False,
) -> None:
    """Show this machine as microsr sees it, and which precision `--precision auto` uses here and why.

    The choice is measured once per device, CPU, thread count, torch version and model (about
    a second) and cached in $MICROSR_CACHE (default ~/.cache/microsr).
    """
    import platform

    import torch

    from microsr.models import create_model
    from microsr.runtime.precision import cache_dir, hardware_name, measure_precision
    from microsr.runtime.device import pick_device

    set_threads(threads)
    target = pick_device(device)
    net = create_model(model, scale=scale).to(target, memory_format=torch.channels_last)
    with err.status("Timing fp32 and bf16 on the model's layers…"):
        choice = measure_precision(net, target, remeasure=remeasure)
    table = Table(title="microsr system", show_header=False)
    table.add_row("microsr / torch / python", f"{__version__} / {torch.__version__} / {platform.python_version()}")
    table.add_row("device", f"{target} ({hardware_name(target)}), {torch.get_num_threads()} threads")
    table.add_row(f"precision auto for {model} x{scale}", choice.precision)
    table.add_row("  measured", "earlier (cached)" if choice.cached else "now")
    out.print(table)
    # Below the table, where a narrow terminal wraps them instead of cutting them off.
    out.print(f"why: {choice.reason}")
    out.print(f"cache: {cache_dir()}")


@app.command("fit-degradation")
def fit_degradation_command(
    lr: Annotated[Path, typer.Option(help="Real low-resolution image file or folder.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Degradation YAML file to write.")],
    hr: Annotated[
        Path | None,
        typer.Option(help="High-resolution counterparts of --lr: a file or a folder, matched by file name without "
                          "extension. Without it only the noise is fitted, from --lr alone."),
    ] = None,
    scale: Annotated[
        int | None, typer.Option(min=1, help="Downsampling factor; with --hr inferred from the sizes, without it 4.")
    ] = None,
    trials: Annotated[int, typer.Option(help="Bayesian optimisation trials for the blur (with --hr).")] = 60,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same fit.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Fit the degradation to your microscope and write it as YAML for `microsr train --degradation`.

    With --hr (real LR/HR pairs of the same field of view): blur, Poisson and read noise and the
    intensity map, so that degraded HR images look like the real LR. With --lr alone: the noise
    model var = a·I + b of the LR images, after the default blur. Values come with uncertainties.
    """
    from microsr.fit import fit_degradation, fit_noise
    from microsr.io import atomic_output, check_output, find_images, pair_by_name, read_image

    _check_yaml_name(output)
    command = " ".join(
        ["microsr fit-degradation", f"--lr {lr}", *([f"--hr {hr}"] if hr else []),
         *([f"--scale {scale}"] if scale is not None else []),
         *([f"--trials {trials}"] if hr else []), f"--seed {seed}"]
    )
    if hr is None:
        files = find_images(lr)
        check_output(output, overwrite, files)
        with err.status("Fitting the noise model…"):
            fit = fit_noise([read_image(f) for f in files], scale=4 if scale is None else scale, seed=seed)
        title = f"noise of {len(files)} LR image(s)"
    else:
        pairs = pair_by_name(hr, lr)
        files = [path for pair in pairs for path in (pair.hr, pair.lr)]
        check_output(output, overwrite, files)
        fit = fit_degradation([read_image(pair.hr) for pair in pairs], [read_image(pair.lr) for pair in pairs],
                              scale=scale, trials=trials, seed=seed, progress=True)
        title = f"degradation of {len(pairs)} LR/HR pair(s)"
    with atomic_output(output, overwrite=overwrite, inputs=files) as tmp:
        tmp.write_text(fit.to_yaml(command), encoding="utf-8")
    table = Table(title=f"Fitted {title} (± jackknife standard error)")
    for column in ("parameter", "value", "unit"):
        table.add_column(column)
    for row in fit.summary():
        table.add_row(*row)
    out.print(table)
    out.print(fit.degradation.describe())
    out.print(f"wrote {output}")


def _check_yaml_name(path: Path) -> None:
    if not path.name.lower().endswith((".yaml", ".yml")):
        raise InputError(f"{path}: a degradation is written as YAML; name the output .yaml or .yml.")


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the demo's results.")] = Path(
        "demo_output"
    ),
    minutes: Annotated[float, typer.Option(help="Training time budget.")] = 2.0,
    steps: Annotated[
        int | None, typer.Option(min=1, help="Train this many steps instead of --minutes (the same on any machine).")
    ] = None,
) -> None:
    """Train on the shipped sample, restore an unseen image and compare with bicubic; results in OUTPUT."""
    from microsr.demo import run_demo

    run_demo(output, minutes=minutes, steps=steps, console=out)


@app.command("benchmark")
def benchmark_command(
    model: Annotated[Path, typer.Argument(help="Model folder written by `microsr train`, or its .safetensors file.")],
    hr: Annotated[Path, typer.Option(help="High-resolution (ground truth) image file or folder.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Report folder: metrics.csv, summary.json, report.html.")
    ],
    lr: Annotated[
        Path | None,
        typer.Option(help="Low-resolution image file or folder, matched to --hr by file name; "
                          "default: degrade --hr with the model's degradation (semi-synthetic)."),
    ] = None,
    vs: Annotated[list[Path] | None, typer.Option("--vs", help="Another model to compare (repeatable).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the degradation when --lr is not given.")] = 0,
    pixel_size: Annotated[
        float | None, typer.Option("--pixel-size", help="HR pixel size in nm; overrides the files' metadata.")
    ] = None,
    tile: Annotated[int, typer.Option(help="Input tile side in pixels.")] = 512,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, mps.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists and is not empty.")] = False,
) -> None:
    """Score MODEL on LR/HR pairs against bicubic and bilinear upscaling (and --vs models); write a report.

    Each pair is registered first (sub-pixel shift, reported); PSNR, SSIM, NRMSE and
    decorrelation resolution per image and method go to OUTPUT/metrics.csv, their means to
    summary.json, and crops, error maps and tables to the self-contained report.html.
    """
    from microsr.evaluate.benchmark import benchmark
    from microsr.runtime.device import pick_device

    result = benchmark(model, hr, lr, output, vs=vs or (), seed=seed, pixel_size=pixel_size,
                       device=pick_device(device), tile=tile, overwrite=overwrite, progress=True)
    unit = result.summary["resolution_unit"]
    kind = "semi-synthetic: LR made from HR by the model's degradation" if lr is None else "real pairs"
    images = result.summary["methods"]["microsr"]["images"]
    table = Table(title=f"mean over {images} image{'s' if images > 1 else ''} ({kind})")
    for column in ("method", "PSNR (dB)", "SSIM", "NRMSE", f"resolution ({unit})"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for name, scores in result.summary["methods"].items():
        resolution = "–" if scores["resolution"] is None else f"{scores['resolution']:.2f}"
        table.add_row(name, f"{scores['psnr']:.2f}", f"{scores['ssim']:.4f}", f"{scores['nrmse']:.4f}", resolution)
    out.print(table)
    out.print(f"wrote {output}/report.html, metrics.csv, summary.json")


@app.command("export")
def export_command(
    model: Annotated[Path, typer.Argument(help="Model folder, checkpoint, or shipped model name (smlm, sim_lowlight, ...).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The package to write, NAME.zip.")],
    name: Annotated[str | None, typer.Option(help="The model's name in the package (default: NAME).")] = None,
    author: Annotated[list[str] | None, typer.Option(help="Who trained it (repeat for several; default: you).")] = None,
    license: Annotated[str, typer.Option(help="SPDX license of the weights.")] = "CC-BY-4.0",  # noqa: A002
    weights: Annotated[
        list[str] | None, typer.Option(help="Weight formats: pytorch_state_dict (always), torchscript, onnx "
                                       "(repeat; default: all three).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Write MODEL as a bioimage.io model package that Fiji (deepImageJ), ilastik, QuPath, napari and BiaPy run.

    The package has PyTorch, TorchScript and ONNX weights, any input size the network takes, the halo
    of its receptive field, test images, a cover and a model card (README.md). Run it back with
    `microsr predict NAME.zip INPUT -o OUTPUT`.
    """
    from microsr.share import export

    with err.status(f"Exporting {model} (tracing and converting the network)…"):
        written = export(model, output, name=name, authors=author or None, license=license,
                         weight_formats=tuple(weights) if weights else ("pytorch_state_dict", "torchscript", "onnx"),
                         overwrite=overwrite)
    out.print(f"wrote {written}")


def _show_warning(message: Warning | str, *_: object, **__: object) -> None:
    """Warnings are advice to the user: one yellow line, without the source line that raised them."""
    err.print(f"[yellow]warning:[/yellow] {message}", soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Run the command line with `argv` (default: ``sys.argv[1:]``) and exit with its status.

    Exit codes: 0 success, 2 bad input or usage, 130 interrupted.

    Examples
    --------
    >>> main(["--version"])  # doctest: +SKIP
    microsr 0.1.0
    """
    warnings.showwarning = _show_warning
    try:
        app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # usage errors: bad option values, missing arguments
        message = exc.format_message().strip()
        if "\n" in message:  # `microsr` alone: the help
            exc.show()
            sys.exit(exc.exit_code)
        ctx = getattr(exc, "ctx", None)
        _fail(f"{message}" + (f" (see `{ctx.command_path} --help`)" if ctx is not None else ""))
    except (typer.Abort, KeyboardInterrupt):
        err.print("[yellow]interrupted[/yellow]")
        sys.exit(130)
    except InputError as exc:
        _fail(str(exc))
    except MemoryError:
        _fail("out of memory; close other programs, or use a smaller image, tile (--tile) or batch (--batch-size).")
    except OSError as exc:  # the disk or the system refused: full, read-only, permissions, ...
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}; check that the disk has room and that you may write there.")
    sys.exit(0)


def _fail(message: str) -> None:
    """Print ``message`` as the one line a failure shows (no traceback) and exit with status 2."""
    err.print(f"[red]error:[/red] {escape(' '.join(message.split()))}", soft_wrap=True)
    sys.exit(2)
