"""The SMLM task: frames simulated on the fly, validated by localizing emitters in the model's outputs.

Each epoch the outputs on a fixed simulated validation set are localized at the peak
threshold that maximises the configured criterion (Jaccard index at 100 nm by default,
fixed in ``data.simulation`` before training; :func:`microsr.smlm.localize.best_threshold`);
training records it with the Jaccard index at 100 and 250 nm and the lateral RMSE, and
stores the threshold in the checkpoint for :func:`microsr.smlm.reconstruct.reconstruct`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from microsr.config import RunConfig
from microsr.data.datasets import CallablePairs
from microsr.data.normalize import PercentileNormalizer
from microsr.data.simulated import SimulatedFrames, simulation_normalizer
from microsr.models import to_channels_last
from microsr.runtime.precision import autocast
from microsr.smlm.localize import PEAK_RADIUS, choose_threshold, localize, threshold_scores
from microsr.smlm.score import score

__all__ = ["SMLMData", "smlm_data", "smlm_scores"]


@dataclass(frozen=True)
class SMLMData:
    """Simulated SMLM training pairs, the fixed validation frames and their emitters."""

    train: CallablePairs
    val: TensorDataset
    truth: np.ndarray
    pixel_size: float  # of the targets, nm
    criterion: str  # what the peak threshold maximises, at `radius` nm
    radius: float


def smlm_data(cfg: RunConfig) -> SMLMData:
    """Frames simulated on the fly for training; a fixed set seeded by ``train.seed`` for validation.

    Parameters
    ----------
    cfg
        A run with ``data.simulation``.

    Returns
    -------
    SMLMData
        ``train`` draws new frames every epoch; ``val`` and ``truth`` never change.
    """
    simulation = cfg.data.simulation.settings()
    normalizer = simulation_normalizer(simulation, PercentileNormalizer(**cfg.normalization), cfg.train.seed)
    frames = SimulatedFrames(simulation, normalizer, cfg.scale)
    train_set = CallablePairs(frames, cfg.data.samples_per_epoch, "train", cfg.train.seed)
    inputs, targets, truth = frames.sample(cfg.data.simulation.val_frames, cfg.train.seed)
    val_set = TensorDataset(torch.from_numpy(inputs), torch.from_numpy(targets))
    return SMLMData(train_set, val_set, truth, simulation.pixel_size / cfg.scale,
                    cfg.data.simulation.threshold_criterion, cfg.data.simulation.threshold_radius)


@torch.inference_mode()
def smlm_scores(
    net: nn.Module, smlm: SMLMData, device: torch.device, dtype: torch.dtype, batch_size: int
) -> dict[str, float]:
    """The peak threshold chosen on the validation frames, with its Jaccard index at 100 and 250 nm and lateral RMSE (nm).

    The threshold is the highest within one standard error of the best ``smlm.criterion`` at
    ``smlm.radius`` (:func:`~microsr.smlm.localize.best_threshold`); ``val_criterion`` is that
    best value, by which training keeps its best checkpoint.

    Parameters
    ----------
    net
        The model, applied in ``dtype`` autocast on ``device``.
    smlm
        From :func:`smlm_data`.
    device, dtype, batch_size
        Where, in which precision and how many frames at a time the model runs.

    Returns
    -------
    dict
        ``threshold``, ``val_jaccard_100``, ``val_jaccard_250``, ``val_rmse``,
        ``val_precision_250``, ``val_recall_250`` and ``val_criterion``.
    """
    net.eval()
    outputs = []
    for inputs, _ in DataLoader(smlm.val, batch_size=batch_size):
        with autocast(device, dtype):
            outputs.append(net(to_channels_last(inputs.to(device)))[:, 0].float().cpu())
    outputs = torch.cat(outputs).numpy()
    scores = threshold_scores(outputs, smlm.truth, smlm.pixel_size, tolerance=smlm.radius)
    threshold, _ = choose_threshold(scores, smlm.criterion)
    table = localize(outputs, smlm.pixel_size, threshold, radius=PEAK_RADIUS)
    near, wide = (score(table, smlm.truth, radius) for radius in (100.0, 250.0))
    return {"threshold": threshold, "val_jaccard_100": near.jaccard, "val_jaccard_250": wide.jaccard,
            "val_rmse": wide.rmse_lateral, "val_precision_250": wide.precision, "val_recall_250": wide.recall,
            # The epoch's best achievable value: checkpoints are compared on their outputs, not on the threshold rule.
            "val_criterion": max(float(np.nan_to_num(getattr(result, smlm.criterion))) for _, result in scores)}
