"""Score localizations against ground truth as the SMLM challenges do.

Scoring follows the SMLM challenges (Sage et al., Nat. Methods 12, 717-724, 2015
and 16, 387-395, 2019): within each frame, estimates and ground truth are paired
one-to-one by an optimal assignment, only pairs closer than a tolerance radius
count, and recall, precision, the Jaccard index, the lateral RMSE of the pairs and
the efficiency combine them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from microsr.errors import InputError
from microsr.smlm.table import _check_table

__all__ = ["LocalizationScore", "score"]


# Lateral efficiency weight of the 2-D SMLM challenge: alpha = 1 nm^-1 when the Jaccard
# index is in percent, i.e. 0.01 nm^-1 with Jaccard as a fraction (Sage et al. 2019).
_ALPHA_LATERAL = 0.01


@dataclass(frozen=True)
class LocalizationScore:
    """How well estimated localizations match the ground truth (see :func:`score`).

    Attributes
    ----------
    tp, fp, fn
        Matched pairs (true positives), unmatched estimates (false positives) and
        unmatched ground-truth emitters (false negatives).
    recall, precision, jaccard
        ``tp / (tp + fn)``, ``tp / (tp + fp)``, ``tp / (tp + fp + fn)`` (fractions; NaN if undefined).
    rmse_lateral
        Root mean squared lateral distance of the pairs, nm (NaN without pairs).
    efficiency
        ``1 - sqrt((1 - jaccard)**2 + (0.01 nm^-1 * rmse_lateral)**2)``, a fraction
        (the challenge's ``E = 100 - sqrt((100 - Jaccard %)^2 + alpha^2 RMSE^2)``,
        ``alpha = 1 nm^-1``, divided by 100).
    radius
        Tolerance radius used, nm.
    pairs
        ``(tp, 2)`` indices of each pair into the estimates and the ground truth.
    """

    tp: int
    fp: int
    fn: int
    recall: float
    precision: float
    jaccard: float
    rmse_lateral: float
    efficiency: float
    radius: float
    pairs: np.ndarray = field(repr=False, compare=False)


def score(estimates: np.ndarray, truth: np.ndarray, radius: float = 250.0) -> LocalizationScore:
    """Score estimated localizations against the ground truth, frame by frame.

    Within each frame, estimates and ground-truth emitters are paired one-to-one by
    an optimal assignment (:func:`scipy.optimize.linear_sum_assignment`) on their
    lateral distances, as the EPFL SMLM challenges do (Sage et al., Nat. Methods
    2015 and 2019); pairs farther apart than ``radius`` are excluded, so the
    assignment makes as many pairs within ``radius`` as possible and, among those,
    minimises their summed distance. (DECODE pairs greedily, nearest first; the two
    differ only in crowded ties.) A localization never matches one in another frame.

    The efficiency is that of Sage et al. 2019 ("Super-resolution fight club",
    Nat. Methods 16, 387-395), lateral form for 2-D data:
    ``E = 100 - sqrt((100 - Jaccard[%])**2 + alpha**2 * RMSE[nm]**2)`` with
    ``alpha = 1 nm^-1``; DECODE computes it the same way
    (``decode/evaluation/metric.py``, ``efficiency(jac, rmse, alpha=1.0)``). It is
    returned as a fraction (E / 100).

    Parameters
    ----------
    estimates, truth
        Localization tables (frame, x, y in nm).
    radius
        Tolerance radius in nm (250 nm is the challenge's high-density setting).

    Returns
    -------
    LocalizationScore

    Raises
    ------
    InputError
        If a table is not a localization table or ``radius`` is not positive.

    Examples
    --------
    >>> from microsr.smlm.table import localization_table
    >>> truth = localization_table([1, 1, 2], [100.0, 1000.0, 100.0], [100.0, 100.0, 100.0])
    >>> found = localization_table([1, 1, 1], [130.0, 140.0, 1040.0], [100.0, 100.0, 100.0])
    >>> result = score(found, truth, radius=250)
    >>> result.tp, result.fp, result.fn, round(result.jaccard, 3), round(result.rmse_lateral, 1)
    (2, 1, 1, 0.5, 35.4)
    """
    estimates = _check_table(estimates, "the estimates")
    truth = _check_table(truth, "the ground truth")
    if not (math.isfinite(radius) and radius > 0):
        raise InputError(f"radius={radius!r}: give a positive tolerance radius in nm, e.g. 250.")
    pairs = _match(estimates, truth, float(radius))
    tp = len(pairs)
    fp, fn = len(estimates) - tp, len(truth) - tp
    dx = estimates["x"][pairs[:, 0]] - truth["x"][pairs[:, 1]]
    dy = estimates["y"][pairs[:, 0]] - truth["y"][pairs[:, 1]]
    rmse = math.sqrt(float(np.mean(dx**2 + dy**2))) if tp else math.nan
    jaccard = _ratio(tp, tp + fp + fn)
    efficiency = 1.0 - math.sqrt((1.0 - jaccard) ** 2 + (_ALPHA_LATERAL * rmse) ** 2)
    return LocalizationScore(tp, fp, fn, _ratio(tp, tp + fn), _ratio(tp, tp + fp), jaccard, rmse, efficiency,
                             float(radius), pairs)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def _match(estimates: np.ndarray, truth: np.ndarray, radius: float) -> np.ndarray:
    """One-to-one pairs ``(estimate index, truth index)`` within ``radius``, per frame.

    Candidate pairs come from a k-d tree in which the frame number is a third
    coordinate scaled so that frames are farther apart than ``radius``. The bipartite
    graph of candidates splits into connected components, each solved on its own:
    an optimal assignment over the whole frame decomposes exactly into them, and
    they stay small even when a frame holds many thousands of emitters.
    """
    empty = np.zeros((0, 2), np.int64)
    if len(estimates) == 0 or len(truth) == 0:
        return empty
    frame_gap = 4.0 * radius
    points_e = np.column_stack([estimates["x"], estimates["y"], estimates["frame"] * frame_gap])
    points_t = np.column_stack([truth["x"], truth["y"], truth["frame"] * frame_gap])
    edges = cKDTree(points_e).sparse_distance_matrix(cKDTree(points_t), radius, output_type="ndarray")
    if len(edges) == 0:
        return empty
    n_e = len(estimates)
    graph = coo_matrix((np.ones(len(edges)), (edges["i"], n_e + edges["j"])), shape=(n_e + len(truth),) * 2)
    _, label = connected_components(graph, directed=False)
    component = label[edges["i"]]
    order = np.argsort(component, kind="stable")
    edges, component = edges[order], component[order]
    starts = np.flatnonzero(np.r_[True, component[1:] != component[:-1]])
    sizes = np.diff(np.r_[starts, len(edges)])
    # A component with one edge is one estimate and one truth: the pair itself.
    single = starts[sizes == 1]
    pairs = [np.column_stack([edges["i"][single], edges["j"][single]])]
    for start, size in zip(starts[sizes > 1], sizes[sizes > 1]):
        pairs.append(_assign(edges[start : start + size], radius))
    return np.concatenate(pairs).astype(np.int64)


def _assign(edges: np.ndarray, radius: float) -> np.ndarray:
    """Optimal assignment within one component; non-candidates cost more than any set of real pairs."""
    rows, row_index = np.unique(edges["i"], return_inverse=True)
    cols, col_index = np.unique(edges["j"], return_inverse=True)
    # With this cost for a non-pair, one more real pair always beats any saving in distance.
    excluded = radius * (min(len(rows), len(cols)) + 1)
    cost = np.full((len(rows), len(cols)), excluded)
    cost[row_index, col_index] = edges["v"]
    r, c = linear_sum_assignment(cost)
    real = cost[r, c] < excluded
    return np.column_stack([rows[r[real]], cols[c[real]]])
