"""Simulators of microscopy acquisitions with exact ground truth.

- :mod:`microsr.simulate.smlm`: single-molecule localization microscopy (STORM/PALM)
  stacks of blinking emitters, their localizations, and training targets.
"""
