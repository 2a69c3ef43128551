"""Metrics checked against reference implementations and band-limited images.

References: NanoPyx 2.1.5 (decorrelation analysis and FRC / FIRE) and scikit-image
(PSNR, SSIM, NRMSE). MS-SSIM against pytorch_msssim is in tests/test_metrics.py.

Measured agreement (see :func:`microsr.evaluate.metrics.decorrelation` for why they differ):

- decorrelation on the 600 x 900 PSSR electron micrograph: 7.14 vs 7.03 pixels (1.6 %);
- decorrelation on clean band-limited images: NanoPyx reports its unfiltered peak
  minus 0.05, so its cut-off is 0.05 + one grid step (0.07) below microsr's, and
  microsr is the one that matches the band limit;
- FRC on pairs of noisy band-limited images: NanoPyx's FIRE times 256/252 (it divides
  ring radii by N - 4 instead of N) is within 2.4 % of microsr's over 24 pairs.
"""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity

from microsr.errors import InputError
from microsr.evaluate.metrics import decorrelation, frc, nrmse, psnr, ssim
from microsr.io import read_image

REAL_IMAGE = "napari_pssr/HR/small.tif"


def quiet_nanopyx(test):
    """Silence NanoPyx's import warnings that numba and OpenCL are missing (its
    pure-Python fallbacks are what these tests compare with)."""
    test = pytest.mark.filterwarnings("ignore:Numba is not installed:UserWarning")(test)
    return pytest.mark.filterwarnings("ignore:tap.*OpenCL:UserWarning")(test)


def _band_limited(cutoff, size=256, seed=0):
    """Unit-variance white noise keeping only frequencies below ``cutoff`` cycles per
    pixel (a sharp circular cut-off): nothing finer than ``1 / cutoff`` pixels."""
    rng = np.random.default_rng(seed)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size)))
    image = np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * (f < cutoff)).real
    return image / image.std()


def _noisy(image, std, seed):
    """``image`` plus independent white noise of standard deviation ``std``."""
    return image + std * np.random.default_rng(seed).standard_normal(image.shape)


def _one_thread(function):
    """``function`` run with one OpenMP thread: NanoPyx's parallel loops ran up to
    30 times slower with two on two busy cores. (threadpoolctl comes with NanoPyx,
    through scikit-learn.)"""
    from threadpoolctl import threadpool_limits

    def run(*args):
        with threadpool_limits(limits=1, user_api="openmp"):
            return function(*args)

    return run


@pytest.fixture
def nanopyx_decorrelation():
    """NanoPyx's decorrelation resolution of an image, in pixels."""
    module = pytest.importorskip("nanopyx.core.analysis.decorr")

    def resolution(image):
        analysis = module.DecorrAnalysis()
        analysis.run_analysis(image)
        return analysis.resolution

    return _one_thread(resolution)


@pytest.fixture
def nanopyx_fire():
    """NanoPyx's FRC resolution (FIRE number) of two images, in pixels; 0.0 if never crossed."""
    module = pytest.importorskip("nanopyx.core.analysis.frc")
    return _one_thread(lambda image1, image2: module.FIRECalculator().calculate_fire_number(image1, image2))


@pytest.fixture
def real_image(realdata):
    return np.asarray(read_image(realdata(REAL_IMAGE)).data, dtype=np.float64)


# --------------------------------------------------------------------------- decorrelation


@pytest.mark.parametrize("cutoff", [0.1, 0.125, 0.2, 0.3])
def test_decorrelation_recovers_a_sharp_band_limit(cutoff):
    result = decorrelation(_noisy(_band_limited(cutoff), 0.2, seed=1))
    assert result.resolution == pytest.approx(1 / cutoff, rel=0.15)
    # As documented: at the band limit (2 * cutoff of Nyquist) or at most one
    # step of the 50-radius grid above it.
    assert 2 * cutoff <= result.cutoff <= 2 * cutoff + 1 / 49


