"""Tests of the degradation pipeline; tolerances are a few standard errors from theory."""

import math
import pickle

import numpy as np
import pytest

from microsr.degrade import (
    PRESETS,
    Blur,
    Degradation,
    Downsample,
    Gaussian,
    Intensity,
    Poisson,
    SaltPepper,
    load_degradation,
    preset,
)
from microsr.errors import InputError

Z = 5  # tolerance in standard errors


def rng(seed=0):
    return np.random.default_rng(seed)


def second_moments(image):
    """Variance of ``image`` (a point-spread function) along Y and X about its centroid."""
    ys, xs = np.indices(image.shape)
    total = image.sum()
    cy, cx = (ys * image).sum() / total, (xs * image).sum() / total
    return ((ys - cy) ** 2 * image).sum() / total, ((xs - cx) ** 2 * image).sum() / total


def delta(size=81):
    image = np.zeros((size, size))
    image[size // 2, size // 2] = 1.0
    return image


def poisson_variance_se(variance, photons_at_mean, n):
    """Standard error of a sample variance of n scaled Poisson counts.

    The counts have mean ``photons_at_mean`` and kurtosis 3 + 1/photons_at_mean, so
    Var(s^2) ~= variance^2 * (2 + 1/photons_at_mean) / n.
    """
    return variance * math.sqrt((2 + 1 / photons_at_mean) / n)


# --- noise steps -------------------------------------------------------------------------


def test_poisson_mean_and_variance_match_shot_noise():
    photons, level = 50.0, 0.5
    out = Poisson(photons=photons)(np.full((256, 256), level), rng())
    n = out.size
    variance = level / photons
    assert abs(out.mean() - level) < Z * math.sqrt(variance / n)
    assert abs(out.var() - variance) < Z * poisson_variance_se(variance, level * photons, n)


def test_poisson_treats_negative_intensity_as_dark():
    assert np.all(Poisson(photons=100.0)(np.full((8, 8), -0.3), rng()) == 0)


def test_gaussian_std_matches_sigma():
    sigma = 0.05
    out = Gaussian(sigma=sigma)(np.full((256, 256), 0.3), rng())
    assert abs(out.mean() - 0.3) < Z * sigma / math.sqrt(out.size)
    assert abs(out.std() - sigma) < Z * sigma / math.sqrt(2 * out.size)


def test_salt_pepper_fractions_match_amount():
    amount, salt_fraction = 0.05, 0.3
    out = SaltPepper(amount=amount, salt_fraction=salt_fraction)(np.full((256, 256), 0.5), rng())
    hit = out != 0.5
    n, n_hit = out.size, int(hit.sum())
    assert set(np.unique(out[hit])) <= {0.0, 1.0}
    assert abs(n_hit / n - amount) < Z * math.sqrt(amount * (1 - amount) / n)
    salt = (out == 1.0).sum() / n_hit
    assert abs(salt - salt_fraction) < Z * math.sqrt(salt_fraction * (1 - salt_fraction) / n_hit)


# --- spatial steps -----------------------------------------------------------------------


def test_area_downsampling_gives_block_means_and_preserves_mean():
    x = rng().random((2, 8, 12))
    out = Downsample(4)(x, rng())
    assert out.shape == (2, 2, 3)
    np.testing.assert_allclose(out, x.reshape(2, 2, 4, 3, 4).mean(axis=(2, 4)), rtol=1e-12)
    assert out.mean() == pytest.approx(x.mean(), rel=1e-12)


def test_non_divisible_sizes_keep_the_edges():
    x = np.zeros((10, 13))
    x[:, -1] = 1.0
    for method in ("area", "bilinear"):
        out = Downsample(4, method=method)(x, rng())
        assert out.shape == (3, 4)
        # Mirroring includes the edge pixel, so the last 4-wide block holds the bright
        # column twice (mean 2/4); bilinear samples its centre, halfway between the two.
        np.testing.assert_allclose(out[:, -1], 2 / 4, err_msg=method)
        assert np.all(out[:, :-1] == 0), method


def test_bilinear_downsampling_acts_on_each_frame():
    x = rng().random((3, 16, 16))
    out = Downsample(4, method="bilinear")(x, rng())
    frames = [Downsample(4, method="bilinear")(frame, rng()) for frame in x]
    np.testing.assert_allclose(out, np.stack(frames), rtol=1e-12)
    np.testing.assert_allclose(Downsample(4, method="bilinear")(np.full((16, 16), 0.7), rng()), 0.7)


def test_blur_of_a_delta_has_variance_sigma_squared():
    sigma = 3.0
    moments = second_moments(Blur(sigma=sigma)(delta(), rng()))
    # scipy truncates the kernel at 4 sigma, which removes ~0.1 % of the variance.
    np.testing.assert_allclose(moments, sigma**2, rtol=2e-3)


def test_blur_in_nm_equals_blur_in_px():
    pixel_size = 50.0
    in_px = Blur(sigma=3.0)(delta(), rng())
    in_nm = Blur(sigma=3.0 * pixel_size, unit="nm")(delta(), rng(), pixel_size=pixel_size)
    np.testing.assert_allclose(in_nm, in_px, rtol=1e-12, atol=1e-15)


def test_steps_receive_the_current_pixel_size():
    x = delta(64)
    in_nm = Degradation([Downsample(2), Blur(sigma=100.0, unit="nm")])(x, pixel_size=25.0)
    in_px = Degradation([Downsample(2), Blur(sigma=100.0 / (2 * 25.0))])(x)
    np.testing.assert_array_equal(in_nm, in_px)


# --- pipeline ----------------------------------------------------------------------------


def fixed_noise(name, photons):
    """The preset with a fixed photon count and no read noise, so its variance is known."""
    d = PRESETS[name].to_dict()
    for step in d["steps"]:
        if step["type"] == "poisson":
            step["photons"] = photons
        if step["type"] == "gaussian":
            step["sigma"] = 0.0
    return Degradation.from_dict(d)


def test_noise_after_downsampling_is_not_averaged_away():
    photons, level, factor = 50.0, 0.5, 4
    x = np.full((512, 512), level)
    lr_pixels = (512 // factor) ** 2

    after = fixed_noise("poisson", photons)(x, seed=0)
    variance = level / photons
    assert after.shape == (128, 128)
    assert abs(after.var() - variance) < Z * poisson_variance_se(variance, level * photons, lr_pixels)

    first = fixed_noise("poisson-noise-first", photons)(x, seed=0)
    variance = level / photons / factor**2
    # Averaging makes the counts more Gaussian; the HR kurtosis is a conservative bound.
    assert abs(first.var() - variance) < Z * poisson_variance_se(variance, level * photons, lr_pixels)


def test_output_is_float32_with_ceil_size():
    out = preset("poisson")(rng().integers(0, 255, (2, 30, 33)).astype(np.uint8), seed=0)
    assert out.dtype == np.float32
    assert out.shape == (2, 8, 9)


def test_same_seed_is_bit_identical_and_different_seeds_differ():
    d, x = preset("poisson"), rng().random((64, 64))
    assert np.array_equal(d(x, seed=7), d(x, seed=7))
    assert np.array_equal(d(x, seed=7), d(x, seed=np.random.default_rng(7)))
    assert not np.array_equal(d(x, seed=7), d(x, seed=8))


def test_pickled_pipeline_gives_identical_output():
    d, x = preset("pssr"), rng().random((64, 64))
    copy = pickle.loads(pickle.dumps(d))
    assert copy == d
    assert np.array_equal(copy(x, seed=3), d(x, seed=3))


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_round_trip_through_dict_and_yaml(name, tmp_path):
    d = preset(name, scale=3)
    assert Degradation.from_dict(d.to_dict()) == d
    assert Degradation.from_yaml(d.to_yaml()) == d
    path = tmp_path / "degradation.yaml"
    path.write_text(d.to_yaml())
    assert Degradation.from_yaml(path) == d
    assert load_degradation(str(path)) == d
    assert load_degradation(path, scale=2) == preset(name, scale=2)
    assert len(str(d).splitlines()) == len(d.steps)


def test_yaml_lists_become_hashable_ranges():
    d = Degradation.from_dict({"steps": [{"type": "blur", "sigma": [0.5, 1.5]}]})
    assert d.steps[0].sigma == (0.5, 1.5)
    assert hash(d) == hash(Degradation([Blur(sigma=(0.5, 1.5))]))


def test_blur_range_is_sampled_once_per_call():
    low, high = 1.0, 3.0
    blur = Degradation([Blur(sigma=(low, high))])
    sigmas = []
    for seed in range(10):
        var_y, var_x = second_moments(blur(delta(), seed=seed).astype(np.float64))
        assert var_y == pytest.approx(var_x, rel=1e-4)  # one sigma for both axes
        sigmas.append(math.sqrt(var_y))
    assert low * 0.99 <= min(sigmas) and max(sigmas) <= high * 1.001
    assert np.ptp(sigmas) > 0.5


def test_photons_range_is_sampled_log_uniformly():
    low, high = 1.0, 10_000.0
    noise, x = Degradation([Poisson(photons=(low, high))]), np.ones((32, 32))
    # At intensity 1 the variance is 1 / photons, so each call reveals its photon count.
    photons = np.array([1 / noise(x, seed=seed).var() for seed in range(200)])
    assert photons.min() > low * 0.7 and photons.max() < high * 1.3
    # Log-uniform: half the draws lie below the geometric midpoint (uniform: 1 %).
    below = np.mean(photons < math.sqrt(low * high))
    assert abs(below - 0.5) < Z * math.sqrt(0.25 / len(photons))


def test_frames_share_parameters():
    stack = np.stack([delta(41)] * 5)
    out = Degradation([Blur(sigma=(1.0, 3.0)), Intensity(scale=(0.5, 2.0))])(stack, seed=0)
    assert all(np.array_equal(frame, out[0]) for frame in out)


def test_frames_get_independent_noise_at_a_shared_level():
    stack = np.full((5, 128, 128), 0.5)
    out = Degradation([Poisson(photons=(10.0, 1000.0))])(stack, seed=0).astype(np.float64)
    n = out[0].size
    residuals = (out - 0.5).reshape(5, -1)
    correlations = np.corrcoef(residuals)[np.triu_indices(5, k=1)]
    assert np.all(np.abs(correlations) < Z / math.sqrt(n))
    variances = residuals.var(axis=1)
    # Same photon count for all frames: the variances agree within sampling error.
    assert np.ptp(variances) / variances.mean() < 2 * Z * math.sqrt(2 / n)


def test_scale_and_pixel_size_bookkeeping():
    d = preset("poisson", scale=4)
    assert d.scale == 4
    assert d.output_pixel_size(2.0) == 8.0
    assert d.output_pixel_size(None) is None
    assert d.with_scale(2).output_pixel_size(2.0) == 4.0


def test_without_noise_keeps_the_deterministic_steps():
    kinds = [step.kind for step in preset("poisson-noise-first").without_noise().steps]
    assert kinds == ["blur", "downsample"]


def test_with_scale_inserts_downsampling_before_noise_when_missing():
    d = Degradation([Blur(sigma=1.0), Poisson(photons=100.0)]).with_scale(3)
    assert [step.kind for step in d.steps] == ["blur", "downsample", "poisson"]
    assert d.scale == 3


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Blur(sigma=(1.5, 0.5)), "blur.sigma.*low > high"),
        (lambda: Blur(sigma=[0.5, 1.0, 1.5]), "blur.sigma"),
        (lambda: Blur(unit="um"), "blur.unit.*px, nm"),
        (lambda: Poisson(photons=-5.0), "poisson.photons must be > 0"),
        (lambda: Poisson(photons=(0.0, 10.0)), "poisson.photons must be > 0"),
        (lambda: Gaussian(sigma="a lot"), "gaussian.sigma"),
        (lambda: SaltPepper(amount=1.5), "salt_pepper.amount"),
        (lambda: Downsample(factor=2.5), "downsample.factor.*integer"),
        (lambda: Downsample(factor=0), "downsample.factor"),
        (lambda: preset("poisson").with_scale(1.5), "downsample.factor"),
        (lambda: Degradation([Downsample(2), Downsample(2)]).with_scale(4), "2 downsample"),
        (lambda: Degradation.from_dict({"steps": [{"type": "sharpen"}]}), "sharpen.*blur"),
        (lambda: Degradation.from_dict({"steps": [{"type": "blur", "size": 2}]}), "size.*sigma"),
        (lambda: Degradation.from_dict({"blur": 1}), "steps"),
        (lambda: preset("nope"), "nope.*poisson"),
        (lambda: load_degradation("nope"), "nope.*poisson"),
        (lambda: load_degradation("missing.yaml"), "missing.yaml.*not found"),
        (lambda: Degradation.from_yaml("steps: [type: blur"), "not valid YAML"),
        (lambda: Degradation([Blur(sigma=50.0, unit="nm")])(delta()), "pixel size"),
        (lambda: preset("clean")(np.zeros(16)), "2 \\(Y, X\\) axes"),
    ],
)
def test_bad_input_raises_input_error(make, match):
    with pytest.raises(InputError, match=match):
        make()
