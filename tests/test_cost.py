"""segcore.cost: exact keys, known FLOP counts (FFTs included), decoder FLOPs ~ keep^2, annotation units."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from segcore.cost import FFT_FLOP_FORMULAS, annotation_metrics, count_flops, count_params, fft_flops, measure_cost
from segcore.models import SegmentationModel, SpectralTruncation, create_model, list_models
from segcore.names import COST_METRICS


class _Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.classifier = nn.Conv2d(8, 2, 1)

    def forward(self, feats, grid):
        return self.classifier(feats[0])


class _OneByOne(SegmentationModel):
    """encoder 1x1 conv 3->8, decoder 1x1 conv 8->2: FLOPs known in closed form."""

    def __init__(self):
        super().__init__()
        self._set_knobs(2, 1, 1.0, "fft", (1,))
        self.conv = nn.Conv2d(3, 8, 1)
        self.encoder = lambda x: [self.conv(x)]
        self.decoder = _Decoder()


def test_known_flops_and_params():
    model = _OneByOne()
    total, decoder, fft = count_flops(model, (10, 12))
    assert fft == 0
    pixels = 10 * 12
    assert decoder == 2 * 8 * 2 * pixels           # a multiply-add is 2 FLOPs
    assert total == 2 * 3 * 8 * pixels + decoder
    assert count_params(model) == 3 * 8 + 8 + 8 * 2 + 2


def test_measure_cost_has_exactly_the_schema_keys():
    model = create_model("unet_tiny", 3)
    cost = measure_cost(model, (32, 32), repeats=2)
    assert tuple(cost) == COST_METRICS
    assert all(isinstance(v, float) for v in cost.values())
    assert cost["latency_ms"] > 0 and cost["peak_memory_mb"] > 0
    assert 0 < cost["decoder_gflops"] < cost["gflops"]
    assert cost["params_m"] == pytest.approx(count_params(model) / 1e6)
    assert cost["annotation_units"] == 32 * 32 and cost["relative_annotation_units"] == 1.0
    assert cost["mixed_block_share"] == 0.0


def _fft_count(fn) -> int:
    counter = FlopCounterMode(display=False, custom_mapping=FFT_FLOP_FORMULAS)
    with counter:
        fn()
    return counter.get_total_flops()


def test_fft_flops_known_answers():
    # 5 N log2 N per complex transform of N points, N the product of the transformed sizes,
    # times the number of signals; half for real input (rfft) or real output (irfft).
    complex_input = torch.randn(2, 3, 16, 16, dtype=torch.complex64)
    real_input = torch.randn(2, 3, 16, 16)
    assert _fft_count(lambda: torch.fft.fft2(complex_input)) == 6 * 5 * 256 * 8
    assert _fft_count(lambda: torch.fft.ifft(complex_input, dim=1)) == round(2 * 16 * 16 * 5 * 3 * math.log2(3))
    assert _fft_count(lambda: torch.fft.rfft2(real_input)) == 6 * 5 * 256 * 8 // 2
    half_spectrum = torch.fft.rfft2(real_input)
    assert _fft_count(lambda: torch.fft.irfft2(half_spectrum, s=(16, 16))) == 6 * 5 * 256 * 8 // 2
    assert _fft_count(lambda: torch.fft.fftn(complex_input)) == round(5 * 1536 * math.log2(1536))  # one signal
    assert fft_flops((4, 1, 1), (1, 2), real=False) == 0  # a 1-point transform does nothing


def test_truncation_fft_flops_known_answer():
    # keep 0.5 on (1, 4, 16, 16): a forward 16x16 and an inverse 8x8 real FFT per channel
    layer = SpectralTruncation(0.5, "fft")
    expected = 4 * (5 * 256 * 8 + 5 * 64 * 6) // 2
    assert _fft_count(lambda: layer(torch.randn(1, 4, 16, 16))) == expected
    assert _fft_count(lambda: SpectralTruncation(0.5, "resize")(torch.randn(1, 4, 16, 16))) == 0


@pytest.mark.parametrize("name", list_models(tiny=True))
def test_fft_flops_counted_in_decoder(name):
    size = (64, 64)
    assert count_flops(create_model(name, 5, grid_stride=4, keep=1.0), size).fft == 0
    assert count_flops(create_model(name, 5, grid_stride=4, keep=0.5, truncation="resize"), size).fft == 0
    model = create_model(name, 5, grid_stride=4, keep=0.5, truncation="fft")
    flops = count_flops(model, size)
    assert flops.fft > 0
    model.decoder.truncate.mode = "resize"  # same layers, area averaging instead of the FFT
    no_fft = count_flops(model, size)
    assert flops.decoder - no_fft.decoder == flops.fft  # every FFT FLOP is in the decoder
    assert flops.total - no_fft.total == flops.fft


def test_measure_cost_reports_fft_gflops():
    cost = measure_cost(create_model("dan_tiny", 3, keep=1.0), (32, 32), repeats=1)
    assert cost["fft_gflops"] == 0.0
    model = create_model("dan_tiny", 3, keep=0.5)
    cost = measure_cost(model, (32, 32), repeats=1)
    assert cost["fft_gflops"] == pytest.approx(count_flops(model, (32, 32)).fft / 1e9)
    assert 0 < cost["fft_gflops"] < cost["decoder_gflops"] < cost["gflops"]


# unet_tiny at grid stride 8 = 2**depth has no decoder convolution to truncate: see the next test.
_DECODERS_WITH_CONVOLUTIONS = [
    (name, stride) for name in list_models(tiny=True) for stride in (2, 8) if (name, stride) != ("unet_tiny", 8)
]


@pytest.mark.parametrize(("name", "stride"), _DECODERS_WITH_CONVOLUTIONS)
@pytest.mark.parametrize("truncation", ["fft", "resize"])
def test_decoder_flops_fall_as_keep_squared(name, truncation, stride):
    size = (64, 64)
    base = count_flops(create_model(name, 5, grid_stride=stride, keep=1.0), size)
    for keep in (0.5, 0.25):
        flops = count_flops(create_model(name, 5, grid_stride=stride, keep=keep, truncation=truncation), size)
        # every decoder convolution runs on keep^2 as many positions (or fewer, on a coarse level)
        convolutions = (flops.decoder - flops.fft) / base.decoder
        assert keep**2 * 0.9 <= convolutions <= keep**2 * 1.2, (keep, convolutions)
        assert base.total - flops.total == pytest.approx(base.decoder - flops.decoder)  # the encoder is untouched
    # FFTs included, keep 0.5 cuts the decoder's FLOPs by at least 65%
    assert flops.decoder / base.decoder <= 0.25 * 1.6
    half = count_flops(create_model(name, 5, grid_stride=stride, keep=0.5, truncation=truncation), size)
    assert half.decoder / base.decoder <= 0.35


def test_unet_at_its_coarsest_grid_only_pays_the_fft():
    # unet_tiny (depth 3, width 8) at grid stride 8: the decoder is the 1x1 classifier on the
    # 64-channel bottom (8x8 at 64 px); keep 0.5 runs it on 4x4 and adds the truncation's FFTs
    # (a forward 8x8 and an inverse 4x4 real transform per channel), which cost more than they save.
    flops = count_flops(create_model("unet_tiny", 5, grid_stride=8, keep=0.5), (64, 64))
    classifier = 2 * 64 * 5 * 16
    fft = 64 * (5 * 64 * 6 + 5 * 16 * 4) // 2
    assert flops.fft == fft and flops.decoder == classifier + fft


@pytest.mark.slow
@pytest.mark.parametrize("name,backbone", [("deeplabv3plus", "resnet18"), ("deeplabv3plus", "resnet50"),
                                           ("dan", "resnet18"), ("dan", "resnet50"), ("unet", None)])
@pytest.mark.parametrize("stride", [4, 8])
def test_full_size_decoder_flops_fall_as_keep_squared(name, backbone, stride):
    size = (64, 64)
    dense = count_flops(create_model(name, 5, grid_stride=stride, keep=1.0, backbone=backbone), size)
    half = count_flops(create_model(name, 5, grid_stride=stride, keep=0.5, backbone=backbone), size)
    assert 0.25 * 0.9 <= (half.decoder - half.fft) / dense.decoder <= 0.25 * 1.2
    assert half.decoder / dense.decoder <= 0.35  # FFTs included: a cut of at least 65%


def test_annotation_units_and_mixed_blocks():
    labels = torch.zeros(2, 64, 64, dtype=torch.long)
    labels[:, :, 30:] = 1  # the block column covering pixels 28..31 is mixed: 1 of 16 columns
    ac = annotation_metrics(labels, 4, 2, 255)
    assert ac["annotation_units"] == 16 * 16
    assert ac["relative_annotation_units"] == pytest.approx(1 / 16)
    assert ac["mixed_block_share"] == pytest.approx(1 / 16)
    odd = annotation_metrics(None, 8, 2, 255, size=(60, 70))
    assert odd["annotation_units"] == 8 * 9


def test_cost_with_block_labels():
    labels = torch.randint(0, 3, (2, 32, 32))
    cost = measure_cost(create_model("dan_tiny", 3), (32, 32), block=8, labels=labels, repeats=1)
    assert cost["annotation_units"] == 16
    assert cost["mixed_block_share"] == 1.0  # random labels: every 8x8 block mixes classes
