"""Pareto front and hypervolume of a trial table, for any mix of maximised and minimised objectives.

Objectives are normalised to "minimise" first (a maximised column is negated), as Optuna does;
the dominance rule itself is :func:`segcore.dominance.is_pareto_efficient` (re-exported here): a row
dominates another when it is no worse in every objective and better in at least one. Rows with a
missing (NaN) objective cannot be compared and never enter a front; identical rows (ties) do not
dominate each other, so all copies of a non-dominated point stay on the front.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from segcore.config.constraints import is_feasible
from segcore.dominance import is_pareto_efficient

__all__ = ["DEFAULT_OBJECTIVES", "feasible_mask", "hypervolume", "is_pareto_efficient", "losses", "pareto_front",
           "parse_objectives", "reference_point"]

DEFAULT_OBJECTIVES: dict[str, str] = {"miou": "max", "gflops": "min"}
_DIRECTIONS = ("max", "min")


def parse_objectives(objectives: Mapping[str, str] | Iterable[str] | None) -> dict[str, str]:
    """``{"miou": "max"}`` or ``["miou:max", "gflops:min"]`` -> a checked ``{column: direction}``.

    Raises:
        ValueError: an empty set, a malformed item or a direction other than ``max``/``min``.
    """
    if objectives is None:
        return dict(DEFAULT_OBJECTIVES)
    if not isinstance(objectives, Mapping):
        parsed = {}
        for item in objectives:
            name, sep, direction = str(item).rpartition(":")
            if not sep or not name:
                raise ValueError(f"objective {item!r}: expected COLUMN:max or COLUMN:min")
            parsed[name] = direction
        objectives = parsed
    if not objectives:
        raise ValueError("objectives: give at least one, e.g. {'miou': 'max', 'gflops': 'min'}")
    out = {}
    for name, direction in objectives.items():
        d = str(direction).lower()
        if d not in _DIRECTIONS:
            raise ValueError(f"objective {name!r}: direction {direction!r} is not one of {_DIRECTIONS}")
        out[str(name)] = d
    return out


def _check_columns(df: pd.DataFrame, objectives: Mapping[str, str]) -> None:
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])
               and not pd.api.types.is_bool_dtype(df[c])]
    missing = [name for name in objectives if name not in df.columns]
    if missing:
        raise KeyError(
            f"unknown objective {', '.join(map(repr, missing))}; numeric columns that exist: "
            f"{', '.join(map(str, numeric)) or '(none)'}"
        )
    text = [name for name in objectives if name not in numeric]
    if text:
        raise KeyError(f"objective {', '.join(map(repr, text))} is not a numeric column; numeric "
                       f"columns that exist: {', '.join(map(str, numeric)) or '(none)'}")


def losses(df: pd.DataFrame, objectives: Mapping[str, str]) -> np.ndarray:
    """The objective columns as an (N, M) float array to minimise (maximised columns negated)."""
    objectives = parse_objectives(objectives)
    _check_columns(df, objectives)
    cols = [pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            * (-1.0 if d == "max" else 1.0) for name, d in objectives.items()]
    return np.stack(cols, axis=1) if cols else np.empty((len(df), 0))


def feasible_mask(df: pd.DataFrame, constraints: Mapping[str, Mapping[str, float | None]] | None) -> pd.Series:
    """Whether each row's cost satisfies the sweep's ``constraints`` (``{metric: {"min": low,
    "max": high}}``, the spec's field), by :func:`segcore.config.constraints.is_feasible`; a cost
    column that is missing or NaN breaks its bound. Every row is feasible without constraints."""
    if not constraints:
        return pd.Series(True, index=df.index, dtype=bool)
    columns = [metric for metric in constraints if metric in df.columns]
    costs = df[columns].apply(pd.to_numeric, errors="coerce").to_dict(orient="records")
    return pd.Series([is_feasible(cost, constraints) for cost in costs], index=df.index, dtype=bool)


def pareto_front(
    df: pd.DataFrame,
    objectives: Mapping[str, str] | Iterable[str] | None = None,
    by: str | None = None,
    constraints: Mapping[str, Mapping[str, float | None]] | None = None,
) -> pd.DataFrame:
    """The non-dominated rows of ``df``, globally or within each group of column ``by``.

    Args:
        df: one row per trial (e.g. :func:`segcore.analysis.load_trials`).
        objectives: ``{column: "max" | "min"}``; default ``{"miou": "max", "gflops": "min"}``.
        by: a column (e.g. ``"network"``): one front per value instead of one overall.
        constraints: the sweep's cost constraints (``{metric: {"min": low, "max": high}}``): rows
            that break one are left out before the front is taken (:func:`feasible_mask`).

    Returns:
        The front's rows (all columns of ``df``, original index), sorted by ``by`` and then by the
        first objective, best first.

    Raises:
        KeyError: an objective or ``by`` is not a column (the message lists those that exist).
    """
    objectives = parse_objectives(objectives)
    _check_columns(df, objectives)
    if by is not None and by not in df.columns:
        raise KeyError(f"by: unknown column {by!r}; columns that exist: {', '.join(map(str, df.columns))}")
    df = df[feasible_mask(df, constraints)]
    loss = losses(df, objectives)
    mask = np.zeros(len(df), dtype=bool)
    if by is None:
        mask = is_pareto_efficient(loss)
    else:
        for _, positions in df.groupby(by, sort=True, dropna=False).indices.items():
            mask[positions] = is_pareto_efficient(loss[positions])
    front = df[mask]
    first, direction = next(iter(objectives.items()))
    keys = ([by] if by else []) + [first]
    ascending = ([True] if by else []) + [direction == "min"]
    return front.sort_values(keys, ascending=ascending, kind="stable")


def reference_point(df: pd.DataFrame, objectives: Mapping[str, str] | None = None,
                    margin: float = 0.1) -> dict[str, float]:
    """A default hypervolume reference: each objective's worst value, pushed out by ``margin`` of
    its range (so the worst points still add volume)."""
    objectives = parse_objectives(objectives)
    loss = losses(df, objectives)
    ref = {}
    for i, (name, d) in enumerate(objectives.items()):
        col = loss[:, i][~np.isnan(loss[:, i])]
        if col.size == 0:
            raise ValueError(f"objective {name!r}: no finite values to place a reference point")
        worst = col.max() + margin * max(col.max() - col.min(), abs(col.max()) * margin, 1e-12)
        ref[name] = float(-worst if d == "max" else worst)
    return ref


def hypervolume(
    df: pd.DataFrame,
    objectives: Mapping[str, str] | Iterable[str] | None = None,
    reference: Mapping[str, float] | None = None,
) -> float:
    """Volume of objective space dominated by the rows of ``df`` and bounded by ``reference``.

    Args:
        df: one row per trial.
        objectives: ``{column: "max" | "min"}``; default ``{"miou": "max", "gflops": "min"}``.
        reference: ``{column: value}`` in the columns' own units (e.g. ``{"miou": 0.0,
            "gflops": 50.0}``): the worst corner. Default :func:`reference_point`.

    Returns:
        The exact hypervolume (the area for two objectives). Rows that do not strictly improve on
        the reference in every objective add nothing; rows with NaN are ignored.

    Raises:
        KeyError: an objective is not a column, or the reference misses an objective.
    """
    objectives = parse_objectives(objectives)
    if reference is None:
        reference = reference_point(df, objectives)
    missing = [name for name in objectives if name not in reference]
    if missing:
        raise KeyError(f"reference: no value for objective(s) {', '.join(missing)}; "
                       f"give one per objective: {', '.join(objectives)}")
    loss = losses(df, objectives)
    ref = np.array([-float(reference[n]) if d == "max" else float(reference[n])
                    for n, d in objectives.items()])
    inside = ~np.isnan(loss).any(axis=1) & (loss < ref).all(axis=1)
    points = loss[inside]
    return float(_hv(points[is_pareto_efficient(points)], ref)) if len(points) else 0.0


def _hv(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume by slicing along the last objective (HSO; While et al., IEEE TEC 2006).

    ``points`` are minimised and strictly inside ``ref``. Exponential in M, fine for the 2-4
    objectives of a sweep.
    """
    n, m = points.shape
    if n == 0:
        return 0.0
    if m == 1:
        return float(ref[0] - points[:, 0].min())
    if m == 2:
        pts = points[np.lexsort((points[:, 1], points[:, 0]))]
        volume, best_y = 0.0, ref[1]
        for x, y in pts:  # sweep along x; each point adds the strip its y improves on
            if y < best_y:
                volume += (ref[0] - x) * (best_y - y)
                best_y = y
        return volume
    pts = points[np.argsort(points[:, -1], kind="stable")]
    volume = 0.0
    for i in range(n):
        upper = pts[i + 1, -1] if i + 1 < n else ref[-1]
        depth = upper - pts[i, -1]
        if depth > 0:
            sub = pts[: i + 1, :-1]
            volume += depth * _hv(sub[is_pareto_efficient(sub)], ref[:-1])
    return volume
