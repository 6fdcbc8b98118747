"""Band energy and radial spectrum of label maps (docs/design.md, Science).

The energy spectrum of a label map is ``sum_c |F[Y_c](k)|^2`` over the one-hot planes ``Y_c``
(unitary 2-D DFT, ignored pixels zero in every plane). A grid of stride ``s`` represents the band
``|f_y|, |f_x| <= 1/(2s)`` cycles per pixel; ``E(s)`` is the share of the energy inside it.

Two ways to the same numbers: the per-map definitions (:func:`label_power_spectrum`,
:func:`band_energy`; full spectrum, for checking and by hand) and :func:`accumulate_energy`, which
adds a whole batch's band and radial sums from only the low block of the half-spectrum.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from segcore.spectral.accumulator import Accumulator

__all__ = [
    "RADIAL_BINS",
    "MAX_RADIUS",
    "valid_mask",
    "label_power_spectrum",
    "band_mask",
    "band_energy",
    "spectral_cross_entropy",
    "accumulate_energy",
]

RADIAL_BINS = 64
# The radial spectrum covers |f| <= 1/4 cycles per pixel (the energy beyond is 1 - E(2)).
MAX_RADIUS = 0.25
# Planes per FFT call: keeps the complex output of one call near 128 MiB at Cityscapes size.
_FFT_PLANE_PIXELS = 16 * 1024 * 1024


def valid_mask(labels: torch.Tensor, num_classes: int, ignore_index: int | None) -> torch.Tensor:
    """Pixels holding a class ``0..C-1`` that is not ``ignore_index``."""
    valid = (labels >= 0) & (labels < num_classes)
    if ignore_index is not None:
        valid &= labels != ignore_index
    return valid


def signed_index(n: int, device=None) -> torch.Tensor:
    """DFT indices in fftfreq order as integers: 0, 1, ..., -2, -1."""
    index = torch.arange(n, device=device)
    return torch.where(index <= n // 2, index, index - n) if n > 1 else index


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
    valid = valid_mask(labels, num_classes, ignore_index)
    planes = torch.stack([((labels == c) & valid) for c in range(num_classes)]).double()
    spectrum = torch.fft.fft2(planes, norm="ortho")
    return (spectrum.real**2 + spectrum.imag**2).sum(dim=0)


def band_mask(height: int, width: int, stride: int) -> torch.Tensor:
    """Boolean ``(H, W)`` mask of the DFT frequencies a stride-``s`` grid represents:
    ``|f_y| <= 1/(2s)`` and ``|f_x| <= 1/(2s)`` (DFT index order, as :func:`torch.fft.fftfreq`).

    Compared in integers (``2 s |k| <= N``) so that the band edge is exact.
    """
    ky = signed_index(height)
    kx = signed_index(width)
    return ((2 * stride * ky.abs() <= height)[:, None]) & ((2 * stride * kx.abs() <= width)[None, :])


def band_energy(
    labels: torch.Tensor,
    strides: Sequence[int],
    num_classes: int,
    ignore_index: int | None = 255,
) -> tuple[list[float], list[float]]:
    """Band energy ``E(s)`` of one label map ``(H, W)`` for each stride: ``(with DC, without DC)``.

    The plain full-spectrum definition (slow, for checking); :func:`segcore.spectral.analyze`
    computes the same numbers over a whole dataset at once.
    """
    power = label_power_spectrum(labels, num_classes, ignore_index)
    total = float(power.sum())
    dc = float(power[0, 0])
    with_dc, without_dc = [], []
    for stride in strides:
        inside = float(power[band_mask(*labels.shape, int(stride))].sum())
        with_dc.append(inside / total if total > 0 else float("nan"))
        without_dc.append((inside - dc) / (total - dc) if total - dc > 0 else float("nan"))
    return with_dc, without_dc


def spectral_cross_entropy(
    labels: torch.Tensor, log_probs: torch.Tensor, ignore_index: int | None = 255
) -> torch.Tensor:
    """Per-frequency terms of the cross-entropy, by Parseval (docs/design.md, Science):

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
    valid = valid_mask(labels, num_classes, ignore_index)
    onehot = torch.stack([((labels == c) & valid) for c in range(num_classes)]).to(log_probs.dtype)
    label_spectrum = torch.fft.fft2(onehot, norm="ortho")
    log_prob_spectrum = torch.fft.fft2(log_probs, norm="ortho")
    terms = (label_spectrum * log_prob_spectrum.conj()).real.sum(dim=0)
    return -terms / valid.sum().clamp_min(1)


