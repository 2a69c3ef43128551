"""Tests for microsr.io: reading, writing, metadata and atomic output."""

import json
import os
import multiprocessing
import pickle
import sys
import time

import dask.array as da
import numpy as np
import PIL.Image
import pytest
import tifffile
import zarr

from microsr.errors import InputError
from microsr.io import Image, atomic_output, check_finite, open_row_writer, pair_by_name, read_image, write_image
from microsr.io.image import _cgroup_headroom

RNG = np.random.default_rng(0)


def _stack(dtype, shape=(3, 40, 50)):
    if np.issubdtype(dtype, np.integer):
        return RNG.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    return RNG.random(shape, dtype=dtype)


def _failing(shape, dtype=np.uint16):
    """A lazy array whose computation raises, to simulate a failure mid-write."""

    def explode(block):
        raise RuntimeError("simulated failure")

    return da.zeros(shape, dtype=dtype, chunks=(1, *shape[1:])).map_blocks(explode, dtype=dtype)


def _leftovers(folder, keep=()):
    return sorted(name for name in os.listdir(folder) if name not in keep)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_roundtrip_is_imagej_and_exact(tmp_path, dtype):
    data = _stack(dtype)
    path = write_image(tmp_path / "out.tif", data, axes="ZYX", pixel_size=65.0, z_spacing=200.0)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej
    image = read_image(path)
    assert image.axes == "ZYX"
    assert image.dtype == dtype
    np.testing.assert_array_equal(image.data.compute(), data)
    assert image.pixel_size == pytest.approx(65.0)
    assert image.z_spacing == pytest.approx(200.0)
    assert image.path == path


def test_tiff_without_pixel_size_has_no_unit(tmp_path):
    path = write_image(tmp_path / "out.tif", np.zeros((8, 8), np.uint8))
    with tifffile.TiffFile(path) as tif:
        assert "unit" not in tif.imagej_metadata
    assert read_image(path).pixel_size is None


def test_tiff_hyperstack_axes_survive(tmp_path):
    data = _stack(np.uint16, (2, 3, 4, 16, 20))
    path = write_image(tmp_path / "out.tif", Image(data, "TCZYX", 50.0, 300.0))
    image = read_image(path)
    assert image.axes == "TCZYX"
    np.testing.assert_array_equal(image.data.compute(), data)


def test_tiff_with_dtype_imagej_lacks_is_ome(tmp_path):
    data = _stack(np.int16)
    path = write_image(tmp_path / "out.tif", data, axes="ZYX", pixel_size=80.0)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
    image = read_image(path)
    np.testing.assert_array_equal(image.data.compute(), data)
    assert image.pixel_size == pytest.approx(80.0)


def test_ome_tiff_roundtrip(tmp_path):
    data = _stack(np.float32, (2, 3, 4, 16, 20))
    path = write_image(tmp_path / "out.ome.tif", data, axes="TCZYX", pixel_size=40.0, z_spacing=250.0)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
    image = read_image(path)
    assert image.axes == "TCZYX"
    np.testing.assert_array_equal(image.data.compute(), data)
    assert (image.pixel_size, image.z_spacing) == (pytest.approx(40.0), pytest.approx(250.0))


