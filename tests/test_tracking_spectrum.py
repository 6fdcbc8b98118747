"""spectrum.json flattened for the parent run (segcore.tracking.spectrum): known answers."""

from __future__ import annotations

import math

import numpy as np

from segcore.tracking.spectrum import is_number, spectrum_points, spectrum_scalars

SPECTRUM = {
    "dataset": "synthetic", "num_classes": 4,
    "strides": [1, 2, 4], "band_energy": [1.0, 0.9, None],
    "oracle_miou": {"soft": [1.0, 0.8, 0.5], "majority": [1, 2]},  # majority: wrong length
    "blocks": [1, 8], "block_oracle_miou": {"hard": [1.0, 0.6]},
    "efficient_grid": {"by_miou": 2, "by_energy": 4}, "class_names": ["a", "b"],
}


def test_curves_become_points_over_their_axis():
    points = spectrum_points(SPECTRUM)
    assert [p for p in points if p[0] != "band_energy"] == [
        ("oracle_miou.soft", 1.0, 1), ("oracle_miou.soft", 0.8, 2), ("oracle_miou.soft", 0.5, 4),
        ("block_oracle_miou.hard", 1.0, 1), ("block_oracle_miou.hard", 0.6, 8),
    ]
    energy = [p for p in points if p[0] == "band_energy"]
    assert [(p[1], p[2]) for p in energy[:2]] == [(1.0, 1), (0.9, 2)]
    assert energy[2][2] == 4 and math.isnan(energy[2][1])  # a missing value is NaN


def test_scalars_become_params():
    assert spectrum_scalars(SPECTRUM) == {"dataset": "synthetic", "num_classes": "4",
                                          "efficient_grid.by_miou": "2",
                                          "efficient_grid.by_energy": "4"}


def test_is_number():
    assert is_number(1) and is_number(np.float32(0.5)) and is_number(np.int64(3))
    assert not is_number(True) and not is_number(np.bool_(True)) and not is_number("1")