@lru_cache(maxsize=16)
def spectrum_layout(height: int, width: int, strides: tuple[int, ...], device: str):
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
    ky = signed_index(height, dev)[rows].abs()
    kx = torch.arange(kx_max + 1, device=dev)
    weight = torch.where((kx == 0) | (2 * kx == width), 1.0, 2.0).to(torch.float64)
    weight = weight.expand(rows.numel(), kx.numel()).contiguous()
    band_index = torch.zeros(rows.numel(), kx.numel(), dtype=torch.int64, device=dev)
    for stride in strides:
        band_index += (2 * stride * ky <= height)[:, None] & (2 * stride * kx <= width)[None, :]
    radius = torch.sqrt((ky.double() / height)[:, None] ** 2 + (kx.double() / width)[None, :] ** 2)
    radial_index = (radius / MAX_RADIUS * RADIAL_BINS).long()
    radial_index[radius > MAX_RADIUS] = RADIAL_BINS
    radial_index[0, 0] = RADIAL_BINS  # the radial spectrum is of the non-DC energy
    return rows, kx_max + 1, weight.reshape(-1), band_index.reshape(-1), radial_index.reshape(-1)


def accumulate_energy(acc: Accumulator, codes: torch.Tensor, class_hist: torch.Tensor) -> None:
    """Add the spectra of a batch ``codes (N, H, W)`` (void = C) to the band / radial sums.

    ``class_hist (N, C)``: pixels per class and image. Total and DC energy follow from it by
    Parseval (``sum_k |F[Y_c]|^2 = count_c``, ``|F[Y_c](0)|^2 = count_c^2 / (H W)``); the bands
    need the spectrum, but only its low block (:func:`spectrum_layout`): an ``rfft`` along rows
    keeps ``W/4 + 1`` columns, whose ``fft`` along columns keeps ``H/2 + 1`` rows. Only classes
    present in an image are transformed (an absent class has an all-zero spectrum).
    """
    num_images, height, width = codes.shape
    rows, num_columns, weight, band_index, radial_index = spectrum_layout(
        height, width, tuple(acc.strides), str(codes.device)
    )
    counts = class_hist.to(torch.float64)
    acc.total_energy += counts.sum()
    acc.dc_energy += counts.square().sum() / (height * width)
    planes_per_call = max(1, _FFT_PLANE_PIXELS // (height * width))
    power = torch.zeros(rows.numel(), num_columns, 2, dtype=torch.float64, device=codes.device)
    for image in range(num_images):
        classes = class_hist[image].nonzero().squeeze(1).to(codes.dtype)
        for start in range(0, classes.numel(), planes_per_call):
            chunk = classes[start : start + planes_per_call]
            planes = (codes[image].unsqueeze(0) == chunk[:, None, None]).to(torch.float32)
            low_columns = torch.fft.rfft(planes, dim=2, norm="ortho")[:, :, :num_columns]
            low_block = torch.fft.fft(low_columns, dim=1, norm="ortho")[:, rows]  # (P, R, W//4 + 1)
            power += torch.view_as_real(low_block).square_().sum(dim=0, dtype=torch.float64)
    weighted_power = power.sum(dim=2).reshape(-1) * weight
    per_band = torch.bincount(band_index, weights=weighted_power, minlength=len(acc.strides) + 1)
    # Energy inside stride i's band = energy of frequencies held by more than i bands; stride 1
    # holds every frequency, including those outside the low block: its band is the total.
    band = per_band.flip(0).cumsum(0).flip(0)[1:]
    for i, stride in enumerate(acc.strides):
        if stride == 1:
            band[i] = counts.sum()
    acc.band += band
    acc.radial += torch.bincount(radial_index, weights=weighted_power, minlength=RADIAL_BINS + 1)[:RADIAL_BINS]
