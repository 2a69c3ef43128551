"""Training on several processes or GPUs: the process group ``torchrun`` describes, and what ranks agree on.

``torchrun --nproc-per-node N -m microsr train ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment. :func:`ranks` reads them (one
process without them), :func:`process_group` joins the group (gloo on CPU, nccl on
CUDA, each rank on ``cuda:LOCAL_RANK``) only when there is more than one process, and
:meth:`Ranks.wrap` makes a model average its gradients over the ranks, and
:meth:`Ranks.agree` and :meth:`Ranks.gather` exchange the few numbers the ranks must share:
rank 0's clock (so a time budget stops every rank at the same step) and each rank's loss.
For one process they return their argument, so a plain run does no collective at all.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from microsr.errors import InputError

__all__ = ["Ranks", "process_group", "ranks"]


@dataclass(frozen=True)
class Ranks:
    """Which process this is among ``world_size`` (``rank`` overall, ``local_rank`` on its machine).

    Examples
    --------
    >>> one = Ranks()
    >>> one.main, one.agree(2.5), one.gather(0.5)
    (True, 2.5, [0.5])
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that validates, writes checkpoints and prints."""
        return self.rank == 0

    def wrap(self, net: nn.Module, device: torch.device) -> nn.Module:
        """``net`` for the training steps: with several ranks, wrapped in DistributedDataParallel, whose
        backward averages the gradients over them (and whose wrapping gives every rank rank 0's weights).

        ``net`` itself stays the bare model, for validation and checkpoints.
        """
        if self.world_size == 1:
            return net
        # A 1x1 kernel in channels_last has strides that differ from its gradient's only along
        # dimensions of size 1, which is the same memory layout: DDP's advice on it is noise.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        return DistributedDataParallel(net, device_ids=[device] if device.type == "cuda" else None,
                                       gradient_as_bucket_view=True)

    def agree(self, value: float) -> float:
        """Rank 0's ``value`` on every rank (a broadcast): what all ranks must decide alike, e.g. whether to stop.

        Every rank must call it at the same point of the run.
        """
        if self.world_size == 1:
            return value
        shared = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
        dist.broadcast(shared, src=0)
        return float(shared.item())

    def gather(self, value: float) -> list[float]:
        """Every rank's ``value``, in rank order, on every rank. Every rank must call it at the same point."""
        if self.world_size == 1:
            return [float(value)]
        values = torch.zeros(self.world_size, dtype=torch.float64, device=_collective_device())
        values[self.rank] = float(value)
        dist.all_reduce(values)  # each rank fills its own entry; the sum is all of them
        return values.tolist()


def ranks() -> Ranks:
    """This process's place in the run, from ``torchrun``'s ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``.

    Without them (a plain ``microsr train``) the run is one process: ``Ranks()``.

    Raises
    ------
    InputError
        If the variables are not whole numbers with ``0 <= RANK < WORLD_SIZE``.

    Examples
    --------
    >>> os.environ.get("WORLD_SIZE") is not None or ranks() == Ranks()
    True
    """
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    try:
        rank, world_size, local_rank = (int(os.environ.get(name, default)) for name, default in zip(names, "010"))
    except ValueError:
        raise InputError(f"RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers (got "
                         f"{', '.join(repr(os.environ.get(n)) for n in names)}); start with torchrun.") from None
    if not 0 <= rank < world_size or local_rank < 0:
        raise InputError(f"RANK={rank}, WORLD_SIZE={world_size}: the rank must be in [0, WORLD_SIZE); start with "
                         "torchrun.")
    return Ranks(rank, world_size, local_rank)


@contextmanager
def process_group(device: torch.device, where: Ranks) -> Iterator[torch.device]:
    """Join the ranks' process group for the duration, and give this rank's device.

    With one process nothing is joined and ``device`` is returned as is. With several,
    a CUDA device becomes ``cuda:LOCAL_RANK`` (one GPU per process; choose the GPUs with
    ``CUDA_VISIBLE_DEVICES``) and the group uses nccl; on CPU it uses gloo. The group
    is left on exit, however the run ends.

    Parameters
    ----------
    device
        The device the run asked for (:func:`~microsr.runtime.device.pick_device`).
    where
        This process's :func:`ranks`.

    Raises
    ------
    InputError
        For a device several processes cannot share: a numbered GPU (``cuda:1``) or mps.

    Examples
    --------
    >>> with process_group(torch.device("cpu"), Ranks()) as device:
    ...     device
    device(type='cpu')
    """
    if where.world_size == 1:
        yield device
        return
    if device.type == "cuda":
        if device.index is not None:
            raise InputError(f"device {device}: with {where.world_size} processes each uses cuda:LOCAL_RANK; use "
                             "--device cuda (or auto) and choose the GPUs with CUDA_VISIBLE_DEVICES.")
        device = torch.device("cuda", where.local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise InputError(f"device {device}: training on several processes runs on cuda or cpu; use --device cpu.")
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=where.rank,
                            world_size=where.world_size)
    try:
        yield device
    finally:
        dist.destroy_process_group()


def _collective_device() -> torch.device:
    """Where tensors for a collective must live: the current GPU under nccl, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
