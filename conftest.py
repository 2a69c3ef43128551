"""For every test and doctest: machine measurements are cached in a temporary folder, never in the user's home."""

import os
import shutil
import tempfile


def pytest_configure(config):
    config._microsr_cache = tempfile.mkdtemp(prefix="microsr-test-cache-")
    os.environ["MICROSR_CACHE"] = config._microsr_cache


def pytest_unconfigure(config):
    shutil.rmtree(config._microsr_cache, ignore_errors=True)
