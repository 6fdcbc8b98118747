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
from segcore.analysis.seeds import seed_means
from segcore.analysis.tradeoff import TradeoffModel

__all__ = ["fitted_curves", "front_pair", "network_colours", "parallel_axes", "plot_accuracy_vs_block",
           "plot_accuracy_vs_stride", "plot_front", "plot_measured_vs_predicted", "plot_parallel_coordinates",
           "plot_progress"]


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


def _errorbar(ax, configs: pd.DataFrame, x: str, metric: str, **style):
    """Configurations' mean accuracy with a bar of one standard deviation over their seeds."""
    err = configs[f"{metric}_std"].fillna(0.0).to_numpy(float)
    return ax.errorbar(configs[x].to_numpy(float), configs[metric].to_numpy(float), yerr=err,
                       linestyle="none", capsize=2, **style)


def _seed_label(configs: pd.DataFrame) -> str:
    most = int(configs["seeds"].max()) if len(configs) else 1
    return f", mean ± std of {most} seeds" if most > 1 else ""


def fitted_curves(model: TradeoffModel, name: str, configs: pd.DataFrame, along: str,
                  primary: Mapping[str, float]) -> list[dict]:
    """The fitted accuracy along ``along`` (``grid_stride`` or ``block``) at each setting of the
    other knobs that the trials used (never at one they did not), over the range that setting's
    trials span; a setting with one value gives one point.

    Returns:
        One ``{"knobs": {...}, "x": array, "y": array, "primary": bool}`` per setting, ``primary``
        when the setting matches ``primary`` (e.g. keep 1, block 1); ``[]`` for a network with too
        few trials to fit.
    """
    if not model.networks[name].fitted:
        return []
    others = [k for k in ("grid_stride", "keep", "block", "block_mode") if k != along and k in configs]
    curves = []
    for setting, rows in configs.groupby(others, dropna=False, sort=True):
        knobs = {"grid_stride": 1.0, "keep": 1.0, "block": 1.0, "block_mode": "hard",
                 **dict(zip(others, setting if isinstance(setting, tuple) else (setting,)))}
        values = rows[along].to_numpy(float)
        span = (np.exp2(np.linspace(np.log2(values.min()), np.log2(values.max()), 60))
                if values.max() > values.min() else values[:1])
        full = {k: np.broadcast_to(np.asarray(v, dtype=object if k == "block_mode" else float), span.shape)
                for k, v in {**knobs, along: span}.items()}
        pred = model.predict_many(name, full["grid_stride"], full["keep"], full["block"],
                                  full["block_mode"])[model.metric]
        knobs.pop(along)
        curves.append({"knobs": knobs, "x": span, "y": pred,
                       "primary": all(knobs.get(k) == v for k, v in primary.items())})
    return curves


def _draw_fitted_curves(ax, model: TradeoffModel, name: str, configs: pd.DataFrame, along: str,
                        colour, primary: Mapping[str, float]) -> list:
    """:func:`fitted_curves` drawn: the primary settings solid and each labelled, the others faint
    under one label; a one-point setting as a short mark."""
    kind = model.networks[name].accuracy.kind if model.networks[name].fitted else ""
    handles, other_labelled = [], False
    for curve in sorted(fitted_curves(model, name, configs, along, primary), key=lambda c: not c["primary"]):
        knobs, style = curve["knobs"], ("-" if len(curve["x"]) > 1 else "_")
        if curve["primary"]:
            shown = [f"{k} {knobs[k]:g}" for k in ("grid_stride", "keep", "block") if k in knobs]
            if along == "block" or knobs["block"] != 1:
                shown.append(str(knobs["block_mode"]))
            handles += ax.plot(curve["x"], curve["y"], style, color=colour, markersize=12,
                               label=f"fit at {', '.join(shown)}: {kind}")
        else:
            label = None if other_labelled else f"fit at the other settings the trials used: {kind}"
            other_labelled = True
            handles += ax.plot(curve["x"], curve["y"], "--" if style == "-" else style, color=colour,
                               alpha=0.45, markersize=12, label=label)
    return [h for h in handles if not h.get_label().startswith("_")]


