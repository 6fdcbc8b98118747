"""One stacked batch of same-size label maps through the analysis: value check, class histogram,
energy sums, then the grid / block statistics of every size."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from segcore.spectral.accumulator import Accumulator
from segcore.spectral.cells import pixel_cells, pool_cells
from segcore.spectral.energy import accumulate_energy, valid_mask
from segcore.spectral.oracle import accumulate_cells, accumulate_size_dense

__all__ = ["process_batch"]


def _void_coded(labels: torch.Tensor, num_classes: int, ignore_index: int | None) -> torch.Tensor:
    """The labels with every ignored pixel set to ``C``; a value that is neither a class nor the
    ignore index raises."""
    valid = valid_mask(labels, num_classes, ignore_index)
    bad = ~valid
    if ignore_index is not None:
        bad &= labels != ignore_index
    if bool(bad.any()):
        values = sorted({int(v) for v in labels[bad].unique()[:5]})
        raise ValueError(
            f"label value(s) {values} outside the classes (valid: 0..{num_classes - 1}, ignore {ignore_index})"
        )
    return torch.where(valid, labels, torch.full_like(labels, num_classes))


def process_batch(
    acc: Accumulator, labels: torch.Tensor, ignore_index: int | None, sizes: Sequence[int], method: str
) -> None:
    """Add a batch ``labels (N, H, W)`` to ``acc``: ``method`` ``"fast"`` pools the count-based
    cells from size to size, ``"dense"`` follows the plain definitions for every size."""
    num_classes = acc.num_classes
    codes = _void_coded(labels, num_classes, ignore_index)
    num_images, height, width = labels.shape
    acc.num_labels += num_images
    key = f"{height}x{width}"
    acc.image_sizes[key] = acc.image_sizes.get(key, 0) + num_images
    # Per-image class histogram: which planes need an FFT, and the class shares.
    image_key = torch.arange(num_images, device=labels.device)[:, None, None] * (num_classes + 1) + codes
    class_hist = torch.bincount(image_key.reshape(-1), minlength=num_images * (num_classes + 1))
    class_hist = class_hist.view(num_images, num_classes + 1)[:, :num_classes]
    acc.class_pixels += class_hist.sum(dim=0)
    accumulate_energy(acc, codes, class_hist)
    if method == "dense":
        for size in sizes:
            accumulate_size_dense(acc, codes, size)
        return
    class_totals = class_hist.sum(dim=0)
    small_codes = codes.to(torch.uint8 if num_classes < 255 else torch.int16)
    levels = {1: pixel_cells(codes.to(torch.int16), num_classes)}
    for size in sizes:
        # Pool from the coarsest finer size that divides this one (1 always does).
        parent = max(p for p in levels if size % p == 0 and p < size) if size > 1 else 1
        cells = levels[1] if size == 1 else pool_cells(levels[parent], size // parent, num_classes)
        levels[size] = cells
        accumulate_cells(acc, cells, small_codes, class_totals)
