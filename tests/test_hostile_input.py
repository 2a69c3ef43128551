"""A hostile-input table across every command: one line, exit status 2, nothing changed, nothing left behind.

Each case builds its bad input in a fresh folder and runs ``microsr`` in this process
(a subprocess per case would import torch again, seconds each). Every case asserts what a
user relies on when something is wrong: exit status 2; one line on stderr that names the
problem, and no traceback; every file in the folder (and the shared model) byte-identical
afterwards; and no new file or folder, not even a lock or a partial output.
"""

import hashlib
import json
import os
import pickle
import shutil
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image as PILImage

from microsr.cli import main
from microsr.io import Image, write_image
from microsr.samples import filaments
import microsr

# --------------------------------------------------------------------------- bad inputs


def tiff(folder: Path, name: str = "image.tif", data=None, **kwargs) -> Path:
    """A real TIFF (filaments, 128², uint16, 40 nm pixels unless `data` is given)."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        write_image(path, Image(filaments((128, 128), seed=1), "YX", pixel_size=40.0))
    else:
        with warnings.catch_warnings():  # tifffile warns about writing a 0 x 0 image, which is the point
            warnings.simplefilter("ignore")
            tifffile.imwrite(path, data, **kwargs)
    return path


def write(path: Path, content: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def truncated(folder: Path) -> Path:
    path = tiff(folder, "truncated.tif")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def with_value(folder: Path, value: float, name: str) -> Path:
    data = filaments((128, 128), seed=2).astype(np.float32)
    data[60, 60] = value
    return tiff(folder, name, data)


def bomb(folder: Path, name: str, side: int, tile: int | None) -> Path:
    """A TIFF of a few kB that decodes to ``side`` x ``side`` uint8 zeros: a decompression bomb.

    With ``tile``: real zlib tiles, all pointing at one compressed zero tile (a valid image
    of side² bytes). Without: one strip of side² bytes, so even one piece of it cannot be
    decoded in memory (its short zlib stream is never reached: the reader must refuse first).
    """
    data = zlib.compress(bytes(tile * tile if tile else 4096), 9)
    count = (-(-side // tile)) ** 2 if tile else 1
    tags = [(256, 4, 1, side), (257, 4, 1, side), (258, 3, 1, 8), (259, 3, 1, 8), (262, 3, 1, 1), (277, 3, 1, 1)]
    ifd_end = 8 + 2 + 10 * 12 + 4
    offsets_at, data_at = ifd_end, ifd_end + 8 * count
    if tile:
        tags += [(322, 4, 1, tile), (323, 4, 1, tile), (324, 4, count, offsets_at),
                 (325, 4, count, offsets_at + 4 * count)]
    else:
        tags += [(273, 4, 1, data_at), (278, 4, 1, side), (279, 4, 1, len(data)), (284, 3, 1, 1)]
    out = bytearray(b"II" + struct.pack("<HI", 42, 8) + struct.pack("<H", len(tags)))
    for code, kind, n, value in sorted(tags):
        short = kind == 3  # SHORT values are left-justified in the entry's 4 bytes
        out += struct.pack("<HHIHH", code, kind, n, value, 0) if short else struct.pack("<HHII", code, kind, n, value)
    out += struct.pack("<I", 0)
    out += struct.pack(f"<{count}I", *[data_at] * count) + struct.pack(f"<{count}I", *[len(data)] * count)
    return write(folder / name, bytes(out.ljust(data_at, b"\0")) + data)


def tiled_bomb(folder: Path) -> Path:
    """65536² uint8 (4.3 GB decoded, 137 GB to degrade) in 18 kB."""
    return bomb(folder, "tiled_bomb.tif", 65536, 4096)


def strip_bomb(folder: Path) -> Path:
    """2^20 x 2^20 uint8 in one strip (1.1 TB decoded) in 200 bytes."""
    return bomb(folder, "strip_bomb.tif", 2**20, None)


def rgb(folder: Path) -> Path:
    path = folder / "rgb.png"
    PILImage.fromarray(np.random.default_rng(2).integers(0, 255, (96, 96, 3), np.uint8)).save(path)
    return path


def five_d(folder: Path) -> Path:
    data = np.random.default_rng(3).integers(0, 4000, (2, 3, 2, 64, 64), np.uint16)
    return tiff(folder, "tczyx.ome.tif", data, metadata={"axes": "TCZYX"})


def pickle_payload(path: Path) -> Path:
    """A pickle that would create a file if anything unpickled it."""

    class Payload:
        def __reduce__(self):
            return (Path.touch, (path.parent / "PWNED",))

    return write(path, pickle.dumps({"state": Payload()}))


def read_only_folder(folder: Path) -> Path:
    """A folder this process cannot write to (as root, whom permissions do not stop: /proc/sys)."""
    locked = folder / "read-only"
    locked.mkdir()
    locked.chmod(0o555)
    return locked if not os.access(locked, os.W_OK) else Path("/proc/sys")


def zarr_without_multiscales(folder: Path) -> Path:
    path = folder / "plain.zarr"
    zarr.open_group(path, mode="w").create_array("0", shape=(8, 8), dtype="u1")
    return path


def sim_frames(folder: Path, frames: int = 9) -> Path:
    data = np.random.default_rng(4).integers(100, 1000, (frames, 64, 64), np.uint16)
    return tiff(folder, "frames.tif", data, imagej=True, resolution=(1 / 0.08, 1 / 0.08),
                metadata={"axes": "ZYX", "unit": "um"})


def copy_model(model: Path, folder: Path, name: str = "run") -> Path:
    return Path(shutil.copytree(model, folder / name))


def tampered_header(model: Path, folder: Path) -> Path:
    data = bytearray((model / "best.safetensors").read_bytes())
    data[:8] = struct.pack("<Q", 2**40)  # a header longer than the file
    return write(folder / "tampered.safetensors", bytes(data))


def tampered_metadata(model: Path, folder: Path, change) -> Path:
    """The model's checkpoint with its JSON description edited by `change` (header rewritten consistently)."""
    raw = (model / "best.safetensors").read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + size])
    info = json.loads(header["__metadata__"]["microsr"])
    header["__metadata__"]["microsr"] = json.dumps(change(info))
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return write(folder / "edited.safetensors", struct.pack("<Q", len(text)) + text + raw[8 + size :])


