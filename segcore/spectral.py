"""Training-free spectral analysis of a dataset's label maps (DESIGN.md §2).

From the label maps alone this module computes, for every grid stride ``s`` and annotation block
size ``b``:

* the **band energy** ``E(s)``: the share of the labels' spectral energy (unitary 2-D DFT of the
  one-hot planes, summed over classes) inside the band ``|f_y|, |f_x| <= 1/(2s)`` that a stride-``s``
  grid represents, with the DC term included and excluded, and the **radial spectrum**;
* the **oracle mIoU of a grid** (class proportions per cell, bilinear up-sampling, arg-max; and the
  majority label per cell, nearest up-sampling) and the **CE floor** (cross-entropy of the dense
  labels against the up-sampled proportions);
* the **oracle mIoU of block annotation** (hard majority / soft proportions per ``b x b`` block,
  up-sampled and scored against the dense labels) and its **annotation cost**;
* the **efficient grid**: the coarsest stride whose oracle mIoU (the better of the two decodings)
  stays within ``tolerance`` of the dense score, and the coarsest whose ``E(s)`` reaches
  ``energy_threshold``; likewise the **efficient block** size for annotation.

Seed paper: Chen, Chiu, Wu, "Spectral Analysis for Semantic Segmentation with Applications on
Feature Truncation and Weak Annotation", arXiv 2012.14123.

The analysis streams over a dataset in bounded memory: labels are decoded by a few threads, grouped
by size into stacked batches, and only confusion matrices and energy sums are kept.
"""

from __future__ import annotations

import os
import queue
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from segcore import labels as seg_labels
from segcore.metrics import scores_from_confusion

__all__ = [
    "DEFAULT_STRIDES",
    "DEFAULT_BLOCKS",
    "SpectrumResult",
    "analyze",
    "plot_spectrum",
    "label_power_spectrum",
    "band_mask",
    "band_energy",
    "spectral_cross_entropy",
    "efficient_size",
]

DEFAULT_STRIDES = (1, 2, 4, 8, 16, 32)
DEFAULT_BLOCKS = (1, 2, 4, 8, 16, 32)
RADIAL_BINS = 64
# The radial spectrum covers |f| <= 1/4 cycles per pixel (the energy beyond is 1 - E(2)).
_MAX_RADIUS = 0.25
# Pixels per stacked batch: bounds memory (the FFT of a batch holds about C times this).
_BATCH_PIXELS = 4 * 1024 * 1024
# Planes per FFT call: keeps the complex output of one call near 128 MiB at Cityscapes size.
_FFT_PLANE_PIXELS = 16 * 1024 * 1024


# --------------------------------------------------------------------------------------------
# Per-map building blocks (public: used by tests, benchmarks and by hand)
# --------------------------------------------------------------------------------------------


def _valid_mask(labels: torch.Tensor, num_classes: int, ignore_index: int | None) -> torch.Tensor:
    valid = (labels >= 0) & (labels < num_classes)
    if ignore_index is not None:
        valid &= labels != ignore_index
    return valid


def label_power_spectrum(
    labels: torch.Tensor, num_classes: int, ignore_index: int | None = 255
) -> torch.Tensor:
    """Energy spectrum ``sum_c |F[Y_c](k)|^2`` of a label map, unitary DFT, full ``(H, W)`` grid.

    ``Y_c`` is the one-hot plane of class ``c`` restricted to valid pixels (ignored pixels are 0 in
    every plane), so the spectrum sums to the number of valid pixels (Parseval). Float64; the
    frequency of index ``(i, j)`` is ``(fftfreq(H)[i], fftfreq(W)[j])`` cycles per pixel.
    """
    if labels.dim() != 2:
        raise ValueError(f"labels must have shape (H, W), got {tuple(labels.shape)}")
    valid = _valid_mask(labels, num_classes, ignore_index)
    planes = torch.stack([((labels == c) & valid) for c in range(num_classes)]).double()
    spec = torch.fft.fft2(planes, norm="ortho")
    return (spec.real**2 + spec.imag**2).sum(dim=0)


def band_mask(height: int, width: int, stride: int) -> torch.Tensor:
    """Boolean ``(H, W)`` mask of the DFT frequencies a stride-``s`` grid represents:
    ``|f_y| <= 1/(2s)`` and ``|f_x| <= 1/(2s)`` (DFT index order, as :func:`torch.fft.fftfreq`).

    Compared in integers (``2 s |k| <= N``) so that the band edge is exact.
    """
    ky = _signed_index(height)
    kx = _signed_index(width)
    return ((2 * stride * ky.abs() <= height)[:, None]) & ((2 * stride * kx.abs() <= width)[None, :])


