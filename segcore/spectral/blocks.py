"""Block annotation: its cost (labelled units, mixed blocks) summed over a split, and the per-block
summary. The oracle of block size ``b`` is the grid oracle of stride ``b`` (hard = majority +
nearest, soft = proportions + bilinear), so its confusions come from :mod:`segcore.spectral.oracle`;
the per-batch definitions of the cost are :func:`segcore.labels.annotation_cost`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from segcore.metrics import scores_from_confusion
from segcore.spectral.accumulator import Accumulator, SizeStats

__all__ = ["add_block_counts", "block_summary"]


def add_block_counts(
    stats: SizeStats, class_counts: torch.Tensor, *, cells: int, pixels: int, pure_labelled: int = 0
) -> None:
    """Add one batch's annotation counts.

    ``class_counts``: per-cell class counts with the classes on dim 1 (``(N, C, h, w)`` for every
    cell, or ``(M, C)`` for the mixed cells only, the pure ones given as ``pure_labelled``, the
    number of cells holding one class); ``cells``: cells in the batch; ``pixels``: its pixels,
    ignored included.
    """
    present = (class_counts > 0).sum(dim=1)
    stats.pixels += pixels
    stats.cells += cells
    stats.labelled_cells += pure_labelled + int((present > 0).sum())
    stats.mixed_cells += int((present > 1).sum())


def block_summary(acc: Accumulator, blocks: Sequence[int]) -> dict[str, list[float]]:
    """Per block size: oracle mIoU (hard, soft), annotation units per image, units relative to
    dense labels, and the share of labelled blocks holding more than one class."""
    summary: dict[str, list[float]] = {
        "block_oracle_miou_hard": [], "block_oracle_miou_soft": [], "annotation_units_per_image": [],
        "annotation_relative_units": [], "mixed_block_share": [],
    }
    for block in blocks:
        stats = acc.stats[block]
        summary["block_oracle_miou_hard"].append(scores_from_confusion(stats.conf_majority).miou)
        summary["block_oracle_miou_soft"].append(scores_from_confusion(stats.conf_soft).miou)
        summary["annotation_units_per_image"].append(stats.cells / acc.num_labels)
        summary["annotation_relative_units"].append(stats.cells / stats.pixels)
        summary["mixed_block_share"].append(stats.mixed_cells / stats.labelled_cells if stats.labelled_cells else 0.0)
    return summary
