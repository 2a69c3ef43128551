"""microsr against PSSR2 and CAREamics: x4 prediction speed and quality at equal training time.

Run with microsr's venv after ``benchmarks/peers/setup_peers.sh`` (see benchmarks/README.md)::

    .venv/bin/python benchmarks/peers/bench_peers.py            # the full run, about an hour
    .venv/bin/python benchmarks/peers/bench_peers.py --quick    # a smoke run, a few minutes

Every case runs in a fresh process of its tool's own venv (so its peak RSS is its own) and
the cases of one size are interleaved round by round, so a load change hits all of them;
figures are medians over the rounds. Inputs and outputs live in ``.work/`` (git-ignored);
the summary goes to ``results_peers.json`` (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from microsr.data.datasets import flip_rotate, split_regions
from microsr.data.normalize import PercentileNormalizer
from microsr.degrade import preset
from microsr.evaluate import metrics
from microsr.evaluate.baseline import upscale
from microsr.io import read_image
from microsr.predict.engine import DEFAULT_TILE
from microsr.samples import filaments, sample_path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from figures import machine, markdown_table, print_tables  # noqa: E402

WORK = HERE / ".work"
RESULTS = HERE / "results_peers.json"
PYTHONS = {
    "microsr": Path(sys.executable),
    "pssr": HERE / ".venvs" / "pssr" / "bin" / "python",
    "careamics": HERE / ".venvs" / "careamics" / "bin" / "python",
}
SCALE = 4
NAPARI_HR = HERE.parents[2] / "shared" / "data" / "napari_pssr" / "HR" / "small.tif"
# microsr's ResUNet with the parameter count and FLOPs of PSSR2's ResUNet(hidden=[32, 64, 128, 256], depth=2).
MATCHED_WIDTHS = [32, 64, 128, 360]
HR_TILE = 128  # training and evaluation tiles (HR pixels); microsr's default training tile
BATCH = {"pssr": 16, "careamics": 16, "microsr": 16}  # training batch: the same for all (PSSR2's default)
VAL_FRACTION = 0.1
EQUAL_TIME_TOLERANCE = 0.05  # a tool's training loop must last the budget to within 5 %
QUALITY_KEYS = ("psnr", "ssim", "psnr_affine")


# --------------------------------------------------------------------------- running workers


def run_worker(tool: str, command: str, settings: dict[str, Any], log: str) -> dict[str, Any]:
    """Run one case in a fresh process of ``tool``'s venv and return its JSON report."""
    script = HERE / f"worker_{tool}.py"
    done = subprocess.run([str(PYTHONS[tool]), str(script), command, json.dumps(settings)],
                          capture_output=True, text=True, cwd=WORK)
    (WORK / "logs").mkdir(exist_ok=True)
    (WORK / "logs" / f"{log}.log").write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"{tool} {command} ({log}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Median of every number the runs report."""
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return {k: statistics.median(run[k] for run in runs) for k in keys}


# --------------------------------------------------------------------------- speed


def speed_configs(quick: bool) -> dict[str, tuple[str, dict[str, Any]]]:
    """Name -> (tool, settings) of every speed configuration."""
    from worker_microsr import has_precision  # the project's venv runs this script

    precisions = ["auto", "fp32"] if has_precision() else [None]
    configs: dict[str, tuple[str, dict[str, Any]]] = {
        "pssr_default": ("pssr", {"model": "default", "tile": 128 if quick else 256}),
        "pssr_small": ("pssr", {"model": "small", "tile": 128 if quick else 256}),
        "care": ("careamics", {"tile": 256 if quick else 512, "overlap": 48}),
    }
    for name, kwargs in (("default", {}), ("matched", {"widths": MATCHED_WIDTHS})):
        for precision in precisions:
            suffix = f"_{precision}" if precision else ""
            configs[f"microsr_{name}{suffix}"] = ("microsr", {"model_kwargs": kwargs, "precision": precision,
                                                              "tile": DEFAULT_TILE})
    return configs


def pssr_overlap(size: int, tile: int) -> int:
    """The largest of 64, 32, 0 LR pixels of overlap with which PSSR2's sliding tiles cover the image exactly.

    PSSR2 places tiles every ``tile - overlap`` pixels and drops what a whole tile
    does not reach, so the stride must divide ``size - tile``.
    """
    return next(o for o in (64, 32, 0) if (size - tile) % (tile - o) == 0)


