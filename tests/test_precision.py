"""Precision: auto picks bfloat16 only where the CPU has it, and bfloat16 costs < 0.1 dB."""

from pathlib import Path

import numpy as np
import pytest
import torch

from microsr.degrade import preset
from microsr.errors import InputError
from microsr.io import read_image
from microsr.metrics import psnr
from microsr.precision import resolve_precision
from microsr.restorer import load_model


def _cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo to read the CPU's flags from")
    return {flag for line in cpuinfo.read_text().splitlines() if line.startswith("flags") for flag in line.split()}


def test_auto_on_cpu_follows_the_cpu_flags():
    native = bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())
    assert resolve_precision("auto", "cpu") == (torch.bfloat16 if native else torch.float32)


@pytest.mark.parametrize(("name", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_explicit_precisions(name, dtype):
    assert resolve_precision(name, "cpu") == dtype


def test_unknown_precision_is_refused():
    with pytest.raises(InputError, match="choose one of: auto, fp32, bf16, fp16"):
        resolve_precision("half", "cpu")


def test_bf16_prediction_is_within_a_tenth_of_a_db_of_fp32(trained, hr_file):
    restorer = load_model(trained[0])
    hr = read_image(hr_file).data.compute().astype(np.float32)
    lr = preset("poisson", scale=4)(hr / hr.max(), seed=7) * hr.max()
    scores = {}
    for name in ("fp32", "bf16"):
        prediction = restorer.predict(lr, precision=name, tile=64)
        assert prediction.dtype == np.float32 and np.isfinite(prediction).all()
        scores[name] = psnr(hr, prediction, data_range=float(np.ptp(hr)))
    assert abs(scores["bf16"] - scores["fp32"]) < 0.1, scores
