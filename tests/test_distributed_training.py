"""Training on several processes: real ``torchrun`` runs of 2 CPU processes (gloo), one of them killed.

The runs are ``python -m torch.distributed.run --standalone --nproc-per-node 2 -m microsr train``,
as a user types them: they complete, the loss falls, the checkpoint loads and predicts, the
ranks train on different tiles, and after a rank is killed mid-run, ``--resume`` continues the
checkpoint rank 0 wrote, on 2 processes or on 1.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from microsr.data.datasets import DegradedPairs, epoch_loader
from microsr.degrade import preset
from microsr.io import Image, write_image
from microsr.predict.restorer import load_model
from microsr.samples import filaments
import microsr

# One thread per process, so the 2 ranks share 2 cores; no rank variables of an enclosing torchrun.
ENV = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")} | {
    "OMP_NUM_THREADS": "1"}


def torchrun(*argv) -> subprocess.Popen:
    """``torchrun --standalone --nproc-per-node 2 -m microsr ARGV`` (--standalone picks a free port)."""
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         "-m", "microsr", *map(str, argv)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )


def run_config(folder: Path, samples_per_epoch: int, **train) -> Path:
    """A tiny x2 run (resunet_small, 64 px tiles, 2 tiles per step and process) written as YAML."""
    hr = folder / "hr.tif"
    write_image(hr, Image(filaments((128, 128), seed=1), "YX", pixel_size=40.0))
    config = folder / "run.yaml"
    config.write_text(json.dumps({
        "data": {"hr": [str(hr)], "tile": 64, "batch_size": 2, "samples_per_epoch": samples_per_epoch,
                 "num_workers": 0},
        "scale": 2, "loss": "l2", "model": {"name": "resunet_small"},
        "train": {"precision": "fp32", "lr": 2e-3, **train},
    }))
    return config


def test_each_rank_loads_its_own_share_of_the_epoch():
    image = Image(filaments((128, 128), seed=1), "YX", pixel_size=40.0)
    pairs = DegradedPairs(image, preset("poisson", scale=2), tile=64, samples_per_epoch=10)
    one = epoch_loader(pairs, batch_size=2, num_workers=0)
    ranks = [epoch_loader(pairs, batch_size=2, num_workers=0, rank=r, world_size=2) for r in (0, 1)]
    one.sampler.epoch = ranks[0].sampler.epoch = ranks[1].sampler.epoch = 3
    indices = [[i for _, i in loader.sampler] for loader in ranks]
    # Disjoint, together the single process's epoch, each rank as many batches.
    assert indices == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]] and [i for _, i in one.sampler] == list(range(10))
    assert len(ranks[0]) == len(ranks[1]) == 2
    # The same tiles and noise as one process draws for those indices: a rank's share is seeded by its indices.
    single = torch.cat([inputs for inputs, _ in one])
    for rank, loader in enumerate(ranks):
        shared = torch.cat([inputs for inputs, _ in loader])
        assert torch.equal(shared, single[rank : rank + 8 : 2])
    assert not torch.equal(single[0], single[1])


@pytest.mark.slow
def test_two_processes_train_survive_a_killed_rank_resume_and_write_a_model(tmp_path):
    # 160 samples per epoch: 80 per rank, 40 steps of 2 tiles each; a resumable checkpoint every 0.3 s.
    config = run_config(tmp_path, samples_per_epoch=160, steps=1000, checkpoint_minutes=0.005)
    output, state = tmp_path / "model", tmp_path / "model" / "train_state.pt"
    started = time.monotonic()
    process = torchrun("train", config, "-o", output)
    while not state.exists():  # rank 0's first checkpoint, within the first epoch
        assert process.poll() is None, process.communicate()
        assert time.monotonic() - started < 120, "no checkpoint written"
        time.sleep(0.02)
    os.kill(rank_process(process.pid, rank=1), signal.SIGKILL)
    process.communicate(timeout=120)
    killed = time.monotonic() - started
    assert process.returncode != 0  # torchrun tore the run down
    saved = torch.load(state, weights_only=True)
    assert saved["run"]["epoch"] == 0 and 0 < saved["run"]["step"] < 40, saved["run"]
    assert load_model(output).predict(np.ones((32, 32), np.float32)).shape == (64, 64)

    # Resumed on 2 processes with a time budget: rank 0's clock stops both at the same step, so none hangs.
    process = torchrun("train", config, "-o", output, "--resume", "--minutes", 0.15)
    out, err = process.communicate(timeout=300)
    seconds = time.monotonic() - started
    assert process.returncode == 0, err
    assert "warning:" not in err, err  # e.g. DDP's about 1x1 kernels in channels_last: noise to a user
    history = json.loads((output / "history.json").read_text())
    steps = history[-1]["step"]
    assert out.count(f"epoch {len(history)}:") == out.count(f"after {len(history)} epochs, {steps} steps") == 1, out
    assert [(r["epoch"], r["step"]) for r in history[:-1]] == [(e, 40 * e) for e in range(1, len(history))]
    assert history[-1]["seconds"] >= 9 and steps > 40, history
    # Both ranks hold the same weights at every step, so on the same tiles their losses would be equal, bit for bit.
    for record in history:
        assert record["rank_losses"][0] != record["rank_losses"][1], record
    # The loss falls on the held-out tiles: the untrained model (a residual over bicubic) scores as bicubic
    # (31.11-31.13 dB against 31.11 after 2 steps); measured 32.52 and 32.61 dB after 81 and 80 steps.
    summary = [(r["step"], r["val_loss"], r["val_psnr"], r["bicubic_psnr"]) for r in history], killed, seconds
    assert history[-1]["val_psnr"] >= history[-1]["bicubic_psnr"] + 0.5, summary
    assert json.loads((output / "config.json").read_text())["world_size"] == 2
    restored = load_model(output).predict(filaments((64, 64), seed=5))
    assert restored.shape == (128, 128) and np.isfinite(restored).all()

    # What rank 0 wrote also continues on one process.
    record = microsr.train(json.loads(config.read_text()) | {"train": {"steps": steps + 4, "precision": "fp32"}},
                           output, resume=True, progress=False)
    assert (record["epoch"], record["step"]) == (len(history) + 1, steps + 4) and "rank_losses" not in record
    assert json.loads((output / "config.json").read_text())["world_size"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr.tif", "model", "run.yaml"]  # no lock left


def rank_process(torchrun_pid: int, rank: int) -> int:
    """The process ID of the worker of ``rank`` started by the torchrun process ``torchrun_pid``."""
    for child in psutil.Process(torchrun_pid).children():
        if child.environ().get("RANK") == str(rank):
            return child.pid
    raise LookupError(f"no worker of rank {rank} under process {torchrun_pid}")
