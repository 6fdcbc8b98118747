"""segcore.models: registry, knobs checked at construction, grid-shaped output, truncation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from segcore.labels import grid_shape
from segcore.models import (
    SpectralTruncation,
    create_model,
    list_models,
    spectral_resize,
    truncated_size,
)

TINY = list_models(tiny=True)


def _combos():
    """Every tiny model x every stride it can produce at keep=1, and the finest and coarsest
    stride with keep=0.5 under both truncations (the knob combinations each model supports)."""
    for name in TINY:
        strides = _strides(name)
        for stride in strides:
            yield pytest.param(name, stride, 1.0, "fft", id=f"{name}-s{stride}-k1")
            if stride in (strides[0], strides[-1]):
                for trunc in ("fft", "resize"):
                    yield pytest.param(name, stride, 0.5, trunc, id=f"{name}-s{stride}-k0.5-{trunc}")


def _strides(name: str) -> tuple[int, ...]:
    with torch.device("meta"):
        return create_model(name, 2).valid_strides


def test_registry_names():
    names = list_models()
    for n in ("deeplabv3plus", "dan", "unet", "deeplabv3plus_tiny", "dan_tiny", "unet_tiny"):
        assert n in names
    assert TINY == ["dan_tiny", "deeplabv3plus_tiny", "unet_tiny"]
    assert set(list_models(tiny=False)) == {"dan", "deeplabv3plus", "unet"}


def test_unknown_network_lists_valid_names():
    with pytest.raises(KeyError, match="valid networks: dan, dan_tiny, deeplabv3plus"):
        create_model("segformer", 3)


@pytest.mark.parametrize("name,backbone", [("deeplabv3plus", "vgg16"), ("dan", "mobilenet_v3_large"),
                                           ("dan_tiny", "resnet50")])
def test_unknown_backbone_lists_valid(name, backbone):
    with pytest.raises(ValueError, match=f"unknown backbone '{backbone}'.*valid backbones: "):
        create_model(name, 3, backbone=backbone)


def test_unet_takes_no_backbone():
    with pytest.raises(ValueError, match="takes no backbone"):
        create_model("unet_tiny", 3, backbone="resnet18")


@pytest.mark.parametrize("name,stride,valid", [
    ("unet_tiny", 16, "1, 2, 4, 8"),
    ("deeplabv3plus_tiny", 32, "1, 2, 4, 8, 16"),
    ("dan_tiny", 3, "1, 2, 4, 8, 16, 32"),
])
def test_invalid_grid_stride_lists_valid(name, stride, valid):
    with pytest.raises(ValueError, match=f"grid_stride={stride} cannot be produced.*valid grid strides: {valid}$"):
        create_model(name, 3, grid_stride=stride)


def test_deeplab_output_stride_8_limits_grid_strides():
    with torch.device("meta"):
        model = create_model("deeplabv3plus_tiny", 3, output_stride=8)
    assert model.valid_strides == (1, 2, 4, 8)
    assert model.encoder.backbone.strides == [4, 8, 8, 8]
    with pytest.raises(ValueError, match="output_stride must be one of \\[8, 16\\]"):
        create_model("deeplabv3plus_tiny", 3, output_stride=32)


@pytest.mark.parametrize("keep", [0.0, -0.5, 1.5, float("nan"), True])
def test_keep_outside_unit_interval(keep):
    with pytest.raises(ValueError, match="keep must be"):
        create_model("unet_tiny", 3, keep=keep)


def test_bad_truncation_and_option():
    with pytest.raises(ValueError, match=r"truncation must be one of \['fft', 'resize'\]"):
        create_model("dan_tiny", 3, truncation="wavelet")
    with pytest.raises(ValueError, match="unexpected keyword argument 'colour'"):
        create_model("dan_tiny", 3, colour="red")


@pytest.mark.parametrize("name,stride,keep,trunc", list(_combos()))
def test_output_on_grid_and_backward(name, stride, keep, trunc):
    torch.manual_seed(0)
    model = create_model(name, 3, grid_stride=stride, keep=keep, truncation=trunc)
    x = torch.randn(2, 3, 40, 56)
    out = model(x)
    assert out.shape == (2, 3, *grid_shape(40, 56, stride))
    out.logsumexp(dim=1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.decoder.classifier.weight.grad.abs().sum() > 0
    # the encoder's first conv receives gradient through the truncation
    first = next(m for m in model.encoder.modules() if isinstance(m, nn.Conv2d))
    assert first.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", TINY)
def test_keep_one_leaves_decoder_features_unchanged(name):
    torch.manual_seed(0)
    model = create_model(name, 3, keep=1.0, grid_stride=2).eval()
    x = torch.randn(1, 3, 48, 48)
    feats = model.encoder(x)
    assert all(model.decoder.truncate(f) is f for f in feats)
    with torch.no_grad():
        ref = model(x)
        model.decoder.truncate.forward = lambda features: features
        assert torch.equal(model(x), ref)


@pytest.mark.parametrize("name", ["dan_tiny", "deeplabv3plus_tiny"])
@pytest.mark.parametrize("truncation", ["fft", "resize"])
def test_decoder_convolutions_run_on_the_truncated_grid(name, truncation):
    # at grid stride 8 on 64 px the grid is 8x8 and keep 0.5 truncates it to 4x4: every decoder
    # convolution, the 1x1 reductions of the finer encoder levels included, sees at most 4x4.
    model = create_model(name, 3, grid_stride=8, keep=0.5, truncation=truncation).eval()
    seen = []
    hooks = [m.register_forward_hook(lambda mod, inputs, out: seen.append(tuple(inputs[0].shape[-2:])))
             for m in model.decoder.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    for hook in hooks:
        hook.remove()
    assert out.shape == (1, 3, 8, 8)
    assert seen and all(h <= 4 and w <= 4 for h, w in seen), seen
    assert (4, 4) in seen


def test_shrink_to_grid():
    layer = SpectralTruncation(0.5, "fft")
    fine, coarse = torch.randn(1, 2, 16, 16), torch.randn(1, 2, 4, 4)
    assert layer.shrink_to_grid(coarse, (8, 8)) is coarse  # no larger than the 4x4 truncated grid
    shrunk = layer.shrink_to_grid(fine, (8, 8))  # area-averaged to the grid, then truncated
    assert torch.allclose(shrunk, spectral_resize(torch.nn.functional.adaptive_avg_pool2d(fine, 8), (4, 4)))
    assert SpectralTruncation(1.0).shrink_to_grid(coarse, (4, 4)) is coarse


def test_truncation_is_low_pass_and_normalised():
    # A constant map keeps its value; a band-limited cosine is resampled exactly.
    layer = SpectralTruncation(0.5, "fft")
    const = torch.full((1, 2, 16, 12), 3.5)
    assert torch.allclose(layer(const), torch.full((1, 2, 8, 6), 3.5), atol=1e-5)
    n, m, k = 32, 16, 3
    x = torch.cos(2 * math.pi * k * torch.arange(n) / n)[None, None, :, None].expand(1, 1, n, n)
    y = layer(x.contiguous())
    expected = torch.cos(2 * math.pi * k * torch.arange(m) / m)[:, None].expand(m, m)
    assert y.shape == (1, 1, m, m)
    assert torch.allclose(y[0, 0], expected, atol=1e-5)
    # a frequency above the kept band (|f| > m/2 bins) is removed completely
    hi = torch.cos(2 * math.pi * 12 * torch.arange(n) / n)[None, None, :, None].expand(1, 1, n, n)
    assert layer(hi.contiguous()).abs().max() < 1e-5


def _crop_full_spectrum(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The definition: the low band of the complex 2-D spectrum, inverse at ``size``, real part."""
    spec = torch.fft.fft2(x, norm="forward")
    for dim, kept in ((-2, size[0]), (-1, size[1])):
        n, positive = spec.shape[dim], (kept + 1) // 2
        parts = [spec.narrow(dim, 0, positive), spec.narrow(dim, n - (kept - positive), kept - positive)]
        spec = torch.cat(parts, dim=dim)
    return torch.fft.ifft2(spec, s=size, norm="forward").real


