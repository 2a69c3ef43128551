"""Degradation fitting: known parameters come back, the YAML feeds training, real data gives sane fits, the CLI."""

import re

import numpy as np
import pytest
import tifffile
from scipy.ndimage import gaussian_filter

from microsr.cli import main
from microsr.config import load_config
from microsr.data.datasets import DegradedPairs
from microsr.data.normalize import PercentileNormalizer
from microsr.degrade import Blur, Degradation, Downsample, Gaussian, Poisson, load_degradation
from microsr.errors import InputError
from microsr.fit import fit_degradation, fit_noise
from microsr.io import Image, read_image, write_image
from microsr.samples import filaments

TRUTH = {"blur_sigma": 2.0, "photons": 50.0, "read_noise": 0.05}


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def synthetic_pair(size=512, scale=4, seed=1):
    """Filaments HR (uint16) and an LR made from it by a known degradation, stored as uint16 counts."""
    hr = filaments((size, size), seed=3)
    truth = Degradation((Blur(sigma=TRUTH["blur_sigma"]), Downsample(scale), Poisson(photons=TRUTH["photons"]),
                         Gaussian(sigma=TRUTH["read_noise"])))
    lr = truth(PercentileNormalizer().fit(hr)(hr), seed=seed)
    # The camera's own gain and offset: the fit must see through the LR's different units.
    lr = np.round(4000 * lr + 1000).astype(np.uint16)
    return Image(hr, "YX", pixel_size=20.0), Image(lr, "YX", pixel_size=20.0 * scale)


@pytest.fixture(scope="module")
def pair_fit():
    hr, lr = synthetic_pair()
    return fit_degradation(hr, lr, trials=12, seed=0)


def test_fit_recovers_blur_photons_and_read_noise_within_20_percent(pair_fit):
    assert pair_fit.scale == 4
    for name, true in TRUTH.items():
        value, error = pair_fit.parameters[name]
        assert value == pytest.approx(true, rel=0.2), name
        # The uncertainty is honest: the truth lies within a few standard errors, which are small.
        assert abs(value - true) < 4 * error < 0.2 * true, name


def test_fitted_degradation_reproduces_the_lr(pair_fit):
    hr, lr = synthetic_pair()
    hr_norm = PercentileNormalizer().fit(hr)(hr.data.compute())
    lr_norm = PercentileNormalizer().fit(lr)(lr.data.compute())
    noiseless = pair_fit.degradation.without_noise()(hr_norm)
    assert np.std(pair_fit.degradation(hr_norm, seed=5) - noiseless) == pytest.approx(
        np.std(lr_norm - noiseless), rel=0.05)
    # The intensity step maps to the LR's own normalisation: the noiseless part matches it.
    assert np.mean(lr_norm - noiseless) == pytest.approx(0, abs=0.01)
    kinds = [step.kind for step in pair_fit.degradation.steps]
    assert kinds == ["blur", "downsample", "poisson", "gaussian", "intensity"]


def test_fitted_yaml_loads_back_and_makes_training_pairs(pair_fit, tmp_path):
    path = tmp_path / "fitted.yaml"
    path.write_text(pair_fit.to_yaml())
    assert load_degradation(path) == pair_fit.degradation
    text = path.read_text()
    assert "# command: microsr.fit.fit_degradation(scale=4, trials=12, seed=0)" in text
    assert re.search(r"^#   blur_sigma: [\d.]+ ± [\d.]+ \(HR px\)$", text, re.MULTILINE)
    # What `microsr train --hr hr.tif --degradation fitted.yaml --scale 4` does before it builds the model.
    hr = tmp_path / "hr.tif"
    write_image(hr, Image(filaments((256, 256), seed=5), "YX", pixel_size=20.0))
    cfg = load_config({"data": {"hr": [str(hr)]}, "scale": 4, "degradation": str(path)})
    degradation = load_degradation(cfg.degradation, scale=cfg.scale)
    assert degradation == pair_fit.degradation
    inputs, target = DegradedPairs([read_image(hr)], degradation, tile=64)[0]
    assert tuple(inputs.shape) == (1, 16, 16) and tuple(target.shape) == (1, 64, 64)
    assert np.isfinite(inputs.numpy()).all()


def test_pairs_of_several_images_and_planes_fit_together():
    hr_a, lr_a = synthetic_pair(size=256, seed=1)
    stack_hr = Image(np.stack([filaments((256, 256), seed=s) for s in (3, 4)]), "ZYX", pixel_size=20.0)
    truth = Degradation((Blur(sigma=2.0), Downsample(4), Poisson(photons=50.0), Gaussian(sigma=0.05)))
    stack_lr = truth(PercentileNormalizer().fit(stack_hr)(stack_hr.data.compute()), seed=2)
    fit = fit_degradation([hr_a, stack_hr], [lr_a, stack_lr], trials=12)
    assert len(fit.sources) == 4
    assert fit.parameters["photons"][0] == pytest.approx(50.0, rel=0.2)


