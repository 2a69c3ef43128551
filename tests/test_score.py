"""One scorer and one bicubic baseline: `evaluate.score.score`, `evaluate.baseline.upscale`, and every entry point
that scores (napari Compare, the demo, training validation, `microsr sim evaluate`) giving their numbers."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.transform import resize
from torch import nn
from torch.utils.data import TensorDataset

from microsr.degrade import Degradation, Downsample, Poisson
from microsr.demo import score_against_bicubic
from microsr.errors import InputError
from microsr.evaluate.baseline import upscale
from microsr.evaluate.metrics import normalize_like, normalize_percentile, nrmse, psnr, ssim
from microsr.evaluate.score import score
from microsr.evaluate.sim import compare_sim
from microsr.samples import filaments
from microsr.sim.wiener import reconstruct_sim
from microsr.optics import OTF
from microsr.simulate.sim import SIMSimulation, simulate_field
from microsr.training import _bicubic_psnr, _tile_scores, _validate

SCALE = 2


@pytest.fixture(scope="module")
def pair():
    """A x2 LR image, a prediction from it (bicubic, blurred, in other units) and the HR reference, 64 x 64."""
    reference = filaments((64, 64), seed=3).astype(np.float64)
    lr = Degradation((Downsample(SCALE), Poisson(photons=50.0)))(reference / reference.max(), seed=0)
    prediction = 7.0 * ndimage.gaussian_filter(upscale(lr, SCALE), 0.7) + 30.0
    return lr.astype(np.float32), prediction.astype(np.float32), reference.astype(np.float32)


# --------------------------------------------------------------------------- the baseline


@pytest.mark.parametrize("method", ["bicubic", "bilinear"])
@pytest.mark.parametrize(("shape", "scale"), [((9, 14), 2), ((3, 11, 8), 4), ((2, 2), 8), ((16, 5), 1)])
def test_upscale_is_pytorchs_interpolation(method, shape, scale):
    x = np.random.default_rng(0).random(shape)
    batch = torch.from_numpy(x.reshape(-1, 1, *shape[-2:]))
    expected = F.interpolate(batch, scale_factor=scale, mode=method, align_corners=False).numpy()
    # float32 output: rounding of values in [0, 1] stays under 1e-7; cubic overshoot stays near that range.
    np.testing.assert_allclose(upscale(x, scale, method), expected.reshape(upscale(x, scale, method).shape),
                               rtol=0, atol=2e-7)


def test_bilinear_is_scikit_images_linear_resize():
    x = np.random.default_rng(1).random((12, 20))
    expected = resize(x, (36, 60), order=1, mode="symmetric", anti_aliasing=False, preserve_range=True)
    np.testing.assert_allclose(upscale(x, 3, "bilinear"), expected, rtol=0, atol=2e-7)


@pytest.mark.parametrize("method", ["bicubic", "bilinear"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_upscale_centres_hr_blocks_on_lr_pixels(method, scale):
    ramp = np.arange(24.0)[None, :].repeat(4, axis=0)
    upscaled = upscale(ramp, scale, method)
    # LR pixel i covers HR pixels i*s .. i*s + s - 1: a symmetric kernel centred there averages a ramp back
    # to the LR pixel over its block (away from the edges); an offset of a fraction f of an LR pixel would
    # move every block mean by f.
    binned = upscaled[0].reshape(-1, scale).mean(axis=1)
    assert binned[2:-2] == pytest.approx(ramp[0, 2:-2], abs=1e-5)


def test_upscale_refuses_bad_arguments():
    with pytest.raises(InputError, match="unknown upscaling method 'lanczos'"):
        upscale(np.zeros((4, 4)), 2, "lanczos")
    with pytest.raises(InputError, match="scale must be a whole number"):
        upscale(np.zeros((4, 4)), 0)
    with pytest.raises(InputError, match="at least 2 axes"):
        upscale(np.zeros(4), 2)


# --------------------------------------------------------------------------- the scorer


def test_default_convention_is_percentile_reference_and_affine_fit(pair):
    _, prediction, reference = pair
    unit_reference = normalize_percentile(reference)
    fitted = normalize_like(prediction, unit_reference)
    result = score(prediction, reference)
    assert (result.psnr, result.ssim, result.nrmse) == (
        psnr(unit_reference, fitted, data_range=1.0), ssim(unit_reference, fitted, data_range=1.0),
        nrmse(unit_reference, fitted))
    np.testing.assert_array_equal(result.prediction, fitted)
    np.testing.assert_array_equal(result.reference, unit_reference)


def test_the_default_ignores_the_predictions_gain_and_offset_and_the_others_do_not(pair):
    _, prediction, reference = pair
    base = score(prediction, reference)
    moved = score(0.01 * prediction - 5, reference)
    assert (moved.psnr, moved.ssim, moved.nrmse) == pytest.approx((base.psnr, base.ssim, base.nrmse), rel=1e-5)
    # Each image by its own percentiles: no fit, so a prediction's own extremes set its scale.
    own = score(prediction, reference, normalization="percentile")
    assert own.psnr < base.psnr - 0.5
    # As given: the prediction's units are not the reference's, and the score says so.
    assert score(prediction, reference, normalization="none").psnr < base.psnr - 5


def test_none_uses_the_references_span_unless_told():
    reference = np.array([[0.0, 10.0] * 4] * 8)
    noisy = reference + 1.0
    assert score(noisy, reference, normalization="none").psnr == pytest.approx(20.0)
    assert score(noisy, reference, normalization="none", data_range=100.0).psnr == pytest.approx(40.0)


def test_score_refuses_what_it_cannot_score(pair):
    _, prediction, reference = pair
    with pytest.raises(InputError, match=r"prediction shape \(64, 64\) and reference shape \(32, 64\) differ"):
        score(prediction, reference[:32])
    with pytest.raises(InputError, match="reference is constant"):
        score(prediction, np.full_like(reference, 3.0))
    with pytest.raises(InputError, match="normalization 'zscore': choose one of fit, percentile, none"):
        score(prediction, reference, normalization="zscore")
    spoiled = prediction.copy()
    spoiled[5, 5] = np.nan
    with pytest.raises(InputError, match="prediction contains NaN or infinite values"):
        score(spoiled, reference)


def test_scoring_imports_no_torch():
    """Training validation imports the scorer; it must not need torch to score (or to be imported)."""
    code = ("import sys; import microsr.evaluate.score, microsr.evaluate.baseline, microsr.evaluate.metrics; "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --------------------------------------------------------------------------- every entry point


def _numbers(result):
    return {key: float(result[key] if isinstance(result, dict) else getattr(result, key)) for key in ("psnr", "ssim")}


def test_every_entry_point_gives_the_numbers_of_score(pair):
    lr, prediction, reference = pair
    expected = score(prediction, reference)
    expected_bicubic = score(upscale(lr, SCALE), reference)
    numbers = {"psnr": expected.psnr, "ssim": expected.ssim}

    # napari Compare (the widget calls this function in its worker; tests/test_napari.py runs the widget).
    pytest.importorskip("napari")
    from microsr.napari.compare import FIT, compare

    compared = compare(prediction, reference, FIT)
    assert _numbers(compared) == pytest.approx(numbers, abs=1e-6)
    assert compared["nrmse"] == pytest.approx(expected.nrmse, abs=1e-6)

    # The demo.
    demo = score_against_bicubic(lr, prediction, reference)
    assert _numbers(demo["microsr"]) == pytest.approx(numbers, abs=1e-6)
    assert _numbers(demo["bicubic"]) == pytest.approx(_numbers(expected_bicubic), abs=1e-6)

    # Training validation: a "network" that outputs its input, so the prediction is exactly ours.
    as_batch = lambda image: torch.from_numpy(image)[None, None]  # noqa: E731
    tiles = _tile_scores(as_batch(prediction).numpy(), as_batch(reference).numpy())
    assert len(tiles) == 1 and _numbers(tiles[0]) == pytest.approx(numbers, abs=1e-6)
    loss, val_psnr, val_ssim = _validate(nn.Identity(), TensorDataset(as_batch(prediction), as_batch(reference)),
                                         nn.L1Loss(), torch.device("cpu"), torch.float32, 1)
    assert {"psnr": val_psnr, "ssim": val_ssim} == pytest.approx(numbers, abs=1e-6)
    bicubic_psnr = _bicubic_psnr(TensorDataset(as_batch(lr), as_batch(reference)), SCALE)
    assert bicubic_psnr == pytest.approx(expected_bicubic.psnr, abs=1e-6)


def test_validation_leaves_out_constant_targets(pair):
    _, prediction, reference = pair
    predictions = np.stack([prediction, prediction])[:, None]
    targets = np.stack([reference, np.zeros_like(reference)])[:, None]
    assert [s.psnr for s in _tile_scores(predictions, targets)] == [score(prediction, reference).psnr]


def test_validation_scores_a_diverged_prediction_nan(pair):
    _, prediction, reference = pair
    diverged = np.full_like(prediction, np.inf)[None, None]
    assert np.isnan(_tile_scores(diverged, reference[None, None])[0].psnr)


def test_sim_evaluate_scores_with_score_and_the_bicubic_baseline():
    field = simulate_field(SIMSimulation(size=64, photons=2000.0), seed=0)
    rows = {row["method"]: row for row in compare_sim(field.raw, field.target, 3, 3, pixel_size=60.0, na=1.2,
                                                      wavelength=525.0)}
    wide_field = score(upscale(field.raw.mean(axis=0), 2), field.target)
    wiener = reconstruct_sim(field.raw, 3, 3, pixel_size=60.0, otf=OTF.model(1.2, 525.0), wiener=0.05)[0]
    classical = score(wiener, field.target)
    for method, expected in (("wide-field (bicubic)", wide_field), ("classical Wiener SIM", classical)):
        row = rows[method]
        assert (row["psnr"], row["ssim"], row["nrmse"]) == pytest.approx(
            (expected.psnr, expected.ssim, expected.nrmse), abs=1e-6), method