def test_ome_zarr_roundtrip_and_ngff_05_layout(tmp_path):
    data = _stack(np.uint16, (2, 600, 520))
    path = write_image(tmp_path / "out.ome.zarr", data, axes="ZYX", pixel_size=40.0, z_spacing=300.0)

    attrs = json.loads((path / "zarr.json").read_text())["attributes"]
    ome = attrs["ome"]
    assert ome["version"] == "0.5"
    (multiscale,) = ome["multiscales"]
    assert multiscale["name"] == "out"
    assert multiscale["axes"] == [
        {"name": "z", "type": "space", "unit": "nanometer"},
        {"name": "y", "type": "space", "unit": "nanometer"},
        {"name": "x", "type": "space", "unit": "nanometer"},
    ]
    datasets = multiscale["datasets"]
    assert [d["path"] for d in datasets] == ["0", "1", "2"]  # 520 -> 260 -> 130 < 256
    group = zarr.open_group(path, mode="r")
    for k, dataset in enumerate(datasets):
        level = group[dataset["path"]]
        assert level.shape == (2, 600 // 2**k, 520 // 2**k)
        assert level.metadata.dimension_names == ("z", "y", "x")
        assert dataset["coordinateTransformations"] == [{"type": "scale", "scale": [300.0, 40.0 * 2**k, 40.0 * 2**k]}]
    expected = data[:, :2, :2].reshape(2, -1).mean(axis=1).round()
    np.testing.assert_array_equal(group["1"][:, 0, 0], expected)

    image = read_image(path)
    assert image.axes == "ZYX"
    np.testing.assert_array_equal(image.data.compute(), data)
    assert (image.pixel_size, image.z_spacing) == (40.0, 300.0)


def test_ome_zarr_unknown_pixel_size_and_explicit_levels(tmp_path):
    path = write_image(tmp_path / "out.zarr", _stack(np.float32, (64, 64)), levels=2)
    multiscale = zarr.open_group(path, mode="r").attrs["ome"]["multiscales"][0]
    assert multiscale["axes"] == [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    assert [d["coordinateTransformations"][0]["scale"] for d in multiscale["datasets"]] == [[1.0, 1.0], [2.0, 2.0]]
    assert read_image(path).pixel_size is None


@pytest.mark.parametrize("levels", [0, 8])
def test_ome_zarr_rejects_impossible_levels(tmp_path, levels):
    with pytest.raises(InputError, match="levels"):
        write_image(tmp_path / "out.zarr", np.zeros((64, 64), np.uint8), levels=levels)
    assert _leftovers(tmp_path) == []


def test_reads_ngff_04_zarr_v2(tmp_path):
    path = tmp_path / "old.zarr"
    group = zarr.open_group(path, mode="w", zarr_format=2)
    group.create_array("0", shape=(1, 2, 32, 32), dtype="uint8", chunks=(1, 1, 32, 32))[:] = 7
    group.attrs["multiscales"] = [{
        "version": "0.4",
        "axes": [{"name": n, "type": t, **({"unit": "micrometer"} if t == "space" else {})}
                 for n, t in zip("tcyx", ["time", "channel", "space", "space"])],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 0.1, 0.1]}]}],
    }]
    image = read_image(path)
    assert image.axes == "CYX"  # the length-1 T axis is dropped
    assert image.pixel_size == pytest.approx(100.0)
    assert int(image.data.max().compute()) == 7


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_roundtrip(tmp_path, dtype):
    data = _stack(dtype, (30, 40))
    image = read_image(write_image(tmp_path / "out.png", data))
    assert image.axes == "YX"
    np.testing.assert_array_equal(image.data.compute(), data)
    assert image.pixel_size is None


def test_png_rgb_becomes_channel_axis(tmp_path):
    rgb = _stack(np.uint8, (30, 40, 3))
    PIL.Image.fromarray(rgb).save(tmp_path / "rgb.png")
    image = read_image(tmp_path / "rgb.png")
    assert image.axes == "CYX"
    np.testing.assert_array_equal(image.data.compute(), np.moveaxis(rgb, -1, 0))
    again = read_image(write_image(tmp_path / "again.png", image))
    np.testing.assert_array_equal(again.data.compute(), image.data.compute())


def test_jpeg_reads(tmp_path):
    PIL.Image.fromarray(_stack(np.uint8, (30, 40, 3))).save(tmp_path / "photo.jpg")
    image = read_image(tmp_path / "photo.jpg")
    assert (image.axes, image.shape, image.dtype) == ("CYX", (3, 30, 40), np.uint8)


def test_png_refuses_float_data(tmp_path):
    with pytest.raises(InputError, match=r"out\.png.*\.tif"):
        write_image(tmp_path / "out.png", np.zeros((8, 8), np.float32))
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- streamed rows


