"""Label maps held in memory: the smallest dataset, for tests, notebooks and generated labels."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import SegmentationDataset, check_label_values

__all__ = ["InMemoryLabels"]


class InMemoryLabels(SegmentationDataset):
    """A label-only dataset over a list of ``(H, W)`` integer label maps (sizes may differ).

    Args:
        labels: the label maps; values in ``[0, num_classes)`` or ``ignore_index``.
        num_classes: number of classes ``C``.
        ignore_index: label value that is not a class (``None``: every value must be a class).
        name: dataset name reported by analyses.
        split: split name reported by analyses.
    """

    def __init__(
        self,
        labels: Sequence[torch.Tensor],
        num_classes: int,
        ignore_index: int | None = 255,
        *,
        name: str = "memory",
        split: str | None = None,
        class_names: Sequence[str] = (),
    ):
        super().__init__(None)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self._labels = [torch.as_tensor(label).long() for label in labels]
        for i, label in enumerate(self._labels):
            if label.dim() != 2:
                raise ValueError(f"{name}[{i}]: label maps must be (H, W), got {tuple(label.shape)}")
            check_label_values(label, num_classes, ignore_index, f"{name}[{i}]")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.name = name
        self.split = split
        self.class_names = tuple(class_names) or tuple(f"class_{i}" for i in range(num_classes))

    def __len__(self) -> int:
        return len(self._labels)

    def _load_label(self, index: int) -> torch.Tensor:
        return self._labels[index]

    def _load_image(self, index: int) -> torch.Tensor:
        raise ValueError(f"{self.name} holds label maps only (no images)")

    def label_size(self, index: int) -> tuple[int, int]:
        return tuple(self._labels[index].shape)
