"""Joint image/label transforms, built on ``torchvision.transforms.v2`` (labels are ``Mask``
tv_tensors, so resizing uses nearest neighbour and padding uses the ignore index)."""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

__all__ = ["SegmentationTransform", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SegmentationTransform:
    """Resize (``size`` as (H, W) or a ``scale`` factor), optional random crop and flip, then
    convert the image to float and normalise. Returns ``(image (3,H,W) float, label (H,W) int64)``.
    """

    def __init__(
        self,
        *,
        size: tuple[int, int] | None = None,
        scale: float | None = None,
        crop: tuple[int, int] | None = None,
        hflip: bool = False,
        normalize: bool = True,
        ignore_index: int | None = 255,
    ):
        if size is not None and scale is not None:
            raise ValueError("give either size or scale, not both")
        if scale is not None and not 0 < scale <= 4:
            raise ValueError(f"scale must be in (0, 4], got {scale}")
        self.size, self.scale, self.crop = size, scale, crop
        fill = {tv_tensors.Image: 0, tv_tensors.Mask: 255 if ignore_index is None else ignore_index}
        ops = []
        if crop is not None:
            ops.append(v2.RandomCrop(crop, pad_if_needed=True, fill=fill))
        if hflip:
            ops.append(v2.RandomHorizontalFlip())
        ops.append(v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True))
        if normalize:
            ops.append(v2.Normalize(IMAGENET_MEAN, IMAGENET_STD))
        self.ops = v2.Compose(ops)

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img = tv_tensors.Image(image)
        mask = tv_tensors.Mask(label)
        size = self.size
        if self.scale is not None and self.scale != 1:
            h, w = image.shape[-2:]
            size = (max(1, round(h * self.scale)), max(1, round(w * self.scale)))
        if size is not None and tuple(size) != tuple(image.shape[-2:]):
            img = v2.functional.resize(img, list(size), antialias=True)
            mask = v2.functional.resize(mask, list(size))
        img, mask = self.ops(img, mask)
        return img.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).long()
