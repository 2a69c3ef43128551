"""Speed and memory of tiled prediction, in memory and file to file (see benchmarks/README.md).

Each case runs in its own process, so its peak RSS is its own. For a SIZE^2 LR uint16
TIFF (4096^2 at scale 4 is a 268-megapixel output) and for a 1024^2 one:

* ``memory``: in-memory ``predict``;
* ``tiff`` / ``zarr``: ``predict_to_file`` to an ImageJ TIFF / an OME-Zarr pyramid.

The three run in turn, ``--repeats`` times, so that contention on a shared machine
hits them alike; each case's fastest run counts, and file/memory ratios compare runs
of the same round-robin. Also, for a 1024^2 input, ``whole_1024``: one tile covering
the image, against ``memory_1024`` for the cost of tiling. ``--cases`` runs a subset
(``memory`` always, as the reference) and ``--no-1024`` the SIZE^2 round-robins alone
(for the 268-MP stream on a busy machine).

Usage::

    python benchmarks/predict_speed.py --size 4096 --json predict_speed.json
    python benchmarks/predict_speed.py --size 4096 --no-1024 --cases zarr --json stream.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from microsr.io import read_image
from microsr.models import create_model
from microsr.predict.engine import DEFAULT_TILE, Predictor
from microsr.runtime.precision import hardware_name


def _model(name: str, scale: int) -> torch.nn.Module:
    torch.manual_seed(0)  # speed does not depend on the weights
    return create_model(name, scale=scale)


def _peak_rss_kb() -> int:
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmHWM:")).split()[1])


def _case(args: argparse.Namespace) -> dict:
    """Run one case in this process and return its measurements."""
    model = _model(args.model, args.scale)
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "input.tif"
        data = np.random.default_rng(0).integers(100, 4000, (args.size, args.size), dtype=np.uint16)
        tifffile.imwrite(source, data)
        del data
        whole = args.case == "whole"
        predictor = Predictor(model, scale=args.scale, tile=args.size if whole else args.tile,
                              overlap=args.overlap, blend=args.blend, batch_size=args.batch_size,
                              precision=args.precision, progress=False)
        image = read_image(source)
        start = time.perf_counter()
        if args.case in _FILES:
            predictor.predict_to_file(image, Path(folder) / f"output{_FILES[args.case]}")
        else:
            predictor.predict(image)
        seconds = time.perf_counter() - start
    megapixels = (args.size * args.scale) ** 2 / 1e6
    return {
        "seconds": seconds,
        "output_megapixels": megapixels,
        "megapixels_per_s": megapixels / seconds,
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork/exec.
        "peak_rss_mb": _peak_rss_kb() / 1024,
        "loadavg_1min": os.getloadavg()[0],  # at the end of the case: contention from other jobs
    }


_FILES = {"tiff": ".tif", "zarr": ".ome.zarr"}


def _run(case: str, size: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--case", case, "--size", str(size), "--model", args.model,
               "--scale", str(args.scale), "--tile", str(args.tile), "--overlap", str(args.overlap),
               "--blend", str(args.blend), "--batch-size", str(args.batch_size), "--precision", args.precision]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="LR side of the large image")
    parser.add_argument("--model", default="resunet", help="a name from microsr.models.list_models()")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE, help="LR tile core side")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--overlap", type=int, help="LR context per side (default: the model's receptive field)")
    parser.add_argument("--blend", type=int, help="LR pixels cross-faded per side (default: as the Predictor's)")
    parser.add_argument("--batch-size", type=int, default=1, help="tiles per forward pass")
    parser.add_argument("--repeats", type=int, default=2, help="round-robins of memory, TIFF and Zarr per size")
    parser.add_argument("--cases", default="tiff,zarr", help="file cases run against memory: tiff, zarr or both")
    parser.add_argument("--no-1024", dest="small", action="store_false",
                        help="skip the 1024^2 round-robins and whole_1024 (and the ratios that need them)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--case", choices=["memory", "tiff", "zarr", "whole"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(_case(args)))
        return
    # The defaults the Predictor resolves, given explicitly to each case; "auto" measured once here (and cached).
    resolved = Predictor(_model(args.model, args.scale), scale=args.scale, overlap=args.overlap, blend=args.blend,
                         precision=args.precision, progress=False)
    args.overlap, args.blend = resolved.overlap, resolved.blend
    files = [case for case in _FILES if case in args.cases.split(",")]
    sizes = dict.fromkeys((1024, args.size) if args.small else (args.size,))

    load_start = os.getloadavg()
    runs: dict[str, list[dict]] = {}
    for size in sizes:
        for _ in range(args.repeats):
            for case in ("memory", *files):
                runs.setdefault(f"{case}_{size}", []).append(_run(case, size, args))
    if args.small:
        runs["whole_1024"] = [_run("whole", 1024, args)]
    cases = {name: max(results, key=lambda r: r["megapixels_per_s"]) for name, results in runs.items()}
    ratios, per_round_ratios = {}, {}
    for size in sizes:
        for case in files:
            # Per round-robin, then the best: a burst of contention in one run does not decide the ratio.
            per_round = [f["megapixels_per_s"] / m["megapixels_per_s"]
                         for f, m in zip(runs[f"{case}_{size}"], runs[f"memory_{size}"])]
            ratios[f"{case}_vs_memory_{size}"] = max(per_round)
            per_round_ratios[f"{case}_vs_memory_{size}"] = per_round
    if args.small:
        ratios.update(
            tiled_whole_time=cases["memory_1024"]["seconds"] / cases["whole_1024"]["seconds"],
            tiled_whole_rss=cases["memory_1024"]["peak_rss_mb"] / cases["whole_1024"]["peak_rss_mb"],
        )
        if "zarr" in files:
            ratios["stream_rss_vs_1024"] = cases[f"zarr_{args.size}"]["peak_rss_mb"] / cases["zarr_1024"]["peak_rss_mb"]
    settings = {key: getattr(args, key) for key in ("size", "model", "scale", "tile", "overlap", "blend", "batch_size",
                                                  "precision", "repeats", "cases", "small")}
    settings.update(torch=torch.__version__, threads=torch.get_num_threads(), resolved_precision=str(resolved.dtype),
                    cpu=hardware_name("cpu"), loadavg_start=load_start)

    print(f"model {args.model} x{args.scale}, tile {args.tile}, overlap {args.overlap}, blend {args.blend}, "
          f"precision {args.precision} ({resolved.dtype}), {torch.get_num_threads()} CPU threads, {settings['cpu']}")
    print(f"{'case':<14}{'output MP':>10}{'seconds':>10}{'MP/s (all runs)':>28}{'peak RSS MB':>13}")
    for name, case in cases.items():
        every = ", ".join(f"{r['megapixels_per_s']:.2f}" for r in runs[name])
        print(f"{name:<14}{case['output_megapixels']:>10.1f}{case['seconds']:>10.1f}{every:>28}"
              f"{case['peak_rss_mb']:>13.0f}")
    for name, value in ratios.items():
        print(f"{name:<24}{value:.2f}" + (f"  (rounds: {', '.join(f'{r:.2f}' for r in per_round_ratios[name])})"
                                          if name in per_round_ratios else ""))
    settings["loadavg_end"] = os.getloadavg()
    print(f"load average {settings['loadavg_start'][0]:.1f} at the start, {settings['loadavg_end'][0]:.1f} at the end")
    if args.json:
        args.json.write_text(json.dumps({"settings": settings, "cases": cases, "runs": runs, "ratios": ratios,
                                         "per_round_ratios": per_round_ratios},
                                        indent=2))


if __name__ == "__main__":
    main()
