"""Degrading real 2 nm EM gives an image like a real 8 nm acquisition.

Data: PSSR (Fang et al., Nature Methods 2021), MIT licence: the tSEM test image at
2 nm (``napari_pssr/HR/small.tif``) and a real undersampled SEM image at 8 nm
(``em_lr_8nm/00.tif``). Neither file carries pixel-size metadata, so the sizes
stated by the data's README are given explicitly.
"""

import numpy as np
import pytest
from skimage.restoration import estimate_sigma

from microsr.data.normalize import PercentileNormalizer

from microsr.degrade import degrade_image
from microsr.degrade import preset
from microsr.io import read_image

pytestmark = pytest.mark.realdata


def _noise_level(image) -> float:
    """Wavelet (MAD) estimate of the noise std, in units of the 0.1–99.9 percentile range."""
    pixels = image.data.compute().astype(np.float64)
    return float(estimate_sigma(PercentileNormalizer().fit(pixels)(pixels)))


def test_degraded_2nm_em_matches_real_8nm_pixel_size_and_noise(realdata):
    hr = read_image(realdata("napari_pssr/HR/small.tif"), pixel_size=2.0)
    real_lr = read_image(realdata("em_lr_8nm/00.tif"), pixel_size=8.0)

    degraded = [degrade_image(hr, preset("poisson", scale=4), seed=seed) for seed in range(4)]
    clean = degrade_image(hr, preset("clean", scale=4), seed=0)

    assert all(lr.pixel_size == pytest.approx(real_lr.pixel_size) for lr in degraded)
    assert degraded[0].shape == (150, 225)
    assert degraded[0].dtype == hr.dtype

    real_noise = _noise_level(real_lr)
    simulated_noise = np.mean([_noise_level(lr) for lr in degraded])
    # Same order of magnitude as the real acquisition, and clearly more than the
    # noise the HR image itself carries through blur and downsampling.
    assert real_noise / 3 < simulated_noise < 3 * real_noise
    assert simulated_noise > 1.5 * _noise_level(clean)
