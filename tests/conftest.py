"""Shared fixtures: where the published real data lives, and the scripts that publish figures."""

import importlib.util
import json
import os
from pathlib import Path

import pytest

from microsr.io import Image, write_image
from microsr.samples import filaments
import microsr

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


@pytest.fixture(scope="session")
def published():
    """Return a function loading a figure-publishing script (path from the project root) and its JSON.

    ``published("benchmarks/realdata/sim_tirf_mt.py")`` gives ``(module, results)``: the script
    as a module (its ``evaluate`` recomputes the figures) and the results its README table shows.
    """

    def load(script: str):
        path = Path(__file__).resolve().parents[1] / script
        spec = importlib.util.spec_from_file_location(f"_published_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module, json.loads(Path(module.RESULTS).read_text())

    return load


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
