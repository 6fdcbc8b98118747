"""Pareto dominance on a table of losses: the non-dominated rows, non-dominated sorting, crowding
distance, and the top ``k`` rows by (front, crowding) as NSGA-II ranks them.

Every function takes an (N, M) array of losses, each column to be *minimised* (negate a maximised
objective first). A row dominates another when it is no worse in every column and better in at
least one. Rows holding a NaN cannot be compared: they are never efficient, never dominate, and sort
after every comparable row. Identical rows do not dominate each other and share a crowding
distance, so ties are treated alike wherever they sit in the table.

This is the one owner of the dominance rule: the analysis' Pareto fronts
(:mod:`segcore.analysis.pareto`), the multi-objective early stopping of a sweep
(:mod:`segcore.tune.schedulers`) and the spectral prior's fronts (:mod:`segcore.tune.prior`) call it.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["crowding_distance", "is_pareto_efficient", "nondominated_fronts", "rank_and_crowding",
           "rows_ahead", "top_k", "top_share_count"]

_BLOCK = 512


def is_pareto_efficient(loss: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of an (N, M) loss array (minimise every column).

    Rows holding a NaN are never efficient and never dominate. O(N^2 M) in blocks of rows, which
    is instant for the thousands of trials a sweep produces.
    """
    loss = np.asarray(loss, dtype=float)
    valid = ~np.isnan(loss).any(axis=1)
    points = loss[valid]
    efficient = np.ones(len(points), dtype=bool)
    for start in range(0, len(points), _BLOCK):
        block = points[start:start + _BLOCK, None, :]                # (B, 1, M)
        no_worse = (points[None, :, :] <= block).all(axis=2)         # (B, N): j no worse than i
        better = (points[None, :, :] < block).any(axis=2)            # (B, N): j better somewhere
        efficient[start:start + _BLOCK] = ~(no_worse & better).any(axis=1)
    mask = np.zeros(len(loss), dtype=bool)
    mask[np.flatnonzero(valid)] = efficient
    return mask


def nondominated_fronts(loss: np.ndarray) -> np.ndarray:
    """The front of every row (0 = non-dominated, 1 = non-dominated once front 0 is removed, ...).

    Rows holding a NaN get the front after the last one of the comparable rows.
    """
    loss = np.asarray(loss, dtype=float)
    fronts = np.full(len(loss), -1, dtype=int)
    remaining = np.flatnonzero(~np.isnan(loss).any(axis=1))
    front = 0
    while remaining.size:
        efficient = is_pareto_efficient(loss[remaining])
        fronts[remaining[efficient]] = front
        remaining = remaining[~efficient]
        front += 1
    fronts[fronts < 0] = front
    return fronts


def crowding_distance(loss: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of the rows of one front (Deb et al., IEEE TEC 2002).

    Per column whose values are not all equal, the rows are sorted; the two extreme rows get an
    infinite distance and every other row the gap between its neighbours divided by the column's
    range; a row's distance is the sum over the columns. Identical rows are counted once and share
    their distance; a front of one distinct row is infinitely far from everything. Rows holding a
    NaN get 0.
    """
    loss = np.asarray(loss, dtype=float)
    distance = np.zeros(len(loss))
    valid = np.flatnonzero(~np.isnan(loss).any(axis=1))
    if valid.size == 0:
        return distance
    points, row_to_point = np.unique(loss[valid], axis=0, return_inverse=True)
    point_distance = np.zeros(len(points)) if len(points) > 1 else np.full(1, np.inf)
    for column in points.T:
        low, high = column.min(), column.max()
        if high == low:
            continue
        order = np.argsort(column, kind="stable")
        point_distance[order[[0, -1]]] = np.inf
        gaps = (column[order[2:]] - column[order[:-2]]) / (high - low)
        point_distance[order[1:-1]] += gaps
    distance[valid] = point_distance[row_to_point.reshape(-1)]
    return distance


def rank_and_crowding(loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(front, crowding)`` of every row: its non-dominated front, and its crowding distance
    within that front (larger is better: a lonelier point of the same front)."""
    loss = np.asarray(loss, dtype=float)
    fronts = nondominated_fronts(loss)
    crowding = np.zeros(len(loss))
    for front in np.unique(fronts):
        members = np.flatnonzero(fronts == front)
        crowding[members] = crowding_distance(loss[members])
    return fronts, crowding


def rows_ahead(loss: np.ndarray, row: int) -> int:
    """How many rows rank strictly ahead of ``row``: in a better front, or in its front with a
    larger crowding distance. Rows tied with it in both do not count."""
    fronts, crowding = rank_and_crowding(loss)
    ahead = (fronts < fronts[row]) | ((fronts == fronts[row]) & (crowding > crowding[row]))
    return int(ahead.sum())


def top_k(loss: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` best rows by (front, then crowding distance, larger first); rows
    tied in both keep their order in the table."""
    fronts, crowding = rank_and_crowding(loss)
    order = np.lexsort((np.arange(len(fronts)), -crowding, fronts))
    mask = np.zeros(len(fronts), dtype=bool)
    mask[order[:max(0, int(k))]] = True
    return mask


def top_share_count(rows: int, reduction_factor: float) -> int:
    """How many of ``rows`` rows make the top ``1 / reduction_factor`` share: ``1 + floor((rows - 1)
    / reduction_factor)`` (at least one; ``ceil(rows / reduction_factor)`` for an integer factor).

    It is the order statistic of successive halving: with one column, the rows in the top share
    are exactly those at or above the ``1 - 1/reduction_factor`` quantile of the table taken
    without interpolation (numpy's ``method="higher"``).
    """
    if rows < 1:
        return 0
    return 1 + math.floor((rows - 1) / reduction_factor)
