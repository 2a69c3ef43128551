"""Multi-frame SIM training: frames as channels (data.PairedImages), config, train, fine-tune, apply."""

import json

import numpy as np
import pytest
import torch

from microsr.cli import main
from microsr.config import load_config
from microsr.data.datasets import PairedImages
from microsr.data.normalize import PercentileNormalizer
from microsr.errors import InputError
from microsr.evaluate.sim import compare_sim
from microsr.io import Image, read_image, write_image
from microsr.predict.restorer import load_model
from microsr.sim.network import predict_sim
from microsr.simulate.sim import SIMSimulation, simulate_field
import microsr

IDENTITY = PercentileNormalizer(0, 100, lo=0.0, hi=1.0)  # keeps raw values, so samples can be traced


def _labelled_pair(times=2, frames=9):
    """LR frames worth ``100 t + c`` (time t, frame c) and HR targets worth ``t``."""
    values = 100.0 * np.arange(times)[:, None] + np.arange(frames)[None, :]
    lr = Image(np.broadcast_to(values[:, :, None, None], (times, frames, 32, 32)).copy(), "TCYX", None)
    hr = Image(np.broadcast_to(np.arange(times, dtype=float)[:, None, None], (times, 64, 64)).copy(), "TYX", None)
    return lr, hr


def test_frames_as_channels_pair_each_acquisition_with_its_target():
    lr, hr = _labelled_pair()
    data = PairedImages(lr, hr, scale=2, tile=32, frame_axis="C", channels=[0, 3, 6], val_fraction=0.25,
                        normalizer=IDENTITY, samples_per_epoch=20)
    times = set()
    for i in range(len(data)):
        inputs, target = data[i]
        assert tuple(inputs.shape) == (3, 16, 16) and tuple(target.shape) == (1, 32, 32)
        t = float(target[0, 0, 0])
        times.add(t)
        assert inputs[:, 0, 0].tolist() == [100 * t, 100 * t + 3, 100 * t + 6]
    assert times == {0.0, 1.0}


def test_frames_as_channels_errors():
    lr, hr = _labelled_pair()
    with pytest.raises(InputError, match="need 10 frames along C but .* has 9"):
        PairedImages(lr, hr, scale=2, tile=32, frame_axis="C", channels=[0, 9])
    with pytest.raises(InputError, match="leading axes besides the frames along C equal"):
        PairedImages(lr, hr.replace(data=hr.data[0], axes="YX"), scale=2, tile=32, frame_axis="C", channels=[0])
    with pytest.raises(InputError, match="distinct frame indices"):
        PairedImages(lr, hr, scale=2, tile=32, frame_axis="C", channels=[1, 1])
    with pytest.raises(InputError, match="the channels are the input frames"):
        PairedImages(lr, hr, scale=2, tile=32, frame_axis="C", channels=[0, 1], frames=3)


def test_config_channels_set_the_input_frames():
    data = {"lr": ["raw"], "hr": ["target"], "frame_axis": "C", "channels": [0, 5]}
    config = load_config({"data": data, "scale": 2})
    assert config.data.frames == 2  # an even number of frames is fine as channels
    assert load_config(config.model_dump(mode="json")).data.channels == [0, 5]  # as stored in checkpoints
    with pytest.raises(InputError, match="frames 3 differs from the 2 channels"):
        load_config({"data": {**data, "frames": 3}})
    with pytest.raises(InputError, match="channels need real pairs"):
        load_config({"data": {"hr": ["target"], "channels": [0]}})


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """Eight simulated 3 x 3 fields written by `microsr sim simulate`, and a held-out field."""
    folder = tmp_path_factory.mktemp("sim") / "fields"
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "simulate", "-o", str(folder), "--fields", "8", "--size", "64", "--seed", "1"])
    assert exit_info.value.code == 0
    return folder, simulate_field(SIMSimulation(size=64), seed=123)


def _run(folder, channels, **train):
    return {
        "data": {"lr": [str(folder / "raw")], "hr": [str(folder / "target")], "frame_axis": "C",
                 "channels": channels, "tile": 64, "batch_size": 4, "samples_per_epoch": 32, "num_workers": 0},
        "scale": 2, "model": {"name": "resunet_small"}, "train": {"lr": 2e-3, **train},
    }


@pytest.fixture(scope="module")
def three_frame_model(simulated, tmp_path_factory):
    folder, _ = simulated
    output = tmp_path_factory.mktemp("run") / "sim3"
    microsr.train(_run(folder, [0, 3, 6], steps=48), output, progress=False)
    return output


