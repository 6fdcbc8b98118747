"""Tables at the end of a sweep: the best trial per network (plain pandas; the Pareto front is
:func:`segcore.analysis.pareto_front`)."""

from __future__ import annotations

import pandas as pd

from segcore import names

__all__ = ["best_per_network", "completed"]


def completed(df: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """Full-length trials with every objective measured: the only ones that may enter a front."""
    if df.empty:
        return df
    done = df[df["status"] == names.STATUS_COMPLETED]
    return done.dropna(subset=[m for m in objectives if m in done.columns])


def best_per_network(df: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """Per network, the completed trial best on the first objective (ties: the next objectives)."""
    done = completed(df, objectives)
    if done.empty:
        return done
    keys = [m for m in objectives if m in done.columns]
    ordered = done.sort_values(keys, ascending=[objectives[m] == "min" for m in keys])
    return ordered.groupby("network", sort=True).head(1).sort_values("network").reset_index(drop=True)
