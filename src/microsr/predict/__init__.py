"""Applying a trained model: the tiled, streaming engine (:mod:`~microsr.predict.engine`) and the
model loaded from its checkpoint with its scale, frames and normalisation
(:mod:`~microsr.predict.restorer`).
"""

from microsr.predict.engine import Predictor
from microsr.predict.restorer import Restorer, load_model

__all__ = ["Predictor", "Restorer", "load_model"]