def test_a_streamed_ome_zarr_pyramid_equals_the_one_written_from_the_whole_image(tmp_path):
    """Two planes of 1100 x 600 float32 (3 levels, chunks of 512 rows) streamed in bands of 300 rows
    and blocks of 250 columns, stopped inside plane 1 and resumed from the progress reported."""
    data = RNG.random((2, 1100, 600), dtype=np.float32) * 1000
    layout = Image(da.zeros(data.shape, dtype=np.float32), "ZYX", pixel_size=20.0)
    path = tmp_path / "streamed.ome.zarr"

    def stream(writer, start, stop=None):
        for plane in range(start[0], 2):
            for row in range(start[1] if plane == start[0] else 0, 1100, 300):
                band = data[plane, row : row + 300]
                for col in range(0, 600, 250):
                    writer.write(plane, row, col, band[:, col : col + 250])
                writer.finish_rows(plane, row + len(band))
                if (plane, row + len(band)) == stop:
                    return
        writer.flush()

    stored = []
    first = open_row_writer(path, layout, create=True, on_stored=lambda *done: stored.append(done))
    stream(first, (0, 0), stop=(1, 600))
    first.flush()
    # Flushed at whole rows of chunks (512) and at a plane's end; rows 512-600 of plane 1 are not stored.
    assert stored == [(0, 512), (1, 0), (1, 512)]
    stream(open_row_writer(path, layout, create=False), stored[-1])

    written = zarr.open_group(write_image(tmp_path / "written.ome.zarr", Image(data, "ZYX", 20.0)), mode="r")
    streamed = zarr.open_group(path, mode="r")
    assert dict(streamed.attrs) == {"ome": {**dict(written.attrs)["ome"], "multiscales": [
        {**dict(written.attrs)["ome"]["multiscales"][0], "name": "streamed"}]}}
    for k, shape in enumerate([(2, 1100, 600), (2, 550, 300), (2, 275, 150)]):
        assert streamed[str(k)].shape == shape and streamed[str(k)].chunks == written[str(k)].chunks
        np.testing.assert_array_equal(streamed[str(k)][:], written[str(k)][:])


# --------------------------------------------------------------------------- reading


def test_read_is_lazy_and_tiled(tmp_path):
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, np.zeros((4096, 4096), np.uint16), tile=(256, 256), compression="zlib")
    start = time.perf_counter()
    image = read_image(path)
    assert time.perf_counter() - start < 0.5
    assert isinstance(image.data, da.Array)
    assert image.data.chunksize == (256, 256)
    assert image.data[:256, :256].compute().shape == (256, 256)


def test_read_many_pages_quickly(tmp_path):
    path = tmp_path / "many.tif"
    tifffile.imwrite(path, _stack(np.uint8, (3000, 16, 16)), compression="zlib")
    start = time.perf_counter()
    image = read_image(path)
    assert time.perf_counter() - start < 1.0
    assert image.shape == (3000, 16, 16)
    assert image.data.numblocks[0] < 10  # tiny pages are grouped into bigger chunks


def test_read_tiff_survives_pickling(tmp_path):
    data = _stack(np.uint16, (4, 32, 32))
    for name, options in [("plain.tif", {}), ("packed.tif", {"compression": "zlib"})]:
        tifffile.imwrite(tmp_path / name, data, photometric="minisblack", **options)
        lazy = pickle.loads(pickle.dumps(read_image(tmp_path / name).data))
        np.testing.assert_array_equal(lazy.compute(), data)


_INHERITED = {}


def _sum_inherited_first_plane(_):
    # dask's thread pool does not survive fork; worker processes use the synchronous scheduler.
    return int(_INHERITED["data"][0].sum().compute(scheduler="synchronous"))


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
@pytest.mark.parametrize("compression", [None, "zlib"])  # memory-mapped / zarr store
def test_read_tiff_works_in_forked_workers(tmp_path, compression):
    data = _stack(np.uint16, (4, 32, 32))
    tifffile.imwrite(tmp_path / "stack.tif", data, photometric="minisblack", compression=compression)
    image = read_image(tmp_path / "stack.tif")
    assert int(image.data[0].sum().compute()) == data[0].sum()  # the parent opens the file first
    _INHERITED["data"] = image.data
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map(_sum_inherited_first_plane, range(4)) == [data[0].sum()] * 4


def test_rgb_tiff_samples_become_channels(tmp_path):
    rgb = _stack(np.uint8, (20, 30, 3))
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    image = read_image(tmp_path / "rgb.tif")
    assert image.axes == "CYX"
    np.testing.assert_array_equal(image.data.compute(), np.moveaxis(rgb, -1, 0))


