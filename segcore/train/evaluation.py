"""Scores on the dense validation labels."""

from __future__ import annotations

import itertools

import torch

from segcore.config.trial import TrialConfig
from segcore.labels import upsample_proportions
from segcore.metrics import ConfusionMatrix, SegmentationScores

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(model, loader, cfg: TrialConfig, num_classes: int, ignore_index: int | None, device: torch.device,
             amp: bool) -> SegmentationScores:
    """Scores on dense labels: logits bilinearly up-sampled to the label size
    (:func:`segcore.labels.upsample_proportions`), one confusion matrix over the split
    (``max_val_batches`` batches at most)."""
    model.eval()
    confusion = ConfusionMatrix(num_classes, ignore_index, device=device)
    # islice, not a check inside the loop: fetching (decoding) one batch past the limit is waste.
    for images, labels in itertools.islice(loader, cfg.max_val_batches):
        images, labels = images.to(device), labels.to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            logits = model(images)
        full = upsample_proportions(logits.float(), cfg.grid_stride, tuple(labels.shape[-2:]))
        confusion.update(full.argmax(dim=1), labels)
    model.train()
    return confusion.compute()
