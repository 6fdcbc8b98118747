"""What to run, per network, read off its trials and its fitted model: the knee of the measured
accuracy-cost front, the cheapest configuration within a tolerance of the best, and the efficient
grid and block (measured, and on the fitted curve). Seeds of one configuration are averaged first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from segcore.analysis.pareto import is_pareto_efficient
from segcore.analysis.seeds import seed_means

if TYPE_CHECKING:
    from segcore.analysis.tradeoff import TradeoffModel

__all__ = ["recommend", "describe_config"]


def describe_config(rec: Mapping[str, Any] | None) -> str:
    """``s=8 k=0.5 b=1: 0.6123 @ 1.25`` for a recommended configuration ("" for none), with
    ``(mean of 2 seeds)`` when it averages seeds."""
    if not rec:
        return ""
    seeds = rec.get("seeds", 1)
    return (f"s={rec['grid_stride']:g} k={rec['keep']:g} b={rec['block']:g}: "
            f"{rec['metric']:.4f} @ {rec['cost']:.4g}" + (f" (mean of {seeds} seeds)" if seeds > 1 else ""))


def _config(row: pd.Series, metric: str, cost_metric: str) -> dict[str, Any]:
    return {"trial_id": None if pd.isna(row.get("trial_id")) else str(row.get("trial_id")),
            "grid_stride": float(row["grid_stride"]), "keep": float(row["keep"]),
            "block": float(row["block"]), "metric": float(row[metric]),
            "seeds": int(row.get("seeds", 1)),
            "cost": float(row[cost_metric]) if cost_metric in row and pd.notna(row[cost_metric]) else float("nan")}


def recommend(sub: pd.DataFrame, metric: str, cost_metric: str, tolerance: float,
              model: TradeoffModel, network: str, strides: np.ndarray) -> dict[str, Any]:
    """Knee, cheapest-within-tolerance, and the efficient grid and block, measured and fitted.

    Every answer reads configurations, the trials that differ only in their seed averaged
    (:func:`segcore.analysis.seeds.seed_means`); ``notes`` says what could not be answered.
    """
    configs = seed_means(sub, metric)
    rec: dict[str, Any] = {"notes": []}
    rec.update(_knee(configs, metric, cost_metric, tolerance))
    rec.update(_efficient_grid(configs, metric, tolerance, model, network, strides, rec["notes"]))
    rec["efficient_block_measured"] = None
    if configs["block"].nunique() >= 2:
        dense_decoder = configs[configs["keep"] == 1.0]  # the block axis without decoder truncation
        per_block = (dense_decoder if dense_decoder["block"].nunique() >= 2 else configs).groupby("block")[metric].max()
        rec["efficient_block_measured"] = int(per_block[per_block >= (1.0 - tolerance) * per_block.max()].index.max())
    return rec


def _knee(configs: pd.DataFrame, metric: str, cost_metric: str, tolerance: float) -> dict[str, Any]:
    """The best configuration, the cheapest within the tolerance of it, and the knee of the front."""
    best = configs[metric].max()
    has_cost = cost_metric in configs and configs[cost_metric].notna().any()
    ok = configs[configs[metric] >= (1.0 - tolerance) * best]
    # Cheapest, then the coarsest grid and block (less compute and labelling), then most accurate.
    order = ([cost_metric] if has_cost else []) + ["grid_stride", "block", "keep", metric]
    asc = ([True] if has_cost else []) + [False, False, True, False]
    cheapest = _config(ok.sort_values(order, ascending=asc, kind="stable").iloc[0], metric, cost_metric)
    rec = {"best": _config(configs.loc[configs[metric].idxmax()], metric, cost_metric),
           "cheapest_within_tolerance": cheapest, "knee": cheapest}
    if has_cost:
        pts = configs[[metric, cost_metric]].to_numpy(float)
        front = configs[is_pareto_efficient(np.stack([-pts[:, 0], pts[:, 1]], axis=1))]
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
    return rec


def _efficient_grid(configs: pd.DataFrame, metric: str, tolerance: float, model: TradeoffModel,
                    network: str, strides: np.ndarray, notes: list[str]) -> dict[str, Any]:
    """The coarsest grid stride whose accuracy stays within the tolerance of the best stride's,
    measured and on the fitted curve, from the pure grid axis only (keep 1, block 1): a trial with
    a truncated decoder or block labels says nothing about the grid alone."""
    out: dict[str, Any] = {"efficient_grid_measured": None, "efficient_grid_fitted": None}
    axis = configs[(configs["keep"] == 1.0) & (configs["block"] == 1)]
    per_stride = axis.groupby("grid_stride")[metric].max()
    if len(per_stride) < 2:
        ran = ("no trial ran" if per_stride.empty
               else f"only grid stride {float(per_stride.index[0]):g} ran")
        notes.append(f"no measured efficient grid: {ran} at keep 1 and block 1")
        return out
    within = per_stride[per_stride >= (1.0 - tolerance) * per_stride.max()]
    out["efficient_grid_measured"] = int(within.index.max())
    if not model.networks[network].fitted:
        return out
    # Fitted: the same criterion on the fitted curve, at the measured and the spectrum's strides
    # (converted to the trials' pixels) inside the measured range.
    ratio = float(model._ratio(model.networks[network].image_scale))
    grid = np.unique(np.concatenate([strides * ratio, per_stride.index.to_numpy(float)]))
    grid = grid[(grid >= per_stride.index.min()) & (grid <= per_stride.index.max())]
    pred = model.predict_many(network, grid, np.ones_like(grid), np.ones_like(grid))[model.metric]
    out["efficient_grid_fitted"] = float(grid[pred >= (1.0 - tolerance) * pred.max()].max())
    return out