def speed_input(size: int) -> Path:
    """A folder holding only ``lr.tif``: a uint8 SIZE^2 filament image (PSSR2 reads whole folders)."""
    folder = WORK / "speed" / f"lr_{size}"
    path = folder / "lr.tif"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        image = metrics.normalize_percentile(filaments((size, size), seed=size))
        tifffile.imwrite(path, np.clip(np.rint(image * 255), 0, 255).astype(np.uint8))
    return folder


def speed_case(tool: str, settings: dict[str, Any], size: int, label: str) -> dict[str, Any]:
    """One speed run of ``tool`` on the SIZE^2 input; its scratch output is deleted afterwards."""
    folder = speed_input(size)
    scratch = WORK / "speed" / f"out_{label}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    settings = {**settings, "size": size, "input": str(folder if tool == "pssr" else folder / "lr.tif")}
    if tool == "pssr":
        overlap = pssr_overlap(size, settings["tile"])
        settings.update(overlap=overlap, margin=overlap, output=str(scratch))
    else:
        settings.update(output=str(scratch / "sr.tif"), setup_dir=str(scratch))
    try:
        return run_worker(tool, "speed", settings, label)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_speed(sizes: list[int], rounds: int, configs: dict[str, tuple[str, dict[str, Any]]],
              control_tiles: int, once: frozenset[str] = frozenset()) -> tuple[dict[str, Any], dict[str, Any]]:
    """Interleaved rounds over ``configs`` for each size, plus the torch-build control in every venv.

    Configurations named in ``once`` run in the first round only (their figures are single runs).
    """
    results: dict[str, Any] = {}
    controls: dict[str, list[dict[str, Any]]] = {tool: [] for tool in PYTHONS}
    for size in sizes:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
        for r in range(rounds):
            names = list(configs)
            names = names[r % len(names):] + names[: r % len(names)]  # rotate: no config always goes first
            for name in (n for n in names if r == 0 or n not in once):
                tool, settings = configs[name]
                runs[name].append(speed_case(tool, settings, size, f"speed_{size}_{name}_{r}"))
                print(f"  {size}^2 round {r + 1}/{rounds} {name}: {runs[name][-1]['megapixels_per_s']:.3f} MP/s, "
                      f"peak RSS {runs[name][-1]['peak_rss_mb']:.0f} MB", flush=True)
            if control_tiles and size == sizes[0]:
                for tool in PYTHONS:
                    controls[tool].append(run_worker(tool, "control", {"tile": 256, "tiles": control_tiles},
                                                     f"control_{tool}_{r}"))
        results[str(size)] = {name: {"median": median_of(rs), "runs": rs} for name, rs in runs.items() if rs}
    return results, {tool: {"median": median_of(rs), "runs": rs} for tool, rs in controls.items() if rs}


def speed_ratios(results: dict[str, Any]) -> dict[str, Any]:
    """microsr's MP/s over each peer's, end to end and network only, per size."""
    auto = "_auto" if any(name.endswith("_auto") for size in results.values() for name in size) else ""
    pairs = {
        f"microsr_default{auto} / pssr_default": (f"microsr_default{auto}", "pssr_default", 10.0),
        f"microsr_matched{auto} / pssr_small": (f"microsr_matched{auto}", "pssr_small", 5.0),
        f"microsr_default{auto} / care": (f"microsr_default{auto}", "care", 10.0),
    }
    if auto:
        pairs.update({
            "microsr_default_fp32 / pssr_default": ("microsr_default_fp32", "pssr_default", None),
            "microsr_matched_fp32 / pssr_small": ("microsr_matched_fp32", "pssr_small", None),
            "microsr_default_fp32 / care": ("microsr_default_fp32", "care", None),
        })
    ratios: dict[str, Any] = {}
    for size, cases in results.items():
        for label, (ours, peer, target) in pairs.items():
            if ours in cases and peer in cases:
                a, b = cases[ours]["median"], cases[peer]["median"]
                ratios[f"{size}: {label}"] = {
                    "end_to_end": a["megapixels_per_s"] / b["megapixels_per_s"],
                    "network": a["network_megapixels_per_s"] / b["network_megapixels_per_s"],
                    "target": target,
                    "met": None if target is None else a["megapixels_per_s"] / b["megapixels_per_s"] >= target,
                }
    return ratios


