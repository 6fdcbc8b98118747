"""Rendering only: figures of a trial table, its front and a fitted :class:`TradeoffModel`.

Each function draws one PNG and returns its path. Figures are built with the object-oriented
Matplotlib API on the Agg canvas (no pyplot state, no display needed), one colour per network.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from segcore.analysis.pareto import parse_objectives, pareto_front
from segcore.analysis.tradeoff import TradeoffModel

__all__ = ["front_pair", "network_colours", "plot_accuracy_vs_block", "plot_accuracy_vs_stride", "plot_front", "plot_measured_vs_predicted"]


def _figure(width: float = 6.4, height: float = 4.4):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def network_colours(networks) -> dict[str, tuple]:
    """A fixed colour per network name (sorted, tab10), shared by every figure of a report."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {name: cmap(i % 10) for i, name in enumerate(sorted(map(str, set(networks))))}


def front_pair(objectives: Mapping[str, str]) -> dict[str, str]:
    """The two objectives a front figure shows: miou vs gflops when both are objectives, else
    the first two.

    Raises:
        ValueError: fewer than two objectives.
    """
    if len(objectives) < 2:
        raise ValueError(f"a front figure needs two objectives, got {len(objectives)}: {', '.join(objectives)}")
    if "miou" in objectives and "gflops" in objectives:
        return {"miou": objectives["miou"], "gflops": objectives["gflops"]}
    return dict(list(objectives.items())[:2])


