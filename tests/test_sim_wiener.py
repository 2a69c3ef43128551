"""Classical 2D Wiener SIM (microsr.sim.wiener) against ground truth and napari-sim-processor."""

import importlib.util
import sys
import types

import numpy as np
import pytest
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from microsr.cli import main
from microsr.errors import InputError
from microsr.evaluate.metrics import decorrelation, normalize_percentile, psnr, ssim
from microsr.evaluate.sim import compare_sim
from microsr.io import read_image, write_image
from microsr.optics import OTF, read_otf
from microsr.optics import ideal_otf
from microsr.sim.wiener import estimate_pattern, reconstruct_sim, sim_frames
from microsr.simulate.sim import SIMSimulation, simulate_field

CONFIG = SIMSimulation(size=96, photons=(1500.0, 2500.0))
OTF_MODEL = OTF.model(CONFIG.na, CONFIG.wavelength)


def _score(field, image):
    """PSNR and SSIM of ``image`` against the field's SIM target, both percentile-normalised."""
    target, image = normalize_percentile(field.target), normalize_percentile(image)
    return psnr(target, image, data_range=1), ssim(target, image, data_range=1)


def _wide_field(field):
    """The frames' mean, upsampled 2x by cubic interpolation in the same pixel convention."""
    mean = field.raw.astype(float).mean(axis=0)
    return ndimage.zoom(mean, 2, order=3, grid_mode=True, mode="grid-mirror")


def _napari_conv_sim_processor():
    """napari-sim-processor's ConvSimProcessor, imported without its napari/Qt widget."""
    spec = importlib.util.find_spec("napari_sim_processor")
    if spec is None:
        pytest.skip("napari-sim-processor is not installed (pip install microsr[test])")
    if "napari_sim_processor" not in sys.modules:
        package = types.ModuleType("napari_sim_processor")  # its __init__ imports the Qt widget
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["napari_sim_processor"] = package
    from napari_sim_processor.processors.convSimProcessor import ConvSimProcessor

    return ConvSimProcessor


@pytest.mark.parametrize(("phases", "seed"), [(3, 0), (3, 1), (5, 2)])
def test_pattern_is_estimated_from_the_data(phases, seed):
    field = simulate_field(CONFIG.replace(phases=phases), seed=seed)
    found = estimate_pattern(field.raw, 3, phases, OTF_MODEL, CONFIG.pixel_size)
    assert np.abs(found.k - field.parameters["k"]).max() < 1e-3  # cycles per pixel: a tenth of the FFT bin (1/96)
    assert np.abs(found.modulation - field.parameters["modulation"]).max() < 0.1
    fitted = estimate_pattern(field.raw, 3, phases, OTF_MODEL, CONFIG.pixel_size, fit_phases=True)
    steps = np.angle(np.exp(1j * np.diff(fitted.phases, axis=1)))
    assert np.allclose(steps, 2 * np.pi / phases, atol=0.35)  # the simulated steps are even


def test_reconstruction_matches_the_sim_target():
    for seed in (0, 1):
        field = simulate_field(CONFIG, seed=seed)
        image, _ = reconstruct_sim(field.raw, 3, 3, pixel_size=CONFIG.pixel_size, otf=OTF_MODEL)
        sim_psnr, sim_ssim = _score(field, image)
        wide_psnr, wide_ssim = _score(field, _wide_field(field))
        assert sim_psnr > wide_psnr + 6 and sim_psnr > 32
        assert sim_ssim > 0.95 > wide_ssim
        # Raw pixel j spans output pixels 2j, 2j + 1, as in the target: no shift between them.
        shift = phase_cross_correlation(field.target, image, upsample_factor=20, normalization=None)[0]
        assert np.abs(shift).max() <= 0.1
        resolution = decorrelation(image, pixel_size=CONFIG.pixel_size / 2).resolution
        assert resolution < 0.8 * decorrelation(_wide_field(field), pixel_size=CONFIG.pixel_size / 2).resolution


