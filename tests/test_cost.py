"""segcore.cost: exact keys, known FLOP counts, decoder FLOPs ~ keep^2, annotation units."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segcore.cost import annotation_metrics, count_flops, count_params, measure_cost
from segcore.models import SegmentationModel, create_model, list_models
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
    total, decoder = count_flops(model, (10, 12))
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


@pytest.mark.parametrize("name", list_models(tiny=True))
@pytest.mark.parametrize("truncation", ["fft", "resize"])
def test_decoder_flops_fall_as_keep_squared(name, truncation):
    stride = 2
    size = (64, 64)
    base = count_flops(create_model(name, 5, grid_stride=stride, keep=1.0), size)
    for keep in (0.5, 0.25):
        total, decoder = count_flops(create_model(name, 5, grid_stride=stride, keep=keep, truncation=truncation), size)
        ratio = decoder / base[1]
        # the decoder's convolutions run on keep^2 as many positions (plus small un-truncated parts)
        assert keep**2 * 0.9 <= ratio <= keep**2 * 1.35, (keep, ratio)
        assert base[0] - total == pytest.approx(base[1] - decoder)  # the encoder is untouched


@pytest.mark.slow
@pytest.mark.parametrize("name", ["deeplabv3plus", "dan", "unet"])
def test_full_size_decoder_flops_fall_as_keep_squared(name):
    size = (64, 64)
    _, dense = count_flops(create_model(name, 5, grid_stride=4, keep=1.0, backbone="resnet18" if name != "unet" else None), size)
    _, half = count_flops(create_model(name, 5, grid_stride=4, keep=0.5, backbone="resnet18" if name != "unet" else None), size)
    assert 0.25 * 0.9 <= half / dense <= 0.25 * 1.35


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
