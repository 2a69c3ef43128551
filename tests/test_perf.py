"""`microsr bench`: measures, reports consistent figures, and writes JSON."""

import json
import statistics
import time

import numpy as np
import pytest

from microsr.cli import main
from microsr.models import create_model
from microsr.predict.engine import Predictor


def _predict_mps() -> float:
    """MP/s of a 64² -> 256² prediction by resunet_small in fp32 (random weights), timed here: median of 3."""
    predictor = Predictor(create_model("resunet_small", scale=4), scale=4, precision="fp32", progress=False)
    image = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    predictor.predict(image)  # warm-up, as bench's
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        predictor.predict(image)
        seconds.append(time.perf_counter() - start)
    return 256**2 / statistics.median(seconds) / 1e6


def test_bench_reports_consistent_throughput_and_fraction_of_peak(capsys, tmp_path):
    output = tmp_path / "bench.json"
    before = _predict_mps()
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--model", "resunet_small", "--size", "64", "--precision", "fp32", "--json", str(output)])
    after = _predict_mps()
    captured = capsys.readouterr()
    assert exit_info.value.code == 0, captured.err
    result = json.loads(output.read_text())
    assert result["precision"] == "float32" and result["model"] == "resunet_small"
    assert result["conv_peak_fp32"] > 0 and result["conv_peak_bf16"] > 0
    # Measured behaviour, not bench's own arithmetic: the same prediction (64² LR, x4, fp32, random weights),
    # timed here before and after the bench, brackets bench's MP/s within a factor of 5 (the machine may be
    # shared, so its speed drifts; a wrong pixel count, 16x at x4, would still fail).
    assert min(before, after) / 5 < result["predict_mps"] < max(before, after) * 5
    # No measure can exceed the convolution peak by much (the peak is itself a noisy median).
    assert 0 < result["predict_fraction_of_peak"] < 1.5
    assert 0 < result["network_fraction_of_peak"] < 1.5
    assert 1 < result["tiling_work"] < ((64 + 2 * 26) / 64) ** 2  # overlap: the receptive field, 26
    assert "MP/s" in captured.out and "TFLOP/s" in captured.out
    # Prediction in both precisions auto chooses between, next to auto's choice and how it compares.
    by_precision = result["predict_mps_by_precision"]
    assert set(by_precision) == {"fp32", "bf16"} and by_precision["fp32"] == result["predict_mps"]
    assert result["auto_precision"] in by_precision and result["auto_reason"]
    assert result["auto_vs_fastest"] == pytest.approx(by_precision[result["auto_precision"]] / max(by_precision.values()))
    assert "auto chose" in captured.out and "prediction (bf16)" in captured.out and "per probe" in captured.out


def test_system_shows_the_precision_auto_chose_and_why(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MICROSR_CACHE", str(tmp_path))
    for expected in ("now", "earlier (cached)"):
        with pytest.raises(SystemExit) as exit_info:
            main(["system", "--model", "resunet_small"])
        captured = capsys.readouterr()
        assert exit_info.value.code == 0, captured.err
        assert "precision auto for resunet_small x4" in captured.out and "per probe" in captured.out
        assert expected in captured.out and str(tmp_path) in captured.out.replace("\n", "")
    assert (tmp_path / "precision.json").is_file()


def test_bench_refuses_an_unknown_precision(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--precision", "fp8"])
    assert exit_info.value.code == 2
    assert "fp8" in capsys.readouterr().err
