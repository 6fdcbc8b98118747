"""Known-answer tests of the training-free spectral analysis (segcore/spectral/)."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segcore import labels as seg_labels
from segcore import spectral
from segcore.data import InMemoryLabels, SyntheticScenes, build_dataset
from segcore.metrics import confusion_matrix, scores_from_confusion

ISSUE_KEYS = {
    "strides", "band_energy", "band_energy_no_dc", "oracle_miou", "ce_floor", "blocks",
    "block_oracle_miou", "efficient_grid", "dataset", "split", "num_labels", "num_classes",
    "ignore_index",
}


def random_blobs(height: int, width: int, num_classes: int, seed: int, scale: int = 6) -> torch.Tensor:
    """Piecewise-constant labels: nearest up-sampling of a coarse random map, then a shift so the
    blocks do not align with any grid."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, num_classes, (height // scale + 2, width // scale + 2), generator=g)
    fine = coarse.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    oy, ox = (int(v) for v in torch.randint(0, scale, (2,), generator=g))
    return fine[oy : oy + height, ox : ox + width].contiguous()


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


# --- building blocks ------------------------------------------------------------------------


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


def test_efficient_size_is_conservative():
    assert spectral.efficient_size([1, 2, 4, 8], [1.0, 0.995, 0.98, 0.999], 0.99) == 2
    assert spectral.efficient_size([2, 4], [0.5, 0.99], 0.99) is None
    assert spectral.efficient_size([4, 1, 2], [0.99, 1.0, 1.0], 0.99) == 4


# --- analyze: known answers -----------------------------------------------------------------


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
def test_hand_built_block_example(method):
    # 4x4, blocks of 2: top-left block all 0; top-right all 1; bottom-left {0, 1, 2, 2} -> 2 wins;
    # bottom-right {1, 1, 1, 0} -> 1.
    lab = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [0, 1, 1, 1], [2, 2, 1, 0]])
    ds = InMemoryLabels([lab], num_classes=3, ignore_index=None)
    r = spectral.analyze(ds, strides=(1, 2), blocks=(2,), method=method, workers=1)
    # hard prediction: [[0,0,1,1],[0,0,1,1],[2,2,1,1],[2,2,1,1]]
    # confusion (true rows): class 0: 4 right + 1 -> 2 + 1 -> 1; class 1: 7 right + 1 -> 2;
    # class 2: 2 right.
    conf = torch.tensor([[4, 1, 1], [0, 7, 1], [0, 0, 2]])
    expected = scores_from_confusion(conf).miou
    assert r.block_oracle_miou_hard[0] == pytest.approx(expected, abs=1e-12)
    assert r.oracle_miou_majority[1] == pytest.approx(expected, abs=1e-12)
    assert r.mixed_block_share == [0.5]
    assert r.annotation_units_per_image == [4.0]
    assert r.annotation_relative_units == [0.25]


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


def test_result_dict_has_issue_keys_and_is_json():
    ds = InMemoryLabels([random_blobs(32, 32, 3, seed=0)], num_classes=3, ignore_index=255, name="blobs", split="val")
    r = spectral.analyze(ds, strides=(1, 2, 4), blocks=(2, 8), workers=1)
    d = r.to_dict()
    assert ISSUE_KEYS <= set(d)
    assert set(d["oracle_miou"]) == {"soft", "majority"}
    assert set(d["block_oracle_miou"]) == {"hard", "soft"}
    assert set(d["efficient_grid"]) == {"by_miou", "by_energy"}
    assert d["dataset"] == "blobs" and d["split"] == "val" and d["num_classes"] == 3
    assert len(d["band_energy"]) == 3 and len(d["block_oracle_miou"]["hard"]) == 2
    json.dumps(d, allow_nan=True)


def test_bad_sizes_are_rejected_before_work():
    ds = InMemoryLabels([torch.zeros(20, 30, dtype=torch.long)], num_classes=2)
    with pytest.raises(ValueError, match="strides: sizes must be integers >= 1, got 0"):
        spectral.analyze(ds, strides=(0, 2))
    with pytest.raises(ValueError, match=r"blocks: 31 is larger than a 20x30 label map; valid values are 1..30"):
        spectral.analyze(ds, strides=(1, 2), blocks=(2, 31))
    with pytest.raises(ValueError, match="tolerance"):
        spectral.analyze(ds, tolerance=1.5)


def test_plot_writes_png(tmp_path):
    ds = InMemoryLabels([random_blobs(32, 40, 3, seed=2)], num_classes=3)
    r = spectral.analyze(ds, strides=(1, 2, 4, 8), blocks=(1, 4), workers=1)
    path = spectral.plot_spectrum(r, tmp_path / "s.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- synthetic sets with a known cut-off ------------------------------------------------------


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
    from segcore.data import band_limited_labels, predicted_stride

    maps = [band_limited_labels((12, 16), 4, 1 / 6, g, shapes=0) for _ in range(4)]
    maps = [m.repeat_interleave(8, 0).repeat_interleave(8, 1) for m in maps]
    r = spectral.analyze(InMemoryLabels(maps, 4, None), strides=(1, 2, 4, 8, 16), blocks=(4, 8, 16),
                         workers=1, threads=1)
    assert r.oracle_miou_majority[:4] == [1.0, 1.0, 1.0, 1.0]
    assert r.oracle_miou_majority[4] < 0.9
    assert r.efficient_grid_by_miou == predicted_stride(1 / 16) == 8
    assert r.block_oracle_miou_hard[:2] == [1.0, 1.0] and r.efficient_block == 8
    assert r.mixed_block_share[:2] == [0.0, 0.0] and r.mixed_block_share[2] > 0.1


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
