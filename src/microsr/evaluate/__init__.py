"""How good a result is: the one scorer (:mod:`~microsr.evaluate.score`) and bicubic baseline
(:mod:`~microsr.evaluate.baseline`) every entry point uses, image metrics
(:mod:`~microsr.evaluate.metrics`), the consistency of a prediction with its input
(:mod:`~microsr.evaluate.consistency`), benchmarks against references
(:mod:`~microsr.evaluate.benchmark`, :mod:`~microsr.evaluate.report`) and the SIM comparison
(:mod:`~microsr.evaluate.sim`).

``score``, ``baseline`` and ``metrics`` need numpy, scipy and scikit-image only (no torch), so
training imports them for its validation scores.
"""