def test_unknown_stack_axis_becomes_t_and_axes_override(tmp_path):
    path = tmp_path / "stack.tif"
    data = _stack(np.uint8, (5, 20, 30))
    tifffile.imwrite(path, data, metadata=None)
    assert read_image(path).axes == "TYX"
    assert read_image(path, axes="zyx").axes == "ZYX"
    transposed = read_image(path, axes="YXC")
    assert transposed.axes == "CYX"
    np.testing.assert_array_equal(transposed.data.compute(), data.transpose(2, 0, 1))


@pytest.mark.parametrize("axes", ["YX", "ABC", "ZZX", "TZC"])
def test_bad_axes_override(tmp_path, axes):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((5, 20, 30), np.uint8))
    with pytest.raises(InputError, match=r"stack\.tif.*axes"):
        read_image(path, axes=axes)


def test_uninterpretable_axes_ask_for_axes(tmp_path):
    path = tmp_path / "spectral.zarr"
    group = zarr.open_group(path, mode="w")
    group.create_array("0", shape=(3, 8, 8), dtype="uint8")
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": "lambda"}, {"name": "y"}, {"name": "x"}],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1]}]}],
    }]}
    with pytest.raises(InputError, match=r"spectral\.zarr.*axes="):
        read_image(path)
    assert read_image(path, axes="CYX").axes == "CYX"


@pytest.mark.parametrize("unit", ["\\u00B5m", "micron", "um"])  # ImageJ stores µ escaped
def test_pixel_size_from_imagej_metadata(tmp_path, unit):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint16), imagej=True, resolution=(10, 10),
                     metadata={"axes": "ZYX", "unit": unit, "spacing": 0.25})
    image = read_image(path)
    assert image.pixel_size == pytest.approx(100.0)
    assert image.z_spacing == pytest.approx(250.0)


def test_pixel_size_from_ome_metadata(tmp_path):
    path = tmp_path / "meta.ome.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint16), ome=True,
                     metadata={"PhysicalSizeX": 0.065, "PhysicalSizeY": 0.065})  # default unit: µm
    assert read_image(path).pixel_size == pytest.approx(65.0)


def test_pixel_size_from_centimetre_resolution_tags(tmp_path):
    path = tmp_path / "cm.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8), resolution=(1e5, 1e5), resolutionunit="CENTIMETER")
    assert read_image(path).pixel_size == pytest.approx(100.0)


@pytest.mark.parametrize("resolution", [None, (72, 72), (1, 1)])
def test_pixel_size_unknown_without_meaningful_metadata(tmp_path, resolution):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8), resolution=resolution, resolutionunit="INCH")
    assert read_image(path).pixel_size is None


def test_pixel_size_override_and_non_square_warning(tmp_path):
    path = tmp_path / "aniso.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint16), imagej=True, resolution=(10, 5), metadata={"unit": "um"})
    with pytest.warns(UserWarning, match="not square"):
        assert read_image(path).pixel_size == pytest.approx(100.0)
    assert read_image(path, pixel_size=42.0).pixel_size == 42.0
    with pytest.raises(InputError, match="pixel_size"):
        read_image(path, pixel_size=-1.0)


# --------------------------------------------------------------------------- bad inputs


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nothere\.tif.*not found"):
        read_image(tmp_path / "nothere.tif")


def test_unsupported_suffix(tmp_path):
    (tmp_path / "image.bmp").write_bytes(b"BM")
    with pytest.raises(InputError, match=r"image\.bmp.*\.tif"):
        read_image(tmp_path / "image.bmp")
    with pytest.raises(InputError, match=r"out\.bmp"):
        write_image(tmp_path / "out.bmp", np.zeros((4, 4), np.uint8))


def test_folder_that_is_not_zarr(tmp_path):
    (tmp_path / "folder.zarr").mkdir()
    with pytest.raises(InputError, match=r"folder\.zarr.*not an OME-Zarr"):
        read_image(tmp_path / "folder.zarr")


@pytest.mark.parametrize("name", ["noise.tif", "noise.png", "noise.jpg"])
def test_corrupt_file(tmp_path, name):
    (tmp_path / name).write_bytes(RNG.bytes(5000))
    with pytest.raises(InputError, match=name.replace(".", r"\.")):
        read_image(tmp_path / name)


