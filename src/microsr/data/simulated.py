"""SMLM training pairs simulated on the fly: camera frames and their x``scale`` emitter targets,
normalised as a reconstruction normalises a stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from microsr.data.normalize import PercentileNormalizer
from microsr.simulate.smlm import SMLMSimulation, SMLMVariety, render_targets, simulate_batch, simulate_stack

__all__ = ["ACQUISITION_FRAMES", "SimulatedFrames", "simulation_normalizer"]


ACQUISITION_FRAMES = 8
"""Frames simulated per drawn acquisition to normalise one training frame of a range (their percentiles)."""


_NORMALIZER_FRAMES = 256  # frames of the simulated stack whose percentiles normalise training frames


def simulation_normalizer(
    simulation: SMLMSimulation | SMLMVariety, normalizer: PercentileNormalizer, seed: int = 0
) -> PercentileNormalizer:
    """``normalizer`` fitted to a simulated stack of ``simulation``: how its training frames are normalised.

    A range of acquisitions (:class:`~microsr.simulate.smlm.SMLMVariety`) has no one
    stack: the normaliser stays unfitted and :class:`SimulatedFrames` fits it to each
    drawn acquisition, as reconstruction fits it to each stack.

    Examples
    --------
    >>> from microsr.simulate.smlm import preset
    >>> fitted = simulation_normalizer(preset("deepstorm-test"), PercentileNormalizer(0.1, 99.9))
    >>> fitted.fitted, 100 < fitted.lo < fitted.hi
    (True, True)
    """
    if isinstance(simulation, SMLMVariety):
        return PercentileNormalizer(normalizer.low, normalizer.high)
    stack, _ = simulate_stack(simulation, _NORMALIZER_FRAMES, seed)
    return normalizer.fit(stack, max_tiles=math.ceil(stack.size / 256**2))


@dataclass(frozen=True)
class SimulatedFrames:
    """Training pairs simulated on the fly: ``fn(rng)`` for :class:`microsr.data.datasets.CallablePairs`.

    Parameters
    ----------
    simulation
        What to simulate: one acquisition, or a range of them (each frame then comes
        from its own draw, normalised by the percentiles of
        :data:`ACQUISITION_FRAMES` frames of that draw, as a stack is at reconstruction).
    normalizer
        Normaliser applied to every frame (see :func:`simulation_normalizer`); fitted
        for one acquisition, unfitted for a range.
    scale
        Fine pixels per camera pixel of the targets.

    Examples
    --------
    >>> from microsr.simulate.smlm import preset
    >>> frames = SimulatedFrames(preset("dsir"), PercentileNormalizer(lo=100.0, hi=300.0))
    >>> frame, target = frames(np.random.default_rng(0))
    >>> frame.shape, target.shape
    ((1, 26, 26), (1, 208, 208))
    """

    simulation: SMLMSimulation | SMLMVariety
    normalizer: PercentileNormalizer
    scale: int = 8

    def __call__(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        inputs, targets, _ = self.sample(1, rng)
        return inputs[0], targets[0]

    def sample(self, n: int, seed: int | np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` independent frames: inputs ``(n, 1, h, w)``, targets ``(n, 1, h·s, w·s)`` and the truth table."""
        if isinstance(self.simulation, SMLMSimulation):
            frames, truth = simulate_batch(self.simulation, n, seed)
            frames = self.normalizer(frames)
        else:
            frames, truth = self._varied(n, np.random.default_rng(seed))
        targets = render_targets(truth, self.simulation.size, self.simulation.pixel_size, n, self.scale)
        return frames[:, None], targets[:, None], truth

    def _varied(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` frames, each of its own acquisition and normalised by that acquisition's percentiles."""
        frames, tables = [], []
        for k in range(n):
            stack, truth = simulate_batch(self.simulation.draw(rng), ACQUISITION_FRAMES, rng)
            frames.append(self.normalizer.fit(stack)(stack[0]))
            truth = truth[truth["frame"] == 1]
            truth["frame"] = k + 1
            tables.append(truth)
        return np.stack(frames), np.concatenate(tables)
