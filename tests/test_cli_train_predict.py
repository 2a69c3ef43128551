"""`microsr train` and `microsr predict` through the real entry point, and on real EM data."""

import numpy as np
import pytest

from microsr.cli import main
from microsr.io import Image, read_image, write_image
from microsr.samples import filaments


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    hr = folder / "hr.tif"
    write_image(hr, Image(filaments((256, 256), seed=5), "YX", pixel_size=20.0))
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--hr", str(hr), "--scale", "2", "--model", "resunet_small", "--tile", "64",
              "--steps", "6", "--workers", "0", "-o", str(folder / "model")])
    assert exit_info.value.code == 0
    return folder / "model"


def test_predict_a_zstack_into_ome_zarr_with_the_output_pixel_size(capsys, model_dir, tmp_path):
    stack = tmp_path / "stack.tif"
    write_image(stack, Image(np.stack([filaments((48, 70), seed=s) for s in range(3)]), "ZYX", pixel_size=40.0,
                             z_spacing=100.0))
    code, _, err = run(capsys, "predict", model_dir, stack, "-o", tmp_path / "out.ome.zarr")
    assert code == 0, err
    out = read_image(tmp_path / "out.ome.zarr")
    assert out.shape == (3, 96, 140) and out.axes == "ZYX"
    assert out.pixel_size == pytest.approx(20.0)
    assert np.isfinite(out.data.compute()).all()


def test_predict_writes_a_consistency_map_on_the_input_grid(capsys, model_dir, tmp_path):
    image = tmp_path / "cells.tif"
    write_image(image, Image(filaments((40, 52), seed=2), "YX", pixel_size=40.0))
    code, out, err = run(capsys, "predict", model_dir, image, "-o", tmp_path / "restored.tif", "--consistency")
    assert code == 0, err
    written = read_image(tmp_path / "restored.consistency.tif")
    assert written.shape == (40, 52) and written.pixel_size == pytest.approx(40.0)
    values = written.data.compute()
    assert np.isfinite(values).all() and values.min() >= 0
    assert "RSE" in out and "RSP" in out


def test_pixel_size_mismatch_is_refused_then_forced(capsys, model_dir, tmp_path):
    image = tmp_path / "coarse.tif"
    write_image(image, Image(filaments((40, 40), seed=1), "YX", pixel_size=80.0))
    code, _, err = run(capsys, "predict", model_dir, image, "-o", tmp_path / "out.tif")
    assert code == 2 and "--rescale" in err and not (tmp_path / "out.tif").exists()
    code, _, err = run(capsys, "predict", model_dir, image, "-o", tmp_path / "out.tif", "--force")
    assert code == 0, err
    assert read_image(tmp_path / "out.tif").shape == (80, 80)


def test_pickled_model_is_refused(capsys, tmp_path):
    import torch

    fake = tmp_path / "model.safetensors"
    torch.save({"w": torch.zeros(1)}, fake)
    image = tmp_path / "in.tif"
    write_image(image, np.zeros((16, 16), np.uint16))
    before = fake.read_bytes()
    code, _, err = run(capsys, "predict", fake, image, "-o", tmp_path / "out.tif")
    assert code == 2 and "pickle" in err and fake.read_bytes() == before


@pytest.mark.realdata
@pytest.mark.slow
def test_train_on_2nm_em_and_predict_real_8nm_em(capsys, realdata, tmp_path):
    """PSSR data (Fang et al. 2021, MIT): 2 nm tSEM for training, a real 4106×2126 8 nm SEM image to restore."""
    hr = realdata("napari_pssr/HR/small.tif")
    lr = realdata("em_lr_8nm/00.tif")
    code, _, err = run(capsys, "train", "--hr", hr, "--pixel-size", "2", "--scale", "4", "--model", "resunet_small",
                       "--tile", "128", "--steps", "10", "--workers", "0", "-o", tmp_path / "model")
    assert code == 0, err
    code, _, err = run(capsys, "predict", tmp_path / "model", lr, "--pixel-size", "8", "-o", tmp_path / "sr.ome.zarr")
    assert code == 0, err
    out = read_image(tmp_path / "sr.ome.zarr")
    assert out.shape == (4 * 4106, 4 * 2126)
    assert out.pixel_size == pytest.approx(2.0)
    assert not bool(np.isnan(out.data).any().compute())
