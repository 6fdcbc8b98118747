"""Resampling of label maps: to a coarse grid, to block annotation, and back up.

Every function works on batches of integer label maps ``(N, H, W)`` (a single ``(H, W)`` map is
accepted and the batch axis dropped again) of any size, not only multiples of the stride: the grid
has ``ceil(H / s) x ceil(W / s)`` cells and the last row/column of cells covers fewer pixels. Pixels
equal to ``ignore_index`` never vote; a cell with no valid pixel is itself ``ignore_index`` (hard)
or an all-zero proportion vector (soft).

Grid geometry (docs/design.md, Science): cell ``(i, j)`` of a stride-``s`` grid covers pixels
``[i*s, (i+1)*s) x [j*s, (j+1)*s)`` and its centre sits at pixel coordinate ``(i + 0.5) * s - 0.5``;
:func:`upsample_proportions` and :func:`upsample_labels` respect exactly that alignment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "max_stride",
    "check_stride",
    "class_counts",
    "grid_shape",
    "grid_proportions",
    "grid_majority",
    "block_annotation",
    "upsample_proportions",
    "upsample_labels",
    "annotation_cost",
    "AnnotationCost",
]

BlockMode = Literal["hard", "soft"]


def _batched(labels: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if labels.dim() == 2:
        return labels.unsqueeze(0), True
    if labels.dim() != 3:
        raise ValueError(f"labels must have shape (H, W) or (N, H, W), got {tuple(labels.shape)}")
    return labels, False


def max_stride(height: int, width: int) -> int:
    """The largest grid stride / block size over an ``height x width`` map: ``max(H, W)``.

    The one rule for every layer (training configs, the spectral analysis, the CLI). At
    ``s = max(H, W)`` the grid is a single cell holding the whole map; every larger stride gives that
    same ``1 x 1`` grid and so says nothing new. Strides between ``min(H, W)`` and ``max(H, W)``
    still split the long side into ``ceil(max(H, W) / s)`` cells: they are distinct, well-defined
    grids (cells are clipped at the map's edge on every axis, as for any stride that does not
    divide the size), so they are allowed.
    """
    return max(height, width)


def check_stride(stride: int, height: int, width: int, *, name: str = "stride") -> int:
    """Validate a grid stride / block size against an ``height x width`` map (from 1 to
    :func:`max_stride`); return it as int."""
    if isinstance(stride, bool) or int(stride) != stride:
        raise ValueError(f"{name} must be an integer >= 1, got {stride!r}")
    stride = int(stride)
    if stride < 1:
        raise ValueError(f"{name} must be >= 1, got {stride}")
    largest = max_stride(height, width)
    if stride > largest:
        raise ValueError(
            f"{name}={stride} is larger than the {height}x{width} label map; valid values are 1..{largest}"
        )
    return stride


def grid_shape(height: int, width: int, stride: int) -> tuple[int, int]:
    """Shape ``(ceil(H / s), ceil(W / s))`` of the stride-``s`` grid over an ``H x W`` map."""
    return math.ceil(height / stride), math.ceil(width / stride)


def class_counts(
    labels: torch.Tensor, stride: int, num_classes: int, ignore_index: int | None = 255
) -> torch.Tensor:
    """Per-cell class histogram of a stride-``s`` grid: ``(N, C, h, w)`` int64 counts.

    One ``bincount`` over ``(image, class, cell)`` keys: O(N*H*W) work and memory, independent of
    the number of classes (a one-hot + pooling would cost O(N*C*H*W)).
    """
    labels, _ = _batched(labels)
    n, height, width = labels.shape
    stride = check_stride(stride, height, width)
    gh, gw = grid_shape(height, width, stride)
    device = labels.device
    rows = torch.arange(height, device=device) // stride
    cols = torch.arange(width, device=device) // stride
    cell = (rows[:, None] * gw + cols[None, :]).expand(n, height, width)
    image = torch.arange(n, device=device)[:, None, None]
    labels = labels.long()
    valid = (labels >= 0) & (labels < num_classes)
    if ignore_index is not None:
        valid &= labels != ignore_index
    key = (image * num_classes + labels) * (gh * gw) + cell
    counts = torch.bincount(key[valid], minlength=n * num_classes * gh * gw)
    return counts.view(n, num_classes, gh, gw)


def grid_proportions(
    labels: torch.Tensor, stride: int, num_classes: int, ignore_index: int | None = 255
) -> torch.Tensor:
    """Class proportions per grid cell, ``(N, C, h, w)`` float32 (area average of the one-hot
    planes over the valid pixels of each cell; all zero where a cell has no valid pixel)."""
    labels, single = _batched(labels)
    counts = class_counts(labels, stride, num_classes, ignore_index).float()
    total = counts.sum(dim=1, keepdim=True)
    props = counts / total.clamp_min(1.0)
    return props[0] if single else props


def grid_majority(
    labels: torch.Tensor, stride: int, num_classes: int, ignore_index: int | None = 255
) -> torch.Tensor:
    """Majority label per grid cell, ``(N, h, w)`` int64; ties go to the lower class index and
    cells without a valid pixel get ``ignore_index``."""
    labels, single = _batched(labels)
    counts = class_counts(labels, stride, num_classes, ignore_index)
    major = counts.argmax(dim=1)
    if ignore_index is not None:
        major = torch.where(counts.sum(dim=1) > 0, major, torch.full_like(major, ignore_index))
    return major[0] if single else major


def block_annotation(
    labels: torch.Tensor,
    block: int,
    num_classes: int,
    ignore_index: int | None = 255,
    mode: BlockMode = "hard",
) -> torch.Tensor:
    """Block-wise weak annotation of block size ``b`` (docs/design.md, Science): what an annotator would give
    if asked for one label (``hard``: the majority) or the class proportions (``soft``) per
    ``b x b`` block. Returned on the block grid: ``(N, h, w)`` labels or ``(N, C, h, w)``."""
    if mode == "hard":
        return grid_majority(labels, block, num_classes, ignore_index)
    if mode == "soft":
        return grid_proportions(labels, block, num_classes, ignore_index)
    raise ValueError(f"block_mode must be 'hard' or 'soft', got {mode!r}")


def upsample_proportions(
    props: torch.Tensor, stride: int, size: tuple[int, int], mode: str = "bilinear"
) -> torch.Tensor:
    """Up-sample grid-cell values ``(N, C, h, w)`` back to pixels ``(N, C, H, W)``.

    Interpolates to the padded size ``(h*s, w*s)`` (so cell centres land at ``(i + 0.5) * s - 0.5``)
    and crops to ``size``; works for logits as well as proportions.
    """
    single = props.dim() == 3
    if single:
        props = props.unsqueeze(0)
    height, width = size
    gh, gw = props.shape[-2:]
    if (gh, gw) != grid_shape(height, width, stride):
        raise ValueError(
            f"grid of shape {(gh, gw)} does not match stride {stride} over {height}x{width} "
            f"(expected {grid_shape(height, width, stride)})"
        )
    if stride == 1:
        out = props
    elif mode == "nearest":
        out = props.repeat_interleave(stride, dim=-2).repeat_interleave(stride, dim=-1)
    else:
        out = F.interpolate(props, size=(gh * stride, gw * stride), mode=mode, align_corners=False)
    out = out[..., :height, :width]
    return out[0] if single else out


def upsample_labels(grid_labels: torch.Tensor, stride: int, size: tuple[int, int]) -> torch.Tensor:
    """Nearest up-sampling of grid labels ``(N, h, w)`` to ``(N, H, W)``: every pixel takes the
    label of the cell that contains it."""
    height, width = size
    if grid_labels.shape[-2:] != grid_shape(height, width, stride):
        raise ValueError(
            f"grid of shape {tuple(grid_labels.shape[-2:])} does not match stride {stride} over "
            f"{height}x{width} (expected {grid_shape(height, width, stride)})"
        )
    out = grid_labels.repeat_interleave(stride, dim=-2).repeat_interleave(stride, dim=-1)
    return out[..., :height, :width]


@dataclass(frozen=True)
class AnnotationCost:
    """Labelling cost of block annotation relative to dense labels.

    ``units_per_image``: labelled units per image, ``ceil(H/b) * ceil(W/b)``;
    ``relative_units``: that over ``H * W``; ``mixed_block_share``: share of blocks (with at least
    one valid pixel) that contain more than one class — where a hard block label is wrong somewhere.
    """

    block: int
    units_per_image: float
    relative_units: float
    mixed_block_share: float


def annotation_cost(
    labels: torch.Tensor, block: int, num_classes: int, ignore_index: int | None = 255
) -> AnnotationCost:
    """Annotation units and share of mixed blocks for block size ``b`` over a batch of labels."""
    labels, _ = _batched(labels)
    _, height, width = labels.shape
    counts = class_counts(labels, block, num_classes, ignore_index)
    present = (counts > 0).sum(dim=1)
    labelled = present > 0
    mixed = (present > 1).sum().item()
    share = mixed / max(int(labelled.sum().item()), 1)
    gh, gw = grid_shape(height, width, block)
    return AnnotationCost(
        block=int(block),
        units_per_image=float(gh * gw),
        relative_units=float(gh * gw) / float(height * width),
        mixed_block_share=float(share),
    )
