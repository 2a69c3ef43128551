"""The SMLM simulator (microsr.simulate.smlm) and the `microsr smlm` commands."""

import math

import numpy as np
import pytest
import tifffile
from scipy.optimize import nnls
from scipy.special import erf
from typer.testing import CliRunner

from microsr.cli.smlm import app
from microsr.errors import InputError
from microsr.io import read_image
from microsr.simulate.smlm import (
    SMLMSimulation,
    preset,
    psf_photons,
    render_frames,
    render_targets,
    simulate_batch,
    simulate_stack,
)
from microsr.smlm.localize import localize
from microsr.smlm.render import render
from microsr.smlm.score import score
from microsr.smlm.table import localization_table, read_localizations

NO_EMITTERS = localization_table([], [], [], [], [])


def _integrated_gaussian(truth, shape, pixel_size):
    """Reference image: every emitter integrated over every pixel of the frame (no truncation)."""
    image = np.zeros((int(truth["frame"].max()), *shape))
    for frame, x, y, sigma, photons in truth:
        s = math.sqrt(2) * sigma / pixel_size
        px = np.diff(0.5 * erf((np.arange(shape[1] + 1) - x / pixel_size) / s))
        py = np.diff(0.5 * erf((np.arange(shape[0] + 1) - y / pixel_size) / s))
        image[frame - 1] += photons * np.outer(py, px)
    return image


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"fwhm": (300, 200)}, "fwhm=.*LOW is above HIGH"),
        ({"photons": -5}, "photons=-5"),
        ({"size": (0, 64)}, "size="),
        ({"bleach": 0.0}, r"bleach=0.0: give a probability in \(0, 1\]"),
        ({"on_time": 0.5}, "on_time=0.5"),
        ({"structure": "tubes"}, "structure='tubes'"),
        ({"structure": np.zeros((4, 4))}, "density mask"),
        ({"em_gain": 0.5}, "em_gain=0.5"),
    ],
)
def test_bad_settings_are_named(changes, message):
    with pytest.raises(InputError, match=message):
        SMLMSimulation(**changes)


def test_presets_and_scalar_ranges():
    assert preset("deepstorm-test").emitters_per_frame == pytest.approx(5.5 * 6.4 * 6.4)
    assert SMLMSimulation(background=20).background == (20.0, 20.0)
    with pytest.raises(InputError, match="unknown SMLM preset 'nope'"):
        preset("nope")


# --------------------------------------------------------------------------- image formation


def test_psf_photons_equal_pixel_integrals_across_tiles():
    # 100 x 150 px is rendered in 2 x 3 tiles of 64 px: put emitters on tile seams and image edges.
    config = SMLMSimulation(size=(100, 150), pixel_size=100.0)
    truth = localization_table(
        [1, 1, 1, 2, 2],
        [6400.0, 6390.0, 50.0, 12800.0, 14990.0],
        [6400.0, 3000.0, 9990.0, 6405.0, 20.0],
        [90.0, 130.0, 110.0, 100.0, 120.0],
        [1000.0, 2000.0, 500.0, 3000.0, 800.0],
    )
    image = psf_photons(truth, config, frames=2)
    expected = _integrated_gaussian(truth, config.size, config.pixel_size)
    np.testing.assert_allclose(image, expected, atol=1e-3 * 3000 / 100)
    assert image[0].sum() == pytest.approx(expected[0].sum(), rel=1e-4)


@pytest.mark.parametrize("em", [False, True], ids=["ccd", "emccd"])
def test_camera_noise_has_the_modelled_mean_and_variance(em):
    camera = {"photons_per_adu": 50.0, "em_gain": 100.0} if em else {"photons_per_adu": 2.0, "read_noise": 3.0}
    config = SMLMSimulation(size=64, background=30.0, base_level=100.0, **camera)
    stack = render_frames(NO_EMITTERS, config, frames=20, seed=0).astype(np.float64)
    gain = (config.em_gain or 1.0) / config.photons_per_adu  # counts per photoelectron
    excess = 2.0 if em else 1.0  # EM multiplication doubles the shot-noise variance
    variance = excess * 30.0 * gain**2 + (config.read_noise / config.photons_per_adu) ** 2 + 1 / 12
    assert stack.mean() == pytest.approx(100.0 + 30.0 * gain, rel=0.005)
    assert stack.var() == pytest.approx(variance, rel=0.03)


def test_counts_are_16_bit_and_clipped():
    bright = localization_table(1, 500.0, 500.0, 100.0, 5e7)
    stack = render_frames(bright, SMLMSimulation(size=10), frames=1, seed=0)
    assert stack.dtype == np.uint16 and stack.max() == 65535


