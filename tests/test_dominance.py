"""Non-dominated sorting, crowding distance and the top share of a table, on hand-made tables."""

from __future__ import annotations

import numpy as np
import pytest

from segcore.dominance import (
    crowding_distance, is_pareto_efficient, nondominated_fronts, rank_and_crowding, rows_ahead, top_k,
    top_share_count,
)

# Five mutually non-dominated losses (both columns minimised), x rising as y falls.
# Crowding by hand, both ranges 10: P1 = 2/10 + (10-5)/10 = 0.7, P2 = 5/10 + 5/10 = 1.0,
# P3 = 8/10 + 5/10 = 1.3; the extremes P0 and P4 are infinite.
LINE = np.array([[0.0, 10.0], [1.0, 6.0], [2.0, 5.0], [6.0, 1.0], [10.0, 0.0]])


def test_fronts_peel_the_table_layer_by_layer():
    loss = np.array([[1.0, 4.0], [2.0, 2.0], [4.0, 1.0],   # front 0
                     [3.0, 3.0], [2.0, 5.0],               # front 1 ((3,3) by (2,2); (2,5) by (1,4))
                     [4.0, 4.0],                           # front 2 (by (3,3))
                     [np.nan, 0.0]])                       # cannot be compared: after the last front
    assert nondominated_fronts(loss).tolist() == [0, 0, 0, 1, 1, 2, 3]
    assert is_pareto_efficient(loss).tolist() == [True, True, True, False, False, False, False]


def test_crowding_distance_of_one_front():
    assert np.allclose(crowding_distance(LINE), [np.inf, 0.7, 1.0, 1.3, np.inf])
    # Identical rows are one point and share its distance; a single distinct point is infinitely far.
    twins = np.array([[0.0, 2.0], [1.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    assert np.allclose(crowding_distance(twins), [np.inf, 2.0, 2.0, np.inf])
    assert np.isinf(crowding_distance(np.array([[3.0, 3.0], [3.0, 3.0]]))).all()
    assert crowding_distance(np.array([[np.nan, 1.0]])).tolist() == [0.0]


def test_rank_and_crowding_is_per_front():
    loss = np.vstack([LINE, LINE[2:3] + 1.0])  # (3, 6): behind P2, alone in front 1
    fronts, crowding = rank_and_crowding(loss)
    assert fronts.tolist() == [0, 0, 0, 0, 0, 1]
    assert np.allclose(crowding, [np.inf, 0.7, 1.0, 1.3, np.inf, np.inf])


def test_top_k_fills_fronts_then_breaks_the_last_by_crowding():
    assert np.flatnonzero(top_k(LINE, 3)).tolist() == [0, 3, 4]   # extremes, then P3 (1.3)
    assert np.flatnonzero(top_k(LINE, 4)).tolist() == [0, 2, 3, 4]
    dominated = np.vstack([LINE, [[20.0, 20.0]]])
    assert not top_k(dominated, 5)[5] and top_k(dominated, 6)[5]
    # Rows tied in front and crowding keep their order in the table.
    assert np.flatnonzero(top_k(np.array([[1.0, 1.0], [1.0, 1.0]]), 1)).tolist() == [0]


def test_rows_ahead_counts_only_strictly_better_rows():
    assert [rows_ahead(LINE, row) for row in range(5)] == [0, 4, 3, 2, 0]
    assert rows_ahead(np.array([[1.0], [1.0], [0.0]]), 0) == 1  # the tie does not count


@pytest.mark.parametrize("rows, factor, expected", [
    (0, 2, 0), (1, 2, 1), (2, 2, 1), (3, 2, 2), (4, 2, 2), (5, 2, 3),
    (1, 3, 1), (3, 3, 1), (4, 3, 2), (7, 3, 3), (4, 2.5, 2), (6, 2.5, 3),
])
def test_top_share_count(rows, factor, expected):
    assert top_share_count(rows, factor) == expected
