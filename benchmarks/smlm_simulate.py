"""Speed of the SMLM simulator and of localization (microsr.simulate.smlm, microsr.smlm.localize).

Cases (best of ``--repeats`` runs, wall-clock and this process's CPU time):

* ``batch_default``: ``simulate_batch`` of 1000 independent 64 × 64 frames, default preset
  (filaments, 2 emitters/µm², ~82 per frame), camera counts;
* ``batch_dense``: the same with the ``deepstorm-test`` preset (EMCCD, 225 emitters per frame);
* ``stack_blinking``: ``simulate_stack`` of 1000 64 × 64 frames with blinking (on 3, off 50, bleach 0.3);
* ``stack_256``: ``simulate_stack`` of 100 frames of 256 × 256 (default preset);
* ``targets_x8``: ``render_targets`` of a 16-frame training batch (16 × 512 × 512);
* ``localize_361``: ``localize`` on 361 frames of 512 × 512 shaped like a network output
  (x8 targets of the deepstorm-test preset blurred by a 1-pixel Gaussian).

Usage::

    python benchmarks/smlm_simulate.py [--repeats 3] [--json smlm_speed.json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from scipy import ndimage

from microsr.simulate.smlm import preset, render_targets, simulate_batch, simulate_stack
from microsr.smlm.localize import localize


def _time(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best wall-clock and CPU seconds over ``repeats`` runs."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    default, dense = preset("default"), preset("deepstorm-test")
    blinking = default.replace(on_time=3.0, off_time=50.0, bleach=0.3)
    _, truth = simulate_batch(default, 16, seed=0)
    _, dense_truth = simulate_stack(dense, 361, seed=0)
    outputs = ndimage.gaussian_filter(
        render_targets(dense_truth, dense.size, dense.pixel_size, frames=361), (0, 1, 1)
    )
    cases: dict[str, tuple[int, Callable[[], object]]] = {
        "batch_default": (1000, lambda: simulate_batch(default, 1000, seed=1)),
        "batch_dense": (1000, lambda: simulate_batch(dense, 1000, seed=1)),
        "stack_blinking": (1000, lambda: simulate_stack(blinking, 1000, seed=1)),
        "stack_256": (100, lambda: simulate_stack(default.replace(size=256), 100, seed=1)),
        "targets_x8": (16, lambda: render_targets(truth, default.size, default.pixel_size, frames=16)),
        "localize_361": (361, lambda: localize(outputs, dense.pixel_size / 8, threshold=0.05)),
    }
    results = {}
    print(f"{'case':16s} {'frames':>6s} {'wall s':>8s} {'cpu s':>8s} {'frames/s':>9s}")
    for name, (frames, run) in cases.items():
        wall, cpu = _time(run, args.repeats)
        results[name] = {"frames": frames, "wall_s": wall, "cpu_s": cpu, "frames_per_s": frames / wall}
        print(f"{name:16s} {frames:6d} {wall:8.3f} {cpu:8.3f} {frames / wall:9.0f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