@pytest.mark.parametrize("options", [{"imagej": True}, {"compression": "zlib"}, {"ome": True}, {}])
@pytest.mark.parametrize("cut", [3000, 40000])
def test_truncated_tiff(tmp_path, options, cut):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, _stack(np.uint16, (10, 64, 64)), **options)
    path.write_bytes(path.read_bytes()[:-cut])
    with pytest.raises(InputError, match=r"cut\.tif.*(truncated|corrupt)"):
        read_image(path)


def test_check_finite():
    check_finite(np.ones(3, np.float32), "tile")
    check_finite(np.arange(3), "tile")
    with pytest.raises(InputError, match="cells.tif contains NaN"):
        check_finite(np.array([1.0, np.inf]), "cells.tif")


def test_image_rejects_non_canonical_axes():
    with pytest.raises(ValueError, match="axes"):
        Image(np.zeros((3, 4, 4)), "YXC", None)
    with pytest.raises(ValueError, match="axes"):
        Image(np.zeros((4, 4)), "ZYX", None)


def test_write_requires_axes_for_3d_arrays(tmp_path):
    with pytest.raises(InputError, match="axes="):
        write_image(tmp_path / "out.tif", np.zeros((2, 4, 4), np.uint8))


# --------------------------------------------------------------------------- atomic output


@pytest.mark.parametrize("name", ["out.tif", "out.ome.zarr"])
def test_existing_output_needs_overwrite(tmp_path, name):
    first, second = np.zeros((16, 16), np.uint8), np.full((16, 16), 9, np.uint8)
    path = write_image(tmp_path / name, first)
    with pytest.raises(InputError, match=rf"{name.replace('.', '[.]')} exists.*overwrite"):
        write_image(tmp_path / name, second)
    write_image(tmp_path / name, second, overwrite=True)
    np.testing.assert_array_equal(read_image(path).data.compute(), second)
    assert _leftovers(tmp_path) == [name]


def test_never_overwrites_an_input(tmp_path):
    path = write_image(tmp_path / "in.tif", np.zeros((16, 16), np.uint8))
    with pytest.raises(InputError, match=r"in\.tif.*input"):
        write_image(path, read_image(path), overwrite=True)
    other = write_image(tmp_path / "other.tif", np.zeros((16, 16), np.uint8))
    with pytest.raises(InputError, match="input"):
        write_image(tmp_path / "other.tif", np.ones((16, 16), np.uint8), overwrite=True, inputs=[other])


@pytest.mark.parametrize("name", ["out.tif", "out.ome.tif", "out.zarr", "out.png"])
def test_failed_write_leaves_nothing(tmp_path, name):
    data = _failing((3, 16, 16))
    image = data[0] if name.endswith(".png") else Image(data, "ZYX", None)
    with pytest.raises(RuntimeError, match="simulated"):
        write_image(tmp_path / name, image)
    assert _leftovers(tmp_path) == []


def test_failed_overwrite_keeps_the_old_output(tmp_path):
    path = write_image(tmp_path / "out.zarr", np.full((16, 16), 5, np.uint8))
    with pytest.raises(RuntimeError, match="simulated"):
        write_image(path, _failing((1, 16, 16))[0], overwrite=True)
    assert int(read_image(path).data.max().compute()) == 5
    assert _leftovers(tmp_path) == ["out.zarr"]


def test_atomic_output_keeps_suffix_and_cleans_up(tmp_path):
    target = tmp_path / "model.npy"
    with atomic_output(target) as temporary:
        assert temporary.parent == tmp_path and temporary.suffix == ".npy"
        np.save(temporary, np.arange(3))
    np.testing.assert_array_equal(np.load(target), np.arange(3))
    with pytest.raises(KeyError), atomic_output(tmp_path / "other.npy") as temporary:
        np.save(temporary, np.arange(3))
        raise KeyError("boom")
    assert _leftovers(tmp_path) == ["model.npy"]
    with pytest.raises(InputError, match="does not exist"):
        with atomic_output(tmp_path / "missing" / "x.npy"):
            pass


# --------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_imagej_stack(realdata):
    image = read_image(realdata("deepstorm/testStack_SimulatedMicrotubules.tif"))
    assert (image.axes, image.shape, image.dtype) == ("ZYX", (361, 64, 64), np.uint16)
    assert image.pixel_size == pytest.approx(100.0)


