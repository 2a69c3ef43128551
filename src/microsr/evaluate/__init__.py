"""How good a result is: image metrics (:mod:`~microsr.evaluate.metrics`), the consistency of a
prediction with its input (:mod:`~microsr.evaluate.consistency`), benchmarks against references
(:mod:`~microsr.evaluate.benchmark`, :mod:`~microsr.evaluate.report`) and the SIM comparison
(:mod:`~microsr.evaluate.sim`).
"""
