"""The 2D-SIM simulator (microsr.simulate.sim) and `microsr sim simulate`."""

import json

import numpy as np
import pytest

from microsr.cli import main
from microsr.errors import InputError
from microsr.io import read_image
from microsr.optics import cutoff_frequency, ideal_otf
from microsr.simulate.sim import SIMSimulation, preset, simulate_field

SMALL = SIMSimulation(size=64)


def _radial_power(image, pixel_size):
    """Power spectrum of ``image`` (Hann-windowed: its edges add no spectrum) and each bin's frequency (cycles/nm)."""
    window = np.outer(np.hanning(image.shape[0]), np.hanning(image.shape[1]))
    power = np.abs(np.fft.fft2((image - image.mean()) * window)) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(image.shape[0], pixel_size), np.fft.fftfreq(image.shape[1], pixel_size),
                              indexing="ij"))
    return power, f


def run(capsys, *argv):
    """Run `microsr argv...` through its entry point; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_field_shapes_units_and_seed():
    field = simulate_field(SMALL, seed=3)
    assert field.raw.shape == (9, 64, 64) and field.raw.dtype == np.uint16
    assert field.target.shape == field.structure.shape == (128, 128)
    assert field.target.dtype == field.structure.dtype == np.float32
    again = simulate_field(SMALL, seed=3)
    assert np.array_equal(field.raw, again.raw) and np.array_equal(field.target, again.target)
    assert not np.array_equal(field.raw, simulate_field(SMALL, seed=4).raw)
    angles = np.array(field.parameters["angles"])
    assert np.allclose(np.sort(np.diff(np.sort(angles))), [60, 60])  # evenly spaced over 180 degrees


def test_photon_budget_background_and_base_level():
    config = SMALL.replace(photons=800.0, background=20.0, read_noise=0.0, base_level=100.0)
    field = simulate_field(config, seed=0)
    wide_field = field.raw.astype(float).mean(axis=0)
    # The bright structure receives 800 photons on top of 20 background photons and the 100-count offset.
    assert np.percentile(wide_field, 99.9) == pytest.approx(920, rel=0.05)
    assert field.raw.min() >= 100
    # Without structure, every pixel is background: Poisson (mean = variance = 20) plus read noise 2 e- rms.
    empty = simulate_field(config.replace(density=0.0, haze=0.0, read_noise=2.0), seed=0).raw.astype(float) - 100
    assert empty.mean() == pytest.approx(20, rel=0.02)
    assert empty.var() == pytest.approx(20 + 2**2, rel=0.05)


def test_low_light_preset_is_dim_and_noisy():
    normal, low = (simulate_field(preset(name).replace(size=64), seed=1) for name in ("dlsim", "dlsim-low"))
    bright_normal = np.percentile(normal.raw.astype(float).mean(axis=0), 99.9) - 100
    bright_low = np.percentile(low.raw.astype(float).mean(axis=0), 99.9) - 100
    assert bright_normal / bright_low > 10
    assert 3 <= bright_low <= 20  # 3-12 photons at the structure over 1-6 of background
    assert low.raw.shape == (15, 64, 64)


def test_bicubic_roundtrip_correlates_the_noise_and_keeps_the_level():
    """Pre-upsampled frames binned back have noise correlated between neighbours; a plain camera does not."""
    empty = SMALL.replace(density=0.0, haze=0.0, photons=1.0, background=50.0, read_noise=0.0)

    def neighbour_correlation(raw):
        noise = raw.astype(float) - raw.mean()
        return np.corrcoef(noise[:, :, :-1].ravel(), noise[:, :, 1:].ravel())[0, 1]

    plain = simulate_field(empty, seed=3).raw
    roundtrip = simulate_field(empty.replace(roundtrip=2), seed=3).raw
    assert abs(neighbour_correlation(plain)) < 0.05
    assert neighbour_correlation(roundtrip) > 0.12  # 0.17 measured: the bicubic kernel's overlap at one pixel
    assert roundtrip.mean() == pytest.approx(plain.mean(), rel=0.01)
    assert roundtrip.var() < 0.8 * plain.var()  # binning averages some noise away


def test_pattern_frequency_shows_in_the_raw_frames():
    field = simulate_field(SMALL.replace(modulation=0.9, photons=3000.0), seed=2)
    for a, k in enumerate(np.array(field.parameters["k"])):
        frames = field.raw[3 * a : 3 * a + 3].astype(float)
        modulated = frames[0] - frames.mean(axis=0)
        spectrum = np.abs(np.fft.fft2(modulated * np.outer(np.hanning(64), np.hanning(64))))
        spectrum[0, 0] = 0
        iy, ix = np.unravel_index(np.argmax(spectrum), spectrum.shape)
        peak = np.array([np.fft.fftfreq(64)[iy], np.fft.fftfreq(64)[ix]])
        assert min(np.abs(peak - k).max(), np.abs(peak + k).max()) <= 1 / 64  # within one FFT bin


def test_target_is_band_limited_at_the_extended_sim_cutoff():
    config = SMALL.replace(period=500.0)
    field = simulate_field(config, seed=5)
    power, f = _radial_power(field.target, config.pixel_size / 2)
    wide, extended = config.cutoff, config.cutoff + 1 / 500.0
    beyond_wide_field = power[(f > 1.05 * wide) & (f < 0.95 * extended)].sum()
    assert beyond_wide_field > 1e-3 * power.sum()  # SIM passes what wide-field cannot
    assert power[f > 1.1 * extended].sum() < 1e-6 * power.sum()  # and nothing beyond it (window leakage only)
    raw_power, raw_f = _radial_power(field.raw.astype(float).mean(axis=0), config.pixel_size)
    noise_floor = np.median(raw_power[raw_f > 1.2 * wide])
    assert np.median(raw_power[(raw_f > 1.05 * wide) & (raw_f < 0.95 * extended)]) < 2 * noise_floor


def test_a_measured_otf_file_sets_the_blur_and_the_cut_off(tmp_path):
    """An OTF file holding the ideal pupil of NA 0.8 blurs like it, although the settings say NA 1.2."""
    low_na = SIMSimulation(size=64, na=0.8, period=700.0, photons=3000.0)
    frequencies = np.linspace(0, low_na.cutoff, 257)
    otf = tmp_path / "otf.csv"
    np.savetxt(otf, np.c_[frequencies * 1000, ideal_otf(frequencies / low_na.cutoff)], delimiter=",")
    measured = low_na.replace(na=1.2, otf=otf)
    # The file's cut-off, less the tail under 0.5 % of the zero-frequency value that reading drops as noise.
    assert 0.94 * low_na.cutoff < measured.cutoff < low_na.cutoff
    assert "measured OTF" in measured.describe()

    def passed(config):
        """Power of the wide-field image between the two cut-offs, over its noise floor beyond both."""
        power, f = _radial_power(simulate_field(config, seed=4).raw.astype(float).mean(axis=0), config.pixel_size)
        between = (f > 1.1 * low_na.cutoff) & (f < 0.9 * cutoff_frequency(1.2, 525.0))
        return np.median(power[between]) / np.median(power[f > 1.1 * cutoff_frequency(1.2, 525.0)])

    assert passed(measured) < 2 < 5 < passed(low_na.replace(na=1.2))
    with pytest.raises(InputError, match="not found"):
        low_na.replace(otf=tmp_path / "missing.mrc")


def test_otf_model():
    assert ideal_otf(np.array([0.0]))[0] == 1.0
    assert ideal_otf(np.array([1.0, 1.5])).tolist() == [0.0, 0.0]
    values = ideal_otf(np.linspace(0, 1, 50))
    assert np.all(np.diff(values) < 0)
    assert cutoff_frequency(1.4, 500.0) == pytest.approx(2 * 1.4 / 500)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"period": 100.0}, "would not overlap the 0 order"),
        ({"phases": 2}, "at least 3 phases"),
        ({"modulation": (0.5, 1.5)}, "at most 1"),
        ({"photons": (100, 10)}, "LOW is above HIGH"),
        ({"pixel_size": 500.0}, "too coarse"),
        ({"size": 8}, "at least 16 pixels"),
    ],
)
def test_invalid_settings_are_refused(changes, message):
    with pytest.raises(InputError, match=message):
        SMALL.replace(**changes)


def test_unknown_preset():
    with pytest.raises(InputError, match="unknown SIM preset 'x'; choose one of default, dlsim, dlsim-low"):
        preset("x")


def test_cli_simulate_writes_pairs(tmp_path, capsys):
    out = tmp_path / "sim"
    args = ["sim", "simulate", "-o", out, "--fields", "2", "--size", "32", "--phases", "5",
            "--photons", "100", "200", "--seed", "7"]
    code, stdout, _ = run(capsys, *args)
    assert code == 0 and "wrote 2 fields" in stdout
    raw, target = read_image(out / "raw" / "0001.tif"), read_image(out / "target" / "0001.tif")
    assert (raw.axes, raw.shape, raw.pixel_size) == ("CYX", (15, 32, 32), 60.0)
    assert (target.shape, target.pixel_size) == ((64, 64), 30.0)
    assert read_image(out / "structure" / "0000.tif").shape == (64, 64)
    fields = json.loads((out / "fields.json").read_text())
    assert fields["settings"]["phases"] == 5 and len(fields["fields"]) == 2
    assert 100 <= fields["fields"][0]["photons"] <= 200
    code, _, err = run(capsys, *args)
    assert code == 2 and "exists" in err
