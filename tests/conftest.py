"""Shared fixtures: where the published real data lives."""

import os
from pathlib import Path

import pytest

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
