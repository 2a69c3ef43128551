"""Losses by name, and MS-SSIM on tiles of every size."""

import pytest
import torch
import torch.nn.functional as F

from microsr.errors import InputError
from microsr.models.losses import LOSSES, MSSSIML1Loss, get_loss, ms_ssim, msssim_scales


def _pair(size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    target = F.avg_pool2d(torch.rand(2, 1, size + 2, size + 2, generator=generator), 3, stride=1)
    prediction = target + 0.05 * torch.randn(target.shape, generator=generator)
    return prediction, target


@pytest.mark.parametrize("name", list(LOSSES))
def test_zero_for_identical_positive_otherwise(name):
    loss = get_loss(name)
    prediction, target = _pair(48)
    assert loss(target, target).item() == pytest.approx(0, abs=1e-6)
    assert loss(prediction, target).item() > 1e-3


def test_l1_and_l2_are_the_torch_losses():
    prediction, target = _pair(16)
    assert torch.equal(get_loss("l2")(prediction, target), F.mse_loss(prediction, target))
    assert torch.equal(get_loss("l1")(prediction, target), F.l1_loss(prediction, target))


def test_unknown_loss_lists_the_valid_names():
    with pytest.raises(InputError, match="msssim_l1"):
        get_loss("ssim")


def test_alpha_out_of_range():
    with pytest.raises(InputError, match="alpha"):
        MSSSIML1Loss(alpha=1.5)


@pytest.mark.parametrize(
    "size, scales, win",
    [
        (161, 5, 11), (160, 4, 11), (81, 4, 11), (80, 3, 11), (41, 3, 11), (40, 2, 11),
        (21, 2, 11), (20, 2, 7), (13, 2, 7), (12, 1, 7), (7, 1, 7), (6, 1, 5), (1, 1, 1),
    ],
)
def test_msssim_regimes_follow_the_documented_table(size, scales, win):
    assert msssim_scales(size) == (scales, win)


def test_window_fits_the_coarsest_scale_at_every_size():
    for size in range(1, 200):
        scales, win = msssim_scales(size)
        coarsest = size
        for _ in range(scales - 1):
            coarsest = (coarsest + 1) // 2
        assert coarsest >= win, size


@pytest.mark.parametrize("size, scales", [(16, 2), (48, 3), (96, 4), (192, 5)])
def test_msssim_l1_trains_on_every_tile_size(size, scales):
    assert msssim_scales(size)[0] == scales
    prediction, target = _pair(size)
    prediction.requires_grad_(True)
    value = get_loss("msssim_l1")(prediction, target)
    value.backward()
    assert 0 < value.item() < 1
    assert torch.isfinite(prediction.grad).all() and prediction.grad.abs().sum() > 0


def test_msssim_l1_is_the_documented_mixture():
    prediction, target = _pair(48)
    expected = 0.84 * (1 - ms_ssim(prediction, target)) + 0.16 * F.l1_loss(prediction, target)
    assert torch.allclose(MSSSIML1Loss()(prediction, target), expected)


def test_values_below_zero_still_give_gradient():
    # A dark background at 0 with noise: normalised predictions dip below 0 there.
    prediction, target = _pair(32)
    target = target * (target > 0.5)
    prediction = (target + 0.05 * torch.randn(target.shape)).requires_grad_(True)
    (1 - ms_ssim(prediction, target)).backward()
    assert (prediction < 0).any()
    assert prediction.grad[prediction < 0].abs().min() > 0


def test_matches_pytorch_msssim_where_it_applies():
    pytorch_msssim = pytest.importorskip("pytorch_msssim")
    prediction, target = _pair(192)
    expected = pytorch_msssim.ms_ssim(prediction, target, data_range=1.0, size_average=True)
    assert torch.allclose(ms_ssim(prediction, target), expected, atol=1e-5)
    prediction, target = _pair(10)
    expected = pytorch_msssim.ssim(prediction, target, data_range=1.0, size_average=True, win_size=7)
    assert torch.allclose(ms_ssim(prediction, target), expected, atol=1e-5)


def test_msssim_is_computed_in_float32_under_bfloat16_autocast():
    # A nearly flat target: in bfloat16 its variance E[x^2] - E[x]^2 is mostly rounding error.
    prediction, target = _pair(64)
    target = 0.7 + 0.001 * target
    expected = ms_ssim(prediction, target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = ms_ssim(prediction.bfloat16(), target)
    assert value.dtype == torch.float32
    assert torch.allclose(value, ms_ssim(prediction.bfloat16().float(), target), atol=1e-6)
    assert abs(value - expected) < 1e-2


def test_ms_ssim_after_inference_mode_still_trains():
    """Scoring under inference mode (prediction, benchmarks) first must not break a later training step."""
    from microsr.models.losses import ms_ssim

    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 72, 72, generator=generator)  # a size no other test uses, so nothing is cached
    y = (x + 0.1 * torch.rand(2, 1, 72, 72, generator=generator)).clamp(0, 1)
    with torch.inference_mode():
        scored = ms_ssim(x, y)
    x.requires_grad_(True)
    loss = 1 - ms_ssim(x, y).mean()
    loss.backward()
    assert torch.allclose(scored, ms_ssim(x.detach(), y)) and x.grad.abs().sum() > 0
