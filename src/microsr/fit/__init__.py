"""Fit a degradation to your microscope, from LR/HR pairs or from LR images alone.

Training degrades high-resolution (HR) images into low-resolution (LR) inputs; the closer
that degradation is to the real acquisition, the better the trained model does on real
data. Two estimates are offered: :func:`fit_degradation` (:mod:`~microsr.fit.blur`: blur,
intensity map and noise from real LR/HR pairs) and :func:`fit_noise`
(:mod:`~microsr.fit.noise`: the Poisson-Gaussian noise model of LR images alone).
:mod:`~microsr.fit._common` holds what both use: reading the inputs, binned
variance-vs-intensity sums with jackknife errors, and the commented YAML report.

Units follow training and prediction (see ``docs/architecture.md``): each HR image is
normalised by its own 0.1/99.9 percentiles (PercentileNormalizer) and degraded in those
units, and a real LR image is normalised by its own percentiles, as prediction does.
"""

from microsr.fit.blur import DegradationFit, fit_degradation
from microsr.fit.noise import NoiseFit, fit_noise

__all__ = ["DegradationFit", "NoiseFit", "fit_degradation", "fit_noise"]
