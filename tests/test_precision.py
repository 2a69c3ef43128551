"""Precision: auto picks the fastest by measurement and caches it, and bfloat16 costs < 0.1 dB."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from microsr.degrade import preset
from microsr.errors import InputError
from microsr.evaluate.metrics import psnr
from microsr.io import read_image
from microsr.predict.restorer import load_model
from microsr.runtime.precision import cache_dir, choose_precision, measure_precision, resolve_precision


def test_choice_is_the_fastest_unless_float32_is_within_the_margin():
    assert choose_precision({"fp32": 0.10, "bf16": 0.05})[0] == "bf16"  # an AMX Xeon: bf16 2x faster
    assert choose_precision({"fp32": 0.10, "bf16": 0.17})[0] == "fp32"  # a Xeon with AVX-512 BF16, no AMX
    assert choose_precision({"fp32": 0.10, "bf16": 0.66})[0] == "fp32"  # an AMD EPYC without bf16 units
    assert choose_precision({"fp32": 0.10, "bf16": 0.098})[0] == "fp32"  # 2 % faster: not worth the accuracy
    assert choose_precision({"fp32": 0.10, "fp16": 0.09})[0] == "fp16"  # a GPU without bf16
    chosen, reason = choose_precision({"fp32": 0.10, "bf16": 0.17})
    assert "fp32" in reason and "bf16 0.17 s" in reason


def test_auto_is_never_more_than_5_percent_slower_than_the_fastest():
    rng = np.random.default_rng(0)
    for fp32, bf16 in rng.uniform(0.01, 1.0, (1000, 2)):
        seconds = {"fp32": fp32, "bf16": bf16}
        assert seconds[choose_precision(seconds)[0]] <= 1.05 * min(fp32, bf16)


def test_auto_is_measured_once_then_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("MICROSR_CACHE", str(tmp_path / "cache"))
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 4, 3))
    first = measure_precision(model, "cpu")
    assert not first.cached and set(first.seconds) == {"fp32", "bf16"} and min(first.seconds.values()) > 0
    assert first.precision == choose_precision(first.seconds)[0]
    assert resolve_precision("auto", "cpu", model) == first.dtype
    saved = json.loads((tmp_path / "cache" / "precision.json").read_text())["entries"]
    assert list(saved) == [first.key] and saved[first.key]["precision"] == first.precision
    assert [path.name for path in (tmp_path / "cache").iterdir()] == ["precision.json"]  # no temporary left
    again = measure_precision(model, "cpu")
    assert again.cached and (again.precision, again.seconds, again.key) == (first.precision, first.seconds, first.key)
    # Another model's layers are another entry.
    other = measure_precision(torch.nn.Conv2d(1, 8, 3), "cpu")
    assert other.key != first.key and len(json.loads((tmp_path / "cache" / "precision.json").read_text())["entries"]) == 2


def test_a_corrupt_cache_is_measured_again_and_rewritten(tmp_path, monkeypatch):
    monkeypatch.setenv("MICROSR_CACHE", str(tmp_path))
    (tmp_path / "precision.json").write_text('{"version": 1, "entries": {"cpu|')  # cut off mid-write
    model = torch.nn.Conv2d(1, 8, 3)
    choice = measure_precision(model, "cpu")
    assert not choice.cached
    assert json.loads((tmp_path / "precision.json").read_text())["entries"][choice.key]["precision"] == choice.precision
    # An entry with a precision that is not one is measured again too.
    monkeypatch.setenv("MICROSR_CACHE", str(tmp_path / "other"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "precision.json").write_text(json.dumps(
        {"version": 1, "entries": {choice.key: {"precision": "fp64", "seconds": {}, "reason": "?"}}}))
    assert not measure_precision(model, "cpu").cached


class Counting(torch.nn.Conv2d):
    calls = 0

    def forward(self, x):
        self.calls += 1
        return super().forward(x)


def test_measuring_times_a_copy_and_leaves_the_model_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setenv("MICROSR_CACHE", str(tmp_path))
    model = Counting(1, 4, 3).train()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    seen = []
    model.register_forward_hook(lambda *_: seen.append(1))  # e.g. a progress bar counting tiles
    measure_precision(model, "cpu")
    assert model.calls == 0 and model.training
    assert seen == [], "the probe ran the caller's hook"
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())


def test_the_cache_defaults_to_the_users_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("MICROSR_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "microsr"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "microsr"


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