def test_three_frame_model_trains_and_applies(simulated, three_frame_model):
    # Whether it beats wide-field on real data after a longer run is tests/test_sim_realdata.py's question.
    history = json.loads((three_frame_model / "history.json").read_text())
    assert history[-1]["val_psnr"] > history[0]["val_psnr"] + 1
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]
    _, field = simulated
    restorer = load_model(three_frame_model)
    assert restorer.info["frames"] == 3 and restorer.info["run"]["data"]["channels"] == [0, 3, 6]
    prediction = predict_sim(restorer, field.raw)
    assert prediction.shape == (128, 128) and prediction.dtype == np.float32
    # Output in the input's units: the bright structure about as bright as in the frames' mean.
    bright = np.percentile(field.raw.astype(float).mean(axis=0), 99.9)
    assert 0.5 * bright < np.percentile(prediction, 99.9) < 2 * bright
    with pytest.raises(InputError, match="reads frames \\[0, 3, 6\\]"):
        predict_sim(restorer, field.raw[:4])


def test_fine_tuning_starts_from_the_given_model(simulated, three_frame_model, tmp_path):
    folder, _ = simulated
    run = _run(folder, [0, 3, 6], steps=1, lr=1e-12)
    run["model"]["init"] = str(three_frame_model)
    microsr.train(run, tmp_path / "tuned", progress=False)
    start, tuned = load_model(three_frame_model).module.state_dict(), load_model(tmp_path / "tuned").module.state_dict()
    assert all(torch.allclose(start[name], tuned[name], atol=1e-6) for name in start)
    mismatched = _run(folder, [0, 1, 2, 3, 4], steps=1)
    mismatched["model"]["init"] = str(three_frame_model)
    with pytest.raises(InputError, match="do not fit the model"):
        microsr.train(mismatched, tmp_path / "other", progress=False)


def test_cli_sim_predict(simulated, three_frame_model, tmp_path, capsys):
    folder, _ = simulated
    output = tmp_path / "predicted.tif"
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "predict", str(three_frame_model), str(folder / "raw" / "0002.tif"), "-o", str(output),
              "--device", "cpu"])
    assert exit_info.value.code == 0, capsys.readouterr().err
    image = read_image(output)
    assert (image.shape, image.pixel_size) == ((128, 128), 30.0)
    direct = predict_sim(three_frame_model, np.asarray(read_image(folder / "raw" / "0002.tif").data))
    assert np.allclose(np.asarray(image.data), direct, atol=1e-3 * np.abs(direct).max())
    # Frames at another pixel size than the model's (60 nm) are refused unless forced: SIM frames cannot be
    # resampled, since the pattern would move with them.
    argv = ["sim", "predict", str(three_frame_model), str(folder / "raw" / "0002.tif"), "--pixel-size", "80",
            "--device", "cpu"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "-o", str(tmp_path / "refused.tif")])
    assert exit_info.value.code == 2
    assert "use a model trained at 80 nm, or pass --force" in capsys.readouterr().err
    assert not (tmp_path / "refused.tif").exists()
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "-o", str(tmp_path / "forced.tif"), "--force"])
    assert exit_info.value.code == 0


def test_plain_predict_takes_a_frames_as_channels_model(simulated, three_frame_model, tmp_path, capsys):
    """`microsr predict` runs a SIM model through the same engine as `sim predict` and predict_sim."""
    folder, _ = simulated
    raw = folder / "raw" / "0002.tif"
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(three_frame_model), str(raw), "-o", str(tmp_path / "out.tif"), "--device", "cpu"])
    assert exit_info.value.code == 0, capsys.readouterr().err
    predicted = read_image(tmp_path / "out.tif")
    assert (predicted.axes, predicted.pixel_size) == ("YX", 30.0)
    direct = predict_sim(three_frame_model, np.asarray(read_image(raw).data))
    np.testing.assert_allclose(np.asarray(predicted.data), direct, rtol=0, atol=1e-3 * np.abs(direct).max())


