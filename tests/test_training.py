"""Training end to end: a tiny model beats bicubic on held-out tiles, and resumes where it stopped."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from microsr.errors import InputError
from microsr.io import Image, image_stem, write_image
from microsr.samples import filaments
import microsr


def test_beats_bicubic_on_held_out_tiles(trained):
    _, record = trained
    # Validation tiles come from a band of the image never used for training.
    assert record["val_psnr"] >= record["bicubic_psnr"] + 1.0, record


def test_writes_checkpoints_history_and_config(trained):
    output, record = trained
    for name in ["best.safetensors", "last.safetensors", "config.json", "history.json", "train_state.pt"]:
        assert (output / name).is_file(), name
    info = json.loads((output / "config.json").read_text())
    assert info["scale"] == 4 and info["input_pixel_size"] == 80.0 and info["output_pixel_size"] == 20.0
    assert info["receptive_field"] > 0
    history = json.loads((output / "history.json").read_text())
    assert history[-1]["step"] == record["step"] == 240
    assert history[-1]["val_psnr"] > history[0]["val_psnr"]


def test_resume_continues_from_the_saved_step(run_config, trained, hr_file, tmp_path):
    output, _ = trained
    copy = tmp_path / "model"
    copy.mkdir()
    for file in output.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    epochs_before = len(json.loads((copy / "history.json").read_text()))
    record = microsr.train(run_config(hr_file, steps=256), copy, resume=True, progress=False)
    history = json.loads((copy / "history.json").read_text())
    # 64 samples per epoch in batches of 8: the 16 extra steps are two more epochs, numbered on.
    assert record["step"] == 256
    assert [(r["epoch"], r["step"]) for r in history[epochs_before - 1 :]] == [
        (epochs_before, 240), (epochs_before + 1, 248), (epochs_before + 2, 256)
    ]


def test_existing_run_is_not_overwritten(run_config, trained, hr_file):
    output, _ = trained
    before = (output / "best.safetensors").read_bytes()
    with pytest.raises(InputError, match="resume"):
        microsr.train(run_config(hr_file, steps=1), output, progress=False)
    assert (output / "best.safetensors").read_bytes() == before


def test_predict_with_the_trained_model_restores_units_and_shape(trained):
    output, _ = trained
    restorer = microsr.load_model(output)
    lowres = np.full((40, 52), 1000, np.uint16)
    restored = restorer.predict(lowres)
    assert restored.shape == (160, 208) and restored.dtype == np.float32
    assert np.isfinite(restored).all()


class TwoConvs(nn.Module):
    """A user's own architecture, outside the registry."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1))
        self.shuffle = nn.PixelShuffle(4)

    def forward(self, x):
        return self.shuffle(self.body(x))


def test_a_custom_module_trains_and_loads(run_config, hr_file, tmp_path):
    record = microsr.train(run_config(hr_file, steps=8), tmp_path / "custom", model=TwoConvs(), progress=False)
    assert record["step"] == 8
    with pytest.raises(InputError, match="custom architecture"):
        microsr.load_model(tmp_path / "custom")
    restorer = microsr.load_model(tmp_path / "custom", model=TwoConvs())
    assert restorer.predict(np.ones((16, 16), np.float32)).shape == (64, 64)


