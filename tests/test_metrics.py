"""Evaluation metrics, checked against what theory predicts for synthetic images."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from microsr.errors import InputError
from microsr.evaluate.metrics import (
    error_map,
    frc,
    ms_ssim,
    normalize_like,
    normalize_percentile,
    nrmse,
    psnr,
    ssim,
)
from microsr.models import losses


def _smooth(shape=(64, 64), sigma=2.0, seed=0):
    """A random structure with values roughly in [-1, 1]."""
    image = gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma)
    return image / np.abs(image).max()


# --------------------------------------------------------------------------- pixel-wise metrics


@pytest.mark.parametrize("data_range", [None, 10.0])
def test_psnr_of_gaussian_noise_is_20_log10_range_over_sigma(data_range):
    sigma, full_range = 0.05, 2.0
    # A ramp from 0 to full_range, so the default data range is exactly full_range.
    reference = np.tile(np.linspace(0, full_range, 256), (256, 1))
    noisy = reference + np.random.default_rng(0).normal(0, sigma, reference.shape)
    expected = 20 * np.log10((data_range or full_range) / sigma)
    assert psnr(reference, noisy, data_range=data_range) == pytest.approx(expected, abs=0.1)


def test_identical_images_score_perfectly():
    reference = _smooth()
    assert ssim(reference, reference) == pytest.approx(1.0)
    assert ms_ssim(reference, reference) == pytest.approx(1.0)
    assert nrmse(reference, reference) == 0.0
    assert psnr(reference, reference) == np.inf


def test_similarity_falls_with_noise():
    reference = _smooth()
    noisy = reference + np.random.default_rng(1).normal(0, 0.2, reference.shape)
    assert ssim(reference, noisy) < 0.9
    assert ms_ssim(reference, noisy) < 0.95


def test_nrmse_is_noise_rms_over_reference_rms():
    reference = 1 + _smooth((256, 256))
    noise = np.random.default_rng(2).normal(0, 0.1, reference.shape)
    expected = 0.1 / np.sqrt(np.mean(reference**2))
    assert nrmse(reference, reference + noise) == pytest.approx(expected, rel=0.02)


def test_ms_ssim_matches_pytorch_msssim_with_data_range():
    pytorch_msssim = pytest.importorskip("pytorch_msssim")
    reference = 100 + 50 * _smooth((192, 192))
    image = reference + np.random.default_rng(3).normal(0, 10, reference.shape)
    expected = pytorch_msssim.ms_ssim(
        torch.from_numpy(image)[None, None], torch.from_numpy(reference)[None, None], data_range=200.0
    )
    assert ms_ssim(reference, image, data_range=200.0) == pytest.approx(expected.item(), abs=1e-5)


@pytest.mark.parametrize("shape", [(200, 180), (96, 101), (47, 48), (24, 31), (16, 17), (9, 12), (5, 6)])
def test_numpy_ms_ssim_equals_the_training_loss_at_every_number_of_scales(shape):
    """The scorer's numpy MS-SSIM and the torch loss differ by float32 rounding only (1e-5), whatever the size."""
    reference = 100 + 50 * _smooth(shape, sigma=1.0, seed=4)
    image = reference + np.random.default_rng(5).normal(0, 15, shape)
    as_batch = lambda x: torch.from_numpy(x / 200.0)[None, None]  # noqa: E731
    expected = losses.ms_ssim(as_batch(image), as_batch(reference)).item()
    assert ms_ssim(reference, image, data_range=200.0) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    "metric", [psnr, ssim, ms_ssim, nrmse, frc, error_map, normalize_like], ids=lambda f: f.__name__
)
def test_shape_mismatch_names_both_shapes(metric):
    with pytest.raises(InputError, match=r"\(32, 32\).*\(32, 40\)"):
        metric(np.ones((32, 32)), np.ones((32, 40)))


def test_constant_reference_needs_an_explicit_data_range():
    with pytest.raises(InputError, match="data_range"):
        psnr(np.ones((8, 8)), np.zeros((8, 8)))
    assert psnr(np.ones((8, 8)), np.zeros((8, 8)), data_range=1.0) == pytest.approx(0.0)


# --------------------------------------------------------------------------- normalisation


def test_normalize_like_recovers_an_affine_map():
    x = _smooth()
    assert np.allclose(normalize_like(x, -3.5 * x + 12.0), -3.5 * x + 12.0, atol=1e-5)


def test_normalize_like_residual_is_orthogonal_to_the_fit():
    # The least-squares conditions: the residual has zero mean and no correlation
    # with the prediction, so no other gain or offset lowers the error.
    prediction, reference = _smooth(seed=4), 5 * _smooth(seed=5) + 2
    residual = reference - normalize_like(prediction, reference)
    assert residual.mean() == pytest.approx(0, abs=1e-5)
    assert np.mean(residual * prediction) == pytest.approx(0, abs=1e-5)


