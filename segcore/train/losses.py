"""The training loss under the knobs: targets on the logit grid or at full size, hard or soft.

- ``grid_stride`` ``s``: the network predicts logits on the stride-``s`` grid. ``loss_at="full"``
  up-samples them bilinearly to the label size for the cross-entropy; ``loss_at="grid"`` compares
  them on the grid with soft targets, the class proportions of each cell
  (:func:`segcore.labels.grid_proportions`).
- ``block`` ``b`` / ``block_mode``: the training labels are replaced by block annotation
  (:func:`segcore.labels.block_annotation`: majority label or class proportions per ``b x b``
  block, taken after cropping) before the loss; validation always scores dense labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segcore.config.trial import TrialConfig
from segcore.labels import block_annotation, grid_proportions, upsample_labels, upsample_proportions

__all__ = ["training_targets", "soft_cross_entropy", "training_loss"]


def _ignore(ignore_index: int | None) -> int:
    return -100 if ignore_index is None else ignore_index


def _cell_proportions(pixel_props: torch.Tensor, stride: int) -> torch.Tensor:
    """Average per-pixel class proportions ``(N, C, H, W)`` over the cells of the stride-``s``
    grid (``(N, C, ceil(H/s), ceil(W/s))``), renormalised over the pixels that carry a label."""
    height, width = pixel_props.shape[-2:]
    pad_h, pad_w = (-height) % stride, (-width) % stride
    sums = F.avg_pool2d(F.pad(pixel_props, (0, pad_w, 0, pad_h)), stride, divisor_override=1)
    return sums / sums.sum(dim=1, keepdim=True).clamp_min(1e-12)


def training_targets(
    labels: torch.Tensor, cfg: TrialConfig, num_classes: int, ignore_index: int | None
) -> torch.Tensor:
    """The training target of a batch of dense labels ``(N, H, W)`` under the knobs.

    Returns hard labels ``(N, H, W)`` (``loss_at="full"`` with dense or hard block labels) or
    soft proportions: ``(N, C, H, W)`` per pixel (``full`` with soft blocks) or ``(N, C, h, w)``
    on the logit grid (``loss_at="grid"``).
    """
    size = tuple(labels.shape[-2:])
    pixel_props = None
    if cfg.block > 1:
        blocks = block_annotation(labels, cfg.block, num_classes, ignore_index, mode=cfg.block_mode)
        if cfg.block_mode == "hard":
            labels = upsample_labels(blocks, cfg.block, size)
        else:
            pixel_props = upsample_proportions(blocks, cfg.block, size, mode="nearest")
    if cfg.loss_at == "grid":
        if pixel_props is None:
            return grid_proportions(labels, cfg.grid_stride, num_classes, ignore_index)
        return _cell_proportions(pixel_props, cfg.grid_stride)
    return labels if pixel_props is None else pixel_props


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against class proportions ``(N, C, H, W)``, averaged over the positions that
    carry a label (an all-zero proportion vector marks a position without one)."""
    log_probs = F.log_softmax(logits.float(), dim=1)
    per_position = -(target * log_probs).sum(dim=1)
    labelled = target.sum(dim=1) > 0
    return per_position[labelled].sum() / labelled.sum().clamp_min(1)


def training_loss(
    logits: torch.Tensor, labels: torch.Tensor, cfg: TrialConfig, num_classes: int, ignore_index: int | None
) -> torch.Tensor:
    """Loss of grid logits ``(N, C, h, w)`` against dense labels ``(N, H, W)`` under the knobs."""
    target = training_targets(labels, cfg, num_classes, ignore_index)
    if cfg.loss_at == "grid":
        return soft_cross_entropy(logits, target)
    full = upsample_proportions(logits.float(), cfg.grid_stride, tuple(labels.shape[-2:]))
    if target.dim() == 4:
        return soft_cross_entropy(full, target)
    return F.cross_entropy(full, target, ignore_index=_ignore(ignore_index))
