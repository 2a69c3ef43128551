"""What differs per job in training: where the pairs come from and how a model is validated.

:mod:`~microsr.tasks.sr` makes tiles from images (degraded on the fly, or real pairs);
:mod:`~microsr.tasks.smlm` simulates SMLM frames and validates by localization.
:mod:`microsr.training` is the loop they feed.
"""