def test_agrees_with_napari_sim_processor():
    conv_sim_processor = _napari_conv_sim_processor()
    for seed in (0, 1):
        field = simulate_field(CONFIG, seed=seed)
        processor = conv_sim_processor(angleSteps=3, phaseSteps=3)
        processor.debug = False
        # Its units: camera pixel / magnification in µm; carrier search above 1.9 * eta * NA / wavelength.
        processor.pixelsize, processor.magnification = CONFIG.pixel_size / 10, 100
        processor.NA, processor.wavelength, processor.eta, processor.w = CONFIG.na, CONFIG.wavelength / 1000, 0.4, 0.3
        processor.usePhases = True
        raw = field.raw.astype(np.float32)
        processor.calibrate(raw)
        theirs = processor.reconstruct_rfftw(raw)
        # Its Fourier-interpolated grid puts raw pixel j on output pixel 2j; ours on 2j + 0.5.
        theirs = ndimage.shift(theirs, (0.5, 0.5), order=3, mode="nearest")
        ours, found = reconstruct_sim(field.raw, 3, 3, pixel_size=CONFIG.pixel_size, otf=OTF_MODEL)

        # The same carriers (napari's k is in units of NA / wavelength, with the opposite sign).
        their_k = -np.stack([np.ravel(processor.ky), np.ravel(processor.kx)], axis=1) * (
            CONFIG.na / CONFIG.wavelength * CONFIG.pixel_size
        )
        truth = np.array(field.parameters["k"])
        assert np.abs(their_k - truth).max() < 3e-3 and np.abs(found.k - truth).max() < 3e-3
        # Very similar images, both far better than wide-field; ours at least as close to the truth.
        assert psnr(normalize_percentile(theirs), normalize_percentile(ours), data_range=1) > 25
        (our_psnr, our_ssim), (their_psnr, their_ssim) = _score(field, ours), _score(field, theirs)
        wide_psnr, _ = _score(field, _wide_field(field))
        assert their_psnr > wide_psnr + 2
        assert our_psnr >= their_psnr and our_ssim >= their_ssim


def test_a_tirf_sim_pattern_beyond_the_emission_cut_off_is_found_from_its_nominal_period():
    """TIRF-SIM forms a 200 nm pattern at its excitation wavelength, beyond the 219 nm of the emission OTF."""
    config = CONFIG.replace(period=200.0, photons=300.0)
    field = simulate_field(config, seed=4)
    truth = np.array(field.parameters["k"])
    found = estimate_pattern(field.raw, 3, 3, OTF_MODEL, config.pixel_size, period=205.0)
    assert np.abs(np.hypot(*found.k.T) / np.hypot(*truth.T) - 1).max() < 0.01
    # k and -k are the same pattern.
    assert np.minimum(np.abs(found.k - truth), np.abs(found.k + truth)).max() < 1e-3
    # Without the period, the search stays inside the emission pass band and cannot find it.
    blind = estimate_pattern(field.raw, 3, 3, OTF_MODEL, config.pixel_size)
    assert np.hypot(*blind.k.T).max() <= OTF_MODEL.cutoff * config.pixel_size
    with pytest.raises(InputError, match="two pixels"):
        estimate_pattern(field.raw, 3, 3, OTF_MODEL, config.pixel_size, period=100.0)


