"""Constraints on a configuration's cost: the one rule for "does this cost satisfy the spec?".

A sweep spec bounds cost metrics (``constraints: {gflops: {max: 2.0}, annotation_units: {max:
0.1}}``, also ``min``). Each bound becomes one *constraint value* named ``<metric>.<bound>``, in
Optuna's convention: ``cost - max`` for an upper bound, ``min - cost`` for a lower one, so a value
``<= 0`` is satisfied and a positive one says by how much it is broken. A cost that is missing (NaN or absent) cannot be shown
to satisfy its bound and counts as broken (``inf``).

The searchers use it before a configuration runs (:mod:`segcore.tune.search`); the report uses it
to mark the trials of a record (:mod:`segcore.analysis.report`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["BOUNDS", "constraint_values", "is_feasible"]

#: The bounds a constraint may give, in the order their values are listed.
BOUNDS = ("min", "max")


def constraint_values(cost: Mapping[str, Any],
                      constraints: Mapping[str, Mapping[str, float | None]]) -> dict[str, float]:
    """One value per bound, ``{"<metric>.<bound>": value}`` metric by metric in the order of
    ``constraints`` and ``min`` before ``max``; ``<= 0`` means satisfied.

    Args:
        cost: the configuration's cost (keys of :data:`segcore.names.COST_METRICS`).
        constraints: ``{metric: {"min": low, "max": high}}``; a bound that is None or absent is not set.
    """
    values: dict[str, float] = {}
    for metric, bounds in constraints.items():
        raw = cost.get(metric)
        measured = math.nan if raw is None else float(raw)
        for bound in BOUNDS:
            limit = bounds.get(bound)
            if limit is None:
                continue
            if math.isnan(measured):
                values[f"{metric}.{bound}"] = math.inf
            else:
                values[f"{metric}.{bound}"] = measured - float(limit) if bound == "max" else float(limit) - measured
    return values


def is_feasible(cost: Mapping[str, Any], constraints: Mapping[str, Mapping[str, float | None]]) -> bool:
    """Whether ``cost`` satisfies every bound of ``constraints`` (no constraint: always)."""
    return all(value <= 0 for value in constraint_values(cost, constraints).values())