# --------------------------------------------------------------------------- quality


def hr_images() -> list[tuple[str, np.ndarray]]:
    """The HR images every tool learns from, each in its own normalised units (0.1/99.9 percentiles -> 0/1)."""
    paths = {"filaments": sample_path()}
    if NAPARI_HR.exists():
        paths["napari_pssr_small"] = NAPARI_HR
    images = []
    for name, path in paths.items():
        image = read_image(path)
        images.append((name, PercentileNormalizer().fit(image)(np.asarray(image.data))))
    return images


def make_quality_data(folder: Path, n_pairs: int, draws: int, seed: int = 0) -> dict[str, Any]:
    """Degrade once, to disk: training pairs for the peers and the held-out evaluation tiles for all.

    Training tiles come from each image's training region and evaluation tiles from its
    validation band (``split_regions`` with microsr's tile and fraction, so microsr's own
    training never sees them either). Every tile is degraded by microsr's "poisson"
    preset with its own random blur, photon count and read noise.
    """
    degradation = preset("poisson", SCALE)
    rng = np.random.default_rng(seed)
    images = hr_images()
    lr_train, hr_train, lr_eval, hr_eval, sources = [], [], [], [], []
    for index, (name, hr) in enumerate(images):
        train, val = split_regions(hr.shape, HR_TILE, VAL_FRACTION, source=name)
        for _ in range(n_pairs // len(images)):
            y = int(rng.integers(train.y0, train.y1 - HR_TILE + 1))
            x = int(rng.integers(train.x0, train.x1 - HR_TILE + 1))
            tile = flip_rotate(hr[y : y + HR_TILE, x : x + HR_TILE], bool(rng.integers(2)), int(rng.integers(4)))
            hr_train.append(tile)
            lr_train.append(degradation(tile, seed=rng))
        step = HR_TILE // 2
        for y in range(val.y0, val.y1 - HR_TILE + 1, step):
            for x in range(val.x0, val.x1 - HR_TILE + 1, step):
                tile = hr[y : y + HR_TILE, x : x + HR_TILE]
                for _ in range(draws):
                    hr_eval.append(tile)
                    lr_eval.append(degradation(tile, seed=rng))
                    sources.append(index)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"lr": np.stack(lr_train).astype(np.float32), "hr": np.stack(hr_train).astype(np.float32)}
    np.savez(folder / "pairs.npz", **arrays)
    for kind, stack in arrays.items():
        # PSSR2's PairedImageDataset reads one TIFF per tile from matching hr/ and lr/ folders, in 0..255.
        (folder / kind).mkdir(exist_ok=True)
        for i, tile in enumerate(stack):
            tifffile.imwrite(folder / kind / f"p{i:05d}.tif", tile * 255)
    np.save(folder / "eval_lr.npy", np.stack(lr_eval).astype(np.float32))
    np.save(folder / "eval_hr.npy", np.stack(hr_eval).astype(np.float32))
    np.save(folder / "eval_source.npy", np.array(sources))
    return {"images": [name for name, _ in images], "train_pairs": len(hr_train), "eval_tiles": len(hr_eval),
            "eval_draws_per_tile": draws}


