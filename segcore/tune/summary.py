"""Tables at the end of a sweep: best trial per network and the Pareto front (plain pandas)."""

from __future__ import annotations

import math

import pandas as pd

from segcore.tracking import schema

__all__ = ["best_per_network", "non_dominated", "pareto", "format_table"]


def _completed(df: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    if df.empty:
        return df
    done = df[df["status"] == schema.STATUS_COMPLETED]
    return done.dropna(subset=[m for m in objectives if m in done.columns])


def best_per_network(df: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """Per network, the completed trial best on the first objective (ties: the next objectives)."""
    done = _completed(df, objectives)
    if done.empty:
        return done
    keys = [m for m in objectives if m in done.columns]
    ordered = done.sort_values(keys, ascending=[objectives[m] == "min" for m in keys])
    return ordered.groupby("network", sort=True).head(1).sort_values("network").reset_index(drop=True)


def non_dominated(df: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """The non-dominated completed trials (every objective normalised to "minimise")."""
    done = _completed(df, objectives).reset_index(drop=True)
    signs = {m: (-1.0 if mode == "max" else 1.0) for m, mode in objectives.items()}
    points = [[signs[m] * float(row[m]) for m in objectives] for _, row in done.iterrows()]
    keep = []
    for i, p in enumerate(points):
        dominated = any(
            all(a <= b for a, b in zip(q, p)) and any(a < b for a, b in zip(q, p)) for j, q in enumerate(points) if j != i
        )
        if not dominated:
            keep.append(i)
    first = next(iter(objectives))
    return done.iloc[keep].sort_values(first, ascending=objectives[first] == "min").reset_index(drop=True)


def pareto(df: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """The Pareto front: :func:`segcore.analysis.pareto_front` when the analysis room is present."""
    try:
        from segcore.analysis import pareto_front
    except ImportError:
        return non_dominated(df, objectives)
    return pareto_front(_completed(df, objectives), objectives=objectives)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(df: pd.DataFrame, columns: list[str] | None = None) -> str:
    """A plain fixed-width table (no extra dependency)."""
    if df.empty:
        return "(no trials)"
    columns = [c for c in (columns or list(df.columns)) if c in df.columns]
    cells = [[_cell(v) for v in row] for row in df[columns].itertuples(index=False)]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in cells)])
