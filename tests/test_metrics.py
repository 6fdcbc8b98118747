"""Confusion-matrix metrics (segcore/metrics.py): hand-built examples, absent classes, ignore."""

from __future__ import annotations

import math

import pytest
import torch

from segcore.metrics import ConfusionMatrix, confusion_matrix, scores_from_confusion


def test_hand_built_confusion_and_scores():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 1]])
    conf = confusion_matrix(pred, target, 3, 255)
    assert torch.equal(conf, torch.tensor([[1, 1, 0], [0, 3, 0], [1, 0, 1]]))
    s = scores_from_confusion(conf)
    # IoU: class 0: 1 / (2 + 2 - 1) = 1/3; class 1: 3 / (3 + 4 - 3) = 3/4; class 2: 1 / (2 + 1 - 1) = 1/2
    assert s.per_class_iou == pytest.approx([1 / 3, 3 / 4, 1 / 2])
    assert s.miou == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert s.pixel_accuracy == pytest.approx(5 / 7)
    assert s.pixels == 7


def test_absent_class_is_left_out_of_the_mean():
    conf = torch.tensor([[5, 0, 0], [0, 0, 0], [1, 0, 4]])
    s = scores_from_confusion(conf)
    assert math.isnan(s.per_class_iou[1])
    assert s.miou == pytest.approx((5 / 6 + 4 / 5) / 2)


def test_predicted_but_absent_class_counts_as_zero():
    conf = torch.tensor([[3, 1], [0, 0]])  # class 1 predicted once, never true
    s = scores_from_confusion(conf)
    assert s.per_class_iou == pytest.approx([0.75, 0.0])
    assert s.miou == pytest.approx(0.375)


def test_accumulator_sums_batches_and_takes_logits():
    cm = ConfusionMatrix(2, ignore_index=255)
    cm.update(torch.tensor([[0, 1]]), torch.tensor([[0, 0]]))
    logits = torch.tensor([[[[0.1, 2.0]], [[1.0, 0.0]]]])  # (N=1, C=2, H=1, W=2) -> pred [[1, 0]]
    cm.update(logits, torch.tensor([[[1, 255]]]))
    assert torch.equal(cm.matrix, torch.tensor([[1, 1], [0, 1]]))
    other = ConfusionMatrix(2)
    other.update(torch.tensor([1]), torch.tensor([1]))
    cm.merge(other)
    assert int(cm.matrix[1, 1]) == 2
    assert cm.compute().pixels == 4
    cm.reset()
    assert int(cm.matrix.sum()) == 0
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        ConfusionMatrix(0)
    with pytest.raises(ValueError, match="pred shape"):
        confusion_matrix(torch.zeros(2), torch.zeros(3), 2)