def test_normalize_like_of_a_constant_is_the_reference_mean():
    reference = _smooth()
    assert np.allclose(normalize_like(np.full((64, 64), 3.0), reference), reference.mean())


def test_normalize_percentile_maps_the_percentiles_to_0_and_1():
    image = np.random.default_rng(6).gamma(2.0, 100.0, (128, 128))
    normalized = normalize_percentile(image, low=2, high=98)
    assert normalized.dtype == np.float32
    assert np.percentile(normalized, [2, 98]) == pytest.approx([0, 1], abs=1e-6)


def test_normalize_percentile_of_a_constant_is_zero():
    assert not normalize_percentile(np.full((4, 4), 7.0)).any()


# --------------------------------------------------------------------------- FRC


def _blurred_pair(sigma, size=256, background=200.0, amplitude=200.0, seed=0):
    """Two Poisson realisations of white noise blurred with a Gaussian of ``sigma`` pixels."""
    rng = np.random.default_rng(seed)
    rate = background + amplitude * gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
    rate = np.clip(rate, 0, None)
    return rng.poisson(rate).astype(float), rng.poisson(rate).astype(float)


def _expected_frc_resolution(sigma, background=200.0, amplitude=200.0):
    """Where FRC = SNR / (1 + SNR) falls to 1/7, i.e. where the SNR per frequency is 1/6.

    The signal spectrum is amplitude**2 * exp(-4 pi**2 sigma**2 f**2) (white noise
    of unit variance through the Gaussian), the Poisson noise spectrum is flat at
    the mean rate ``background``.
    """
    snr_at_zero = amplitude**2 / background
    return 2 * np.pi * sigma / np.sqrt(np.log(6 * snr_at_zero))


@pytest.mark.parametrize("seed", [0, 1])
def test_frc_resolution_follows_the_blur(seed):
    resolutions = [frc(*_blurred_pair(sigma, seed=seed)).resolution for sigma in (1.5, 3.0)]
    assert resolutions[1] > 1.5 * resolutions[0]
    for sigma, resolution in zip((1.5, 3.0), resolutions):
        assert resolution == pytest.approx(_expected_frc_resolution(sigma), rel=0.2)


def test_frc_of_identical_images_never_crosses():
    image = np.random.default_rng(7).random((64, 64))
    result = frc(image, image)
    assert np.allclose(result.correlation, 1)
    assert result.resolution is None


@pytest.mark.parametrize("seed", range(4))
def test_frc_of_independent_noise_resolves_nothing(seed):
    # No shared structure: the correlation scatters around 0 with a spread of
    # about 1 / sqrt(pixels in the ring), so the curve is below 1/7 from (nearly)
    # the first ring and the resolution is of the order of the field of view.
    rng = np.random.default_rng(seed)
    result = frc(rng.random((128, 128)), rng.random((128, 128)))
    assert abs(result.correlation.mean()) < 0.03
    assert result.resolution > 128 / 8


def test_frc_pixel_size_scales_frequencies_and_resolution():
    pair = _blurred_pair(2.0, size=128)
    in_pixels, in_nm = frc(*pair), frc(*pair, pixel_size=30.0)
    assert np.allclose(in_nm.frequencies * 30.0, in_pixels.frequencies)
    assert np.allclose(in_nm.correlation, in_pixels.correlation)
    assert in_nm.resolution == pytest.approx(30.0 * in_pixels.resolution)


def test_frc_rings_reach_nyquist_and_crop_to_the_central_square():
    image1, image2 = _blurred_pair(2.0, size=80)
    result = frc(image1[:, 8:72], image2[:, 8:72])
    assert result.frequencies[0] == 1 / 64 and result.frequencies[-1] == 0.5
    wide = frc(image1[8:72], image2[8:72])  # 64 x 80, cropped to the same 64 x 64
    assert np.allclose(wide.correlation, result.correlation)


def test_frc_rejects_constant_images():
    with pytest.raises(InputError, match="constant"):
        frc(np.ones((16, 16)), np.random.default_rng(0).random((16, 16)))


# --------------------------------------------------------------------------- error map


def test_error_map_ignores_an_affine_intensity_change():
    reference = _smooth()
    result = error_map(reference, 4.0 * reference + 100.0)
    assert result.rse == pytest.approx(0, abs=1e-9)
    assert result.rsp == pytest.approx(1)
    assert np.abs(result.map).max() < 1e-6


def test_error_map_peaks_at_a_hallucinated_spot():
    reference = _smooth()
    image = 4.0 * reference + 100.0
    image[40, 20] += 20.0
    result = error_map(reference, image)
    assert np.unravel_index(np.argmax(result.map), result.map.shape) == (40, 20)
    assert result.rse > 0.01
    assert result.rsp < 0.99