def run_training(folder: Path, minutes: float, trained: list[str], seed: int = 0) -> dict[str, Any]:
    """Train each tool for ``minutes`` of wall-clock time; each saves its predictions of the evaluation tiles.

    Each report has ``equal_time``: whether the tool trained for the whole budget (its training loop
    within ±5 % of it), so a tool that stops early, or overruns, is flagged in the tables.
    """
    common = {"eval_lr": str(folder / "eval_lr.npy"), "minutes": minutes, "seed": seed}
    hr_files = [str(sample_path())] + ([str(NAPARI_HR)] if NAPARI_HR.exists() else [])
    jobs = {
        "pssr_default": ("pssr", {"model": "default", "pairs": str(folder), "hr_tile": HR_TILE, "val_split": 0.01,
                                  "batch_size": BATCH["pssr"], "num_workers": 2}),
        "pssr_small": ("pssr", {"model": "small", "pairs": str(folder), "hr_tile": HR_TILE, "val_split": 0.01,
                                "batch_size": BATCH["pssr"], "num_workers": 2}),
        "care": ("careamics", {"pairs": str(folder / "pairs.npz"), "patch": 64, "batch_size": BATCH["careamics"],
                               "steps_per_epoch": 50, "work_dir": str(folder)}),
        "microsr_default": ("microsr", {"model_kwargs": {}, "hr": hr_files, "hr_tile": HR_TILE,
                                        "batch_size": BATCH["microsr"], "val_fraction": VAL_FRACTION,
                                        "work_dir": str(folder)}),
        "microsr_matched": ("microsr", {"model_kwargs": {"widths": MATCHED_WIDTHS}, "hr": hr_files,
                                        "hr_tile": HR_TILE, "batch_size": BATCH["microsr"],
                                        "val_fraction": VAL_FRACTION, "work_dir": str(folder)}),
    }
    reports = {}
    for name in trained:
        tool, settings = jobs[name]
        settings = {**common, **settings, "predictions": str(folder / f"pred_{name}.npy")}
        report = run_worker(tool, "train", settings, f"train_{name}")
        # The training loop: data loading (microsr degrades on the fly), steps, validation, checkpoints. The
        # peers time their training call; microsr's set-up before its loop is in train_seconds only.
        loop_seconds = report.get("loop_seconds", report["train_seconds"])
        report["images_per_s"] = report["steps"] * settings["batch_size"] / loop_seconds
        report["equal_time"] = abs(loop_seconds / (60 * minutes) - 1) <= EQUAL_TIME_TOLERANCE
        reports[name] = report
        print(f"  trained {name}: {report['steps']} steps in {report['train_seconds']:.0f} s, "
              f"{report['images_per_s']:.1f} tiles/s", flush=True)
    return reports


def training_ratios(training: dict[str, Any]) -> dict[str, Any]:
    """microsr's training tiles per second over PSSR2's, for the same network size and HR tile."""
    pairs = {"microsr_matched / pssr_small": ("microsr_matched", "pssr_small", 3.0),
             "microsr_default / pssr_default": ("microsr_default", "pssr_default", None)}
    ratios = {}
    for label, (ours, peer, target) in pairs.items():
        if ours in training and peer in training:
            ratio = training[ours]["images_per_s"] / training[peer]["images_per_s"]
            ratios[label] = {"tiles_per_s": ratio, "target": target,
                             "met": None if target is None else ratio >= target}
    return ratios


def evaluate(folder: Path, names: list[str], images: list[str]) -> dict[str, Any]:
    """PSNR and SSIM of every tool's predictions (and bicubic) against the HR evaluation tiles.

    Everything is in the HR image's normalised units (its 0.1/99.9 percentiles at 0/1),
    which every tool was trained in (PSSR2 in 255 times those), so the metrics use
    ``data_range=1`` as microsr.evaluate.metrics documents; ``psnr_affine`` first fits each
    prediction's gain and offset to the reference (``normalize_like``, CSBDeep's
    scale-invariant convention), which forgives intensity errors.
    """
    lr = np.load(folder / "eval_lr.npy")
    hr = np.load(folder / "eval_hr.npy")
    sources = np.load(folder / "eval_source.npy")
    bicubic = upscale(lr, SCALE)  # microsr's one bicubic baseline, PyTorch's bicubic in numpy
    predictions = {"bicubic": bicubic, **{name: np.load(folder / f"pred_{name}.npy") for name in names}}
    scores: dict[str, Any] = {}
    for name, prediction in predictions.items():
        per_tile = np.array([
            (metrics.psnr(h, p, data_range=1), metrics.ssim(h, p, data_range=1),
             metrics.psnr(h, metrics.normalize_like(p, h), data_range=1))
            for h, p in zip(hr, prediction)
        ])
        scores[name] = {
            "psnr": float(per_tile[:, 0].mean()), "ssim": float(per_tile[:, 1].mean()),
            "psnr_affine": float(per_tile[:, 2].mean()),
            "psnr_by_image": {image: float(per_tile[sources == i, 0].mean()) for i, image in enumerate(images)},
        }
    return scores


