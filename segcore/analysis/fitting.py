"""The pieces fitted per network: the candidate accuracy models (calibrated oracle, saturating,
constant) with their leave-one-out errors, and the cost model by non-negative least squares.
See :mod:`segcore.analysis.tradeoff` for the formulas and how the pieces are put together.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "CALIBRATED_ORACLE", "SATURATING", "CONSTANT", "CurveFit", "CostFit",
    "fit_accuracy", "fit_cost", "accuracy_model", "min_trials", "too_few_trials",
]

CALIBRATED_ORACLE = "calibrated_oracle"
SATURATING = "saturating"
CONSTANT = "constant"


@dataclass
class CurveFit:
    """One accuracy model fitted to one network's trials.

    Attributes:
        kind: ``calibrated_oracle``, ``saturating`` or ``constant``.
        params: fitted parameters by name.
        r2: coefficient of determination on the fitted points (NaN when accuracy does not vary).
        rmse: root-mean-square residual on the fitted points.
        loo_rmse: leave-one-out RMSE (every fit has at least ``min_trials`` points to leave one out).
        n: number of trials fitted.
        loo_mae: leave-one-out mean absolute error (same left-out fits as ``loo_rmse``).
    """

    kind: str
    params: dict[str, float]
    r2: float
    rmse: float
    loo_rmse: float
    n: int
    loo_mae: float = float("nan")


@dataclass
class CostFit:
    """Cost (e.g. GFLOPs) as a non-negative combination of knob terms."""

    metric: str
    coefficients: dict[str, float]
    r2: float
    rmse: float
    loo_rmse: float
    n: int



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
    n = len(y)  # at least min_trials(len(spec.names)): every left-out fit is determined
    errors = []
    for i in range(n):
        rest = np.arange(n) != i
        t = spec.fit(_take(x, rest), y[rest])
        errors.append(float(spec.model(t, _take(x, ~rest))[0] - y[i]))
    loo = float(np.sqrt(np.mean(np.square(errors))))
    fit = CurveFit(spec.kind, spec.to_public(theta), _r2(y, pred),
                   float(np.sqrt(np.mean((y - pred) ** 2))), loo, n, float(np.mean(np.abs(errors))))
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


def fit_cost(frame: pd.DataFrame, metric: str) -> tuple[CostFit | None, Callable | None]:
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



def accuracy_model(kind: str, theta: np.ndarray) -> _Model:
    """The model function ``f(theta, x)`` of a fitted accuracy model of ``kind``."""
    if kind == CALIBRATED_ORACLE:
        return _calibrated if len(theta) == 2 else _calibrated_fixed
    return {SATURATING: _saturating, CONSTANT: _constant}[kind]


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


def min_trials(parameters: int) -> int:
    """The fewest trials that may fit a model of ``parameters`` parameters: two more than it has,
    so that the fit leaves residuals and its leave-one-out check still has a spare point."""
    return parameters + 2


def fit_accuracy(
    x: Mapping[str, np.ndarray], y: np.ndarray, has_oracle: bool
) -> tuple[dict[str, CurveFit], dict[str, np.ndarray], str | None]:
    """Fit every candidate accuracy model the data can identify (a constant when none can), each
    only with at least :func:`min_trials` trials.

    Returns:
        ``(candidates, thetas, chosen)``: the fits and raw parameters by kind, and the kind with the
        lowest leave-one-out error; ``({}, {}, None)`` when there are too few trials for any model.
    """
    candidates: dict[str, CurveFit] = {}
    thetas: dict[str, np.ndarray] = {}
    for spec in _specs(x, y, has_oracle) or [_constant_spec()]:
        if len(y) < min_trials(len(spec.names)):
            continue
        candidates[spec.kind], thetas[spec.kind] = _evaluate(spec, x, y)
    if not candidates:
        return {}, {}, None
    return candidates, thetas, _choose(candidates)


def too_few_trials(n: int, x: Mapping[str, np.ndarray], y: np.ndarray, has_oracle: bool) -> str:
    """Why ``n`` trials fit no model: the smallest candidate and the trials it needs."""
    specs = _specs(x, y, has_oracle) or [_constant_spec()]
    smallest = min(specs, key=lambda spec: len(spec.names))
    return (f"too few trials to fit: {n} trial(s); the smallest model the data can identify, "
            f"{smallest.kind}, has {len(smallest.names)} parameter(s) and needs at least "
            f"{min_trials(len(smallest.names))}")
