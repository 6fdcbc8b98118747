"""Oracle mIoU and CE floor of a grid, summed batch by batch into an :class:`Accumulator`.

The oracle of a stride-``s`` grid is the best any network predicting on that grid could do
(docs/design.md, Science): class proportions per cell, bilinearly up-sampled, arg-max ("soft");
or the majority label per cell, nearest up-sampling ("majority"). The CE floor is the cross-entropy
of the dense labels against the up-sampled proportions.

Two paths give the same numbers: :func:`accumulate_size_dense` follows the plain definitions in
:mod:`segcore.labels` (``O(N C H W)`` per size, the reference), :func:`accumulate_cells` works from
the count-based cells of :mod:`segcore.spectral.cells` and the exact-integer soft oracle of
:mod:`segcore.spectral.soft_oracle`.
"""

from __future__ import annotations

import torch

from segcore import labels as seg_labels
from segcore.spectral.accumulator import Accumulator
from segcore.spectral.blocks import add_block_counts
from segcore.spectral.cells import Cells
from segcore.spectral.soft_oracle import soft_oracle_quads

__all__ = ["confusion", "accumulate_size_dense", "accumulate_cells"]


def confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(C, C)`` int64 confusion, true rows; pixels with ``target < 0`` are not scored."""
    keep = target >= 0
    key = target[keep] * num_classes + pred[keep]
    return torch.bincount(key, minlength=num_classes * num_classes).view(num_classes, num_classes)


def accumulate_size_dense(acc: Accumulator, codes: torch.Tensor, size: int) -> None:
    """Grid / block statistics of one size for a batch, by the plain definitions in labels.py.

    ``codes (N, H, W)`` are the labels with every ignored pixel set to ``C``.
    """
    num_classes = acc.num_classes
    stats = acc.stats[size]
    num_images, height, width = codes.shape
    valid = codes < num_classes
    target = torch.where(valid, codes, torch.full_like(codes, -1))  # -1: never scored
    if size == 1:
        # Stride 1 reproduces the labels: the oracle is exact and the CE floor is zero.
        diag = torch.diag(torch.bincount(codes[valid], minlength=num_classes))
        stats.conf_soft += diag
        stats.conf_majority += diag
        no_mixed_cells = torch.zeros(0, num_classes, dtype=torch.int64, device=codes.device)
        add_block_counts(stats, no_mixed_cells, cells=num_images * height * width,
                         pixels=num_images * height * width, pure_labelled=int(valid.sum()))
        return
    counts = seg_labels.class_counts(codes, size, num_classes, ignore_index=None)
    add_block_counts(stats, counts, cells=counts[:, 0].numel(), pixels=num_images * height * width)
    total = counts.sum(dim=1, keepdim=True)
    proportions = counts.to(torch.float32) / total.clamp_min(1)
    upsampled = seg_labels.upsample_proportions(proportions, size, (height, width))
    stats.conf_soft += confusion(upsampled.argmax(dim=1), target, num_classes)
    mass = upsampled.sum(dim=1)
    p_true = upsampled.gather(1, target.clamp_min(0).unsqueeze(1)).squeeze(1) / mass.clamp_min(1e-30)
    stats.ce_sum += float(-torch.log(p_true[valid].double().clamp_min(1e-30)).sum())
    majority = counts.argmax(dim=1)
    stats.conf_majority += confusion(seg_labels.upsample_labels(majority, size, (height, width)), target, num_classes)


def accumulate_cells(
    acc: Accumulator, cells: Cells, small_codes: torch.Tensor, class_totals: torch.Tensor
) -> None:
    """Majority oracle, soft oracle, CE floor and annotation cost of one size from its cells.

    ``small_codes (N, H, W)``: the dense labels, void = C; ``class_totals (C,)``: valid pixels per
    class in the batch.
    """
    num_classes = acc.num_classes
    stride = cells.size
    stats = acc.stats[stride]
    num_images, height, width = small_codes.shape
    code = cells.code.reshape(-1)
    pure_hist = torch.bincount(code[(code >= 0) & (code < num_classes)], minlength=num_classes)
    mixed_counts = cells.counts[:, :num_classes]
    add_block_counts(stats, mixed_counts, cells=code.numel(), pixels=num_images * height * width,
                     pure_labelled=int(pure_hist.sum()))
    # Majority + nearest: a pure cell is right on all its s*s pixels; a mixed cell's majority
    # collects each class's count in its column.
    conf = torch.diag(pure_hist * (stride * stride))
    if mixed_counts.shape[0]:
        majority = mixed_counts.argmax(dim=1)  # first maximum: ties go to the lower class, as labels.py
        key = torch.arange(num_classes, device=code.device)[None, :] * num_classes + majority[:, None]
        conf.view(-1).index_add_(0, key.reshape(-1), mixed_counts.reshape(-1))
    stats.conf_majority += conf
    if stride == 1:
        stats.conf_soft += torch.diag(class_totals)
        return
    conf_soft, ce = soft_oracle_quads(cells, small_codes, num_classes)
    # Every valid pixel outside the evaluated quads is predicted right.
    stats.conf_soft += conf_soft + torch.diag(class_totals - conf_soft.sum(dim=1))
    stats.ce_sum += ce
