"""README's worked examples: the `make demo` table and the degradation fit of the Python example.

- ``demo``: :func:`microsr.demo.run_demo` as ``make demo`` runs it (2 minutes of training on the
  shipped sample, so the figures move with machine load; the JSON records the load and the steps),
  scored on its unseen test image against bicubic.
- ``fit``: the README's Python example (``fit_degradation`` of a known degradation of the shipped
  sample, 20 trials) and, when ``../shared/data`` is present, the same fit on the PSSR
  semi-synthetic tSEM pair with the real and simulated noise (residual standard deviation in
  normalised units).

From the project root::

    .venv/bin/python benchmarks/readme_examples.py            # about 3 minutes on 2 cores
    .venv/bin/python benchmarks/readme_examples.py --tables   # the README tables from the JSON
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import figures  # noqa: E402
from figures import DATA, markdown_table  # noqa: E402

RESULTS = HERE / "results_readme_examples.json"
TRUTH = {"steps": [{"type": "blur", "sigma": 1.5}, {"type": "downsample", "factor": 4},
                   {"type": "poisson", "photons": 50}, {"type": "gaussian", "sigma": 0.005}]}
PSSR_PAIR = ("napari_pssr/HR/small.tif", "napari_pssr/LR/small.tif")


def demo() -> dict:
    """``make demo``'s run, in a temporary folder."""
    from microsr.demo import run_demo

    with tempfile.TemporaryDirectory() as folder:
        return run_demo(Path(folder) / "demo_output")


def fit() -> dict:
    """The README's fit example, and the PSSR pair's noise when the real data is present."""
    from microsr.degrade import degrade_image, load_degradation
    from microsr.fit import fit_degradation
    from microsr.io import read_image
    from microsr.samples import sample_path

    hr = read_image(sample_path())
    result = fit_degradation(hr, degrade_image(hr, load_degradation(TRUTH), seed=1), trials=20)
    values = {"truth": TRUTH, "parameters": {k: list(v) for k, v in result.parameters.items()}}
    hr_path, lr_path = (DATA / p for p in PSSR_PAIR)
    if hr_path.is_file() and lr_path.is_file():
        pssr = fit_degradation(read_image(hr_path), read_image(lr_path), trials=20)
        values["pssr_noise_std"] = {"real": pssr.noise_std[0], "simulated": pssr.noise_std[1]}
    return values


def readme_tables(results: dict) -> dict[str, str]:
    """The demo's PSNR/SSIM table and the fitted parameters of the Python example."""
    demo_rows = [[m, f"{results['demo'][m]['psnr']:.2f}", f"{results['demo'][m]['ssim']:.3f}"]
                 for m in ("bicubic", "microsr")]
    fit_rows = [[name, f"{value:.3g} ± {error:.2g}"] for name, (value, error) in results["fit"]["parameters"].items()]
    if "pssr_noise_std" in results["fit"]:
        noise = results["fit"]["pssr_noise_std"]
        fit_rows.append(["PSSR pair: noise std, real / simulated", f"{noise['real']:.3f} / {noise['simulated']:.3f}"])
    return {
        "demo": markdown_table(["method", "PSNR (dB)", "SSIM"], demo_rows, align="lrr"),
        "fit": markdown_table(["fitted", "value ± standard error"], fit_rows, align="lr"),
    }


def main() -> None:
    args = figures.parser(__doc__).parse_args()
    figures.publish(RESULTS, None if args.tables else lambda: {"demo": demo(), "fit": fit()}, readme_tables, __file__)


if __name__ == "__main__":
    main()
