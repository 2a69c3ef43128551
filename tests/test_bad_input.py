"""Bad input: one readable error that names the problem, exit code 2, and nothing lost.

Each row builds a bad input in a fresh folder. The test checks the message names the
offending file or option, the CLI prints no traceback, and no file in the folder was
changed or created.
"""

import hashlib

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from microsr.cli import main
from microsr.data.datasets import DegradedPairs
from microsr.degrade import preset
from microsr.errors import InputError
from microsr.io import read_image


def _tiff(tmp_path, name="image.tif", data=None):
    path = tmp_path / name
    tifffile.imwrite(path, np.random.default_rng(0).integers(0, 4000, (256, 256), np.uint16) if data is None else data)
    return path


def _corrupt(tmp_path):
    path = tmp_path / "corrupt.tif"
    path.write_bytes(np.random.default_rng(1).bytes(5000))
    return path


def _truncated(tmp_path):
    path = _tiff(tmp_path, "truncated.tif")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _nan(tmp_path):
    data = np.ones((256, 256), np.float32)
    data[100, 100] = np.nan
    return _tiff(tmp_path, "nan.tif", data)


def _rgb(tmp_path):
    path = tmp_path / "rgb.png"
    PILImage.fromarray(np.random.default_rng(2).integers(0, 255, (256, 256, 3), np.uint8)).save(path)
    return path


def _snapshot(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


# (case, make the input -> argv after `microsr`, text the message must contain)
CLI_CASES = [
    ("missing file", lambda d: ["info", d / "missing.tif"], "missing.tif"),
    ("corrupt TIFF", lambda d: ["info", _corrupt(d)], "corrupt.tif"),
    ("truncated TIFF", lambda d: ["degrade", _truncated(d), "-o", d / "out.tif"], "truncated.tif"),
    ("unsupported format", lambda d: ["info", _write(d / "notes.txt", b"hello")], "notes.txt"),
    ("NaN values", lambda d: ["degrade", _nan(d), "-o", d / "out.tif"], "NaN"),
    ("wrong axes", lambda d: ["info", _tiff(d), "--axes", "ZYX"], "image.tif"),
    ("existing output", lambda d: ["degrade", _tiff(d), "-o", _tiff(d, "taken.tif")], "taken.tif"),
    ("output is the input", lambda d: ["degrade", _tiff(d), "-o", d / "image.tif", "--overwrite"], "image.tif"),
    ("malformed range", lambda d: ["degrade", _tiff(d), "-o", d / "out.tif", "--photons", "1,2,3"], "--photons"),
    ("unknown preset", lambda d: ["degrade", _tiff(d), "-o", d / "out.tif", "--noise", "salty"], "salty"),
    ("scale not an integer", lambda d: ["degrade", _tiff(d), "-o", d / "out.tif", "--scale", "2.5"], "--scale"),
]


def _write(path, content):
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("make, expected", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_exits_2_with_one_readable_message(tmp_path, capsys, make, expected):
    argv = [str(a) for a in make(tmp_path)]
    before = _snapshot(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert expected in err
    assert "Traceback" not in err
    assert _snapshot(tmp_path) == before


def _dataset(path, **kwargs):
    return DegradedPairs([read_image(path)], preset("poisson", scale=kwargs.pop("scale", 4)), **kwargs)


# (case, make the input and use it for training data, text the message must contain)
TRAINING_CASES = [
    ("image smaller than a tile", lambda d: _dataset(_tiff(d, "small.tif", np.ones((64, 64), np.uint16)), tile=128),
     "small.tif"),
    ("RGB where one channel is expected", lambda d: _dataset(_rgb(d), tile=64), "rgb.png"),
    ("scale does not divide the tile", lambda d: _dataset(_tiff(d), tile=130), "multiple of scale 4"),
    ("NaN in a tile", lambda d: _dataset(_nan(d), tile=64, val_fraction=0)[0], "nan.tif"),
]


@pytest.mark.parametrize("make, expected", [c[1:] for c in TRAINING_CASES], ids=[c[0] for c in TRAINING_CASES])
def test_training_data_bad_input_raises_input_error(tmp_path, make, expected):
    with pytest.raises(InputError) as error:
        make(tmp_path)
    assert expected in str(error.value)