def test_decorrelation_resolution_coarsens_with_blur():
    base = _band_limited(0.3)
    blurred = [_noisy(gaussian_filter(base, sigma), 0.1, seed=1) for sigma in (0, 2, 4)]
    resolutions = [decorrelation(image).resolution for image in blurred]
    assert resolutions[0] == pytest.approx(1 / 0.3, rel=0.15)
    assert resolutions[0] < resolutions[1] < resolutions[2]


def test_decorrelation_pixel_size_scales_the_resolution_only():
    image = _noisy(_band_limited(0.2, size=128), 0.2, seed=1)
    in_pixels, in_nm = decorrelation(image), decorrelation(image, pixel_size=30.0)
    assert in_nm.resolution == pytest.approx(30.0 * in_pixels.resolution)
    assert in_nm.cutoff == in_pixels.cutoff
    assert np.array_equal(in_nm.correlation, in_pixels.correlation)


@pytest.mark.parametrize("seed", range(3))
def test_decorrelation_of_white_noise_is_not_determined(seed):
    # White noise has the same spectrum at every frequency, so the curve only
    # rises; NanoPyx returns an uninitialised float here, microsr None.
    result = decorrelation(np.random.default_rng(seed).standard_normal((128, 128)))
    assert result.resolution is None
    assert result.cutoff == 0.0
    assert np.all(np.diff(result.correlation) > 0)


def test_decorrelation_curve_is_sampled_from_0_to_nyquist():
    result = decorrelation(_noisy(_band_limited(0.2, size=64), 0.2, seed=1), radii=30)
    assert result.radii.shape == result.correlation.shape == (30,)
    assert result.radii[[0, -1]].tolist() == [0.0, 1.0]
    assert result.correlation[0] == 0.0  # the empty disk
    assert np.all((result.correlation >= 0) & (result.correlation <= 1))


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.ones((32, 32, 3)), "2-D"),
        (np.ones((12, 64)), "16 x 16"),
        (np.full((32, 32), 5.0), "constant"),
        (np.where(np.eye(32) > 0, np.nan, 1.0), "NaN"),
    ],
    ids=["3-D", "small", "constant", "nan"],
)
def test_decorrelation_rejects_unusable_images(image, match):
    with pytest.raises(InputError, match=match):
        decorrelation(image)


@pytest.mark.parametrize("kwargs", [{"pixel_size": 0.0}, {"pixel_size": -2.0}, {"radii": 5}, {"filters": 1}])
def test_decorrelation_rejects_bad_parameters(kwargs):
    with pytest.raises(InputError, match=next(iter(kwargs))):
        decorrelation(_band_limited(0.2, size=32), **kwargs)


@pytest.mark.parametrize("cutoff", [0.125, 0.2, 0.3])
@quiet_nanopyx
def test_decorrelation_against_nanopyx_on_band_limited_images(cutoff, nanopyx_decorrelation):
    image = _noisy(_band_limited(cutoff), 0.2, seed=1)
    ours, theirs = decorrelation(image), nanopyx_decorrelation(image)
    # NanoPyx's refined filters are sub-0.14-pixel blurs whose high-pass is float32
    # rounding noise, so it reports its unfiltered peak minus 0.05; microsr's
    # cut-off is that peak or one grid step above it.
    assert 0.05 <= ours.cutoff - 2 / theirs <= 0.05 + 1 / 49 + 1e-6
    assert abs(ours.resolution - 1 / cutoff) < abs(theirs - 1 / cutoff)


@quiet_nanopyx
@pytest.mark.realdata
def test_decorrelation_agrees_with_nanopyx_on_a_micrograph(real_image, nanopyx_decorrelation):
    ours = decorrelation(real_image)
    assert ours.resolution == pytest.approx(nanopyx_decorrelation(real_image), rel=0.05)
    # A fine-structured, noisy micrograph: a few pixels, clearly above the noise.
    assert 4 < ours.resolution < 12
    assert ours.amplitude > 0.3


# --------------------------------------------------------------------------- FRC