def test_shipped_low_light_model_restores_simulated_low_light_fields(tmp_path):
    """`sim_lowlight` (configs/sim_lowlight.yaml) on fresh dlsim-low fields: far closer to the target than wide-field."""
    from microsr.simulate.sim import preset

    config = preset("dlsim-low")
    gains = []
    for seed in (101, 102):
        field = simulate_field(config, seed)
        rows = {row["method"]: row for row in compare_sim(field.raw, field.target, 3, 5, pixel_size=60.0, na=1.2,
                                                          wavelength=525.0, models=["sim_lowlight"])}
        gains.append((rows["sim_lowlight"]["psnr"] - rows["wide-field (bicubic)"]["psnr"],
                      rows["sim_lowlight"]["ssim"] - rows["wide-field (bicubic)"]["ssim"]))
    # Scored as every microsr score (target percentile-normalised, each image fitted to it), measured:
    # +3.7 dB / +0.25 and +2.7 dB / +0.30.
    assert all(psnr_gain > 2 and ssim_gain > 0.15 for psnr_gain, ssim_gain in gains), gains
    # The name works wherever a model path does, and a config resolves it rather than a relative path.
    assert load_model("sim_lowlight").info["arch"] == {"name": "resunet_small", "in_channels": 15, "scale": 2}
    (tmp_path / "run.yaml").write_text("data: {hr: [x.tif]}\nmodel: {name: resunet_small, init: sim_lowlight}\n")
    assert str(load_config(tmp_path / "run.yaml").model.init) == "sim_lowlight"
    (tmp_path / "run.yaml").write_text("data: {hr: [x.tif]}\nmodel: {name: resunet_small, init: base}\n")
    assert load_config(tmp_path / "run.yaml").model.init == tmp_path / "base"


def test_shipped_tirf_model_restores_simulated_tirf_sim_fields():
    """`tirf9` (configs/tirf9.yaml) on fresh TIRF-SIM fields: a 180 nm pattern beyond the emission cut-off.

    The shipped model was trained through rDL-SIM's measured OTF, whose cut-off (5.4 cycles/µm) is that
    of an ideal pupil of NA 1.41 at 525 nm, used here so the test needs no data outside the project.
    """
    from microsr.simulate.sim import SIMSimulation

    config = SIMSimulation(pixel_size=62.6, na=1.41, period=(178.0, 184.0), modulation=(0.4, 0.9),
                           photons=(30.0, 150.0), background=(10.0, 60.0), density=(2.0, 6.0))
    gains = []
    for seed in (101, 102):
        field = simulate_field(config, seed)
        rows = {row["method"]: row for row in compare_sim(field.raw, field.target, 3, 3, pixel_size=62.6, na=1.41,
                                                          wavelength=525.0, models=["tirf9"], period=181.0)}
        gains.append((rows["tirf9"]["psnr"] - rows["wide-field (bicubic)"]["psnr"],
                      rows["tirf9"]["ssim"] - rows["wide-field (bicubic)"]["ssim"]))
    # Scored as every microsr score (target percentile-normalised, each image fitted to it), measured:
    # +3.7 dB / +0.24 and +5.0 dB / +0.23.
    assert all(psnr_gain > 2.5 and ssim_gain > 0.2 for psnr_gain, ssim_gain in gains), gains


def test_a_model_trained_on_one_time_point_takes_it_from_multi_time_point_files(simulated, tmp_path, capsys):
    """T-SIM's layout (configs/tsim_er.yaml): 9 frames along C, 3 time points along Z, one target per file."""
    folder, _ = simulated
    raws = [np.asarray(read_image(folder / "raw" / f"{i:04d}.tif").data) for i in range(3)]
    write_image(tmp_path / "tsim.tif", Image(np.stack(raws, axis=1), "CZYX", 60.0))
    run = _run(folder, [0, 3, 6], steps=2)
    run["data"].update(lr=[str(tmp_path / "tsim.tif")], hr=[str(folder / "target" / "0001.tif")], lr_planes={"Z": 1})
    microsr.train(run, tmp_path / "model", progress=False)
    expected = predict_sim(tmp_path / "model", raws[1])
    for name, raw in (("middle.tif", tmp_path / "tsim.tif"), ("single.tif", folder / "raw" / "0001.tif")):
        with pytest.raises(SystemExit) as exit_info:
            main(["sim", "predict", str(tmp_path / "model"), str(raw), "-o", str(tmp_path / name), "--device", "cpu"])
        assert exit_info.value.code == 0, capsys.readouterr().err
        predicted = np.asarray(read_image(tmp_path / name).data)
        assert predicted.shape == (128, 128)  # one acquisition: the middle time point, not all three
        assert np.allclose(predicted, expected, atol=1e-3 * np.abs(expected).max())
    run["data"]["lr_planes"] = {"Z": 3}
    with pytest.raises(InputError, match="plane 3 of Z is out of range 0-2"):
        microsr.train(run, tmp_path / "refused", progress=False)
