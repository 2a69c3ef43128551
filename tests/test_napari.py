"""The napari plugin driven through a real viewer (pytest-qt), and the Predictor's progress hook.

GUI tests need napari and a display: ``make test`` installs Xvfb and runs pytest
under ``xvfb-run``; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch

from microsr.degrade import Degradation, preset
from microsr.degrade import degrade_image
from microsr.errors import InputError
from microsr.io import Image, read_image, write_image
from microsr.predict.engine import Predictor
from microsr.samples import filaments
import microsr

WAIT_MS = 60_000  # generous: other test runs share the two cores


class _Cancel(Exception):
    pass


def test_on_tile_reports_every_tile_and_an_exception_from_it_stops_a_streamed_prediction(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.PixelShuffle(2))
    predictor = Predictor(model, scale=2, tile=16, overlap=4, progress=False)
    image = Image(np.random.default_rng(0).random((64, 48), dtype=np.float32), "YX", pixel_size=40.0)
    calls = []

    def stop_after_three(done: int, total: int) -> None:
        calls.append((done, total))
        if done == 3:
            raise _Cancel

    output = tmp_path / "out.ome.zarr"
    with pytest.raises(_Cancel):
        predictor.predict_to_file(image, output, on_tile=stop_after_three)
    assert calls == [(1, 12), (2, 12), (3, 12)]
    assert not output.exists() and (tmp_path / "out.ome.zarr.partial").is_dir()

    resumed = []
    predictor.predict_to_file(image, output, resume=True, on_tile=lambda done, total: resumed.append(done))
    assert resumed[-1] == 12
    np.testing.assert_allclose(read_image(output).data.compute(), predictor.predict(image), atol=1e-6)


# --------------------------------------------------------------------------- GUI


class Gui(NamedTuple):
    viewer: Any
    qtbot: Any


@pytest.fixture
def gui(request):
    """A napari viewer and pytest-qt's bot; skipped without napari, pytest-qt or a display.

    Their fixtures are looked up here, not requested by the tests, so that a
    missing optional extra skips the tests instead of failing their set-up.
    """
    pytest.importorskip("napari", reason="napari is an optional extra: pip install 'microsr[napari]'")
    pytest.importorskip("pytestqt", reason="the GUI tests need pytest-qt: pip install 'microsr[napari-test]'")
    if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        pytest.skip("no display for Qt: run under xvfb-run (make test installs Xvfb when run as root)")
    return Gui(request.getfixturevalue("make_napari_viewer")(), request.getfixturevalue("qtbot"))


def dock(viewer, name):
    """Open a widget as Plugins > microsr > NAME does (through the npe2 manifest)."""
    _, widget = viewer.window.add_plugin_dock_widget("microsr", name)
    return widget


def wait(qtbot, widget):
    """Wait until the widget's background work has finished and its results are shown."""
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)


