"""segcore.train.render: the sample panel's colours, column titles and legend."""

from __future__ import annotations

import numpy as np

from segcore.train.render import IGNORE_COLOUR, palette, sample_panel


def test_palette_is_qualitative_and_ignore_is_black():
    colours = palette(20)
    assert colours.shape == (21, 3) and colours.dtype == np.uint8
    # matplotlib's tab10 first: blue, orange, green
    assert [tuple(c) for c in colours[:3]] == [(31, 119, 180), (255, 127, 14), (44, 160, 44)]
    assert len({tuple(c) for c in colours[:20]}) == 20  # twenty distinct class colours
    assert tuple(colours[-1]) == IGNORE_COLOUR == (0, 0, 0)
    assert (0, 0, 0) not in {tuple(c) for c in colours[:-1]}
    assert palette(150).shape == (151, 3)  # past 60 classes the colours repeat


def _panel():
    image = np.full((4, 4, 3), 200, np.uint8)
    truth = np.zeros((4, 4), np.int64)
    truth[:, 2:] = 1
    truth[0, 0] = 3  # void: mapped to the last palette row (num_classes = 3)
    prediction = np.ones((4, 4), np.int64)
    colours = palette(3)
    return sample_panel(image, truth, prediction, ["sky", "road", "car"], colours), colours


def test_columns_are_upscaled_maps_under_titles():
    panel, colours = _panel()
    scale, gap = 40, 4  # 4-px maps are up-scaled to 160 px per column
    assert panel.dtype == np.uint8 and panel.shape[1] == 3 * 4 * scale + 2 * gap
    top = next(row for row in range(panel.shape[0]) if tuple(panel[row, 80]) == (200, 200, 200))
    assert top > 10  # a title strip above the maps
    labels_left, prediction_left = 4 * scale + gap, 2 * (4 * scale + gap)
    assert tuple(panel[top + 100, labels_left + 20]) == tuple(colours[0])  # truth class 0 (left half)
    assert tuple(panel[top + 100, labels_left + 140]) == tuple(colours[1])  # truth class 1 (right half)
    assert tuple(panel[top + 5, labels_left + 5]) == (0, 0, 0)  # the void pixel, in black
    assert tuple(panel[top + 100, prediction_left + 20]) == tuple(colours[1])
    for left in (0, labels_left, prediction_left):  # dark title text over each column
        strip = panel[:top, left:left + 4 * scale]
        assert (strip.sum(axis=2) < 200).sum() > 20


def test_legend_lists_the_classes_present_and_ignore():
    panel, colours = _panel()
    legend = panel[panel.shape[0] - 24:]
    present = {tuple(int(v) for v in pixel) for pixel in legend.reshape(-1, 3)}
    assert tuple(colours[0]) in present and tuple(colours[1]) in present  # sky, road
    assert tuple(colours[2]) not in present  # car: in neither map, not listed
    assert (0, 0, 0) in present  # the ignore swatch (and the text)
