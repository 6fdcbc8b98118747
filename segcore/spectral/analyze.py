"""The streaming analysis of a dataset's label maps: :func:`analyze`.

Labels are decoded by a few threads, grouped by size into stacked batches (bounded in pixels), and
each batch is reduced to sums (:mod:`segcore.spectral.batch`) in one of several accumulators; only
confusion matrices and energy sums are kept, so memory does not grow with the dataset.
"""

from __future__ import annotations

import os
import queue
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

from segcore.labels import max_stride
from segcore.spectral.accumulator import Accumulator
from segcore.spectral.batch import process_batch
from segcore.spectral.result import SpectrumResult, build_result

__all__ = ["DEFAULT_STRIDES", "DEFAULT_BLOCKS", "analyze"]

DEFAULT_STRIDES = (1, 2, 4, 8, 16, 32)
DEFAULT_BLOCKS = (1, 2, 4, 8, 16, 32)
# Pixels per stacked batch: bounds memory (the FFT of a batch holds about C times this).
_BATCH_PIXELS = 4 * 1024 * 1024

Shape = tuple[int, int]


def _describe(dataset, index: int) -> str:
    return dataset.describe(index) if hasattr(dataset, "describe") else f"label {index}"


def _label_sizes(dataset, count: int) -> list[Shape]:
    """Header sizes of labels ``0..count-1``, checked against their images before any decoding."""
    sizes = []
    for index in range(count):
        if hasattr(dataset, "label_size"):
            size = tuple(dataset.label_size(index))
        else:
            size = tuple(dataset.load_label(index).shape[-2:])
        image_size = dataset.image_size(index) if hasattr(dataset, "image_size") else None
        if image_size is not None and tuple(image_size) != size:
            raise ValueError(
                f"{_describe(dataset, index)}: label size {size[0]}x{size[1]} != image size "
                f"{image_size[0]}x{image_size[1]}"
            )
        sizes.append(size)
    return sizes


def _check_sizes(sizes: Sequence[int], shapes: set[Shape], option: str) -> list[int]:
    """Validate sizes (integers from 1 to :func:`segcore.labels.max_stride` of every label map);
    return them sorted and unique."""
    if not sizes:
        raise ValueError(f"{option}: give at least one size (e.g. 1 2 4 8)")
    checked = []
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) and not (isinstance(size, float) and size.is_integer()):
            raise ValueError(f"{option}: sizes must be integers >= 1, got {size!r}")
        size = int(size)
        if size < 1:
            raise ValueError(f"{option}: sizes must be integers >= 1, got {size}")
        for height, width in shapes:
            if size > max_stride(height, width):
                raise ValueError(
                    f"{option}: {size} is larger than a {height}x{width} label map; "
                    f"valid values are 1..{min(max_stride(h, w) for h, w in shapes)}"
                )
        checked.append(size)
    return sorted(set(checked))


def _check_options(tolerance: float, energy_threshold: float, method: str, limit: int | None) -> None:
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
    if not 0 < energy_threshold <= 1:
        raise ValueError(f"energy_threshold must be in (0, 1], got {energy_threshold}")
    if method not in ("fast", "dense"):
        raise ValueError(f"method must be 'fast' or 'dense', got {method!r}")
    if limit is not None and int(limit) < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")


def _iter_labels(dataset, count: int, workers: int) -> Iterator[torch.Tensor]:
    """Labels ``0..count-1`` in order, decoded by a small thread pool (PNG decoding releases the GIL,
    so it overlaps with the tensor work of the main thread)."""
    if workers <= 1:
        for index in range(count):
            yield dataset.load_label(index)
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


