"""Model registry, built-in architectures, cost and receptive-field measurement."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from microsr.errors import InputError
from microsr.models import create_model, list_models, model_cost, receptive_field
from microsr.models.layers import ResBlock, UpConv, max_pool_2x2, relu_, shuffle_pixels, subpixels_last
from microsr.models.resunet import ResUNet, bicubic

BUILTINS = ["resunet", "resunet_small", "unet"]

# Parameters of the built-in configurations (in_channels=1, scale=4), as in docs/models.md.
PARAMS = {"resunet": 2_086_017, "resunet_small": 140_737, "unet": 1_925_025}


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter a random non-zero value (new models have zero-initialised layers)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    return model.eval()


def test_builtins_are_registered():
    assert set(BUILTINS) <= set(list_models())


@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("scale", [1, 2, 4, 8])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_output_shape_for_odd_and_tiny_inputs(name, scale, in_channels):
    model = create_model(name, in_channels=in_channels, scale=scale)
    assert (model.in_channels, model.scale) == (in_channels, scale)
    with torch.no_grad():
        for h, w in [(37, 53), (8, 8), (3, 1)]:
            y = model(torch.rand(2, in_channels, h, w))
            assert y.shape == (2, 1, h * scale, w * scale)
            assert torch.isfinite(y).all()


@pytest.mark.parametrize(
    "name, kwargs",
    [("resunet", {"widths": (8, 16)}), ("resunet_small", {}), ("unet", {"widths": [8, 16, 32]})],
)
def test_arch_rebuilds_the_same_model(name, kwargs):
    model = _randomise(create_model(name, in_channels=3, scale=2, **kwargs))
    arch = json.loads(json.dumps(model.arch))
    assert arch["name"] == name
    rebuilt = create_model(**arch).eval()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))


def test_unknown_model_name_lists_the_valid_ones():
    with pytest.raises(InputError, match="resunet_small"):
        create_model("resnet")


def test_unknown_argument_lists_the_model_parameters():
    with pytest.raises(InputError, match="widths"):
        create_model("resunet", depth=3)
    with pytest.raises(InputError, match="resunet_small"):
        create_model("resunet_small", widths=(8, 16))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scale": 3}, "scale"),
        ({"in_channels": 0}, "in_channels"),
        ({"widths": []}, "widths"),
        ({"widths": [8, -1]}, "widths"),
        ({"widths": {8, 16}}, "JSON"),
    ],
)
def test_bad_arguments_raise_input_error(kwargs, message):
    with pytest.raises(InputError, match=message):
        create_model("resunet", **kwargs)


@pytest.mark.parametrize("name", BUILTINS)
def test_parameter_counts(name):
    model = create_model(name)
    assert model_cost(model, tile=32).params == sum(p.numel() for p in model.parameters()) == PARAMS[name]


def test_flops_of_single_layers_match_hand_computation():
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    assert model_cost(conv, tile=16, in_channels=3) == (3 * 8 * 9 + 8, 2 * 3 * 8 * 9)
    # Stride 2 = kernel 2: each output pixel gets one tap from each of 4 inputs, per channel.
    transposed = nn.ConvTranspose2d(4, 2, kernel_size=2, stride=2)
    assert model_cost(transposed, tile=16, in_channels=4).flops_per_output_pixel == 2 * 4 * 2
    linear = nn.Linear(16, 16)  # acts on the last axis: 16 MACs per output value
    assert model_cost(linear, tile=16).flops_per_output_pixel == 2 * 16


def test_flops_scale_with_output_pixels():
    small = model_cost(create_model("resunet_small", scale=1))
    large = model_cost(create_model("resunet_small", scale=4))
    # The body runs at input resolution, so per output pixel it costs 16x less at scale 4.
    assert large.flops_per_output_pixel < small.flops_per_output_pixel / 4


def test_receptive_field_of_conv_stacks():
    conv = nn.Conv2d(1, 1, 3, padding=1)
    assert receptive_field(conv) == 1
    assert receptive_field(nn.Sequential(conv, nn.ReLU(), nn.Conv2d(1, 1, 3, padding=1))) == 2
    assert receptive_field(nn.Conv2d(2, 1, 3, padding=2, dilation=2), in_channels=2) == 2


def test_receptive_field_ignores_zero_weights():
    conv = nn.Conv2d(1, 1, 5, padding=2)
    nn.init.zeros_(conv.weight)
    assert receptive_field(conv) == 2


def test_receptive_field_is_measured_once_per_architecture(monkeypatch):
    from microsr.models import analysis

    calls = []
    measure = analysis._measure_receptive_field
    monkeypatch.setattr(analysis, "_measure_receptive_field", lambda *args: calls.append(args) or measure(*args))
    first = receptive_field(create_model("unet", widths=[4, 8], scale=2))
    # Another model of the same architecture (e.g. the next training run) reuses it; another architecture does not.
    assert receptive_field(create_model("unet", widths=[4, 8], scale=2)) == first and len(calls) == 1
    assert receptive_field(create_model("unet", widths=[4, 8, 16], scale=2)) > first and len(calls) == 2


def test_receptive_field_warns_for_global_models():
    class GlobalMean(nn.Module):
        def forward(self, x):
            return x - x.mean()

    with pytest.warns(UserWarning, match="whole image"):
        assert receptive_field(GlobalMean(), max_size=64) >= 32


def test_resunet_output_ignores_input_beyond_receptive_field():
    model = _randomise(ResUNet(scale=2, widths=(4, 8, 8, 8)))
    rf = receptive_field(model)
    assert 0 < rf < 200
    size = 2 * rf + 24
    x = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = model(x)
        for offset in range(8):  # every position relative to the 2**3 pooling grid
            c = size // 2 - 4 + offset
            o = 2 * c + 1  # an output pixel inside input pixel c
            for dy, dx in [(rf + 1, 0), (0, -rf - 1), (-rf - 1, rf + 1)]:
                perturbed = x.clone()
                perturbed[..., c + dy, c + dx] += 10
                assert model(perturbed)[..., o, o] == reference[..., o, o]
        perturbed = x.clone()
        perturbed[..., c, c] += 10
        assert model(perturbed)[..., o, o] != reference[..., o, o]


def test_resunet_global_residual_is_bicubic_of_centre_frame():
    model = create_model("resunet_small", in_channels=3, scale=4)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        x = torch.rand(2, 3, 11, 13)
        expected = F.interpolate(x[:, 1:2], scale_factor=4, mode="bicubic", align_corners=False)
        assert torch.allclose(model(x), expected, atol=1e-6)


def test_new_resunet_is_bicubic_interpolation():
    model = create_model("resunet", scale=2)
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        # Within float32 rounding: the model's bicubic is a convolution (see resunet.bicubic), and
        # without an absolute tolerance an output near zero failed for some random inputs.
        assert torch.allclose(model(x), F.interpolate(x, scale_factor=2, mode="bicubic"), atol=1e-6)


def test_resunet_small_overfits_one_pair():
    torch.manual_seed(0)
    noise = torch.rand(1, 1, 34, 34, generator=torch.Generator().manual_seed(0))
    x = F.avg_pool2d(noise, 3, stride=1)
    x = (x - x.min()) / (x.max() - x.min())
    # Blocky nearest-neighbour upsampling is far from the bicubic start but learnable by the sub-pixel
    # convolutions alone. It is itself a fixed sub-pixel pattern, which the blur after each shuffle (the
    # default, against checkerboards) removes by design: with it the loss fell only 1.1x here, without 13x.
    target = F.interpolate(x, scale_factor=4, mode="nearest")
    model = create_model("resunet_small", scale=4, blur=False)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(100):
        loss = F.mse_loss(model(x), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 5


def test_any_module_can_be_measured():
    model = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 1, 1))
    cost = model_cost(model, tile=8)
    assert cost == (4 * 9 + 4 + 4 + 1, 2 * (9 * 4 + 4))
    assert receptive_field(model) == 1


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_resunet_fast_path_equals_the_plain_computation_and_its_gradients(scale):
    """The folded head and the by-rows tail compute exactly the textbook
    ``head(upsample(body(x)))``: values and gradients, on an input tall enough to be cut."""
    model = _randomise(create_model("resunet_small", scale=scale)).train()
    x = torch.rand(1, 1, 300 // max(scale // 2, 1), 20, generator=torch.Generator().manual_seed(1))
    assert x.shape[-2] * max(scale // 2, 1) > 256  # the tail's input is cut into strips

    def plain(model):
        bicubic = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False) if scale > 1 else x
        head = F.conv2d(model.upsample(model.body(x)), model.head.weight, model.head.bias, padding=1)
        return bicubic + model.smooth(head)  # the last shuffle's blur (none at scale 1)

    fast, reference = model(x), plain(model)
    assert torch.allclose(fast, reference, atol=1e-5)
    fast.square().mean().backward()
    fast_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    plain(model).square().mean().backward()
    for fast_grad, p in zip(fast_grads, model.parameters()):
        assert torch.allclose(fast_grad, p.grad, rtol=1e-4, atol=1e-6)


def test_resunet_checkpoint_keys_and_flops_are_those_of_a_plain_head():
    model = create_model("resunet", scale=4)

    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.upsample = model.body, model.upsample
            self.head = nn.Conv2d(32, 1, 3, padding=1)

        def forward(self, x):
            return self.head(self.upsample(self.body(x)))

    assert model.state_dict().keys() == Plain().state_dict().keys()
    assert model_cost(model, tile=64) == model_cost(Plain(), tile=64)


def test_16_bit_relu_on_int16_bits_equals_torch_s():
    x = torch.randn(2, 8, 9, 11, generator=torch.Generator().manual_seed(2))
    for dtype in (torch.bfloat16, torch.float16):
        half = x.to(dtype).contiguous(memory_format=torch.channels_last)
        assert torch.equal(relu_(half.clone()), F.relu(half))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_max_pool_outside_autograd_equals_torch_s_with_odd_sizes_and_nans(dtype, layout):
    x = torch.randn(2, 5, 11, 8, generator=torch.Generator().manual_seed(3))
    x[0, 1, 4, 2] = float("nan")
    x = x.to(dtype).contiguous(memory_format=layout)
    pooled = max_pool_2x2(x)
    assert torch.equal(pooled.isnan(), F.max_pool2d(x, 2).isnan()) and pooled.isnan().sum() == 1
    assert torch.equal(pooled.nan_to_num(), F.max_pool2d(x, 2).nan_to_num())
    assert pooled.is_contiguous(memory_format=layout)


@pytest.mark.parametrize("factor", [2, 4])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_shuffle_of_sub_pixels_last_equals_torch_s_pixel_shuffle_and_its_gradient(factor, layout):
    x = torch.randn(2, 3 * factor**2, 5, 7, generator=torch.Generator().manual_seed(factor), requires_grad=True)
    ours = shuffle_pixels(subpixels_last(x.transpose(0, 1), factor).transpose(0, 1).contiguous(memory_format=layout),
                          factor)
    assert torch.equal(ours, F.pixel_shuffle(x, factor))
    assert ours.is_contiguous(memory_format=torch.channels_last)
    (gradient,) = torch.autograd.grad(ours.square().sum(), x)
    assert torch.equal(gradient, 2 * x.detach())


def test_resunet_bf16_inference_equals_the_autograd_path():
    """Without gradients the 16-bit ReLUs and shuffles work on int16 bits; with them, torch's own ops run."""
    model = _randomise(create_model("resunet", scale=4))
    x = torch.rand(1, 1, 40, 36, generator=torch.Generator().manual_seed(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference = model(x)
        with torch.inference_mode():
            fast = model(x)
    assert reference.requires_grad and not fast.requires_grad
    assert torch.equal(fast, reference.detach())


@pytest.mark.parametrize("name", ["resunet", "unet"])
@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_crop_leaves_out_the_border_of_the_full_output(name, scale):
    """``model(x, crop=c)`` is ``model(x)`` without ``c`` input pixels along each edge, for any
    size (the U-Net pads to its pooling grid) and crops smaller than the upsampling's reach."""
    model = _randomise(create_model(name, in_channels=3, scale=scale, widths=(4, 8, 16, 16))).double()
    generator = torch.Generator().manual_seed(scale)
    for (h, w), crop in [((64, 64), 10), ((67, 53), 9), ((37, 41), 1), ((40, 45), 2)]:
        x = torch.rand(2, 3, h, w, generator=generator, dtype=torch.float64)
        with torch.no_grad():
            full, cropped = model(x), model(x, crop=crop)
        edge = crop * scale
        assert cropped.shape == (2, 1, (h - 2 * crop) * scale, (w - 2 * crop) * scale)
        assert torch.allclose(cropped, full[..., edge:-edge, edge:-edge], rtol=0, atol=1e-12)


def test_crop_skips_most_of_the_work_on_the_context_of_a_tile():
    """On a default 512-pixel tile read with 62 pixels of context, of which 54 only feed the model,
    the default model does 3/4 of the work of computing every pixel: the tiling costs 1.18x, not 1.55x."""
    model = create_model("resunet", scale=4)
    per_pixel = model_cost(model, tile=512).flops_per_output_pixel
    full = model_cost(model, tile=636).flops_per_output_pixel * (636 * 4) ** 2
    cropped = model_cost(model, tile=636, crop=54).flops_per_output_pixel * (528 * 4) ** 2
    assert cropped < 0.8 * full
    assert cropped < 1.2 * per_pixel * (512 * 4) ** 2


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_bicubic_as_a_convolution_equals_torch_s_also_at_the_border_and_under_autocast(scale):
    x = torch.rand(2, 3, 11, 6, generator=torch.Generator().manual_seed(scale))
    reference = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    assert torch.allclose(bicubic(x, scale), reference, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the residual base keeps full precision
        up = bicubic(x, scale)
    assert up.dtype == torch.float32 and torch.allclose(up, reference, atol=1e-6)


def test_up_convolution_equals_the_transposed_convolution_and_its_gradients():
    up = UpConv(6, 3)
    plain = nn.ConvTranspose2d(6, 3, kernel_size=2, stride=2)
    plain.load_state_dict(up.state_dict())
    x = torch.rand(2, 6, 5, 7, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(up(x), plain(x), atol=1e-6)
    up(x).square().sum().backward()
    plain(x).square().sum().backward()
    assert torch.allclose(up.weight.grad, plain.weight.grad, atol=1e-5)
    assert torch.allclose(up.bias.grad, plain.bias.grad, atol=1e-5)


@pytest.mark.parametrize(("name", "scale"), [("resunet_small", 1), ("resunet_small", 4), ("unet", 2)])
def test_receptive_field_probed_through_crop_equals_the_whole_output_probe(name, scale):
    """A model that takes `crop` is probed for the output around the measured pixels only."""
    model = create_model(name, scale=scale, **({"widths": [4, 8, 16]} if name == "unet" else {}))

    class WholeOutput(nn.Module):  # the same function, without `crop`
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x)

    assert receptive_field(model) == receptive_field(WholeOutput())


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_residual_block_with_the_skip_added_by_its_matrix_product_equals_the_textbook_block(layout):
    """The 1x1 skip accumulates into conv2's output (its bias folded into conv2's): same values,
    gradients and FLOP count as ``relu(conv2(relu(conv1(x))) + conv1x1(x))``."""
    block = _randomise(ResBlock(3, 8)).train().to(memory_format=layout)
    x = torch.rand(2, 3, 9, 7, generator=torch.Generator().manual_seed(5)).contiguous(memory_format=layout)

    def textbook():
        h = F.relu(F.conv2d(x, block.conv1.weight, block.conv1.bias, padding=1))
        skip = F.conv2d(x, block.skip.weight, block.skip.bias)
        return F.relu(F.conv2d(h, block.conv2.weight, block.conv2.bias, padding=1) + skip)

    out, reference = block(x), textbook()
    assert torch.allclose(out, reference, atol=1e-6)
    out.square().sum().backward()
    grads = [p.grad.clone() for p in block.parameters()]
    block.zero_grad()
    textbook().square().sum().backward()
    for grad, p in zip(grads, block.parameters()):
        assert torch.allclose(grad, p.grad, rtol=1e-5, atol=1e-5)
    assert model_cost(block, tile=16, in_channels=3).flops_per_output_pixel == 2 * (3 * 8 * 9 + 8 * 8 * 9 + 3 * 8)


def test_receptive_field_is_measured_after_a_prediction_in_inference_mode():
    """The bicubic kernel is cached: made first under inference mode (a prediction), it must not
    break a later measurement with gradients in the same process (training a new architecture)."""
    from microsr.models import resunet

    resunet._bicubic_kernel.cache_clear()
    with torch.inference_mode():
        create_model("resunet_small", scale=2)(torch.rand(1, 1, 16, 16))
    assert receptive_field(create_model("resunet", scale=2, widths=[4, 8])) > 0
