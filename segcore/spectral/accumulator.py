"""The sums the streaming analysis keeps: confusion matrices, energies and counts, nothing per pixel."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from segcore.spectral.energy import RADIAL_BINS

__all__ = ["SizeStats", "Accumulator"]


@dataclass
class SizeStats:
    """Sums for one grid stride / block size over the whole split."""

    conf_soft: torch.Tensor  # (C, C) int64, true rows: proportions + bilinear oracle
    conf_majority: torch.Tensor  # (C, C) int64, true rows: majority + nearest oracle
    ce_sum: float = 0.0  # nats, summed over valid pixels
    cells: int = 0
    labelled_cells: int = 0  # cells with at least one valid pixel
    mixed_cells: int = 0  # cells with more than one class
    pixels: int = 0  # all pixels, ignored included (annotation cost is per image area)


class Accumulator:
    """Sums of one worker thread; :meth:`merge` adds another's."""

    def __init__(self, sizes: Sequence[int], strides: Sequence[int], num_classes: int, device: torch.device):
        self.num_classes = num_classes
        self.device = device
        self.strides = sorted(strides)
        self.stats = {
            size: SizeStats(
                torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device),
                torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device),
            )
            for size in sizes
        }
        # band[i]: energy inside the band of self.strides[i] (DC included).
        self.band = torch.zeros(len(self.strides), dtype=torch.float64, device=device)
        self.total_energy = torch.zeros((), dtype=torch.float64, device=device)
        self.dc_energy = torch.zeros((), dtype=torch.float64, device=device)
        self.radial = torch.zeros(RADIAL_BINS, dtype=torch.float64, device=device)
        self.class_pixels = torch.zeros(num_classes, dtype=torch.int64, device=device)
        self.num_labels = 0
        self.image_sizes: dict[str, int] = {}

    def merge(self, other: Accumulator) -> None:
        """Add another accumulator's sums (batches processed in another thread)."""
        for size, stats in self.stats.items():
            theirs = other.stats[size]
            stats.conf_soft += theirs.conf_soft
            stats.conf_majority += theirs.conf_majority
            stats.ce_sum += theirs.ce_sum
            stats.cells += theirs.cells
            stats.labelled_cells += theirs.labelled_cells
            stats.mixed_cells += theirs.mixed_cells
            stats.pixels += theirs.pixels
        self.band += other.band
        self.total_energy += other.total_energy
        self.dc_energy += other.dc_energy
        self.radial += other.radial
        self.class_pixels += other.class_pixels
        self.num_labels += other.num_labels
        for key, count in other.image_sizes.items():
            self.image_sizes[key] = self.image_sizes.get(key, 0) + count
