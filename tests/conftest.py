"""Shared fixtures: where the published real data lives."""

import os
from pathlib import Path

import pytest

import microsr
from microsr.io import Image, write_image
from microsr.samples import filaments

_DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _data_root() -> Path:
    return Path(os.environ.get("MICROSR_DATA", _DEFAULT_DATA))


@pytest.fixture
def realdata():
    """Return a function mapping a path under the shared data folder to a Path.

    The test is skipped (with the reason) when the file is absent, as it is in a
    user's clone without ``../shared``.
    """

    def locate(relative: str) -> Path:
        path = _data_root() / relative
        if not path.exists():
            pytest.skip(f"real data not found: {path} (set MICROSR_DATA to the shared data folder)")
        return path

    return locate


def _run_config(hr_file: Path, **train) -> dict:
    """A tiny x4 run on ``hr_file`` (resunet_small, 128 px tiles); ``train`` overrides its train section."""
    return {
        "data": {"hr": [str(hr_file)], "tile": 128, "batch_size": 8, "samples_per_epoch": 64, "num_workers": 0},
        "scale": 4,
        "degradation": "poisson",
        "model": {"name": "resunet_small"},
        "train": {"lr": 2e-3, **train},
    }


@pytest.fixture(scope="session")
def run_config():
    """The function building a tiny run's config, see :func:`_run_config`."""
    return _run_config


@pytest.fixture(scope="session")
def hr_file(tmp_path_factory):
    """A 384 x 384 synthetic filament image with 20 nm pixels."""
    path = tmp_path_factory.mktemp("hr") / "filaments.tif"
    write_image(path, Image(filaments((384, 384), seed=11), "YX", pixel_size=20.0))
    return path


@pytest.fixture(scope="session")
def trained(hr_file, tmp_path_factory):
    """A x4 model trained for 240 steps on ``hr_file`` (about a minute), and its final record."""
    output = tmp_path_factory.mktemp("run") / "model"
    record = microsr.train(_run_config(hr_file, steps=240), output, progress=False)
    return output, record
