"""Registrations of the built-in datasets (one builder per name)."""

from __future__ import annotations

from .benchmarks import ADE20K, Cityscapes, VOCSegmentation2012
from .folder import CamVid, ImageMaskFolder
from .registry import register_dataset
from .synthetic import SyntheticScenes


def _require_root(name: str, root) -> None:
    if root is None:
        raise ValueError(f"dataset {name!r} needs a root folder (--root / data_root)")


@register_dataset("synthetic")
def _synthetic(root, split, *, transform=None, labels_only=False, **kwargs):
    return SyntheticScenes(split, transform=transform, **kwargs)


@register_dataset("camvid")
def _camvid(root, split, *, transform=None, labels_only=False, **kwargs):
    _require_root("camvid", root)
    return CamVid(root, split, transform=transform, labels_only=labels_only, **kwargs)


@register_dataset("folder")
def _folder(root, split, *, transform=None, labels_only=False, num_classes=None, ignore_index=255, **kwargs):
    """``root/images/{split}`` and ``root/masks/{split}``; ``num_classes`` is required."""
    from pathlib import Path

    _require_root("folder", root)
    if num_classes is None:
        raise ValueError("dataset 'folder' needs num_classes")
    root = Path(root)
    return ImageMaskFolder(
        root / "masks" / split,
        None if labels_only else root / "images" / split,
        num_classes=num_classes,
        ignore_index=ignore_index,
        transform=transform,
        **kwargs,
    )


@register_dataset("cityscapes")
def _cityscapes(root, split, *, transform=None, labels_only=False, **kwargs):
    _require_root("cityscapes", root)
    return Cityscapes(root, split, transform=transform, labels_only=labels_only, **kwargs)


@register_dataset("voc")
def _voc(root, split, *, transform=None, labels_only=False, **kwargs):
    """PASCAL VOC 2012 (``root`` holds ``VOCdevkit/VOC2012``)."""
    _require_root("voc", root)
    return VOCSegmentation2012(root, split, transform=transform, labels_only=labels_only, **kwargs)


@register_dataset("ade20k")
def _ade20k(root, split, *, transform=None, labels_only=False, **kwargs):
    _require_root("ade20k", root)
    return ADE20K(root, split, transform=transform, labels_only=labels_only, **kwargs)
