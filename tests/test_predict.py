"""Tiled prediction: seams, shapes, leading axes, normalisation, streaming, resume, memory, pixel size."""

import json
import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import tifffile
import torch
import zarr
import torch.nn.functional as F
from torch import nn

from microsr.data.normalize import PercentileNormalizer
from microsr.errors import InputError
from microsr.io import Image, read_image, write_image
from microsr.models import create_model, receptive_field
from microsr.predict.engine import Predictor, check_pixel_size, rescale_image

RF_RADIUS = 3  # three 3x3 convolutions


def conv_model(scale: int = 2, frames: int = 1, seed: int = 0) -> nn.Module:
    """A small random CNN ending in PixelShuffle; receptive-field radius 3."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(frames, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, scale * scale, 3, padding=1), nn.PixelShuffle(scale),
    )


class Channel(nn.Module):
    """Nearest-neighbour upsampling of one input channel: output = that frame, enlarged."""

    def __init__(self, channel: int, scale: int) -> None:
        super().__init__()
        self.channel, self.scale = channel, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x[:, self.channel : self.channel + 1], scale_factor=self.scale, mode="nearest")


class Interrupting(nn.Module):
    """Counts forward calls and raises KeyboardInterrupt on call number `stop_at`."""

    def __init__(self, model: nn.Module, stop_at: int | None = None) -> None:
        super().__init__()
        self.model, self.stop_at, self.calls = model, stop_at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return self.model(x)


def predictor(model: nn.Module, **options) -> Predictor:
    options.setdefault("scale", 2)
    # These tests are about tiling and streaming: "auto" would first time the model (a copy of it).
    options.setdefault("precision", "fp32")
    return Predictor(model, progress=False, **options)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# --------------------------------------------------------------------------- tiling


@pytest.mark.parametrize("shape", [(37, 101), (10, 10), (64, 64), (100, 33)])
def test_tiled_matches_whole_image(rng, shape):
    image = rng.random(shape).astype(np.float32) * 1000
    norm = PercentileNormalizer().fit(image)
    model = conv_model()
    whole = predictor(model, tile=1024, overlap=2 * RF_RADIUS, normalizer=norm).predict(image)
    tiled = predictor(model, tile=32, overlap=2 * RF_RADIUS, normalizer=norm).predict(image)
    assert whole.shape == tiled.shape == (shape[0] * 2, shape[1] * 2)
    assert whole.dtype == np.float32
    assert np.abs(whole - tiled).max() / (norm.hi - norm.lo) < 1e-5


@pytest.mark.parametrize("blend", [None, 8])
def test_a_model_that_skips_the_unused_context_is_tiled_exactly(rng, blend):
    """ResUNet is asked not to compute the context the blending does not use; tiled predictions
    still equal the whole-image one and the prediction that computes every pixel, with the tiles
    kept as they are (the default: the overlap is the receptive field) or cross-faded."""
    model = create_model("resunet_small", scale=2)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.1)
    image = rng.random((70, 90)).astype(np.float32)
    norm = PercentileNormalizer().fit(image)
    radius = receptive_field(model)
    overlap = None if blend is None else radius + blend
    tiled = predictor(model, tile=32, overlap=overlap, normalizer=norm)
    assert (tiled.overlap, tiled.blend, tiled.crop) == (radius + (blend or 0), blend or 0, radius)
    whole = predictor(model, tile=128, overlap=overlap, normalizer=norm).predict(image)
    result = tiled.predict(image)
    tiled.crop = 0
    computing_everything = tiled.predict(image)
    assert np.abs(result - whole).max() / (norm.hi - norm.lo) < 1e-5
    assert np.abs(result - computing_everything).max() / (norm.hi - norm.lo) < 1e-5


def test_small_overlap_is_blended_without_seams(rng):
    """Below the receptive field, tiles differ a little; the window spreads it, no jumps."""
    image = rng.random((64, 64)).astype(np.float32)
    norm = PercentileNormalizer().fit(image)
    model = conv_model()
    whole = predictor(model, tile=64, overlap=4, normalizer=norm).predict(image)
    tiled = predictor(model, tile=16, overlap=2, normalizer=norm).predict(image)
    assert 0 < np.abs(whole - tiled).max() / (norm.hi - norm.lo) < 0.2


def test_whole_numbers_of_other_types_are_taken_as_integers(rng):
    image = rng.random((20, 30)).astype(np.float32)
    norm = PercentileNormalizer().fit(image)
    expected = predictor(conv_model(), tile=16, overlap=4, blend=2, normalizer=norm).predict(image)
    result = predictor(conv_model(), scale=2.0, tile=np.int64(16), overlap=4.0, blend=np.int32(2),
                       normalizer=norm).predict(image)
    np.testing.assert_array_equal(result, expected)


def test_no_edge_dropped():
    image = np.zeros((37, 101), np.float32)
    image[:, -1] = 1.0
    image[-1, :] = 1.0
    out = predictor(Channel(0, 3), scale=3, tile=32, overlap=4).predict(image)
    assert out.shape == (111, 303)
    np.testing.assert_allclose(out[:, -3:], 1.0, atol=1e-6)
    np.testing.assert_allclose(out[-3:, :], 1.0, atol=1e-6)
    np.testing.assert_allclose(out[:-3, :-3], 0.0, atol=1e-6)


def test_model_with_wrong_scale_is_reported(rng):
    with pytest.raises(InputError, match="scale=3"):
        predictor(conv_model(scale=2), scale=3, overlap=2).predict(rng.random((20, 20)))


# --------------------------------------------------------------------------- leading axes


def test_z_stack_is_predicted_slice_by_slice(rng):
    stack = rng.random((3, 20, 30)).astype(np.float32)
    norm = PercentileNormalizer().fit(stack)
    p = predictor(conv_model(), tile=16, overlap=6, normalizer=norm)
    out = p.predict(stack, axes="ZYX")
    assert out.shape == (3, 40, 60)
    for z in range(3):
        np.testing.assert_allclose(out[z], p.predict(stack[z]), atol=1e-6)


@pytest.mark.parametrize(("channel", "source"), [(0, [1, 0, 1, 2, 3]), (1, [0, 1, 2, 3, 4]), (2, [1, 2, 3, 4, 3])])
def test_frame_window_is_centred_and_reflected(channel, source):
    frames = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((5, 12, 9), np.float32)
    identity = PercentileNormalizer(lo=0.0, hi=1.0)
    p = predictor(Channel(channel, 2), frames=3, tile=8, overlap=2, normalizer=identity)
    out = p.predict(Image(frames, "TYX", pixel_size=None))
    assert out.shape == (5, 24, 18)
    np.testing.assert_allclose(out[:, 0, 0], source)


def test_frames_along_t_of_a_tzyx_stack(rng):
    stack = rng.random((4, 2, 10, 10)).astype(np.float32)
    identity = PercentileNormalizer(lo=0.0, hi=1.0)
    out = predictor(Channel(0, 2), frames=3, overlap=0, normalizer=identity).predict(stack, axes="TZYX")
    assert out.shape == (4, 2, 20, 20)
    np.testing.assert_allclose(out[2, 1, ::2, ::2], stack[1, 1], atol=1e-6)


@pytest.mark.parametrize(
    ("shape", "axes", "message"),
    [
        ((10, 10), "YX", "model expects 3 frames along T; the input has axes YX"),
        ((4, 10, 10), "ZYX", "model expects 3 frames along T; the input has axes ZYX"),
    ],
)
def test_missing_frame_axis_is_an_input_error(shape, axes, message):
    with pytest.raises(InputError, match=message):
        predictor(Channel(0, 2), frames=3, overlap=0).predict(np.zeros(shape), axes=axes)


def test_too_short_stack_and_channels_are_input_errors():
    short = Image(np.zeros((2, 8, 8)), "TYX", pixel_size=None)
    with pytest.raises(InputError, match="at least 3 frames"):
        predictor(Channel(0, 2), frames=5, overlap=0).predict(short)
    with pytest.raises(InputError, match="3 channels"):
        predictor(Channel(0, 2), overlap=0).predict(np.zeros((3, 8, 8)), axes="CYX")
    with pytest.raises(InputError, match="odd"):
        predictor(Channel(0, 2), frames=2, overlap=0)
    with pytest.raises(InputError, match=r"blend=5: .* within their overlap \(4\)"):
        predictor(Channel(0, 2), overlap=4, blend=5)


# --------------------------------------------------------------------------- normalisation


def test_output_is_in_the_input_units(rng):
    image = rng.integers(1000, 5000, (40, 50)).astype(np.uint16)
    out = predictor(Channel(0, 2), tile=16, overlap=2).predict(image)
    assert out.dtype == np.float32
    assert 990 < out.min() and out.max() < 5010
    np.testing.assert_allclose(out[::2, ::2], image, rtol=1e-5)


# --------------------------------------------------------------------------- streaming


@pytest.fixture
def stack_file(tmp_path, rng):
    """A ZYX uint16 TIFF with 100 nm pixels and 300 nm Z spacing."""
    data = rng.integers(0, 4000, (2, 70, 45)).astype(np.uint16)
    return write_image(tmp_path / "stack.tif", Image(data, "ZYX", pixel_size=100.0, z_spacing=300.0))


@pytest.mark.parametrize(("suffix", "blend"), [(".ome.zarr", None), (".tif", None), (".ome.tif", None), (".tif", 0)])
def test_streaming_matches_in_memory(tmp_path, stack_file, suffix, blend):
    """Cross-faded tiles (blend 3) stream in full rows, exact ones (blend 0) tile by tile."""
    image = read_image(stack_file)
    p = predictor(conv_model(), tile=32, overlap=6, blend=blend)
    written = p.predict_to_file(image, tmp_path / f"out{suffix}")
    result = read_image(written)
    assert result.axes == "ZYX"
    assert result.pixel_size == pytest.approx(50.0)
    assert result.z_spacing == pytest.approx(300.0)
    np.testing.assert_allclose(result.data.compute(), p.predict(image), rtol=1e-6, atol=1e-3)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["stack.tif", written.name])


def test_streamed_pyramid_equals_the_one_written_from_memory(tmp_path, rng):
    """Two planes of 141 x 130 LR at x4: 564 x 520 output rows in 3 levels, flushed at row 512 and at the
    end of each plane, from bands of 192 rows that do not fall on the chunk rows."""
    image = Image(rng.integers(0, 4000, (2, 141, 130)).astype(np.uint16), "ZYX", pixel_size=100.0)
    p = predictor(conv_model(scale=4), scale=4, tile=48, overlap=6, blend=0)
    streamed = zarr.open_group(p.predict_to_file(image, tmp_path / "streamed.ome.zarr"), mode="r")
    in_memory = Image(p.predict(image), "ZYX", pixel_size=25.0)
    written = zarr.open_group(write_image(tmp_path / "written.ome.zarr", in_memory), mode="r")
    assert dict(streamed.attrs)["ome"]["multiscales"][0]["datasets"] == \
        dict(written.attrs)["ome"]["multiscales"][0]["datasets"]
    assert [streamed[str(k)].shape for k in range(3)] == [(2, 564, 520), (2, 282, 260), (2, 141, 130)]
    for k in range(3):
        assert streamed[str(k)].chunks == written[str(k)].chunks
        np.testing.assert_array_equal(streamed[str(k)][:], written[str(k)][:])


def test_streamed_tiff_has_the_metadata_of_a_written_one(tmp_path, stack_file):
    p = predictor(conv_model(), tile=32, overlap=6)
    image = read_image(stack_file)
    for suffix in (".tif", ".ome.tif"):
        streamed = p.predict_to_file(image, tmp_path / f"streamed{suffix}")
        written = write_image(tmp_path / f"written{suffix}", Image(p.predict(image), "ZYX", 50.0, z_spacing=300.0))
        with tifffile.TiffFile(streamed) as a, tifffile.TiffFile(written) as b:
            assert (a.is_imagej, a.is_ome) == (b.is_imagej, b.is_ome) == (suffix == ".tif", suffix == ".ome.tif")
            assert a.series[0].axes == b.series[0].axes and a.series[0].shape == b.series[0].shape
            assert a.imagej_metadata == b.imagej_metadata
            uuid = re.compile("urn:uuid:[0-9a-f-]+")  # each OME-TIFF has its own
            assert uuid.sub("", a.ome_metadata or "") == uuid.sub("", b.ome_metadata or "")
            np.testing.assert_array_equal(a.asarray(), b.asarray())


def test_a_format_that_cannot_stream_is_refused_before_any_work(tmp_path, stack_file):
    model = Interrupting(conv_model())
    with pytest.raises(InputError, match="write a .tif or .ome.zarr"):
        predictor(model, overlap=6).predict_to_file(read_image(stack_file), tmp_path / "out.png")
    assert model.calls == 0 and sorted(path.name for path in tmp_path.iterdir()) == ["stack.tif"]


def test_existing_output_needs_overwrite(tmp_path, stack_file):
    output = tmp_path / "out.ome.zarr"
    output.mkdir()
    model = Interrupting(conv_model())
    with pytest.raises(InputError, match="exists"):
        predictor(model, overlap=6).predict_to_file(read_image(stack_file), output)
    assert model.calls == 0  # refused before any work
    predictor(model, overlap=6).predict_to_file(read_image(stack_file), output, overwrite=True)
    assert read_image(output).shape == (2, 140, 90)


def test_output_inside_the_input_is_refused(tmp_path, stack_file):
    source = write_image(tmp_path / "in.ome.zarr", read_image(stack_file))
    for output in (source, source / "out.tif"):
        with pytest.raises(InputError, match="input"):
            predictor(conv_model(), overlap=6).predict_to_file(read_image(source), output, overwrite=True)


@pytest.mark.parametrize(("suffix", "blend", "rerun_bands"),
                         [(".tif", None, 1), (".tif", 0, 0), (".ome.zarr", None, 1), (".ome.zarr", 0, 0)])
def test_resume_after_interrupt(tmp_path, rng, suffix, blend, rerun_bands):
    # 2 planes of 300 x 40 LR: 10 bands of 2 tiles = 10 forward calls per plane (batches of
    # up to 4 tiles); the output planes have 600 rows. A TIFF records them as done row by row,
    # an OME-Zarr by rows of 512 x 512 chunks (and at the end of a plane).
    data = rng.integers(0, 4000, (2, 300, 40)).astype(np.uint16)
    image = Image(data, "ZYX", pixel_size=100.0)
    options = dict(tile=32, overlap=6, blend=blend, batch_size=4, normalizer=PercentileNormalizer().fit(image))
    reference = predictor(conv_model(), **options).predict(image)
    # Interrupted in the last band of plane 0 (call 10), the rows bands 0-8 finished are done: band 9
    # runs again (and band 8 too when cross-faded: the last band blends its lower rows), then plane 1.
    # In OME-Zarr only the first 512 rows (bands 0-7) are done, so band 8 runs again too (band 7 when
    # cross-faded). Interrupted in band 4 of plane 1 (call 15), plane 0 and the rows of bands 0-3 are
    # done: bands 4-9 run again (and band 3 when cross-faded); in OME-Zarr all of plane 1 runs again.
    zarr = suffix == ".ome.zarr"
    for stop_at, calls_to_finish in ((10, 1 + zarr + rerun_bands + 10), (15, 10 if zarr else 6 + rerun_bands)):
        output = tmp_path / f"out{stop_at}{suffix}"
        with pytest.raises(KeyboardInterrupt):
            predictor(Interrupting(conv_model(), stop_at), **options).predict_to_file(image, output)
        assert not output.exists()
        assert (tmp_path / f"{output.name}.partial" / "progress.json").is_file()
        model = Interrupting(conv_model())
        predictor(model, **options).predict_to_file(image, output, resume=True)
        assert model.calls == calls_to_finish
        assert not (tmp_path / f"{output.name}.partial").exists()
        np.testing.assert_array_equal(read_image(output).data.compute(), reference)


def test_resume_refuses_a_different_job(tmp_path, stack_file):
    output = tmp_path / "out.ome.zarr"
    with pytest.raises(KeyboardInterrupt):
        predictor(Interrupting(conv_model(), 2), tile=16, overlap=6).predict_to_file(read_image(stack_file), output)
    with pytest.raises(InputError, match="different model"):
        predictor(conv_model(seed=1), tile=16, overlap=6).predict_to_file(read_image(stack_file), output, resume=True)
    # Without resume the partial output is discarded, saying so, and the run starts over.
    with pytest.warns(UserWarning, match="discarding"):
        predictor(conv_model(seed=1), tile=16, overlap=6).predict_to_file(read_image(stack_file), output)
    assert output.exists()


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import psutil, torch
    from torch import nn
    from microsr.io import read_image
    from microsr.predict.engine import Predictor

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.PixelShuffle(4))
    predictor = Predictor(model, scale=4, tile=256, overlap=4, progress=False)
    image = read_image(sys.argv[1])
    baseline = psutil.Process().memory_info().rss
    predictor.predict_to_file(image, sys.argv[2])
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking pytest process.
    peak = int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) * 1024
    print(json.dumps({"baseline": baseline, "peak": peak}))
    """
)