def no_metadata(model: Path, folder: Path) -> Path:
    from safetensors.torch import save_file

    from microsr.checkpoint import load_checkpoint

    path = folder / "bare.safetensors"
    save_file(load_checkpoint(model)[0], str(path))
    return path


def config(folder: Path, text: str) -> Path:
    return write(folder / "run.yaml", text)


def localizations(folder: Path, text: str, name: str = "locs.csv") -> Path:
    return write(folder / name, text)


# --------------------------------------------------------------------------- the table

TILE = ["--tile", "64"]  # training tiles that fit the 128² test image
RESUME = [*TILE, "--model", "resunet_small", "--scale", "2", "--resume"]  # the shared model's run

# (case, make the input: (folder, model) -> argv after `microsr`, text the message must contain)
CASES = [
    # info
    ("info: missing file", lambda d, m: ["info", d / "missing.tif"], "missing.tif"),
    ("info: empty file", lambda d, m: ["info", write(d / "empty.tif", b"")], "empty.tif"),
    ("info: corrupt TIFF", lambda d, m: ["info", write(d / "corrupt.tif", np.random.default_rng(1).bytes(5000))],
     "corrupt.tif"),
    ("info: truncated TIFF", lambda d, m: ["info", truncated(d)], "truncated"),
    ("info: text file", lambda d, m: ["info", write(d / "notes.txt", "hello")], "notes.txt"),
    ("info: text file named .tif", lambda d, m: ["info", write(d / "notes.tif", "hello")], "notes.tif"),
    ("info: 0x0 image", lambda d, m: ["info", tiff(d, "empty_image.tif", np.zeros((0, 0), np.uint16))],
     "no pixels"),
    ("info: bomb in one strip", lambda d, m: ["info", strip_bomb(d)], "GB of memory"),
    ("info: wrong --axes", lambda d, m: ["info", tiff(d), "--axes", "ZYX"], "axes"),
    ("info: negative --pixel-size", lambda d, m: ["info", tiff(d), "--pixel-size", "-5"], "pixel_size"),
    ("info: a folder", lambda d, m: ["info", (d / "folder").mkdir() or d / "folder"], "folder"),
    ("info: Zarr without OME metadata", lambda d, m: ["info", zarr_without_multiscales(d)], "multiscales"),
    ("info: pickle named .png", lambda d, m: ["info", pickle_payload(d / "image.png")], "image.png"),
    ("info: spaces and accents", lambda d, m: ["info", write(d / "dossier é" / "ïmage ü.tif", b"II*\0")],
     "ïmage ü.tif"),
    # degrade
    ("degrade: NaN", lambda d, m: ["degrade", with_value(d, np.nan, "nan.tif"), "-o", d / "out.tif"], "NaN"),
    ("degrade: Inf", lambda d, m: ["degrade", with_value(d, np.inf, "inf.tif"), "-o", d / "out.tif"], "infinite"),
    ("degrade: 1x1 image", lambda d, m: ["degrade", tiff(d, "one.tif", np.ones((1, 1), np.uint16)), "-o",
                                         d / "out.tif"], "1 × 1"),
    ("degrade: tiled bomb", lambda d, m: ["degrade", tiled_bomb(d), "-o", d / "out.tif"], "GB of memory"),
    ("degrade: truncated TIFF", lambda d, m: ["degrade", truncated(d), "-o", d / "out.tif"], "truncated"),
    ("degrade: existing output", lambda d, m: ["degrade", tiff(d), "-o", tiff(d, "taken.tif")], "taken.tif"),
    ("degrade: output is the input", lambda d, m: ["degrade", tiff(d), "-o", d / "image.tif", "--overwrite"],
     "input"),
    ("degrade: output folder missing", lambda d, m: ["degrade", tiff(d), "-o", d / "nowhere" / "out.tif"],
     "does not exist"),
    ("degrade: read-only output folder", lambda d, m: ["degrade", tiff(d), "-o", read_only_folder(d) / "out.tif"],
     "cannot write"),
    ("degrade: unknown output type", lambda d, m: ["degrade", tiff(d), "-o", d / "out.bogus"], ".bogus"),
    ("degrade: unknown preset", lambda d, m: ["degrade", tiff(d), "-o", d / "out.tif", "--noise", "salty"], "salty"),
    ("degrade: malformed range", lambda d, m: ["degrade", tiff(d), "-o", d / "out.tif", "--photons", "1,2,3"],
     "--photons"),
    ("degrade: scale 0", lambda d, m: ["degrade", tiff(d), "-o", d / "out.tif", "--scale", "0"], "--scale"),
    ("degrade: scale 2.5", lambda d, m: ["degrade", tiff(d), "-o", d / "out.tif", "--scale", "2.5"], "--scale"),
    ("degrade: YAML syntax error", lambda d, m: ["degrade", tiff(d), "-o", d / "out.tif", "--degradation",
                                                 write(d / "deg.yaml", "steps: [type: blur\n")], "deg.yaml"),
    ("degrade: YAML out-of-range sigma", lambda d, m: [
        "degrade", tiff(d), "-o", d / "out.tif", "--degradation",
        write(d / "deg.yaml", "steps:\n  - {type: blur, sigma: -3}\n  - {type: downsample, factor: 4}\n")], "sigma"),
    ("degrade: YAML with a Python object", lambda d, m: [
        "degrade", tiff(d), "-o", d / "out.tif", "--degradation",
        write(d / "deg.yaml", "!!python/object/apply:os.system ['touch PWNED']\n")], "deg.yaml"),
    ("degrade: --save-config not YAML", lambda d, m: ["degrade", tiff(d), "-o", d / "out.tif", "--save-config",
                                                      d / "deg.txt"], "YAML"),
    ("degrade: --save-config is the --degradation", lambda d, m: [
        "degrade", tiff(d), "-o", d / "out.tif", "--overwrite", "--save-config", d / "deg.yaml", "--degradation",
        write(d / "deg.yaml", "steps: [{type: downsample, factor: 4}, {type: poisson, photons: 100}]\n")], "input"),
    # fit-degradation
    ("fit-degradation: scale 0", lambda d, m: ["fit-degradation", "--lr", tiff(d), "--scale", "0", "-o",
                                               d / "f.yaml"], "--scale"),
    ("fit-degradation: output not YAML", lambda d, m: ["fit-degradation", "--lr", tiff(d), "-o", d / "f.json"],
     "YAML"),
    ("fit-degradation: empty folder", lambda d, m: ["fit-degradation", "--lr", (d / "lr").mkdir() or d / "lr", "-o",
                                                    d / "f.yaml"], "no images"),
    ("fit-degradation: bomb", lambda d, m: ["fit-degradation", "--lr", strip_bomb(d), "-o", d / "f.yaml"],
     "GB of memory"),
    ("fit-degradation: sizes not related by a scale", lambda d, m: [
        "fit-degradation", "--lr", tiff(d, "lr.tif", np.ones((50, 50), np.uint16)), "--hr",
        tiff(d, "hr.tif", np.ones((128, 128), np.uint16)), "-o", d / "f.yaml"], "scale"),
    ("fit-degradation: existing output", lambda d, m: ["fit-degradation", "--lr", tiff(d), "-o",
                                                       write(d / "f.yaml", "x")], "exists"),
    # train
    ("train: unknown model", lambda d, m: ["train", "--hr", tiff(d), *TILE, "--model", "nosuch", "-o", d / "model"],
     "nosuch"),
    ("train: 1x1 image", lambda d, m: ["train", "--hr", tiff(d, "one.tif", np.ones((1, 1), np.uint16)), "-o",
                                       d / "model"], "one.tif"),
    ("train: NaN", lambda d, m: ["train", "--hr", with_value(d, np.nan, "nan.tif"), "--tile", "64", "-o",
                                 d / "model", "--steps", "1"], "NaN"),
    ("train: empty --hr folder", lambda d, m: ["train", "--hr", (d / "hr").mkdir() or d / "hr", "-o", d / "model"],
     "no images"),
    ("train: no --hr", lambda d, m: ["train", "-o", d / "model"], "--hr"),
    ("train: bomb", lambda d, m: ["train", "--hr", strip_bomb(d), "-o", d / "model"], "GB of memory"),
    ("train: --resume a finished run", lambda d, m: ["train", "--hr", tiff(d), *RESUME, "--steps", "2", "-o",
                                                     copy_model(m, d)], "already finished"),
    ("train: --resume with a pickled state", lambda d, m: [
        "train", "--hr", tiff(d), *RESUME, "--steps", "50", "-o",
        pickle_payload(copy_model(m, d) / "train_state.pt").parent], "never unpickles"),
    ("train: --resume with a truncated state", lambda d, m: [
        "train", "--hr", tiff(d), *RESUME, "--steps", "50", "-o",
        write(copy_model(m, d) / "train_state.pt", (m / "train_state.pt").read_bytes()[:3000]).parent], "damaged"),
    ("train: --resume with nothing to resume", lambda d, m: [
        "train", "--hr", tiff(d), *RESUME, "-o", (d / "fresh").mkdir() or d / "fresh"], "nothing to resume"),
    ("train: existing run without --resume", lambda d, m: ["train", "--hr", tiff(d), "-o", copy_model(m, d)],
     "--resume"),
    ("train: output is a file", lambda d, m: ["train", "--hr", tiff(d), "-o", write(d / "model", "x")], "folder"),
    ("train: read-only output folder", lambda d, m: ["train", "--hr", tiff(d), "-o", read_only_folder(d) / "model"],
     "cannot write"),
    ("train: YAML syntax error", lambda d, m: ["train", config(d, "data: {hr: [x.tif]\n"), "-o", d / "model"],
     "run.yaml"),
    ("train: unknown config key", lambda d, m: ["train", config(d, f"data: {{hr: [{tiff(d)}]}}\nspeed: 11\n"), "-o",
                                                d / "model"], "speed"),
    ("train: negative learning rate", lambda d, m: [
        "train", config(d, f"data: {{hr: [{tiff(d)}]}}\ntrain: {{lr: -1}}\n"), "-o", d / "model"], "lr"),
    ("train: scale 3", lambda d, m: ["train", "--hr", tiff(d), "--scale", "3", "-o", d / "model"], "scale"),
    # predict
    ("predict: unknown output type", lambda d, m: ["predict", m, tiff(d), "-o", d / "x.bogus"], ".bogus"),
    ("predict: float32 output as PNG", lambda d, m: ["predict", m, tiff(d), "-o", d / "x.png"], "PNG"),
    ("predict: missing model", lambda d, m: ["predict", d / "nomodel", tiff(d), "-o", d / "x.tif"], "nomodel"),
    ("predict: pickled model", lambda d, m: ["predict", pickle_payload(d / "model.safetensors"), tiff(d), "-o",
                                             d / "x.tif"], "pickled"),
    ("predict: pickled .pt model", lambda d, m: ["predict", pickle_payload(d / "model.pt"), tiff(d), "-o",
                                                 d / "x.tif"], "model.pt"),
    ("predict: safetensors without description", lambda d, m: ["predict", no_metadata(m, d), tiff(d), "-o",
                                                               d / "x.tif"], "description"),
    ("predict: tampered safetensors header", lambda d, m: ["predict", tampered_header(m, d), tiff(d), "-o",
                                                           d / "x.tif"], "tampered.safetensors"),
    ("predict: checkpoint from the future", lambda d, m: [
        "predict", tampered_metadata(m, d, lambda i: {**i, "format_version": 99}), tiff(d), "-o", d / "x.tif"],
     "newer"),
    ("predict: architecture edited", lambda d, m: [
        "predict", tampered_metadata(m, d, lambda i: {**i, "arch": {"name": "unet", "kwargs": {}}}), tiff(d), "-o",
        d / "x.tif"], "edited.safetensors"),
    ("predict: pixel-size mismatch", lambda d, m: ["predict", m, tiff(d), "--pixel-size", "400", "-o", d / "x.tif"],
     "--rescale"),
    ("predict: RGB input", lambda d, m: ["predict", m, rgb(d), "-o", d / "x.tif", "--force"], "channels"),
    ("predict: 5-D input with 3 channels", lambda d, m: ["predict", m, five_d(d), "-o", d / "x.tif", "--force"],
     "channels"),
    ("predict: existing output", lambda d, m: ["predict", m, tiff(d), "-o", tiff(d, "taken.tif")], "taken.tif"),
    ("predict: output is the input", lambda d, m: ["predict", m, tiff(d), "-o", d / "image.tif", "--overwrite"],
     "input"),
    ("predict: output inside the model", lambda d, m: ["predict", copy_model(m, d), tiff(d), "-o",
                                                       d / "run" / "x.tif"], "input"),
    ("predict: bomb", lambda d, m: ["predict", m, strip_bomb(d), "-o", d / "x.tif"], "GB of memory"),
    ("predict: read-only output folder", lambda d, m: ["predict", m, tiff(d), "-o", read_only_folder(d) / "x.tif"],
     "cannot write"),
    ("predict: consistency map exists", lambda d, m: ["predict", m, tiff(d), "-o", d / "x.tif", "--consistency",
                                                      tiff(d, "x.consistency.tif")], "x.consistency.tif"),
    ("predict: NaN", lambda d, m: ["predict", m, with_value(d, np.nan, "nan.tif"), "-o", d / "x.tif"], "NaN"),
    ("predict: tile 0", lambda d, m: ["predict", m, tiff(d), "-o", d / "x.tif", "--tile", "0"], "--tile"),
    # benchmark
    ("benchmark: tiled bomb", lambda d, m: ["benchmark", m, "--hr", tiled_bomb(d), "-o", d / "report"],
     "GB of memory"),
    ("benchmark: missing --hr", lambda d, m: ["benchmark", m, "--hr", d / "nohr", "-o", d / "report"], "nohr"),
    ("benchmark: report folder not empty", lambda d, m: [
        "benchmark", m, "--hr", tiff(d), "-o", write(d / "report" / "notes.txt", "mine").parent], "report"),
    # bench
    ("bench: --json folder missing", lambda d, m: ["bench", "--json", d / "nowhere" / "b.json"], "does not exist"),
    ("bench: size too small", lambda d, m: ["bench", "--size", "2"], "--size"),
    # system
    ("system: unknown model", lambda d, m: ["system", "--model", "nosuch"], "nosuch"),
    ("system: scale 0", lambda d, m: ["system", "--scale", "0"], "scale"),
    ("system: a device this machine lacks", lambda d, m: ["system", "--device", "cuda:7"], "cuda:7"),
    ("predict: not a device", lambda d, m: ["predict", m, tiff(d), "-o", d / "o.tif", "--device", "gpu0"], "gpu0"),
    # export (bioimage.io packages)
    ("export: output not a .zip", lambda d, m: ["export", m, "-o", d / "package.tif"], "package.tif"),
    ("export: missing model", lambda d, m: ["export", d / "nomodel", "-o", d / "package.zip"], "nomodel"),
    ("export: existing output", lambda d, m: ["export", m, "-o", write(d / "package.zip", "mine")], "package.zip"),
    ("predict: a .zip that is not a package", lambda d, m: [
        "predict", write(d / "fake.zip", "not a zip"), tiff(d), "-o", d / "x.tif"], "fake.zip"),
    # sim
    ("sim reconstruct: 0 angles", lambda d, m: ["sim", "reconstruct", sim_frames(d), "--angles", "0", "--phases", "7",
                                                "-o", d / "sim.tif"], "--angles"),
    ("sim reconstruct: 2 phases", lambda d, m: ["sim", "reconstruct", sim_frames(d), "--phases", "2", "-o",
                                                d / "sim.tif"], "--phases"),
    ("sim reconstruct: 8 frames for 3x3", lambda d, m: ["sim", "reconstruct", sim_frames(d, 8), "--na", "1.2",
                                                        "--wavelength", "525", "-o", d / "sim.tif"], "8"),
    ("sim reconstruct: bad OTF CSV", lambda d, m: [
        "sim", "reconstruct", sim_frames(d), "--otf", write(d / "otf.csv", "cycles,value\nabc,def\n"), "-o",
        d / "sim.tif"], "otf.csv"),
    ("sim reconstruct: unknown output type", lambda d, m: ["sim", "reconstruct", sim_frames(d), "--na", "1.2",
                                                           "--wavelength", "525", "-o", d / "sim.bogus"], ".bogus"),
    ("sim reconstruct: float32 output as PNG", lambda d, m: ["sim", "reconstruct", sim_frames(d), "--na", "1.2",
                                                            "--wavelength", "525", "-o", d / "sim.png"], "PNG"),
    ("sim predict: not a SIM model", lambda d, m: ["sim", "predict", m, sim_frames(d), "-o", d / "sim.tif"],
     "channels"),
    # srrf
    ("srrf targets: a single image", lambda d, m: ["srrf", "targets", tiff(d), "-o", d / "pairs"], "stack"),
    ("srrf targets: more input frames than a block", lambda d, m: [
        "srrf", "targets", sim_frames(d), "--frames-per-target", "4", "--input-frames", "5", "-o", d / "pairs"],
     "input_frames"),
    # smlm
    ("smlm score: bad CSV", lambda d, m: ["smlm", "score", localizations(d, "frame,x,y\n1,abc,2\n"),
                                          localizations(d, "frame,x,y\n1,1,2\n", "truth.csv")], "locs.csv"),
    ("smlm score: empty CSV", lambda d, m: ["smlm", "score", localizations(d, ""),
                                            localizations(d, "frame,x,y\n1,1,2\n", "truth.csv")], "locs.csv"),
    ("smlm reconstruct: missing stack", lambda d, m: ["smlm", "reconstruct", d / "nostack.tif", "-o", d / "rec"],
     "nostack.tif"),
]


