"""Prediction on a real Dask cluster (a LocalCluster of 2 worker processes): the result is the
single-process result, a worker killed mid-run loses nothing, and a run stopped on the client
resumes without recomputing the blocks it finished."""

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

pytest.importorskip("distributed", reason="the optional extra microsr[distributed] is not installed")


from microsr.checkpoint import save_checkpoint  # noqa: E402
from microsr.cli import main  # noqa: E402
from microsr.data.normalize import PercentileNormalizer  # noqa: E402
from microsr.io import Image, write_image  # noqa: E402
from microsr.models import create_model, receptive_field  # noqa: E402
from microsr.predict.cluster import cluster, plan_blocks  # noqa: E402
from microsr.predict.restorer import load_model  # noqa: E402

# x2 with 128-pixel tiles: 256-pixel tile outputs, so 512-pixel blocks hold 2 x 2 tiles and whole chunks.
OPTIONS = {"tile": 128, "precision": "fp32", "block": 512}
SHAPE = (3, 260, 520)  # T, Y, X: output 3 x 520 x 1040 in 3 x 2 x 3 = 18 blocks
BLOCKS = 18


@pytest.fixture(scope="module")
def client():
    with cluster(workers=2) as client:
        yield client


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A small x2 model with random weights (everywhere: a new model's zero head would hide the network),
    a 4-frame time-lapse as OME-Zarr, and its prediction by one process."""
    root = tmp_path_factory.mktemp("distributed")
    torch.manual_seed(3)
    model = create_model(name="resunet", in_channels=1, scale=2, widths=[8, 16])
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    (root / "model").mkdir()
    save_checkpoint(root / "model" / "best.safetensors", model, {
        "arch": model.arch, "scale": 2, "frames": 1, "frame_axis": "T", "receptive_field": receptive_field(model),
        "normalization": PercentileNormalizer().to_dict(), "input_pixel_size": 40.0, "output_pixel_size": 20.0})
    data = np.random.default_rng(4).gamma(2.0, 50.0, SHAPE).astype(np.float32)
    write_image(root / "in.ome.zarr", Image(data, "TYX", pixel_size=40.0))
    restorer = load_model(root / "model")
    single = restorer.predict_file(root / "in.ome.zarr", root / "single.ome.zarr", tile=128, precision="fp32")
    return root, restorer, single


def _levels(path: Path) -> list[np.ndarray]:
    group = zarr.open_group(path, mode="r")
    return [group[d["path"]][:] for d in group.attrs["ome"]["multiscales"][0]["datasets"]]


def _assert_same(path: Path, reference: Path) -> None:
    """Every pyramid level within 1e-6 of the single-process output's range, and the same OME metadata."""
    got, want = _levels(path), _levels(reference)
    assert [a.shape for a in got] == [a.shape for a in want]
    span = float(want[0].max() - want[0].min())
    for k, (a, b) in enumerate(zip(got, want)):
        assert np.abs(a - b).max() <= 1e-6 * span, f"level {k}"
    meta = [zarr.open_group(p, mode="r").attrs["ome"]["multiscales"][0] for p in (path, reference)]
    assert [{k: v for k, v in m.items() if k != "name"} for m in meta][0] == \
        [{k: v for k, v in m.items() if k != "name"} for m in meta][1]


def test_blocks_hold_whole_chunks_and_tiles():
    shape = (SHAPE[0], SHAPE[1] * 2, SHAPE[2] * 2)
    blocks = plan_blocks(shape, (1, 512, 512), (256, 256), 512)
    assert len(blocks) == BLOCKS
    covered = np.zeros(shape, np.int8)
    for b in blocks:
        covered[b.region] += 1
        for s, step in zip(b.region[-2:], (512, 512)):
            assert s.start % step == 0
    assert (covered == 1).all()  # every output pixel in exactly one block


def test_cluster_result_is_the_single_process_result(case, client):
    root, restorer, single = case
    seen = []
    written = restorer.predict_file(root / "in.ome.zarr", root / "cluster.ome.zarr", client=client,
                                    on_block=lambda done, total: seen.append((done, total)), **OPTIONS)
    _assert_same(written, single)
    assert seen[-1] == (BLOCKS, BLOCKS) and len(seen) == BLOCKS
    assert not (root / "cluster.ome.zarr.partial").exists()


def test_a_worker_killed_mid_run_loses_nothing(case, client):
    root, restorer, single = case
    pids = client.run(os.getpid)
    killed = []

    def kill_one(done, total):
        if done == 4 and not killed:
            os.kill(next(iter(pids.values())), signal.SIGKILL)  # its nanny starts a new one
            killed.append(done)

    written = restorer.predict_file(root / "in.ome.zarr", root / "killed.ome.zarr", client=client,
                                    on_block=kill_one, **OPTIONS)
    assert killed
    _assert_same(written, single)
    client.wait_for_workers(2, timeout=60)


def test_a_stopped_run_resumes_without_recomputing(case, client):
    root, restorer, single = case

    class Stop(Exception):
        pass

    def stop(done, total):
        if done == 6:
            raise Stop

    output = root / "resumed.ome.zarr"
    with pytest.raises(Stop):
        restorer.predict_file(root / "in.ome.zarr", output, client=client, on_block=stop, **OPTIONS)
    partial = root / "resumed.ome.zarr.partial"
    # Blocks running when the client stopped still finish, and are recorded: wait for them.
    while sum(client.run(lambda dask_worker: dask_worker.state.executing_count).values()):
        time.sleep(0.1)
    recorded = {int(p.name) for p in (partial / "blocks").iterdir()}
    assert len(recorded) >= 6
    assert json.loads((partial / "progress.json").read_text())["done"] == "blocks"
    seen = []
    written = restorer.predict_file(root / "in.ome.zarr", output, client=client, resume=True,
                                    on_block=lambda done, total: seen.append(done), **OPTIONS)
    # Only the blocks not recorded were computed: the count starts after them.
    assert seen[0] == len(recorded) + 1 and seen[-1] == BLOCKS and len(seen) == BLOCKS - len(recorded)
    _assert_same(written, single)


@pytest.mark.parametrize("argv, message", [
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "give one of them"),
    (["--workers", "2", "-o", "OUT.tif"], "written to .ome.zarr"),
])
def test_cli_refuses_bad_cluster_options_before_any_work(case, capsys, argv, message):
    root, _, _ = case
    output = root / "cli.ome.zarr"
    args = ["predict", str(root / "model"), str(root / "in.ome.zarr"), "-o", str(output), *argv]
    args = [str(root / "cli.tif") if a == "OUT.tif" else a for a in args]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not output.exists() and not (root / "cli.tif").exists()


def test_cli_predicts_on_a_running_cluster(case, client, capsys):
    root, _, single = case
    output = root / "cli_workers.ome.zarr"
    with pytest.raises(SystemExit) as exit_:
        main(["predict", str(root / "model"), str(root / "in.ome.zarr"), "-o", str(output),
              "--scheduler", client.scheduler.address, "--tile", "128", "--precision", "fp32", "--block", "512"])
    assert exit_.value.code == 0
    assert "Dask dashboard: http" in capsys.readouterr().out
    _assert_same(output, single)


def test_a_local_cluster_leaves_this_process_environment_as_it_was():
    # Dask's nannies set OMP_NUM_THREADS=1 (and more) here for their workers; later children must not inherit it.
    before = dict(os.environ)
    with cluster(workers=1) as client:
        assert list(client.run(lambda: os.environ.get("OMP_NUM_THREADS")).values()) == ["1"]  # the worker's own
    assert dict(os.environ) == before
