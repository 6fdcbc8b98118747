"""What a configuration costs, measured from one function.

:func:`measure_cost` returns exactly the keys of :data:`segcore.names.COST_METRICS`:

- ``params_m``: trainable + frozen parameters, millions.
- ``gflops``: forward FLOPs of one image at the evaluation size, 1e9 (``torch.utils.flop_counter``;
  a multiply-add counts 2 FLOPs; FFTs are counted by :data:`FFT_FLOP_FORMULAS`; element-wise ops,
  pooling and interpolation are not counted).
- ``decoder_gflops``: the share of those FLOPs spent in ``model.decoder`` (counted on its own, on
  the encoder's real outputs), so the effect of ``keep`` and ``grid_stride`` is visible apart from
  the encoder, which neither knob touches.
- ``fft_gflops``: the FFT and inverse-FFT part of ``gflops`` (the spectral truncation's cost; zero at
  ``keep = 1`` or with ``resize`` truncation).
- ``latency_ms``: median wall time of repeated forwards of one image (after a warm-up).
- ``peak_memory_mb``: peak CUDA memory allocated during those forwards, or on the CPU the peak
  resident set size of the process so far (``getrusage``; an upper bound, not per model).
- ``annotation_units``, ``relative_annotation_units``, ``mixed_block_share``: labelled units per
  image for block size ``b`` (``ceil(H/b) * ceil(W/b)``), that over ``H*W``, and the share of
  blocks holding more than one class (:func:`segcore.labels.annotation_cost`).
"""

from __future__ import annotations

import math
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from segcore.labels import annotation_cost
from segcore.names import COST_METRICS

__all__ = [
    "measure_cost", "count_params", "count_flops", "FlopCount", "fft_flops", "FFT_FLOP_FORMULAS", "measure_latency",
    "annotation_metrics",
]

aten = torch.ops.aten


def count_params(model: nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def fft_flops(shape: Sequence[int], dims: Sequence[int], *, real: bool) -> int:
    """FLOPs of a multi-dimensional FFT over ``dims`` of a signal of ``shape``.

    The standard count for a radix-2 complex FFT of ``N`` points is ``5 * N * log2(N)`` real
    FLOPs (Cooley-Tukey: ``N/2 * log2(N)`` butterflies of one complex multiply, 6 FLOPs, and two
    complex adds, 4 FLOPs); a multi-dimensional transform over sizes ``n1, n2, ...`` counts as one
    of ``N = n1 * n2 * ...`` points. Every independent signal (batch and channel entries: the
    product of the other sizes) is counted. A transform of real input or to real output
    (``rfft``/``irfft``, ``_fft_r2c``/``_fft_c2r``) counts half, as it does half the work.
    ``shape`` is the complex side of a ``c2c`` transform, the real input of ``r2c`` and the real
    output of ``c2r``.
    """
    dims = [d % len(shape) for d in dims]
    points = math.prod(shape[d] for d in dims)
    signals = math.prod(shape) // points if points else 0
    if points <= 1:
        return 0
    flops = 5.0 * points * math.log2(points) * signals
    return round(flops / 2 if real else flops)


def _c2c_flops(self_shape, dim, *args, out_shape=None, **kwargs) -> int:
    return fft_flops(self_shape, dim, real=False)


def _r2c_flops(self_shape, dim, *args, out_shape=None, **kwargs) -> int:
    return fft_flops(self_shape, dim, real=True)


def _c2r_flops(self_shape, dim, *args, out_shape=None, **kwargs) -> int:
    return fft_flops(out_shape, dim, real=True)


#: FLOP formulas for the aten FFT ops (every ``torch.fft`` transform dispatches to one of these),
#: added to :class:`~torch.utils.flop_counter.FlopCounterMode`, which does not count FFTs itself.
FFT_FLOP_FORMULAS = {aten._fft_c2c: _c2c_flops, aten._fft_r2c: _r2c_flops, aten._fft_c2r: _c2r_flops}


class FlopCount(NamedTuple):
    """Forward FLOPs of one image: the whole model, its decoder, and the FFTs among them."""

    total: int
    decoder: int
    fft: int


def _flops(fn) -> tuple[int, int]:
    """``(all FLOPs, FFT FLOPs)`` of running ``fn()``."""
    counter = FlopCounterMode(display=False, custom_mapping=FFT_FLOP_FORMULAS)
    with counter:
        fn()
    by_op = counter.get_flop_counts().get("Global", {})
    fft = sum(by_op.get(op, 0) for op in FFT_FLOP_FORMULAS)
    return int(counter.get_total_flops()), int(fft)


@torch.no_grad()
def count_flops(model: nn.Module, input_size: tuple[int, int], device: str | torch.device = "cpu") -> FlopCount:
    """Forward FLOPs ``(total, decoder, fft)`` of one ``(1, 3, H, W)`` image.

    The model must have ``encoder`` and ``decoder`` (a :class:`segcore.models.SegmentationModel`);
    the decoder is counted separately on the encoder's outputs for the same image. ``fft`` is the
    FFT part of ``total`` (:func:`fft_flops`).
    """
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, 3, *input_size, device=device)
        total, fft = _flops(lambda: model(x))
        feats = model.encoder(x)
        grid = model.grid_size(*input_size)
        decoder, _ = _flops(lambda: model.decoder(feats, grid))
    finally:
        model.train(was_training)
    return FlopCount(total, decoder, fft)


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
    flops = count_flops(model, input_size, device)
    latency, peak = measure_latency(model, input_size, device, repeats=repeats)
    classes = num_classes if num_classes is not None else model.num_classes
    cost = {
        "gflops": flops.total / 1e9,
        "decoder_gflops": flops.decoder / 1e9,
        "fft_gflops": flops.fft / 1e9,
        "params_m": count_params(model) / 1e6,
        "latency_ms": latency,
        "peak_memory_mb": peak,
        **annotation_metrics(labels, block, classes, ignore_index, size=input_size),
    }
    return {k: float(cost[k]) for k in COST_METRICS}
