"""Crashes and concurrent writers, with real processes killed at random moments.

Prediction killed (SIGKILL: no clean-up runs) while it writes rows, progress records or
the final file, then run again, must give output identical to an uninterrupted run.
Training killed before its first epoch ends and at random moments, including inside its
checkpoint writes, must leave a loadable model that resumes. A second writer to an output
being written must be refused with a line naming the first one's process.
"""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from microsr.cli import main
from microsr.io import Image, read_image, write_image
from microsr.predict.restorer import load_model
from microsr.samples import filaments
import microsr

# Seeded: the kill moments are random but the same in every run of the suite.
RNG = np.random.default_rng(18)
PREDICT = ["--tile", "64", "--precision", "fp32", "--threads", "1"]


def microsr_process(*argv) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "microsr", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(condition, process: subprocess.Popen, timeout: float = 300.0) -> bool:
    """Wait until `condition()`; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return True


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate()


def rows_done(partial: Path) -> int:
    try:
        done = json.loads((partial / "progress.json").read_text())["done"]
    except (OSError, ValueError):
        return -1
    return done[0] * 10**6 + done[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A x2 model (2 training steps), a 384² input and its uninterrupted prediction."""
    folder = tmp_path_factory.mktemp("crash")
    hr = folder / "hr.tif"
    write_image(hr, Image(filaments((128, 128), seed=1), "YX", pixel_size=40.0))
    cfg = {"data": {"hr": [str(hr)], "tile": 64, "batch_size": 2, "samples_per_epoch": 4, "num_workers": 0},
           "scale": 2, "model": {"name": "resunet_small"}, "train": {"steps": 2}}
    microsr.train(cfg, folder / "model", progress=False)
    image = folder / "big image é.tif"
    write_image(image, Image(filaments((384, 384), seed=3), "YX", pixel_size=80.0))
    reference = load_model(folder / "model").predict_file(image, folder / "reference.tif", tile=64,
                                                          precision="fp32")
    return folder, folder / "model", image, read_image(reference).data.compute()


def test_prediction_killed_at_random_moments_resumes_to_identical_output(setup, tmp_path):
    _, model, image, reference = setup
    output = tmp_path / "out.tif"
    partial = tmp_path / "out.tif.partial"
    # Rows finish every few tens of ms; each run is killed at a random moment after it has made progress.
    for _ in range(2):
        process = microsr_process("predict", model, image, "-o", output, *PREDICT)
        start = rows_done(partial)
        if wait_for(lambda: rows_done(partial) > start, process):
            time.sleep(float(RNG.uniform(0, 0.5)))  # anywhere: writing rows, the progress record, or the final file
        kill(process)
        if output.exists():  # it got to the end before the kill: the output is whole
            np.testing.assert_array_equal(read_image(output).data.compute(), reference)
            return
        # SIGKILL left its lock file behind; the operating system has released the lock itself.
        assert (tmp_path / "out.tif.lock").read_text().split()[0] == str(process.pid)
    # The usual case: a plain rerun continues the partial output, saying so.
    process = microsr_process("predict", model, image, "-o", output, *PREDICT)
    _, err = process.communicate()
    assert process.returncode == 0, err
    assert "continuing the interrupted run" in err
    np.testing.assert_array_equal(read_image(output).data.compute(), reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]  # no partial output, no lock left


def test_a_second_writer_is_refused_and_the_first_finishes(setup, tmp_path, capsys):
    _, model, image, reference = setup
    output = tmp_path / "out.tif"
    first = microsr_process("predict", model, image, "-o", output, *PREDICT)
    assert wait_for(lambda: (tmp_path / "out.tif.lock").is_file(), first), first.communicate()
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(model), str(image), "-o", str(output), *PREDICT])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert f"being written by process {first.pid}" in err and len(err.strip().splitlines()) == 1
    # Even with --overwrite, which would otherwise discard the first one's partial output.
    with pytest.raises(SystemExit):
        main(["predict", str(model), str(image), "-o", str(output), "--overwrite", *PREDICT])
    assert f"process {first.pid}" in capsys.readouterr().err
    _, err = first.communicate()
    assert first.returncode == 0, err
    np.testing.assert_array_equal(read_image(output).data.compute(), reference)


def _train_argv(folder: Path, hr: Path, output: Path, steps: int) -> list:
    # 400 samples of batch 2 per epoch: the first epoch takes far longer than the test waits,
    # and a checkpoint is taken every 0.3 s within it.
    run = folder / "run.yaml"
    run.write_text(
        f"data: {{hr: ['{hr}'], tile: 64, batch_size: 2, samples_per_epoch: 400, num_workers: 0}}\n"
        f"scale: 2\nmodel: {{name: resunet_small}}\ntrain: {{checkpoint_minutes: 0.005, precision: fp32}}\n"
    )
    return ["train", run, "--steps", steps, "--threads", "1", "-o", output]


def test_training_killed_before_its_first_epoch_and_in_checkpoint_writes_resumes(tmp_path, capsys):
    hr = tmp_path / "hr.tif"
    write_image(hr, Image(filaments((128, 128), seed=1), "YX", pixel_size=40.0))
    output = tmp_path / "model"
    # 200 steps, the whole first epoch: however fast the machine, the kills land inside it.
    argv = _train_argv(tmp_path, hr, output, 200)
    steps_seen = []
    for attempt in range(2):
        process = microsr_process(*argv, *(["--resume"] if attempt else []))
        state = output / "train_state.pt"
        before = state.stat().st_mtime_ns if state.exists() else 0
        checkpointed = wait_for(lambda: state.exists() and state.stat().st_mtime_ns != before, process)
        assert checkpointed, process.communicate()
        if attempt == 0:  # meanwhile, a second training into the same folder is refused
            with pytest.raises(SystemExit) as exit_info:
                main([str(a) for a in argv])
            assert exit_info.value.code == 2
            assert f"being written by process {process.pid}" in capsys.readouterr().err
        # Checkpoints are written every 0.3 s: a random moment often falls inside one.
        time.sleep(float(RNG.uniform(0, 0.6)))
        kill(process)
        # Whatever the moment, the folder holds a loadable model and a state to resume from.
        restorer = load_model(output)
        assert restorer.predict(np.ones((32, 32), np.float32)).shape == (64, 64)
        saved = torch.load(state, weights_only=True)
        assert saved["run"]["epoch"] == 0  # still in the first epoch
        steps_seen.append(saved["run"]["step"])
    assert steps_seen == sorted(steps_seen) and steps_seen[-1] > 0
    process = microsr_process(*argv, "--resume")
    out, err = process.communicate()
    assert process.returncode == 0, err
    history = json.loads((output / "history.json").read_text())
    assert history[-1]["step"] == 200
    assert load_model(output).predict(np.ones((32, 32), np.float32)).shape == (64, 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr.tif", "model", "run.yaml"]  # no lock left


def test_failed_training_leaves_no_folder(tmp_path, capsys):
    hr = tmp_path / "hr.tif"
    write_image(hr, Image(np.full((128, 128), np.nan, np.float32), "YX", pixel_size=40.0))
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--hr", str(hr), "--tile", "64", "--steps", "2", "--workers", "0", "-o",
              str(tmp_path / "model")])
    assert exit_info.value.code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr.tif"]