def plot_front(df: pd.DataFrame, path: str | os.PathLike,
               objectives: Mapping[str, str] | None = None, by: str | None = "network") -> Path:
    """Accuracy against cost for every trial, each network's front joined by a step line.

    Args:
        df: trial table.
        path: PNG to write.
        objectives: ``{y_column: dir, x_column: dir, ...}``; default miou vs gflops. With more than
            two, miou vs gflops when both are there, else the first two (see :func:`front_pair`).
        by: the column that colours the points and splits the fronts (None: one front).
    """
    objectives = front_pair(parse_objectives(objectives))
    (ycol, _), (xcol, _) = objectives.items()
    groups = df[by].astype(str) if by else pd.Series("all", index=df.index)
    colours = network_colours(groups.unique())
    fig = _figure()
    ax = fig.add_subplot()
    for name in sorted(groups.unique()):
        sub = df[groups == name]
        ax.scatter(sub[xcol], sub[ycol], s=22, alpha=0.45, color=colours[name])
        front = pareto_front(sub, objectives).sort_values(xcol)
        ax.plot(front[xcol], front[ycol], "o-", drawstyle="steps-post", color=colours[name],
                label=f"{name} ({len(front)} on front / {len(sub)})")
        for _, row in front.iterrows():
            if "grid_stride" in row:
                ax.annotate(_knob_label(row), (row[xcol], row[ycol]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(xcol)
    ax.set_ylabel(ycol)
    ax.set_title("Pareto front" + (f" per {by}" if by else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _knob_label(row: pd.Series) -> str:
    """``s8``, ``s8 k0.5 b4``: the knobs of a point, leaving out those at their dense default."""
    label = f"s{row['grid_stride']:g}"
    if "keep" in row and pd.notna(row["keep"]) and row["keep"] != 1:
        label += f" k{row['keep']:g}"
    if "block" in row and pd.notna(row["block"]) and row["block"] != 1:
        label += f" b{row['block']:g}"
    return label


def plot_accuracy_vs_stride(df: pd.DataFrame, model: TradeoffModel, path: str | os.PathLike) -> Path:
    """Measured accuracy per grid stride, the fitted curve (keep = 1, block = 1) and the spectral
    oracle curve, with the measured and the spectral efficient grids marked, one panel per network.

    Strides are the trials' own (the oracle curve, computed on native-size labels, is drawn at
    ``native stride * image_scale``)."""
    metric = model.metric
    names = sorted(model.networks)
    colours = network_colours(names)
    fig = _figure(4.2 * max(len(names), 1), 4.0)
    axes = fig.subplots(1, max(len(names), 1), sharey=True, squeeze=False)[0]
    curves = model._curves
    for ax, name in zip(axes, names):
        fit = model.networks[name]
        ratio = float(model._ratio(fit.image_scale))
        sub = df[(df["network"].astype(str) == name) & df[metric].notna()]
        # The oracle in the trials' strides, from their own dense resolution (stride 1) on.
        oracle_x = curves.strides * ratio if curves is not None else np.array([])
        oracle_x = np.unique(np.concatenate([[1.0], oracle_x[oracle_x >= 1]])) if len(oracle_x) else oracle_x
        lo, hi = 1.0, float(max(sub["grid_stride"].max(), *oracle_x)) if len(oracle_x) else float(sub["grid_stride"].max())
        grid = np.exp2(np.linspace(np.log2(lo), np.log2(max(hi, lo * 1.01)), 100))
        pure = (sub["keep"] == 1.0) & (sub["block"] == 1)
        handles = [ax.scatter(sub.loc[pure, "grid_stride"], sub.loc[pure, metric], color=colours[name], s=28,
                              label="measured (keep 1, block 1)", zorder=3)]
        if (~pure).any():
            handles.append(ax.scatter(sub.loc[~pure, "grid_stride"], sub.loc[~pure, metric], color=colours[name],
                                      s=18, alpha=0.35, marker="x", label="measured (other keep/block)"))
        pred = model.predict_many(name, grid, np.ones_like(grid), np.ones_like(grid))[metric]
        handles += ax.plot(grid, pred, "-", color=colours[name],
                           label=f"fit: {fit.accuracy.kind} (LOO RMSE {fit.accuracy.loo_rmse:.3g})")
        if curves is not None:
            # The label-only oracle relative to the dense grid of the trials' images, anchored at
            # the fitted dense accuracy: the curve of a network that loses accuracy exactly as the
            # oracle does (a calibrated oracle with g = 1).
            relative = curves.at_stride(oracle_x / ratio) / curves.at_stride(1.0 / ratio)
            dense = model.predict_many(name, [1.0], [1.0], [1.0])[metric][0]
            handles += ax.plot(oracle_x, dense * relative, "k--", lw=1,
                               label="spectral oracle shape (x fitted dense accuracy)")
            spectral = model.spectral_in_trial_units(name)["grid_by_miou"]
            if spectral:
                handles.append(ax.axvline(spectral, color="k", ls=":", lw=1,
                                          label=f"spectral efficient grid {spectral:g}"))
        measured = fit.recommended.get("efficient_grid_measured")
        if measured:
            handles.append(ax.axvline(measured, color=colours[name], ls="-.", lw=1,
                                      label=f"measured efficient grid {measured:g}"))
        ax.set_xscale("log", base=2)
        ax.set_xlabel("grid stride" + (f" (images at scale {fit.image_scale:g})" if fit.image_scale != 1 else ""))
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(handles=handles, fontsize=6, loc="lower left")
    axes[0].set_ylabel(metric)
    return _save(fig, path)


def plot_accuracy_vs_block(df: pd.DataFrame, model: TradeoffModel, path: str | os.PathLike) -> Path | None:
    """Measured accuracy per annotation block size (one marker per keep), the fitted curve at the
    network's most common grid stride and keep 1, and the block-oracle shape anchored at the fitted
    dense-label accuracy, one panel per network whose trials vary the block size.

    Returns:
        The PNG path, or None when no network varies the block size.
    """
    metric = model.metric
    data = df[df[metric].notna() & df["network"].astype(str).isin(model.networks)]
    names = [n for n in sorted(model.networks) if data.loc[data["network"].astype(str) == n, "block"].nunique() >= 2]
    if not names:
        return None
    colours = network_colours(model.networks)
    fig = _figure(4.2 * len(names), 4.0)
    axes = fig.subplots(1, len(names), sharey=True, squeeze=False)[0]
    curves = model._curves
    for ax, name in zip(axes, names):
        fit = model.networks[name]
        sub = data[data["network"].astype(str) == name]
        stride = float(sub["grid_stride"].mode().iloc[0])
        blocks = np.exp2(np.linspace(0.0, np.log2(float(sub["block"].max())), 60))
        for marker, (keep, rows) in zip("os^vD", sub.groupby("keep", sort=False)):
            ax.scatter(rows["block"], rows[metric], color=colours[name], marker=marker, s=28,
                       alpha=1.0 if keep == 1 else 0.5, label=f"measured, keep {keep:g}", zorder=3)
        pred = model.predict_many(name, np.full_like(blocks, stride), np.ones_like(blocks), blocks)[metric]
        ax.plot(blocks, pred, "-", color=colours[name], label=f"fit at stride {stride:g}, keep 1: {fit.accuracy.kind}")
        if curves is not None and curves.blocks is not None:
            ratio = float(model._ratio(fit.image_scale))
            shape = curves.at_block(blocks / ratio, "hard") / curves.at_block(np.array([1.0 / ratio]), "hard")
            ax.plot(blocks, pred[0] * shape, "k--", lw=1, label="spectral block-oracle shape")
            spectral = model.spectral_in_trial_units(name)["block"]
            if spectral and spectral >= 1:
                ax.axvline(spectral, color="k", ls=":", lw=1, label=f"spectral efficient block {spectral:g}")
        measured = fit.recommended.get("efficient_block_measured")
        if measured:
            ax.axvline(measured, color=colours[name], ls="-.", lw=1, label=f"measured efficient block {measured:g}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("annotation block" + (f" (images at scale {fit.image_scale:g})" if fit.image_scale != 1 else ""))
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower left")
    axes[0].set_ylabel(metric)
    return _save(fig, path)


def plot_measured_vs_predicted(df: pd.DataFrame, model: TradeoffModel, path: str | os.PathLike) -> Path:
    """Measured against fitted accuracy for every trial; the diagonal is a perfect fit."""
    metric = model.metric
    sub = df[df[metric].notna() & df["network"].astype(str).isin(model.networks)]
    pred = model.predict_frame(sub)
    colours = network_colours(model.networks)
    fig = _figure(5.0, 4.6)
    ax = fig.add_subplot()
    for name in sorted(model.networks):
        rows = sub["network"].astype(str) == name
        acc = model.networks[name].accuracy
        ax.scatter(sub.loc[rows, metric], pred[rows], color=colours[name], s=24,
                   label=f"{name}: R² {acc.r2:.3f}, LOO RMSE {acc.loo_rmse:.3g}")
    if len(sub):
        lo = float(min(sub[metric].min(), pred.min()))
        hi = float(max(sub[metric].max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel(f"measured {metric}")
    ax.set_ylabel(f"predicted {metric}")
    ax.set_title("Measured vs predicted")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)