def run_quality(trained: list[str], minutes: float, runs: int, quick: bool) -> dict[str, Any]:
    """``runs`` independent rounds of data, training and evaluation (seed = round), and their summary.

    Each round degrades new training pairs and evaluation tiles and seeds every tool anew, so the
    spread covers both the data and the training; the tools train one after the other within a round.
    """
    rounds = []
    for seed in range(runs):
        folder = WORK / "quality"
        shutil.rmtree(folder, ignore_errors=True)
        data = make_quality_data(folder, n_pairs=128 if quick else 4096, draws=1 if quick else 4, seed=seed)
        print(f"quality run {seed + 1}/{runs}: {data['train_pairs']} training pairs, {data['eval_tiles']} evaluation "
              f"tiles, {minutes} min of training each", flush=True)
        training = run_training(folder, minutes, trained, seed=seed)
        rounds.append({"seed": seed, "training": training, "training_ratios": training_ratios(training),
                       "scores": evaluate(folder, trained, data["images"])})
    quality = {"data": data, "minutes": minutes, "runs": rounds}
    quality["summary"] = quality_summary(quality)
    return quality


def quality_runs(quality: dict[str, Any]) -> list[dict[str, Any]]:
    """The rounds of a quality comparison (results written before rounds existed hold one, unnamed)."""
    return quality.get("runs") or [{key: quality[key] for key in ("training", "training_ratios", "scores")}]


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def quality_summary(quality: dict[str, Any]) -> dict[str, Any]:
    """Median, minimum and maximum over the rounds of every score, per image, and of the training figures."""
    rounds = quality_runs(quality)
    summary: dict[str, Any] = {}
    for name in rounds[0]["scores"]:
        scores = [r["scores"][name] for r in rounds]
        entry = {key: _spread([s[key] for s in scores]) for key in QUALITY_KEYS}
        entry["psnr_by_image"] = {image: _spread([s["psnr_by_image"][image] for s in scores])
                                  for image in scores[0]["psnr_by_image"]}
        trained = [r["training"][name] for r in rounds if name in r["training"]]
        if trained:
            entry["steps"] = _spread([t["steps"] for t in trained])
            entry["images_per_s"] = _spread([t["images_per_s"] for t in trained])
            entry["train_seconds"] = _spread([t.get("loop_seconds", t["train_seconds"]) for t in trained])
            entry["equal_time"] = all(
                t.get("equal_time", abs(t.get("loop_seconds", t["train_seconds"]) / (60 * quality["minutes"]) - 1)
                      <= EQUAL_TIME_TOLERANCE) for t in trained)
        summary[name] = entry
    ratios = {label: _spread([r["training_ratios"][label]["tiles_per_s"] for r in rounds])
              for label in rounds[0]["training_ratios"]}
    return {"methods": summary, "training_ratios": ratios}


# --------------------------------------------------------------------------- report


