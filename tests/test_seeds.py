"""Seeds taken together (segcore.analysis.seeds): trials that differ only in their seed become one
configuration with the mean and sample standard deviation of its accuracy."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from segcore.analysis.seeds import configuration_columns, seed_means


def test_mean_and_std_over_seeds():
    df = pd.DataFrame({
        "trial_id": ["a", "b", "c", "d", "e"], "run_id": ["r1", "r2", "r3", "r4", "r5"],
        "network": "dan", "grid_stride": [2, 2, 2, 4, 2], "keep": 1.0, "block": 1,
        "lr": [0.01, 0.01, 0.01, 0.01, 0.02], "seed": [0, 1, 2, 0, 0],
        "device": ["cpu", "cuda", "cpu", "cpu", "cpu"],   # runtime: not part of the configuration
        "miou": [0.50, 0.56, 0.53, 0.40, 0.70], "gflops": [2.0, 2.0, 2.0, 1.0, 2.0]})
    assert configuration_columns(df) == ["network", "grid_stride", "keep", "block", "lr"]
    out = seed_means(df, "miou")
    assert len(out) == 3 and "seed" not in out
    three = out.iloc[0]
    assert (three["seeds"], three["trial_id"]) == (3, "a")
    assert three["miou"] == pytest.approx(0.53) and three["gflops"] == pytest.approx(2.0)
    assert three["miou_std"] == pytest.approx(0.03)  # sample std of 0.50, 0.56, 0.53
    # Another stride, or another learning rate, is another configuration, with one seed: no spread.
    assert list(out["grid_stride"]) == [2, 4, 2] and list(out["lr"]) == [0.01, 0.01, 0.02]
    assert list(out["seeds"]) == [3, 1, 1] and math.isnan(out.iloc[1]["miou_std"])


def test_without_a_seed_column_every_trial_stands_alone():
    df = pd.DataFrame({"network": "unet", "grid_stride": [1, 2], "keep": 1.0, "block": 1, "miou": [0.6, 0.5]})
    out = seed_means(df, "miou")
    assert list(out["miou"]) == [0.6, 0.5] and list(out["seeds"]) == [1, 1]
