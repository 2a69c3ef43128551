"""SMLM models on stacks that no model, preset or threshold was tuned on; writes JSON with every figure.

Stacks (all 100 nm pixels, scored one-to-one per frame against their exact positions):

* ``deepstorm_test``: Deep-STORM's simulated microtubule test stack (361 × 64 × 64, ~225 emitters
  per frame, 5.5 per µm²; ``../shared/data/deepstorm``);
* ``deepstorm_demo1``: ``ArtificialDataset_demo1.tif`` with ``positions_demo1.csv`` (20 frames);
* ``heldout_*``: new simulations (``microsr.simulate.smlm``, 64 × 64, 200 frames, seeds 900+) of two
  cameras (an sCMOS and an EMCCD whose settings are not those of any preset or training draw) at 1, 2,
  4 and 6 emitters per µm² per frame on filaments;
* ``outside_*``: simulations outside the shipped model's training range (too dense; too bright a
  background with faint emitters; a wide PSF), where the reconstruction should warn.

Models: ``shipped`` (``src/microsr/pretrained/smlm.safetensors``, trained over a broad range of
acquisitions, ``configs/smlm_pretrained.yaml``) and ``groundtruth_upper_bound`` (the model shipped before,
``benchmarks/smlm/smlm_groundtruth.safetensors``, trained on a preset fitted to the Deep-STORM test
stack with its ground truth: on that stack an upper bound, not a result). Each model uses the peak
threshold stored in it (chosen on its simulated validation frames). Warnings of the quick calibration
check are recorded per stack.

Also on ``deepstorm_test``: images against the ground truth (rendered as 20 nm and, sharper, 12.5 nm
Gaussian spots on the 12.5 nm grid; Pearson r, PSNR after the least-squares affine fit) for microsr,
Deep-STORM's own reconstruction (as stored, and shifted one fine pixel down) and DSIR's published
weights (batch statistics, 8 frames per batch, the stack's min-max as input range, threshold = k × the
outputs' 99.99th percentile for k in 0.1, 0.15, 0.2, 0.3, 0.4; the best k is chosen on this very
stack, so its figures are an ORACLE upper bound and labelled so).

Usage (about 10 minutes on 2 cores; the shared data is found as the tests find it)::

    .venv/bin/python benchmarks/smlm/evaluate.py [--model PATH]
    .venv/bin/python benchmarks/smlm/evaluate.py --tables   # the README's tables from the JSON
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.io
import torch

from microsr.evaluate.metrics import normalize_like, psnr
from microsr.io import read_image
from microsr.models import create_model
from microsr.pretrained import pretrained_path
from microsr.simulate.smlm import SMLMSimulation, simulate_stack
from microsr.smlm.localize import localize
from microsr.smlm.reconstruct import read_stack, reconstruct
from microsr.smlm.render import render
from microsr.smlm.score import score
from microsr.smlm.table import read_localizations

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import figures  # noqa: E402
from figures import DATA, markdown_table  # noqa: E402

RESULTS = HERE / "results_evaluate.json"
FINE = 12.5
HELDOUT_CAMERAS = {
    # Not a preset and not a training draw: an sCMOS (0.46 e-/count, 1.6 e- readout noise) and an EMCCD
    # (gain 150, 30 e-/count), photons and background drawn once here.
    "scmos": dict(photons_per_adu=0.46, read_noise=1.6, base_level=100, em_gain=None, photons=(1200, 2800),
                  background=(25, 35), fwhm=(230, 290)),
    "emccd": dict(photons_per_adu=30.0, read_noise=60.0, base_level=400, em_gain=150.0, photons=(800, 2000),
                  background=(15, 25), fwhm=(260, 320)),
}
DENSITIES = (1.0, 2.0, 4.0, 6.0)
OUTSIDE = {
    "outside_dense_12": dict(density=12.0, photons=(1500, 3000), background=30, photons_per_adu=0.5),
    "outside_faint_bright_background": dict(density=2.0, photons=(150, 250), background=400, photons_per_adu=0.5),
    "outside_wide_psf": dict(density=2.0, photons=(2000, 4000), background=30, fwhm=(550, 650),
                             photons_per_adu=0.5),
}


def _scores(localizations: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    wide, narrow = score(localizations, truth, 250.0), score(localizations, truth, 100.0)
    return {"recall_250": wide.recall, "precision_250": wide.precision, "jaccard_250": wide.jaccard,
            "rmse_250": wide.rmse_lateral, "jaccard_100": narrow.jaccard, "rmse_100": narrow.rmse_lateral,
            "localizations": int(len(localizations)), "emitters": int(len(truth))}


def _run(stack, model, truth) -> dict:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.monotonic()
        result = reconstruct(stack, model, pixel_size=100.0)
        seconds = time.monotonic() - started
    return {**_scores(result.localizations, truth), "threshold": result.threshold, "seconds": seconds,
            "warnings": [str(w.message) for w in caught if "unlike" in str(w.message) or "check" in str(w.message)]}, \
        result


def _image_scores(image: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    image = np.asarray(image, np.float64)
    return {"pearson": float(np.corrcoef(image.ravel(), reference.ravel())[0, 1]),
            "psnr": float(psnr(reference, normalize_like(image, reference)))}


def _dsir(stack: np.ndarray, truth: np.ndarray, weights: Path) -> dict:
    model = create_model("dsir_compat", scale=8)
    model.load_state_dict(torch.load(weights, weights_only=True, map_location="cpu"))
    model.train()  # each batch's own statistics: in eval mode the shared running statistics zero every output
    low, high = float(stack.min()), float(stack.max())
    outputs = []
    with torch.no_grad():
        for start in range(0, len(stack), 8):
            block = (stack[start : start + 8].astype(np.float32) - low) / (high - low)
            outputs.append(model(torch.from_numpy(block)[:, None])[:, 0].numpy())
    outputs = np.concatenate(outputs)
    top = float(np.percentile(outputs, 99.99))
    runs = {}
    for k in (0.1, 0.15, 0.2, 0.3, 0.4):
        runs[str(k)] = _scores(localize(outputs, FINE, k * top, radius=2), truth)
    best = max(runs, key=lambda k: runs[k]["jaccard_250"])
    image = outputs.clip(0).sum(axis=0)
    return {"thresholds": runs, "oracle_k": float(best), "oracle": runs[best], "image": image}


def run(model: Path) -> dict:
    """Every stack with both models, the images of the test stack and DSIR's published weights."""
    models = {"shipped": model, "groundtruth_upper_bound": HERE / "smlm_groundtruth.safetensors"}
    results: dict = {"command": ".venv/bin/python benchmarks/smlm/evaluate.py", "stacks": {}}

    deepstorm = DATA / "deepstorm"
    stacks = {}
    if deepstorm.is_dir():
        stacks["deepstorm_test"] = (np.asarray(read_stack(deepstorm / "testStack_SimulatedMicrotubules.tif").data),
                                    read_localizations(deepstorm / "DERIVED_Positions_Bundeld_Tubulin_Recreated.csv"))
        stacks["deepstorm_demo1"] = (np.asarray(read_image(deepstorm / "ArtificialDataset_demo1.tif").data),
                                     read_localizations(deepstorm / "positions_demo1.csv"))
    for k, (camera, settings) in enumerate(HELDOUT_CAMERAS.items()):
        for j, density in enumerate(DENSITIES):
            config = SMLMSimulation(size=64, density=density, **settings)
            stacks[f"heldout_{camera}_{density:g}"] = simulate_stack(config, 200, seed=900 + 10 * k + j)
    for j, (name, settings) in enumerate(OUTSIDE.items()):
        stacks[name] = simulate_stack(SMLMSimulation(size=64, **settings), 200, seed=950 + j)

    reconstructions = {}
    for name, (stack, truth) in stacks.items():
        results["stacks"][name] = {"frames": int(len(stack)), "emitters_per_frame": len(truth) / len(stack)}
        for label, model in models.items():
            scores, result = _run(stack, model, truth)
            results["stacks"][name][label] = scores
            reconstructions[(name, label)] = result
            print(f"{name:34s} {label:24s} J250 {scores['jaccard_250']:.3f} P {scores['precision_250']:.3f} "
                  f"R {scores['recall_250']:.3f} J100 {scores['jaccard_100']:.3f} RMSE {scores['rmse_250']:.1f} "
                  f"{'WARN' if scores['warnings'] else ''}", flush=True)

    if "deepstorm_test" in stacks:
        stack, truth = stacks["deepstorm_test"]
        images = {}
        for sigma, key in ((20.0, "gt_20nm"), (FINE, "gt_12.5nm")):
            reference = render(truth, FINE, (512, 512), method="gaussian", sigma=sigma).astype(np.float64)
            recovery = scipy.io.loadmat(deepstorm / "Recovery_SimulatedMicrotubules.mat")["Recovery"]
            images[key] = {
                **{f"microsr_{label}": _image_scores(reconstructions[("deepstorm_test", label)].image, reference)
                   for label in models},
                "deepstorm_own": _image_scores(recovery, reference),
                "deepstorm_own_shifted_down_1px": _image_scores(np.roll(recovery, 1, axis=0), reference),
            }
        weights = DATA / "dsir_leaxp" / "autoencoder_model.pt"
        if weights.is_file():
            dsir = _dsir(stack, truth, weights)
            reference = render(truth, FINE, (512, 512), method="gaussian", sigma=20.0).astype(np.float64)
            images["gt_20nm"]["dsir_published_weights"] = _image_scores(dsir.pop("image"), reference)
            results["dsir_published_weights"] = {
                **dsir, "note": "threshold k x the outputs' 99.99th percentile; oracle = best k on this very stack "
                "(an upper bound, chosen with the ground truth)"}
        results["deepstorm_test_images"] = images
    return results


