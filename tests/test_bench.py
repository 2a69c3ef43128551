"""`microsr bench`: measures, reports consistent figures, and writes JSON."""

import json

import pytest

from microsr.cli import main


def test_bench_reports_consistent_throughput_and_fraction_of_peak(capsys, tmp_path):
    output = tmp_path / "bench.json"
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--model", "resunet_small", "--size", "64", "--precision", "fp32", "--json", str(output)])
    captured = capsys.readouterr()
    assert exit_info.value.code == 0, captured.err
    result = json.loads(output.read_text())
    assert result["precision"] == "float32" and result["model"] == "resunet_small"
    assert result["conv_peak_fp32"] > 0 and result["conv_peak_bf16"] > 0
    # The fraction of peak is throughput x FLOPs per pixel over the fp32 peak.
    expected = result["predict_mps"] * 1e6 * result["flops_per_output_pixel"] / (result["conv_peak_fp32"] * 1e12)
    assert result["predict_fraction_of_peak"] == pytest.approx(expected, rel=1e-6)
    assert 0 < result["predict_fraction_of_peak"] < 1.5
    # The network alone on one tile (at --size 64 the whole image is one tile plus its context) computes
    # tiling_work times the FLOPs of the pixels it yields: the context adds work, but less than its area,
    # because resunet_small skips the output of the context (nothing is cross-faded with the default overlap).
    assert result["network_fraction_of_peak"] == pytest.approx(
        result["network_mps"] * 1e6 * result["flops_per_output_pixel"] * result["tiling_work"]
        / (result["conv_peak_fp32"] * 1e12), rel=1e-6)
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