@pytest.mark.slow
def test_streaming_memory_is_bounded(tmp_path):
    """2048^2 LR -> 8192^2 float32 output (256 MiB) to OME-Zarr, in a fresh process.

    Holding the output would take 256 MiB and blending it in memory twice that.
    Streaming holds one band: a 1056 x 8200 float32 accumulator (33 MiB), a batch of
    model outputs (4 x 17 MiB), the model's working set and Zarr's encode buffers;
    about 230 MiB measured, independent of the image height. The bound is the output
    size itself, and 1 GiB in total.
    """
    source = tmp_path / "big.tif"
    data = np.random.default_rng(0).integers(1000, 5000, (2048, 2048), dtype=np.uint16)
    tifffile.imwrite(source, data)
    del data
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(source), str(tmp_path / "big_x4.ome.zarr")],
        capture_output=True, text=True, check=True, timeout=300,
    )
    usage = json.loads(result.stdout)
    output_bytes = 8192 * 8192 * 4
    assert usage["peak"] - usage["baseline"] < output_bytes, usage
    assert usage["peak"] < 2**30, usage
    assert read_image(tmp_path / "big_x4.ome.zarr").shape == (8192, 8192)


# --------------------------------------------------------------------------- pixel size


@pytest.mark.parametrize(
    ("input_nm", "model_nm"), [(100.0, 100.0), (109.0, 100.0), (91.0, 100.0), (None, 100.0), (100.0, None)]
)
def test_matching_or_unknown_pixel_size_needs_nothing(input_nm, model_nm):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_pixel_size(input_nm, model_nm, rescale=False, force=False) is None


