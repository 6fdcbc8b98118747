"""Label-map resampling (segcore/labels.py): hand-built grids, odd sizes, ignore index, alignment."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segcore import labels as L

# 3 x 5 map, classes 0..2, ignore 255; stride 2 gives a 2 x 3 grid whose last row/column of cells
# cover fewer pixels.
LAB = torch.tensor([
    [0, 0, 1, 1, 2],
    [0, 1, 1, 255, 2],
    [2, 2, 255, 255, 255],
])


def test_grid_shape_and_class_counts_on_odd_sizes():
    assert L.grid_shape(3, 5, 2) == (2, 3)
    counts = L.class_counts(LAB, 2, 3, 255)
    assert counts.shape == (1, 3, 2, 3)
    expected = torch.tensor([
        [[3, 0, 0], [0, 0, 0]],  # class 0
        [[1, 3, 0], [0, 0, 0]],  # class 1
        [[0, 0, 2], [2, 0, 0]],  # class 2
    ])
    assert torch.equal(counts[0], expected)


def test_proportions_majority_and_ignore():
    props = L.grid_proportions(LAB, 2, 3, 255)
    assert props.shape == (3, 2, 3)
    assert torch.allclose(props[:, 0, 0], torch.tensor([0.75, 0.25, 0.0]))
    assert torch.allclose(props[:, 1, 1], torch.zeros(3))  # only ignored pixels: no vote
    major = L.grid_majority(LAB, 2, 3, 255)
    assert torch.equal(major, torch.tensor([[0, 1, 2], [2, 255, 255]]))
    # ties go to the lower class
    assert int(L.grid_majority(torch.tensor([[1, 0]]), 2, 2, None)[0, 0]) == 0


def test_block_annotation_modes_and_bad_mode():
    hard = L.block_annotation(LAB, 2, 3, 255, mode="hard")
    soft = L.block_annotation(LAB, 2, 3, 255, mode="soft")
    assert torch.equal(hard, L.grid_majority(LAB, 2, 3, 255))
    assert torch.equal(soft, L.grid_proportions(LAB, 2, 3, 255))
    with pytest.raises(ValueError, match="block_mode must be 'hard' or 'soft'"):
        L.block_annotation(LAB, 2, 3, 255, mode="mean")


def test_upsampling_alignment_and_crop():
    grid = torch.tensor([[0, 1, 2], [3, 4, 5]])
    up = L.upsample_labels(grid, 2, (3, 5))
    assert torch.equal(up, torch.tensor([[0, 0, 1, 1, 2], [0, 0, 1, 1, 2], [3, 3, 4, 4, 5]]))
    # bilinear: cell centres at (i + 0.5) s - 0.5; between centres the value is interpolated
    values = torch.tensor([[[0.0, 1.0]]])  # (C=1, h=1, w=2), stride 4 over 1 x 8
    row = L.upsample_proportions(values, 4, (1, 8))[0, 0]
    assert torch.allclose(row, torch.tensor([0, 0, 0.125, 0.375, 0.625, 0.875, 1, 1]))
    with pytest.raises(ValueError, match="does not match stride"):
        L.upsample_labels(grid, 3, (3, 5))


def test_constant_map_round_trips_at_every_stride():
    lab = torch.full((2, 13, 21), 1)
    for s in (1, 2, 3, 5, 8, 13):
        props = L.grid_proportions(lab, s, 3, 255)
        up = L.upsample_proportions(props, s, (13, 21))
        assert torch.equal(up.argmax(1), lab)
        assert torch.equal(L.upsample_labels(L.grid_majority(lab, s, 3, 255), s, (13, 21)), lab)


def test_largest_stride_is_the_long_side():
    # max(H, W): at s = 12 a 10 x 12 map is one cell (larger strides give that same grid); s = 11,
    # above the short side, still gives a distinct 1 x 2 grid.
    assert L.max_stride(10, 12) == 12 and L.max_stride(12, 10) == 12 and L.max_stride(7, 7) == 7
    assert L.check_stride(11, 10, 12) == 11
    assert L.grid_shape(10, 12, 11) == (1, 2) and L.grid_shape(10, 12, 12) == (1, 1)
    with pytest.raises(ValueError, match="must be >= 1"):
        L.check_stride(0, 10, 10)
    with pytest.raises(ValueError, match="larger than the 10x12 label map; valid values are 1..12"):
        L.check_stride(13, 10, 12)
    with pytest.raises(ValueError, match="larger than the 12x10 label map; valid values are 1..12"):
        L.check_stride(13, 12, 10)


def test_annotation_cost():
    cost = L.annotation_cost(LAB, 2, 3, 255)
    assert cost.units_per_image == 6 and cost.relative_units == pytest.approx(6 / 15)
    # labelled blocks: 4 (two hold only ignored pixels); mixed: (0,0) {0,1} and (0,1)? {1} no -> 1 of 4
    assert cost.mixed_block_share == pytest.approx(1 / 4)


def test_proportions_match_area_pooling_on_multiples():
    torch.manual_seed(0)
    lab = torch.randint(0, 4, (2, 16, 24))
    props = L.grid_proportions(lab, 4, 4, None)
    onehot = F.one_hot(lab, 4).permute(0, 3, 1, 2).float()
    assert torch.allclose(props, F.avg_pool2d(onehot, 4))