def test_same_seed_same_stack():
    config = SMLMSimulation(size=24, on_time=2.0, bleach=0.5)
    first, truth_first = simulate_stack(config, 10, seed=3)
    again, truth_again = simulate_stack(config, 10, seed=3)
    other, _ = simulate_stack(config, 10, seed=4)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(truth_first, truth_again)
    assert not np.array_equal(first, other)


# --------------------------------------------------------------------------- emitters


def test_density_and_blinking_kinetics():
    config = SMLMSimulation(size=32, density=5.0, structure="uniform", on_time=3.0, off_time=20.0, bleach=0.5)
    _, truth = simulate_stack(config, 400, seed=0)
    per_frame = np.bincount(truth["frame"], minlength=401)[1:]
    # Steady state from the first frame on: ~51 emitters on in every part of the stack.
    assert per_frame.mean() == pytest.approx(config.emitters_per_frame, rel=0.05)
    assert per_frame[:40].mean() == pytest.approx(config.emitters_per_frame, rel=0.1)
    # A molecule keeps its position: follow each one through consecutive frames.
    _, molecule = np.unique(truth["x"] * 1e7 + truth["y"], return_inverse=True)
    order = np.lexsort((truth["frame"], molecule))
    frame, molecule = truth["frame"][order], molecule[order]
    starts = np.flatnonzero(np.r_[True, (molecule[1:] != molecule[:-1]) | (frame[1:] != frame[:-1] + 1)])
    runs = np.diff(np.r_[starts, len(frame)])
    inside = (frame[starts] > 1) & (frame[starts] + runs - 1 < 400)  # runs cut by the stack's ends are shorter
    assert runs[inside].mean() == pytest.approx(3.0, rel=0.1)
    blinks = np.bincount(molecule[starts])
    assert 1.7 < blinks.mean() < 2.1  # 1 / bleach = 2, fewer for molecules cut by the ends
    assert (blinks > 1).mean() > 0.3


def test_one_frame_emitters_never_repeat():
    _, truth = simulate_stack(SMLMSimulation(size=32, density=3.0), 50, seed=0)
    assert len(np.unique(truth["x"])) == len(truth)


def test_structures_place_emitters_where_asked():
    occupied = {}
    for structure in ("filaments", "uniform"):
        _, truth = simulate_stack(SMLMSimulation(size=64, density=2.0, structure=structure), 200, seed=1)
        occupied[structure] = (render(truth, 100.0, (64, 64), method="histogram") > 0).mean()
    assert occupied["uniform"] > 0.95 and occupied["filaments"] < 0.3
    mask = np.zeros((4, 4))
    mask[:, 2:] = 1.0  # right half only
    _, truth = simulate_batch(SMLMSimulation(size=32, structure=mask), 50, seed=0)
    assert len(truth) > 1000 and truth["x"].min() >= 1600.0 and truth["x"].max() < 3200.0


def test_batch_frames_in_photons_and_adu():
    config = SMLMSimulation(size=32, density=2.0, background=25.0, photons_per_adu=40.0, em_gain=80.0)
    rng = np.random.default_rng(0)
    adu, truth = simulate_batch(config, 64, rng)
    photons, _ = simulate_batch(config, 64, np.random.default_rng(0), units="photons")
    assert adu.shape == photons.shape == (64, 32, 32) and adu.dtype == photons.dtype == np.float32
    np.testing.assert_allclose(photons, (adu - 100.0) * 40.0 / 80.0, rtol=1e-5, atol=1e-3)
    # Background + the emitters' noise-free photons (PSF tails beyond the 32 px frame are lost).
    expected = 25.0 + psf_photons(truth, config, 64).mean()
    assert photons.mean() == pytest.approx(expected, rel=0.005)
    counts = np.bincount(truth["frame"], minlength=65)[1:]
    assert counts.mean() == pytest.approx(config.emitters_per_frame, rel=0.1)
    following, _ = simulate_batch(config, 64, rng)
    assert not np.array_equal(following, adu)  # one generator draws batch after batch


def test_targets_put_emitters_where_localize_finds_them():
    config = SMLMSimulation(size=32, density=1.0, structure="uniform")
    _, truth = simulate_batch(config, 64, seed=3)
    targets = render_targets(truth, config.size, config.pixel_size, frames=64, weights="intensity")
    assert targets.shape == (64, 256, 256)
    # All of each emitter's weight, except part of it for emitters within half a fine pixel of the edge.
    edge = 6.25
    inner = (truth["x"] > edge) & (truth["x"] < 3200 - edge) & (truth["y"] > edge) & (truth["y"] < 3200 - edge)
    assert truth["intensity"][inner].sum() - 1e-3 < targets.sum() <= truth["intensity"].sum() + 1e-3
    found = localize(targets, config.pixel_size / 8, threshold=1.0)
    result = score(found, truth, radius=250)
    # Only emitters closer than ~2 fine pixels (25 nm) merge.
    assert result.recall > 0.99 and result.precision == 1.0
    assert result.rmse_lateral < 1.0


