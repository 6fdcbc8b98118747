"""Segmentation metrics from a confusion matrix accumulated over a whole split.

Never average per batch: :class:`ConfusionMatrix` sums pixel counts over every batch and the
scores are computed once at the end: a mean of per-batch mIoUs would weigh small batches and
classes absent from a batch wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["confusion_matrix", "ConfusionMatrix", "SegmentationScores", "scores_from_confusion"]


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = 255
) -> torch.Tensor:
    """``(C, C)`` int64 matrix, rows = true class, columns = predicted class.

    Pixels whose target is ``ignore_index`` (or outside ``[0, C)``) are left out. ``pred`` and
    ``target`` are integer tensors of the same shape.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    target = target.reshape(-1).long()
    pred = pred.reshape(-1).long()
    valid = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        valid &= target != ignore_index
    pred = pred[valid].clamp(0, num_classes - 1)
    key = target[valid] * num_classes + pred
    return torch.bincount(key, minlength=num_classes * num_classes).view(num_classes, num_classes)


@dataclass
class SegmentationScores:
    """mIoU over classes present in truth or prediction; per-class IoU is NaN where a class is
    absent from both (and left out of the mean)."""

    miou: float
    pixel_accuracy: float
    mean_accuracy: float
    per_class_iou: list[float] = field(default_factory=list)
    pixels: int = 0


def scores_from_confusion(conf: torch.Tensor) -> SegmentationScores:
    conf = conf.double().cpu()
    tp = conf.diag()
    true_total = conf.sum(dim=1)
    pred_total = conf.sum(dim=0)
    union = true_total + pred_total - tp
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    iou = torch.where(union > 0, tp / union.clamp_min(1), nan)
    acc = torch.where(true_total > 0, tp / true_total.clamp_min(1), nan)
    total = conf.sum()
    present = ~torch.isnan(iou)
    miou = float(iou[present].mean()) if present.any() else float("nan")
    has_truth = ~torch.isnan(acc)
    return SegmentationScores(
        miou=miou,
        pixel_accuracy=float(tp.sum() / total) if total > 0 else float("nan"),
        mean_accuracy=float(acc[has_truth].mean()) if has_truth.any() else float("nan"),
        per_class_iou=[float(v) for v in iou],
        pixels=int(total),
    )


class ConfusionMatrix:
    """Accumulates a confusion matrix over a split; ``compute()`` gives the scores."""

    def __init__(self, num_classes: int, ignore_index: int | None = 255, device: str | torch.device = "cpu"):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` is labels ``(N, H, W)`` or logits ``(N, C, H, W)``."""
        if pred.dim() == target.dim() + 1:
            pred = pred.argmax(dim=1)
        self.matrix += confusion_matrix(pred, target, self.num_classes, self.ignore_index).to(
            self.matrix.device
        )

    def merge(self, other: "ConfusionMatrix") -> None:
        self.matrix += other.matrix.to(self.matrix.device)

    def reset(self) -> None:
        self.matrix.zero_()

    def compute(self) -> SegmentationScores:
        return scores_from_confusion(self.matrix)
