"""Data for training and prediction: intensity normalisation (:mod:`~microsr.data.normalize`) and
the training pairs, their train/validation split and loader (:mod:`~microsr.data.datasets`).
"""