def test_localize_finds_sparse_emitters_in_raw_frames():
    config = SMLMSimulation(size=64, density=0.3, structure="uniform", photons=(3000, 5000), background=10.0)
    frames, truth = simulate_batch(config, 50, seed=4, units="photons")
    found = localize(frames - 10.0, config.pixel_size, threshold=60.0)
    result = score(found, truth, radius=250)
    assert result.recall > 0.9 and result.precision > 0.98
    assert result.rmse_lateral < 40.0


@pytest.mark.realdata
def test_deepstorm_test_preset_matches_the_real_stack(realdata):
    """Pixel and per-emitter photon statistics of the preset match Deep-STORM's test stack."""
    real = read_image(realdata("deepstorm/testStack_SimulatedMicrotubules.tif")).data.compute().astype(np.float64)
    real_truth = read_localizations(realdata("deepstorm/DERIVED_Positions_Bundeld_Tubulin_Recreated.csv"))
    config = preset("deepstorm-test")
    stack, truth = simulate_stack(config, real.shape[0], seed=0)
    stack = stack.astype(np.float64)
    assert stack.shape == real.shape
    assert len(truth) == pytest.approx(len(real_truth), rel=0.03)
    assert stack.mean() == pytest.approx(real.mean(), rel=0.03)
    for q, tolerance in ((0.01, 0.02), (0.05, 0.02), (0.5, 0.05), (0.9, 0.1), (0.99, 0.15)):
        assert np.quantile(stack, q) == pytest.approx(np.quantile(real, q), rel=tolerance), q
    # Photons per emitter: least squares of known-position PSFs + a constant, per frame, on both stacks.
    counts_per_photon = config.em_gain / config.photons_per_adu
    quartiles = [
        np.quantile(_photons_per_emitter(s, t, config, counts_per_photon), [0.25, 0.5, 0.75])
        for s, t in ((real, real_truth), (stack, truth))
    ]
    np.testing.assert_allclose(quartiles[1], quartiles[0], rtol=0.1)


def _photons_per_emitter(stack, truth, config, counts_per_photon, frames=range(1, 361, 60)):
    """Photons of each emitter of some frames by non-negative least squares, positions known, sigma 110 nm."""
    estimates = []
    for frame in frames:
        emitters = truth[truth["frame"] == frame]
        n = len(emitters)
        # One unit-photon PSF per emitter, each put in a frame of its own: the columns of the design matrix.
        unit = psf_photons(localization_table(np.arange(1, n + 1), emitters["x"], emitters["y"], 110.0, 1.0), config, n)
        matrix = np.column_stack([np.ones(stack[0].size), counts_per_photon * unit.reshape(n, -1).T])
        estimates.append(nnls(matrix, stack[frame - 1].ravel())[0][1:])
    return np.concatenate(estimates)


# --------------------------------------------------------------------------- command line


def test_cli_simulate_writes_stack_and_thunderstorm_truth(tmp_path):
    output = tmp_path / "sim"
    result = CliRunner().invoke(
        app,
        ["simulate", "-o", str(output), "--frames", "12", "--size", "20", "--pixel-size", "110", "--density", "3",
         "--fwhm", "220", "260", "--photons", "500", "900", "--em-gain", "50", "--seed", "1"],
    )
    assert result.exit_code == 0, result.output
    image = read_image(output / "stack.tif")
    assert (image.shape, image.dtype) == ((12, 20, 20), np.uint16)
    assert image.pixel_size == pytest.approx(110.0)
    header = (output / "ground_truth.csv").read_text().splitlines()[0]
    assert header == '"frame","x [nm]","y [nm]","sigma [nm]","intensity [photon]"'
    truth = read_localizations(output / "ground_truth.csv")
    assert truth["frame"].min() >= 1 and truth["frame"].max() <= 12
    assert 500 <= truth["intensity"].min() and truth["intensity"].max() <= 900
    fwhm = truth["sigma"] * 2 * math.sqrt(2 * math.log(2))
    assert 220 - 1e-3 <= fwhm.min() and fwhm.max() <= 260 + 1e-3
    assert "EM gain 50" in result.output


def test_cli_simulate_from_a_mask_image(tmp_path):
    mask = np.zeros((8, 8), np.uint8)
    mask[:4] = 255  # top half
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    output = tmp_path / "sim"
    result = CliRunner().invoke(
        app, ["simulate", "-o", str(output), "--frames", "5", "--size", "16", "--structure", str(tmp_path / "mask.tif")]
    )
    assert result.exit_code == 0, result.output
    assert read_localizations(output / "ground_truth.csv")["y"].max() < 800.0


