"""No sub-pixel checkerboard: the measure, the blurred upsampling that prevents it, and old models unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from microsr.checkpoint import save_checkpoint
from microsr.errors import InputError
from microsr.evaluate.baseline import upscale
from microsr.evaluate.checkerboard import checkerboard
from microsr.models import complete_arch, create_model
from microsr.models.losses import LOSSES
from microsr.predict import load_model
from microsr.samples import filaments
from microsr.share.architecture import standalone_source
from microsr.training import adamw

SCALE = 4


def _pool(x: np.ndarray) -> np.ndarray:
    """Mean of each SCALE x SCALE block: the low-resolution image."""
    return x.reshape(*x.shape[:-2], x.shape[-2] // SCALE, SCALE, x.shape[-1] // SCALE, SCALE).mean(axis=(-3, -1))


def _unit(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.float32)
    return (image - image.min()) / (image.max() - image.min())


def test_measure_finds_a_fixed_offset_of_a_tenth_of_the_highpass():
    lowres = _unit(_pool(filaments((512, 512), seed=3).astype(np.float64)))
    clean = checkerboard(upscale(lowres, SCALE), lowres, SCALE)
    assert clean.phase_means.shape == (SCALE, SCALE)
    assert clean.spectral_ratio == pytest.approx(1.0)
    offset = np.zeros((SCALE, SCALE))
    offset[0, 0] = 0.1 * clean.highpass_std  # one sub-pixel of every input pixel brighter
    patterned = checkerboard(upscale(lowres, SCALE) + np.tile(offset, lowres.shape), lowres, SCALE)
    # The high-pass keeps 1 - 1/16 of the offset at its phase and takes 1/16 from the others: spread 0.1.
    assert patterned.phase_spread == pytest.approx(0.1 + clean.phase_spread, abs=0.01)
    assert patterned.spectral_ratio > 10


@pytest.mark.parametrize("shapes, scale", [(((64, 60), (16, 16)), 4), (((64, 64), (16, 16)), 1)])
def test_measure_refuses_mismatched_input(shapes, scale):
    with pytest.raises(InputError):
        checkerboard(np.zeros(shapes[0]), np.zeros(shapes[1]), scale)


def _texture(seed: int) -> np.ndarray:
    """Dense texture with detail down to a few pixels everywhere (smoothed white noise), in [0, 1].

    Sparse filaments left the old architecture's pattern to chance in so short a training
    (spectral ratio 1.0 to 142 by seed); this texture brought it out at every seed tried.
    """
    return _unit(gaussian_filter(np.random.default_rng(seed).standard_normal((256, 256)), 1.5))


def _briefly_trained(**kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and input of resunet_small x4 (``kwargs`` for ``create_model``) trained 30 steps on 64-pixel tiles.

    The loss is the default msssim_l1, AdamW at 3e-3; the image predicted is held out.
    """
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    hr = _texture(1)
    model = create_model("resunet_small", scale=SCALE, **kwargs)
    optimizer = adamw(model.parameters(), lr=3e-3, weight_decay=1e-4, device=torch.device("cpu"))
    loss_fn, tile = LOSSES["msssim_l1"](), 64
    for _ in range(30):
        corners = rng.integers(0, hr.shape[0] - tile, (8, 2))
        target = torch.from_numpy(np.stack([hr[y : y + tile, x : x + tile] for y, x in corners])[:, None])
        loss = loss_fn(model(torch.from_numpy(_pool(target.numpy()))), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    lowres = _pool(_texture(7))
    with torch.no_grad():
        return model.eval()(torch.from_numpy(lowres)[None, None])[0, 0].numpy(), lowres


def test_briefly_trained_model_with_blur_has_no_subpixel_pattern():
    """resunet_small x4 with ``blur``, briefly trained, predicts without a fixed sub-pixel pattern.

    Measured (seeds 0 and 2 of the tiles in a probe, then this test's draw): with the blur after each
    pixel shuffle, phase spread 0.0045 / 0.0062 / 0.0087 and spectral ratio to bicubic 16 / 29 / 208; the
    architecture before it (``blur=False``), trained the same: 0.19 / 0.19 / 0.13 and 2.1e6 / 1.8e6 / 1.8e6.
    The held-out texture itself (its true high resolution) has 0.017 and 1.4e4: real detail at the
    input-pixel period, and phase means that average 4096 input pixels only. The margins, 0.04 and 1000,
    sit 4-5x above the blurred model and 3x / 1800x below the old one.
    """
    output, lowres = _briefly_trained(blur=True)
    # It learnt a correction to bicubic (the new model's output): mean 0.02 here.
    assert np.abs(output - upscale(lowres, SCALE)).mean() > 0.005
    pattern = checkerboard(output, lowres, SCALE)
    assert pattern.phase_spread < 0.04, pattern
    assert pattern.spectral_ratio < 1000, pattern


@pytest.mark.parametrize("name", ["resunet", "resunet_small"])
def test_new_models_record_the_blur_and_old_archs_rebuild_without_it(name):
    assert create_model(name, scale=2).arch["blur"] is False
    assert create_model(name, scale=2, blur=True).arch["blur"] is True
    old = {"name": name, "in_channels": 1, "scale": 2}
    assert complete_arch(old) == {**old, "blur": False}
    assert create_model(**complete_arch(old)).blur is False
    assert complete_arch({**old, "blur": True})["blur"] is True


@pytest.mark.parametrize("shipped", ["sim_lowlight", "tirf9"])  # srrf5 was retrained since
def test_shipped_models_rebuild_as_trained(shipped):
    restorer = load_model(shipped)
    assert "blur" not in restorer.info["arch"]  # saved before the blur existed
    assert restorer.module.blur is False


def test_checkpoint_without_blur_predicts_as_the_model_it_saved(tmp_path):
    torch.manual_seed(0)
    old = create_model("resunet_small", scale=2, blur=False)
    with torch.no_grad():
        for p in old.parameters():
            p.normal_(0, 0.1)
    arch = {key: value for key, value in old.arch.items() if key != "blur"}  # as microsr wrote it before
    file = save_checkpoint(tmp_path / "old.safetensors", old, {"arch": arch, "scale": 2, "normalization": {}})
    x = torch.rand(1, 1, 24, 24)
    with torch.no_grad():
        assert torch.equal(load_model(file).module(x), old.eval()(x))


def test_exported_architecture_source_has_the_blur():
    """bioimage.io exports the architecture as standalone source: a blurred model rebuilt from it predicts the same."""
    torch.manual_seed(0)
    model = create_model("resunet_small", scale=4, blur=True)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    namespace: dict = {}
    exec(standalone_source(model.arch), namespace)
    exported = namespace["resunet_small"](in_channels=1, scale=4, blur=True)
    exported.load_state_dict(model.state_dict())
    x = torch.rand(1, 1, 20, 24)
    with torch.no_grad():
        assert torch.allclose(exported.eval()(x), model.eval()(x), atol=1e-6)
