"""Structured illumination: classical Wiener reconstruction and raw-frame handling
(:mod:`~microsr.sim.wiener`, numpy only), and trained multi-frame models applied to an
acquisition (:mod:`~microsr.sim.network`).
"""
