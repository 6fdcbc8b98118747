"""DeepLabV3+ (Chen, Zhu, Papandreou, Schroff, Adam: "Encoder-Decoder with Atrous Separable
Convolution for Semantic Image Segmentation", ECCV 2018).

Encoder: a torchvision backbone (ResNet-18/50/101 or MobileNetV3-Large) with output stride 8 or 16
and ASPP (torchvision's module) on its last feature map. Decoder: the stride-4 low-level features
projected to a few channels, both inputs brought to the logit grid, spectrally truncated by
``keep``, concatenated and fused by two 3x3 convolutions before the 1x1 classifier.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP

from .backbones import build_encoder
from .base import SegmentationModel, conv_bn_relu, powers_of_two, resize_to

__all__ = ["DeepLabV3Plus"]


class DeepLabV3PlusEncoder(nn.Module):
    """Backbone -> ``[low-level (stride 4), ASPP output (stride output_stride)]``."""

    def __init__(self, backbone: nn.Module, aspp_channels: int, rates: tuple[int, int, int]):
        super().__init__()
        self.backbone = backbone
        self.aspp = ASPP(backbone.channels[-1], list(rates), out_channels=aspp_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.backbone(x)
        return [feats[0], self.aspp(feats[-1])]


class DeepLabV3PlusDecoder(nn.Module):
    """``[low, high]`` -> logits on the grid; every convolution, the low-level projection included,
    runs on a map no larger than the truncated grid (:meth:`SpectralTruncation.shrink_to_grid`)."""

    def __init__(self, low_channels: int, high_channels: int, num_classes: int, *, low_proj: int,
                 channels: int, truncate: nn.Module):
        super().__init__()
        self.project = conv_bn_relu(low_channels, low_proj, kernel=1)
        self.truncate = truncate
        self.fuse = nn.Sequential(conv_bn_relu(low_proj + high_channels, channels), conv_bn_relu(channels, channels))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        low, high = features
        size = self.truncate.output_size(*grid)
        low = resize_to(self.project(self.truncate.shrink_to_grid(low, grid)), size)
        high = resize_to(self.truncate.shrink_to_grid(high, grid), size)
        x = self.fuse(torch.cat([low, high], dim=1))
        return resize_to(self.classifier(x), grid)


class DeepLabV3Plus(SegmentationModel):
    """DeepLabV3+ with the three segcore knobs.

    Args:
        num_classes: output classes ``C``.
        grid_stride: logit grid stride, a power of two up to ``output_stride``.
        keep, truncation: spectral truncation of the decoder's feature maps.
        backbone: ``resnet18|resnet50|resnet101|mobilenet_v3_large|resnet_tiny``.
        output_stride: encoder output stride, 8 or 16 (ASPP rates 12/24/36 or 6/12/18).
        aspp_channels, low_proj, decoder_channels: widths (paper: 256, 48, 256).
        weights_backbone: torchvision weights name for the backbone.
    """

    def __init__(self, num_classes: int, *, grid_stride: int = 4, keep: float = 1.0, truncation: str = "fft",
                 backbone: str = "resnet50", output_stride: int = 16, aspp_channels: int = 256,
                 low_proj: int = 48, decoder_channels: int = 256, weights_backbone: str | None = None):
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"DeepLabV3Plus output_stride must be one of [8, 16], got {output_stride!r}")
        self._set_knobs(num_classes, grid_stride, keep, truncation, powers_of_two(output_stride))
        self.backbone_name, self.output_stride = backbone, output_stride
        encoder = build_encoder(backbone, output_stride=output_stride, weights_backbone=weights_backbone)
        rates = (6, 12, 18) if output_stride == 16 else (12, 24, 36)
        self.encoder = DeepLabV3PlusEncoder(encoder, aspp_channels, rates)
        self.decoder = DeepLabV3PlusDecoder(encoder.channels[0], aspp_channels, num_classes, low_proj=low_proj,
                                            channels=decoder_channels, truncate=self.make_truncation())
