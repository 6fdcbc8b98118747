"""Oracle mIoU and CE floor of a grid, fast (count-based, exact-integer soft oracle) and dense paths
(segcore/spectral/oracle.py, cells.py, soft_oracle.py) against the plain definitions in labels.py."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from _label_maps import random_blobs
from segcore import labels as seg_labels
from segcore import spectral
from segcore.data import InMemoryLabels
from segcore.metrics import confusion_matrix, scores_from_confusion
from segcore.spectral.soft_oracle import bilinear_weights


def exact_soft_prediction(labels: torch.Tensor, stride: int, num_classes: int, ignore_index: int | None) -> torch.Tensor:
    """Soft oracle prediction from the definition, in exact rational arithmetic: proportions per
    cell, bilinear up-sampling with ``align_corners=False`` (source coordinate ``(y + 0.5) / s - 0.5``,
    clamped to the grid), arg-max with ties to the lower class."""
    h, w = labels.shape
    counts = seg_labels.class_counts(labels, stride, num_classes, ignore_index)[0]
    gh, gw = counts.shape[-2:]
    totals = counts.sum(0)

    def prop(c, i, j):
        t = int(totals[i, j])
        return Fraction(int(counts[c, i, j]), t) if t else Fraction(0)

    def axis(y, n):
        src = max(Fraction(2 * y + 1, 2 * stride) - Fraction(1, 2), Fraction(0))
        i0 = min(math.floor(src), n - 1)
        i1 = min(i0 + 1, n - 1)
        return i0, i1, src - i0

    pred = torch.zeros(h, w, dtype=torch.long)
    for y in range(h):
        y0, y1, ly = axis(y, gh)
        for x in range(w):
            x0, x1, lx = axis(x, gw)
            vals = [
                (1 - ly) * ((1 - lx) * prop(c, y0, x0) + lx * prop(c, y0, x1))
                + ly * ((1 - lx) * prop(c, y1, x0) + lx * prop(c, y1, x1))
                for c in range(num_classes)
            ]
            pred[y, x] = vals.index(max(vals))
    return pred


def reference_stats(labels: torch.Tensor, stride: int, num_classes: int, ignore_index: int | None, exact: bool):
    """Oracle confusions and CE floor of one map by the plain definitions in labels.py (soft
    prediction in exact arithmetic when ``exact``, else in float32 as labels.py computes it)."""
    h, w = labels.shape
    props = seg_labels.grid_proportions(labels, stride, num_classes, ignore_index)
    up = seg_labels.upsample_proportions(props.double(), stride, (h, w))
    pred = exact_soft_prediction(labels, stride, num_classes, ignore_index) if exact else (
        seg_labels.upsample_proportions(props, stride, (h, w)).argmax(0))
    soft = confusion_matrix(pred, labels, num_classes, ignore_index)
    major = seg_labels.grid_majority(labels, stride, num_classes, ignore_index)
    major = torch.where(major == ignore_index, torch.zeros_like(major), major) if ignore_index is not None else major
    hard = confusion_matrix(seg_labels.upsample_labels(major, stride, (h, w)), labels, num_classes, ignore_index)
    valid = (labels >= 0) & (labels < num_classes)
    if ignore_index is not None:
        valid &= labels != ignore_index
    p = up / up.sum(0, keepdim=True).clamp_min(1e-30)
    p_true = p.gather(0, labels.clamp(0, num_classes - 1)[None])[0]
    ce = float(-torch.log(p_true[valid]).sum())
    return soft, hard, ce, int(valid.sum())


@pytest.mark.parametrize("method", ["fast", "dense"])
def test_constant_map_is_exact_at_every_stride(method):
    ds = InMemoryLabels([torch.full((37, 50), 2), torch.full((37, 50), 2)], num_classes=3, ignore_index=255)
    r = spectral.analyze(ds, strides=(1, 2, 3, 4, 8, 16, 32), blocks=(1, 5, 32), method=method, workers=1)
    assert r.oracle_miou_soft == [1.0] * 7
    assert r.oracle_miou_majority == [1.0] * 7
    assert r.block_oracle_miou_hard == [1.0] * 3
    assert r.block_oracle_miou_soft == [1.0] * 3
    assert r.ce_floor == pytest.approx([0.0] * 7, abs=1e-6)
    assert r.band_energy == pytest.approx([1.0] * 7, abs=1e-6)
    assert r.mixed_block_share == [0.0] * 3
    assert r.efficient_grid_by_miou == 32
    assert r.efficient_grid_by_energy == 32
    assert r.annotation_units_per_image == [37 * 50, 8 * 10, 2 * 2]


@pytest.mark.parametrize("method", ["fast", "dense"])
def test_ignore_index_never_votes_nor_scores(method):
    # One 2x2 cell: three ignored pixels and one class-1 pixel -> majority 1, scored on 1 pixel.
    lab = torch.tensor([[255, 255, 0, 0], [255, 1, 0, 0]])
    ds = InMemoryLabels([lab], num_classes=2, ignore_index=255)
    r = spectral.analyze(ds, strides=(2,), blocks=(2,), method=method, workers=1)
    assert r.oracle_miou_majority == [1.0]
    assert r.block_oracle_miou_hard == [1.0]
    assert r.valid_pixels == 5
    assert r.mixed_block_share == [0.0]  # the ignored pixels do not make a block mixed
    # Energy: the ignored pixels are zero in every plane, so the total is 5 (Parseval).
    acc_total = spectral.label_power_spectrum(lab, 2, 255).sum()
    assert float(acc_total) == pytest.approx(5.0)
    with_dc, _ = spectral.band_energy(lab, [2], 2, 255)
    assert r.band_energy[0] == pytest.approx(with_dc[0], abs=1e-6)


@pytest.mark.parametrize("method", ["fast", "dense"])
def test_matches_plain_definitions_on_odd_sizes_with_ignore(method):
    maps = [random_blobs(23, 31, 4, seed=s) for s in range(2)] + [random_blobs(17, 12, 4, seed=9)]
    maps[0][3:6, 4:20] = 255
    maps[2][:, :2] = 255
    ds = InMemoryLabels(maps, num_classes=4, ignore_index=255)
    strides = (1, 2, 3, 4, 5, 8)
    r = spectral.analyze(ds, strides=strides, blocks=strides, method=method, workers=2)
    for i, s in enumerate(strides):
        soft = torch.zeros(4, 4, dtype=torch.int64)
        hard = torch.zeros(4, 4, dtype=torch.int64)
        ce, n = 0.0, 0
        for m in maps:
            a, b, c, v = reference_stats(m, s, 4, 255, exact=method == "fast")
            soft, hard, ce, n = soft + a, hard + b, ce + c, n + v
        assert r.oracle_miou_soft[i] == pytest.approx(scores_from_confusion(soft).miou, abs=1e-9), s
        assert r.oracle_miou_majority[i] == pytest.approx(scores_from_confusion(hard).miou, abs=1e-9), s
        assert r.ce_floor[i] == pytest.approx(ce / n, rel=1e-5, abs=1e-7), s
        e_ref = [spectral.band_energy(m, [s], 4, 255) for m in maps]
        totals = [float(spectral.label_power_spectrum(m, 4, 255).sum()) for m in maps]
        expected = sum(e[0][0] * t for e, t in zip(e_ref, totals)) / sum(totals)
        assert r.band_energy[i] == pytest.approx(expected, abs=1e-6), s
    assert r.num_labels == 3
    assert r.image_sizes == {"23x31": 2, "17x12": 1}


def test_strides_beyond_the_exact_range_match_the_plain_definitions():
    # Above stride 32 the blend runs in float64 instead of integers; cells of 1600+ pixels make
    # exact ties practically impossible, so both paths must agree.
    maps = [random_blobs(90, 100, 3, seed=s, scale=7) for s in range(2)]
    ds = InMemoryLabels(maps, num_classes=3, ignore_index=None)
    fast = spectral.analyze(ds, strides=(33, 40, 45), blocks=(40,), workers=1, threads=1)
    dense = spectral.analyze(ds, strides=(33, 40, 45), blocks=(40,), workers=1, threads=1, method="dense")
    assert fast.oracle_miou_soft == pytest.approx(dense.oracle_miou_soft, abs=1e-12)
    assert fast.oracle_miou_majority == pytest.approx(dense.oracle_miou_majority, abs=1e-12)
    assert fast.ce_floor == pytest.approx(dense.ce_floor, rel=1e-5)


@pytest.mark.parametrize("method", ["fast", "dense"])
def test_strides_up_to_the_long_side(method):
    # A 20 x 30 map, class 0 on the left 18 columns, class 1 on the right 12. Stride 30 (the long
    # side, labels.max_stride) is one cell: majority 0 everywhere, so IoU 360/600 and 0. Stride 25
    # (above the short side) has two cells: columns 0..24 hold 18 of class 0 -> 0, columns 25..29
    # are all class 1 -> 1: class 0 IoU 360/500, class 1 IoU 100/240.
    lab = torch.zeros(20, 30, dtype=torch.long)
    lab[:, 18:] = 1
    r = spectral.analyze(InMemoryLabels([lab], 2, None), strides=(1, 25, 30), blocks=(30,), method=method, workers=1)
    assert r.oracle_miou_majority == pytest.approx([1.0, (360 / 500 + 100 / 240) / 2, 0.3], abs=1e-12)
    assert r.block_oracle_miou_hard == pytest.approx([0.3], abs=1e-12)
    assert r.annotation_units_per_image == [1.0] and r.mixed_block_share == [1.0]
    assert r.oracle_miou_soft[2] == pytest.approx(0.3, abs=1e-12)  # one cell: its proportions everywhere


def test_bilinear_weights_are_the_align_corners_false_weights():
    # Stride 2: pixel centres sit at fractions 1/4 and 3/4 between cell centres, so the integer
    # weights (x (2s)^2 = 16) of the four corners are products of (3, 1) and (1, 3).
    weights = bilinear_weights(2, "cpu")
    assert weights.tolist() == [[9, 3, 3, 1], [3, 9, 1, 3], [3, 1, 9, 3], [1, 3, 3, 9]]
    for stride in (1, 3, 8, 33):
        assert bilinear_weights(stride, "cpu").sum(dim=1).eq((2 * stride) ** 2).all()