@pytest.mark.parametrize(
    "hr_shape, lr_shape, scale, message",
    [
        ((100, 100), (30, 30), None, "not related by an integer scale"),
        ((100, 100), (200, 200), None, "swapped"),
        ((600, 900), (150, 225), 3, "at scale 3 the LR should be 200×300"),
    ],
)
def test_size_mismatch_is_an_input_error(hr_shape, lr_shape, scale, message):
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match=message):
        fit_degradation(rng.random(hr_shape), rng.random(lr_shape), scale=scale, trials=1)


def test_scale_is_inferred_with_ceil_sizes():
    hr = gaussian_filter(np.random.default_rng(0).random((130, 101)), 2)
    lr = Degradation((Downsample(4), Gaussian(sigma=0.01)))(hr, seed=0)
    assert lr.shape == (33, 26)
    assert fit_degradation(hr, lr, trials=3).scale == 4


def test_fit_noise_recovers_a_known_poisson_gaussian_model_within_20_percent():
    rng = np.random.default_rng(0)
    field = gaussian_filter(rng.normal(size=(256, 256)), 6)
    photons = 200 * (field - field.min()) / np.ptp(field)
    gain, read = 2.0, 15.0
    image = gain * rng.poisson(photons) + rng.normal(0, read, photons.shape)  # var = gain * I + read**2
    fit = fit_noise(image, scale=2)
    assert fit.parameters["a"][0] == pytest.approx(gain, rel=0.2)
    assert fit.parameters["b"][0] == pytest.approx(read**2, rel=0.2)
    # Normalised units: y = (I - lo) / (hi - lo), so the variance scales by 1 / (hi - lo)**2.
    lo, hi = fit.normalizer.lo, fit.normalizer.hi
    assert fit.parameters["a_normalised"][0] == pytest.approx(fit.parameters["a"][0] / (hi - lo))
    assert fit.parameters["photons"][0] == pytest.approx((hi - lo) / fit.parameters["a"][0])
    assert [s.kind for s in fit.degradation.steps] == ["blur", "downsample", "poisson", "gaussian"]
    assert fit.degradation.scale == 2
    assert fit.points.shape == (16, 3)


def test_fit_noise_ignores_saturated_pixels():
    rng = np.random.default_rng(1)
    field = gaussian_filter(rng.normal(size=(256, 256)), 6)
    signal = 20 + 400 * (field - field.min()) / np.ptp(field)
    image = np.clip(np.round(signal + rng.normal(0, 6.0, signal.shape)), 0, 255).astype(np.uint8)
    assert (image == 255).mean() > 0.3
    fit = fit_noise(image)
    # Gaussian noise of std 6 (and rounding): the variance is 36 everywhere, not 0 where it saturates.
    a, b = fit.parameters["a"][0], fit.parameters["b"][0]
    assert b == pytest.approx(36 + 1 / 12, rel=0.2)
    assert abs(a) * 255 < 0.2 * b


@pytest.mark.realdata
def test_noise_model_of_real_8nm_em(realdata):
    """Four real 4106×2126 SEM images (PSSR, Fang et al. 2021, MIT), 64 sampled tiles."""
    folder = realdata("em_lr_8nm")
    images = [read_image(p) for p in sorted(folder.glob("*.tif"))]
    fit = fit_noise(images, max_tiles=64)
    print("\n".join(f"{name}: {value} ({unit})" for name, value, unit in fit.summary()))
    names = ["a", "b", "a_normalised", "b_normalised", "read_noise"]
    assert np.isfinite([fit.parameters[name] for name in names]).all()
    (a, da), (b, db) = fit.parameters["a_normalised"], fit.parameters["b_normalised"]
    # A variance cannot be negative anywhere in the intensity range, 0 (dark) to 1 (bright).
    assert b + 2 * db >= 0 and a + b + 2 * (da + db) >= 0
    assert 0 < fit.parameters["read_noise"][0] < 0.5


@pytest.mark.realdata
def test_fit_to_pssr_semi_synthetic_pair_reproduces_its_noise(realdata):
    """tSEM test image 56 (PSSR, Fang et al. 2021, MIT): LR made from HR by PSSR's crappifier."""
    hr = read_image(realdata("napari_pssr/HR/small.tif"))
    lr = read_image(realdata("napari_pssr/LR/small.tif"))
    fit = fit_degradation(hr, lr, trials=12)
    print(fit.to_yaml())
    hr_norm = PercentileNormalizer().fit(hr)(hr.data.compute())
    lr_norm = PercentileNormalizer().fit(lr)(lr.data.compute())
    noiseless = fit.degradation.without_noise()(hr_norm)
    simulated = fit.degradation(hr_norm, seed=7)
    assert np.std(simulated - noiseless) == pytest.approx(np.std(lr_norm - noiseless), rel=0.3)


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def pair_folders(tmp_path):
    for name, seed in (("cell_a", 1), ("cell_b", 2)):
        hr, lr = synthetic_pair(size=256, seed=seed)
        for folder, image in (("hr", hr), ("lr", lr)):
            (tmp_path / folder).mkdir(exist_ok=True)
            write_image(tmp_path / folder / f"{name}.tif", image)
    return tmp_path / "lr", tmp_path / "hr"


