"""The streaming analysis (segcore/spectral/analyze.py): options, bounds, threads, and synthetic
label sets with a known cut-off."""

from __future__ import annotations

import pytest
import torch

from _label_maps import random_blobs
from segcore import spectral
from segcore.data import InMemoryLabels, SyntheticScenes, band_limited_labels, predicted_stride


def test_bad_sizes_are_rejected_before_work():
    ds = InMemoryLabels([torch.zeros(20, 30, dtype=torch.long)], num_classes=2)
    with pytest.raises(ValueError, match="strides: sizes must be integers >= 1, got 0"):
        spectral.analyze(ds, strides=(0, 2))
    with pytest.raises(ValueError, match=r"blocks: 31 is larger than a 20x30 label map; valid values are 1..30"):
        spectral.analyze(ds, strides=(1, 2), blocks=(2, 31))
    with pytest.raises(ValueError, match="tolerance"):
        spectral.analyze(ds, tolerance=1.5)


def test_threads_workers_and_batches_do_not_change_the_numbers():
    # Maps of two sizes (two batches), decoded by three threads and summed by two accumulators side
    # by side: the same confusions and energies as one thread.
    maps = [random_blobs(40, 52, 3, seed=s) for s in range(5)] + [random_blobs(33, 21, 3, seed=9)]
    ds = InMemoryLabels(maps, 3, None)
    one = spectral.analyze(ds, strides=(1, 2, 4), blocks=(2, 8), workers=1, threads=1)
    many = spectral.analyze(ds, strides=(1, 2, 4), blocks=(2, 8), workers=3, threads=2)
    assert many.oracle_miou_soft == one.oracle_miou_soft and many.block_oracle_miou_hard == one.block_oracle_miou_hard
    assert many.band_energy == pytest.approx(one.band_energy, rel=1e-12)
    assert many.ce_floor == pytest.approx(one.ce_floor, rel=1e-12)
    assert many.image_sizes == {"40x52": 5, "33x21": 1} and many.num_labels == 6


def _synthetic(cutoff: float, size=(128, 128), num=4) -> SyntheticScenes:
    return SyntheticScenes("train", num_samples=num, size=size, num_classes=4, cutoff=cutoff, shapes=0, seed=1)


def test_band_energy_tracks_the_cutoff_of_synthetic_labels():
    """Labels thresholded from fields band-limited to f0: E(s) is near 1 for strides that resolve f0
    with margin, collapses past the stride f0 predicts, and scales exactly with 1/f0."""
    strides = (1, 2, 4, 8, 16, 32)
    fine = spectral.analyze(_synthetic(1 / 16), strides=strides, blocks=(1,), workers=1, threads=1)
    coarse = spectral.analyze(_synthetic(1 / 32), strides=strides, blocks=(1,), workers=1, threads=1)
    for r, predicted in ((fine, 8), (coarse, 16)):
        e = dict(zip(strides, r.band_energy))
        assert all(a > b for a, b in zip(r.band_energy, r.band_energy[1:]))
        assert e[predicted // 4] >= 0.9 and e[predicted // 8] >= 0.95  # near 1 where f0 is resolved
        drops = [e[s] - e[2 * s] for s in strides[:-1]]
        # the largest loss of energy is the step past the predicted stride
        assert max(drops) == pytest.approx(e[predicted] - e[2 * predicted])
    # Halving the cut-off doubles the efficient grid, whatever the threshold.
    for threshold in (0.95, 0.9, 0.8):
        a = spectral.efficient_size(strides, fine.band_energy, threshold)
        b = spectral.efficient_size(strides, coarse.band_energy, threshold)
        assert b == 2 * a, threshold


def test_block_structured_labels_give_the_efficient_grid_of_their_cutoff():
    """Labels constant on aligned 8 x 8 blocks carry nothing above f0 = 1/16 that a grid of stride 8
    misses: the oracle is exact up to stride 8 and the efficient grid is 8 (= 1 / (2 f0))."""
    g = torch.Generator().manual_seed(0)
    maps = [band_limited_labels((12, 16), 4, 1 / 6, g, shapes=0) for _ in range(4)]
    maps = [m.repeat_interleave(8, 0).repeat_interleave(8, 1) for m in maps]
    r = spectral.analyze(InMemoryLabels(maps, 4, None), strides=(1, 2, 4, 8, 16), blocks=(4, 8, 16),
                         workers=1, threads=1)
    assert r.oracle_miou_majority[:4] == [1.0, 1.0, 1.0, 1.0]
    assert r.oracle_miou_majority[4] < 0.9
    assert r.efficient_grid_by_miou == predicted_stride(1 / 16) == 8
    assert r.block_oracle_miou_hard[:2] == [1.0, 1.0] and r.efficient_block == 8
    assert r.mixed_block_share[:2] == [0.0, 0.0] and r.mixed_block_share[2] > 0.1