def test_a_killed_run_resumes_from_its_last_epoch(run_config, hr_file, tmp_path):
    """Kill the training process (no chance to clean up) after its first epochs, then resume."""
    import os
    import signal
    import subprocess
    import sys
    import time

    config = tmp_path / "run.yaml"
    config.write_text(json.dumps(run_config(hr_file, steps=100_000)))
    output = tmp_path / "model"
    child = subprocess.Popen([sys.executable, "-m", "microsr", "train", str(config), "-o", str(output),
                              "--workers", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (output / "history.json").exists() or len(json.loads((output / "history.json").read_text())) < 2:
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.2)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    saved = torch.load(output / "train_state.pt", weights_only=True)["run"]
    record = microsr.train(run_config(hr_file, steps=saved["step"] + 8), output, resume=True, progress=False)
    assert (record["epoch"], record["step"]) == (saved["epoch"] + 1, saved["step"] + 8)


def test_real_pairs_train_without_a_degradation(run_config, hr_file, tmp_path):
    from microsr.degrade import degrade_image
    from microsr.degrade import preset
    from microsr.io import read_image

    lr_file = tmp_path / "filaments.tif"
    write_image(lr_file, degrade_image(read_image(hr_file), preset("poisson", scale=4), seed=3))
    config = run_config(hr_file, steps=8)
    config["data"]["lr"] = [str(lr_file)]
    record = microsr.train(config, tmp_path / "paired", progress=False)
    info = json.loads((tmp_path / "paired" / "config.json").read_text())
    assert record["step"] == 8 and info["degradation"] is None and info["input_pixel_size"] == 80.0


def test_a_diverging_run_stops_with_a_clear_error_and_keeps_its_last_epoch(run_config, hr_file, tmp_path):
    microsr.train(run_config(hr_file, steps=8), tmp_path, progress=False)  # one good epoch
    kept = (tmp_path / "last.safetensors").read_bytes()
    with pytest.raises(InputError, match=r"training diverged: the loss is (nan|inf) at step (9|1[0-6]) .*Lower train.lr"):
        microsr.train(run_config(hr_file, steps=16, lr=1e30, grad_clip=None), tmp_path, resume=True, progress=False)
    assert (tmp_path / "last.safetensors").read_bytes() == kept
    assert len(json.loads((tmp_path / "history.json").read_text())) == 1


def _pair_folders(folder, hr_names, lr_names, shapes):
    """HR images (shape of each name in ``shapes``) in folder/hr, LR images of half the size in folder/lr."""
    rng = np.random.default_rng(0)
    for side, names, factor in (("hr", hr_names, 1), ("lr", lr_names, 2)):
        (folder / side).mkdir()
        for file in names:
            shape = tuple(n // factor for n in shapes[image_stem(Path(file))])
            write_image(folder / side / file, rng.integers(0, 1000, shape, dtype=np.uint16))
    return {"data": {"hr": [str(folder / "hr")], "lr": [str(folder / "lr")], "tile": 32, "batch_size": 2,
                     "samples_per_epoch": 2, "num_workers": 0},
            "scale": 2, "model": {"name": "resunet_small"}, "train": {"steps": 1, "precision": "fp32"}}


def test_real_pairs_with_an_unmatched_name_are_refused_not_mispaired(tmp_path):
    """hr/{a,b} and lr/{a,c}, all the same size: by sorted order b would train against c; by name it is an error."""
    config = _pair_folders(tmp_path, ["a.tif", "b.tif"], ["a.tif", "c.tif"], {"a": (64, 64), "b": (64, 64), "c": (64, 64)})
    with pytest.raises(InputError, match=r"hr/b.tif has no LR image named 'b'.*lr/c.tif has no HR image named 'c'"):
        microsr.train(config, tmp_path / "model", progress=False)
    assert not (tmp_path / "model").exists()


def test_real_pairs_are_matched_by_name_not_by_sorted_order(tmp_path):
    """hr/ sorts as [cell.sted.tif, cell.tif] but lr/ as [cell.ome.tif, cell.sted.ome.tif]: by order each HR image
    met the other's LR (of another size, so the old by-order pairing failed here); by name they train."""
    config = _pair_folders(tmp_path, ["cell.tif", "cell.sted.tif"], ["cell.ome.tif", "cell.sted.ome.tif"],
                           {"cell": (64, 64), "cell.sted": (96, 64)})
    assert microsr.train(config, tmp_path / "model", progress=False)["step"] == 1


def test_training_from_arrays_matches_training_from_their_files(tmp_path):
    """napari and notebooks pass images in memory: the same pixels give the same run as their files."""
    images = [filaments((96, 96), seed=seed) for seed in (1, 2)]
    files = [write_image(tmp_path / f"{i}.tif", Image(image, "YX", pixel_size=20.0)) for i, image in enumerate(images)]

    def run(hr, output):
        config = {"data": {"hr": hr, "pixel_size": 20.0, "tile": 32, "batch_size": 4, "samples_per_epoch": 8,
                           "num_workers": 0},
                  "scale": 2, "model": {"name": "resunet_small"}, "train": {"steps": 2, "precision": "fp32", "seed": 3}}
        return microsr.train(config, tmp_path / output, progress=False)

    from_files = run([str(path) for path in files], "files")
    from_memory = run([Image(images[0], "YX", pixel_size=20.0), images[1]], "memory")  # a bare array: data.pixel_size
    assert from_memory["loss"] == pytest.approx(from_files["loss"], rel=1e-6)
    assert from_memory["val_psnr"] == pytest.approx(from_files["val_psnr"], rel=1e-6)
    info = json.loads((tmp_path / "memory" / "config.json").read_text())
    assert info["output_pixel_size"] == 20.0 and info["input_pixel_size"] == 40.0
    assert info["run"]["data"]["hr"] == ["<in-memory image YX 96x96 " + str(images[0].dtype) + ">", "<in-memory image 96x96 "
                      + str(images[1].dtype) + ">"]
    with pytest.raises(InputError, match="give both as files or folders .* not a mix"):
        microsr.train({"data": {"hr": [images[0]], "lr": [str(files[0])]}, "scale": 2}, tmp_path / "mixed")

