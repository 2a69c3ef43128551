"""Tests for microsr.data: normalisation, split, frame windows, pair datasets."""

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
import torch
from torch.utils.data import DataLoader

from microsr.data.datasets import CallablePairs, DegradedPairs, PairedImages, Region, epoch_loader, flip_rotate, frame_window, split_regions
from microsr.data.normalize import PercentileNormalizer
from microsr.degrade import Degradation, preset
from microsr.errors import InputError
from microsr.io import Image, read_image
import microsr.data.datasets as data_module

IDENTITY = Degradation(steps=())


def make_image(array, axes, name="cells.tif", chunks=64):
    """An in-memory Image that reports a file name, as read_image would."""
    return Image(data=da.from_array(array, chunks=chunks), axes=axes, pixel_size=50.0,
                 path=Path(name))


def noise(shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def frame_valued(n_frames, size=64):
    """TYX stack whose frame t holds t + a small ramp: the value identifies the frame."""
    ramp = np.linspace(0, 0.5, size * size, dtype=np.float32).reshape(size, size)
    return np.arange(n_frames, dtype=np.float32)[:, None, None] + ramp


# ----------------------------------------------------------------------------- normaliser


def test_normalizer_maps_percentiles_to_0_and_1_and_round_trips():
    x = np.random.default_rng(1).normal(100, 10, (200, 200))
    norm = PercentileNormalizer(low=1, high=99).fit(x)
    lo, hi = np.percentile(x, [1, 99])
    assert norm.lo == pytest.approx(lo) and norm.hi == pytest.approx(hi)
    np.testing.assert_allclose(norm(np.array([lo, hi])), [0, 1], atol=1e-6)
    assert norm(x).dtype == np.float32
    np.testing.assert_allclose(norm.denormalize(norm(x)), x, rtol=1e-5)
    assert PercentileNormalizer.from_dict(norm.to_dict()) == norm
    unfitted = PercentileNormalizer()
    assert PercentileNormalizer.from_dict(unfitted.to_dict()) == unfitted
    assert not unfitted.fitted


def test_normalizer_constant_image_and_errors():
    norm = PercentileNormalizer().fit(np.full((8, 8), 5.0))
    assert (norm.lo, norm.hi) == (5.0, 6.0)
    with pytest.raises(InputError, match="not fitted"):
        PercentileNormalizer()(np.ones(3))
    with pytest.raises(InputError, match="low"):
        PercentileNormalizer(low=50, high=10)


def test_normalizer_fit_on_a_large_lazy_image_reads_only_sampled_tiles():
    reads = []

    class Recording:
        shape, dtype, ndim = (4, 2048, 2048), np.dtype(np.float32), 3

        def __getitem__(self, index):
            part = np.broadcast_to(np.float32(0), self.shape)[index]
            reads.append(part.size)
            return part

    image = Image(data=da.from_array(Recording(), chunks=(1, 256, 256)), axes="ZYX",
                  pixel_size=None)
    PercentileNormalizer().fit(image, max_tiles=8, tile=256)
    # Each 256-pixel tile touches at most 4 chunks of 256x256, of 64 per frame.
    assert len(reads) <= 8 * 4 and sum(reads) <= 8 * 4 * 256 * 256


# ----------------------------------------------------------------------------- geometry


def test_split_regions_band_along_the_longer_axis():
    train, val = split_regions((1000, 300), 100, 0.1)
    assert (train, val) == (Region(0, 900, 0, 300), Region(900, 1000, 0, 300))
    train, val = split_regions((300, 1000), 100, 0.25)  # 2.5 tiles rounds to 2
    assert (train, val) == (Region(0, 300, 0, 800), Region(0, 300, 800, 1000))
    train, val = split_regions((512, 512), 64, 0.01)  # at least one tile
    assert val == Region(448, 512, 0, 512)
    train, val = split_regions((512, 512), 64, 0.0)
    assert train == Region(0, 512, 0, 512) and val.height == 0


def test_frame_window_reflects_at_edges():
    assert frame_window(5, 3, 10) == [4, 5, 6]
    assert frame_window(0, 3, 10) == [1, 0, 1]
    assert frame_window(0, 5, 10) == [2, 1, 0, 1, 2]
    assert frame_window(9, 5, 10) == [7, 8, 9, 8, 7]
    assert frame_window(1, 5, 2) == [1, 0, 1, 0, 1]
    assert frame_window(0, 3, 1) == [0, 0, 0]


def test_flip_rotate():
    x = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(flip_rotate(x, True, 0), x[:, ::-1])
    np.testing.assert_array_equal(flip_rotate(x, False, 1), np.rot90(x))


# ----------------------------------------------------------------------------- DegradedPairs


@pytest.mark.parametrize("scale", [1, 2, 4])
@pytest.mark.parametrize("frames", [1, 3, 5])
def test_degraded_pairs_shapes_and_dtypes(scale, frames):
    image = make_image(noise((7, 256, 256)), "TYX")
    for split in ("train", "val"):
        ds = DegradedPairs(image, preset("poisson", scale=scale), tile=64, frames=frames,
                           split=split, samples_per_epoch=4)
        inp, target = ds[3]
        assert inp.dtype == target.dtype == torch.float32
        assert tuple(inp.shape) == (frames, 64 // scale, 64 // scale)
        assert tuple(target.shape) == (1, 64, 64)
        assert torch.isfinite(inp).all()


@pytest.mark.parametrize("axes", ["TYX", "ZYX", "TZYX"])
def test_tiles_never_cross_the_split(axes):
    shape = {"TYX": (6, 300, 200), "ZYX": (6, 200, 300), "TZYX": (3, 4, 300, 200)}[axes]
    image = make_image(noise(shape), axes)
    frame_axis = "Z" if axes == "ZYX" else "T"
    kwargs = dict(tile=32, frames=3, frame_axis=frame_axis, val_fraction=0.2)
    train = DegradedPairs([image, image], IDENTITY, samples_per_epoch=500, **kwargs)
    val = DegradedPairs([image, image], IDENTITY, split="val", samples_per_epoch=500, **kwargs)
    train_region, val_region = train.regions[0]
    band = (val_region.y0, val_region.x0, val_region.height, val_region.width)
    assert band == ((236, 0, 64, 200) if shape[-2] > shape[-1] else (0, 236, 200, 64))
    frames_seen = set()
    for epoch in range(3):
        train.set_epoch(epoch)
        for i in range(len(train)):
            s = train.tile_position(i)
            assert train_region.contains(s.y, s.x, 32, 32), s
            frames_seen.update(s.frames)
    assert frames_seen == set(range(shape[0] if axes != "TZYX" else 3))
    positions = {(val.tile_position(i).y, val.tile_position(i).x) for i in range(len(val))}
    assert all(val_region.contains(y, x, 32, 32) for y, x in positions)
    n_cells = (val_region.height // 32) * (val_region.width // 32)
    assert len(positions) == n_cells  # the whole fixed grid is used
    few = DegradedPairs([image, image], IDENTITY, split="val", samples_per_epoch=6, **kwargs)
    assert {few.tile_position(i).image for i in range(len(few))} == {0, 1}


def test_validation_is_fixed_while_training_changes_each_epoch():
    image = make_image(noise((5, 256, 256)), "TYX")
    kwargs = dict(tile=64, samples_per_epoch=6, seed=3)
    val = DegradedPairs(image, preset("poisson", scale=2), split="val", **kwargs)
    train = DegradedPairs(image, preset("poisson", scale=2), **kwargs)
    first_val, first_train = [val[i] for i in range(6)], [train[i] for i in range(6)]
    val.set_epoch(1)
    train.set_epoch(1)
    for (a_in, a_t), (b_in, b_t) in zip(first_val, [val[i] for i in range(6)]):
        assert torch.equal(a_in, b_in) and torch.equal(a_t, b_t)
    second_train = [train[i] for i in range(6)]
    assert all(not torch.equal(a[0], b[0]) for a, b in zip(first_train, second_train))
    # Returning to an epoch reproduces it.
    train.set_epoch(0)
    assert torch.equal(first_train[0][0], train[0][0])


def test_epoch_loader_workers_kept_across_epochs_draw_each_epochs_tiles():
    image = make_image(noise((5, 256, 256)), "TYX")
    train = DegradedPairs(image, preset("poisson", scale=2), tile=32, frames=3, samples_per_epoch=8, seed=4)
    loader = epoch_loader(train, batch_size=4, num_workers=1)
    epochs = []
    for epoch in (0, 1, 0):
        loader.sampler.epoch = epoch
        epochs.append(torch.cat([inputs for inputs, _ in loader]))
    train.set_epoch(1)
    in_process = torch.stack([train[i][0] for i in range(8)])
    assert torch.equal(epochs[1], in_process)  # what set_epoch(1) gives in this process
    assert not torch.equal(epochs[0], epochs[1]) and torch.equal(epochs[0], epochs[2])
    # The same worker process served every epoch.
    pids = CallablePairs(lambda rng: (np.full((2, 2), os.getpid()), np.zeros((4, 4))), length=2)
    loader = epoch_loader(pids, batch_size=2, num_workers=1)
    seen = set()
    for epoch in range(3):
        loader.sampler.epoch = epoch
        seen.update(int(inputs.max()) for inputs, _ in loader)
    assert len(seen) == 1 and os.getpid() not in seen


def test_small_images_loaded_whole_give_the_same_samples_as_tile_reads(monkeypatch):
    image = make_image(noise((5, 256, 256)), "TYX")
    kwargs = dict(tile=32, frames=3, samples_per_epoch=8, seed=5)
    loaded = DegradedPairs(image, preset("poisson", scale=2), **kwargs)
    assert isinstance(loaded._stacks[0].pixels, np.ndarray)
    monkeypatch.setattr(data_module, "IN_MEMORY_BYTES", 0)
    lazy = DegradedPairs(image, preset("poisson", scale=2), **kwargs)
    assert not isinstance(lazy._stacks[0].pixels, np.ndarray)
    for (a_in, a_t), (b_in, b_t) in zip((loaded[i] for i in range(8)), (lazy[i] for i in range(8))):
        assert torch.equal(a_in, b_in) and torch.equal(a_t, b_t)


def test_training_noise_differs_for_the_same_tile():
    image = make_image(np.full((64, 64), 0.5, np.float32) + noise((64, 64)), "YX")
    ds = DegradedPairs(image, preset("poisson", scale=2), tile=64, val_fraction=0,
                       samples_per_epoch=2, augment=False)
    # The only possible tile: positions agree, so any difference is the noise.
    a, b = ds[0], ds[1]
    assert torch.equal(a[1], b[1]) and not torch.equal(a[0], b[0])


def test_same_seed_gives_identical_batches():
    image = make_image(noise((5, 256, 256)), "TYX")

    def batches(seed):
        ds = DegradedPairs(image, preset("poisson", scale=2), tile=32, frames=3, seed=seed,
                           samples_per_epoch=16)
        ds.set_epoch(2)
        return [b for b in DataLoader(ds, batch_size=8)]

    for (a_in, a_t), (b_in, b_t) in zip(batches(7), batches(7)):
        assert torch.equal(a_in, b_in) and torch.equal(a_t, b_t)
    assert not torch.equal(batches(7)[0][0], batches(8)[0][0])


def test_frame_window_centre_is_the_target_and_edges_reflect():
    stack = frame_valued(4)
    normalizer = PercentileNormalizer(lo=0.0, hi=1.0)  # identity
    image = make_image(stack, "TYX")
    ds = DegradedPairs(image, IDENTITY, tile=32, frames=5, val_fraction=0,
                       samples_per_epoch=200, normalizer=normalizer)
    edges = 0
    for i in range(len(ds)):
        s, (inp, target) = ds.tile_position(i), ds[i]
        assert torch.equal(inp[2], target[0])
        centre = s.frames[2]
        expected = [abs(centre + d) if centre + d < 4 else 6 - (centre + d) for d in range(-2, 3)]
        assert list(s.frames) == expected
        # Frame t holds values in [t, t + 0.5]: the channel reads the frame it names.
        np.testing.assert_array_equal(inp.numpy().min(axis=(1, 2)) // 1, expected)
        edges += centre in (0, 3)
    assert edges > 0


def test_clean_degradation_centre_channel_approximates_target():
    image = make_image(noise((5, 128, 128)) + 1, "ZYX")
    ds = DegradedPairs(image, preset("clean", scale=1), tile=64, frames=3, frame_axis="Z",
                       val_fraction=0, samples_per_epoch=4)
    inp, target = ds[0]
    assert torch.corrcoef(torch.stack([inp[1].flatten(), target[0].flatten()]))[0, 1] > 0.5


def test_augmentation_is_applied_to_input_and_target_alike():
    image = make_image(noise((2, 128, 128)), "TYX")
    kwargs = dict(tile=32, samples_per_epoch=40, seed=1)
    plain = DegradedPairs(image, preset("poisson", scale=2), augment=False, **kwargs)
    augmented = DegradedPairs(image, preset("poisson", scale=2), augment=True, **kwargs)
    transforms = set()
    for i in range(len(plain)):
        s = augmented.tile_position(i)
        assert s == plain.tile_position(i)
        for a, p in zip(augmented[i], plain[i]):
            np.testing.assert_array_equal(a.numpy(), flip_rotate(p.numpy(), s.flip, s.rot))
        transforms.add((s.flip, s.rot))
    assert len(transforms) == 8
    val = DegradedPairs(image, preset("poisson", scale=2), split="val", **kwargs)
    assert not val.augment


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_with_workers_and_file_backed_images(tmp_path, context):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, (noise((3, 256, 256)) * 1000).astype(np.uint16), tile=(64, 64),
                     photometric="minisblack")
    image = read_image(path)
    ds = DegradedPairs(image, preset("poisson", scale=2), tile=64, frames=3,
                       samples_per_epoch=12)
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[5][0], ds[5][0])
    batches = list(DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context=context))
    assert len(batches) == 3
    assert tuple(batches[0][0].shape) == (4, 3, 32, 32)
    assert tuple(batches[0][1].shape) == (4, 1, 64, 64)
    # Workers produce exactly what the main process does.
    assert torch.equal(batches[1][0][0], ds[4][0])


# ----------------------------------------------------------------------------- PairedImages


def test_paired_images_tiles_correspond():
    hr = noise((2, 258, 200))  # 2 extra rows: cropped, fewer than the scale (4)
    lr = hr[:, :256].reshape(2, 64, 4, 50, 4).mean(axis=(2, 4))
    ds = PairedImages(make_image(lr, "TYX", "lr.tif"), make_image(hr, "TYX", "hr.tif"),
                      scale=4, tile=32, frames=1, samples_per_epoch=20, augment=False,
                      normalizer=PercentileNormalizer(lo=0.0, hi=1.0))
    assert ds.regions[0][1] == Region(224, 256, 0, 200)
    for i in range(len(ds)):
        s = ds.tile_position(i)
        assert s.y % 4 == 0 and s.x % 4 == 0
        inp, target = ds[i]
        assert tuple(inp.shape) == (1, 8, 8) and tuple(target.shape) == (1, 32, 32)
        pooled = target.reshape(1, 8, 4, 8, 4).mean(dim=(2, 4))
        torch.testing.assert_close(inp, pooled)


def test_paired_images_accept_the_lr_that_degradation_makes_of_an_odd_hr():
    """A 601-pixel HR degrades to 151 LR pixels at x4 (rounded up): the pair trains on 150 of them."""
    from microsr.degrade import Degradation, Downsample

    hr = noise((601, 203))
    lr = Degradation((Downsample(4),))(hr)
    assert lr.shape == (151, 51)
    ds = PairedImages(make_image(lr, "YX", "lr.tif"), make_image(hr, "YX", "hr.tif"), scale=4, tile=32,
                      samples_per_epoch=20, augment=False, normalizer=PercentileNormalizer(lo=0.0, hi=1.0))
    assert max(r.y1 for _, r in ds.regions) <= 600 and max(r.x1 for _, r in ds.regions) <= 200
    for i in range(len(ds)):
        inp, target = ds[i]
        torch.testing.assert_close(inp, target.reshape(1, 8, 4, 8, 4).mean(dim=(2, 4)))


def test_paired_images_shape_mismatch_names_both_files():
    lr = make_image(noise((64, 64)), "YX", "small.tif")
    hr = make_image(noise((250, 256)), "YX", "big.tif")
    with pytest.raises(InputError, match=r"small\.tif.*\(64, 64\).*big\.tif.*\(250, 256\)"):
        PairedImages(lr, hr, scale=4, tile=32)


# ----------------------------------------------------------------------------- CallablePairs


def test_callable_pairs_shapes_and_seeding():
    def simulate(rng):
        hr = rng.random((3, 16, 16))
        return hr.reshape(3, 8, 2, 8, 2).mean(axis=(2, 4)), hr[1]

    train = CallablePairs(simulate, length=5, seed=1)
    inp, target = train[2]
    assert tuple(inp.shape) == (3, 8, 8) and tuple(target.shape) == (1, 16, 16)
    assert inp.dtype == torch.float32
    assert torch.equal(CallablePairs(simulate, length=5, seed=1)[2][0], inp)
    train.set_epoch(1)
    assert not torch.equal(train[2][0], inp)
    val = CallablePairs(simulate, length=5, split="val")
    before = val[0][0]
    val.set_epoch(3)
    assert torch.equal(val[0][0], before)
    assert len(list(DataLoader(train, batch_size=5, num_workers=2))) == 1

    with pytest.raises(InputError, match=r"<lambda> sample 0: input \(1, 8, 8\) and target"):
        CallablePairs(lambda rng: (np.zeros((8, 8)), np.zeros((12, 16))), length=1)[0]
    with pytest.raises(InputError, match="NaN"):
        CallablePairs(lambda rng: (np.full((8, 8), np.nan), np.zeros((8, 8))), length=1)[0]


# ----------------------------------------------------------------------------- errors


def test_tile_not_a_multiple_of_scale():
    message = "tile 130 is not a positive multiple of scale 4; use 128 or 132"
    with pytest.raises(InputError, match=message):
        DegradedPairs(make_image(noise((512, 512)), "YX"), preset("poisson", scale=4), tile=130)


def test_image_smaller_than_a_tile_names_the_file():
    with pytest.raises(InputError, match=r"tiny\.tif.*100x90.*smaller tile"):
        DegradedPairs(make_image(noise((100, 90)), "YX", "tiny.tif"), IDENTITY, tile=128)


def test_rgb_image_is_refused():
    rgb = make_image(noise((3, 128, 128)), "CYX", "photo.png")
    with pytest.raises(InputError, match=r"photo\.png.*3 channels.*grayscale"):
        DegradedPairs(rgb, IDENTITY, tile=32)
    single = make_image(noise((1, 128, 128)), "CYX")
    assert tuple(DegradedPairs(single, IDENTITY, tile=32)[0][0].shape) == (1, 32, 32)


def test_frames_need_the_frame_axis():
    with pytest.raises(InputError, match=r"cells\.tif.*frames=3 needs a T axis"):
        DegradedPairs(make_image(noise((128, 128)), "YX"), IDENTITY, tile=32, frames=3)
    with pytest.raises(InputError, match="odd"):
        DegradedPairs(make_image(noise((4, 128, 128)), "TYX"), IDENTITY, tile=32, frames=2)


def test_nan_tile_names_the_file():
    data = noise((256, 256))
    data[:, 100:] = np.nan  # the normaliser sees it too, so fit on clean values
    ds = DegradedPairs(make_image(data, "YX", "broken.tif"), IDENTITY, tile=64,
                       samples_per_epoch=50, normalizer=PercentileNormalizer().fit(noise((8, 8))))
    message = r"broken\.tif \(tile at y=\d+, x=\d+\) contains NaN or infinite values"
    with pytest.raises(InputError, match=message):
        for i in range(len(ds)):
            ds[i]
    with pytest.raises(InputError, match=r"broken\.tif contains NaN"):
        DegradedPairs(make_image(data, "YX", "broken.tif"), IDENTITY, tile=64)


# ----------------------------------------------------------------------------- big file

_BIG_CHILD = textwrap.dedent(
    """
    import sys
    from microsr.data.datasets import DegradedPairs
    from microsr.degrade import preset
    from microsr.io import read_image

    image = read_image(sys.argv[1])
    ds = DegradedPairs(image, preset("poisson", scale=4), tile=128, samples_per_epoch=50)
    for i in range(len(ds)):
        inp, target = ds[i]
        assert tuple(inp.shape) == (1, 32, 32)
    val = DegradedPairs(image, preset("poisson", scale=4), tile=128, split="val",
                        samples_per_epoch=10)
    for i in range(len(val)):
        val[i]
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking pytest process.
    print(int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) // 1024)
    """
)


@pytest.mark.slow
def test_two_gigabyte_tiff_is_tiled_in_little_memory(tmp_path):
    size, tile = 32768, 256
    path = tmp_path / "big.tif"
    patterns = [(noise((tile, tile), seed) * 60000).astype(np.uint16) for seed in range(8)]

    def tiles():
        for i in range((size // tile) ** 2):
            yield patterns[i % len(patterns)]

    try:
        tifffile.imwrite(path, tiles(), shape=(size, size), dtype=np.uint16,
                         tile=(tile, tile))
        assert path.stat().st_size > 2 * 1024**3
        result = subprocess.run([sys.executable, "-c", _BIG_CHILD, str(path)],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        peak_mb = int(result.stdout.split()[-1])
        assert peak_mb < 500, f"peak RSS {peak_mb} MB"
    finally:
        path.unlink(missing_ok=True)