@pytest.mark.parametrize("full", [(16, 12), (15, 9), (8, 7)])
def test_spectral_resize_matches_the_full_spectrum_crop(full):
    # real transforms (rfft2/irfft2) give the numbers of the complex crop, Nyquist rows included
    torch.manual_seed(0)
    x = torch.randn(2, 3, *full, dtype=torch.float64)
    for size in [(h, w) for h in range(1, full[0] + 1) for w in range(1, full[1] + 1)]:
        assert torch.allclose(spectral_resize(x, size), _crop_full_spectrum(x, size), atol=1e-12), size


def test_truncation_sizes_identity_and_gradient():
    assert truncated_size(33, 20, 0.5) == (16, 10)
    assert truncated_size(3, 3, 0.1) == (1, 1)
    x = torch.randn(2, 4, 10, 14, dtype=torch.float64, requires_grad=True)
    assert SpectralTruncation(1.0)(x) is x
    assert SpectralTruncation(0.5, "resize")(x).shape == (2, 4, 5, 7)
    assert torch.autograd.gradcheck(lambda t: spectral_resize(t, (5, 7)), (x[:1, :1],))
    assert torch.autograd.gradcheck(lambda t: spectral_resize(t, (4, 6)), (x[:1, :1],))  # even: Nyquist rows


@pytest.mark.slow
@pytest.mark.parametrize("name,backbone,options", [
    ("deeplabv3plus", "resnet18", {"output_stride": 8}),
    ("deeplabv3plus", "resnet50", {"output_stride": 16}),
    ("deeplabv3plus", "resnet101", {}),
    ("deeplabv3plus", "mobilenet_v3_large", {"output_stride": 8}),
    ("dan", "resnet18", {}),
    ("dan", "resnet50", {"output_stride": 16}),
    ("unet", None, {"width": 16, "depth": 4}),
])
def test_full_size_models_shapes(name, backbone, options):
    model = create_model(name, 4, grid_stride=4, keep=0.5, backbone=backbone, **options).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 80))
    assert out.shape == (1, 4, 16, 20)
    if name == "deeplabv3plus":
        assert model.encoder.backbone.strides[0] == 4
        assert model.encoder.backbone.strides[-1] == options.get("output_stride", 16)


def test_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_model("dan_tiny", 3)
    path = tmp_path / "w.pt"
    torch.save(model.state_dict(), path)
    torch.manual_seed(1)
    loaded = create_model("dan_tiny", 3, weights=str(path))
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="does not match the network"):
        create_model("unet_tiny", 3, weights=str(path))
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        create_model("unet_tiny", 3, weights=str(tmp_path / "missing.pt"))
