"""The sample panel of a trial: image | labels | prediction."""

from __future__ import annotations

import numpy as np
import torch

from segcore.config.trial import TrialConfig
from segcore.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from segcore.labels import upsample_proportions

__all__ = ["palette", "render_sample"]


def palette(num_classes: int) -> np.ndarray:
    """Fixed colours ``(C + 1, 3)`` uint8 for the classes; the last row (black) is 'ignore'."""
    generator = np.random.default_rng(7)
    colours = generator.integers(40, 256, size=(num_classes, 3), dtype=np.int64)
    return np.concatenate([colours, np.zeros((1, 3), dtype=np.int64)]).astype(np.uint8)


@torch.no_grad()
def render_sample(model, dataset, cfg: TrialConfig, num_classes: int, ignore_index: int | None,
                  device: torch.device, index: int = 0) -> np.ndarray:
    """``(H, W*3, 3)`` uint8 panel: image | truth | prediction (fixed palette, ignore in black)."""
    image, label = dataset[index]
    model.eval()
    logits = model(image.unsqueeze(0).to(device)).float()
    model.train()
    prediction = upsample_proportions(logits, cfg.grid_stride, tuple(label.shape))[0].argmax(0).cpu().numpy()
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    rgb = ((image * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    colours = palette(num_classes)
    truth = label.numpy().copy()
    truth[(truth < 0) | (truth >= num_classes)] = num_classes
    return np.concatenate([rgb, colours[truth], colours[prediction]], axis=1)
