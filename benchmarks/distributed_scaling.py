"""Prediction on a Dask cluster against one process on the same cores, and the overhead per block.

On one machine, the same SIZE^2 LR OME-Zarr is restored x4 by the default architecture
(``resunet``, untrained weights: speed does not depend on them) into an OME-Zarr pyramid:

* ``single``: one process with all the cores' threads (``Restorer.predict_file``);
* ``dask``: a ``LocalCluster`` of as many worker processes as cores, one thread each
  (``predict_file(client=...)``), the default tile and block; efficiency = its speed-up
  over ``single`` divided by the ideal, which is 1 on the same cores;
* ``blocks_B``: the cluster with 128-pixel tiles (512 output pixels, so that blocks of
  512 to 4096 output pixels all hold whole tiles) for block sides B that give every
  worker at least two blocks. The overhead per
  block (scheduling, reading its context, writing and recording it) is the cluster's
  core-seconds less the compute's, spread over the blocks; the compute is one in-memory
  ``Predictor.predict`` of the same image and tiles on one thread (``compute_128``).

``sizing`` works out, from the default model's FLOPs per output pixel (measured by
``microsr.models.model_cost``) and the figures above, what restoring a petabyte-class
serial-section EM volume (a cubic millimetre at 8 x 8 x 30 nm, x4 in-plane) takes; its GPU
throughput is an estimate from a datasheet peak, labelled as such (no GPU here).

Cases run in turn ``--repeats`` times, so that contention on a shared machine hits them
alike; each one's fastest run counts. Cluster start-up is timed apart (``startup``).

Usage::

    python benchmarks/distributed_scaling.py              # writes results_distributed.json
    python benchmarks/distributed_scaling.py --tables     # only print the README tables
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from distributed import Client, LocalCluster

from figures import markdown_table, parser, publish
from microsr.checkpoint import save_checkpoint
from microsr.data.normalize import PercentileNormalizer
from microsr.io import Image, read_image, write_image
from microsr.models import create_model, model_cost, receptive_field
from microsr.predict.cluster import DEFAULT_BLOCK
from microsr.predict.restorer import load_model

RESULTS = Path(__file__).with_name("results_distributed.json")
BLOCKS = (512, 1024, 2048, 4096)
SMALL_TILE = 128
# The sizing's volume: a cubic millimetre of serial-section EM at 8 x 8 x 30 nm, restored x4 in-plane.
VOLUME_NM = 1e6
VOXEL_NM = (30.0, 8.0, 8.0)
SIZING_SCALE = 4
# A GPU's throughput is not measured here (no GPU): NVIDIA A100's datasheet bfloat16 dense peak, at
# the fraction of its bfloat16 peak the default model reached on a CPU with AMX (0.41-0.45, README "Speed").
GPU_PEAK_FLOPS = 312e12
GPU_FRACTION = 0.4
GPUS = (1, 64, 512)
STORE_BYTES_PER_S = 100e9  # an object store's aggregate write bandwidth, for the storage bound


def _model_folder(folder: Path, scale: int) -> Path:
    torch.manual_seed(0)
    model = create_model("resunet", scale=scale)
    (folder / "model").mkdir()
    save_checkpoint(folder / "model" / "best.safetensors", model, {
        "arch": model.arch, "scale": scale, "frames": 1, "frame_axis": "T", "receptive_field": receptive_field(model),
        "normalization": PercentileNormalizer().to_dict(), "input_pixel_size": 40.0, "output_pixel_size": 40.0 / scale})
    return folder / "model"


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def compute(size: int, repeats: int, precision: str) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    scale = 4
    # Enough blocks to keep every worker busy to the end: idle workers would count as overhead.
    blocks = [b for b in BLOCKS if math.ceil(size * scale / b) ** 2 >= 2 * cores]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        restorer = load_model(_model_folder(folder, scale))
        data = np.random.default_rng(0).integers(100, 4000, (size, size), dtype=np.uint16)
        write_image(folder / "in.ome.zarr", Image(data, "YX", pixel_size=40.0))
        image = read_image(folder / "in.ome.zarr")
        output = folder / "out.ome.zarr"
        start = time.perf_counter()
        cluster = LocalCluster(n_workers=cores, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        client.run(lambda: __import__("microsr.predict.cluster"))  # what a first block would import
        startup = time.perf_counter() - start
        seconds: dict[str, list[float]] = {}

        def case(name: str, run) -> None:
            seconds.setdefault(name, []).append(round(_timed(run), 3))

        try:
            for _ in range(repeats):
                torch.set_num_threads(cores)
                case("single", lambda: restorer.predict_file(image, output, overwrite=True, precision=precision))
                case("dask", lambda: restorer.predict_file(image, output, overwrite=True, precision=precision,
                                                           client=client, block=DEFAULT_BLOCK))
                for block in blocks:
                    case(f"blocks_{block}", lambda: restorer.predict_file(
                        image, output, overwrite=True, precision=precision, client=client, block=block,
                        tile=SMALL_TILE))
                torch.set_num_threads(1)
                predictor = restorer.predictor(tile=SMALL_TILE, precision=precision)
                case(f"compute_{SMALL_TILE}", lambda: predictor.predict(image))
        finally:
            client.close()
            cluster.close()
    flops = model_cost(create_model("resunet", scale=SIZING_SCALE), tile=256).flops_per_output_pixel
    return {"size": size, "scale": scale, "cores": cores, "precision": precision, "default_block": DEFAULT_BLOCK,
            "flops_per_output_pixel": flops,
            "small_tile": SMALL_TILE, "blocks": blocks, "startup_seconds": round(startup, 2), "seconds": seconds}


def readme_tables(results: dict[str, Any]) -> dict[str, str]:
    best = {name: min(times) for name, times in results["seconds"].items()}
    side = results["size"] * results["scale"]
    megapixels = side * side / 1e6
    cores = results["cores"]
    scaling = markdown_table(
        ["run", "processes x threads", "seconds", "output MP/s", "efficiency"],
        [["one process", f"1 x {cores}", f"{best['single']:.2f}", f"{megapixels / best['single']:.2f}", "1"],
         [f"Dask, blocks of {results['default_block']}", f"{cores} x 1", f"{best['dask']:.2f}",
          f"{megapixels / best['dask']:.2f}", f"{best['single'] / best['dask']:.2f}"]],
        "llrrr",
    )
    compute_core_seconds = best[f"compute_{results['small_tile']}"]
    counts = {block: math.ceil(side / block) ** 2 for block in results["blocks"]}
    core_seconds = {block: best[f"blocks_{block}"] * cores for block in results["blocks"]}
    rows = [[block, counts[block], f"{best[f'blocks_{block}']:.2f}", f"{megapixels / best[f'blocks_{block}']:.2f}",
             f"{core_seconds[block]:.1f}"] for block in results["blocks"]]
    # Core-seconds = per-pixel work + blocks x per-block overhead: the slope between the most and the
    # fewest blocks is the latter; what the fewest blocks cost beyond one thread's in-memory compute, the former's excess.
    many, few = results["blocks"][0], results["blocks"][-1]
    per_block = (core_seconds[many] - core_seconds[few]) / (counts[many] - counts[few])
    excess = core_seconds[few] - per_block * counts[few] - compute_core_seconds
    rows.append(["one thread, in memory", "–", f"{compute_core_seconds:.2f}", f"{megapixels / compute_core_seconds:.2f}",
                 f"{compute_core_seconds:.1f}"])
    overhead = markdown_table(["block side (output px)", "blocks", "seconds", "output MP/s", "core-seconds"],
                              rows, "rrrrr")
    fit = markdown_table(["overhead per block (slope of core-seconds over blocks)",
                          "core-seconds beyond one thread's in-memory compute, besides it"],
                         [[f"{per_block * 1000:.0f} ms", f"{excess:.1f} ({excess / compute_core_seconds:.0%})"]], "rr")
    return {"scaling": scaling, "overhead": overhead, "overhead_fit": fit, "sizing": _sizing(results, megapixels / best["dask"])}


def _sizing(results: dict[str, Any], cluster_mps: float) -> str:
    """The petabyte-class EM volume: sizes, time on N GPUs, and the storage bandwidth that bounds it."""
    z, y, x = (VOLUME_NM / v for v in VOXEL_NM)
    voxels = z * y * x
    out_voxels = voxels * SIZING_SCALE**2
    gpu_pixels_per_s = GPU_PEAK_FLOPS * GPU_FRACTION / results["flops_per_output_pixel"]
    cpu_pixels_per_s = cluster_mps * 1e6 / results["cores"]
    rows = [
        ["input: 1 mm³ at 8 × 8 × 30 nm", f"{voxels:.3g} voxels = {voxels / 1e12:.0f} TB as uint8"],
        [f"output: x{SIZING_SCALE} in-plane (2 nm pixels)",
         f"{out_voxels:.3g} voxels = {out_voxels * 4 / 1e15:.1f} PB as float32 (microsr's output), "
         f"{out_voxels / 1e15:.1f} PB as uint8"],
        ["default model, FLOPs per output pixel", f"{results['flops_per_output_pixel'] / 1e3:.1f} k (measured)"],
        ["one CPU core here, on the Dask cluster (measured above, float32)",
         f"{cpu_pixels_per_s / 1e6:.2f} MP/s: {out_voxels / cpu_pixels_per_s / 3.156e7:.0f} core-years"],
        [f"one A100 (estimate: {GPU_PEAK_FLOPS / 1e12:.0f} TFLOP/s bf16 datasheet peak × {GPU_FRACTION})",
         f"{gpu_pixels_per_s / 1e6:,.0f} MP/s"],
    ]
    for n in GPUS:
        seconds = out_voxels / (n * gpu_pixels_per_s)
        rows.append([f"{n} GPU{'s' if n > 1 else ''}: compute time; output written at",
                     f"{seconds / 86400:.2f} days; {n * gpu_pixels_per_s * 4 / 1e9:,.0f} GB/s float32, "
                     f"{n * gpu_pixels_per_s / 1e9:,.0f} GB/s uint8"])
    rows.append([f"an object store writing {STORE_BYTES_PER_S / 1e9:.0f} GB/s",
                 f"{out_voxels * 4 / STORE_BYTES_PER_S / 86400:.1f} days for float32, "
                 f"{out_voxels / STORE_BYTES_PER_S / 86400:.1f} for uint8, whatever the number of GPUs; it keeps "
                 f"{STORE_BYTES_PER_S / (gpu_pixels_per_s * 4):.0f} (float32) or "
                 f"{STORE_BYTES_PER_S / gpu_pixels_per_s:.0f} (uint8) GPUs busy"])
    return markdown_table(["quantity", "value"], rows, "ll")


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--size", type=int, default=1024, help="LR side of the input")
    cli.add_argument("--repeats", type=int, default=2)
    cli.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    args = cli.parse_args()
    publish(RESULTS, None if args.tables else lambda: compute(args.size, args.repeats, args.precision),
            readme_tables, __file__)


if __name__ == "__main__":
    main()
