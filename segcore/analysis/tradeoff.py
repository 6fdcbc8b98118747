"""The resolution–accuracy–cost trade-off: accuracy and cost as functions of the knobs, per network.

Two accuracy models compete for each network, and leave-one-out cross-validation picks one:

* **calibrated oracle** — the training-free spectral curves (DESIGN.md §2) anchor the shape:
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
up-sampling at the grid saves about the same FLOPs per skipped octave (see :func:`_fit_cost`).

The recommended configuration per network is the knee of its measured front (accuracy vs cost)
and the cheapest configuration within a tolerance of its best; the efficient grid measured (and
fitted) is set beside the one the spectral analysis predicted from labels alone.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from segcore.analysis.pareto import is_pareto_efficient

__all__ = ["CostFit", "CurveFit", "NetworkFit", "TradeoffModel", "fit_tradeoff", "oracle_curves"]

CALIBRATED_ORACLE = "calibrated_oracle"
SATURATING = "saturating"
CONSTANT = "constant"


# ----------------------------------------------------------------------------- spectral curves


@dataclass(frozen=True)
class OracleCurves:
    """The spectral oracle curves of a dataset, interpolated in log2 of the stride / block size.

    Beyond the measured range the curves are held at their end values (no extrapolation).
    """

    strides: np.ndarray
    grid: np.ndarray
    blocks: np.ndarray | None
    block: dict[str, np.ndarray]
    efficient_grid: dict[str, Any]
    efficient_block: int | None = None
    image_scale: float = 1.0  # the label resolution the curves were computed at (1: native)

    def at_stride(self, stride: np.ndarray | float) -> np.ndarray:
        return np.interp(np.log2(stride), np.log2(self.strides), self.grid)

    def at_block(self, block: np.ndarray | float, mode: np.ndarray | str = "hard") -> np.ndarray:
        block = np.atleast_1d(np.asarray(block, dtype=float))
        if self.blocks is None or not self.block:
            return np.ones_like(block)
        modes = np.broadcast_to(np.asarray(mode, dtype=object), block.shape)
        out = np.empty_like(block)
        for m in set(modes.tolist()):
            curve = self.block.get(str(m)) if str(m) in self.block else next(iter(self.block.values()))
            sel = modes == m
            out[sel] = np.interp(np.log2(block[sel]), np.log2(self.blocks), curve)
        return out


def oracle_curves(spectrum: Mapping[str, Any], variant: str = "soft") -> OracleCurves:
    """Read the oracle curves from a ``spectrum.json`` dict (issue 2's keys).

    Raises:
        ValueError: a required key is missing or the curve lengths disagree.
    """
    def need(key: str) -> Any:
        if key not in spectrum:
            raise ValueError(f"spectrum: missing key {key!r} (keys present: {', '.join(spectrum)})")
        return spectrum[key]

    strides = np.asarray(need("strides"), dtype=float)
    oracle = need("oracle_miou")
    if isinstance(oracle, Mapping):
        if variant not in oracle:
            raise ValueError(f"spectrum.oracle_miou: no variant {variant!r}; have {', '.join(oracle)}")
        oracle = oracle[variant]
    grid = np.asarray(oracle, dtype=float)
    if grid.shape != strides.shape:
        raise ValueError(f"spectrum: {len(strides)} strides but {len(grid)} oracle_miou values")
    blocks, block = None, {}
    if "blocks" in spectrum and "block_oracle_miou" in spectrum:
        blocks = np.asarray(spectrum["blocks"], dtype=float)
        raw = spectrum["block_oracle_miou"]
        raw = raw if isinstance(raw, Mapping) else {"hard": raw}
        block = {k: np.asarray(v, dtype=float) for k, v in raw.items() if len(v) == len(blocks)}
    order = np.argsort(strides)
    border = np.argsort(blocks) if blocks is not None else None
    return OracleCurves(
        strides=strides[order], grid=grid[order],
        blocks=None if blocks is None else blocks[border],
        block={k: v[border] for k, v in block.items()},
        efficient_grid=dict(spectrum.get("efficient_grid") or {}),
        efficient_block=spectrum.get("efficient_block"),
        image_scale=float(spectrum.get("image_scale") or 1.0),
    )


# ----------------------------------------------------------------------------- fitted pieces


@dataclass
class CurveFit:
    """One accuracy model fitted to one network's trials.

    Attributes:
        kind: ``calibrated_oracle``, ``saturating`` or ``constant``.
        params: fitted parameters by name.
        r2: coefficient of determination on the fitted points (NaN when accuracy does not vary).
        rmse: root-mean-square residual on the fitted points.
        loo_rmse: leave-one-out RMSE (NaN when too few points to leave one out).
        n: number of trials fitted.
    """

    kind: str
    params: dict[str, float]
    r2: float
    rmse: float
    loo_rmse: float
    n: int


@dataclass
class CostFit:
    """Cost (e.g. GFLOPs) as a non-negative combination of knob terms."""

    metric: str
    coefficients: dict[str, float]
    r2: float
    rmse: float
    loo_rmse: float
    n: int


@dataclass
class NetworkFit:
    """Everything fitted and recommended for one network."""

    network: str
    accuracy: CurveFit
    candidates: dict[str, CurveFit]
    cost: CostFit | None
    recommended: dict[str, Any] = field(default_factory=dict)
    image_scale: float = 1.0  # the image scale its trials were trained at (the most common one)


# The accuracy models: f(theta, X) with X = dict of arrays (s_eff, block, oracle terms).
_Model = Callable[[np.ndarray, Mapping[str, np.ndarray]], np.ndarray]


def _saturating(theta: np.ndarray, x: Mapping[str, np.ndarray]) -> np.ndarray:
    m, log_s0, log_p = theta[:3]
    y = m / (1.0 + (x["s_eff"] / np.exp(log_s0)) ** np.exp(log_p))
    if len(theta) == 5:
        y = y / (1.0 + (x["block"] / np.exp(theta[3])) ** np.exp(theta[4]))
    return y


def _calibrated(theta: np.ndarray, x: Mapping[str, np.ndarray]) -> np.ndarray:
    c, log_g = theta
    return c * np.clip(x["oracle"], 1e-9, None) ** np.exp(log_g)


def _calibrated_fixed(theta: np.ndarray, x: Mapping[str, np.ndarray]) -> np.ndarray:
    return theta[0] * x["oracle"]


def _constant(theta: np.ndarray, x: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.full(len(x["s_eff"]), theta[0])


def _take(x: Mapping[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in x.items()}


def _least_squares(model: _Model, starts: list[np.ndarray], bounds: tuple, x, y) -> np.ndarray:
    from scipy.optimize import least_squares

    best = None
    for theta0 in starts:
        theta0 = np.clip(theta0, np.asarray(bounds[0]) + 1e-9, np.asarray(bounds[1]) - 1e-9)
        res = least_squares(lambda t: model(t, x) - y, theta0, bounds=bounds, method="trf")
        if best is None or res.cost < best.cost:
            best = res
    return best.x


@dataclass(frozen=True)
class _Spec:
    """How to fit one model kind: its function, parameter names and a fitter on (x, y)."""

    kind: str
    model: _Model
    names: tuple[str, ...]
    fit: Callable[[Mapping[str, np.ndarray], np.ndarray], np.ndarray]
    to_public: Callable[[np.ndarray], dict[str, float]]


def _specs(x: Mapping[str, np.ndarray], y: np.ndarray, has_oracle: bool) -> list[_Spec]:
    """The candidate models that the data can identify."""
    top = float(np.nanmax(np.abs(y))) if len(y) else 1.0
    specs = []
    if has_oracle:
        if len(np.unique(np.round(x["oracle"], 9))) >= 2:
            bounds = ([0.0, math.log(0.02)], [4.0 * top + 1e-6, math.log(50.0)])
            specs.append(_Spec(
                CALIBRATED_ORACLE, _calibrated, ("c", "g"),
                lambda xx, yy: _least_squares(
                    _calibrated, [np.array([top, g]) for g in (0.0, math.log(3.0), math.log(0.3))],
                    bounds, xx, yy),
                lambda t: {"c": float(t[0]), "g": float(math.exp(t[1]))}))
        else:  # one oracle value: the sensitivity g cannot be told from c; keep the pure shape
            specs.append(_Spec(
                CALIBRATED_ORACLE, _calibrated_fixed, ("c",),
                lambda xx, yy: np.array([float(np.dot(xx["oracle"], yy) / np.dot(xx["oracle"], xx["oracle"]))]),
                lambda t: {"c": float(t[0]), "g": 1.0}))
    s_values = np.unique(x["s_eff"])
    if len(s_values) >= 2:
        vary_block = len(np.unique(x["block"])) >= 2
        lo = [0.0, math.log(0.05), math.log(0.1)] + ([math.log(0.05), math.log(0.1)] if vary_block else [])
        hi = [2.0 * top + 1e-6, math.log(4096.0), math.log(20.0)] + (
            [math.log(4096.0), math.log(20.0)] if vary_block else [])
        s_mid = float(np.exp(np.mean(np.log(s_values))))
        starts = []
        for s0 in (s_mid, float(s_values.max()) * 2, float(s_values.min())):
            for p in (1.0, 3.0):
                t = [top * 1.05, math.log(s0), math.log(p)]
                starts.append(np.array(t + ([math.log(float(np.max(x["block"])) * 2), 0.0] if vary_block else [])))
        names = ("m", "s0", "p") + (("b0", "q") if vary_block else ())

        def public(t: np.ndarray) -> dict[str, float]:
            out = {"m": float(t[0]), "s0": float(math.exp(t[1])), "p": float(math.exp(t[2]))}
            if len(t) == 5:
                out.update(b0=float(math.exp(t[3])), q=float(math.exp(t[4])))
            return out

        specs.append(_Spec(SATURATING, _saturating, names,
                           lambda xx, yy: _least_squares(_saturating, starts, (lo, hi), xx, yy), public))
    return specs


def _constant_spec() -> _Spec:
    return _Spec(CONSTANT, _constant, ("m",), lambda xx, yy: np.array([float(np.mean(yy))]),
                 lambda t: {"m": float(t[0])})


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return float("nan") if ss_tot <= 1e-15 else 1.0 - float(np.sum((y - pred) ** 2)) / ss_tot


def _evaluate(spec: _Spec, x, y) -> tuple[CurveFit, np.ndarray]:
    theta = spec.fit(x, y)
    pred = spec.model(theta, x)
    n = len(y)
    loo = float("nan")
    if n - 1 >= len(spec.names) and n >= 2:
        errors = []
        for i in range(n):
            rest = np.arange(n) != i
            t = spec.fit(_take(x, rest), y[rest])
            errors.append(float(spec.model(t, _take(x, ~rest))[0] - y[i]))
        loo = float(np.sqrt(np.mean(np.square(errors))))
    fit = CurveFit(spec.kind, spec.to_public(theta), _r2(y, pred),
                   float(np.sqrt(np.mean((y - pred) ** 2))), loo, n)
    return fit, theta


_CostTerm = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _nnls_fit(a: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Non-negative least squares and its leave-one-out RMSE (NaN with too few points)."""
    from scipy.optimize import nnls

    coef, _ = nnls(a, y)
    n, loo = len(y), float("nan")
    if n - 1 >= a.shape[1]:
        errs = []
        for i in range(n):
            rest = np.arange(n) != i
            c, _ = nnls(a[rest], y[rest])
            errs.append(float(a[i] @ c - y[i]))
        loo = float(np.sqrt(np.mean(np.square(errs))))
    return coef, loo


def _fit_cost(frame: pd.DataFrame, metric: str) -> tuple[CostFit | None, Callable | None]:
    """Cost against the knobs: a constant plus non-negative knob terms, the set of terms chosen
    by leave-one-out RMSE.

    Two decoder shapes occur (segcore.models): decoders that run on the grid, truncated to
    ``keep * (H/s) x keep * (W/s)`` maps (DeepLabV3+, DAN), whose FLOPs scale with
    ``(keep / s)**2``; and U-Net-like decoders that stop up-sampling at the grid, where every
    skipped stage (half the channels, twice the resolution: about equal FLOPs) saves a constant,
    so FLOPs fall with ``log2(s)``. The encoder's FLOPs do not depend on the knobs.
    """
    y = frame[metric].to_numpy(dtype=float)
    ok = np.isfinite(y)
    if ok.sum() == 0:
        return None, None
    sub, y = frame[ok], y[ok]
    s, k = sub["grid_stride"].to_numpy(dtype=float), sub["keep"].to_numpy(dtype=float)
    knob_terms: dict[str, _CostTerm] = {}
    if len(np.unique(k / s)) >= 2:
        knob_terms["(keep/s)^2"] = lambda ss, kk: (kk / ss) ** 2
    if len(np.unique(s)) >= 2:
        knob_terms["-log2(s)"] = lambda ss, kk: -np.log2(ss)
    subsets = [dict(c) for r in range(len(knob_terms), -1, -1)
               for c in itertools.combinations(knob_terms.items(), r)]
    fits = []
    for extra in subsets:
        # "1" is the cost at stride 1 (where -log2(s) = 0); every coefficient is >= 0.
        terms: dict[str, _CostTerm] = {"1": lambda ss, kk: np.ones_like(ss), **extra}
        coef, loo = _nnls_fit(np.stack([f(s, k) for f in terms.values()], axis=1), y)
        fits.append((terms, coef, loo))
    scored = [f for f in fits if np.isfinite(f[2])]
    if scored:
        # Lowest LOO error; among (numerically) equal ones, the fewest terms.
        low = min(f[2] for f in scored)
        close = [f for f in scored if f[2] <= low * (1 + 1e-6) + 1e-9 * max(float(np.abs(y).max()), 1.0)]
        terms, coef, loo = min(close, key=lambda f: len(f[0]))
    else:
        terms, coef, loo = fits[0]  # too few points to compare: every knob term
    pred = np.stack([f(s, k) for f in terms.values()], axis=1) @ coef
    fit = CostFit(metric, dict(zip(terms, map(float, coef))), _r2(y, pred),
                  float(np.sqrt(np.mean((y - pred) ** 2))), loo, len(y))
    return fit, lambda ss, kk: np.stack(
        [f(np.asarray(ss, float), np.asarray(kk, float)) for f in terms.values()], axis=1) @ coef


# ----------------------------------------------------------------------------- the model


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
        base = self._curves.image_scale if self._curves is not None else 1.0
        return np.asarray(image_scale, dtype=float) / base

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
            x["oracle"] = (self._curves.at_stride(x["s_eff"]) / self._curves.at_stride(dense)
                           * self._curves.at_block(x["block"], block_mode)
                           / self._curves.at_block(dense, block_mode))
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
        x = self._features(grid_stride, keep, block, block_mode,
                           fit.image_scale if image_scale is None else image_scale)
        spec = _spec_for(fit.accuracy.kind, self._thetas[network])
        acc = spec(self._thetas[network], x)
        cost = (self._costs[network](x["s"], x["keep"]) if network in self._costs
                else np.full(len(acc), np.nan))
        return {self.metric: np.asarray(acc, float), self.cost_metric: np.asarray(cost, float)}

    def predict_frame(self, df: pd.DataFrame) -> pd.Series:
        """Predicted accuracy for each row of a trial table (NaN for networks not fitted)."""
        out = pd.Series(np.nan, index=df.index, dtype=float)
        for network, rows in df.groupby("network").groups.items():
            if network in self.networks:
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
        """
        ratio = float(self._ratio(self._network(network).image_scale))

        def conv(v):
            return None if v is None else float(v) * ratio

        by_miou = conv(self.spectral_efficient_grid.get("by_miou"))
        if self._curves is not None:
            dense = 1.0 / ratio
            strides = np.unique(np.concatenate([[dense], self._curves.strides[self._curves.strides >= dense]]))
            relative = self._curves.at_stride(strides) / self._curves.at_stride(dense)
            by_miou = float(strides[relative >= (1.0 - self.tolerance) - 1e-12].max() * ratio)
        return {"grid_by_miou": by_miou,
                "grid_by_energy": conv(self.spectral_efficient_grid.get("by_energy")),
                "block": conv(self.spectral_efficient_block)}

    def recommendations(self) -> pd.DataFrame:
        """One row per network: measured knee, cheapest within tolerance, and the efficient grid
        measured, fitted and predicted by the spectral analysis, all in the trials' grid strides."""
        rows = []
        for name, fit in sorted(self.networks.items()):
            rec = fit.recommended
            spectral = self.spectral_in_trial_units(name)
            rows.append({
                "network": name,
                "image_scale": fit.image_scale,
                "knee": _describe(rec.get("knee")),
                "cheapest_within_tol": _describe(rec.get("cheapest_within_tolerance")),
                "knee_grid_stride": (rec.get("knee") or {}).get("grid_stride"),
                "efficient_grid_measured": rec.get("efficient_grid_measured"),
                "efficient_grid_fitted": rec.get("efficient_grid_fitted"),
                "efficient_grid_spectral": spectral["grid_by_miou"],
                "efficient_grid_spectral_energy": spectral["grid_by_energy"],
                "efficient_block_measured": rec.get("efficient_block_measured"),
                "efficient_block_spectral": spectral["block"],
            })
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: fits, candidates, recommendations."""
        return {
            "metric": self.metric, "cost_metric": self.cost_metric, "tolerance": self.tolerance,
            "spectral_efficient_grid": self.spectral_efficient_grid,
            "spectral_efficient_block": self.spectral_efficient_block,
            "networks": {name: _jsonable(asdict(fit)) for name, fit in sorted(self.networks.items())},
        }


def _spec_for(kind: str, theta: np.ndarray) -> _Model:
    if kind == CALIBRATED_ORACLE:
        return _calibrated if len(theta) == 2 else _calibrated_fixed
    return {SATURATING: _saturating, CONSTANT: _constant}[kind]


def _describe(rec: Mapping[str, Any] | None) -> str:
    if not rec:
        return ""
    return (f"s={rec['grid_stride']:g} k={rec['keep']:g} b={rec['block']:g}: "
            f"{rec['metric']:.4f} @ {rec['cost']:.4g}")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if not np.isfinite(obj) else float(obj)
    return obj


def _scales(df: pd.DataFrame) -> np.ndarray:
    """Each trial's image scale (1.0 where it trained at the native size)."""
    if "image_scale" not in df:
        return np.ones(len(df))
    return pd.to_numeric(df["image_scale"], errors="coerce").fillna(1.0).to_numpy(float)


def _modes(df: pd.DataFrame) -> np.ndarray:
    if "block_mode" not in df:
        return np.full(len(df), "hard", dtype=object)
    return df["block_mode"].astype(object).where(df["block_mode"].notna(), "hard").to_numpy(dtype=object)


# ----------------------------------------------------------------------------- recommendations


def _config(row: pd.Series, metric: str, cost_metric: str) -> dict[str, Any]:
    return {"trial_id": None if pd.isna(row.get("trial_id")) else str(row.get("trial_id")),
            "grid_stride": float(row["grid_stride"]), "keep": float(row["keep"]),
            "block": float(row["block"]), "metric": float(row[metric]),
            "cost": float(row[cost_metric]) if cost_metric in row and pd.notna(row[cost_metric]) else float("nan")}


def _recommend(sub: pd.DataFrame, metric: str, cost_metric: str, tolerance: float,
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


# ----------------------------------------------------------------------------- entry point


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
        candidates: dict[str, CurveFit] = {}
        thetas: dict[str, np.ndarray] = {}
        for spec in _specs(x, y, curves is not None) or [_constant_spec()]:
            if len(y) < len(spec.names):
                continue
            candidates[spec.kind], thetas[spec.kind] = _evaluate(spec, x, y)
        if not candidates:
            candidates[CONSTANT], thetas[CONSTANT] = _evaluate(_constant_spec(), x, y)
        chosen = _choose(candidates)
        model._thetas[str(network)] = thetas[chosen]
        cost, cost_fn = _fit_cost(sub, cost_metric) if cost_metric in sub else (None, None)
        if cost_fn is not None:
            model._costs[str(network)] = cost_fn
        values, counts = np.unique(scales, return_counts=True)
        fit = NetworkFit(str(network), candidates[chosen], candidates, cost,
                         image_scale=float(values[np.argmax(counts)]))
        model.networks[str(network)] = fit
        fit.recommended = _recommend(sub, metric, cost_metric, tolerance, model, str(network), strides)
    return model


def _choose(candidates: Mapping[str, CurveFit]) -> str:
    """Lowest leave-one-out error wins; without any, the spectrally anchored model (fewest
    parameters, and the one that can say something outside the measured strides)."""
    scored = {k: c.loo_rmse for k, c in candidates.items() if np.isfinite(c.loo_rmse)}
    if scored:
        return min(scored, key=lambda k: (scored[k], k != CALIBRATED_ORACLE))
    for kind in (CALIBRATED_ORACLE, SATURATING, CONSTANT):
        if kind in candidates:
            return kind
    raise AssertionError("no candidate")  # pragma: no cover - candidates is never empty