_STACK_NAMES = {"deepstorm_test": "Deep-STORM test stack", "deepstorm_demo1": "Deep-STORM `ArtificialDataset_demo1`"}
_MODEL_NAMES = {"shipped": "shipped (broad)", "groundtruth_upper_bound": "calibrated with the ground truth"}


def _percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def readme_tables(results: dict) -> dict[str, str]:
    """README "SMLM": the stacks table, the test stack's images and DSIR's published weights."""
    rows = []
    for name, stack in results["stacks"].items():
        label = f"{_STACK_NAMES.get(name, f'`{name}`')} ({round(stack['emitters_per_frame'])})"
        for model, title in _MODEL_NAMES.items():
            s = stack[model]
            if name == "deepstorm_test" and model == "groundtruth_upper_bound":
                title += " (upper bound)"
            rows.append([label, title, _percent(s["recall_250"]), _percent(s["precision_250"]),
                         _percent(s["jaccard_250"]), _percent(s["jaccard_100"]), f"{s['rmse_250']:.1f} nm",
                         "yes" if s["warnings"] else "no"])
    tables = {"stacks": markdown_table(["stack (emitters per frame)", "model", "recall", "precision", "Jaccard",
                                        "Jaccard 100 nm", "RMSE", "warned"], rows, align="llrrrrrl")}
    images = results.get("deepstorm_test_images")
    if images:
        names = {"microsr_shipped": "microsr, shipped model",
                 "microsr_groundtruth_upper_bound": "microsr, calibrated with the ground truth (upper bound)",
                 "deepstorm_own": "Deep-STORM's own (`Recovery_SimulatedMicrotubules.mat`)",
                 "deepstorm_own_shifted_down_1px": "Deep-STORM's own, shifted one 12.5 nm pixel down",
                 "dsir_published_weights": "DSIR's published weights (below; oracle threshold)"}
        rows = [[names[key], f"{images['gt_20nm'][key]['pearson']:.3f}", f"{images['gt_20nm'][key]['psnr']:.1f} dB",
                 f"{images['gt_12.5nm'][key]['pearson']:.3f}" if key in images["gt_12.5nm"] else "—"]
                for key in names if key in images["gt_20nm"]]
        tables["images"] = markdown_table(["reconstruction", "Pearson r (20 nm)", "PSNR (20 nm)",
                                           "Pearson r (12.5 nm)"], rows, align="lrrr")
    dsir = results.get("dsir_published_weights")
    if dsir:
        rows = [[f"k = {k}" + (" (oracle: best on this stack)" if float(k) == dsir["oracle_k"] else ""),
                 _percent(s["recall_250"]), _percent(s["precision_250"]), _percent(s["jaccard_250"]),
                 _percent(s["jaccard_100"]), f"{s['rmse_250']:.1f} nm"] for k, s in dsir["thresholds"].items()]
        tables["dsir"] = markdown_table(["DSIR threshold (× 99.99th percentile)", "recall", "precision", "Jaccard",
                                         "Jaccard 100 nm", "RMSE"], rows, align="lrrrrr")
    return tables


def main() -> None:
    parser = figures.parser(__doc__)
    parser.add_argument("--model", type=Path, default=None, help="the model scored as 'shipped' (default: it)")
    args = parser.parse_args()
    figures.publish(RESULTS, None if args.tables else lambda: run(args.model or pretrained_path("smlm")),
                    readme_tables, __file__)


if __name__ == "__main__":
    main()
