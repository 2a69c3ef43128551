"""`microsr benchmark`: pairing, registration, scoring against baselines, the report folder and bad input."""

import csv
import json
import math
import re

import numpy as np
import pytest
from scipy import ndimage

from microsr.cli import main
from microsr.degrade import Degradation, Downsample, Poisson, preset
from microsr.degrade import degrade_image
from microsr.errors import InputError
from microsr.evaluate.baseline import upscale
from microsr.evaluate.benchmark import benchmark, register
from microsr.evaluate.score import score
from microsr.io import Image, read_image, write_image
from microsr.predict.restorer import Restorer, load_model
from microsr.samples import filaments
import microsr

METHODS = ["microsr", "bicubic", "bilinear"]
SHIFT = (0.4, -0.7)


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def _hr(seed, shape=(96, 128)):
    return Image(filaments(shape, seed=seed), "YX", pixel_size=20.0)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A x2 model trained for a few steps: enough to exercise the plumbing, not to beat bicubic."""
    folder = tmp_path_factory.mktemp("bench")
    write_image(folder / "train.tif", _hr(5, (96, 96)))
    config = {
        "data": {"hr": [str(folder / "train.tif")], "tile": 32, "batch_size": 2, "samples_per_epoch": 4,
                 "num_workers": 0},
        "scale": 2, "degradation": "poisson", "model": {"name": "resunet_small"}, "train": {"steps": 2},
    }
    microsr.train(config, folder / "model", progress=False)
    return folder / "model"


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """hr/{a,b}.tif and their x2 LR counterparts lr/{a,b}.tif.

    b is a's scene with an LR acquired (0.4, -0.7) HR pixels off, so the pairs differ only by that offset.
    """
    folder = tmp_path_factory.mktemp("pairs")
    (folder / "hr").mkdir()
    (folder / "lr").mkdir()
    hr = _hr(1)
    offset = hr.replace(data=ndimage.shift(hr.data.compute(), SHIFT, order=3, mode="nearest"))
    for name, source in (("a", hr), ("b", offset)):
        write_image(folder / "hr" / f"{name}.tif", hr)
        write_image(folder / "lr" / f"{name}.tif", degrade_image(source, preset("poisson", scale=2), seed=3))
    return folder


def _read_csv(path):
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


# --------------------------------------------------------------------------- pieces


@pytest.mark.parametrize("scale", [2, 4])
def test_registration_recovers_a_known_subpixel_shift(scale):
    hr = filaments((256, 256), seed=4).astype(float)
    shift = (0.35, -0.6)
    lr = Degradation((Downsample(scale),))(ndimage.shift(hr, shift, order=3, mode="nearest"))
    registration = register(upscale(lr, scale), hr, scale=scale)
    # The shift that moves the upscaled LR back onto the HR is the opposite of the one applied.
    assert registration.shift == pytest.approx((-shift[0], -shift[1]), abs=0.1)
    assert registration.border == 1 + 2 * scale
    assert registration.correlation > 0.9




def test_empty_folder_is_refused(model, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images in this folder"):
        benchmark(model, tmp_path / "empty", output=tmp_path / "report")
    assert not (tmp_path / "report").exists()


# --------------------------------------------------------------------------- bad pairs


def test_different_field_of_view_is_refused_with_the_correlation(model, pairs, tmp_path):
    (tmp_path / "lr").mkdir()
    write_image(tmp_path / "lr" / "a.tif", degrade_image(_hr(7), preset("poisson", scale=2), seed=0))
    with pytest.raises(InputError, match="do not show the same field of view") as error:
        benchmark(model, pairs / "hr" / "a.tif", tmp_path / "lr", tmp_path / "report")
    message = str(error.value)
    assert message.startswith("a: ")
    correlation = float(re.search(r"correlate at (?:only )?(-?\d+\.\d+)", message).group(1))
    assert abs(correlation) < 0.3
    assert not (tmp_path / "report").exists()


def test_partly_overlapping_fields_of_view_are_refused(model, pairs, tmp_path):
    hr = read_image(pairs / "hr" / "a.tif")
    lr = tmp_path / "a.tif"
    moved = hr.replace(data=np.roll(hr.data.compute(), 20, axis=1))  # 20 px is 16 % of the 128 px width
    write_image(lr, degrade_image(moved, preset("poisson", scale=2), seed=0))
    with pytest.raises(InputError, match=r"more than 10% of the 96 x 128 px image.*crop both") as error:
        benchmark(model, pairs / "hr" / "a.tif", lr, tmp_path / "report")
    shift = re.search(r"shift of \((-?\d+\.\d+), (-?\d+\.\d+)\) px", str(error.value)).groups()
    assert tuple(map(float, shift)) == pytest.approx((0, -20), abs=0.5)


def test_a_weak_correlation_is_refused():
    hr = filaments((128, 128), seed=4).astype(float)
    lr = Degradation((Downsample(2), Poisson(photons=2.0)))(hr / hr.max(), seed=0)
    with pytest.raises(InputError, match=r"correlate at only 0\.[0-8]\d \(at least 0\.9 expected\)"):
        register(upscale(lr, 2), hr, scale=2, min_correlation=0.9)


def test_size_ratio_that_is_not_the_model_scale_is_refused(model, pairs, tmp_path):
    lr = tmp_path / "a.tif"
    write_image(lr, degrade_image(_hr(1), preset("poisson", scale=4), seed=0))
    with pytest.raises(InputError, match=r"LR image is 24 x 32 and the HR 96 x 128 px.*upsamples x2"):
        benchmark(model, pairs / "hr" / "a.tif", lr, tmp_path / "report")


def test_semi_synthetic_needs_a_model_that_records_its_degradation(model, pairs, tmp_path):
    trained = load_model(model)
    real_pairs_model = Restorer(trained.module, {**trained.info, "degradation": None}, trained.path)
    with pytest.raises(InputError, match="records none; give the LR images with --lr"):
        benchmark(real_pairs_model, pairs / "hr", output=tmp_path / "report")


# --------------------------------------------------------------------------- results


def test_metrics_csv_has_a_row_per_image_and_method_and_the_summary_holds_their_means(model, pairs, tmp_path):
    result = benchmark(model, pairs / "hr", pairs / "lr", tmp_path / "report", vs=[model, model])
    methods = ["microsr", "model", "model-2", "bicubic", "bilinear"]
    rows = _read_csv(tmp_path / "report" / "metrics.csv")
    assert list(rows[0]) == ["image", "method", "psnr", "ssim", "nrmse", "resolution", "shift_y", "shift_x",
                             "registration_correlation"]
    assert [(r["image"], r["method"]) for r in rows] == [(i, m) for i in ("a", "b") for m in methods]
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))
    assert list(summary["methods"]) == methods and summary["resolution_unit"] == "nm"
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        for key in ("psnr", "ssim", "nrmse", "resolution"):
            assert summary["methods"][method][key] == pytest.approx(np.mean([float(r[key]) for r in mine]), rel=1e-12)
        assert summary["methods"][method]["images"] == 2
    # The same model under another name scores the same.
    for key in ("psnr", "ssim", "nrmse"):
        assert summary["methods"]["model"][key] == summary["methods"]["microsr"][key]
    # Registration finds b's offset (the opposite of the shift of its LR) and a's absence of one...
    a, b = (next(r for r in rows if r["image"] == n) for n in "ab")
    assert (float(b["shift_y"]), float(b["shift_x"])) == pytest.approx((-SHIFT[0], -SHIFT[1]), abs=0.15)
    assert (float(a["shift_y"]), float(a["shift_x"])) == pytest.approx((0, 0), abs=0.15)
    # ...and compensates it: every method scores the offset pair about as well as the aligned one.
    for method in methods:
        psnr = {r["image"]: float(r["psnr"]) for r in rows if r["method"] == method}
        assert psnr["b"] == pytest.approx(psnr["a"], abs=0.5), method
    assert summary["provenance"]["versions"]["microsr"] == microsr.__version__


def test_benchmark_rows_are_score_of_the_registered_outputs(model, pairs, tmp_path):
    """The benchmark scores with `evaluate.score.score` and the `evaluate.baseline.upscale` baselines, exactly."""
    result = benchmark(model, pairs / "hr" / "b.tif", pairs / "lr" / "b.tif", tmp_path / "report")
    hr = read_image(pairs / "hr" / "b.tif").data.compute()
    lr = read_image(pairs / "lr" / "b.tif").data.compute()
    registration = register(upscale(lr, 2), hr, scale=2)
    outputs = {"microsr": load_model(model).predict(lr), "bicubic": upscale(lr, 2),
               "bilinear": upscale(lr, 2, "bilinear")}
    for row in result.scores:
        expected = score(registration.apply(outputs[row.method]), registration.crop(hr))
        assert (row.psnr, row.ssim, row.nrmse) == pytest.approx(
            (expected.psnr, expected.ssim, expected.nrmse), abs=1e-6), row.method


def test_semi_synthetic_run_degrades_hr_as_microsr_degrade_would_and_says_so(model, pairs, tmp_path):
    result = benchmark(model, pairs / "hr" / "a.tif", output=tmp_path / "semi", seed=3)
    assert result.summary["semi_synthetic"] is True
    assert result.summary["provenance"]["seed"] == 3
    assert result.summary["provenance"]["degradation"] == load_model(model).info["degradation"]
    assert "Semi-synthetic benchmark" in (tmp_path / "semi" / "report.html").read_text()
    # The LR it made is the one `microsr degrade --seed 3` writes: scoring that file as a real pair agrees.
    lr = tmp_path / "a.tif"
    write_image(lr, degrade_image(read_image(pairs / "hr" / "a.tif"),
                                  Degradation.from_dict(result.summary["provenance"]["degradation"]), seed=3))
    real = benchmark(model, pairs / "hr" / "a.tif", lr, tmp_path / "real")
    assert real.summary["semi_synthetic"] is False
    assert real.scores == result.scores
    assert "Semi-synthetic" not in (tmp_path / "real" / "report.html").read_text()


def test_cli_writes_the_report_folder_and_refuses_to_replace_it(capsys, monkeypatch, model, pairs, tmp_path):
    output = tmp_path / "report"
    output.mkdir()  # an existing empty folder is fine
    command = ["benchmark", str(model), "--hr", str(pairs / "hr"), "--lr", str(pairs / "lr"), "-o", str(output),
               "--device", "cpu"]
    monkeypatch.setattr("sys.argv", ["microsr", *command])  # as the console script sees it
    code, out, err = run(capsys, *command)
    assert code == 0, err
    assert "bicubic" in out and "real pairs" in out
    rows = _read_csv(output / "metrics.csv")
    assert len(rows) == 2 * len(METHODS)
    summary = json.loads((output / "summary.json").read_text())
    assert summary["semi_synthetic"] is False
    assert summary["provenance"]["command"] == ["microsr", *command]
    html = (output / "report.html").read_text()
    assert "<table>" in html and html.count("data:image/png;base64,") == 2 * (2 * len(METHODS) + 2)
    for row in rows:
        assert f"{float(row['psnr']):.2f}" in html
    assert "Conventions" in html and "phase_cross_correlation" in html

    before = (output / "metrics.csv").read_bytes()
    code, _, err = run(capsys, "benchmark", model, "--hr", pairs / "hr", "--lr", pairs / "lr", "-o", output)
    assert code == 2 and "--overwrite" in err and (output / "metrics.csv").read_bytes() == before
    code, _, err = run(capsys, "benchmark", model, "--hr", pairs / "hr", "--lr", pairs / "lr", "-o", output,
                       "--overwrite", "--device", "cpu")
    assert code == 0, err


# --------------------------------------------------------------------------- real data


@pytest.mark.realdata
@pytest.mark.slow
def test_pssr_em_pair_bicubic_row_matches_an_independent_computation(capsys, realdata, tmp_path):
    """PSSR tSEM test image 56 (Fang et al. 2021, MIT): 2 nm HR and its 8 nm PSSR-crappified LR."""
    import torch
    import torch.nn.functional as F
    from scipy.signal.windows import tukey
    from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity
    from skimage.registration import phase_cross_correlation

    hr_file, lr_file = realdata("napari_pssr/HR/small.tif"), realdata("napari_pssr/LR/small.tif")
    config = {
        "data": {"hr": [str(hr_file)], "tile": 128, "batch_size": 4, "samples_per_epoch": 64, "num_workers": 0},
        "scale": 4, "degradation": "pssr", "model": {"name": "resunet_small"},
        "train": {"steps": 30, "lr": 2e-3, "seed": 0},
    }
    microsr.train(config, tmp_path / "model", progress=False)
    output = tmp_path / "report"
    code, out, err = run(capsys, "benchmark", tmp_path / "model", "--lr", lr_file, "--hr", hr_file, "-o", output,
                         "--pixel-size", "2", "--device", "cpu")
    assert code == 0, err
    rows = {r["method"]: r for r in _read_csv(output / "metrics.csv")}
    summary = json.loads((output / "summary.json").read_text())
    assert set(rows) == set(METHODS) and list(summary["methods"]) == METHODS
    assert summary["resolution_unit"] == "nm" and summary["provenance"]["hr_pixel_size_nm"] == 2.0
    assert "<table>" in (output / "report.html").read_text()
    print("\n" + "\n".join(f"{m}: PSNR {r['psnr']} SSIM {r['ssim']} NRMSE {r['nrmse']} resolution {r['resolution']} nm"
                           for m, r in rows.items()))

    # The bicubic row, recomputed from the documented conventions with PyTorch's bicubic and scikit-image.
    hr = read_image(hr_file).data.compute().astype(np.float64)
    lr = read_image(lr_file).data.compute().astype(np.float64)
    bicubic = F.interpolate(torch.from_numpy(lr)[None, None], scale_factor=4, mode="bicubic",
                            align_corners=False)[0, 0].numpy()

    def taper(x):
        return (x - x.mean()) * np.outer(tukey(x.shape[0], 0.25), tukey(x.shape[1], 0.25))

    shift = phase_cross_correlation(taper(hr), taper(bicubic), upsample_factor=20, normalization=None)[0]
    border = math.ceil(np.abs(shift).max()) + 2 * 4
    inside = (slice(border, -border), slice(border, -border))
    moved = ndimage.shift(bicubic, shift, order=3, mode="nearest")[inside]
    reference = hr[inside]
    low, high = np.percentile(reference, [0.1, 99.9])
    reference = (reference - low) / (high - low)
    design = np.stack([moved.ravel(), np.ones(moved.size)], axis=1)
    fitted = (design @ np.linalg.lstsq(design, reference.ravel(), rcond=None)[0]).reshape(reference.shape)
    expected = {
        "psnr": peak_signal_noise_ratio(reference, fitted, data_range=1),
        "ssim": structural_similarity(reference, fitted, data_range=1),
        "nrmse": normalized_root_mse(reference, fitted),
    }
    assert (float(rows["bicubic"]["shift_y"]), float(rows["bicubic"]["shift_x"])) == pytest.approx(tuple(shift))
    for key, value in expected.items():
        assert float(rows["bicubic"][key]) == pytest.approx(value, rel=1e-3), key
