"""What to run, per network, read off its trials and its fitted model: the knee of the measured
accuracy-cost front, the cheapest configuration within a tolerance of the best, and the efficient
grid and block (measured, and on the fitted curve).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from segcore.analysis.pareto import is_pareto_efficient

if TYPE_CHECKING:
    from segcore.analysis.tradeoff import TradeoffModel

__all__ = ["recommend", "describe_config"]


def describe_config(rec: Mapping[str, Any] | None) -> str:
    """``s=8 k=0.5 b=1: 0.6123 @ 1.25`` for a recommended configuration ("" for none)."""
    if not rec:
        return ""
    return (f"s={rec['grid_stride']:g} k={rec['keep']:g} b={rec['block']:g}: "
            f"{rec['metric']:.4f} @ {rec['cost']:.4g}")


def _config(row: pd.Series, metric: str, cost_metric: str) -> dict[str, Any]:
    return {"trial_id": None if pd.isna(row.get("trial_id")) else str(row.get("trial_id")),
            "grid_stride": float(row["grid_stride"]), "keep": float(row["keep"]),
            "block": float(row["block"]), "metric": float(row[metric]),
            "cost": float(row[cost_metric]) if cost_metric in row and pd.notna(row[cost_metric]) else float("nan")}


def recommend(sub: pd.DataFrame, metric: str, cost_metric: str, tolerance: float,
               model: TradeoffModel, network: str, strides: np.ndarray) -> dict[str, Any]:
    """Knee, cheapest-within-tolerance and the efficient grid, measured and fitted."""
    rec: dict[str, Any] = {}
    best = sub[metric].max()
    has_cost = cost_metric in sub and sub[cost_metric].notna().any()
    ok = sub[sub[metric] >= (1.0 - tolerance) * best]
    # Cheapest, then the coarsest grid and block (less compute and labelling), then most accurate.
    order = ([cost_metric] if has_cost else []) + ["grid_stride", "block", "keep", metric]
    asc = ([True] if has_cost else []) + [False, False, True, False]
    cheapest = ok.sort_values(order, ascending=asc, kind="stable").iloc[0]
    rec["best"] = _config(sub.loc[sub[metric].idxmax()], metric, cost_metric)
    rec["cheapest_within_tolerance"] = _config(cheapest, metric, cost_metric)
    rec["knee"] = rec["cheapest_within_tolerance"]
    if has_cost:
        pts = sub[[metric, cost_metric]].to_numpy(float)
        front = sub[is_pareto_efficient(np.stack([-pts[:, 0], pts[:, 1]], axis=1))]
        front = front.drop_duplicates([metric, cost_metric]).sort_values(cost_metric)
        if len(front) >= 3:
            # Kneedle (Satopaa et al., 2011): the front point farthest above the chord from its
            # cheapest to its most accurate point, both axes scaled to [0, 1].
            c = front[cost_metric].to_numpy(float)
            a = front[metric].to_numpy(float)
            cn = (c - c.min()) / max(c.max() - c.min(), 1e-12)
            an = (a - a.min()) / max(a.max() - a.min(), 1e-12)
            lift = an - cn
            if lift.max() > 1e-9:  # a front with no point above its chord has no knee
                rec["knee"] = _config(front.iloc[int(np.argmax(lift))], metric, cost_metric)
    # Efficient grid: the coarsest stride whose accuracy stays within the tolerance of the best
    # stride's, on the pure grid axis (keep = 1, block = 1) when the sweep has it.
    axis = sub[(sub["keep"] == 1.0) & (sub["block"] == 1)]
    axis = axis if len(axis) else sub
    per_stride = axis.groupby("grid_stride")[metric].max()
    within = per_stride[per_stride >= (1.0 - tolerance) * per_stride.max()]
    rec["efficient_grid_measured"] = int(within.index.max())
    # Fitted: the same criterion on the fitted curve, at the measured and the spectrum's strides
    # (converted to the trials' pixels) inside the measured range.
    ratio = float(model._ratio(model.networks[network].image_scale))
    grid = np.unique(np.concatenate([strides * ratio, per_stride.index.to_numpy(float)]))
    grid = grid[(grid >= per_stride.index.min()) & (grid <= per_stride.index.max())]
    pred = model.predict_many(network, grid, np.ones_like(grid), np.ones_like(grid))[metric]
    rec["efficient_grid_fitted"] = float(grid[pred >= (1.0 - tolerance) * pred.max()].max())
    # Efficient block: the coarsest annotation block within the tolerance of the best block's.
    rec["efficient_block_measured"] = None
    if sub["block"].nunique() >= 2:
        dense_decoder = sub[sub["keep"] == 1.0]  # the block axis without decoder truncation
        per_block = (dense_decoder if dense_decoder["block"].nunique() >= 2 else sub).groupby("block")[metric].max()
        rec["efficient_block_measured"] = int(per_block[per_block >= (1.0 - tolerance) * per_block.max()].index.max())
    return rec
