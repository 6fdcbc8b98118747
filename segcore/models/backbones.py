"""Encoders from torchvision (ResNet-18/50/101, MobileNetV3-Large) and a tiny ResNet for tests,
with the output stride limited by dilation (DeepLab's atrous trick, Chen et al. 2018).

Every encoder maps ``(N, 3, H, W)`` to a list of feature maps from fine to coarse and exposes
``channels`` and ``strides`` of that list. ``weights_backbone`` goes to the torchvision builder
unchanged (``None``: random initialisation, nothing downloaded).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models.resnet import BasicBlock

__all__ = ["RESNETS", "BACKBONES", "build_encoder", "ResNetEncoder", "MobileNetV3Encoder", "TinyResNet"]

RESNETS = ("resnet18", "resnet50", "resnet101", "resnet_tiny")
BACKBONES = RESNETS + ("mobilenet_v3_large",)


def _dilate(module: nn.Module, dilation: int) -> None:
    """Turn every strided conv of ``module`` into a stride-1 conv and dilate its kxk convs, so the
    receptive field grows as before while the feature map keeps its size."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            if m.stride != (1, 1):
                m.stride = (1, 1)
            k = m.kernel_size[0]
            if k > 1:
                m.dilation = (dilation, dilation)
                m.padding = (dilation * (k - 1) // 2, dilation * (k - 1) // 2)


def _limit_stride(stages: list[nn.Module], factors: list[int], output_stride: int, start: int = 1) -> list[int]:
    """Dilate the stages whose down-sampling would take the stride past ``output_stride``;
    returns the stride after each stage."""
    stride, dilation, strides = start, 1, []
    for stage, factor in zip(stages, factors):
        if stride * factor > output_stride:
            dilation *= factor
            _dilate(stage, dilation)
        elif dilation > 1:
            _dilate(stage, dilation)
        else:
            stride *= factor
        strides.append(stride)
    return strides


class TinyResNet(nn.Module):
    """ResNet layout (stem stride 4, four BasicBlock stages) with widths ``(w, 2w, 4w, 8w)`` and one
    block per stage: the backbone of the ``*_tiny`` test variants."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        chans = [width, 2 * width, 4 * width, 8 * width]
        layers, cin = [], width
        for i, c in enumerate(chans):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or cin != c:
                down = nn.Sequential(nn.Conv2d(cin, c, 1, stride=stride, bias=False), nn.BatchNorm2d(c))
            layers.append(nn.Sequential(BasicBlock(cin, c, stride=stride, downsample=down)))
            cin = c
        self.layer1, self.layer2, self.layer3, self.layer4 = layers


class ResNetEncoder(nn.Module):
    """ResNet stem + ``layer1..layer4`` -> the four stage outputs (strides 4, 8, 16, 32 before
    dilation; ``output_stride`` 8 or 16 dilates the last stages)."""

    def __init__(self, name: str = "resnet50", *, output_stride: int = 32, weights_backbone: str | None = None):
        super().__init__()
        if name == "resnet_tiny":
            if weights_backbone is not None:
                raise ValueError("backbone 'resnet_tiny' has no pretrained weights; use weights_backbone=None")
            net = TinyResNet()
        else:
            net = getattr(tvm, name)(weights=weights_backbone)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        layers = [self.layer1, self.layer2, self.layer3, self.layer4]
        self.strides = _limit_stride(layers, [1, 2, 2, 2], output_stride, start=4)
        self.channels = [self._out_channels(layer) for layer in layers]

    @staticmethod
    def _out_channels(layer: nn.Sequential) -> int:
        block = layer[-1]
        return block.conv3.out_channels if hasattr(block, "conv3") else block.conv2.out_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats


class MobileNetV3Encoder(nn.Module):
    """torchvision MobileNetV3-Large ``features`` -> the outputs at strides 4, 8, 16 and the last
    block (stride 32 before dilation; ``output_stride`` 8 or 16 dilates the last stages)."""

    def __init__(self, *, output_stride: int = 32, weights_backbone: str | None = None):
        super().__init__()
        self.features = tvm.mobilenet_v3_large(weights=weights_backbone).features
        blocks = list(self.features)
        # A block down-samples when one of its convs has stride 2 (torchvision marks them _is_cn).
        factors = [2 if any(isinstance(m, nn.Conv2d) and m.stride == (2, 2) for m in b.modules()) else 1
                   for b in blocks]
        strides = _limit_stride(blocks, factors, output_stride)
        # Take the last block before each down-sampling (and the very last block).
        nominal, s = [], 1
        for f in factors:
            s *= f
            nominal.append(s)
        self.taps = [i for i in range(len(blocks)) if nominal[i] >= 4 and (i + 1 == len(blocks) or factors[i + 1] == 2)]
        self.strides = [strides[i] for i in self.taps]
        self.channels = [blocks[i].out_channels for i in self.taps]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        taps = set(self.taps)
        for i, block in enumerate(self.features):
            x = block(x)
            if i in taps:
                feats.append(x)
        return feats


def build_encoder(name: str, *, output_stride: int = 32, weights_backbone: str | None = None) -> nn.Module:
    """Encoder ``name`` (one of :data:`BACKBONES`) with its stride limited to ``output_stride``."""
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be one of [8, 16, 32], got {output_stride!r}")
    if name in RESNETS:
        return ResNetEncoder(name, output_stride=output_stride, weights_backbone=weights_backbone)
    if name == "mobilenet_v3_large":
        return MobileNetV3Encoder(output_stride=output_stride, weights_backbone=weights_backbone)
    raise ValueError(f"unknown backbone {name!r}; valid backbones: {', '.join(BACKBONES)}")