@quiet_nanopyx
@pytest.mark.parametrize("cutoff", [0.1, 0.2, 0.3])
@pytest.mark.parametrize("noise", [0.2, 1.0])
def test_frc_agrees_with_nanopyx_fire_where_the_curve_crosses(cutoff, noise, nanopyx_fire):
    structure = _band_limited(cutoff)
    pair = _noisy(structure, noise, seed=1), _noisy(structure, noise, seed=2)
    ours = frc(*pair).resolution
    # NanoPyx divides ring radii by N - 4 instead of N, making its resolution
    # finer by (N - 4) / N, and smooths the curve before looking for the crossing.
    assert nanopyx_fire(*pair) * 256 / 252 == pytest.approx(ours, rel=0.05)


def test_frc_ignores_a_constant_offset():
    # Camera offsets add a constant. NanoPyx subtracts no mean: on this pair it
    # gives 4.6, 4.2 and 2.7 pixels with offsets 0, 1e3 and 1e4.
    structure = _band_limited(0.2)
    pair = _noisy(structure, 0.5, seed=1), _noisy(structure, 0.5, seed=2)
    assert frc(*(image + 1e4 for image in pair)).resolution == pytest.approx(frc(*pair).resolution)


@quiet_nanopyx
def test_frc_that_never_crosses_is_none_where_nanopyx_says_zero(nanopyx_fire):
    # Structure at every frequency far above the Poisson noise: the curve stays
    # near 1 up to Nyquist, so the resolution is finer than the pixels can show.
    rng = np.random.default_rng(0)
    rate = 100 + 100 * rng.random((128, 128))
    pair = rng.poisson(rate).astype(float), rng.poisson(rate).astype(float)
    result = frc(*pair)
    assert result.correlation.min() > 0.5
    assert result.resolution is None
    assert nanopyx_fire(*pair) == 0.0


@quiet_nanopyx
@pytest.mark.realdata
def test_frc_of_a_bright_micrograph_never_crosses(real_image, nanopyx_fire):
    # Two Poisson exposures of the micrograph's centre at its own grey levels
    # (about 140 counts per pixel): the shared structure dominates up to Nyquist.
    rate = real_image[172:428, 322:578]
    rng = np.random.default_rng(0)
    pair = rng.poisson(rate).astype(float), rng.poisson(rate).astype(float)
    assert frc(*pair).resolution is None
    assert nanopyx_fire(*pair) == 0.0


# --------------------------------------------------------------------------- pixel-wise metrics


@pytest.fixture
def uint8_pair():
    """A uint8 reference spanning 40-200 (not the dtype's 0-255) and a noisy copy."""
    rng = np.random.default_rng(0)
    smooth = gaussian_filter(rng.random((64, 64)), 3)
    reference = np.rint(40 + 160 * (smooth - smooth.min()) / np.ptp(smooth)).astype(np.uint8)
    image = np.clip(reference + rng.normal(0, 8, reference.shape), 0, 255).astype(np.uint8)
    return reference, image


@pytest.mark.parametrize("data_range", [None, 255.0, 1000.0])
def test_psnr_and_ssim_match_scikit_image_with_the_same_data_range(uint8_pair, data_range):
    reference, image = uint8_pair
    span = data_range or 160.0  # the default is the reference's own span, never the dtype's
    as_float = reference.astype(float), image.astype(float)
    expected_psnr = peak_signal_noise_ratio(*as_float, data_range=span)
    expected_ssim = structural_similarity(*as_float, data_range=span)
    assert psnr(reference, image, data_range) == pytest.approx(expected_psnr)
    assert ssim(reference, image, data_range) == pytest.approx(expected_ssim)


def test_default_data_range_is_not_the_dtype_range(uint8_pair):
    reference, image = uint8_pair
    # scikit-image's default for uint8 is 255: 20 log10(255 / 160) = 4.05 dB higher.
    assert peak_signal_noise_ratio(reference, image) - psnr(reference, image) == pytest.approx(
        20 * np.log10(255 / 160)
    )


def test_nrmse_matches_scikit_image(uint8_pair):
    reference, image = uint8_pair
    expected = normalized_root_mse(reference.astype(float), image.astype(float))
    assert nrmse(reference, image) == pytest.approx(expected)
    assert 0.02 < expected < 0.1  # noise of std 8 on grey levels around 120