def notifications() -> list[str]:
    """The messages of napari's notifications so far (errors and warnings)."""
    from napari.utils.notifications import notification_manager

    return [str(record.message) for record in notification_manager.records]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A x2 model trained for two steps on 20 nm filaments (so it takes 40 nm inputs)."""
    folder = tmp_path_factory.mktemp("napari")
    hr = write_image(folder / "hr.tif", Image(filaments((96, 96), seed=3), "YX", pixel_size=20.0))
    config = {
        "data": {"hr": [str(hr)], "tile": 32, "batch_size": 2, "samples_per_epoch": 4, "num_workers": 0},
        "scale": 2, "model": {"name": "resunet_small"}, "train": {"steps": 2},
    }
    microsr.train(config, folder / "model", progress=False)
    return folder / "model"


def test_degrade_widget_follows_preset_scale_and_yaml_edits_and_saves_yaml(gui, tmp_path):
    viewer, qtbot = gui

    hr = filaments((128, 128), seed=5)
    layer = viewer.add_image(hr, name="hr", scale=(20, 20), units="nm")
    widget = dock(viewer, "Degrade")
    widget.image.value = layer
    widget.preset.value = "clean"
    widget.scale.value = 2
    wait(qtbot, widget)
    degraded = viewer.layers["hr degraded"]
    expected = degrade_image(Image(hr, "YX", pixel_size=20.0), preset("clean", scale=2), seed=0)
    assert degraded.data.shape == (64, 64) and degraded.data.dtype == np.uint16
    np.testing.assert_array_equal(degraded.data, expected.data.compute())
    # x2 coarser pixels, centred over the pairs of input pixels they average.
    np.testing.assert_allclose(degraded.scale, [40, 40])
    np.testing.assert_allclose(degraded.translate, [10, 10])

    widget.steps.value = widget.steps.value.replace("factor: 2", "factor: 4")
    qtbot.waitUntil(lambda: degraded.data.shape == (32, 32), timeout=WAIT_MS)
    np.testing.assert_allclose(degraded.scale, [80, 80])

    widget.steps.value = "steps: [{type: blur, sigma: -1}]"
    qtbot.waitUntil(lambda: "blur.sigma" in widget.status.value, timeout=WAIT_MS)
    assert degraded.data.shape == (32, 32)

    widget.steps.value = preset("poisson", scale=4).to_yaml()
    widget.save_path.value = tmp_path / "pipeline.yaml"
    widget.save_button.clicked()
    assert Degradation.from_yaml(tmp_path / "pipeline.yaml") == preset("poisson", scale=4)


def test_train_widget_trains_on_a_layer_with_preview_and_loss_curve(gui, tmp_path):
    viewer, qtbot = gui

    hr = viewer.add_image(filaments((96, 96), seed=7), name="hr", scale=(20, 20), units="nm")
    lr = viewer.add_image(filaments((48, 48), seed=8), name="lr", scale=(40, 40), units="nm")
    widget = dock(viewer, "Train")
    widget.hr.value = [hr]
    widget.model_name.value = "resunet_small"
    widget.scale.value = 2
    widget.steps.value = 4
    widget.tile.value = 32
    widget.batch_size.value = 2
    widget.epoch_tiles.value = 4  # two steps per epoch: two epochs, two previews
    widget.output.value = tmp_path / "model"
    widget.preview.value = lr
    widget.run()
    wait(qtbot, widget)

    assert [record["epoch"] for record in widget.history] == [1, 2]
    assert widget.progress.value == widget.progress.max
    assert len(widget._axes.lines[0].get_xdata()) == 2  # the training-loss curve has a point per epoch
    assert (tmp_path / "model" / "best.safetensors").is_file() and (tmp_path / "model" / "last.safetensors").is_file()
    preview = viewer.layers["lr preview"]
    assert preview.data.shape == (96, 96) and np.isfinite(preview.data).all()
    np.testing.assert_allclose(preview.scale, [20, 20])
    assert microsr.load_model(tmp_path / "model").input_pixel_size == 40.0


def test_train_widget_stop_ends_after_the_epoch_and_keeps_its_checkpoint(gui, tmp_path):
    viewer, qtbot = gui

    hr = viewer.add_image(filaments((96, 96), seed=7), name="hr", scale=(20, 20), units="nm")
    widget = dock(viewer, "Train")
    widget.hr.value = [hr]
    widget.model_name.value = "resunet_small"
    widget.scale.value = 2
    widget.steps.value = 10_000
    widget.tile.value = 32
    widget.batch_size.value = 2
    widget.epoch_tiles.value = 2
    widget.output.value = tmp_path / "model"
    widget.run()
    widget.stop_button.clicked()
    wait(qtbot, widget)

    assert [record["epoch"] for record in widget.history] == [1]
    assert widget.status.value.startswith("stopped after epoch 1")
    assert microsr.load_model(tmp_path / "model" / "last.safetensors").scale == 2


def test_predict_widget_overlays_the_restored_layer_and_streams_a_multiscale_layer_to_a_file(
    gui, tmp_path, tiny_model
):
    viewer, qtbot = gui
    import dask.array as da
    import zarr


    lowres = viewer.add_image(filaments((40, 56), seed=9), name="lr", scale=(40, 40), units="nm")
    widget = dock(viewer, "Predict")
    widget.model.value = tiny_model
    widget.image.value = lowres
    widget.tile.value = 16
    widget.run()
    wait(qtbot, widget)
    restored = viewer.layers["lr restored"]
    assert restored.data.shape == (80, 112) and np.isfinite(restored.data).all()
    np.testing.assert_allclose(restored.scale, [20, 20])
    np.testing.assert_allclose(restored.translate, [-10, -10])  # half an output pixel before the input's first
    assert widget.progress.value == widget.progress.max == 3 * 4
    np.testing.assert_allclose(restored.data, microsr.load_model(tiny_model).predict(lowres.data, tile=16), atol=1e-5)

    # A zarr-backed multiscale layer: its full-resolution level is predicted, streamed to OME-Zarr.
    store = write_image(tmp_path / "big.ome.zarr", Image(filaments((96, 80), seed=10), "YX", pixel_size=40.0),
                        levels=2)
    levels = [da.from_zarr(zarr.open_array(store / str(level), mode="r")) for level in range(2)]
    big = viewer.add_image(levels, name="big", multiscale=True, scale=(40, 40), units="nm")
    widget.image.value = big
    widget.output.value = tmp_path / "big_x2.ome.zarr"
    widget.run()
    wait(qtbot, widget)
    written = read_image(tmp_path / "big_x2.ome.zarr")
    assert written.shape == (192, 160) and written.pixel_size == 20.0
    assert viewer.layers["big restored"].data.shape == (192, 160)
    assert np.isfinite(written.data.compute()).all()


def test_predict_widget_cancel_stops_midway_and_adds_no_layer(gui, tiny_model):
    viewer, qtbot = gui

    layer = viewer.add_image(filaments((256, 256), seed=12), name="lr", scale=(40, 40), units="nm")
    widget = dock(viewer, "Predict")
    widget.model.value = tiny_model
    widget.image.value = layer
    widget.tile.value = 16  # 256 tiles
    widget.run()
    qtbot.waitUntil(lambda: widget.progress.value >= 2, timeout=WAIT_MS)
    widget.cancel_button.clicked()
    wait(qtbot, widget)
    assert widget.status.value.startswith("cancelled after")
    assert widget.progress.value < widget.progress.max == 256
    assert "lr restored" not in viewer.layers
    assert widget.run_button.enabled


def test_predict_widget_shows_the_cli_message_on_a_pixel_size_mismatch(gui, tiny_model):
    viewer, qtbot = gui
    from microsr.predict.engine import check_pixel_size

    layer = viewer.add_image(filaments((32, 32), seed=13), name="lr", scale=(10, 10), units="nm")
    widget = dock(viewer, "Predict")
    widget.model.value = tiny_model
    widget.image.value = layer
    widget.run()
    wait(qtbot, widget)
    with pytest.raises(InputError) as cli_error:
        check_pixel_size(10.0, 40.0, rescale=False, force=False)
    assert str(cli_error.value) in notifications()
    assert "lr restored" not in viewer.layers

    widget.rescale.value = True  # resampled to 40 nm first: 8 x 8, restored to 16 x 16 pixels of 20 nm
    widget.run()
    wait(qtbot, widget)
    assert any("resampling the input by 0.25 to 40 nm" in message for message in notifications())
    assert viewer.layers["lr restored"].data.shape == (16, 16)
    np.testing.assert_allclose(viewer.layers["lr restored"].scale, [20, 20])


def test_compare_widget_scores_and_maps_the_error(gui):
    viewer, qtbot = gui
    from microsr.evaluate.metrics import normalize_like, normalize_percentile, psnr, ssim

    truth = filaments((64, 64), seed=14).astype(np.float32)
    noisy = truth + np.random.default_rng(0).normal(0, 500, truth.shape).astype(np.float32)
    reference = viewer.add_image(truth, name="truth", scale=(20, 20), units="nm")
    prediction = viewer.add_image(noisy, name="noisy", scale=(20, 20), units="nm")
    widget = dock(viewer, "Compare")
    widget.prediction.value = prediction
    widget.reference.value = reference
    widget.run()
    wait(qtbot, widget)
    # By default the prediction is fitted (gain and offset) to the percentile-normalised reference.
    unit_truth = normalize_percentile(truth)
    unit_noisy = normalize_like(noisy, unit_truth)
    assert widget.metrics["psnr"] == pytest.approx(psnr(unit_truth, unit_noisy, data_range=1.0))
    assert widget.metrics["ssim"] == pytest.approx(ssim(unit_truth, unit_noisy, data_range=1.0))
    error = viewer.layers["noisy error"]
    assert error.data.shape == (64, 64) and np.isfinite(error.data).all()
    assert 300 < np.sqrt(np.mean(error.data.astype(np.float64) ** 2)) < 700  # the added noise's std is 500
    np.testing.assert_allclose(error.scale, [20, 20])
    assert f"{widget.metrics['psnr']:.2f} dB" in widget.result.value

    widget.reference.value = viewer.add_image(truth[:32], name="half")
    widget.run()
    wait(qtbot, widget)
    assert any("differ; compare images of the same shape" in message for message in notifications())


def test_sample_data_and_ome_zarr_writer(gui, tmp_path):
    viewer = gui.viewer
    viewer.open_sample("microsr", "filaments")
    layer = viewer.layers["filaments"]
    np.testing.assert_allclose(layer.scale, [20, 20])
    viewer.open_sample("microsr", "smlm")
    assert viewer.layers["SMLM simulation"].data.shape[1:] == (64, 64)

    stack = viewer.layers["SMLM simulation"]
    viewer.layers.selection = {stack}
    path = tmp_path / "saved.ome.zarr"
    assert viewer.layers.save(str(path), selected=True, plugin="microsr") == [str(path)]
    saved = read_image(path)
    assert saved.axes == "TYX" and saved.pixel_size == 100.0
    np.testing.assert_array_equal(saved.data.compute(), stack.data)


def test_manifest_is_valid_and_its_commands_import():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_distribution("microsr")
    manifest.validate_imports()
    assert {widget.display_name for widget in manifest.contributions.widgets} == {
        "Degrade", "Train", "Predict", "Compare"}
    path = Path(microsr.__file__).parent / "napari" / "napari.yaml"
    assert npe2.PluginManifest.from_file(path).name == "microsr"
