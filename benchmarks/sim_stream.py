"""Memory and speed of a frames-as-channels (SIM) model streamed through the prediction engine.

A (15, SIZE, SIZE) uint16 raw SIM stack (3 angles x 5 phases of a structure with Poisson
noise, generated chunk by chunk into an OME-Zarr so that the benchmark itself stays
bounded) is restored by the shipped 15-frame model ``sim_lowlight`` into a
(2 SIZE)^2 OME-Zarr with ``Restorer.predict_file`` (what ``microsr predict`` and
``microsr sim predict`` run). Each case runs in its own process, so its peak RSS
(VmHWM) is its own:

* ``generate_SIZE``: writing the input;
* ``stream_SIZE``: the prediction, file to file (target: peak RSS <= 1.5 GB at 4096);
* ``stream_1024`` / ``memory_1024``: a 1024^2 input streamed, and predicted in memory
  (``Restorer.predict``), in turn ``--repeats`` times: the cost of streaming, and the
  baseline the 4096 figure is compared with (throughput per output megapixel).

Usage::

    python benchmarks/sim_stream.py --size 4096 --json benchmarks/results_sim_stream.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dask.array as da
import numpy as np
import torch

from microsr.io import Image, read_image, write_image
from microsr.predict.restorer import load_model
from microsr.runtime.precision import hardware_name

FRAMES, ANGLES, PHASES = 15, 3, 5
PIXEL_SIZE = 60.0  # nm: the model's, so the pixel-size guard passes
CHUNK = 512


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) / 1024


def _raw_block(block_id: tuple[int, int, int], size: int) -> np.ndarray:
    """One (15, CHUNK, CHUNK) block of raw frames: filaments-like stripes under 3 x 5 patterns, Poisson noise."""
    _, by, bx = block_id
    y, x = np.mgrid[by * CHUNK : min((by + 1) * CHUNK, size), bx * CHUNK : min((bx + 1) * CHUNK, size)]
    structure = (1 + np.cos(0.05 * x + 0.3 * np.sin(0.01 * y))) * (1 + np.cos(0.043 * y + 0.2 * np.sin(0.013 * x)))
    rng = np.random.default_rng([by, bx])
    frames = []
    for angle in range(ANGLES):
        ky, kx = 0.9 * np.sin(np.pi * angle / ANGLES), 0.9 * np.cos(np.pi * angle / ANGLES)
        for phase in range(PHASES):
            pattern = 1 + 0.8 * np.cos(ky * y + kx * x + 2 * np.pi * phase / PHASES)
            frames.append(rng.poisson(20 + 50 * structure * pattern))
    return np.stack(frames).astype(np.uint16)


def _generate(path: Path, size: int) -> dict:
    side = (CHUNK,) * (size // CHUNK) + ((size % CHUNK,) if size % CHUNK else ())
    chunks = ((FRAMES,), side, side)
    data = da.map_blocks(lambda block_id=None: _raw_block(block_id, size), chunks=chunks, dtype=np.uint16)
    start = time.perf_counter()
    write_image(path, Image(data, "CYX", pixel_size=PIXEL_SIZE), levels=1)
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": _peak_rss_mb()}


def _predict(args: argparse.Namespace) -> dict:
    restorer = load_model(args.model)
    options = {"tile": args.tile, "precision": args.precision, "device": "cpu"}
    start = time.perf_counter()
    if args.case == "memory":
        restorer.predict(read_image(args.input), **options)
    else:
        restorer.predict_file(args.input, args.output, **options)
    seconds = time.perf_counter() - start
    megapixels = (2 * args.size) ** 2 / 1e6
    return {"seconds": seconds, "output_megapixels": megapixels, "megapixels_per_s": megapixels / seconds,
            "peak_rss_mb": _peak_rss_mb()}


def _child(case: str, args: argparse.Namespace, size: int, folder: Path) -> dict:
    output = folder / f"{case}_{size}.ome.zarr"
    command = [sys.executable, __file__, "--case", case, "--size", str(size), "--model", args.model,
               "--tile", str(args.tile), "--precision", args.precision,
               "--input", str(folder / f"raw_{size}.ome.zarr"), "--output", str(output)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{case} {size} failed:\n{result.stderr}")
    if case != "generate":
        shutil.rmtree(output, ignore_errors=True)  # the next repeat writes it again
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="LR side of the raw frames")
    parser.add_argument("--model", default="sim_lowlight", help="a 15-frame frames-as-channels model")
    parser.add_argument("--tile", type=int, default=512, help="LR tile core side")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--repeats", type=int, default=2, help="round-robins of the 1024^2 memory and stream cases")
    parser.add_argument("--limit-mb", type=float, default=1536.0, help="peak RSS target of the large case")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--case", choices=["generate", "stream", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case == "generate":
        print(json.dumps(_generate(args.input, args.size)))
        return
    if args.case:
        print(json.dumps(_predict(args)))
        return

    restorer = load_model(args.model)
    description = restorer.description
    if description.channels is None or len(description.channels) != FRAMES:
        raise SystemExit(f"{args.model}: not a {FRAMES}-frame frames-as-channels model")
    cases: dict[str, dict] = {}
    runs: dict[str, list[dict]] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for size in dict.fromkeys((1024, args.size)):
            cases[f"generate_{size}"] = _child("generate", args, size, folder)
        for _ in range(args.repeats):
            for case in ("memory", "stream"):
                runs.setdefault(f"{case}_1024", []).append(_child(case, args, 1024, folder))
        if args.size != 1024:
            runs[f"stream_{args.size}"] = [_child("stream", args, args.size, folder)]
    cases.update({name: max(results, key=lambda r: r["megapixels_per_s"]) for name, results in runs.items()})
    large = cases[f"stream_{args.size}"]
    ratios = {
        "stream_vs_memory_1024": max(s["megapixels_per_s"] / m["megapixels_per_s"]
                                     for s, m in zip(runs["stream_1024"], runs["memory_1024"])),
        f"stream_{args.size}_vs_memory_1024": large["megapixels_per_s"] / cases["memory_1024"]["megapixels_per_s"],
    }
    settings = {key: getattr(args, key) for key in ("size", "model", "tile", "precision", "repeats", "limit_mb")}
    settings.update(frames=FRAMES, torch=torch.__version__, threads=torch.get_num_threads(), cpu=hardware_name("cpu"),
                    resolved_precision=str(restorer.predictor(precision=args.precision).dtype),
                    load_average={"before": load_before, "after": os.getloadavg()})
    verdict = "within" if large["peak_rss_mb"] <= args.limit_mb else "OVER"
    print(f"model {args.model} ({FRAMES} frames as channels, x2), tile {args.tile}, precision {args.precision} "
          f"({settings['resolved_precision']}), "
          f"{torch.get_num_threads()} CPU threads, {settings['cpu']}")
    print(f"{'case':<16}{'output MP':>10}{'seconds':>10}{'MP/s (all runs)':>22}{'peak RSS MB':>13}")
    for name, case in cases.items():
        every = ", ".join(f"{r['megapixels_per_s']:.2f}" for r in runs.get(name, []))
        megapixels = f"{case['output_megapixels']:.1f}" if "output_megapixels" in case else "-"
        print(f"{name:<16}{megapixels:>10}{case['seconds']:>10.1f}{every:>22}{case['peak_rss_mb']:>13.0f}")
    for name, value in ratios.items():
        print(f"{name:<28}{value:.2f}")
    print(f"peak RSS of stream_{args.size}: {large['peak_rss_mb']:.0f} MB, {verdict} the {args.limit_mb:.0f} MB target")
    if args.json:
        args.json.write_text(json.dumps({"settings": settings, "cases": cases, "runs": runs, "ratios": ratios,
                                         "within_limit": large["peak_rss_mb"] <= args.limit_mb}, indent=2) + "\n")


if __name__ == "__main__":
    main()