def _snapshot(*folders: Path) -> dict[str, str]:
    """Every path under `folders`, with a checksum for files: what changed or appeared shows as a difference."""
    found = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "folder"
    return found


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A x2 model trained for 2 steps on 40 nm filaments (a few seconds)."""
    folder = tmp_path_factory.mktemp("hostile_model")
    hr = tiff(folder)
    cfg = {"data": {"hr": [str(hr)], "tile": 64, "batch_size": 2, "samples_per_epoch": 4, "num_workers": 0},
           "scale": 2, "model": {"name": "resunet_small"}, "train": {"steps": 2}}
    microsr.train(cfg, folder / "model", progress=False)
    return folder / "model"


def test_the_table_covers_every_command_with_at_least_60_cases():
    from microsr.cli import app

    commands = {c.name or c.callback.__name__ for c in app.registered_commands} - {"demo"}
    covered = {case.split(":")[0].split()[0] for case, _, _ in CASES}
    assert len(CASES) >= 60
    assert commands <= covered, commands - covered


@pytest.mark.parametrize("make, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(tmp_path, capsys, model, make, expected):
    argv = [str(a) for a in make(tmp_path, model)]
    before = _snapshot(tmp_path, model)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_info.value.code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert expected in err
    assert _snapshot(tmp_path, model) == before
    assert not (tmp_path / "PWNED").exists()
