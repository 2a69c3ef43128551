"""SMLM networks, the blurred-MSE losses, and training on simulated frames."""

import json
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from microsr.checkpoint import load_checkpoint
from microsr.config import RunConfig, load_config
from microsr.errors import InputError
from microsr.models import create_model, list_models
from microsr.models.losses import BlurredMSELoss, get_loss
from microsr.training import train

SMLM_MODELS = ("smlm_unet", "deepstorm", "dsir", "dsir_compat")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models train ~10x faster on one thread than on two when other processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
PUBLISHED_DSIR_KEYS = {  # the layout of DSIR's autoencoder_model.pt
    f"{layer}.{p}" for layer in ("conv1", "conv2", "conv3", "conv4", "convt1", "convt2", "convt3")
    for p in ("weight", "bias")
} | {f"{bn}.{p}" for bn in ("bn1", "bn2", "bn4")
     for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize("name", SMLM_MODELS)
def test_models_map_a_frame_to_the_x8_grid(name):
    assert name in list_models()
    model = create_model(name, scale=8).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 13, 7)).shape == (2, 1, 104, 56)


def test_dsir_compat_has_the_published_state_dict_layout():
    assert set(create_model("dsir_compat").state_dict()) == PUBLISHED_DSIR_KEYS
    norms = [m for m in create_model("dsir").modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 7


@pytest.mark.parametrize(("name", "agrees"), [("dsir", True), ("dsir_compat", False)])
def test_one_batchnorm_per_layer_makes_eval_mode_match_training(name, agrees):
    """Running statistics converge to each layer's own batch statistics only when no BatchNorm is shared."""
    torch.manual_seed(0)
    model = create_model(name, scale=8)
    for norm in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        norm.momentum = None  # a plain average of the batches seen
        with torch.no_grad():  # a non-trivial affine map, as after training
            norm.weight.uniform_(0.5, 2.0)
            norm.bias.uniform_(-0.2, 0.5)
    frames = torch.rand(4, 1, 16, 16)
    with torch.no_grad():
        for _ in range(3):
            trained = model.train()(frames)
        evaluated = model.eval()(frames)
    difference = float((evaluated - trained).abs().mean() / trained.abs().mean())
    assert (difference < 0.01) == agrees, difference


def test_smlm_unet_is_much_cheaper_than_the_published_models():
    from microsr.models import model_cost

    flops = {name: model_cost(create_model(name, scale=8), tile=32).flops_per_output_pixel for name in SMLM_MODELS}
    assert flops["smlm_unet"] * 50 < flops["deepstorm"]
    assert flops["smlm_unet"] < flops["dsir"]


# --------------------------------------------------------------------------- losses


def _reference_loss(prediction, target, sigma, sparsity, scale):
    """The loss computed with scipy's Gaussian filter (zero padding, truncated at 3 sigma)."""
    difference = scale * (prediction - target)
    blurred = ndimage.gaussian_filter(difference, (0, 0, sigma, sigma), mode="constant", truncate=3.0)
    return np.mean(blurred**2) + sparsity * scale * (np.mean(np.abs(prediction)) - np.mean(np.abs(target)))


@pytest.mark.parametrize(("sigma", "sparsity", "scale"), [(1.0, 1.0, 100.0), (2.0, 0.0, 10.0), (1.5, 0.3, 1.0)])
def test_blurred_mse_matches_a_scipy_reference(sigma, sparsity, scale):
    rng = np.random.default_rng(0)
    prediction = rng.normal(0, 0.1, (2, 1, 24, 20)).astype(np.float32)
    target = (rng.random((2, 1, 24, 20)) > 0.97).astype(np.float32)
    loss = BlurredMSELoss(sigma=sigma, sparsity=sparsity, scale=scale)
    value = loss(torch.from_numpy(prediction), torch.from_numpy(target)).item()
    assert value == pytest.approx(_reference_loss(prediction, target, sigma, sparsity, scale), rel=1e-4)


def test_blurred_mse_forgives_small_misplacements_and_l1_penalises_spread():
    target = torch.zeros(1, 1, 32, 32)
    target[..., 16, 16] = 1.0
    near, far = torch.roll(target, 1, dims=-1), torch.roll(target, 5, dims=-1)
    blurred_mse = get_loss("blurred_mse")  # DSIR: no sparsity term
    assert blurred_mse(target, target).item() == 0.0
    assert blurred_mse(near, target) < 0.5 * blurred_mse(far, target)
    # The same unit of mass spread over 3 x 3 pixels costs no extra L1 but some blurred MSE;
    # extra mass costs L1 on top of the blurred MSE.
    spread = torch.nn.functional.avg_pool2d(target, 3, stride=1, padding=1)
    deepstorm = get_loss("blurred_mse_l1")
    assert deepstorm(spread, target) == pytest.approx(blurred_mse(spread, target).item())
    assert blurred_mse(spread, target) > 0 == deepstorm(target, target)
    doubled = target.clone()
    doubled[..., 31, 31] = 1.0
    assert deepstorm(doubled, target) - blurred_mse(doubled, target) == pytest.approx(0.1 * 100 / 32**2)


def test_blurred_mse_rejects_bad_parameters():
    with pytest.raises(InputError, match="sigma=0"):
        BlurredMSELoss(sigma=0)


# --------------------------------------------------------------------------- configuration


def test_simulated_runs_default_to_smlm_settings_and_reject_mixed_sources():
    cfg = load_config({"data": {"simulation": {"preset": "dsir", "photons": [500, 1000]}}})
    assert (cfg.scale, cfg.model.name, cfg.loss) == (8, "smlm_unet", "blurred_mse_l1")
    assert cfg.data.simulation.settings().photons == (500.0, 1000.0)
    assert RunConfig.model_validate(cfg.model_dump(mode="json")) == cfg
    assert load_config({"data": {"simulation": {}}, "scale": 4, "loss": "blurred_mse"}).scale == 4
    with pytest.raises(InputError, match="either hr .* or simulation"):
        load_config({"data": {"hr": ["a.tif"], "simulation": {}}})
    with pytest.raises(InputError, match="unknown simulation setting brightness"):
        load_config({"data": {"simulation": {"brightness": 3}}})
    with pytest.raises(InputError, match="density=-1"):
        load_config({"data": {"simulation": {"density": -1}}})


# --------------------------------------------------------------------------- training


def _tiny_run(steps, **train_options):
    return {
        "data": {"simulation": {"preset": "dsir", "size": 16, "density": 1.0, "val_frames": 24},
                 "batch_size": 8, "samples_per_epoch": 320, "num_workers": 0},
        "scale": 4,
        "model": {"name": "smlm_unet", "kwargs": {"widths": [16, 32]}},
        "train": {"steps": steps, "lr": 3e-3, "seed": 0, **train_options},
    }


@pytest.fixture(scope="module")
def tiny_smlm_model(tmp_path_factory):
    """A small x4 model trained for 120 steps on sparse 16 x 16 frames, its history and its folder."""
    output = tmp_path_factory.mktemp("smlm") / "model"
    history = []
    train(_tiny_run(120), output, progress=False, on_epoch_end=history.append)
    return output, history


def test_training_on_simulated_frames_learns_to_localize(tiny_smlm_model):
    output, history = tiny_smlm_model
    assert [r["step"] for r in history] == [40, 80, 120]
    assert history[0]["val_jaccard_100"] < history[-1]["val_jaccard_100"]
    assert max(r["val_jaccard_250"] for r in history) > 0.75
    assert history[-1]["val_rmse"] < 40.0  # nm, with 25 nm fine pixels
    _, info = load_checkpoint(output / "best.safetensors")
    best = max(history, key=lambda r: r["val_jaccard_100"])
    assert {key: info["smlm"][key] for key in ("threshold", "val_jaccard_100", "val_jaccard_250", "val_rmse")} == {
        key: best[key] for key in ("threshold", "val_jaccard_100", "val_jaccard_250", "val_rmse")}
    assert info["smlm"]["val_criterion"] == best["val_jaccard_100"]  # the default criterion: Jaccard at 100 nm
    assert (info["input_pixel_size"], info["output_pixel_size"], info["scale"]) == (100.0, 25.0, 4)
    assert info["normalization"] == {"type": "percentile", "low": 0.1, "high": 99.9}
    assert json.loads((output / "history.json").read_text())[-1]["step"] == 120


def test_simulated_training_resumes_where_it_stopped(tmp_path):
    first = train(_tiny_run(4), tmp_path / "model", progress=False)
    assert first["step"] == 4
    resumed = train(_tiny_run(8), tmp_path / "model", resume=True, progress=False)
    assert resumed["step"] == 8 and math.isfinite(resumed["val_jaccard_250"])