def test_cli_simulate_draws_one_acquisition_of_a_range_by_its_seed(tmp_path):
    def simulate(name: str, seed: int) -> tuple[str, np.ndarray]:
        result = CliRunner().invoke(app, ["simulate", "-o", str(tmp_path / name), "--preset", "broad", "--frames", "3",
                                          "--size", "24", "--seed", str(seed)])
        assert result.exit_code == 0, result.output
        return result.output, read_image(tmp_path / name / "stack.tif").data.compute()

    first, again, other = simulate("a", 5), simulate("b", 5), simulate("c", 6)
    assert first[0].replace("/a/", "/b/") == again[0] and np.array_equal(first[1], again[1])
    assert first[0].splitlines()[0] != other[0].splitlines()[0]  # another camera, density, photons...
    assert first[1].shape == (3, 24, 24)


def test_cli_simulate_takes_the_settings_of_a_calibration_file(tmp_path):
    (tmp_path / "simulation.yaml").write_text("preset: default\nsize: [24, 24]\ndensity: 8.0\nphotons: [700, 800]\n"
                                              "threshold_criterion: jaccard  # training keys are ignored here\n")
    result = CliRunner().invoke(app, ["simulate", "-o", str(tmp_path / "a"), "--frames", "40", "--seed", "2",
                                      "--simulation", str(tmp_path / "simulation.yaml")])
    assert result.exit_code == 0, result.output
    truth = read_localizations(tmp_path / "a" / "ground_truth.csv")
    assert read_image(tmp_path / "a" / "stack.tif").shape == (40, 24, 24)
    assert 700 <= truth["intensity"].min() and truth["intensity"].max() <= 800
    assert abs(len(truth) / 40 / (8.0 * 5.76) - 1) < 0.15  # 8 per µm² on 5.76 µm², Poisson over 40 frames
    (tmp_path / "bad.yaml").write_text("density: -1\n")
    result = CliRunner().invoke(app, ["simulate", "-o", str(tmp_path / "b"), "--simulation", str(tmp_path / "bad.yaml")])
    assert isinstance(result.exception, InputError) and "--simulation" in str(result.exception)
    assert "density" in str(result.exception) and not (tmp_path / "b").exists()


def test_cli_simulate_bad_input(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["simulate", "-o", str(tmp_path / "a"), "--fwhm", "300", "200"])
    assert isinstance(result.exception, InputError) and "fwhm" in str(result.exception)
    assert not (tmp_path / "a").exists()
    (tmp_path / "b").mkdir()
    result = runner.invoke(app, ["simulate", "-o", str(tmp_path / "b"), "--frames", "2"])
    assert isinstance(result.exception, InputError) and "exists" in str(result.exception)
    result = runner.invoke(app, ["simulate", "-o", str(tmp_path / "c"), "--structure", "tubes"])
    assert isinstance(result.exception, InputError) and "tubes" in str(result.exception)


def test_cli_score_prints_the_challenge_metrics(tmp_path):
    truth = localization_table([1, 1, 2], [100.0, 2000.0, 500.0], [100.0, 100.0, 500.0])
    found = localization_table([1, 2, 2], [130.0, 500.0, 3000.0], [140.0, 500.0, 500.0])
    (tmp_path / "truth.csv").write_text(
        "Ground-truth,frame,xnano,ynano,znano,intensity\n"
        + "".join(f"{i},{f},{x},{y},0,1000\n" for i, (f, x, y, *_) in enumerate(truth, 1))
    )
    (tmp_path / "found.csv").write_text(
        "frame,x [nm],y [nm]\n" + "".join(f"{f},{x},{y}\n" for f, x, y, *_ in found)
    )
    result = CliRunner().invoke(app, ["score", str(tmp_path / "found.csv"), str(tmp_path / "truth.csv")])
    assert result.exit_code == 0, result.output
    # 2 pairs (50 nm and 0 nm off), 1 FP, 1 FN: Jaccard 50 %, RMSE sqrt(50²/2) = 35.4 nm.
    for expected in ("true positives", "Jaccard index", "50.0 %", "35.4 nm", "efficiency"):
        assert expected in result.output


def test_cli_score_bad_input(tmp_path):
    (tmp_path / "truth.csv").write_text("frame,x [nm]\n1,2\n")
    (tmp_path / "found.csv").write_text("frame,x [nm],y [nm]\n1,2,3\n")
    result = CliRunner().invoke(app, ["score", str(tmp_path / "found.csv"), str(tmp_path / "truth.csv")])
    assert isinstance(result.exception, InputError)
    assert "truth.csv: no y column" in str(result.exception) and "\n" not in str(result.exception)
