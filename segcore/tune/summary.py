"""Tables at the end of a sweep: the best trial per network (plain pandas; the Pareto front is
:func:`segcore.analysis.pareto_front`)."""

from __future__ import annotations

import math

import pandas as pd

from segcore.tracking import schema

__all__ = ["best_per_network", "completed", "format_table"]


def completed(df: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """Full-length trials with every objective measured: the only ones that may enter a front."""
    if df.empty:
        return df
    done = df[df["status"] == schema.STATUS_COMPLETED]
    return done.dropna(subset=[m for m in objectives if m in done.columns])


def best_per_network(df: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """Per network, the completed trial best on the first objective (ties: the next objectives)."""
    done = completed(df, objectives)
    if done.empty:
        return done
    keys = [m for m in objectives if m in done.columns]
    ordered = done.sort_values(keys, ascending=[objectives[m] == "min" for m in keys])
    return ordered.groupby("network", sort=True).head(1).sort_values("network").reset_index(drop=True)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e9:
            return str(int(value))  # counts (annotation units, epochs) read better whole
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