def print_results(result: dict[str, Any]) -> None:
    for size, cases in result["speed"].items():
        print(f"\nx{SCALE} of {size}^2 -> {int(size) * SCALE}^2, medians over the runs")
        print("| configuration | runs | MP/s | network MP/s | network MP/s per tile pixel | peak RSS MB |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, case in cases.items():
            m = case["median"]
            print(f"| {name} | {len(case['runs'])} | {m['megapixels_per_s']:.3f} | "
                  f"{m['network_megapixels_per_s']:.3f} | {m['network_tile_megapixels_per_s']:.3f} | "
                  f"{m['peak_rss_mb']:.0f} |")
    print("\n| ratio | end to end | network | target | met |\n|---|---:|---:|---:|---|")
    for label, r in result["ratios"].items():
        print(f"| {label} | {r['end_to_end']:.2f} | {r['network']:.2f} | {r['target'] or '-'} | {r['met']} |")
    if result["controls"]:
        print("\n| venv (torch) | microsr resunet network MP/s, fp32 |\n|---|---:|")
        for tool, control in result["controls"].items():
            print(f"| {tool} ({control['runs'][0]['torch']}) | {control['median']['megapixels_per_s']:.3f} |")
    if result.get("quality"):
        print(f"\nquality over {len(quality_runs(result['quality']))} run(s): median (min-max)")
        print(readme_tables(result)["quality"])


LABELS = {
    "pssr_default": "PSSR2 `ResUNet()`", "pssr_small": "PSSR2 `ResUNet([32,64,128,256], depth=2)`",
    "care": "CAREamics CARE", "microsr_default": "microsr `resunet`",
    "microsr_matched": "microsr `resunet` widths [32,64,128,360]", "bicubic": "bicubic",
}
SPEED_LABELS = {
    "pssr_default": "PSSR2 `ResUNet()`", "pssr_small": "PSSR2 `ResUNet([32,64,128,256], depth=2)`",
    "care": "CAREamics CARE U-Net (on bicubic x4)", "microsr_default_auto": "microsr `resunet`, auto (bf16)",
    "microsr_default_fp32": "microsr `resunet`, fp32", "microsr_matched_auto": "microsr `resunet` widths "
    "[32,64,128,360], auto (bf16)", "microsr_matched_fp32": "microsr `resunet` widths [32,64,128,360], fp32",
}
RATIO_ROWS = (  # (label, microsr's configuration without precision, peer)
    ("default `resunet` / PSSR2 default", "microsr_default", "pssr_default"),
    ("matched (same size) / PSSR2 small", "microsr_matched", "pssr_small"),
    ("default `resunet` / CAREamics CARE", "microsr_default", "care"),
)


def _ratio(result: dict[str, Any], size: str, ours: str, peer: str, kind: str) -> str:
    ratio = result["ratios"].get(f"{size}: {ours} / {peer}")
    return "–" if ratio is None else f"{ratio[kind]:.1f}x"


def _cell(spread: dict[str, float], digits: int) -> str:
    """``median`` alone for one run, else ``median (min–max)``."""
    text = f"{spread['median']:.{digits}f}"
    return text if spread["n"] == 1 else f"{text} ({spread['min']:.{digits}f}–{spread['max']:.{digits}f})"


def readme_tables(result: dict[str, Any]) -> dict[str, str]:
    """The tables README.md and benchmarks/README.md publish, from a results JSON.

    ``speed_ratios``: microsr's MP/s over each peer's in bfloat16 (``auto`` on a CPU with
    AVX-512 BF16 or AMX) and in float32 (any CPU), side by side. ``quality``: the scores on each
    image, median and range over the runs, with the training each tool had.
    """
    rows = []
    for size in result["speed"]:
        for label, ours, peer in RATIO_ROWS:
            if f"{size}: {ours}_auto / {peer}" not in result["ratios"]:
                continue
            rows.append([f"{int(size)}² → {int(size) * SCALE}²: {label}",
                         *(_ratio(result, size, f"{ours}_{p}", peer, kind)
                           for kind in ("end_to_end", "network") for p in ("auto", "fp32"))])
    header = ["microsr / peer (MP/s)", "bfloat16, end to end", "float32, end to end", "bfloat16, network only",
              "float32, network only"]
    tables = {"speed_ratios": markdown_table(header, rows, align="lrrrr")}
    for size, cases in result["speed"].items():
        rows = []
        for name, case in cases.items():
            m, model = case["median"], case["runs"][0]["model"]
            rows.append([SPEED_LABELS.get(name, name), len(case["runs"]), f"{model['params'] / 1e6:.2f} M",
                         f"{model['flops_per_output_pixel'] / 1e3:.1f} k", f"{m['megapixels_per_s']:.3f}",
                         f"{m['network_megapixels_per_s']:.3f}", f"{m['network_tile_megapixels_per_s']:.3f}",
                         f"{m['peak_rss_mb']:.0f}"])
        header = ["configuration", "runs", "params", "FLOPs / out px", "MP/s (median)", "network MP/s",
                  "network MP/s per tile px", "peak RSS MB"]
        tables[f"speed_{size}"] = markdown_table(header, rows, align="lrrrrrrr")
    if result.get("quality"):
        quality = result["quality"]
        summary = quality.get("summary") or quality_summary(quality)
        images = list(summary["methods"]["bicubic"]["psnr_by_image"])
        rows = []
        for name, entry in summary["methods"].items():
            trained = "–"
            if "train_seconds" in entry:
                budget_note = " (stopped early)" if entry["train_seconds"]["median"] < 60 * quality["minutes"] else " (overran)"
                trained = _cell(entry["train_seconds"], 0) + ("" if entry["equal_time"] else budget_note)
            rows.append([LABELS.get(name, name), *(_cell(entry["psnr_by_image"][i], 2) for i in images),
                         _cell(entry["ssim"], 3), _cell(entry["psnr_affine"], 2),
                         "–" if "steps" not in entry else _cell(entry["steps"], 0), trained])
        names = {"filaments": "PSNR, synthetic filaments", "napari_pssr_small": "PSNR, real EM (PSSR tSEM)"}
        header = ["method", *(names.get(i, f"PSNR, {i}") for i in images), "SSIM", "PSNR, affine fit",
                  "training steps", f"training s (of {60 * quality['minutes']:.0f})"]
        tables["quality"] = markdown_table(header, rows, align="l" + "r" * (len(header) - 1))
        labels = {"microsr_matched / pssr_small": "microsr matched / PSSR2 small (same network size, tile and batch)",
                  "microsr_default / pssr_default": "microsr default / PSSR2 default"}
        rows = [[labels.get(label, label), _cell(spread, 2)] for label, spread in summary["training_ratios"].items()]
        tables["training_ratios"] = markdown_table(["training tiles/s, ratio", "value"], rows, align="lr")
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small images, one round, 15 s of training")
    parser.add_argument("--sizes", type=int, nargs="+", help="LR sides for the interleaved rounds (default 1024)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per size (default 3)")
    parser.add_argument("--configs", nargs="+", help="speed configurations to run (default: all)")
    parser.add_argument("--once", nargs="*", default=[], help="configurations run in the first round only")
    parser.add_argument("--large", type=int, help="LR side of the extra single-round case (default 2048; 0: none)")
    parser.add_argument("--large-configs", nargs="+",
                        default=["pssr_small", "care", "microsr_default_auto", "microsr_matched_auto"],
                        help="configurations run at --large")
    parser.add_argument("--minutes", type=float, help="training budget per tool (default 5)")
    parser.add_argument("--train", nargs="*",
                        default=["pssr_default", "pssr_small", "care", "microsr_default", "microsr_matched"],
                        help="tools to train for the quality comparison (none: skip it)")
    parser.add_argument("--quality-runs", type=int, help="independent quality runs (new degradations and seeds; "
                        "default 3, --quick 1): the tables give their median and range")
    parser.add_argument("--tables", action="store_true", help="only print the README tables from the JSON")
    parser.add_argument("--json", type=Path, help="where to write the results (default results_peers.json; "
                        "with --quick, .work/results_quick.json)")
    args = parser.parse_args()
    if args.tables:
        print_tables(readme_tables(json.loads((args.json or RESULTS).read_text())), __file__)
        return
    quick = args.quick
    sizes = args.sizes or ([256] if quick else [1024])
    rounds = args.rounds or (1 if quick else 3)
    large = args.large if args.large is not None else (0 if quick else 2048)
    minutes = args.minutes or (0.25 if quick else 5.0)
    output = args.json or (WORK / "results_quick.json" if quick else RESULTS)

    WORK.mkdir(exist_ok=True)
    started = time.monotonic()
    result: dict[str, Any] = {"machine": machine(), "quick": quick}
    configs = speed_configs(quick)
    chosen = {name: configs[name] for name in args.configs or configs}
    print(f"speed: sizes {sizes}, {rounds} rounds of {', '.join(chosen)} (once: {', '.join(args.once) or '-'})",
          flush=True)
    result["speed"], result["controls"] = run_speed(sizes, rounds, chosen, control_tiles=1 if quick else 2,
                                                    once=frozenset(args.once))
    if large:
        at_large = {name: configs[name] for name in args.large_configs if name in configs}
        print(f"speed: {large}^2, one round of {', '.join(at_large)}", flush=True)
        result["speed"].update(run_speed([large], 1, at_large, control_tiles=0)[0])
    result["ratios"] = speed_ratios(result["speed"])
    if args.train:
        result["quality"] = run_quality(args.train, minutes, args.quality_runs or (1 if quick else 3), quick)
    result["command"] = " ".join(sys.argv[1:])
    result["machine"]["loadavg_end"] = os.getloadavg()
    result["wall_clock_seconds"] = time.monotonic() - started
    output.write_text(json.dumps(result, indent=2) + "\n")
    print_results(result)
    print_tables(readme_tables(result), __file__)
    print(f"\nwall clock {result['wall_clock_seconds'] / 60:.1f} min; results in {output}")


if __name__ == "__main__":
    main()