def test_pixel_size_mismatch():
    with pytest.raises(InputError, match=r"65 nm.*100 nm.*--rescale.*--force"):
        check_pixel_size(65.0, 100.0, rescale=False, force=False)
    with pytest.warns(UserWarning, match="resampling"):
        assert check_pixel_size(65.0, 100.0, rescale=True, force=False) == pytest.approx(0.65)
    with pytest.warns(UserWarning, match="anyway"):
        assert check_pixel_size(65.0, 100.0, rescale=False, force=True) is None


def test_rescale_image_resamples_lazily():
    ramp = np.tile(np.linspace(0, 100, 40, dtype=np.float32), (2, 30, 1))
    image = Image(ramp, "ZYX", pixel_size=50.0, z_spacing=200.0)
    half = rescale_image(image, 0.5)
    assert half.shape == (2, 15, 20) and half.pixel_size == 100.0 and half.z_spacing == 200.0
    plane = half.data[1].compute()
    assert plane.dtype == np.float32
    assert np.all(np.diff(plane[7]) > 0)  # the ramp survives, rising left to right
    assert plane.min() >= 0 and plane.max() <= 100
    with pytest.raises(InputError, match="positive"):
        rescale_image(image, 0)


# --------------------------------------------------------------------------- frames as channels (SIM, SRRF)