def test_measured_otf_files(tmp_path):
    frequencies = np.linspace(0, OTF_MODEL.cutoff * 1000, 129)  # cycles/µm
    values = OTF_MODEL(frequencies / 1000)
    csv = tmp_path / "otf.csv"
    np.savetxt(csv, np.c_[frequencies, values], delimiter=",", header="k_per_um,otf", comments="")
    # A Priism/OMX radial OTF: one row of complex64 samples, spacing in the header's cell size / mx.
    mrc = tmp_path / "otf.mrc"
    header = np.zeros(256, "<i4")
    header[:4] = (129, 1, 1, 4)
    header[7:10] = (1, 1, 1)
    header_bytes = bytearray(header.tobytes())
    header_bytes[40:44] = np.float32(frequencies[1]).tobytes()
    mrc.write_bytes(bytes(header_bytes) + (values * np.exp(0.3j)).astype("<c8").tobytes())
    field = simulate_field(CONFIG, seed=3)
    reference, _ = reconstruct_sim(field.raw, 3, 3, pixel_size=CONFIG.pixel_size, otf=OTF_MODEL)
    for path in (csv, mrc):
        otf = read_otf(path)
        f = np.linspace(0, 0.9 * OTF_MODEL.cutoff, 50)
        assert np.abs(otf(f) - OTF_MODEL(f)).max() < 1e-3  # the file's frequency scale is read right
        # Values under 0.5 % of the zero-frequency value are dropped as noise: the cut-off is where the ideal
        # OTF falls to that level (within a sample spacing, 1/128 of its cut-off, which moves it by 0.0015).
        assert ideal_otf(np.array([otf.cutoff / OTF_MODEL.cutoff]))[0] == pytest.approx(0.005, abs=0.002)
        image, _ = reconstruct_sim(field.raw, 3, 3, pixel_size=CONFIG.pixel_size, otf=otf)
        assert psnr(normalize_percentile(reference), normalize_percentile(image), data_range=1) > 40
    (tmp_path / "bad.csv").write_text("a,b\n1,x\n")
    with pytest.raises(InputError, match="bad.csv"):
        read_otf(tmp_path / "bad.csv")


def test_raw_layouts():
    from microsr.io import Image

    frames = np.arange(2 * 9 * 32 * 32, dtype=np.float64).reshape(2, 9, 32, 32)
    assert sim_frames(Image(frames, "TCYX", None), 9)[1] == "TYX"
    data, axes = sim_frames(Image(frames[0], "ZYX", None), 9)
    assert data.shape == (1, 9, 32, 32) and axes == "YX"
    data, axes = sim_frames(Image(frames.reshape(18, 32, 32), "TYX", None), 9)  # consecutive acquisitions
    assert data.shape == (2, 9, 32, 32) and np.array_equal(data[1], frames[1]) and axes == "TYX"
    with pytest.raises(InputError, match="no axis of 15 frames"):
        sim_frames(Image(frames, "TCYX", None), 15)


def test_cli_reconstruct_time_series(tmp_path, capsys):
    fields = [simulate_field(CONFIG.replace(size=64), seed=s) for s in (4, 5)]
    raw = tmp_path / "raw.tif"
    write_image(raw, np.stack([f.raw for f in fields]), axes="TCYX", pixel_size=60.0)
    out = tmp_path / "sim.tif"
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "reconstruct", str(raw), "-o", str(out), "--na", "1.2", "--wavelength", "525"])
    assert exit_info.value.code == 0
    assert "period (px)" in capsys.readouterr().out
    image = read_image(out)
    assert (image.axes, image.shape, image.pixel_size) == ("TYX", (2, 128, 128), 30.0)
    for t, field in enumerate(fields):
        assert _score(field, np.asarray(image.data[t]))[0] > 30
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "reconstruct", str(raw), "-o", str(raw), "--na", "1.2", "--wavelength", "525", "--overwrite"])
    assert exit_info.value.code == 2 and "replace or be inside the input" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "reconstruct", str(raw), "-o", str(tmp_path / "x.tif")])
    assert exit_info.value.code == 2 and "--na and --wavelength" in capsys.readouterr().err


def test_compare_sim_reports_every_method():
    field = simulate_field(CONFIG, seed=6)
    rows = {row["method"]: row for row in compare_sim(field.raw, field.target, 3, 3, pixel_size=60.0, na=1.2,
                                                       wavelength=525.0)}
    wide, sim = rows["wide-field (bicubic)"], rows["classical Wiener SIM"]
    assert sim["psnr"] > wide["psnr"] and sim["ssim"] > wide["ssim"] and sim["nrmse"] < wide["nrmse"]
    assert sim["resolution"] < wide["resolution"]
    with pytest.raises(InputError, match="expected \\(15, Y, X\\)"):
        compare_sim(field.raw, field.target, 3, 5, pixel_size=60.0, na=1.2, wavelength=525.0)