def _signed_index(n: int, device=None) -> torch.Tensor:
    """DFT indices in fftfreq order as integers: 0, 1, ..., -2, -1."""
    k = torch.arange(n, device=device)
    return torch.where(k <= n // 2, k, k - n) if n > 1 else k


def band_energy(
    labels: torch.Tensor,
    strides: Sequence[int],
    num_classes: int,
    ignore_index: int | None = 255,
) -> tuple[list[float], list[float]]:
    """Band energy ``E(s)`` of one label map ``(H, W)`` for each stride: ``(with DC, without DC)``.

    The plain full-spectrum definition (slow, for checking); :func:`analyze` computes the same
    numbers over a whole dataset at once.
    """
    power = label_power_spectrum(labels, num_classes, ignore_index)
    total = float(power.sum())
    dc = float(power[0, 0])
    with_dc, without_dc = [], []
    for s in strides:
        inside = float(power[band_mask(*labels.shape, int(s))].sum())
        with_dc.append(inside / total if total > 0 else float("nan"))
        without_dc.append((inside - dc) / (total - dc) if total - dc > 0 else float("nan"))
    return with_dc, without_dc


def spectral_cross_entropy(
    labels: torch.Tensor, log_probs: torch.Tensor, ignore_index: int | None = 255
) -> torch.Tensor:
    """Per-frequency terms of the cross-entropy (DESIGN.md §2, by Parseval):

    ``CE = -(1/N) sum_c sum_k F[Y_c](k) conj(F[L_c](k))``, with ``N`` valid pixels.

    Args:
        labels: ``(H, W)`` integer labels.
        log_probs: ``(C, H, W)`` log-probabilities ``L_c``.
        ignore_index: label ignored (its pixels are zero in every ``Y_c``).

    Returns:
        ``(H, W)`` real contributions (DFT index order) whose sum is the spatial cross-entropy.
    """
    num_classes = log_probs.shape[0]
    if log_probs.shape[1:] != labels.shape:
        raise ValueError(f"log_probs {tuple(log_probs.shape)} do not match labels {tuple(labels.shape)}")
    valid = _valid_mask(labels, num_classes, ignore_index)
    onehot = torch.stack([((labels == c) & valid) for c in range(num_classes)]).to(log_probs.dtype)
    fy = torch.fft.fft2(onehot, norm="ortho")
    fl = torch.fft.fft2(log_probs, norm="ortho")
    terms = (fy * fl.conj()).real.sum(dim=0)
    return -terms / valid.sum().clamp_min(1)


def efficient_size(sizes: Sequence[int], values: Sequence[float], threshold: float) -> int | None:
    """Coarsest size ``s`` such that every size ``<= s`` has ``value >= threshold``.

    Scanning from the finest size keeps the answer conservative when a curve is not monotone.
    ``None`` when even the finest size misses the threshold.
    """
    best = None
    for s, v in sorted(zip(sizes, values)):
        if not (v >= threshold):  # NaN fails too
            break
        best = int(s)
    return best


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------


@dataclass
class SpectrumResult:
    """Everything :func:`analyze` measured; ``to_dict()`` is the ``spectrum.json`` document.

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
        """The ``spectrum.json`` document (issue 2's keys plus the extras)."""
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
        return self._rows("stride", self.strides, _STRIDE_FIELDS)

    def block_rows(self) -> list[dict[str, float]]:
        """One row per block size (annotation quantities), for tables and CSV."""
        return self._rows("block", self.blocks, _BLOCK_FIELDS)

    def _rows(self, key: str, sizes: Sequence[int], fields: Sequence[str]) -> list[dict[str, float]]:
        return [{key: size, **{f: getattr(self, f)[i] for f in fields}} for i, size in enumerate(sizes)]


_STRIDE_FIELDS = ("band_energy", "band_energy_no_dc", "oracle_miou_soft", "oracle_miou_majority", "ce_floor")
_BLOCK_FIELDS = (
    "block_oracle_miou_hard", "block_oracle_miou_soft", "annotation_units_per_image",
    "annotation_relative_units", "mixed_block_share",
)


# --------------------------------------------------------------------------------------------
# Accumulation
# --------------------------------------------------------------------------------------------


@dataclass
class _SizeStats:
    """Sums for one grid stride / block size over the whole split."""

    conf_soft: torch.Tensor
    conf_majority: torch.Tensor
    ce_sum: float = 0.0
    cells: int = 0
    labelled_cells: int = 0
    mixed_cells: int = 0
    pixels: int = 0  # all pixels, ignored included (annotation cost is per image area)


class _Accumulator:
    def __init__(self, sizes: Sequence[int], strides: Sequence[int], num_classes: int, device: torch.device):
        c = num_classes
        self.num_classes = c
        self.device = device
        self.strides = sorted(strides)
        self.stats = {
            s: _SizeStats(
                torch.zeros(c, c, dtype=torch.int64, device=device),
                torch.zeros(c, c, dtype=torch.int64, device=device),
            )
            for s in sizes
        }
        # band[i]: energy inside the band of self.strides[i] (DC included).
        self.band = torch.zeros(len(self.strides), dtype=torch.float64, device=device)
        self.total_energy = torch.zeros((), dtype=torch.float64, device=device)
        self.dc_energy = torch.zeros((), dtype=torch.float64, device=device)
        self.radial = torch.zeros(RADIAL_BINS, dtype=torch.float64, device=device)
        self.class_pixels = torch.zeros(c, dtype=torch.int64, device=device)
        self.num_labels = 0
        self.image_sizes: dict[str, int] = {}

    def merge(self, other: "_Accumulator") -> None:
        """Add another accumulator's sums (batches processed in another thread)."""
        for size, st in self.stats.items():
            o = other.stats[size]
            st.conf_soft += o.conf_soft
            st.conf_majority += o.conf_majority
            st.ce_sum += o.ce_sum
            st.cells += o.cells
            st.labelled_cells += o.labelled_cells
            st.mixed_cells += o.mixed_cells
            st.pixels += o.pixels
        self.band += other.band
        self.total_energy += other.total_energy
        self.dc_energy += other.dc_energy
        self.radial += other.radial
        self.class_pixels += other.class_pixels
        self.num_labels += other.num_labels
        for key, count in other.image_sizes.items():
            self.image_sizes[key] = self.image_sizes.get(key, 0) + count


@lru_cache(maxsize=16)
def _spectrum_layout(height: int, width: int, strides: tuple[int, ...], device: str):
    """Index maps over the low block ``|f_y|, |f_x| <= 1/4`` of the ``rfft`` half-spectrum.

    Every band of a stride ``s >= 2`` lies inside that block (``2 s |k| <= N`` implies
    ``4 |k| <= N``), so only its rows ``|k_y| <= H/4`` and columns ``k_x <= W/4`` are transformed.
    Returns ``(rows, columns, weight, band_index, radial_index)``: ``weight`` counts the columns
    ``0 < k_x < W/2`` twice (their mirror images are not stored); ``band_index`` is the number of
    the (ascending) strides whose band holds the frequency — bands are nested, so the energy in
    stride ``i``'s band is the energy with ``band_index > i``; ``radial_index`` is the radial bin
    (``RADIAL_BINS`` for the DC term and for radii beyond the spectrum's range, dropped).
    """
    dev = torch.device(device)
    ky_max, kx_max = height // 4, width // 4
    rows = torch.cat([torch.arange(ky_max + 1), torch.arange(height - ky_max, height)]).to(dev)
    rows = rows[rows < height].unique()
    ky = _signed_index(height, dev)[rows].abs()
    kx = torch.arange(kx_max + 1, device=dev)
    weight = torch.where((kx == 0) | (2 * kx == width), 1.0, 2.0).to(torch.float64)
    weight = weight.expand(rows.numel(), kx.numel()).contiguous()
    band_index = torch.zeros(rows.numel(), kx.numel(), dtype=torch.int64, device=dev)
    for s in strides:
        band_index += (2 * s * ky <= height)[:, None] & (2 * s * kx <= width)[None, :]
    radius = torch.sqrt((ky.double() / height)[:, None] ** 2 + (kx.double() / width)[None, :] ** 2)
    radial_index = (radius / _MAX_RADIUS * RADIAL_BINS).long()
    radial_index[radius > _MAX_RADIUS] = RADIAL_BINS
    radial_index[0, 0] = RADIAL_BINS  # the radial spectrum is of the non-DC energy
    return rows, kx_max + 1, weight.reshape(-1), band_index.reshape(-1), radial_index.reshape(-1)


def _accumulate_energy(acc: _Accumulator, codes: torch.Tensor, hist: torch.Tensor) -> None:
    """Add the spectra of a batch ``codes (N, H, W)`` (void = C) to the band / radial sums.

    ``hist (N, C)``: pixels per class and image. Total and DC energy follow from it by Parseval
    (``sum_k |F[Y_c]|^2 = count_c``, ``|F[Y_c](0)|^2 = count_c^2 / (H W)``); the bands need the
    spectrum, but only its low block (:func:`_spectrum_layout`): an ``rfft`` along rows keeps
    ``W/4 + 1`` columns, whose ``fft`` along columns keeps ``H/2 + 1`` rows. Only classes present in
    an image are transformed (an absent class has an all-zero spectrum).
    """
    n, height, width = codes.shape
    rows, ncols, weight, band_index, radial_index = _spectrum_layout(
        height, width, tuple(acc.strides), str(codes.device)
    )
    counts = hist.to(torch.float64)
    acc.total_energy += counts.sum()
    acc.dc_energy += counts.square().sum() / (height * width)
    chunk = max(1, _FFT_PLANE_PIXELS // (height * width))
    power = torch.zeros(rows.numel(), ncols, 2, dtype=torch.float64, device=codes.device)
    for i in range(n):
        classes = hist[i].nonzero().squeeze(1).to(codes.dtype)
        for start in range(0, classes.numel(), chunk):
            cls = classes[start : start + chunk]
            planes = (codes[i].unsqueeze(0) == cls[:, None, None]).to(torch.float32)
            low = torch.fft.rfft(planes, dim=2, norm="ortho")[:, :, :ncols]
            spec = torch.fft.fft(low, dim=1, norm="ortho")[:, rows]  # (P, R, W//4 + 1)
            power += torch.view_as_real(spec).square_().sum(dim=0, dtype=torch.float64)
    flat = power.sum(dim=2).reshape(-1) * weight
    per_band = torch.bincount(band_index, weights=flat, minlength=len(acc.strides) + 1)
    # Energy inside stride i's band = energy of frequencies held by more than i bands; stride 1
    # holds every frequency, including those outside the low block: its band is the total.
    band = per_band.flip(0).cumsum(0).flip(0)[1:]
    for i, s in enumerate(acc.strides):
        if s == 1:
            band[i] = counts.sum()
    acc.band += band
    acc.radial += torch.bincount(radial_index, weights=flat, minlength=RADIAL_BINS + 1)[:RADIAL_BINS]


def _accumulate_size_dense(acc: _Accumulator, codes: torch.Tensor, size: int) -> None:
    """Grid / block statistics of one size for a batch, by the plain definitions in labels.py.

    ``codes (N, H, W)`` are the labels with every ignored pixel set to ``C``. Work and memory are
    ``O(N C H W)`` per size.
    """
    c = acc.num_classes
    st = acc.stats[size]
    n, height, width = codes.shape
    valid = codes < c
    target = torch.where(valid, codes, torch.full_like(codes, -1))  # -1: never scored
    st.pixels += n * height * width
    if size == 1:
        # Stride 1 reproduces the labels: the oracle is exact and the CE floor is zero.
        diag = torch.bincount(codes[valid], minlength=c)
        st.conf_soft += torch.diag(diag)
        st.conf_majority += torch.diag(diag)
        st.cells += n * height * width
        st.labelled_cells += int(valid.sum())
        return
    counts = seg_labels.class_counts(codes, size, c, ignore_index=None)
    present = (counts > 0).sum(dim=1)
    st.cells += present.numel()
    st.labelled_cells += int((present > 0).sum())
    st.mixed_cells += int((present > 1).sum())
    total = counts.sum(dim=1, keepdim=True)
    props = counts.to(torch.float32) / total.clamp_min(1)
    up = seg_labels.upsample_proportions(props, size, (height, width))
    pred = up.argmax(dim=1)
    st.conf_soft += _confusion(pred, target, c)
    mass = up.sum(dim=1)
    p_true = up.gather(1, target.clamp_min(0).unsqueeze(1)).squeeze(1) / mass.clamp_min(1e-30)
    st.ce_sum += float(-torch.log(p_true[valid].double().clamp_min(1e-30)).sum())
    major = counts.argmax(dim=1)
    pred_major = seg_labels.upsample_labels(major, size, (height, width))
    st.conf_majority += _confusion(pred_major, target, c)


def _confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    keep = target >= 0
    key = target[keep] * num_classes + pred[keep]
    return torch.bincount(key, minlength=num_classes * num_classes).view(num_classes, num_classes)


# --------------------------------------------------------------------------------------------
# Streaming over a dataset
# --------------------------------------------------------------------------------------------


def _dataset_attr(dataset, name: str, default=None):
    return getattr(dataset, name, default)


def _label_size(dataset, index: int) -> tuple[int, int]:
    if hasattr(dataset, "label_size"):
        return tuple(dataset.label_size(index))
    return tuple(dataset.load_label(index).shape[-2:])


def _image_size(dataset, index: int) -> tuple[int, int] | None:
    if hasattr(dataset, "image_size"):
        size = dataset.image_size(index)
        return None if size is None else tuple(size)
    return None


def _describe(dataset, index: int) -> str:
    return dataset.describe(index) if hasattr(dataset, "describe") else f"label {index}"


def _check_sizes(sizes: Sequence[int], shapes: set[tuple[int, int]], option: str) -> list[int]:
    """Validate sizes (ints >= 1 that fit every label map); return them sorted and unique."""
    if not sizes:
        raise ValueError(f"{option}: give at least one size (e.g. 1 2 4 8)")
    out = []
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, (int,)) and not (isinstance(s, float) and s.is_integer()):
            raise ValueError(f"{option}: sizes must be integers >= 1, got {s!r}")
        s = int(s)
        if s < 1:
            raise ValueError(f"{option}: sizes must be integers >= 1, got {s}")
        for height, width in shapes:
            if s > min(height, width):
                raise ValueError(
                    f"{option}: {s} is larger than a {height}x{width} label map; "
                    f"valid values are 1..{min(min(h, w) for h, w in shapes)}"
                )
        out.append(s)
    return sorted(set(out))


def _iter_labels(dataset, count: int, workers: int) -> Iterator[torch.Tensor]:
    """Labels ``0..count-1`` in order, decoded by a small thread pool (PNG decoding releases the GIL,
    so it overlaps with the tensor work of the main thread)."""
    if workers <= 1:
        for i in range(count):
            yield dataset.load_label(i)
        return
    window = 2 * workers
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="segcore-labels") as pool:
        pending: deque = deque()
        next_index = 0
        while next_index < count or pending:
            while next_index < count and len(pending) < window:
                pending.append(pool.submit(dataset.load_label, next_index))
                next_index += 1
            yield pending.popleft().result()


def analyze(
    dataset,
    strides: Sequence[int] = DEFAULT_STRIDES,
    blocks: Sequence[int] = DEFAULT_BLOCKS,
    *,
    tolerance: float = 0.01,
    energy_threshold: float = 0.95,
    limit: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    workers: int | None = None,
    threads: int | None = None,
    method: str = "fast",
) -> SpectrumResult:
    """Spectral curves, oracle curves and efficient grid of a dataset's label maps (DESIGN.md §2).

    Args:
        dataset: a :class:`segcore.data.SegmentationDataset` (or anything with ``__len__``,
            ``load_label(i) -> (H, W)``, ``num_classes``, ``ignore_index``); only labels are read.
        strides: grid strides ``s`` (each ``1 <= s <= min(H, W)`` of every label map).
        blocks: annotation block sizes ``b`` (same bounds).
        tolerance: relative mIoU loss allowed for the efficient grid (``0.01`` = 1% of dense).
        energy_threshold: band-energy share the efficient grid must keep (criterion 2).
        limit: analyse only the first ``limit`` labels.
        device: torch device; default CUDA when available, else CPU.
        progress: show a tqdm progress bar.
        workers: label-decoding threads (default: up to 4, by CPU count).
        threads: batches analysed side by side on CPU (default: ``torch.get_num_threads()``);
            each runs with one intra-op thread.
        method: ``"fast"`` (count-based, see module notes) or ``"dense"`` (the plain definitions,
            ``O(C H W)`` per size; the reference the fast path is tested against).

    Returns:
        A :class:`SpectrumResult`.

    Raises:
        ValueError: bad option, label value outside the classes (naming the file), image/label
            size mismatch, stride/block larger than a label map — all but the label values before
            any label is decoded.
    """
    started = time.perf_counter()
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
    if not 0 < energy_threshold <= 1:
        raise ValueError(f"energy_threshold must be in (0, 1], got {energy_threshold}")
    if method not in ("fast", "dense"):
        raise ValueError(f"method must be 'fast' or 'dense', got {method!r}")
    num_classes = int(dataset.num_classes)
    ignore_index = _dataset_attr(dataset, "ignore_index", None)
    total = len(dataset)
    if limit is not None:
        if int(limit) < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        total = min(total, int(limit))
    if total < 1:
        raise ValueError(f"dataset {_dataset_attr(dataset, 'name', '?')!r} has no label maps")

    # Headers only: sizes and image/label agreement are checked before any decoding.
    sizes = []
    for i in range(total):
        size = _label_size(dataset, i)
        image_size = _image_size(dataset, i)
        if image_size is not None and image_size != size:
            raise ValueError(
                f"{_describe(dataset, i)}: label size {size[0]}x{size[1]} != image size "
                f"{image_size[0]}x{image_size[1]}"
            )
        sizes.append(size)
    shapes = set(sizes)
    strides = _check_sizes(strides, shapes, "strides")
    blocks = _check_sizes(blocks, shapes, "blocks")
    all_sizes = sorted(set(strides) | set(blocks))

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if workers is None:
        workers = max(1, min(4, (os.cpu_count() or 1)))

    # On CPU, whole batches run side by side in `threads` Python threads with one intra-op thread
    # each: the pipeline is many mid-sized ops, and OpenMP fork/join per op costs more than it
    # gains (on a busy machine, several times more). torch releases the GIL inside ops.
    parallel = 1 if device.type != "cpu" else max(1, int(threads or torch.get_num_threads()))
    accumulators: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(parallel):
        accumulators.put(_Accumulator(all_sizes, strides, num_classes, device))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="spectrum", unit="label")

    def run(batch: list[torch.Tensor]) -> None:
        acc = accumulators.get()
        try:
            labels = torch.stack(batch).to(device, non_blocking=True).long()
            _process_batch(acc, labels, ignore_index, all_sizes, method)
        finally:
            accumulators.put(acc)
        if bar is not None:
            bar.update(len(batch))

    previous_threads = torch.get_num_threads()
    pool = None
    if parallel > 1:
        torch.set_num_threads(1)
        pool = ThreadPoolExecutor(parallel, "segcore-spectrum", initializer=torch.set_num_threads, initargs=(1,))
    in_flight: deque = deque()

    def submit(batch: list[torch.Tensor]) -> None:
        if pool is None:
            run(batch)
            return
        while len(in_flight) >= parallel:
            in_flight.popleft().result()  # bounded memory; re-raises a worker's error
        in_flight.append(pool.submit(run, batch))

    try:
        buckets: dict[tuple[int, int], list[torch.Tensor]] = {}
        pending_pixels = 0
        for i, label in enumerate(_iter_labels(dataset, total, workers)):
            shape = tuple(label.shape[-2:])
            if shape != sizes[i]:
                raise ValueError(f"{_describe(dataset, i)}: decoded size {shape} != header size {sizes[i]}")
            bucket = buckets.setdefault(shape, [])
            bucket.append(label)
            pending_pixels += shape[0] * shape[1]
            per_batch = max(1, _BATCH_PIXELS // (shape[0] * shape[1]))
            if len(bucket) >= per_batch:
                submit(buckets.pop(shape))
                pending_pixels -= len(bucket) * shape[0] * shape[1]
            elif pending_pixels > 2 * _BATCH_PIXELS:
                # Many distinct sizes (ADE20K): flush the fullest bucket to keep memory bounded.
                key = max(buckets, key=lambda k: len(buckets[k]) * k[0] * k[1])
                flushed = buckets.pop(key)
                pending_pixels -= len(flushed) * key[0] * key[1]
                submit(flushed)
        for key in list(buckets):
            submit(buckets.pop(key))
        while in_flight:
            in_flight.popleft().result()
    finally:
        if pool is not None:
            for future in in_flight:
                future.cancel()
            pool.shutdown(wait=True)
            torch.set_num_threads(previous_threads)
        if bar is not None:
            bar.close()
    acc = accumulators.get()
    while not accumulators.empty():
        acc.merge(accumulators.get())
    return _finish(acc, dataset, strides, blocks, tolerance, energy_threshold, started, device)


def _process_batch(
    acc: _Accumulator, labels: torch.Tensor, ignore_index: int | None, sizes: Sequence[int], method: str
) -> None:
    c = acc.num_classes
    valid = _valid_mask(labels, c, ignore_index)
    bad = ~valid
    if ignore_index is not None:
        bad &= labels != ignore_index
    if bool(bad.any()):
        values = sorted({int(v) for v in labels[bad].unique()[:5]})
        raise ValueError(f"label value(s) {values} outside the classes (valid: 0..{c - 1}, ignore {ignore_index})")
    codes = torch.where(valid, labels, torch.full_like(labels, c))
    n, height, width = labels.shape
    acc.num_labels += n
    key = f"{height}x{width}"
    acc.image_sizes[key] = acc.image_sizes.get(key, 0) + n
    # Per-image class histogram: which planes need an FFT, and the class shares.
    image_key = torch.arange(n, device=labels.device)[:, None, None] * (c + 1) + codes
    hist = torch.bincount(image_key.reshape(-1), minlength=n * (c + 1)).view(n, c + 1)[:, :c]
    acc.class_pixels += hist.sum(dim=0)
    _accumulate_energy(acc, codes, hist)
    if method == "dense":
        for size in sizes:
            _accumulate_size_dense(acc, codes, size)
        return
    class_totals = hist.sum(dim=0)
    small = codes.to(torch.uint8 if c < 255 else torch.int16)
    levels = {1: _pixel_cells(codes.to(torch.int16), c)}
    for size in sizes:
        # Pool from the coarsest finer size that divides this one (1 always does).
        parent = max(p for p in levels if size % p == 0 and p < size) if size > 1 else 1
        cells = levels[1] if size == 1 else _pool_cells(levels[parent], size // parent, c)
        levels[size] = cells
        _accumulate_cells(acc, cells, small, class_totals, height, width)


# --------------------------------------------------------------------------------------------
# The count-based path
#
# A stride-s grid is represented by a code per cell: the class when all s x s pixels hold that
# class, C when all are ignored (or outside the map), -1 when the cell is mixed; only mixed cells
# carry a per-class count vector. Coarser grids are pooled from finer ones (codes compared, counts
# of mixed children summed), so the work per size is proportional to the number of cells plus the
# mixed ones, not to C x H x W. The majority oracle and the annotation cost follow from the counts
# alone. For the soft oracle, pixels are grouped by the 2 x 2 cells ("quads") whose proportions
# the bilinear up-sampling blends: a quad whose cells hold one class (or nothing) predicts that
# class everywhere, so only quads touching a mixed cell or a class change are evaluated per pixel,
# and then only over the classes present in their four cells.
# --------------------------------------------------------------------------------------------


@dataclass
class _Cells:
    size: int
    code: torch.Tensor  # (N, h, w) int64: class, C (void) or -1 (mixed)
    index: torch.Tensor  # (M,) ascending flat indices of the mixed cells
    counts: torch.Tensor  # (M, C + 1) int64 pixel counts per class, void last


def _pixel_cells(codes: torch.Tensor, num_classes: int) -> _Cells:
    empty = torch.zeros(0, dtype=torch.int64, device=codes.device)
    return _Cells(1, codes, empty, empty.view(0, 1).expand(0, num_classes + 1))


def _pool_cells(parent: _Cells, factor: int, num_classes: int) -> _Cells:
    """Cells of stride ``parent.size * factor`` from the parent grid (padding counts as void)."""
    c = num_classes
    code_p = parent.code
    n, hp, wp = code_p.shape
    hq, wq = -(-hp // factor), -(-wp // factor)
    if (hq * factor, wq * factor) != (hp, wp):
        padded = torch.full((n, hq * factor, wq * factor), c, dtype=code_p.dtype, device=code_p.device)
        padded[:, :hp, :wp] = code_p
        code_p = padded
    blocks = code_p.view(n, hq, factor, wq, factor)
    if factor <= 4:
        lo = blocks[:, :, 0, :, 0]
        hi = lo
        for a in range(factor):
            for b in range(factor):
                if a or b:
                    v = blocks[:, :, a, :, b]
                    lo = torch.minimum(lo, v)
                    hi = torch.maximum(hi, v)
    else:
        lo, hi = torch.aminmax(blocks.permute(0, 1, 3, 2, 4).reshape(n, hq, wq, factor * factor), dim=-1)
    code = torch.where((lo == hi) & (lo >= 0), lo, torch.full_like(lo, -1))
    index = (code.reshape(-1) < 0).nonzero().squeeze(1)
    m = index.numel()
    counts = torch.zeros(m, c + 1, dtype=torch.int64, device=code.device)
    if m:
        img = index // (hq * wq)
        rest = index % (hq * wq)
        offsets = torch.arange(factor, device=code.device)
        rows = (rest // wq)[:, None] * factor + offsets  # (M, f)
        cols = (rest % wq)[:, None] * factor + offsets
        child = code_p[img[:, None, None], rows[:, :, None], cols[:, None, :]].reshape(m, -1)
        owner = torch.arange(m, device=code.device)[:, None].expand_as(child)
        pure = child >= 0
        key = owner[pure] * (c + 1) + child[pure]
        counts.view(-1).index_add_(0, key, torch.full_like(key, parent.size**2))
        if not bool(pure.all()):
            # Mixed children lie inside the parent grid: find their count rows by flat index.
            flat = ((img[:, None, None] * hp + rows[:, :, None]) * wp + cols[:, None, :]).reshape(m, -1)
            rows_in_parent = torch.searchsorted(parent.index, flat[~pure])
            counts.index_add_(0, owner[~pure], parent.counts[rows_in_parent])
    return _Cells(parent.size * factor, code, index, counts)


def _accumulate_cells(
    acc: _Accumulator,
    cells: _Cells,
    small_codes: torch.Tensor,
    class_totals: torch.Tensor,
    height: int,
    width: int,
) -> None:
    """Majority oracle, soft oracle, CE floor and annotation cost of one size from its cells."""
    c = acc.num_classes
    s = cells.size
    st = acc.stats[s]
    n, h, w = cells.code.shape
    st.pixels += n * height * width
    st.cells += n * h * w
    code = cells.code.reshape(-1)
    pure_hist = torch.bincount(code[(code >= 0) & (code < c)], minlength=c)
    cls_counts = cells.counts[:, :c]
    present = (cls_counts > 0).sum(dim=1)
    st.labelled_cells += int(pure_hist.sum()) + int((present > 0).sum())
    st.mixed_cells += int((present > 1).sum())
    # Majority + nearest: a pure cell is right on all its s*s pixels; a mixed cell's majority
    # collects each class's count in its column.
    conf = torch.diag(pure_hist * (s * s))
    if cls_counts.shape[0]:
        major = cls_counts.argmax(dim=1)  # first maximum: ties go to the lower class, as labels.py
        key = torch.arange(c, device=code.device)[None, :] * c + major[:, None]
        conf.view(-1).index_add_(0, key.reshape(-1), cls_counts.reshape(-1))
    st.conf_majority += conf
    if s == 1:
        st.conf_soft += torch.diag(class_totals)
        return
    conf_soft, ce = _soft_oracle_quads(cells, small_codes, c, height, width)
    # Every valid pixel outside the evaluated quads is predicted right.
    st.conf_soft += conf_soft + torch.diag(class_totals - conf_soft.sum(dim=1))
    st.ce_sum += ce


@lru_cache(maxsize=64)
def _bilinear_weights(stride: int, device: str) -> torch.Tensor:
    """``(s*s, 4)`` integer weights, ``(2s)^2`` times the bilinear weights of the quad corners
    (00, 01, 10, 11) at each pixel of the quad.

    Pixel ``y`` lies between the centres of cells ``a - 1`` and ``a`` at fraction
    ``(2 dy - 2 o + 1 + s) / (2 s)`` (``dy = y + o - a s``, ``o = (s + 1) // 2``), exactly the
    ``align_corners=False`` weights of :func:`labels.upsample_proportions`. Integers keep the
    arg-max exact, so a tie always goes to the lower class whatever the stride.
    """
    o = (stride + 1) // 2
    d = torch.arange(stride, dtype=torch.int64, device=torch.device(device))
    lam = 2 * d - 2 * o + 1 + stride  # 2s * fraction, in [0, 2s)
    ly, lx = lam[:, None], lam[None, :]
    full = 2 * stride
    w = torch.stack([(full - ly) * (full - lx), (full - ly) * lx, ly * (full - lx), ly * lx], dim=-1)
    return w.reshape(stride * stride, 4)


# Strides up to this keep the blended integer values below 2**53 (see _soft_oracle_quads).
_EXACT_MAX_STRIDE = 32

# Elements per chunk of the per-pixel evaluation (quads x pixels x candidate classes).
_QUAD_CHUNK = 4 * 1024 * 1024


def _soft_oracle_quads(
    cells: _Cells, small_codes: torch.Tensor, num_classes: int, height: int, width: int
) -> tuple[torch.Tensor, float]:
    """Confusion and CE sum of the soft (proportions + bilinear) oracle over the quads that need
    per-pixel evaluation; the others are exact by construction (see the section comment)."""
    c = num_classes
    s = cells.size
    code = cells.code
    n, h, w = code.shape
    dev = code.device
    conf = torch.zeros(c, c, dtype=torch.int64, device=dev)
    rows = torch.arange(-1, h + 1, device=dev).clamp(0, h - 1)
    cols = torch.arange(-1, w + 1, device=dev).clamp(0, w - 1)
    k = code[:, rows][:, :, cols]  # replicate-padded (N, h+2, w+2), as the up-sampling clamps
    corners = (k[:, :-1, :-1], k[:, :-1, 1:], k[:, 1:, :-1], k[:, 1:, 1:])
    # Void (C) must not count as a class: map it to C+1 for the minimum and -1 for the maximum.
    lo = [torch.where(v == c, c + 1, v) for v in corners]
    hi = [torch.where(v == c, -1, v) for v in corners]
    cmin = torch.minimum(torch.minimum(lo[0], lo[1]), torch.minimum(lo[2], lo[3]))
    cmax = torch.maximum(torch.maximum(hi[0], hi[1]), torch.maximum(hi[2], hi[3]))
    any_mixed = torch.minimum(torch.minimum(corners[0], corners[1]), torch.minimum(corners[2], corners[3])) < 0
    # A quad whose cells hold one class (void cells allowed) predicts it on all its valid pixels.
    evaluate = any_mixed | ((cmin != cmax) & (cmin <= c))
    quad = evaluate.reshape(-1).nonzero().squeeze(1)
    if quad.numel() == 0:
        return conf, 0.0
    q = quad.numel()
    qn = quad // ((h + 1) * (w + 1))
    rest = quad % ((h + 1) * (w + 1))
    qa, qb = rest // (w + 1), rest % (w + 1)
    ra = torch.stack([(qa - 1).clamp_min(0), qa.clamp_max(h - 1)], dim=1)
    cb = torch.stack([(qb - 1).clamp_min(0), qb.clamp_max(w - 1)], dim=1)
    corner_flat = ((qn[:, None, None] * h + ra[:, :, None]) * w + cb[:, None, :]).reshape(q, 4)
    corner_code = code.reshape(-1)[corner_flat].long()  # (Q, 4): class, C or -1
    mixed = corner_code < 0
    # Count rows: a mixed corner points at its counts, every other corner at an all-zero row.
    m = cells.index.numel()
    table = torch.cat([cells.counts[:, :c], torch.zeros(1, c, dtype=torch.int64, device=dev)])
    row = torch.full((q, 4), m, dtype=torch.int64, device=dev)
    if m:
        row[mixed] = torch.searchsorted(cells.index, corner_flat[mixed])
    # A pure corner counts as one pixel of its class (proportions do not depend on the scale).
    total = torch.where(mixed, table.sum(dim=1)[row], (corner_code < c).long() * (corner_code >= 0))
    # Candidates: the classes present in a quad's four cells, as sorted (quad, class) keys.
    qid = torch.arange(q, device=dev)[:, None].expand(q, 4)
    pure_class = (corner_code >= 0) & (corner_code < c)
    keys = [qid[pure_class] * c + corner_code[pure_class]]
    if m:
        pi, pc = (table[row[mixed]] > 0).nonzero().unbind(1)
        keys.append(qid[mixed][pi] * c + pc)
    keys = torch.unique(torch.cat(keys))  # sorted: by quad, then class
    key_quad, key_class = keys // c, keys % c
    num_cand = torch.bincount(key_quad, minlength=q)
    first = num_cand.cumsum(0) - num_cand

    tot1 = total.clamp_min(1)
    integer_weights = _bilinear_weights(s, str(dev))  # (s*s, 4)
    weights = {t: integer_weights.to(t) for t in (torch.float32, torch.float64)}
    mass = (total > 0).to(torch.float64)  # (Q, 4): the proportions of a cell sum to this
    # Truth pixels: by coordinates when few quads are evaluated, else from a quad-major copy of
    # the map shifted by o = (s+1)//2 (quad (a, b) is then the s x s block (a, b), margin void).
    o = (s + 1) // 2
    quad_major = q * s * s > small_codes.numel() // 4
    if quad_major:
        shifted = F.pad(small_codes, (o, (w + 1) * s - o - width, o, (h + 1) * s - o - height), value=c)
        quad_pixels = shifted.view(n, h + 1, s, w + 1, s).permute(0, 1, 3, 2, 4).reshape(-1, s * s)
    else:
        off = torch.arange(s, device=dev)
        dy = off.repeat_interleave(s) - o
        dx = off.repeat(s) - o
        flat_codes = small_codes.reshape(-1)
    conf_void = torch.zeros((c + 1) * c, dtype=torch.int64, device=dev)
    ce = torch.zeros((), dtype=torch.float64, device=dev)
    for kc in num_cand.unique().tolist():
        group = (num_cand == kc).nonzero().squeeze(1)
        step = max(1, _QUAD_CHUNK // (s * s * kc))
        for start in range(0, group.numel(), step):
            sel = group[start : start + step]
            g = sel.numel()
            if quad_major:
                truth = quad_pixels.index_select(0, quad[sel]).long()  # (G, s*s), void = C
            else:
                y = qa[sel, None] * s + dy
                x = qb[sel, None] * s + dx
                inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
                at = (qn[sel, None] * height + y.clamp(0, height - 1)) * width + x.clamp(0, width - 1)
                truth = torch.where(inside, flat_codes[at].long(), c)
            valid = truth < c
            cand = key_class[first[sel, None] + torch.arange(kc, device=dev)]  # (G, K) ascending
            cnt = table[row[sel][:, :, None], cand[:, None, :]]
            cnt += corner_code[sel][:, :, None] == cand[:, None, :]  # pure corners: one pixel
            t1 = tot1[sel]
            if s <= _EXACT_MAX_STRIDE:
                # Proportions on the common denominator L = lcm_j total_j: counts_j * L / total_j
                # is an integer <= L <= 2**40 and the weights sum to (2s)**2 <= 2**12, so every
                # blended value is an integer below 2**53: exact in float64, and so is the arg-max
                # (ties go to the lower class). When the cells are equally full (the usual case)
                # L is small and the values stay below 2**24: exact in float32, at half the cost.
                common = torch.lcm(torch.lcm(t1[:, 0], t1[:, 1]), torch.lcm(t1[:, 2], t1[:, 3]))
                dtype = torch.float32 if int(common.max()) * (2 * s) ** 2 < 2**24 else torch.float64
                cv = (cnt * (common[:, None] // t1)[:, :, None]).to(dtype)
                common = common.to(dtype)
            else:
                dtype = torch.float64
                cv = cnt.to(dtype) / t1[:, :, None]
                common = torch.ones(g, dtype=dtype, device=dev)
            w = weights[dtype]
            # One GEMM for all quads of the chunk: (s*s, 4) @ (4, G*K).
            val = (w @ cv.permute(1, 0, 2).reshape(4, g * kc)).view(s * s, g, kc)
            if kc == 1:
                pred = cand.expand(g, s * s)
            elif kc == 2:  # the common case (one boundary): a comparison instead of an arg-max
                pred = torch.where(val[:, :, 1] > val[:, :, 0], cand[:, 1], cand[:, 0]).t()
            else:
                pred = cand.t().gather(0, val.argmax(dim=2)).t()  # first maximum: the lower class
            # Void pixels land in an extra confusion row that is dropped (no boolean indexing).
            conf_void += torch.bincount((truth * c + pred).reshape(-1), minlength=(c + 1) * c)
            if kc == 1:
                continue  # one class: its blended share is 1 wherever a pixel is valid, CE 0
            # Cross-entropy floor: the blended value of the true class over the blended mass.
            slot = torch.zeros(g, c + 1, dtype=torch.int64, device=dev)
            slot.scatter_(1, cand, torch.arange(kc, device=dev).expand(g, kc))
            true_pos = slot.gather(1, truth).t()  # (s*s, G)
            num = val.gather(2, true_pos.unsqueeze(2)).squeeze(2)  # (s*s, G)
            den = (w @ mass[sel].t().to(dtype)) * common[None, :]
            ratio = torch.where(valid.t(), num / den, torch.ones_like(num))
            # float32 logs summed in float64: ample for a floor, and half the cost of float64 logs
            ce -= torch.log(ratio.float()).sum(dtype=torch.float64)
    conf += conf_void[: c * c].view(c, c)
    return conf, float(ce)


def _finish(acc, dataset, strides, blocks, tolerance, energy_threshold, started, device) -> SpectrumResult:
    c = acc.num_classes
    total_energy = float(acc.total_energy)
    dc = float(acc.dc_energy)
    band = acc.band.cpu().tolist()
    band_energy = [b / total_energy if total_energy > 0 else float("nan") for b in band]
    band_no_dc = [(b - dc) / (total_energy - dc) if total_energy - dc > 0 else float("nan") for b in band]
    radial = acc.radial.cpu()
    ac_total = total_energy - dc
    radial_energy = (radial / ac_total).tolist() if ac_total > 0 else [float("nan")] * RADIAL_BINS
    radial_frequency = [(i + 0.5) * _MAX_RADIUS / RADIAL_BINS for i in range(RADIAL_BINS)]

    def miou(conf: torch.Tensor) -> float:
        return scores_from_confusion(conf).miou

    valid_pixels = int(acc.class_pixels.sum())
    soft, major, ce, per_class = [], [], [], []
    for s in strides:
        st = acc.stats[s]
        scores = scores_from_confusion(st.conf_soft)
        soft.append(scores.miou)
        per_class.append(scores.per_class_iou)
        major.append(miou(st.conf_majority))
        ce.append(st.ce_sum / valid_pixels if valid_pixels else float("nan"))
    hard_b, soft_b, units, rel, mixed = [], [], [], [], []
    for b in blocks:
        st = acc.stats[b]
        hard_b.append(miou(st.conf_majority))
        soft_b.append(miou(st.conf_soft))
        units.append(st.cells / acc.num_labels)
        rel.append(st.cells / st.pixels)
        mixed.append(st.mixed_cells / st.labelled_cells if st.labelled_cells else 0.0)
    # Stride 1 reproduces the labels, so the dense score is exactly 1 (NaN only without pixels).
    dense = 1.0 if valid_pixels else float("nan")
    # The oracle of a grid is the better of its two decodings: a network may learn either.
    best_grid = [max(a, b) for a, b in zip(soft, major)]
    best_block = [max(a, b) for a, b in zip(hard_b, soft_b)]
    by_miou = efficient_size(strides, best_grid, dense * (1 - tolerance))
    by_energy = efficient_size(strides, band_energy, energy_threshold)
    efficient_block = efficient_size(blocks, best_block, dense * (1 - tolerance))
    names = list(_dataset_attr(dataset, "class_names", ()) or [f"class_{i}" for i in range(c)])
    shares = (acc.class_pixels.double() / max(valid_pixels, 1)).cpu().tolist()
    return SpectrumResult(
        dataset=str(_dataset_attr(dataset, "name", "dataset")),
        split=_dataset_attr(dataset, "split", None),
        num_labels=acc.num_labels,
        num_classes=c,
        ignore_index=_dataset_attr(dataset, "ignore_index", None),
        class_names=names,
        strides=list(strides),
        band_energy=band_energy,
        band_energy_no_dc=band_no_dc,
        oracle_miou_soft=soft,
        oracle_miou_majority=major,
        ce_floor=ce,
        blocks=list(blocks),
        block_oracle_miou_hard=hard_b,
        block_oracle_miou_soft=soft_b,
        annotation_units_per_image=units,
        annotation_relative_units=rel,
        mixed_block_share=mixed,
        efficient_grid_by_miou=by_miou,
        efficient_grid_by_energy=by_energy,
        efficient_block=efficient_block,
        tolerance=float(tolerance),
        energy_threshold=float(energy_threshold),
        dense_miou=dense,
        dc_share=dc / total_energy if total_energy > 0 else float("nan"),
        radial_frequency=radial_frequency,
        radial_energy=radial_energy,
        valid_pixels=valid_pixels,
        class_pixel_share=shares,
        image_sizes=dict(acc.image_sizes),
        oracle_per_class_iou_soft=per_class,
        elapsed_s=time.perf_counter() - started,
        device=str(device),
    )


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def plot_spectrum(result: SpectrumResult, path: str | Path) -> Path:
    """Write a PNG of the curves: band energy and oracle mIoU against stride / block size (log2
    axis, efficient grid marked), CE floor, and the radial spectrum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    ax = axes[0]
    ax.plot(result.strides, result.band_energy, "o-", label="band energy E(s)")
    ax.plot(result.strides, result.band_energy_no_dc, "o--", label="E(s) without DC")
    ax.plot(result.strides, result.oracle_miou_soft, "s-", label="oracle mIoU (soft + bilinear)")
    ax.plot(result.strides, result.oracle_miou_majority, "s--", label="oracle mIoU (majority + nearest)")
    ax.plot(result.blocks, result.block_oracle_miou_hard, "^:", label="block annotation (hard)")
    ax.plot(result.blocks, result.block_oracle_miou_soft, "v:", label="block annotation (soft)")
    marks = [
        (result.efficient_grid_by_miou, "tab:red", f"efficient grid, mIoU within {result.tolerance:.0%}"),
        (result.efficient_grid_by_energy, "tab:purple", f"efficient grid, E(s) >= {result.energy_threshold:g}"),
    ]
    for s, colour, text in marks:
        if s is not None:
            ax.axvline(s, color=colour, alpha=0.6, linestyle="-.", label=f"{text}: s={s}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("grid stride s / block size b (pixels)")
    ax.set_ylabel("share / mIoU")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(f"{result.dataset} {result.split or ''}: {result.num_labels} labels")

    ax = axes[1]
    ax.plot(result.strides, result.ce_floor, "o-", color="tab:brown")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("grid stride s")
    ax.set_ylabel("CE floor (nats)")
    ax.grid(alpha=0.3)
    ax.set_title("cross-entropy floor of the grid")

    ax = axes[2]
    energy = [max(e, 1e-12) for e in result.radial_energy]
    ax.semilogy(result.radial_frequency, energy, "-", color="tab:green")
    for s in result.strides:
        if s > 1:
            ax.axvline(1 / (2 * s), color="grey", alpha=0.3, linewidth=0.8)
    for s, colour in ((result.efficient_grid_by_miou, "tab:red"), (result.efficient_grid_by_energy, "tab:purple")):
        if s is not None and 1 / (2 * s) <= _MAX_RADIUS:  # stride 1's band is the whole spectrum
            ax.axvline(1 / (2 * s), color=colour, alpha=0.7, linestyle="-.")
    ax.set_xlim(0, _MAX_RADIUS)
    ax.set_xlabel("radial frequency |f| (cycles / pixel); grey: 1/(2s), dash-dot: efficient grids")
    ax.set_ylabel("share of non-DC energy per bin")
    ax.grid(alpha=0.3)
    ax.set_title("radial label spectrum")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
