"""Block annotation: its oracle and its cost summed over a split (segcore/spectral/blocks.py)."""

from __future__ import annotations

import pytest
import torch

from _label_maps import random_blobs
from segcore import labels as seg_labels
from segcore import spectral
from segcore.data import InMemoryLabels
from segcore.metrics import scores_from_confusion


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
def test_annotation_cost_matches_labels_annotation_cost(method):
    # One map per dataset: the summed cost is the per-batch definition of labels.annotation_cost.
    lab = random_blobs(27, 34, 4, seed=3)
    lab[5:9, :12] = 255
    blocks = (1, 2, 3, 5, 8, 34)
    r = spectral.analyze(InMemoryLabels([lab], 4, 255), strides=(1,), blocks=blocks, method=method, workers=1)
    for i, block in enumerate(blocks):
        cost = seg_labels.annotation_cost(lab, block, 4, 255)
        assert r.annotation_units_per_image[i] == cost.units_per_image, block
        assert r.annotation_relative_units[i] == pytest.approx(cost.relative_units, abs=1e-15), block
        assert r.mixed_block_share[i] == pytest.approx(cost.mixed_block_share, abs=1e-15), block
