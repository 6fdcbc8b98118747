"""Spectral truncation of feature maps (docs/design.md, Science: decoder truncation).

A feature map ``(N, C, H, W)`` is transformed with a 2-D FFT, only the low band — a fraction
``keep`` of the frequencies along each axis — is kept, and the inverse transform is taken at the
reduced size ``(round(keep*H), round(keep*W))``. Convolutions that follow run on the smaller map,
so their FLOPs fall by about ``keep**2`` (Chen, Chiu, Wu, arXiv 2012.14123, §5: the decoder's
features are dominated by low frequencies, so the high band can be cut with little loss).

Normalisation: with ``norm="forward"`` the forward DFT divides by ``H*W`` and the inverse at size
``h*w`` does not multiply back, so the DC coefficient is the mean on both sides — a constant map
stays the same constant, and a band-limited map is resampled exactly (sinc interpolation).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SpectralTruncation", "truncated_size", "spectral_resize", "resize_to", "TRUNCATIONS"]

TRUNCATIONS = ("fft", "resize")
Truncation = Literal["fft", "resize"]


def check_keep(keep: float) -> float:
    """Validate ``keep`` in (0, 1]; return it as float."""
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not math.isfinite(keep):
        raise ValueError(f"keep must be a number in (0, 1], got {keep!r}")
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1] (share of frequencies kept per axis), got {keep}")
    return float(keep)


def check_truncation(truncation: str) -> str:
    if truncation not in TRUNCATIONS:
        raise ValueError(f"truncation must be one of {list(TRUNCATIONS)}, got {truncation!r}")
    return truncation


def truncated_size(height: int, width: int, keep: float) -> tuple[int, int]:
    """Size ``(max(1, round(keep*H)), max(1, round(keep*W)))`` of a truncated ``H x W`` map."""
    return max(1, round(keep * height)), max(1, round(keep * width))


def resize_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize feature maps ``(N, C, H, W)`` to ``size``: area averaging when shrinking (no
    aliasing), bilinear interpolation when growing, nothing when the size already matches."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    if size[0] <= x.shape[-2] and size[1] <= x.shape[-1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _low_band(spec: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Keep the ``size`` lowest frequencies of an FFT axis (DC first, negatives at the end)."""
    n = spec.shape[dim]
    if size >= n:
        return spec
    pos = (size + 1) // 2  # DC and the positive frequencies
    neg = size - pos       # the most negative frequencies kept
    parts = [spec.narrow(dim, 0, pos)]
    if neg:
        parts.append(spec.narrow(dim, n - neg, neg))
    return torch.cat(parts, dim=dim)


def _even_nyquist_row(spec: torch.Tensor, rows: torch.Tensor, size: tuple[int, int], full_width: int) -> torch.Tensor:
    """``rows`` (the kept rows of the half spectrum ``spec``; an even kept height below the full
    one) with its last kept row, frequency ``-h/2``, set to what the real part of the full crop's
    inverse sees there: the mean of rows ``-h/2`` and ``+h/2`` (the crop drops ``+h/2``), except at
    column ``w/2`` of an even, cropped width, where it sees ``+h/2`` alone."""
    height, width = size
    half = height // 2
    plus, minus = spec.narrow(-2, half, 1), spec.narrow(-2, spec.shape[-2] - half, 1)
    nyquist = (plus + minus) / 2
    if width % 2 == 0 and width < full_width:
        corner = width // 2
        nyquist = torch.cat([nyquist.narrow(-1, 0, corner), plus.narrow(-1, corner, 1),
                             nyquist.narrow(-1, corner + 1, nyquist.shape[-1] - corner - 1)], dim=-1)
    return torch.cat([rows.narrow(-2, 0, half), nyquist, rows.narrow(-2, half + 1, height - half - 1)], dim=-2)


def spectral_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample ``x`` ``(N, C, H, W)`` down to ``size`` by cropping its 2-D spectrum (low band).

    The result is the real part of the inverse FFT, at ``size``, of the low band of ``fft2(x)``
    (:func:`_low_band` on both axes); it is computed with real transforms (``rfft2``/``irfft2``,
    half the work of complex ones), which give the same numbers. Half precision runs in float32
    (half-precision FFTs need power-of-two sizes); the result has ``x``'s dtype.
    """
    height, width = size
    full_height, full_width = x.shape[-2:]
    if (height, width) == (full_height, full_width):
        return x
    dtype = x.dtype
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    spec = torch.fft.rfft2(work, norm="forward")  # columns 0 .. W//2: the others are their conjugates
    rows = _low_band(spec, height, -2)
    if height % 2 == 0 and height < full_height:
        rows = _even_nyquist_row(spec, rows, size, full_width)
    band = rows.narrow(-1, 0, min(width // 2 + 1, rows.shape[-1]))
    out = torch.fft.irfft2(band, s=(height, width), norm="forward")
    return out.to(dtype)


class SpectralTruncation(nn.Module):
    """Keep the low ``keep`` share of frequencies along each axis; output at the reduced size.

    Args:
        keep: fraction of frequencies kept per axis, in (0, 1]; ``1`` is the identity.
        mode: ``fft`` (crop the spectrum, inverse FFT at the reduced size; differentiable) or
            ``resize`` (area averaging to the same size: the cheap baseline).

    Shapes: ``(N, C, H, W) -> (N, C, round(keep*H), round(keep*W))``.
    """

    def __init__(self, keep: float = 1.0, mode: Truncation = "fft"):
        super().__init__()
        self.keep = check_keep(keep)
        self.mode = check_truncation(mode)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return truncated_size(height, width, self.keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.keep == 1.0:
            return x
        size = self.output_size(*x.shape[-2:])
        if self.mode == "fft":
            return spectral_resize(x, size)
        return F.adaptive_avg_pool2d(x, size)

    def shrink_to_grid(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``x`` brought down to the truncated grid ``output_size(*grid)`` if it is larger there,
        else ``x`` unchanged.

        A larger map is resized to the grid and truncated, so the convolution that follows runs
        on ``keep**2`` of the grid's positions. A map no larger than the truncated grid (a coarse
        encoder level) holds no band above the kept one: the caller convolves it at its own size
        and interpolates the result up, which costs less and spends no FFT.
        """
        size = self.output_size(*grid)
        if x.shape[-2] <= size[0] and x.shape[-1] <= size[1]:
            return x
        return self(resize_to(x, grid))

    def extra_repr(self) -> str:
        return f"keep={self.keep}, mode={self.mode!r}"