def _batches(labels: Iterator[torch.Tensor], sizes: list[Shape], describe: Callable[[int], str]):
    """Stacks of same-size labels, each about ``_BATCH_PIXELS``; with many distinct sizes (ADE20K)
    the fullest bucket is flushed early to keep memory bounded."""
    buckets: dict[Shape, list[torch.Tensor]] = {}
    pending_pixels = 0
    for index, label in enumerate(labels):
        shape = tuple(label.shape[-2:])
        if shape != sizes[index]:
            raise ValueError(f"{describe(index)}: decoded size {shape} != header size {sizes[index]}")
        bucket = buckets.setdefault(shape, [])
        bucket.append(label)
        pending_pixels += shape[0] * shape[1]
        per_batch = max(1, _BATCH_PIXELS // (shape[0] * shape[1]))
        if len(bucket) >= per_batch:
            yield buckets.pop(shape)
            pending_pixels -= len(bucket) * shape[0] * shape[1]
        elif pending_pixels > 2 * _BATCH_PIXELS:
            key = max(buckets, key=lambda k: len(buckets[k]) * k[0] * k[1])
            flushed = buckets.pop(key)
            pending_pixels -= len(flushed) * key[0] * key[1]
            yield flushed
    for key in list(buckets):
        yield buckets.pop(key)


class _BatchRunner:
    """Runs batches on ``parallel`` accumulators. On CPU, whole batches run side by side in Python
    threads with one intra-op thread each: the pipeline is many mid-sized ops, and OpenMP
    fork/join per op costs more than it gains (on a busy machine, several times more); torch
    releases the GIL inside ops. At most ``parallel`` batches are in flight (bounded memory)."""

    def __init__(self, accumulators: list[Accumulator], device: torch.device, run_batch, bar=None):
        self.parallel = len(accumulators)
        self.device = device
        self.run_batch = run_batch
        self.bar = bar
        self.accumulators: queue.SimpleQueue = queue.SimpleQueue()
        for acc in accumulators:
            self.accumulators.put(acc)
        self.in_flight: deque = deque()
        self.pool = None
        self.previous_threads = torch.get_num_threads()

    def __enter__(self) -> _BatchRunner:
        if self.parallel > 1:
            torch.set_num_threads(1)
            self.pool = ThreadPoolExecutor(
                self.parallel, "segcore-spectrum", initializer=torch.set_num_threads, initargs=(1,)
            )
        return self

    def _run(self, batch: list[torch.Tensor]) -> None:
        acc = self.accumulators.get()
        try:
            labels = torch.stack(batch).to(self.device, non_blocking=True).long()
            self.run_batch(acc, labels)
        finally:
            self.accumulators.put(acc)
        if self.bar is not None:
            self.bar.update(len(batch))

    def submit(self, batch: list[torch.Tensor]) -> None:
        if self.pool is None:
            self._run(batch)
            return
        while len(self.in_flight) >= self.parallel:
            self.in_flight.popleft().result()  # re-raises a worker's error
        self.in_flight.append(self.pool.submit(self._run, batch))

    def wait(self) -> Accumulator:
        """Wait for every batch; return the merged sums."""
        while self.in_flight:
            self.in_flight.popleft().result()
        acc = self.accumulators.get()
        while not self.accumulators.empty():
            acc.merge(self.accumulators.get())
        return acc

    def __exit__(self, *exc_info) -> None:
        if self.pool is not None:
            for future in self.in_flight:
                future.cancel()
            self.pool.shutdown(wait=True)
            torch.set_num_threads(self.previous_threads)
        if self.bar is not None:
            self.bar.close()


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
    """Spectral curves, oracle curves and efficient grid of a dataset's label maps
    (docs/design.md, Science).

    Args:
        dataset: a :class:`segcore.data.SegmentationDataset` (or anything with ``__len__``,
            ``load_label(i) -> (H, W)``, ``num_classes``, ``ignore_index``); only labels are read.
        strides: grid strides ``s``, each from 1 to :func:`segcore.labels.max_stride` of every
            label map (``max(H, W)``).
        blocks: annotation block sizes ``b`` (same bounds).
        tolerance: relative mIoU loss allowed for the efficient grid (``0.01`` = 1% of dense).
        energy_threshold: band-energy share the efficient grid must keep (criterion 2).
        limit: analyse only the first ``limit`` labels.
        device: torch device; default CUDA when available, else CPU.
        progress: show a tqdm progress bar.
        workers: label-decoding threads (default: up to 4, by CPU count).
        threads: batches analysed side by side on CPU (default: ``torch.get_num_threads()``);
            each runs with one intra-op thread.
        method: ``"fast"`` (count-based cells, :mod:`segcore.spectral.cells`) or ``"dense"`` (the
            plain definitions, ``O(C H W)`` per size; the reference the fast path is tested against).

    Returns:
        A :class:`SpectrumResult`.

    Raises:
        ValueError: bad option, label value outside the classes (naming the file), image/label
            size mismatch, stride/block larger than a label map — all but the label values before
            any label is decoded.
    """
    started = time.perf_counter()
    _check_options(tolerance, energy_threshold, method, limit)
    num_classes = int(dataset.num_classes)
    ignore_index = getattr(dataset, "ignore_index", None)
    total = len(dataset) if limit is None else min(len(dataset), int(limit))
    if total < 1:
        raise ValueError(f"dataset {getattr(dataset, 'name', '?')!r} has no label maps")
    sizes = _label_sizes(dataset, total)
    strides = _check_sizes(strides, set(sizes), "strides")
    blocks = _check_sizes(blocks, set(sizes), "blocks")
    all_sizes = sorted(set(strides) | set(blocks))

    device = torch.device(device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")
    if workers is None:
        workers = max(1, min(4, (os.cpu_count() or 1)))
    parallel = 1 if device.type != "cpu" else max(1, int(threads or torch.get_num_threads()))
    accumulators = [Accumulator(all_sizes, strides, num_classes, device) for _ in range(parallel)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="spectrum", unit="label")

    def run_batch(acc: Accumulator, labels: torch.Tensor) -> None:
        process_batch(acc, labels, ignore_index, all_sizes, method)

    with _BatchRunner(accumulators, device, run_batch, bar) as runner:
        for batch in _batches(_iter_labels(dataset, total, workers), sizes, lambda i: _describe(dataset, i)):
            runner.submit(batch)
        acc = runner.wait()
    return build_result(acc, dataset, strides, blocks, tolerance, energy_threshold, started, device)
