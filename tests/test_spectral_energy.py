"""Band energy, radial spectrum and the spectral cross-entropy (segcore/spectral/energy.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _label_maps import random_blobs
from segcore import spectral
from segcore.data import InMemoryLabels
from segcore.spectral.energy import MAX_RADIUS, RADIAL_BINS


def test_power_spectrum_parseval_and_band_energy_match_numpy():
    labels = random_blobs(15, 22, 3, seed=1)
    labels[0, :5] = 255
    power = spectral.label_power_spectrum(labels, 3, 255)
    assert float(power.sum()) == pytest.approx(15 * 22 - 5, rel=1e-12)
    # Independent NumPy computation of E(s) for s = 2, 3.
    lab = labels.numpy()
    planes = np.stack([(lab == c) for c in range(3)]).astype(np.float64)
    spec = np.abs(np.fft.fft2(planes, norm="ortho")) ** 2
    fy = np.abs(np.fft.fftfreq(15))[:, None]
    fx = np.abs(np.fft.fftfreq(22))[None, :]
    with_dc, no_dc = spectral.band_energy(labels, [2, 3], 3, 255)
    for s, e, e0 in zip([2, 3], with_dc, no_dc):
        inside = (fy <= 1 / (2 * s) + 1e-12) & (fx <= 1 / (2 * s) + 1e-12)
        total = spec.sum()
        dc = spec[:, 0, 0].sum()
        band = spec[:, inside].sum()
        assert e == pytest.approx(band / total, abs=1e-12)
        assert e0 == pytest.approx((band - dc) / (total - dc), abs=1e-12)


def test_band_mask_edges_are_exact():
    # 2 s |k| <= N: for N = 16, s = 2 the band holds |k| <= 4 exactly (f = 1/4 included).
    mask = spectral.band_mask(16, 16, 2)
    kept = [k for k in range(16) if mask[k, 0]]
    assert kept == [0, 1, 2, 3, 4, 12, 13, 14, 15]
    assert bool(spectral.band_mask(7, 9, 1).all())


def test_parseval_cross_entropy_equals_frequency_sum():
    torch.manual_seed(0)
    labels = torch.randint(0, 4, (13, 18))
    labels[2:4, 5:9] = 255
    logits = torch.randn(4, 13, 18, dtype=torch.float64)
    log_probs = torch.log_softmax(logits, dim=0)
    spatial = F.nll_loss(log_probs[None], labels[None], ignore_index=255)
    terms = spectral.spectral_cross_entropy(labels, log_probs, 255)
    assert terms.shape == (13, 18)
    assert float(terms.sum()) == pytest.approx(float(spatial), rel=1e-12, abs=1e-12)
    # float32 too, to float precision
    terms32 = spectral.spectral_cross_entropy(labels, log_probs.float(), 255)
    assert float(terms32.sum()) == pytest.approx(float(spatial), rel=1e-5)


def test_streamed_band_and_radial_energy_match_the_full_spectrum():
    # The streamed sums use only the low block of the half-spectrum; the full spectrum of the same
    # map gives the band energies and the radial histogram of the non-DC energy below |f| = 1/4.
    labels = random_blobs(24, 30, 3, seed=4)
    strides = (1, 2, 3, 4, 6)
    r = spectral.analyze(InMemoryLabels([labels], 3, None), strides=strides, blocks=(1,), workers=1, threads=1)
    with_dc, no_dc = spectral.band_energy(labels, strides, 3, None)
    assert r.band_energy == pytest.approx(with_dc, abs=1e-6)  # float32 FFTs, float64 sums
    assert r.band_energy_no_dc == pytest.approx(no_dc, abs=1e-6)
    power = spectral.label_power_spectrum(labels, 3, None).numpy()
    fy = np.fft.fftfreq(24)[:, None]
    fx = np.fft.fftfreq(30)[None, :]
    radius = np.sqrt(fy**2 + fx**2)
    radius[0, 0] = np.inf  # the radial spectrum is of the non-DC energy
    inside = radius <= MAX_RADIUS
    bins = np.minimum((radius[inside] / MAX_RADIUS * RADIAL_BINS).astype(int), RADIAL_BINS)
    expected = np.bincount(bins, weights=power[inside], minlength=RADIAL_BINS + 1)[:RADIAL_BINS]
    ac_total = power.sum() - power[0, 0]
    assert r.radial_energy == pytest.approx(list(expected / ac_total), abs=1e-7)
    assert r.dc_share == pytest.approx(power[0, 0] / power.sum(), abs=1e-12)
