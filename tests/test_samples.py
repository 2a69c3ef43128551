"""The shipped sample image is what its generator makes, with its pixel size."""

import numpy as np

from microsr.io import read_image
from microsr.samples import SAMPLE_PIXEL_SIZE_NM, filaments, sample_path


def test_shipped_sample_is_reproducible_from_its_generator():
    img = read_image(sample_path())
    assert img.axes == "YX"
    assert img.pixel_size == SAMPLE_PIXEL_SIZE_NM
    np.testing.assert_array_equal(img.data.compute(), filaments())


def test_sample_uses_more_than_8_bits():
    img = filaments((128, 128), seed=3)
    assert img.dtype == np.uint16
    assert img.max() > 4 * 255
