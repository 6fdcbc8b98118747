"""Segmentation networks with the three segcore knobs built in (docs/design.md, Science).

``create_model(name, num_classes, grid_stride=..., keep=..., truncation=..., backbone=...)`` builds
any registered network; ``list_models()`` names them. Registered: ``deeplabv3plus`` (DeepLabV3+),
``dan`` (Deep Aggregation Net), ``unet`` (U-Net), and their test-sized ``*_tiny`` variants, which
train in seconds on a CPU at 64 px.
"""

from __future__ import annotations

from .backbones import BACKBONES, build_encoder
from .base import SegmentationModel, resize_to
from .dan import DAN
from .deeplab import DeepLabV3Plus
from .registry import create_model, list_models, load_weights, model_entry, register_model, resolve_backbone
from .truncation import TRUNCATIONS, SpectralTruncation, spectral_resize, truncated_size
from .unet import UNet

__all__ = [
    "SegmentationModel",
    "SpectralTruncation",
    "spectral_resize",
    "truncated_size",
    "TRUNCATIONS",
    "BACKBONES",
    "build_encoder",
    "resize_to",
    "DeepLabV3Plus",
    "DAN",
    "UNet",
    "create_model",
    "list_models",
    "register_model",
    "model_entry",
    "resolve_backbone",
    "load_weights",
]

_FULL_BACKBONES = ("resnet18", "resnet50", "resnet101", "mobilenet_v3_large")


@register_model("deeplabv3plus", cls=DeepLabV3Plus, default_backbone="resnet50", backbones=_FULL_BACKBONES)
def deeplabv3plus(num_classes: int, **kwargs) -> DeepLabV3Plus:
    """DeepLabV3+ (ResNet-50, output stride 16, ASPP 256, decoder 256) by default."""
    return DeepLabV3Plus(num_classes, **kwargs)


@register_model("deeplabv3plus_tiny", cls=DeepLabV3Plus, default_backbone="resnet_tiny",
                backbones=("resnet_tiny",), tiny=True)
def deeplabv3plus_tiny(num_classes: int, **kwargs) -> DeepLabV3Plus:
    """DeepLabV3+ on a tiny ResNet (widths 16..128), ASPP 32, decoder 32: for tests."""
    options = dict(aspp_channels=32, low_proj=16, decoder_channels=32)
    options.update(kwargs)
    return DeepLabV3Plus(num_classes, **options)


@register_model("dan", cls=DAN, default_backbone="resnet50", backbones=("resnet18", "resnet50", "resnet101"))
def dan(num_classes: int, **kwargs) -> DAN:
    """Deep Aggregation Net (ResNet-50, four levels of 64 channels, fusion 256) by default."""
    return DAN(num_classes, **kwargs)


@register_model("dan_tiny", cls=DAN, default_backbone="resnet_tiny", backbones=("resnet_tiny",), tiny=True)
def dan_tiny(num_classes: int, **kwargs) -> DAN:
    """DAN on a tiny ResNet, levels of 16 channels, fusion 32: for tests."""
    options = dict(level_channels=16, decoder_channels=32)
    options.update(kwargs)
    return DAN(num_classes, **options)


@register_model("unet", cls=UNet)
def unet(num_classes: int, **kwargs) -> UNet:
    """U-Net, width 64, depth 4 (the paper's) by default."""
    return UNet(num_classes, **kwargs)


@register_model("unet_tiny", cls=UNet, tiny=True)
def unet_tiny(num_classes: int, **kwargs) -> UNet:
    """U-Net, width 8, depth 3: for tests."""
    options = dict(width=8, depth=3)
    options.update(kwargs)
    return UNet(num_classes, **options)
