"""SRRF targets (microsr.simulate.srrf): eSRRF through NanoPyx, cached, and a 5-frame model trained on them."""

import json

import numpy as np
import pytest

from microsr.cli import main
from microsr.evaluate.metrics import decorrelation
from microsr.io import read_image, write_image
from microsr.predict.restorer import load_model
from microsr.sim.network import predict_sim
from microsr.simulate.smlm import preset, simulate_stack
from microsr.simulate.srrf import ESRRFSettings, esrrf
import microsr

pytest.importorskip("nanopyx", reason="eSRRF needs NanoPyx (pip install microsr[nanopyx])")
pytestmark = [
    pytest.mark.filterwarnings("ignore:Numba is not installed:UserWarning"),
    pytest.mark.filterwarnings("ignore:tap.*OpenCL:UserWarning"),
]


def _printed(capsys):
    """Standard output with the console's line wrapping undone."""
    return " ".join(capsys.readouterr().out.split())


@pytest.fixture(scope="module")
def blinking(tmp_path_factory):
    """A 60-frame stack of blinking emitters on filaments, 32 x 32 pixels of 100 nm, as a TIFF."""
    stack = simulate_stack(preset("default").replace(size=32, density=2.0, filaments=3), 60, seed=0)[0]
    path = tmp_path_factory.mktemp("srrf") / "blinking.tif"
    write_image(path, stack, axes="TYX", pixel_size=100.0)
    return path, stack


def test_esrrf_is_finer_than_the_mean_and_cached(blinking, tmp_path):
    _, stack = blinking
    image, computed = esrrf(stack[:30], cache=tmp_path)
    assert computed and image.shape == (64, 64) and image.dtype == np.float32
    resolution = decorrelation(image, pixel_size=50.0).resolution
    assert resolution < 0.6 * decorrelation(stack[:30].astype(float).mean(axis=0), pixel_size=100.0).resolution
    again, computed = esrrf(stack[:30], ESRRFSettings(run_type="Unthreaded"), cache=tmp_path)
    assert not computed and np.array_equal(again, image)  # the run type is no part of the result
    other, computed = esrrf(stack[:30], ESRRFSettings(radius=2.0), cache=tmp_path)
    assert computed and not np.array_equal(other, image)
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_targets_and_a_five_frame_model(blinking, tmp_path, capsys):
    path, stack = blinking
    cache, pairs = tmp_path / "cache", tmp_path / "pairs"
    args = ["srrf", "targets", str(path), "--frames-per-target", "25", "--cache", str(cache)]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "-o", str(pairs)])
    assert exit_info.value.code == 0
    assert "wrote 2 input/target pairs" in _printed(capsys)  # frames 50-59 make no full block
    inputs, target = read_image(pairs / "inputs" / "0001.tif"), read_image(pairs / "targets" / "0001.tif")
    assert (inputs.axes, inputs.shape, inputs.pixel_size) == ("CYX", (5, 32, 32), 100.0)
    assert np.array_equal(np.asarray(inputs.data), stack[25:30])
    assert (target.shape, target.pixel_size) == ((64, 64), 50.0)
    with pytest.raises(SystemExit):
        main([*args, "-o", str(tmp_path / "again")])
    assert "(0 eSRRF computed, 2 from the cache)" in _printed(capsys)

    run = {
        "data": {"lr": [str(pairs / "inputs")], "hr": [str(pairs / "targets")], "frame_axis": "C",
                 "channels": [0, 1, 2, 3, 4], "tile": 32, "batch_size": 4, "samples_per_epoch": 16,
                 "val_fraction": 0.4, "num_workers": 0},
        "scale": 2, "model": {"name": "resunet_small"}, "train": {"steps": 24, "lr": 2e-3},
    }
    microsr.train(run, tmp_path / "model", progress=False)
    history = json.loads((tmp_path / "model" / "history.json").read_text())
    assert history[-1]["loss"] < history[0]["loss"]
    restorer = load_model(tmp_path / "model")
    assert restorer.frames == 5
    assert predict_sim(restorer, stack[:5]).shape == (64, 64)


@pytest.mark.realdata
def test_shipped_five_frame_model_on_the_deepstorm_test_stack(realdata, published, tmp_path):
    """Frames 1-5 of Deep-STORM's simulated microtubule stack against the eSRRF of all 361 frames.

    Recomputes the README's SRRF table (benchmarks/realdata/srrf_deepstorm.py) and holds it to the
    published figures: PSNR within 0.05 dB, SSIM and RSP within 0.005, resolution within 5 nm.
    """
    realdata("deepstorm/testStack_SimulatedMicrotubules.tif")
    script, results = published("benchmarks/realdata/srrf_deepstorm.py")
    rows = {row["method"]: row for row in script.evaluate(tmp_path)}
    for row in results["rows"]:
        measured = rows[row["method"]]
        assert measured["psnr"] == pytest.approx(row["psnr"], abs=0.05), row["method"]
        assert measured["ssim"] == pytest.approx(row["ssim"], abs=0.005), row["method"]
        assert measured["rsp"] == pytest.approx(row["rsp"], abs=0.005), row["method"]
        assert measured["resolution_nm"] == pytest.approx(row["resolution_nm"], abs=5), row["method"]
    learned, classical, mean = rows["srrf5"], rows["eSRRF of the 5 frames"], rows["mean, bicubic x2"]
    assert learned["psnr"] > classical["psnr"] + 1 and learned["ssim"] > classical["ssim"] + 0.03
    assert learned["rsp"] > mean["rsp"] + 0.03
