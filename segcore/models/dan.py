"""DAN, the Deep Aggregation Net (Kuo, Lin, Lin, Huang: "Deep Aggregation Net for Land Cover
Classification", CVPR Workshops 2018).

A ResNet encoder whose four stage outputs (multi-level features) are each reduced by a 1x1
convolution, brought to a common resolution — here the logit grid, truncated by ``keep`` — and
aggregated by concatenation before a 3x3 fusion convolution and the 1x1 classifier. A level finer
than the truncated grid is brought down before its reduction (the paper reduces every level at its
own resolution), so that ``keep`` cuts the reductions' FLOPs as well as the fusion's.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbones import build_encoder
from .base import SegmentationModel, conv_bn_relu, powers_of_two, resize_to

__all__ = ["DAN"]


class DANDecoder(nn.Module):
    """Multi-level features -> grid -> truncate -> per-level 1x1 reduction -> concat -> fuse.

    Every convolution runs on a map no larger than the truncated grid ``keep * grid``: a level
    larger than it is resized to the grid and truncated before its reduction; a coarser level is
    reduced at its own size and interpolated up (:meth:`SpectralTruncation.shrink_to_grid`).
    """

    def __init__(self, in_channels: list[int], num_classes: int, *, level_channels: int, channels: int,
                 truncate: nn.Module):
        super().__init__()
        self.reduce = nn.ModuleList(conv_bn_relu(c, level_channels, kernel=1) for c in in_channels)
        self.truncate = truncate
        self.fuse = conv_bn_relu(level_channels * len(in_channels), channels)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        # Truncate before the 1x1 reductions, not after: the reductions then run on the truncated
        # grid (or on a coarse level's own smaller map), so their FLOPs fall with keep**2 too.
        size = self.truncate.output_size(*grid)
        levels = [resize_to(reduce(self.truncate.shrink_to_grid(f, grid)), size)
                  for reduce, f in zip(self.reduce, features)]
        x = self.fuse(torch.cat(levels, dim=1))
        return resize_to(self.classifier(x), grid)


class DAN(SegmentationModel):
    """Deep Aggregation Net with the three segcore knobs.

    Args:
        num_classes: output classes ``C``.
        grid_stride: logit grid stride, a power of two up to ``output_stride``.
        keep, truncation: spectral truncation of the aggregated decoder features.
        backbone: ``resnet18|resnet50|resnet101|resnet_tiny``.
        output_stride: encoder output stride, 8, 16 or 32 (no dilation).
        level_channels: channels of each reduced level; decoder_channels: fusion width.
        weights_backbone: torchvision weights name for the backbone.
    """

    def __init__(self, num_classes: int, *, grid_stride: int = 4, keep: float = 1.0, truncation: str = "fft",
                 backbone: str = "resnet50", output_stride: int = 32, level_channels: int = 64,
                 decoder_channels: int = 256, weights_backbone: str | None = None):
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"DAN output_stride must be one of [8, 16, 32], got {output_stride!r}")
        self._set_knobs(num_classes, grid_stride, keep, truncation, powers_of_two(output_stride))
        self.backbone_name, self.output_stride = backbone, output_stride
        self.encoder = build_encoder(backbone, output_stride=output_stride, weights_backbone=weights_backbone)
        self.decoder = DANDecoder(self.encoder.channels, num_classes, level_channels=level_channels,
                                  channels=decoder_channels, truncate=self.make_truncation())
