"""`microsr bench` on this machine, as a README table: convolution peak, prediction in each precision,
what ``--precision auto`` chose and why, the network alone, and training.

Runs :func:`microsr.perf.run_bench` (what ``microsr bench`` runs) for the default model and writes
its results with the machine and load to ``results_bench.json``.

Usage::

    .venv/bin/python benchmarks/machine_bench.py --size 256     # about a minute on 2 cores
    .venv/bin/python benchmarks/machine_bench.py --tables
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from figures import markdown_table, parser, publish
from microsr.perf import run_bench
from microsr.runtime.device import pick_device

RESULTS = Path(__file__).with_name("results_bench.json")


def readme_tables(results: dict[str, Any]) -> dict[str, str]:
    by_precision = results["predict_mps_by_precision"]
    rows = [[f"prediction, {name}", f"{mps:.3f} MP/s"] for name, mps in by_precision.items()]
    rows += [
        ["`auto` chose", f"{results['auto_precision']}: {results['auto_vs_fastest']:.0%} of the fastest"],
        ["why", results["auto_reason"]],
        ["3x3 convolution peak, fp32 / bf16",
         f"{results['conv_peak_fp32']:.3f} / {results['conv_peak_bf16']:.3f} TFLOP/s"],
        [f"network alone ({results['precision']})",
         f"{results['network_mps']:.3f} MP/s; tiling work {results['tiling_work']:.2f}x"],
        [f"training ({results['precision']})", f"{results['train_mps']:.3f} MP/s"],
        ["load average (1, 5, 15 min) at the end", ", ".join(f"{x:.1f}" for x in results["machine"]["loadavg"])],
    ]
    return {"bench": markdown_table(["measure", "value"], rows, "lr")}


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--size", type=int, default=256, help="side of the LR image predicted")
    args = cli.parse_args()

    def compute() -> dict[str, Any]:
        return run_bench("resunet", scale=4, device=pick_device("auto"), precision="auto", size=args.size).as_dict()

    publish(RESULTS, None if args.tables else compute, readme_tables, __file__)


if __name__ == "__main__":
    main()