def _unfitted(ax) -> None:
    ax.text(0.5, 0.95, "too few trials to fit", transform=ax.transAxes, ha="center", va="top",
            fontsize=8, color="firebrick")


def plot_accuracy_vs_stride(df: pd.DataFrame, model: TradeoffModel, path: str | os.PathLike) -> Path:
    """Measured accuracy per grid stride (seeds as error bars), the fitted curves at the keep and
    block the trials used, and the spectral oracle curve, with the measured and the spectral
    efficient grids marked, one panel per network.

    Strides are the trials' own (the oracle curve, computed on native-size labels, is drawn at
    ``native stride * image_scale``, through the measured accuracy at the finest grid stride that
    ran at keep 1 and block 1)."""
    metric = model.metric
    names = sorted(model.networks)
    colours = network_colours(names)
    fig = _figure(4.2 * max(len(names), 1), 4.0)
    axes = fig.subplots(1, max(len(names), 1), sharey=True, squeeze=False)[0]
    curves = model._curves
    for ax, name in zip(axes, names):
        fit = model.networks[name]
        ratio = float(model._ratio(fit.image_scale))
        configs = seed_means(df[(df["network"].astype(str) == name) & df[metric].notna()], metric)
        pure = (configs["keep"] == 1.0) & (configs["block"] == 1)
        handles = [_errorbar(ax, configs[pure], "grid_stride", metric, color=colours[name], marker="o",
                             markersize=5, zorder=3, label="measured (keep 1, block 1" + _seed_label(configs) + ")")]
        if (~pure).any():
            handles.append(_errorbar(ax, configs[~pure], "grid_stride", metric, color=colours[name], marker="x",
                                     markersize=4, alpha=0.4, label="measured (other keep/block)"))
        handles += _draw_fitted_curves(ax, model, name, configs, "grid_stride", colours[name], {"keep": 1.0, "block": 1})
        if not fit.fitted:
            _unfitted(ax)
        if curves is not None:
            handles += _oracle_shape(ax, model, name, configs[pure], metric, ratio)
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


def _oracle_shape(ax, model: TradeoffModel, name: str, pure: pd.DataFrame, metric: str, ratio: float) -> list:
    """The label-only oracle in the trials' strides, through the measured accuracy at the finest
    pure-grid stride: the curve of a network that loses accuracy exactly as the oracle does."""
    if pure.empty:
        return []
    curves = model._curves
    oracle_x = curves.strides * ratio
    oracle_x = np.unique(np.concatenate([[1.0], oracle_x[oracle_x >= 1]]))
    finest = pure.loc[pure["grid_stride"].idxmin()]
    anchor = float(finest[metric]) / float(curves.at_stride(np.array([finest["grid_stride"] / ratio]))[0])
    return ax.plot(oracle_x, anchor * curves.at_stride(oracle_x / ratio), "k--", lw=1,
                   label=f"spectral oracle shape (through the measured stride {finest['grid_stride']:g})")


def _block_axis(trials: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, pd.Series]:
    """A network's configurations (seeds averaged) and which of them lie on a block axis: a grid
    stride and keep at which the trials used two block sizes or more."""
    configs = seed_means(trials, metric)
    if configs.empty:
        return configs, pd.Series(False, index=configs.index)
    return configs, configs.groupby(["grid_stride", "keep"])["block"].transform("nunique") >= 2