@pytest.mark.realdata
def test_real_plain_images(realdata):
    image = read_image(realdata("napari_pssr/HR/small.tif"))
    assert (image.axes, image.shape, image.dtype) == ("YX", (600, 900), np.uint8)
    assert read_image(realdata("tsim_er/ER_1.tif")).pixel_size is None  # ImageJ "1 pixel per inch"


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_memory_limit_of_the_control_group_counts(tmp_path, version):
    """In a container or job with a memory limit, the headroom is the group's, not the machine's."""
    group = tmp_path / ("job" if version == "v2" else "memory/job")
    group.mkdir(parents=True)
    limit, usage = ("memory.max", "memory.current") if version == "v2" else ("memory.limit_in_bytes",
                                                                              "memory.usage_in_bytes")
    (group / limit).write_text(f"{4 * 2**30}\n")
    (group / usage).write_text(f"{3 * 2**30}\n")
    (group / "memory.stat").write_text(f"anon 100\ninactive_file {2**29}\n")  # page cache the kernel can drop
    membership = tmp_path / "cgroup"
    membership.write_text("0::/job\n" if version == "v2" else "4:memory:/job\n")
    assert _cgroup_headroom(tmp_path, membership) == 4 * 2**30 - 3 * 2**30 + 2**29
    (group / limit).write_text("max\n" if version == "v2" else "9223372036854771712\n")  # no limit
    assert _cgroup_headroom(tmp_path, membership) is None


# ----------------------------------------------------------------------------- pairing LR with HR by name


def _folders(tmp_path, **folders):
    for folder, names in folders.items():
        (tmp_path / folder).mkdir()
        for name in names:
            write_image(tmp_path / folder / name, np.zeros((8, 8), np.uint8))
    return [tmp_path / folder for folder in folders]


def test_pair_by_name_accepts_files_and_folders(tmp_path):
    hr, lr, one = _folders(tmp_path, hr=["a.tif", "b.ome.tif"], lr=["a.tif", "b.tif", "c.tif"], one=["x.tif"])
    assert pair_by_name(hr / "a.tif", lr) == [("a", hr / "a.tif", lr / "a.tif")]
    assert pair_by_name(hr, lr / "b.tif") == [("b", hr / "b.ome.tif", lr / "b.tif")]
    assert pair_by_name(hr / "a.tif", one / "x.tif") == [("a", hr / "a.tif", one / "x.tif")]
    assert [p.name for p in pair_by_name(hr)] == ["a", "b"]
    # Several named files on each side pair by name, whatever order they are given in.
    assert pair_by_name([hr / "b.ome.tif", hr / "a.tif"], [lr / "a.tif", lr / "b.tif"]) == [
        ("a", hr / "a.tif", lr / "a.tif"), ("b", hr / "b.ome.tif", lr / "b.tif")]
    with pytest.raises(InputError, match=r"x.tif has no LR image named 'x' in .*lr"):
        pair_by_name(one / "x.tif", lr)


def test_unmatched_names_are_listed(tmp_path):
    hr, lr = _folders(tmp_path, hr=["a.tif", "b.tif"], lr=["a.tif", "c.tif"])
    with pytest.raises(InputError, match=r"hr/b.tif has no LR image named 'b'.*lr/c.tif has no HR image named 'c'"
                                         r".*matched by file name"):
        pair_by_name(hr, lr)


def test_an_extra_file_in_one_folder_is_an_error_not_a_mispair(tmp_path):
    hr, lr = _folders(tmp_path, hr=["a.tif", "b.tif"], lr=["a.tif", "b.tif", "b2.tif"])
    with pytest.raises(InputError, match=r"unmatched images: .*lr/b2.tif has no HR image named 'b2'"):
        pair_by_name(hr, lr)


def test_a_name_twice_on_one_side_is_an_error(tmp_path):
    hr, lr, more = _folders(tmp_path, hr=["a.tif"], lr=["a.tif"], more=["a.ome.tif"])
    with pytest.raises(InputError, match=r"hr/a.tif and .*more/a.ome.tif have the same name 'a'"):
        pair_by_name([hr, more], lr)