def test_cli_fits_pairs_from_folders_and_writes_loadable_yaml(capsys, pair_folders, tmp_path):
    lr, hr = pair_folders
    output = tmp_path / "fitted.yaml"
    code, out, err = run(capsys, "fit-degradation", "--lr", lr, "--hr", hr, "-o", output, "--trials", "12")
    assert code == 0, err
    degradation = load_degradation(output)
    assert degradation.scale == 4
    photons = next(step.photons for step in degradation.steps if step.kind == "poisson")
    assert photons == pytest.approx(50.0, rel=0.2)
    assert f"# command: microsr fit-degradation --lr {lr} --hr {hr} --trials 12 --seed 0" in output.read_text()
    assert "blur_sigma" in out and "±" in out
    before = output.read_text()
    code, _, err = run(capsys, "fit-degradation", "--lr", lr, "--hr", hr, "-o", output, "--trials", "12")
    assert code == 2 and "--overwrite" in err and output.read_text() == before


def test_cli_fits_noise_from_lr_alone(capsys, tmp_path):
    rng = np.random.default_rng(0)
    field = gaussian_filter(rng.normal(size=(256, 256)), 6)
    image = np.round(2.0 * rng.poisson(200 * (field - field.min()) / np.ptp(field)) + 100).astype(np.uint16)
    tifffile.imwrite(tmp_path / "lr.tif", image)
    output = tmp_path / "noise.yaml"
    code, out, err = run(capsys, "fit-degradation", "--lr", tmp_path / "lr.tif", "-o", output, "--scale", "2")
    assert code == 0, err
    assert load_degradation(output).scale == 2
    assert "var =" in out and "noise model" in output.read_text()
    # Training with the file follows its scale unless told otherwise, also from a config file beside it.
    (tmp_path / "run.yaml").write_text("data: {hr: [hr.tif]}\ndegradation: noise.yaml\n")
    assert load_config(tmp_path / "run.yaml").scale == 2
    assert load_config({"data": {"hr": ["hr.tif"]}, "degradation": str(output), "scale": 4}).scale == 4


def _unmatched(lr, hr):
    (hr / "cell_b.tif").rename(hr / "cell_c.tif")
    return ["--lr", lr, "--hr", hr]


def _ratio(lr, hr):
    tifffile.imwrite(lr.parent / "odd_lr.tif", np.zeros((30, 30), np.uint16))
    tifffile.imwrite(lr.parent / "odd_hr.tif", np.zeros((100, 100), np.uint16))
    return ["--lr", lr.parent / "odd_lr.tif", "--hr", lr.parent / "odd_hr.tif"]


def _no_partner(lr, hr):
    (hr / "cell_a.tif").unlink()
    return ["--lr", lr / "cell_a.tif", "--hr", hr]


def _empty(lr, hr):
    (lr.parent / "empty").mkdir()
    return ["--lr", lr.parent / "empty", "--hr", hr]


# (case, arguments from the pair folders, text the one-line message must contain)
BAD_CLI = [
    ("size ratio not an integer", _ratio, "not related by an integer scale"),
    ("scale does not match", lambda lr, hr: ["--lr", lr, "--hr", hr, "--scale", "3"], "at scale 3"),
    ("empty folder", _empty, "no images in this folder"),
    ("unmatched names", _unmatched, "cell_b.tif"),
    ("missing file", lambda lr, hr: ["--lr", lr / "nope.tif", "--hr", hr / "cell_a.tif"], "nope.tif"),
    ("file without a partner in the folder", _no_partner, "cell_a.tif has no HR image named 'cell_a'"),
]


@pytest.mark.parametrize("make, expected", [c[1:] for c in BAD_CLI], ids=[c[0] for c in BAD_CLI])
def test_cli_bad_input_exits_2_with_one_line(capsys, pair_folders, tmp_path, make, expected):
    argv = make(*pair_folders)
    code, _, err = run(capsys, "fit-degradation", *argv, "-o", tmp_path / "out.yaml", "--trials", "2")
    assert code == 2
    assert expected in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out.yaml").exists()


def test_output_must_be_yaml(capsys, pair_folders, tmp_path):
    lr, hr = pair_folders
    code, _, err = run(capsys, "fit-degradation", "--lr", lr, "--hr", hr, "-o", tmp_path / "fitted.tif")
    assert code == 2 and ".yaml" in err
