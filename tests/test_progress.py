"""The hypervolume of a search's front as it grew (segcore.analysis.progress), with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from segcore.analysis.progress import budget_to_reach, hypervolume_progress, replay_progress

OBJECTIVES = {"miou": "max", "gflops": "min"}
REFERENCE = {"miou": 0.0, "gflops": 10.0}
# In the order they finished. B is C stopped early: it must add nothing.
FINISHED = pd.DataFrame({
    "trial": ["A", "B", "C", "D"],
    "miou": [0.5, 0.8, 0.8, 0.4],
    "gflops": [4.0, 8.0, 8.0, 6.0],
    "full_length": [True, False, True, True],
    "trial_epochs": [2, 3, 5, 7],
})


def test_hypervolume_after_each_finished_trial():
    # A: 0.5 x (10 - 4) = 3; C adds 0.8 x 2 - 0.5 x 2 = 0.6; D is dominated by A.
    assert hypervolume_progress(FINISHED, OBJECTIVES, REFERENCE) == pytest.approx([3.0, 3.0, 3.6, 3.6])


def test_progress_without_full_length_column_counts_every_row():
    rows = FINISHED.drop(columns="full_length").iloc[:2]
    # B alone: 0.8 x 2 = 1.6, with A: 3 + 1.6 - 0.5 x 2 = 3.6
    assert hypervolume_progress(rows, OBJECTIVES, REFERENCE) == pytest.approx([3.0, 3.6])


def test_budget_to_reach():
    assert budget_to_reach([0.25, 0.5, 0.75, 1.0], [0.5, 0.5, 1.0, 1.0]) == 0.75
    assert budget_to_reach([0.25, 0.5], [0.5, 0.98]) == math.inf
    assert budget_to_reach([0.1, 0.2], [0.2, 0.6], target=0.5) == 0.2


def test_replay_progress_shares_of_the_exhaustive_front():
    exhaustive = FINISHED[FINISHED["full_length"]].drop(columns="full_length")
    progress = replay_progress(FINISHED, exhaustive, OBJECTIVES, total_budget=10)
    assert progress["budget_share"].tolist() == pytest.approx([0.2, 0.3, 0.5, 0.7])
    # Every share is of the exhaustive front's volume under one reference point.
    assert progress["hypervolume_share"].iloc[-1] == pytest.approx(1.0)
    assert np.all(np.diff(progress["hypervolume"]) >= 0)
    assert progress["hypervolume_share"].iloc[0] < 1.0
