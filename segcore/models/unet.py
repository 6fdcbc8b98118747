"""U-Net (Ronneberger, Fischer, Brox: "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015) with configurable width and depth.

Encoder: ``depth`` max-pool + double-conv stages (widths ``width * 2**k``) -> features at strides
``1, 2, ..., 2**depth``. Decoder: from the bottom up, bilinear up-sampling, concatenation with the
skip and a double conv per level, stopping at the level of the logit grid (so the valid grid
strides are ``1 .. 2**depth``). Every decoder input is truncated by ``keep``, so the whole up-path
runs on maps ``keep`` times smaller along each axis.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import SegmentationModel, conv_bn_relu, powers_of_two, resize_to

__all__ = ["UNet"]


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(cin, cout), conv_bn_relu(cout, cout))


class UNetEncoder(nn.Module):
    def __init__(self, width: int, depth: int):
        super().__init__()
        self.channels = [width * 2**k for k in range(depth + 1)]
        self.inc = double_conv(3, width)
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), double_conv(self.channels[k], self.channels[k + 1]))
            for k in range(depth)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.inc(x)]
        for down in self.down:
            feats.append(down(feats[-1]))
        return feats


class UNetDecoder(nn.Module):
    """Up-path from level ``depth`` to level ``log2(grid_stride)``, then the 1x1 classifier."""

    def __init__(self, channels: list[int], num_classes: int, stop_level: int, truncate: nn.Module):
        super().__init__()
        self.truncate = truncate
        self.stop_level = stop_level
        depth = len(channels) - 1
        self.up = nn.ModuleList(
            double_conv(channels[k + 1] + channels[k], channels[k]) for k in range(depth - 1, stop_level - 1, -1)
        )
        self.classifier = nn.Conv2d(channels[stop_level], num_classes, 1)

    def forward(self, features: list[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        x = self.truncate(features[-1])
        for conv, skip in zip(self.up, reversed(features[self.stop_level:-1])):
            skip = self.truncate(skip)
            x = conv(torch.cat([resize_to(x, skip.shape[-2:]), skip], dim=1))
        return resize_to(self.classifier(x), grid)


class UNet(SegmentationModel):
    """U-Net with the three segcore knobs.

    Args:
        num_classes: output classes ``C``.
        grid_stride: logit grid stride, a power of two up to ``2**depth``.
        keep, truncation: spectral truncation of the decoder's inputs.
        width: channels of the first level (doubling per level; paper: 64).
        depth: number of down-sampling stages (paper: 4).
    """

    def __init__(self, num_classes: int, *, grid_stride: int = 1, keep: float = 1.0, truncation: str = "fft",
                 width: int = 64, depth: int = 4):
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"UNet width must be an integer >= 1, got {width!r}")
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 6:
            raise ValueError(f"UNet depth must be an integer in 1..6, got {depth!r}")
        self._set_knobs(num_classes, grid_stride, keep, truncation, powers_of_two(2**depth))
        self.width, self.depth = width, depth
        self.encoder = UNetEncoder(width, depth)
        stop = grid_stride.bit_length() - 1
        self.decoder = UNetDecoder(self.encoder.channels, num_classes, stop, self.make_truncation())
