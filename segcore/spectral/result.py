"""The result of the analysis (the ``spectrum.json`` document) and the efficient-size rule."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from segcore.metrics import scores_from_confusion
from segcore.spectral.accumulator import Accumulator
from segcore.spectral.blocks import block_summary
from segcore.spectral.energy import MAX_RADIUS, RADIAL_BINS

__all__ = ["SpectrumResult", "efficient_size", "build_result"]


def efficient_size(sizes: Sequence[int], values: Sequence[float], threshold: float) -> int | None:
    """Coarsest size ``s`` such that every size ``<= s`` has ``value >= threshold``.

    Scanning from the finest size keeps the answer conservative when a curve is not monotone.
    ``None`` when even the finest size misses the threshold.
    """
    best = None
    for size, value in sorted(zip(sizes, values)):
        if not (value >= threshold):  # NaN fails too
            break
        best = int(size)
    return best


@dataclass
class SpectrumResult:
    """Everything :func:`segcore.spectral.analyze` measured; ``to_dict()`` is the ``spectrum.json``
    document.

    Lists indexed like ``strides`` (grid quantities) or ``blocks`` (annotation quantities).
    Energies are shares of the summed spectral energy of all labels (pixel-weighted over the
    dataset); mIoU from confusion matrices accumulated over the whole split; ``ce_floor`` in nats.
    """

    dataset: str
    split: str | None
    num_labels: int
    num_classes: int
    ignore_index: int | None
    class_names: list[str]
    strides: list[int]
    band_energy: list[float]
    band_energy_no_dc: list[float]
    oracle_miou_soft: list[float]
    oracle_miou_majority: list[float]
    ce_floor: list[float]
    blocks: list[int]
    block_oracle_miou_hard: list[float]
    block_oracle_miou_soft: list[float]
    annotation_units_per_image: list[float]
    annotation_relative_units: list[float]
    mixed_block_share: list[float]
    efficient_grid_by_miou: int | None
    efficient_grid_by_energy: int | None
    efficient_block: int | None
    tolerance: float
    energy_threshold: float
    dense_miou: float
    dc_share: float
    radial_frequency: list[float]
    radial_energy: list[float]
    valid_pixels: int
    class_pixel_share: list[float]
    image_sizes: dict[str, int]
    oracle_per_class_iou_soft: list[list[float]] = field(default_factory=list)
    elapsed_s: float = 0.0
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        """The ``spectrum.json`` document: grid curves by stride, annotation curves by block size,
        the efficient grid and block, and the radial spectrum."""
        return {
            "dataset": self.dataset,
            "split": self.split,
            "num_labels": self.num_labels,
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "class_names": list(self.class_names),
            "strides": list(self.strides),
            "band_energy": list(self.band_energy),
            "band_energy_no_dc": list(self.band_energy_no_dc),
            "oracle_miou": {"soft": list(self.oracle_miou_soft), "majority": list(self.oracle_miou_majority)},
            "ce_floor": list(self.ce_floor),
            "blocks": list(self.blocks),
            "block_oracle_miou": {"hard": list(self.block_oracle_miou_hard), "soft": list(self.block_oracle_miou_soft)},
            "annotation_cost": {
                "units_per_image": list(self.annotation_units_per_image),
                "relative_units": list(self.annotation_relative_units),
                "mixed_block_share": list(self.mixed_block_share),
            },
            "efficient_grid": {"by_miou": self.efficient_grid_by_miou, "by_energy": self.efficient_grid_by_energy},
            "efficient_block": self.efficient_block,
            "tolerance": self.tolerance,
            "energy_threshold": self.energy_threshold,
            "dense_miou": self.dense_miou,
            "dc_share": self.dc_share,
            "radial_spectrum": {"frequency": list(self.radial_frequency), "energy": list(self.radial_energy)},
            "valid_pixels": self.valid_pixels,
            "class_pixel_share": list(self.class_pixel_share),
            "image_sizes": dict(self.image_sizes),
            "oracle_per_class_iou_soft": [list(r) for r in self.oracle_per_class_iou_soft],
            "elapsed_s": self.elapsed_s,
            "device": self.device,
        }

    def stride_rows(self) -> list[dict[str, float]]:
        """One row per stride (grid quantities), for tables and CSV."""
        return self._rows("stride", self.strides, STRIDE_FIELDS)

    def block_rows(self) -> list[dict[str, float]]:
        """One row per block size (annotation quantities), for tables and CSV."""
        return self._rows("block", self.blocks, BLOCK_FIELDS)

    def _rows(self, key: str, sizes: Sequence[int], fields: Sequence[str]) -> list[dict[str, float]]:
        return [{key: size, **{f: getattr(self, f)[i] for f in fields}} for i, size in enumerate(sizes)]


STRIDE_FIELDS = ("band_energy", "band_energy_no_dc", "oracle_miou_soft", "oracle_miou_majority", "ce_floor")
BLOCK_FIELDS = (
    "block_oracle_miou_hard", "block_oracle_miou_soft", "annotation_units_per_image",
    "annotation_relative_units", "mixed_block_share",
)


def _energy_curves(acc: Accumulator) -> dict[str, Any]:
    """Band energy with and without DC per stride, the DC share and the radial spectrum."""
    total_energy = float(acc.total_energy)
    dc = float(acc.dc_energy)
    band = acc.band.cpu().tolist()
    ac_total = total_energy - dc
    radial = acc.radial.cpu()
    return {
        "band_energy": [b / total_energy if total_energy > 0 else float("nan") for b in band],
        "band_energy_no_dc": [(b - dc) / ac_total if ac_total > 0 else float("nan") for b in band],
        "dc_share": dc / total_energy if total_energy > 0 else float("nan"),
        "radial_energy": (radial / ac_total).tolist() if ac_total > 0 else [float("nan")] * RADIAL_BINS,
        "radial_frequency": [(i + 0.5) * MAX_RADIUS / RADIAL_BINS for i in range(RADIAL_BINS)],
    }


def _grid_curves(acc: Accumulator, strides: Sequence[int], valid_pixels: int) -> dict[str, list]:
    """Oracle mIoU (soft, majority), per-class IoU of the soft oracle and CE floor per stride."""
    curves: dict[str, list] = {"oracle_miou_soft": [], "oracle_miou_majority": [], "ce_floor": [],
                               "oracle_per_class_iou_soft": []}
    for stride in strides:
        stats = acc.stats[stride]
        soft = scores_from_confusion(stats.conf_soft)
        curves["oracle_miou_soft"].append(soft.miou)
        curves["oracle_per_class_iou_soft"].append(soft.per_class_iou)
        curves["oracle_miou_majority"].append(scores_from_confusion(stats.conf_majority).miou)
        curves["ce_floor"].append(stats.ce_sum / valid_pixels if valid_pixels else float("nan"))
    return curves


def build_result(
    acc: Accumulator,
    dataset,
    strides: Sequence[int],
    blocks: Sequence[int],
    tolerance: float,
    energy_threshold: float,
    started: float,
    device: torch.device,
) -> SpectrumResult:
    """The :class:`SpectrumResult` of the merged sums, with the efficient grid and block.

    The oracle of a grid (or block) is the better of its two decodings: a network may learn
    either. Stride 1 reproduces the labels, so the dense score is exactly 1 (NaN only without
    valid pixels).
    """
    valid_pixels = int(acc.class_pixels.sum())
    energy = _energy_curves(acc)
    grid = _grid_curves(acc, strides, valid_pixels)
    block = block_summary(acc, blocks)
    dense = 1.0 if valid_pixels else float("nan")
    best_grid = [max(a, b) for a, b in zip(grid["oracle_miou_soft"], grid["oracle_miou_majority"])]
    best_block = [max(a, b) for a, b in zip(block["block_oracle_miou_hard"], block["block_oracle_miou_soft"])]
    num_classes = acc.num_classes
    class_names = getattr(dataset, "class_names", ()) or [f"class_{i}" for i in range(num_classes)]
    return SpectrumResult(
        dataset=str(getattr(dataset, "name", "dataset")),
        split=getattr(dataset, "split", None),
        num_labels=acc.num_labels,
        num_classes=num_classes,
        ignore_index=getattr(dataset, "ignore_index", None),
        class_names=list(class_names),
        strides=list(strides),
        blocks=list(blocks),
        efficient_grid_by_miou=efficient_size(strides, best_grid, dense * (1 - tolerance)),
        efficient_grid_by_energy=efficient_size(strides, energy["band_energy"], energy_threshold),
        efficient_block=efficient_size(blocks, best_block, dense * (1 - tolerance)),
        tolerance=float(tolerance),
        energy_threshold=float(energy_threshold),
        dense_miou=dense,
        valid_pixels=valid_pixels,
        class_pixel_share=(acc.class_pixels.double() / max(valid_pixels, 1)).cpu().tolist(),
        image_sizes=dict(acc.image_sizes),
        elapsed_s=time.perf_counter() - started,
        device=str(device),
        **energy,
        **grid,
        **block,
    )