def _random_weights(model: nn.Module) -> nn.Module:
    """Weights that make every layer matter (a fresh ResUNet's last layer starts near zero)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.1)
    return model


@pytest.fixture(scope="module")
def sim_model(tmp_path_factory):
    """An untrained 3-channel ResUNet that reads frames 0, 2 and 4 of each 5-frame acquisition along C,
    saved as `microsr train` saves a frames-as-channels model (60 nm input pixels)."""
    from microsr.checkpoint import load_checkpoint, save_checkpoint

    arch = {"name": "resunet_small", "in_channels": 3, "scale": 2, "blur": False}  # the shipped model's architecture
    model = _random_weights(create_model(**arch))
    # The receptive field of the architecture, as measured when the shipped sim_lowlight was trained
    # (measuring it again takes half a minute).
    _, shipped = load_checkpoint("sim_lowlight")
    assert shipped["arch"]["name"] == arch["name"]
    info = {"arch": arch, "scale": 2, "frames": 3, "frame_axis": "C", "receptive_field": shipped["receptive_field"],
            "normalization": PercentileNormalizer().to_dict(), "input_pixel_size": 60.0, "output_pixel_size": 30.0,
            "run": {"data": {"frame_axis": "C", "channels": [0, 2, 4], "frames": 3}}}
    return save_checkpoint(tmp_path_factory.mktemp("sim_model") / "sim.safetensors", model, info)


@pytest.fixture
def raw_file(tmp_path, rng):
    """One acquisition of 5 raw frames along C, 60 nm pixels."""
    data = rng.integers(100, 4000, (5, 40, 52)).astype(np.uint16)
    return write_image(tmp_path / "raw.tif", Image(data, "CYX", pixel_size=60.0))


def _cli(argv):
    from microsr.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code


def test_frames_as_channels_model_streams_tile_by_tile_like_the_whole_image(tmp_path, sim_model, raw_file, capsys):
    """`microsr predict` takes a SIM/SRRF model: 3 x 4 tiles of 16 px with the receptive-field
    overlap give the one-tile (whole-image) result, from the frames the model reads."""
    from microsr.predict.restorer import load_model

    restorer = load_model(sim_model)
    assert restorer.description.layout == "channels" and restorer.description.channels == (0, 2, 4)
    output = tmp_path / "out.ome.zarr"
    assert _cli(["predict", str(sim_model), str(raw_file), "-o", str(output), "--tile", "16", "--precision", "fp32",
                 "--device", "cpu"]) == 0, capsys.readouterr().err
    streamed = read_image(output)
    assert (streamed.axes, streamed.shape, streamed.pixel_size) == ("YX", (80, 104), 30.0)
    raw = np.asarray(read_image(raw_file).data)
    whole = restorer.predict(raw, axes="CYX", tile=64, precision="fp32")
    span = float(np.ptp(whole))
    # Tiles that see the whole receptive field differ from one tile only by float32 summation order.
    assert np.abs(np.asarray(streamed.data) - whole).max() < 1e-5 * span
    # With the normalisation fixed, the frames it does not read do not matter; those it reads do.
    predictor = restorer.predictor(tile=64, precision="fp32")
    predictor.normalizer = PercentileNormalizer().fit(raw)
    changed = raw.copy()
    changed[[1, 3]] = 0
    np.testing.assert_array_equal(predictor.predict(changed, axes="CYX"), predictor.predict(raw, axes="CYX"))
    changed[2] = changed[2][::-1]
    assert np.abs(predictor.predict(changed, axes="CYX") - whole).max() > 0.01 * span


def test_frames_as_channels_acquisitions_along_t(sim_model, rng):
    """(T, frames, Y, X): one output plane per acquisition, each as predicted alone."""
    from microsr.predict.restorer import load_model

    restorer = load_model(sim_model)
    stack = rng.integers(100, 4000, (2, 5, 24, 20)).astype(np.uint16)
    fitted = PercentileNormalizer().fit(stack)  # one normalisation for the stack and for each acquisition alone
    predictor = restorer.predictor(tile=16, precision="fp32")
    predictor.normalizer = fitted
    both = predictor.predict(stack, axes="TCYX")
    assert both.shape == (2, 48, 40)
    for t in range(2):
        np.testing.assert_allclose(both[t], predictor.predict(stack[t], axes="CYX"), rtol=0, atol=1e-6 * np.ptp(both))
    with pytest.raises(InputError, match=r"reads frames \[0, 2, 4\] of each acquisition along C, which has 4"):
        predictor.predict(stack[:, :4], axes="TCYX")
    with pytest.raises(InputError, match="no C axis"):
        predictor.predict(np.zeros((2, 5, 8, 8)), axes="TZYX")


def test_frames_as_channels_resume(tmp_path, sim_model, raw_file):
    from microsr.predict.restorer import Restorer, load_model

    loaded = load_model(sim_model)
    options = dict(tile=16, precision="fp32", device="cpu")
    reference = loaded.predict(np.asarray(read_image(raw_file).data), axes="CYX", **options)
    output = tmp_path / "out.tif"
    interrupted = Restorer(Interrupting(loaded.module, stop_at=7), loaded.info, loaded.path)
    with pytest.raises(KeyboardInterrupt):
        interrupted.predict_file(raw_file, output, **options)
    assert not output.exists() and (tmp_path / "out.tif.partial" / "progress.json").is_file()
    resumed = Interrupting(loaded.module)
    Restorer(resumed, loaded.info, loaded.path).predict_file(raw_file, output, resume=True, **options)
    # 3 bands of 4 tiles: the 6 tiles of the first band and a half were done, bands 2 and 3 remain (8 tiles).
    assert resumed.calls == 8
    np.testing.assert_allclose(np.asarray(read_image(output).data), reference, rtol=0, atol=1e-5 * np.ptp(reference))


def test_frames_as_channels_pixel_size_guard(tmp_path, sim_model, raw_file, capsys):
    """Frames at 80 nm for a 60 nm model are refused (no resampling: a SIM pattern would move), unless forced."""
    argv = ["predict", str(sim_model), str(raw_file), "--pixel-size", "80", "--device", "cpu", "--precision", "fp32"]
    assert _cli([*argv, "-o", str(tmp_path / "refused.tif")]) == 2
    assert "use a model trained at 80 nm, or pass --force" in capsys.readouterr().err
    assert _cli([*argv, "-o", str(tmp_path / "rescaled.tif"), "--rescale"]) == 2
    assert "cannot be resampled" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.tif"]
    assert _cli([*argv, "-o", str(tmp_path / "forced.tif"), "--force"]) == 0
    assert read_image(tmp_path / "forced.tif").pixel_size == pytest.approx(40.0)


def test_sim_predict_is_microsr_predict(tmp_path, sim_model, raw_file, capsys):
    common = ["--tile", "32", "--precision", "fp32", "--device", "cpu"]
    assert _cli(["predict", str(sim_model), str(raw_file), "-o", str(tmp_path / "a.tif"), *common]) == 0
    assert _cli(["sim", "predict", str(sim_model), str(raw_file), "-o", str(tmp_path / "b.tif"), *common]) == 0, \
        capsys.readouterr().err
    a, b = (read_image(tmp_path / name) for name in ("a.tif", "b.tif"))
    assert (a.shape, a.pixel_size) == (b.shape, b.pixel_size) == ((80, 104), 30.0)
    np.testing.assert_array_equal(np.asarray(a.data), np.asarray(b.data))
