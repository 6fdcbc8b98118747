"""The count-based grid representation of the fast path.

A stride-``s`` grid is represented by a code per cell: the class when all ``s x s`` pixels hold that
class, ``C`` when all are ignored (or outside the map), ``-1`` when the cell is mixed; only mixed
cells carry a per-class count vector. Coarser grids are pooled from finer ones (codes compared,
counts of mixed children summed), so the work per size is proportional to the number of cells plus
the mixed ones, not to ``C x H x W``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Cells", "pixel_cells", "pool_cells"]


@dataclass
class Cells:
    """The cells of one stride over a batch of label maps."""

    size: int
    code: torch.Tensor  # (N, h, w) int64: class, C (void) or -1 (mixed)
    index: torch.Tensor  # (M,) ascending flat indices of the mixed cells
    counts: torch.Tensor  # (M, C + 1) int64 pixel counts per class, void last


def pixel_cells(codes: torch.Tensor, num_classes: int) -> Cells:
    """The stride-1 grid: every pixel is a pure (or void) cell."""
    empty = torch.zeros(0, dtype=torch.int64, device=codes.device)
    return Cells(1, codes, empty, empty.view(0, 1).expand(0, num_classes + 1))


def _min_max_over_children(children: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest and largest code among the ``factor x factor`` children of each coarse cell;
    ``children`` is ``(N, h, factor, w, factor)``."""
    if factor > 4:
        num_images, height, _, width, _ = children.shape
        flat = children.permute(0, 1, 3, 2, 4).reshape(num_images, height, width, factor * factor)
        return torch.aminmax(flat, dim=-1)
    low = children[:, :, 0, :, 0]
    high = low
    for dy in range(factor):
        for dx in range(factor):
            if dy or dx:
                child = children[:, :, dy, :, dx]
                low = torch.minimum(low, child)
                high = torch.maximum(high, child)
    return low, high


def pool_cells(parent: Cells, factor: int, num_classes: int) -> Cells:
    """Cells of stride ``parent.size * factor`` from the parent grid (padding counts as void)."""
    void = num_classes
    parent_code = parent.code
    num_images, parent_h, parent_w = parent_code.shape
    height, width = -(-parent_h // factor), -(-parent_w // factor)
    if (height * factor, width * factor) != (parent_h, parent_w):
        padded = torch.full(
            (num_images, height * factor, width * factor), void, dtype=parent_code.dtype, device=parent_code.device
        )
        padded[:, :parent_h, :parent_w] = parent_code
        parent_code = padded
    low, high = _min_max_over_children(parent_code.view(num_images, height, factor, width, factor), factor)
    code = torch.where((low == high) & (low >= 0), low, torch.full_like(low, -1))
    index = (code.reshape(-1) < 0).nonzero().squeeze(1)
    num_mixed = index.numel()
    counts = torch.zeros(num_mixed, num_classes + 1, dtype=torch.int64, device=code.device)
    if num_mixed:
        image = index // (height * width)
        within = index % (height * width)
        offsets = torch.arange(factor, device=code.device)
        rows = (within // width)[:, None] * factor + offsets  # (M, f)
        cols = (within % width)[:, None] * factor + offsets
        child = parent_code[image[:, None, None], rows[:, :, None], cols[:, None, :]].reshape(num_mixed, -1)
        owner = torch.arange(num_mixed, device=code.device)[:, None].expand_as(child)
        pure = child >= 0
        key = owner[pure] * (num_classes + 1) + child[pure]
        counts.view(-1).index_add_(0, key, torch.full_like(key, parent.size**2))
        if not bool(pure.all()):
            # Mixed children lie inside the parent grid: find their count rows by flat index.
            flat = ((image[:, None, None] * parent_h + rows[:, :, None]) * parent_w + cols[:, None, :])
            rows_in_parent = torch.searchsorted(parent.index, flat.reshape(num_mixed, -1)[~pure])
            counts.index_add_(0, owner[~pure], parent.counts[rows_in_parent])
    return Cells(parent.size * factor, code, index, counts)
