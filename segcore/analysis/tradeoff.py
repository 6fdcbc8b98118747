"""The resolution–accuracy–cost trade-off: accuracy and cost as functions of the knobs, per network.

Two accuracy models compete for each network, and leave-one-out cross-validation picks one:

* **calibrated oracle** — the training-free spectral curves (docs/design.md, Science) anchor the shape:
  ``miou = c * O_grid(s / keep) ** g * O_block(b) ** g``, where ``O_grid`` is the dataset's oracle
  mIoU of a grid (``spectrum.json: oracle_miou``) and ``O_block`` the oracle mIoU of block
  annotation (``block_oracle_miou``), both interpolated in log2 of the stride/block. ``c`` is the
  network's ceiling (how much of the oracle it reaches) and ``g`` its sensitivity (``g = 1``: it
  loses accuracy exactly as the oracle does). Decoder truncation keeps a share ``keep`` of the
  frequencies along each axis, i.e. the band of a grid ``1 / keep`` times coarser, hence ``s / keep``.
  Strides and blocks are measured in the labels' pixels of the spectrum: a trial trained on images
  resized by ``image_scale`` (e.g. 0.5) with grid stride ``s`` predicts on a grid of stride
  ``s / image_scale`` native pixels, so that is where the oracle curves are read (relative to their
  value at the trial's dense resolution, ``1 / image_scale``, so ``c`` stays the dense accuracy).
* **saturating** — a free curve with no spectral input: ``miou = m / (1 + (s_eff / s0) ** p)``
  (times ``1 / (1 + (b / b0) ** q)`` when the block size varies): flat at fine grids, falling past
  a characteristic stride ``s0`` with steepness ``p``.

Cost: ``gflops = a + b * (keep / s)**2 + d * (-log2 s)`` by non-negative least squares, the terms
chosen by leave-one-out error — decoders that run on the stride-``s`` grid truncated to ``keep``
of its size per axis (DeepLabV3+, DAN) scale with ``(keep / s)**2``; a U-Net decoder that stops
up-sampling at the grid saves about the same FLOPs per skipped octave (see :func:`segcore.analysis.fitting.fit_cost`).

A network with fewer trials than a model has parameters plus two is not fitted with that model
(:func:`segcore.analysis.fitting.min_trials`); with too few for every model it is "too few trials to
fit": no accuracy model, no prediction and no fitted curve, only what was measured.

The recommended configuration per network is the knee of its measured front (accuracy vs cost)
and the cheapest configuration within a tolerance of its best; the efficient grid measured (and
fitted) is set beside the one the spectral analysis predicted from labels alone, converted to
strides the trials can use (whole, at least 1; :func:`trial_stride`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from segcore.spectral.curves import OracleCurves, oracle_curves
from segcore.analysis.fitting import (
    CALIBRATED_ORACLE, CONSTANT, SATURATING, CostFit, CurveFit, accuracy_model, fit_accuracy, fit_cost,
    too_few_trials,
)
from segcore.analysis.recommend import describe_config, recommend
from segcore.formatting import jsonable

__all__ = [
    "CALIBRATED_ORACLE", "SATURATING", "CONSTANT", "CostFit", "CurveFit", "NetworkFit", "OracleCurves",
    "TradeoffModel", "fit_tradeoff", "oracle_curves", "trial_stride",
]


@dataclass
class NetworkFit:
    """Everything fitted and recommended for one network.

    Attributes:
        accuracy: the chosen accuracy model, or None when there were too few trials to fit any
            (``note`` says why; the network then has no prediction).
        note: "too few trials to fit: ..." when ``accuracy`` is None, else "".
    """

    network: str
    accuracy: CurveFit | None
    candidates: dict[str, CurveFit]
    cost: CostFit | None
    recommended: dict[str, Any] = field(default_factory=dict)
    image_scale: float = 1.0  # the image scale its trials were trained at (the most common one)
    n_trials: int = 0
    note: str = ""

    @property
    def fitted(self) -> bool:
        return self.accuracy is not None


def trial_stride(native: float | None, ratio: float, what: str) -> tuple[float | None, str | None]:
    """A stride or block of the spectrum's native label pixels as one the trials can use.

    ``native * ratio`` trial pixels (``ratio``: trial pixels per native pixel), rounded down to a
    whole stride and never below 1 (coarser than the spectral answer would claim more than it
    does). Returns ``(stride, note)``; the note says what was changed, None when nothing was.
    """
    if native is None:
        return None, None
    value = float(native) * ratio
    usable = float(max(1, math.floor(value + 1e-9)))
    if abs(usable - value) <= 1e-9:
        return usable, None
    reason = "below one pixel" if value < 1 else "not a whole stride"
    return usable, (f"spectral {what} {float(native):g} native pixels is {value:g} in the trials' "
                    f"pixels ({reason}): given as {usable:g}")



@dataclass
class TradeoffModel:
    """Accuracy and cost of each network as functions of (grid stride, keep, block).

    Attributes:
        networks: the per-network fits and recommendations.
        metric: the accuracy column modelled (``miou``).
        cost_metric: the cost column modelled (``gflops``).
        tolerance: relative accuracy loss accepted by "cheapest within tolerance" and by the
            efficient grid (the spectral analysis' default is 0.01 of the dense score).
        spectral_efficient_grid: the efficient grid predicted from labels alone
            (``{"by_miou": s, "by_energy": s}``), or empty without a spectrum.
        spectral_efficient_block: the coarsest block annotation the spectral analysis accepts.
    """

    networks: dict[str, NetworkFit]
    metric: str = "miou"
    cost_metric: str = "gflops"
    tolerance: float = 0.01
    spectral_efficient_grid: dict[str, Any] = field(default_factory=dict)
    spectral_efficient_block: int | None = None
    _curves: OracleCurves | None = field(default=None, repr=False)
    _thetas: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _costs: dict[str, Callable] = field(default_factory=dict, repr=False)

    def _network(self, network: str) -> NetworkFit:
        if network not in self.networks:
            raise KeyError(f"network {network!r} was not fitted; fitted networks: "
                           f"{', '.join(sorted(self.networks)) or '(none)'}")
        return self.networks[network]

    def _ratio(self, image_scale) -> np.ndarray:
        """Trial pixels per spectrum pixel: a stride s of the trial spans s / ratio label pixels."""
        if self._curves is not None:
            return self._curves.label_ratio(image_scale)
        return np.asarray(image_scale, dtype=float)

    def _features(self, grid_stride, keep, block, block_mode, image_scale) -> dict[str, np.ndarray]:
        s = np.atleast_1d(np.asarray(grid_stride, dtype=float))
        k = np.broadcast_to(np.asarray(keep, dtype=float), s.shape)
        b = np.broadcast_to(np.asarray(block, dtype=float), s.shape)
        scale = np.broadcast_to(np.asarray(image_scale, dtype=float), s.shape)
        if np.any(s < 1) or np.any(b < 1) or np.any((k <= 0) | (k > 1)) or np.any(scale <= 0):
            raise ValueError("predict: grid_stride and block must be >= 1, keep in (0, 1] and "
                             f"image_scale > 0; got grid_stride={grid_stride!r}, keep={keep!r}, "
                             f"block={block!r}, image_scale={image_scale!r}")
        ratio = self._ratio(scale)
        # Strides and blocks in the spectrum's label pixels (see the module docstring).
        x = {"s_eff": s / k / ratio, "block": b / ratio, "s": s, "keep": np.asarray(k, float)}
        if self._curves is not None:
            # Relative to the trial's own dense resolution (stride 1, block 1 of its images): the
            # labels it is scored against are already down-scaled; c is then the dense accuracy.
            dense = 1.0 / ratio
            x["oracle"] = self._curves.relative_oracle(x["s_eff"], x["block"], block_mode, dense)
        return x

    def predict(self, network: str, grid_stride: float, keep: float = 1.0, block: int = 1,
                block_mode: str = "hard", image_scale: float | None = None) -> dict[str, float]:
        """Predicted accuracy and cost of one configuration.

        Args:
            network: a fitted network.
            grid_stride, keep, block, block_mode: the knobs.
            image_scale: the image scale of training (default: the one the network's trials used).

        Returns:
            ``{metric: value, cost_metric: value}`` (cost NaN when no cost was measured).

        Raises:
            KeyError: the network was not fitted (lists those that were).
            ValueError: a knob outside its range.
        """
        pred = self.predict_many(network, [grid_stride], [keep], [block], [block_mode], image_scale)
        return {k: float(v[0]) for k, v in pred.items()}

    def predict_many(self, network: str, grid_stride, keep, block, block_mode="hard",
                     image_scale=None) -> dict[str, np.ndarray]:
        """Vectorised :meth:`predict`: arrays of knobs in, arrays of predictions out."""
        fit = self._network(network)
        if not fit.fitted:
            raise ValueError(f"network {network!r} has no prediction: {fit.note}")
        x = self._features(grid_stride, keep, block, block_mode,
                           fit.image_scale if image_scale is None else image_scale)
        spec = accuracy_model(fit.accuracy.kind, self._thetas[network])
        acc = spec(self._thetas[network], x)
        cost = (self._costs[network](x["s"], x["keep"]) if network in self._costs
                else np.full(len(acc), np.nan))
        return {self.metric: np.asarray(acc, float), self.cost_metric: np.asarray(cost, float)}

    def predict_frame(self, df: pd.DataFrame) -> pd.Series:
        """Predicted accuracy for each row of a trial table (NaN for networks not fitted)."""
        out = pd.Series(np.nan, index=df.index, dtype=float)
        for network, rows in df.groupby("network").groups.items():
            if network in self.networks and self.networks[network].fitted:
                sub = df.loc[rows]
                out.loc[rows] = self.predict_many(
                    network, sub["grid_stride"].to_numpy(float), sub["keep"].to_numpy(float),
                    sub["block"].to_numpy(float), _modes(sub), _scales(sub))[self.metric]
        return out

    def summary(self) -> pd.DataFrame:
        """One row per network: the chosen model, its parameters and goodness of fit, the cost fit."""
        rows = []
        for name, fit in sorted(self.networks.items()):
            acc = fit.accuracy
            if acc is None:
                rows.append({"network": name, "n": fit.n_trials, "model": "too few trials to fit",
                             "note": fit.note})
                continue
            row = {"network": name, "n": acc.n, "model": acc.kind,
                   "params": ", ".join(f"{k}={v:.4g}" for k, v in acc.params.items()),
                   "r2": acc.r2, "rmse": acc.rmse, "loo_rmse": acc.loo_rmse}
            for kind, cand in fit.candidates.items():
                row[f"loo_{kind}"] = cand.loo_rmse
            if fit.cost is not None:
                row["cost_model"] = " + ".join(f"{v:.4g}*{k}" if k != "1" else f"{v:.4g}"
                                               for k, v in fit.cost.coefficients.items())
                row["cost_r2"] = fit.cost.r2
                row["cost_loo_rmse"] = fit.cost.loo_rmse
            rows.append(row)
        return pd.DataFrame(rows)

    def spectral_in_trial_units(self, network: str) -> dict[str, float | None]:
        """The spectral predictions as grid strides / blocks of the network's trials.

        ``grid_by_miou``: the coarsest grid whose oracle mIoU stays within ``tolerance`` of the
        oracle at the trials' own dense resolution — the spectral efficient grid re-derived for
        labels scored at ``image_scale`` (equal to the spectrum's ``efficient_grid.by_miou`` at
        scale 1 and the same tolerance). ``grid_by_energy`` and ``block``: the spectrum's values
        converted, ``native * image_scale`` (a stride 8 of 480 x 360 labels is a stride 4 at 0.5).
        Each is a stride the trials can use (:func:`trial_stride`: whole, at least 1); ``notes``
        lists what was rounded.
        """
        ratio = float(self._ratio(self._network(network).image_scale))
        by_miou = self.spectral_efficient_grid.get("by_miou")
        if self._curves is not None:
            dense = 1.0 / ratio
            strides = np.unique(np.concatenate([[dense], self._curves.strides[self._curves.strides >= dense]]))
            relative = self._curves.at_stride(strides) / self._curves.at_stride(dense)
            by_miou = float(strides[relative >= (1.0 - self.tolerance) - 1e-12].max())
        out: dict[str, Any] = {"notes": []}
        for key, native, what in (("grid_by_miou", by_miou, "efficient grid (oracle mIoU)"),
                                  ("grid_by_energy", self.spectral_efficient_grid.get("by_energy"),
                                   "efficient grid (band energy)"),
                                  ("block", self.spectral_efficient_block, "efficient block")):
            out[key], note = trial_stride(native, ratio, what)
            if note:
                out["notes"].append(note)
        return out

    def recommendations(self) -> pd.DataFrame:
        """One row per network: measured knee, cheapest within tolerance, and the efficient grid
        measured, fitted and predicted by the spectral analysis, all in the trials' grid strides."""
        rows = []
        for name, fit in sorted(self.networks.items()):
            rec = fit.recommended
            spectral = self.spectral_in_trial_units(name)
            notes = [fit.note] * bool(fit.note) + rec.get("notes", []) + spectral["notes"]
            rows.append({
                "network": name,
                "image_scale": fit.image_scale,
                "knee": describe_config(rec.get("knee")),
                "cheapest_within_tol": describe_config(rec.get("cheapest_within_tolerance")),
                "knee_grid_stride": (rec.get("knee") or {}).get("grid_stride"),
                "efficient_grid_measured": rec.get("efficient_grid_measured"),
                "efficient_grid_fitted": rec.get("efficient_grid_fitted"),
                "efficient_grid_spectral": spectral["grid_by_miou"],
                "efficient_grid_spectral_energy": spectral["grid_by_energy"],
                "efficient_block_measured": rec.get("efficient_block_measured"),
                "efficient_block_spectral": spectral["block"],
                "notes": "; ".join(notes),
            })
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: fits, candidates, recommendations."""
        return {
            "metric": self.metric, "cost_metric": self.cost_metric, "tolerance": self.tolerance,
            "spectral_efficient_grid": self.spectral_efficient_grid,
            "spectral_efficient_block": self.spectral_efficient_block,
            "networks": {name: jsonable(asdict(fit)) for name, fit in sorted(self.networks.items())},
        }



def _scales(df: pd.DataFrame) -> np.ndarray:
    """Each trial's image scale (1.0 where it trained at the native size)."""
    if "image_scale" not in df:
        return np.ones(len(df))
    return pd.to_numeric(df["image_scale"], errors="coerce").fillna(1.0).to_numpy(float)


def _modes(df: pd.DataFrame) -> np.ndarray:
    if "block_mode" not in df:
        return np.full(len(df), "hard", dtype=object)
    return df["block_mode"].astype(object).where(df["block_mode"].notna(), "hard").to_numpy(dtype=object)


def fit_tradeoff(
    df: pd.DataFrame,
    spectrum: Mapping[str, Any] | None = None,
    *,
    metric: str = "miou",
    cost_metric: str = "gflops",
    tolerance: float = 0.01,
    oracle_variant: str = "soft",
) -> TradeoffModel:
    """Fit accuracy and cost against the knobs, per network (see the module docstring).

    Args:
        df: trial table (:func:`segcore.analysis.load_trials`); only full-length trials with a
            finite ``metric`` are fitted.
        spectrum: the dataset's ``spectrum.json`` (:func:`segcore.analysis.load_spectrum`); without
            it only the free saturating curve is fitted.
        metric: accuracy column.
        cost_metric: cost column.
        tolerance: relative accuracy loss accepted for the recommendations (0.01 = 1%).
        oracle_variant: which ``oracle_miou`` curve anchors the calibrated model.

    Returns:
        The :class:`TradeoffModel`.

    Raises:
        KeyError: a needed column is missing (lists those that exist).
        ValueError: no usable trials, or a malformed spectrum.
    """
    needed = ["network", "grid_stride", "keep", "block", metric]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise KeyError(f"fit_tradeoff: missing column(s) {', '.join(missing)}; "
                       f"columns that exist: {', '.join(map(str, df.columns))}")
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance: {tolerance!r} is not in [0, 1)")
    data = df
    if "full_length" in data:
        data = data[data["full_length"].astype(bool)]
    data = data[np.isfinite(pd.to_numeric(data[metric], errors="coerce").to_numpy(float))]
    data = data.dropna(subset=["network", "grid_stride", "keep", "block"])
    if data.empty:
        raise ValueError(f"fit_tradeoff: no full-length trial with a finite {metric!r} to fit "
                         f"({len(df)} rows given)")
    curves = oracle_curves(spectrum, oracle_variant) if spectrum else None
    model = TradeoffModel({}, metric, cost_metric, tolerance,
                          dict(curves.efficient_grid) if curves else {},
                          curves.efficient_block if curves else None, curves)
    strides = curves.strides if curves is not None else np.array([], float)
    for network, sub in data.groupby("network", sort=True):
        scales = _scales(sub)
        x = model._features(sub["grid_stride"].to_numpy(float), sub["keep"].to_numpy(float),
                            sub["block"].to_numpy(float), _modes(sub), scales)
        y = sub[metric].to_numpy(float)
        candidates, thetas, chosen = fit_accuracy(x, y, has_oracle=curves is not None)
        if chosen is not None:
            model._thetas[str(network)] = thetas[chosen]
        cost, cost_fn = fit_cost(sub, cost_metric) if cost_metric in sub else (None, None)
        if cost_fn is not None:
            model._costs[str(network)] = cost_fn
        values, counts = np.unique(scales, return_counts=True)
        fit = NetworkFit(str(network), candidates.get(chosen), candidates, cost,
                         image_scale=float(values[np.argmax(counts)]), n_trials=len(sub),
                         note="" if chosen else too_few_trials(len(sub), x, y, curves is not None))
        model.networks[str(network)] = fit
        fit.recommended = recommend(sub, metric, cost_metric, tolerance, model, str(network), strides)
    return model
