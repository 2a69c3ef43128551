"""Calibrating an SMLM simulation from raw frames alone recovers the settings a stack was simulated with."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from microsr.cli import app, main
from microsr.config import SimulationConfig
from microsr.errors import InputError
from microsr.io import write_image
from microsr.simulate.calibrate import calibrate, write_simulation
from microsr.simulate.smlm import SMLMSimulation, simulate_stack

# Three microscopes: an sCMOS at low density, an EMCCD on dense filaments, and a CCD with dense emitters on filaments. The background drifts over the frames (as bleaching makes it), which
# is what separates the camera's gain from its base level.
CASES = {
    "scmos-sparse": SMLMSimulation(
        size=48, density=1.0, structure="uniform", fwhm=(240, 280), photons=(1500, 2500), background=(10, 60),
        photons_per_adu=0.5, read_noise=1.6, base_level=300,
    ),
    "emccd-filaments": SMLMSimulation(
        size=48, density=3.0, structure="filaments", fwhm=(280, 320), photons=(800, 1600), background=(5, 40),
        em_gain=100, photons_per_adu=20, read_noise=40, base_level=500,
    ),
    "ccd-dense": SMLMSimulation(
        size=48, density=4.0, structure="filaments", fwhm=(200, 240), photons=(2000, 3000), background=(20, 80),
        photons_per_adu=1.0, read_noise=1.5, base_level=100,
    ),
}

# Tolerances: relative unless stated; set from the spread over seeds with some margin (see the README, SMLM).
TOLERANCE = {"gain": 0.12, "background": 0.12, "fwhm": 0.10, "photons": 0.25, "density": 0.30}


def _truth_values(config: SMLMSimulation) -> dict[str, float]:
    gain = (config.em_gain or 1.0) / config.photons_per_adu
    return {
        "gain": gain, "background": float(np.mean(config.background)), "fwhm": float(np.mean(config.fwhm)),
        "photons": float(np.mean(config.photons)), "density": config.density,
        "base_level": config.base_level,
    }


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    config = CASES[request.param]
    stack, _ = simulate_stack(config, frames=240, seed=7)
    return request.param, config, stack


def test_calibration_recovers_the_simulated_settings(case):
    name, config, stack = case
    result = calibrate(stack, pixel_size=config.pixel_size)
    truth = _truth_values(config)
    assert result.camera == ("emccd" if config.em_gain else "scmos"), name
    assert result.camera_measured
    measured = {"gain": result.gain.value, "background": result.background.value, "fwhm": result.fwhm.value,
                "photons": result.photons.value, "density": result.density.value}
    for key, tolerance in TOLERANCE.items():
        assert abs(measured[key] / truth[key] - 1) < tolerance, (name, key, measured[key], truth[key])
    # Base level within a tenth of the background's signal in counts.
    assert abs(result.base_level.value - truth["base_level"]) < 0.1 * truth["background"] * truth["gain"], name
    # Stated uncertainties are honest: the truth within 4 standard errors plus the tolerance's systematic part.
    assert result.gain.error > 0 and result.density.error > 0


def test_calibrated_settings_reproduce_the_stack_statistics(case):
    """A stack simulated from the calibration has the original's mean and upper pixel levels.

    (Their brightest 1 % also depends on the structure, filaments or uniform, which is not calibrated.)
    """
    name, config, stack = case
    result = calibrate(stack, pixel_size=config.pixel_size)
    again, _ = simulate_stack(result.simulation(size=48), frames=240, seed=8)
    above = stack.mean() - config.base_level
    assert abs(again.mean() - stack.mean()) < 0.05 * above, name
    original, simulated = (np.percentile(s, 95) - config.base_level for s in (stack, again))
    assert abs(simulated / original - 1) < 0.2, (name, original, simulated)


def test_uniform_background_warns_that_gain_and_base_level_are_assumed():
    config = SMLMSimulation(size=48, density=1.0, structure="uniform", photons=(1500, 2500), background=20,
                            em_gain=100, photons_per_adu=50)
    stack, _ = simulate_stack(config, frames=120, seed=3)
    result = calibrate(stack, pixel_size=100.0)
    assert not result.camera_measured
    assert any("not separately measurable" in note for note in result.warnings)
    # Even so the settings reproduce the stack: EMCCD assumed, background and spots match.
    assert result.camera == "emccd"
    assert abs(result.fwhm.value / 250 - 1) < 0.1


def test_written_settings_are_a_simulation_config(tmp_path):
    config = CASES["scmos-sparse"]
    stack, _ = simulate_stack(config, frames=120, seed=1)
    path = write_simulation(calibrate(stack, 100.0), tmp_path / "simulation.yaml")
    text = path.read_text()
    assert "# SMLM simulation calibrated" in text and "±" in text
    settings = SimulationConfig.model_validate(yaml.safe_load(text))
    simulation = settings.settings()
    assert settings.threshold_criterion == "jaccard"
    assert abs(simulation.density / config.density - 1) < TOLERANCE["density"]
    with pytest.raises(InputError):  # never overwrites without asking
        write_simulation(calibrate(stack, 100.0), path)


def test_cli_calibrate_writes_settings_and_prints_a_table(tmp_path):
    config = CASES["emccd-filaments"]
    stack, _ = simulate_stack(config, frames=120, seed=2)
    write_image(tmp_path / "stack.tif", stack, axes="TYX", pixel_size=100.0)
    result = CliRunner().invoke(app, ["smlm", "calibrate", str(tmp_path / "stack.tif"), "-o",
                                      str(tmp_path / "sim.yaml")])
    assert result.exit_code == 0, result.output
    assert "base level" in result.output and "density" in result.output
    assert "microsr smlm train --simulation" in result.output
    density = yaml.safe_load((tmp_path / "sim.yaml").read_text())["density"]
    assert math.isclose(density, config.density, rel_tol=0.35)


@pytest.mark.parametrize("args, message", [
    (["--camera", "xyz"], "choose auto, emccd or scmos"),
    (["-o", "out.txt"], ".yaml"),
])
def test_cli_calibrate_rejects_bad_arguments(tmp_path, capsys, args, message):
    stack = np.full((12, 20, 20), 100, np.uint16)
    write_image(tmp_path / "stack.tif", stack, axes="TYX", pixel_size=100.0)
    base = ["smlm", "calibrate", str(tmp_path / "stack.tif"), "-o", str(tmp_path / "sim.yaml")]
    with pytest.raises(SystemExit) as exit_info:
        main(base + args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "sim.yaml").exists() and not (tmp_path / "out.txt").exists()


def test_a_stack_without_spots_is_refused():
    noise = np.random.default_rng(0).poisson(50, (30, 32, 32)).astype(np.uint16)
    with pytest.raises(InputError, match="isolated spots"):
        calibrate(noise, 100.0)


# --------------------------------------------------------------------------- calibrate -> train -> reconstruct


def test_model_trained_on_the_calibration_localizes_the_stack(tmp_path):
    """From raw frames to localizations with no ground truth: calibrate, train briefly, reconstruct.

    A small x4 model trained for 100 steps on 16 x 16 frames of the calibrated settings reaches a Jaccard index
    above 0.8 at 250 nm on the stack's first 100 frames (measured 0.891, precision 0.93, at threshold 0.0125, the
    highest within one standard error of the validation's best; the best itself, 0.01, gave 0.66: precision 0.67).
    """
    from microsr.smlm.score import score
    from microsr.smlm.reconstruct import reconstruct
    from microsr.training import train

    config = SMLMSimulation(size=32, density=1.0, structure="uniform", fwhm=(240, 280), photons=(1500, 2500),
                            background=(10, 60), photons_per_adu=0.5, read_noise=1.6, base_level=300)
    stack, truth = simulate_stack(config, frames=200, seed=11)
    settings = yaml.safe_load(write_simulation(calibrate(stack, 100.0), tmp_path / "sim.yaml").read_text())
    settings.update(size=16, val_frames=32)
    run = {"data": {"simulation": settings, "batch_size": 8, "samples_per_epoch": 400, "num_workers": 0},
           "scale": 4, "model": {"name": "smlm_unet", "kwargs": {"widths": [16, 32]}},
           "train": {"steps": 100, "lr": 3e-3, "seed": 0}}
    train(run, tmp_path / "model", progress=False)
    result = reconstruct(stack[:100], tmp_path / "model" / "best.safetensors", pixel_size=100.0)
    wide = score(result.localizations, truth[truth["frame"] <= 100], 250.0)
    assert wide.jaccard > 0.8, wide


def test_cli_train_takes_the_calibrated_settings(tmp_path):
    stack, _ = simulate_stack(CASES["scmos-sparse"], frames=100, seed=4)
    write_simulation(calibrate(stack, 100.0), tmp_path / "sim.yaml")
    result = CliRunner().invoke(app, ["smlm", "train", "--simulation", str(tmp_path / "sim.yaml"), "-o",
                                      str(tmp_path / "model"), "--steps", "2", "--val-frames", "4",
                                      "--frames-per-epoch", "4", "--workers", "0", "--scale", "4"])
    assert result.exit_code == 0, result.output
    info = yaml.safe_load((tmp_path / "model" / "config.json").read_text())
    simulation = info["run"]["data"]["simulation"]
    assert simulation["threshold_criterion"] == "jaccard" and simulation["base_level"] > 250
