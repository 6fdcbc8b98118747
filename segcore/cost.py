"""What a configuration costs, measured from one function.

:func:`measure_cost` returns exactly the keys of :data:`segcore.names.COST_METRICS`:

- ``params_m``: trainable + frozen parameters, millions.
- ``gflops``: forward FLOPs of one image at the evaluation size, 1e9 (``torch.utils.flop_counter``;
  a multiply-add counts 2 FLOPs; FFTs and element-wise ops are not counted by the counter).
- ``decoder_gflops``: the share of those FLOPs spent in ``model.decoder`` (counted on its own, on
  the encoder's real outputs), so the effect of ``keep`` and ``grid_stride`` is visible apart from
  the encoder, which neither knob touches.
- ``latency_ms``: median wall time of repeated forwards of one image (after a warm-up).
- ``peak_memory_mb``: peak CUDA memory allocated during those forwards, or on the CPU the peak
  resident set size of the process so far (``getrusage``; an upper bound, not per model).
- ``annotation_units``, ``relative_annotation_units``, ``mixed_block_share``: labelled units per
  image for block size ``b`` (``ceil(H/b) * ceil(W/b)``), that over ``H*W``, and the share of
  blocks holding more than one class (:func:`segcore.labels.annotation_cost`).
"""

from __future__ import annotations

import resource
import statistics
import sys
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from segcore.labels import annotation_cost
from segcore.names import COST_METRICS

__all__ = ["measure_cost", "count_params", "count_flops", "measure_latency", "annotation_metrics"]


def count_params(model: nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def _flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


@torch.no_grad()
def count_flops(model: nn.Module, input_size: tuple[int, int], device: str | torch.device = "cpu") -> tuple[int, int]:
    """Forward FLOPs ``(total, decoder)`` of one ``(1, 3, H, W)`` image.

    The model must have ``encoder`` and ``decoder`` (a :class:`segcore.models.SegmentationModel`);
    the decoder is counted separately on the encoder's outputs for the same image.
    """
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, 3, *input_size, device=device)
        total = _flops(lambda: model(x))
        feats = model.encoder(x)
        grid = model.grid_size(*input_size)
        decoder = _flops(lambda: model.decoder(feats, grid))
    finally:
        model.train(was_training)
    return total, decoder


@torch.no_grad()
def measure_latency(
    model: nn.Module, input_size: tuple[int, int], device: str | torch.device = "cpu", *, repeats: int = 5,
    warmup: int = 1,
) -> tuple[float, float]:
    """Median forward time of one image in ms, and peak memory in MiB (CUDA allocator peak on a
    GPU; the process's peak resident set size on the CPU)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, *input_size, device=device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    try:
        for i in range(warmup + repeats):
            start = time.perf_counter()
            model(x)
            if cuda:
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000.0)
    finally:
        model.train(was_training)
    if cuda:
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux
    return float(statistics.median(times)), float(peak)


def annotation_metrics(
    labels: torch.Tensor | None, block: int, num_classes: int, ignore_index: int | None,
    size: tuple[int, int] | None = None,
) -> dict[str, float]:
    """Annotation units per image, relative units and mixed-block share for block size ``block``
    over label maps ``(N, H, W)``; without labels only the units (from ``size``) are known and the
    mixed-block share is NaN (dense labels, ``block=1``, have none mixed by definition)."""
    if labels is not None:
        ac = annotation_cost(labels, block, num_classes, ignore_index)
        return {
            "annotation_units": ac.units_per_image,
            "relative_annotation_units": ac.relative_units,
            "mixed_block_share": ac.mixed_block_share,
        }
    if size is None:
        raise ValueError("annotation_metrics needs labels or a size")
    height, width = size
    units = float(-(-height // block) * -(-width // block))
    return {
        "annotation_units": units,
        "relative_annotation_units": units / float(height * width),
        "mixed_block_share": 0.0 if block == 1 else float("nan"),
    }


def measure_cost(
    model: nn.Module,
    input_size: tuple[int, int],
    *,
    block: int = 1,
    labels: torch.Tensor | None = None,
    num_classes: int | None = None,
    ignore_index: int | None = 255,
    device: str | torch.device = "cpu",
    repeats: int = 5,
) -> dict[str, float]:
    """Every cost of ``model`` at evaluation size ``input_size = (H, W)`` and block size ``block``.

    Args:
        model: a :class:`segcore.models.SegmentationModel` (already on ``device``).
        input_size: evaluation image size ``(H, W)``.
        block: annotation block size of the training labels.
        labels: a sample of dense training label maps ``(N, H', W')`` for the annotation metrics.
        num_classes: classes of ``labels`` (default: ``model.num_classes``).
        ignore_index: label value that is not a class.
        device: where latency and memory are measured.
        repeats: timed forwards for the latency median.

    Returns:
        A dict with exactly the keys of ``COST_METRICS`` (floats).
    """
    total, decoder = count_flops(model, input_size, device)
    latency, peak = measure_latency(model, input_size, device, repeats=repeats)
    classes = num_classes if num_classes is not None else model.num_classes
    cost = {
        "gflops": total / 1e9,
        "decoder_gflops": decoder / 1e9,
        "params_m": count_params(model) / 1e6,
        "latency_ms": latency,
        "peak_memory_mb": peak,
        **annotation_metrics(labels, block, classes, ignore_index, size=input_size),
    }
    return {k: float(cost[k]) for k in COST_METRICS}
