"""The training loop: degrade HR tiles (or simulate SMLM frames) on the fly, fit the model, keep the best checkpoint.

One function, :func:`train`, readable top to bottom: set up data, model and
optimiser (or restore them with ``resume``), then for each epoch train, validate,
and write ``last.safetensors`` (and ``best.safetensors`` when validation PSNR
improves) plus the weights, optimiser state and counters in ``train_state.pt``;
within an epoch, the latter two every ``train.checkpoint_minutes`` (default 5). An
interrupted run loses at most that much, and ``resume`` continues it, mid-epoch too.
The output folder is locked while training (:func:`microsr.io.output_lock`), and a run
that fails before its first checkpoint removes the folder it created.

Under ``torchrun --nproc-per-node N`` the same loop runs in N processes
(:mod:`microsr.runtime.distributed`), nanoGPT-style: the model is wrapped in
DistributedDataParallel, which averages the gradients; each rank loads its own share of
every epoch's tiles (:func:`~microsr.data.datasets.epoch_loader`); rank 0 alone holds the
lock, validates, writes the checkpoints and shows progress, and its clock decides for
all when a time budget is spent.

What differs per job comes from :mod:`microsr.tasks`: tiles of images, degraded on
the fly or real pairs (:func:`~microsr.tasks.sr.sr_datasets`), or, with
``data.simulation``, SMLM frames simulated on the fly and validated by localization
(:mod:`microsr.tasks.smlm`), whose checkpoint with the best localization criterion is
``best.safetensors``.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn
from torch.utils.data import DataLoader

from microsr.checkpoint import checkpoint_path, load_checkpoint, load_state_into, save_checkpoint
from microsr.config import RunConfig, load_config
from microsr.data.datasets import epoch_loader
from microsr.data.normalize import PercentileNormalizer
from microsr.degrade import Degradation, load_degradation
from microsr.errors import InputError
from microsr.evaluate.baseline import upscale
from microsr.evaluate.score import ImageScore
from microsr.evaluate.score import score as score_image
from microsr.io import atomic_output, check_output, output_lock
from microsr.models import create_model, receptive_field, to_channels_last
from microsr.models.losses import get_loss
from microsr.runtime import distributed
from microsr.runtime.allocator import reuse_freed_memory
from microsr.runtime.device import pick_device
from microsr.runtime.distributed import Ranks
from microsr.runtime.precision import autocast, resolve_precision
from microsr.tasks.smlm import smlm_data, smlm_scores
from microsr.tasks.sr import sr_datasets

__all__ = ["adamw", "train"]


def adamw(parameters: Any, *, lr: float, weight_decay: float, device: torch.device) -> torch.optim.AdamW:
    """The optimiser of training: AdamW, fused into one kernel for all parameters where PyTorch can.

    The per-tensor default took 14 % of a CPU training step (8.7 ms; fused, 1.3 ms).

    Examples
    --------
    >>> optimizer = adamw(torch.nn.Linear(2, 2).parameters(), lr=1e-3, weight_decay=0.0, device=torch.device("cpu"))
    >>> optimizer.defaults["fused"]
    True
    """
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay, fused=device.type in ("cpu", "cuda"))


def train(
    config: RunConfig | dict[str, Any] | str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    resume: bool = False,
    model: nn.Module | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[dict[str, Any]], bool | None] | None = None,
) -> dict[str, Any]:
    """Train a model as `config` describes and write its checkpoints to the folder `output`.

    Parameters
    ----------
    config
        A :class:`~microsr.config.RunConfig`, a dict, or a YAML/JSON file. Its ``data.hr``
        (and ``data.lr``) may hold images in memory as well as files and folders:
        :class:`~microsr.io.Image` objects with their pixel size, or NumPy/dask arrays
        (with ``data.axes`` unless 2-D), so notebooks and napari need no temporary files.
        Files pair by name (:func:`~microsr.io.pair_by_name`), in-memory images by position.
    output
        Model folder: ``best.safetensors``, ``last.safetensors``, ``config.json``,
        ``train_state.pt`` and ``history.json`` are written there.
    resume
        Continue an interrupted run from ``output``'s ``train_state.pt`` (saved at the end
        of every epoch and every ``train.checkpoint_minutes`` within one). Without it, an
        ``output`` that already holds a run is refused, so nothing is overwritten.
    model
        Any ``nn.Module`` mapping ``(N, frames, h, w)`` to ``(N, 1, h*scale, w*scale)``;
        default: the registry model named in the config.
    progress
        Show a live progress bar.
    on_epoch_end
        Called after each validation with that epoch's record; returning True stops
        training (after the checkpoint is written).

    Returns
    -------
    dict
        The last epoch's record: ``epoch``, ``step``, ``loss``, ``val_loss``,
        ``val_psnr``, ``val_ssim``, ``bicubic_psnr``, ``seconds``; with simulated SMLM
        data also ``threshold``, ``val_jaccard_100``, ``val_jaccard_250`` and ``val_rmse`` (nm).
        On several processes also ``rank_losses`` (each rank's mean loss; ``loss`` is their
        mean), and on ranks other than 0, which do not validate, only ``epoch``, ``step``,
        ``loss``, ``rank_losses`` and ``seconds``.

    Notes
    -----
    **Several processes or GPUs.** Started by ``torchrun --nproc-per-node N -m microsr train``
    (or any launcher that sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
    ``MASTER_PORT``), the N processes train one model with DistributedDataParallel: gloo on
    CPU, nccl on CUDA with one GPU per process (``cuda:LOCAL_RANK``).

    - ``data.batch_size`` is per process: a step averages the gradients of
      N x ``batch_size`` tiles. The learning rate is not scaled with N; raise ``train.lr``
      yourself if the larger batch allows it.
    - ``data.samples_per_epoch`` stays the tiles of one epoch, shared among the processes
      (rank r draws samples r, r + N, ...: different tiles and noise, together those of a
      one-process epoch), so an epoch takes about 1/N of the steps.
    - ``train.steps`` counts optimiser steps, each of N x ``batch_size`` tiles;
      ``train.epochs`` counts epochs; ``train.minutes`` is wall time on rank 0's clock,
      which decides for every rank when to stop (and where the learning-rate schedule is).
    - Rank 0 alone locks ``output``, validates, writes every file and shows progress.
      ``resume`` loads on every rank what rank 0 wrote; it may continue on another number
      of processes (the state is the same weights and optimiser), within an epoch at
      about the place it stopped. If a process dies, ``torchrun`` stops the others and the
      last checkpoint resumes.
    - ``config.json`` records ``world_size``, the processes of the latest run.

    Examples
    --------
    >>> import tempfile
    >>> from microsr.samples import sample_path
    >>> cfg = {"data": {"hr": [str(sample_path())], "tile": 64, "batch_size": 4, "samples_per_epoch": 8,
    ...                 "num_workers": 0}, "scale": 2, "model": {"name": "resunet_small"}, "train": {"steps": 2}}
    >>> train(cfg, tempfile.mkdtemp(), progress=False)["step"]
    2
    """
    cfg = load_config(config)
    output = Path(output)
    state_file = output / "train_state.pt"
    if output.exists() and not output.is_dir():
        raise InputError(f"{output}: exists and is not a folder; a model is written as a folder, choose another name.")
    check_output(output, overwrite=True)
    where = distributed.ranks()
    # Rank 0 alone locks, writes and cleans up; every rank makes the same checks of the folder, before
    # rank 0 can have written anything in it (that waits for all ranks to wrap the model).
    with (distributed.process_group(pick_device(cfg.train.device), where) as device,
          output_lock(output) if where.main else nullcontext()):  # first: a run still writing here is named as such
        if not resume and (output / "last.safetensors").exists():
            raise InputError(
                f"{output}: already holds a trained model; pass --resume to continue it, or use a new folder."
            )
        if resume and not state_file.exists():
            raise InputError(f"{output}: nothing to resume (no train_state.pt); start a new run without --resume.")
        created = not output.exists()
        try:
            return _train(cfg, output, device, where, resume=resume, model=model, progress=progress and where.main,
                          on_epoch_end=on_epoch_end)
        except BaseException:
            if where.main and created and not state_file.exists():  # nothing resumable was written: leave no debris
                shutil.rmtree(output, ignore_errors=True)
            raise


def _train(
    cfg: RunConfig,
    output: Path,
    device: torch.device,
    where: Ranks,
    *,
    resume: bool,
    model: nn.Module | None,
    progress: bool,
    on_epoch_end: Callable[[dict[str, Any]], bool | None] | None,
) -> dict[str, Any]:
    """The body of :func:`train`, once its output is checked and locked (by rank 0)."""
    state_file = output / "train_state.pt"
    torch.manual_seed(cfg.train.seed)
    torch.use_deterministic_algorithms(cfg.train.deterministic, warn_only=True)
    degraded = cfg.data.hr is not None and cfg.data.lr is None
    degradation = load_degradation(cfg.degradation, scale=cfg.scale) if degraded else None
    smlm = smlm_data(cfg) if cfg.data.simulation is not None else None
    train_set, val_set, pixel_size = (smlm.train, smlm.val, smlm.pixel_size) if smlm else sr_datasets(cfg, degradation)
    loader = epoch_loader(train_set, cfg.data.batch_size, num_workers=cfg.data.num_workers,
                          pin_memory=device.type == "cuda", rank=where.rank, world_size=where.world_size)
    net = model if model is not None else create_model(
        cfg.model.name, in_channels=cfg.data.frames, scale=cfg.scale, **cfg.model.kwargs
    )
    if cfg.model.init is not None:
        init_file = checkpoint_path(cfg.model.init)
        load_state_into(net, load_checkpoint(init_file)[0], init_file)
    net = net.to(device, memory_format=torch.channels_last)
    dtype = resolve_precision(cfg.train.precision, device, net, channels=cfg.data.frames)
    dtypes = [torch.float32, torch.bfloat16, torch.float16]
    dtype = dtypes[int(where.agree(dtypes.index(dtype)))]  # "auto" is measured by each rank: all use rank 0's
    optimizer = adamw(net.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay, device=device)
    loss_fn = get_loss(cfg.loss)
    info = _checkpoint_info(cfg, net, degradation, pixel_size, where.world_size)
    if where.main:
        output.mkdir(exist_ok=True)

    run = {"epoch": 0, "step": 0, "seconds": 0.0, "best_psnr": -math.inf, "history": []}
    if resume:  # every rank loads the state rank 0 wrote
        run = _load_state(state_file, net, optimizer, output)
    stepped = where.wrap(net, device)  # with several ranks, its backward averages the gradients over them

    total_steps = cfg.train.steps or (cfg.train.epochs or 0) * max(1, len(loader))
    budget = 60 * cfg.train.minutes if cfg.train.minutes else None
    if run["seconds"] >= budget if budget else run["step"] >= total_steps:
        raise InputError(
            f"{output}: this run is already finished ({run['step']} steps in {run['epoch']} epochs, "
            f"{run['seconds'] / 60:.1f} minutes); to train it longer, resume with a larger --steps, --epochs or "
            "--minutes."
        )
    bicubic_psnr = _bicubic_psnr(val_set, cfg.scale) if where.main else math.nan
    record: dict[str, Any] = {}
    with _progress_bar(progress) as bar, reuse_freed_memory():
        done = run["seconds"] if budget else run["step"]
        task = bar.add_task("training", total=budget or total_steps, completed=done)
        while run["seconds"] < budget if budget else run["step"] < total_steps:
            started = saved_at = time.monotonic()
            net.train()
            loader.sampler.epoch = run["epoch"]
            # Resuming a checkpoint taken within an epoch: continue that epoch where it stopped (where all
            # ranks together stopped; approximately when their number changed since).
            loader.sampler.start = run.pop("epoch_batches", 0) * cfg.data.batch_size * where.world_size
            losses = run.pop("epoch_losses", [])
            for inputs, targets in loader:
                fraction = run["seconds"] / budget if budget else run["step"] / total_steps
                for group in optimizer.param_groups:
                    group["lr"] = _learning_rate(cfg.train.lr, min(fraction, 1.0), cfg.train.schedule)
                inputs = to_channels_last(inputs.to(device, non_blocking=True))
                targets = targets.to(device, non_blocking=True)
                with autocast(device, dtype):
                    prediction = stepped(inputs)
                # Outside autocast: in bfloat16 the loss's variances (E[x^2] - E[x]^2) can turn negative.
                loss = loss_fn(prediction.float(), targets)
                losses.append(loss.item())
                if not math.isfinite(losses[-1]):
                    raise InputError(
                        f"training diverged: the loss is {losses[-1]} at step {run['step'] + 1} (learning rate "
                        f"{optimizer.param_groups[0]['lr']:.3g}). {output}/last.safetensors keeps the weights of "
                        f"the last finished epoch. Lower train.lr (now {cfg.train.lr:g}) or train.grad_clip, or "
                        "check the data for extreme values."
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.train.grad_clip:
                    nn.utils.clip_grad_norm_(net.parameters(), cfg.train.grad_clip)
                optimizer.step()
                run["step"] += 1
                # Rank 0's clock for all: every rank stops at the same step, and none waits for another forever.
                elapsed = where.agree(run["seconds"] + time.monotonic() - started)
                last_val = f" · val PSNR {record['val_psnr']:.2f} dB SSIM {record['val_ssim']:.3f}" if "val_psnr" in record else ""
                bar.update(task, completed=elapsed if budget else run["step"],
                           description=f"epoch {run['epoch'] + 1} · loss {losses[-1]:.4f}{last_val}")
                if (budget and elapsed >= budget) or (total_steps and run["step"] >= total_steps):
                    break
                if where.main and time.monotonic() - saved_at >= 60 * cfg.train.checkpoint_minutes:
                    # Within the epoch: weights, optimiser and position, so a crash loses at most this interval.
                    save_checkpoint(output / "last.safetensors", net, info)
                    # `losses` holds every batch of this epoch so far, also those before a resume.
                    _save_state(state_file, net, optimizer, {**run, "seconds": elapsed, "epoch_batches": len(losses),
                                                            "epoch_losses": losses}, info)
                    saved_at = time.monotonic()
            # Each rank's mean loss over its own tiles; then rank 0 validates while the others wait for its clock.
            rank_losses = where.gather(float(np.mean(losses)) if losses else math.nan)
            record = {"epoch": run["epoch"] + 1, "step": run["step"], "loss": float(np.mean(rank_losses))}
            if where.main:
                val_loss, val_psnr, val_ssim = _validate(net, val_set, loss_fn, device, dtype, cfg.data.batch_size)
                scores = {} if smlm is None else smlm_scores(net, smlm, device, dtype, cfg.data.batch_size)
                record |= {"val_loss": val_loss, "val_psnr": val_psnr, "val_ssim": val_ssim,
                           "bicubic_psnr": bicubic_psnr}
            run["epoch"] += 1
            run["seconds"] = where.agree(run["seconds"] + time.monotonic() - started)
            record["seconds"] = round(run["seconds"], 1)
            if where.world_size > 1:
                record["rank_losses"] = rank_losses  # they differ: each rank draws its own tiles
            stop = False
            if where.main:
                record |= scores
                best_key, metric = ("best_psnr", "val_psnr") if smlm is None else ("best_jaccard", "val_criterion")
                epoch_info = info if smlm is None else {**info, "smlm": scores}
                run["history"].append(record)
                save_checkpoint(output / "last.safetensors", net, epoch_info)
                if record[metric] > run.get(best_key, -math.inf):
                    run[best_key] = record[metric]
                    save_checkpoint(output / "best.safetensors", net, epoch_info)
                _save_state(state_file, net, optimizer, run, info)
                if progress:
                    jaccard = "" if smlm is None else (
                        f" · val Jaccard {record['val_jaccard_100']:.3f} (100 nm), {record['val_jaccard_250']:.3f} "
                        f"(250 nm) at threshold {record['threshold']:g}, RMSE {record['val_rmse']:.1f} nm"
                    )
                    bar.console.print(
                        f"epoch {run['epoch']}: loss {record['loss']:.4f} · val PSNR {val_psnr:.2f} dB "
                        f"(bicubic {bicubic_psnr:.2f}) · SSIM {val_ssim:.3f}{jaccard}"
                    )
                stop = on_epoch_end is not None and bool(on_epoch_end(record))
            if where.agree(stop):  # rank 0's callback stops every rank
                break
    return record


def _checkpoint_info(
    cfg: RunConfig, net: nn.Module, degradation: Degradation | None, hr_pixel_size: float | None, world_size: int
) -> dict[str, Any]:
    """What prediction needs to rebuild and apply the model, stored in every checkpoint, and how it was trained:
    ``world_size`` processes, each taking ``run.data.batch_size`` tiles a step."""
    return {
        "arch": getattr(net, "arch", None),
        "receptive_field": receptive_field(net, in_channels=cfg.data.frames),
        "scale": cfg.scale,
        "frames": cfg.data.frames,
        "frame_axis": cfg.data.frame_axis,
        "normalization": PercentileNormalizer(**cfg.normalization).to_dict(),
        "degradation": None if degradation is None else degradation.to_dict(),
        "output_pixel_size": hr_pixel_size,
        "input_pixel_size": None if hr_pixel_size is None else hr_pixel_size * cfg.scale,
        "run": cfg.model_dump(mode="json"),
        "world_size": world_size,
    }


def _learning_rate(peak: float, fraction: float, schedule: str) -> float:
    """Learning rate at `fraction` of the run: one-cycle (30 % warm-up) or cosine decay, by progress."""
    if schedule == "onecycle" and fraction < 0.3:
        return peak * (0.04 + 0.96 * (1 - math.cos(math.pi * fraction / 0.3)) / 2)
    start = 0.3 if schedule == "onecycle" else 0.0
    return peak * (0.001 + 0.999 * (1 + math.cos(math.pi * (fraction - start) / (1 - start))) / 2)


@torch.inference_mode()
def _validate(net: nn.Module, val_set: Any, loss_fn: nn.Module, device: torch.device, dtype: torch.dtype,
              batch_size: int):
    """Mean loss, and mean PSNR (dB) and SSIM of :func:`_tile_scores`, over the fixed validation tiles."""
    net.eval()
    losses, scores = [], []
    for inputs, targets in DataLoader(val_set, batch_size=batch_size):
        with autocast(device, dtype):
            prediction = net(to_channels_last(inputs.to(device))).float().cpu()
        losses.append(loss_fn(prediction, targets).item())
        scores.extend(_tile_scores(prediction.numpy(), targets.numpy()))
    return float(np.mean(losses)), *_means(scores)


def _bicubic_psnr(val_set: Any, scale: int) -> float:
    """Validation PSNR of the bicubic baseline (:func:`~microsr.evaluate.baseline.upscale`) of the centre
    input frame, scored as :func:`_validate` scores the model: the baseline to beat."""
    scores = []
    for inputs, targets in DataLoader(val_set, batch_size=16):
        centre = inputs[:, inputs.shape[1] // 2 : inputs.shape[1] // 2 + 1].numpy()
        scores.extend(_tile_scores(upscale(centre, scale), targets.numpy()))
    return _means(scores)[0]


def _tile_scores(predictions: np.ndarray, targets: np.ndarray) -> list[ImageScore]:
    """:func:`microsr.evaluate.score.score` (its default convention, as every microsr score) of each
    ``(N, C, H, W)`` tile and channel against its target.

    A constant target (e.g. an SMLM frame without emitters) has no structure to score and any
    prediction fits it exactly, so it is left out. A non-finite prediction (a diverging model)
    scores NaN, which the epoch's record then shows, rather than stopping the run here.
    """
    pairs = zip(predictions.reshape(-1, *predictions.shape[-2:]), targets.reshape(-1, *targets.shape[-2:]))
    return [score_image(prediction, target) if np.isfinite(prediction).all()
            else ImageScore(math.nan, math.nan, math.nan, prediction, target)
            for prediction, target in pairs if np.ptp(target) > 0]


def _means(scores: list[ImageScore]) -> tuple[float, float]:
    """Mean PSNR and SSIM of ``scores``; NaN when no tile could be scored."""
    if not scores:
        return math.nan, math.nan
    return float(np.mean([s.psnr for s in scores])), float(np.mean([s.ssim for s in scores]))


def _save_state(path: Path, net: nn.Module, optimizer: torch.optim.Optimizer, run: dict[str, Any],
                info: dict[str, Any]) -> None:
    """Weights, optimiser state and counters in one file written atomically, so a resumed run never pairs
    weights with another step's optimiser state; tensors and plain values only, so ``weights_only`` loading works.

    Written last, after the checkpoints: it is what ``--resume`` continues from.
    """
    counters = {k: v for k, v in run.items() if k != "history"}
    weights = {k: v.detach().to("cpu") for k, v in net.state_dict().items()}
    with atomic_output(path, overwrite=True) as tmp:
        torch.save({"model": weights, "optimizer": optimizer.state_dict(), "run": counters,
                    "history": json.dumps(run["history"])}, tmp)
    for name, document in (("history.json", run["history"]), ("config.json", info)):
        with atomic_output(path.with_name(name), overwrite=True) as tmp:
            tmp.write_text(json.dumps(document, indent=2) + "\n")


def _load_state(path: Path, net: nn.Module, optimizer: torch.optim.Optimizer, output: Path) -> dict[str, Any]:
    """Restore weights and optimiser from ``train_state.pt``; return the run's counters and history."""
    try:
        with warnings.catch_warnings():  # torch's advice on pickle protocols is no use to the user
            warnings.simplefilter("ignore")
            saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InputError(
            f"{path}: refused to resume from this file: it holds Python objects besides tensors, which microsr "
            "never unpickles (they can run code), so it was not written by microsr's training. Start a new run "
            "in another folder."
        ) from exc
    except Exception as exc:  # truncated or not a torch file at all
        raise InputError(f"{path}: cannot resume from this file ({type(exc).__name__}); it is damaged. "
                         "Start a new run in another folder.") from exc
    try:
        weights = saved["model"] if "model" in saved else load_checkpoint(output / "last.safetensors")[0]
        load_state_into(net, weights, path)
        optimizer.load_state_dict(saved["optimizer"])
        return {**saved["run"], "history": json.loads(saved["history"])}
    except InputError:
        raise
    except Exception as exc:  # missing keys, another model's optimiser state
        raise InputError(
            f"{path}: cannot resume from this file ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}); "
            "it was not written by this run's training. Start a new run in another folder."
        ) from exc


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )
