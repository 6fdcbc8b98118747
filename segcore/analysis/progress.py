"""How a sweep's front grew: the hypervolume after each finished trial, and the budget it took.

Compute only (plots in :mod:`segcore.analysis.plots`): a table of finished trials in the order they
finished becomes the hypervolume of the full-length ones so far, row by row; a curve of
hypervolume shares against budget shares gives the budget at which a target share was first
reached. Used by the report's progress views and by the replay (``segcore replay``,
``benchmarks/search_efficiency.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from segcore.analysis.pareto import hypervolume, is_pareto_efficient, losses, parse_objectives, reference_point

__all__ = ["budget_to_reach", "hypervolume_progress", "replay_progress", "sweep_progress"]


def hypervolume_progress(
    finished: pd.DataFrame,
    objectives: Mapping[str, str],
    reference: Mapping[str, float],
) -> np.ndarray:
    """The hypervolume of the full-length trials among the first ``i + 1`` rows, for every ``i``.

    Args:
        finished: one row per finished trial, in the order they finished; a ``full_length``
            column, when present, keeps the other rows out of the front (they add nothing).
        objectives: ``{column: "max" | "min"}``.
        reference: one reference point for every step (in the columns' own units), so the values
            are comparable along the curve and with the exhaustive front's.

    Returns:
        A float array as long as ``finished`` (non-decreasing).
    """
    objectives = parse_objectives(objectives)
    counts = finished["full_length"].to_numpy(bool) if "full_length" in finished else np.ones(len(finished), bool)
    values = np.zeros(len(finished))
    front = finished.iloc[:0]
    current = 0.0
    for i in range(len(finished)):
        if counts[i]:
            candidate = pd.concat([front, finished.iloc[i:i + 1]])
            loss = losses(candidate, objectives)
            if not np.isnan(loss[-1]).any():
                front = candidate[is_pareto_efficient(loss)]
                current = hypervolume(front, objectives, reference)
        values[i] = current
    return values


def budget_to_reach(budget: Sequence[float], share: Sequence[float], target: float = 0.99) -> float:
    """The first budget at which ``share`` reached ``target`` (``inf`` when it never did)."""
    for spent, reached in zip(budget, share):
        if reached >= target - 1e-12:
            return float(spent)
    return math.inf


def replay_progress(
    finished: pd.DataFrame,
    exhaustive: pd.DataFrame,
    objectives: Mapping[str, str],
    total_budget: float,
    budget_column: str = "trial_epochs",
) -> pd.DataFrame:
    """A search's progress against an exhaustive table, as shares of the exhaustive sweep.

    Args:
        finished: the search's trial ends in order, with ``budget_column`` (budget spent when the
            trial ended), ``full_length`` and the objective columns.
        exhaustive: one row per configuration of the exhaustive sweep (full-length trials only);
            it places the one reference point (:func:`segcore.analysis.pareto.reference_point`)
            and gives the hypervolume the shares are taken of.
        objectives: ``{column: "max" | "min"}``.
        total_budget: the exhaustive sweep's budget (its trial-epochs).

    Returns:
        One row per finished trial: ``budget`` (spent), ``budget_share``, ``hypervolume``,
        ``hypervolume_share``.
    """

    reference = reference_point(exhaustive, objectives)
    full = hypervolume(exhaustive, objectives, reference)
    volumes = hypervolume_progress(finished, objectives, reference)
    spent = finished[budget_column].to_numpy(float)
    return pd.DataFrame({"budget": spent, "budget_share": spent / float(total_budget),
                         "hypervolume": volumes, "hypervolume_share": volumes / full if full > 0 else np.nan})


def sweep_progress(
    trials: pd.DataFrame,
    objectives: Mapping[str, str],
    reference: Mapping[str, float],
    counts: str | None = None,
) -> pd.DataFrame:
    """A recorded sweep's front as it grew: the hypervolume after each finished trial.

    Args:
        trials: one row per finished trial; ordered by ``end_time`` when the column holds times
            (else kept in the table's order). ``start_time`` places time zero (else the first end).
        objectives: ``{column: "max" | "min"}``.
        reference: the one reference point (the report's).
        counts: a boolean column; rows where it is false finish but add nothing (the report's
            ``feasible``).

    Returns:
        One row per trial: ``finished`` (1, 2, ...), ``trial_id`` (when there is one),
        ``elapsed_s`` (since the first start; NaN without end times), ``hypervolume``.
    """
    ordered = trials
    has_times = "end_time" in trials and pd.to_datetime(trials["end_time"], utc=True).notna().any()
    if has_times:
        ordered = trials.assign(_end=pd.to_datetime(trials["end_time"], utc=True)).sort_values(
            "_end", kind="stable", na_position="last")
    rows = ordered.assign(full_length=ordered[counts].astype(bool) if counts else True)
    volumes = hypervolume_progress(rows, objectives, reference)
    out = pd.DataFrame({"finished": np.arange(1, len(rows) + 1), "hypervolume": volumes})
    if "trial_id" in rows:
        out.insert(1, "trial_id", rows["trial_id"].to_numpy())
    out["elapsed_s"] = np.nan
    if has_times:
        ends = rows["_end"]
        starts = pd.to_datetime(rows["start_time"], utc=True) if "start_time" in rows else ends
        zero = starts.min() if starts.notna().any() else ends.min()
        out["elapsed_s"] = (ends - zero).dt.total_seconds().to_numpy()
    return out