def plot_accuracy_vs_block(df: pd.DataFrame, model: TradeoffModel, path: str | os.PathLike) -> Path | None:
    """Measured accuracy per annotation block size (one marker per keep, seeds as error bars), the
    fitted curves at the grid stride, keep and block mode the trials used, and the block-oracle
    shape through the measured accuracy at the finest block, one panel per network whose trials
    vary the block size.

    Returns:
        The PNG path, or None when no network varies the block size.
    """
    metric = model.metric
    data = df[df[metric].notna() & df["network"].astype(str).isin(model.networks)]
    axes_of = {name: _block_axis(data[data["network"].astype(str) == name], metric) for name in sorted(model.networks)}
    names = [name for name, (configs, varied) in axes_of.items() if varied.any()]
    if not names:
        return None
    colours = network_colours(model.networks)
    fig = _figure(4.2 * len(names), 4.0)
    axes = fig.subplots(1, len(names), sharey=True, squeeze=False)[0]
    curves = model._curves
    for ax, name in zip(axes, names):
        fit = model.networks[name]
        configs, varied = axes_of[name]
        for marker, (keep, rows) in zip("os^vD", configs.groupby("keep", sort=False)):
            _errorbar(ax, rows, "block", metric, color=colours[name], marker=marker, markersize=5,
                      alpha=1.0 if keep == 1 else 0.5, label=f"measured, keep {keep:g}" + _seed_label(rows), zorder=3)
        stride = float(configs.loc[varied, "grid_stride"].mode().iloc[0])
        _draw_fitted_curves(ax, model, name, configs[varied], "block", colours[name], {"grid_stride": stride, "keep": 1.0})
        if not fit.fitted:
            _unfitted(ax)
        if curves is not None and curves.blocks is not None:
            ratio = float(model._ratio(fit.image_scale))
            axis = configs[varied & (configs["grid_stride"] == stride)]
            axis = axis[axis["keep"] == 1.0] if (axis["keep"] == 1.0).any() else axis
            finest = axis.loc[axis["block"].idxmin()]
            blocks = np.exp2(np.linspace(0.0, np.log2(float(axis["block"].max())), 60))
            mode = str(finest.get("block_mode", "hard")) if pd.notna(finest.get("block_mode", "hard")) else "hard"
            shape = curves.at_block(blocks / ratio, mode) / curves.at_block(np.array([finest["block"] / ratio]), mode)
            ax.plot(blocks, float(finest[metric]) * shape, "k--", lw=1,
                    label=f"spectral block-oracle shape ({mode}, through block {finest['block']:g})")
            spectral = model.spectral_in_trial_units(name)["block"]
            if spectral:
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
    """Measured (mean ± std over seeds) against fitted accuracy for every configuration of a fitted
    network; the diagonal is a perfect fit. Networks with too few trials to fit are named in the title."""
    metric = model.metric
    fitted = [name for name in sorted(model.networks) if model.networks[name].fitted]
    sub = seed_means(df[df[metric].notna() & df["network"].astype(str).isin(fitted)], metric)
    pred = model.predict_frame(sub)
    colours = network_colours(model.networks)
    fig = _figure(5.0, 4.6)
    ax = fig.add_subplot()
    for name in fitted:
        rows = sub["network"].astype(str) == name
        acc = model.networks[name].accuracy
        ax.errorbar(sub.loc[rows, metric], pred[rows], xerr=sub.loc[rows, f"{metric}_std"].fillna(0.0),
                    color=colours[name], marker="o", markersize=4, linestyle="none", capsize=2,
                    label=f"{name}: R² {acc.r2:.3f}, LOO RMSE {acc.loo_rmse:.3g}")
    if len(sub):
        lo = float(min(sub[metric].min(), pred.min()))
        hi = float(max(sub[metric].max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel(f"measured {metric}")
    ax.set_ylabel(f"predicted {metric}")
    unfitted = sorted(set(model.networks) - set(fitted))
    ax.set_title("Measured vs predicted" + (f" (too few trials to fit: {', '.join(unfitted)})" if unfitted else ""),
                 fontsize=9 if unfitted else None)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)



def plot_progress(progress: pd.DataFrame, path: str | os.PathLike, reference_volume: float | None = None) -> Path:
    """The hypervolume of the front so far against finished trials and against wall time.

    Args:
        progress: :func:`segcore.analysis.progress.sweep_progress`'s table.
        path: PNG to write.
        reference_volume: drawn as a dashed line when given (e.g. the whole sweep's hypervolume).
    """
    timed = progress["elapsed_s"].notna().any()
    fig = _figure(10.0 if timed else 6.4, 4.0)
    axes = fig.subplots(1, 2 if timed else 1, squeeze=False)[0]
    views = [("finished", "finished trials")]
    if timed:
        views.append(("elapsed_s", "wall time since the first start (s)"))
    for ax, (column, label) in zip(axes, views):
        ax.step(progress[column], progress["hypervolume"], where="post", marker="o", markersize=3)
        if reference_volume is not None:
            ax.axhline(reference_volume, color="grey", lw=0.8, ls="--")
        ax.set_xlabel(label)
        ax.set_ylabel("hypervolume of the front so far")
        ax.grid(alpha=0.3)
    axes[0].set_title("Progress of the sweep")
    return _save(fig, path)


def parallel_axes(df: pd.DataFrame, knobs: list[str], objectives: Mapping[str, str]) -> dict[str, dict]:
    """Each axis of a parallel-coordinates view: the rows' positions in [0, 1] and the tick labels.

    A knob's values (numbers or names) are placed at evenly spaced positions in sorted order; an
    objective is scaled linearly between its smallest and largest value.
    """
    axes: dict[str, dict] = {}
    for name in knobs:
        values = df[name].astype(object).where(df[name].notna(), None)
        levels = sorted({v for v in values if v is not None}, key=lambda v: (isinstance(v, str), v))
        spacing = 1.0 / max(len(levels) - 1, 1)
        position = {level: i * spacing for i, level in enumerate(levels)}
        axes[name] = {"positions": np.array([position.get(v, np.nan) for v in values], float),
                      "ticks": [(position[v], f"{v:g}" if isinstance(v, float) else str(v)) for v in levels]}
    for name, direction in objectives.items():
        column = pd.to_numeric(df[name], errors="coerce").to_numpy(float)
        low, high = np.nanmin(column), np.nanmax(column)
        span = high - low if high > low else 1.0
        axes[name] = {"positions": (column - low) / span,
                      "ticks": [(0.0, f"{low:.3g}"), (1.0, f"{high:.3g} ({direction})")]}
    return axes


def plot_parallel_coordinates(df: pd.DataFrame, path: str | os.PathLike, knobs: list[str],
                              objectives: Mapping[str, str]) -> Path:
    """One line per trial across its knobs and objectives, coloured by network; the front's thick."""
    objectives = parse_objectives(objectives)
    knobs = [k for k in knobs if k in df.columns and (k == "network" or df[k].nunique(dropna=True) > 1)]
    axes = parallel_axes(df, knobs, objectives)
    names = list(axes)
    colours = network_colours(df["network"].astype(str).unique())
    on_front = df.index.isin(pareto_front(df, objectives).index)
    fig = _figure(max(6.4, 1.3 * len(names)), 4.4)
    ax = fig.add_subplot()
    xs = np.arange(len(names))
    for row, (network, front) in enumerate(zip(df["network"].astype(str), on_front)):
        ys = [axes[name]["positions"][row] for name in names]
        ax.plot(xs, ys, color=colours[network], lw=2.2 if front else 0.8, alpha=0.9 if front else 0.35)
    for x, name in zip(xs, names):
        ax.axvline(x, color="black", lw=0.6)
        for position, label in axes[name]["ticks"]:
            ax.annotate(label, (x, position), fontsize=7, xytext=(3, 0), textcoords="offset points", va="center")
    ax.set_xticks(xs, names, fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    for network, colour in colours.items():
        ax.plot([], [], color=colour, label=network)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.1, 1.0))
    ax.set_title("Knobs and objectives of every trial (thick: on the front)")
    return _save(fig, path)
